//! Group commit, shared by the saga's steps that write to a tenant-wide set of streams
//! (reserving stock, invoicing): an order asking for such a step joins its tenant's queue.
//! Whoever holds the queue's turn takes everything waiting (at most a given number of orders)
//! and writes it in one append; orders that arrive meanwhile are taken together by the next
//! turn. An order that cannot take the step now is answered alone, and the rest are prepared
//! again without it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use cqrs_es::Aggregate;
use domain::order::Order;
use domain::{OrderId, TenantId};
use store::{ExecError, Metadata};
use tokio::sync::oneshot;

use crate::SagaError;

/// One order waiting for a step taken together with others: `work` is what the step needs
/// to know of it, `T` its answer.
pub(crate) struct Request<W, T> {
    /// The order's stream id.
    pub(crate) id: String,
    pub(crate) order_id: OrderId,
    pub(crate) meta: Metadata,
    pub(crate) work: W,
    answer: Option<oneshot::Sender<Result<T, SagaError>>>,
}

/// Where an order's request is answered.
pub(crate) struct Answer<T>(oneshot::Receiver<Result<T, SagaError>>);

impl<W, T> Request<W, T> {
    pub(crate) fn new(id: &str, order_id: OrderId, meta: Metadata, work: W) -> (Self, Answer<T>) {
        let (tx, rx) = oneshot::channel();
        (Self { id: id.to_owned(), order_id, meta, work, answer: Some(tx) }, Answer(rx))
    }

    /// Whether nobody waits for the answer any more (the reconciling task was dropped).
    fn abandoned(&self) -> bool {
        self.answer.as_ref().is_none_or(oneshot::Sender::is_closed)
    }

    pub(crate) fn answer(&mut self, result: Result<T, SagaError>) {
        if let Some(tx) = self.answer.take() {
            let _ = tx.send(result);
        }
    }
}

/// Why an attempt stopped short of appending: the order at this index cannot take the step
/// now.
#[derive(Debug)]
pub(crate) enum Excluded {
    /// It moved on meanwhile (cancelled, or the step taken by another process).
    MovedOn,
    /// One of its aggregates refused the step.
    Refused(String),
}

/// A command's error as the batch's: a refusal names the order it excludes.
pub(crate) fn excluding<E: std::fmt::Display>(e: ExecError<E>, i: usize) -> ExecError<(usize, Excluded)> {
    e.map_domain(|e| (i, Excluded::Refused(e.to_string())))
}

/// One tenant's queue: the orders waiting, and its turn.
struct Queue<W, T> {
    waiting: Mutex<Vec<Request<W, T>>>,
    turn: Arc<tokio::sync::Mutex<()>>,
}

/// The queues of one step in this process, by tenant.
pub(crate) struct Queues<W, T> {
    queues: Mutex<HashMap<TenantId, Arc<Queue<W, T>>>>,
    /// The step, as errors name it.
    action: &'static str,
    /// Orders taken in one append at most.
    most: usize,
}

impl<W, T> Queues<W, T> {
    pub(crate) fn new(action: &'static str, most: usize) -> Self {
        Self { queues: Mutex::new(HashMap::new()), action, most: most.max(1) }
    }

    fn of(&self, tenant: &TenantId) -> Arc<Queue<W, T>> {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let queue = queues
            .entry(tenant.clone())
            .or_insert_with(|| Arc::new(Queue { waiting: Mutex::new(Vec::new()), turn: Arc::new(tokio::sync::Mutex::new(())) }));
        Arc::clone(queue)
    }

    /// Holds the tenant's turn as a batch being appended does: orders that join meanwhile wait,
    /// and are taken together once the guard is dropped.
    #[cfg(feature = "faults")]
    pub(crate) async fn hold(&self, tenant: &TenantId) -> tokio::sync::OwnedMutexGuard<()> {
        Arc::clone(&self.of(tenant).turn).lock_owned().await
    }

    /// Orders waiting in the tenant's queue.
    #[cfg(feature = "faults")]
    pub(crate) fn waiting(&self, tenant: &TenantId) -> usize {
        self.of(tenant).waiting.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Queues `request` and waits for its answer: whenever this task gets the turn before its
    /// request was answered, it runs `batch` on everything waiting (never on nothing), which
    /// must answer every request it is given.
    pub(crate) async fn join<F, Fut>(
        &self,
        tenant: &TenantId,
        request: Request<W, T>,
        mut answer: Answer<T>,
        batch: F,
    ) -> Result<T, SagaError>
    where
        F: Fn(Vec<Request<W, T>>) -> Fut,
        Fut: Future<Output = ()>,
    {
        use oneshot::error::TryRecvError;
        let queue = self.of(tenant);
        queue.waiting.lock().unwrap_or_else(|p| p.into_inner()).push(request);
        loop {
            let turn = queue.turn.lock().await;
            match answer.0.try_recv() {
                Ok(result) => return result,
                // Taken by a turn that was stopped before it answered: looked at again later.
                Err(TryRecvError::Closed) => return Err(SagaError::Conflict(self.action)),
                Err(TryRecvError::Empty) => {}
            }
            let taken: Vec<Request<W, T>> = {
                let mut waiting = queue.waiting.lock().unwrap_or_else(|p| p.into_inner());
                let n = waiting.len().min(self.most);
                waiting.drain(..n).collect()
            };
            let taken = distinct(taken, self.action);
            if !taken.is_empty() {
                batch(taken).await;
            }
            drop(turn);
        }
    }
}

/// The requests of `batch` sorted by order, without those nobody waits for any more and with
/// one request per order (the newest; an older one is told to look again), so no stream is
/// prepared twice in one write.
fn distinct<W, T>(mut batch: Vec<Request<W, T>>, action: &'static str) -> Vec<Request<W, T>> {
    batch.retain(|r| !r.abandoned());
    // Stable: of two requests for one order, the newer stays last.
    batch.sort_by(|a, b| a.id.cmp(&b.id));
    let mut out: Vec<Request<W, T>> = Vec::with_capacity(batch.len());
    for request in batch {
        match out.last_mut() {
            Some(last) if last.id == request.id => std::mem::replace(last, request).answer(Err(SagaError::Conflict(action))),
            _ => out.push(request),
        }
    }
    out
}

/// Answers what one whole attempt at appending `batch` (tried again on conflicts) means for
/// its requests; true when every request is answered. If it appended, each gets `done`. If it
/// excluded an order, that order is answered alone (`moved_on`, or its refusal of `action`)
/// and is taken out: the caller tries the rest again. If it failed as a whole, the first
/// order gets the error as a refusal of `action`, the others [`SagaError::Batch`].
pub(crate) fn answer<W, T: Clone>(
    batch: &mut Vec<Request<W, T>>,
    attempt: Result<(), ExecError<(usize, Excluded)>>,
    action: &'static str,
    done: T,
    moved_on: T,
) -> bool {
    match attempt {
        Ok(()) => {
            for request in batch.iter_mut() {
                request.answer(Ok(done.clone()));
            }
            true
        }
        Err(ExecError::Domain((i, excluded))) => {
            let mut request = batch.remove(i);
            request.answer(match excluded {
                Excluded::MovedOn => Ok(moved_on),
                Excluded::Refused(reason) => Err(SagaError::Refused { aggregate: Order::TYPE, action, reason }),
            });
            batch.is_empty()
        }
        Err(e) => {
            let reason = e.map_domain(|(_, e)| format!("{e:?}"));
            let shared = reason.to_string();
            let mut first = Some(crate::steps::refused(Order::TYPE, action, reason));
            for request in batch.iter_mut() {
                let error = first.take().unwrap_or_else(|| SagaError::Batch(shared.clone()));
                request.answer(Err(error));
            }
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: &str, step: &str) -> (Request<(), ()>, Answer<()>) {
        let meta = Metadata { idempotency_key: Some(step.to_owned()), ..Metadata::default() };
        Request::new(id, OrderId::new(), meta, ())
    }

    #[test]
    fn a_batch_holds_one_request_per_order_and_none_that_nobody_awaits() {
        let (older_b, mut older_answer) = request("acme:b", "older");
        let (a, _a_answer) = request("acme:a", "a");
        let (newer_b, _newer_answer) = request("acme:b", "newer");
        let (gone, gone_answer) = request("acme:c", "gone");
        drop(gone_answer);
        let batch = distinct(vec![older_b, a, gone, newer_b], "invoice");
        let kept: Vec<(&str, Option<&str>)> = batch.iter().map(|r| (r.id.as_str(), r.meta.idempotency_key.as_deref())).collect();
        assert_eq!(kept, [("acme:a", Some("a")), ("acme:b", Some("newer"))]);
        assert!(matches!(older_answer.0.try_recv(), Ok(Err(SagaError::Conflict("invoice")))), "the older request looks again");
    }
}
