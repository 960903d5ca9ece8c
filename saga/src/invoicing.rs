//! Invoicing orders together: a tenant's invoice book is one stream, so orders invoiced one
//! append at a time queue on it. Orders ready at the same time are instead invoiced in one
//! atomic append: each order's stock leaving, one number each from the book (in turn, still no
//! gaps), each capture and each order's `Invoiced`.
//!
//! Group commit: an order asking for its invoice joins its book's queue. Whoever holds the
//! book's turn takes everything queued (at most [`MOST`] orders) and appends it; orders that
//! arrive meanwhile are taken together by the next turn. An order that cannot be invoiced now
//! (cancelled meanwhile, its stock refusing) is answered alone and the rest are prepared again
//! without it, so its number is never given out.
//!
//! Lock order, the saga's one: every SKU of the batch (sorted), the book, the payments, the
//! orders (each sorted by id). An order's other steps take one order's payment, then its
//! order, so nothing waits in a circle.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::sync::{Arc, Mutex};

use cqrs_es::Aggregate;
use domain::order::{InvoiceBook, InvoiceCommand, Order, OrderCommand, OrderError, INVOICE_BOOK};
use domain::payment::{Payment, PaymentCommand};
use domain::stock::{Stock, StockCommand};
use domain::{stream_id, OrderId, TenantId};
use store::{commit, retry_on_conflict, ExecError, Metadata, Prepared, Repository, Stage};
use tokio::sync::oneshot;

use crate::{OrderSaga, SagaError};

/// Orders invoiced in one append at most.
const MOST: usize = 64;

/// What became of an order's invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Invoiced {
    /// Its stock left, it has its number, and its capture (if asked) is on record.
    Done,
    /// It was invoiced or cancelled meanwhile: nothing was written for it (its capture is
    /// still to be recorded by the caller).
    MovedOn,
}

/// One order waiting for its invoice.
pub(crate) struct Request {
    /// The order's stream id.
    id: String,
    order_id: OrderId,
    /// Its SKUs (sorted).
    skus: Vec<String>,
    /// Record the gateway's capture on the payment in the same append.
    captured: bool,
    meta: Metadata,
    answer: Option<oneshot::Sender<Result<Invoiced, SagaError>>>,
}

impl Request {
    pub(crate) fn new(id: &str, order_id: OrderId, order: &Order, captured: bool, meta: Metadata) -> (Self, Answer) {
        let (tx, rx) = oneshot::channel();
        let skus = order.reservations().into_keys().collect();
        (Self { id: id.to_owned(), order_id, skus, captured, meta, answer: Some(tx) }, Answer(rx))
    }

    /// Whether nobody waits for the answer any more (the reconciling task was dropped).
    fn abandoned(&self) -> bool {
        self.answer.as_ref().is_none_or(oneshot::Sender::is_closed)
    }

    fn answer(&mut self, result: Result<Invoiced, SagaError>) {
        if let Some(tx) = self.answer.take() {
            let _ = tx.send(result);
        }
    }
}

/// Where an order's request is answered.
pub(crate) struct Answer(oneshot::Receiver<Result<Invoiced, SagaError>>);

/// One tenant's invoice book: the orders waiting for it, and its turn.
#[derive(Default)]
struct Book {
    waiting: Mutex<Vec<Request>>,
    turn: Arc<tokio::sync::Mutex<()>>,
}

/// The books of this process, by tenant.
#[derive(Default)]
pub(crate) struct Books(Mutex<HashMap<TenantId, Arc<Book>>>);

impl Books {
    fn of(&self, tenant: &TenantId) -> Arc<Book> {
        let mut books = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(books.entry(tenant.clone()).or_default())
    }
}

#[cfg(feature = "faults")]
impl OrderSaga {
    /// Holds the tenant's invoice book as a batch being appended does: orders that ask for
    /// their invoice meanwhile wait, and are invoiced together once the guard is dropped.
    pub async fn hold_invoice_book(&self, tenant: &TenantId) -> tokio::sync::OwnedMutexGuard<()> {
        Arc::clone(&self.books.of(tenant).turn).lock_owned().await
    }

    /// Orders waiting for the tenant's invoice book.
    pub fn invoices_waiting(&self, tenant: &TenantId) -> usize {
        self.books.of(tenant).waiting.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Why an attempt stopped short of appending: the order at this index cannot be invoiced now.
#[derive(Debug)]
enum Excluded {
    MovedOn,
    Refused(String),
}

/// The prepared writes of one batch, in lock order.
struct Writes {
    stock: Vec<Prepared<Stock>>,
    book: Prepared<InvoiceBook>,
    payments: Vec<Prepared<Payment>>,
    orders: Vec<Prepared<Order>>,
}

impl OrderSaga {
    /// Invoices the order in `request` together with whatever else its tenant's book has
    /// waiting.
    pub(crate) async fn invoice_together(&self, tenant: &TenantId, request: Request, mut answer: Answer) -> Result<Invoiced, SagaError> {
        use oneshot::error::TryRecvError;
        let book = self.books.of(tenant);
        book.waiting.lock().unwrap_or_else(|p| p.into_inner()).push(request);
        loop {
            let turn = book.turn.lock().await;
            match answer.0.try_recv() {
                Ok(result) => return result,
                // Taken by a turn that was stopped before it answered: looked at again later.
                Err(TryRecvError::Closed) => return Err(SagaError::Conflict("invoice")),
                Err(TryRecvError::Empty) => {}
            }
            let batch: Vec<Request> = {
                let mut waiting = book.waiting.lock().unwrap_or_else(|p| p.into_inner());
                let n = waiting.len().min(MOST);
                waiting.drain(..n).collect()
            };
            self.invoice_batch(tenant, batch).await;
            drop(turn);
        }
    }

    /// Appends the invoices of `batch`, answering every request.
    async fn invoice_batch(&self, tenant: &TenantId, batch: Vec<Request>) {
        let mut batch = distinct(batch);
        if batch.is_empty() {
            return;
        }
        metrics::histogram!("shop_saga_invoices_per_append").record(batch.len() as f64);
        while !batch.is_empty() {
            match retry_on_conflict(Order::TYPE, || self.append_invoices(tenant, &batch)).await {
                Ok(()) => {
                    for request in &mut batch {
                        request.answer(Ok(Invoiced::Done));
                    }
                    return;
                }
                Err(ExecError::Domain((i, excluded))) => {
                    let mut request = batch.remove(i);
                    request.answer(match excluded {
                        Excluded::MovedOn => Ok(Invoiced::MovedOn),
                        Excluded::Refused(reason) => Err(SagaError::Refused { aggregate: Order::TYPE, action: "invoice", reason }),
                    });
                }
                Err(e) => {
                    let reason = e.map_domain(|(_, e)| format!("{e:?}"));
                    let shared = reason.to_string();
                    let mut first = Some(crate::steps::refused(Order::TYPE, "invoice", reason));
                    for request in &mut batch {
                        let error = first.take().unwrap_or_else(|| SagaError::Batch(shared.clone()));
                        request.answer(Err(error));
                    }
                    return;
                }
            }
        }
    }

    /// One attempt at the whole batch: prepare every write in lock order, then one append.
    async fn append_invoices(&self, tenant: &TenantId, batch: &[Request]) -> Result<(), ExecError<(usize, Excluded)>> {
        let mut writes = self.prepare_invoices(tenant, batch).await?;
        let mut stages: Vec<&mut dyn Stage> = Vec::new();
        stages.extend(writes.stock.iter_mut().map(|p| p as &mut dyn Stage));
        stages.push(&mut writes.book);
        stages.extend(writes.payments.iter_mut().map(|p| p as &mut dyn Stage));
        stages.extend(writes.orders.iter_mut().map(|p| p as &mut dyn Stage));
        // Every event carries its own order's metadata (labels); this is only the fallback.
        commit(self.repos.orders.store(), &batch[0].meta, &mut stages).await?;
        for p in writes.stock {
            p.finish().await;
        }
        writes.book.finish().await;
        for p in writes.payments {
            p.finish().await;
        }
        for p in writes.orders {
            p.finish().await;
        }
        Ok(())
    }

    async fn prepare_invoices(&self, tenant: &TenantId, batch: &[Request]) -> Result<Writes, ExecError<(usize, Excluded)>> {
        // Each SKU's stream once, with every order's commit on it.
        let mut skus: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, request) in batch.iter().enumerate() {
            for sku in &request.skus {
                skus.entry(sku.as_str()).or_default().push(i);
            }
        }
        let mut stock = Vec::with_capacity(skus.len());
        for (sku, orders) in skus {
            let stream = stream_id(tenant, sku);
            let mut prepared = None;
            for i in orders {
                let command = StockCommand::Commit { order_id: batch[i].order_id };
                add(&self.repos.stock, &mut prepared, &stream, command, i, &batch[i].meta).await?;
            }
            stock.extend(prepared);
        }
        let book_stream = stream_id(tenant, INVOICE_BOOK);
        let mut book = None;
        let mut numbers = Vec::with_capacity(batch.len());
        for (i, request) in batch.iter().enumerate() {
            let command = InvoiceCommand::Issue { order_id: request.order_id };
            numbers.push(add(&self.repos.invoices, &mut book, &book_stream, command, i, &request.meta).await?.state().last);
        }
        let Some(book) = book else {
            return Err(ExecError::Domain((0, Excluded::Refused("nothing to invoice".into()))));
        };
        let mut payments = Vec::new();
        for (i, request) in batch.iter().enumerate().filter(|(_, r)| r.captured) {
            let mut p = self.repos.payments.prepare(&request.id, PaymentCommand::RecordCaptured, None).await.map_err(|e| domain(e, i))?;
            p.label(&request.meta)?;
            payments.push(p);
        }
        let mut orders = Vec::with_capacity(batch.len());
        for (i, (request, number)) in batch.iter().zip(numbers).enumerate() {
            match self.repos.orders.prepare(&request.id, OrderCommand::AssignInvoice { number }, None).await {
                Ok(mut p) => {
                    p.label(&request.meta)?;
                    orders.push(p);
                }
                // Invoiced already, or cancelled meanwhile: its caller decides (after the
                // capture is on record), the others go without it.
                Err(ExecError::Domain(OrderError::AlreadyInvoiced(_) | OrderError::IllegalTransition { .. })) => {
                    return Err(ExecError::Domain((i, Excluded::MovedOn)));
                }
                Err(e) => return Err(domain(e, i)),
            }
        }
        Ok(Writes { stock, book, payments, orders })
    }
}

/// The requests of `batch` sorted by order, without those nobody waits for any more and with
/// one request per order (the newest; an older one is told to look again), so no stream is
/// prepared twice in one write.
fn distinct(mut batch: Vec<Request>) -> Vec<Request> {
    batch.retain(|r| !r.abandoned());
    // Stable: of two requests for one order, the newer stays last.
    batch.sort_by(|a, b| a.id.cmp(&b.id));
    let mut out: Vec<Request> = Vec::with_capacity(batch.len());
    for request in batch {
        match out.last_mut() {
            Some(last) if last.id == request.id => std::mem::replace(last, request).answer(Err(SagaError::Conflict("invoice"))),
            _ => out.push(request),
        }
    }
    out
}

/// A command's error as the batch's: a refusal names the order it excludes.
fn domain<E: Display>(e: ExecError<E>, i: usize) -> ExecError<(usize, Excluded)> {
    e.map_domain(|e| (i, Excluded::Refused(e.to_string())))
}

/// Adds `command`, for the batch's `i`-th order and stored with its metadata, to the write on
/// `stream`: the first command prepares it (and takes the stream's lock), later ones join it.
async fn add<'p, A>(
    repo: &Repository<A>,
    prepared: &'p mut Option<Prepared<A>>,
    stream: &str,
    command: A::Command,
    i: usize,
    meta: &Metadata,
) -> Result<&'p Prepared<A>, ExecError<(usize, Excluded)>>
where
    A: Aggregate + Clone,
    A::Command: Clone,
    A::Error: Display,
{
    let mut p = match prepared.take() {
        Some(mut p) => {
            p.and(command).await.map_err(|e| domain(e, i))?;
            p
        }
        None => repo.prepare(stream, command, None).await.map_err(|e| domain(e, i))?,
    };
    p.label(meta)?;
    Ok(prepared.insert(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: &str, step: &str) -> (Request, Answer) {
        let (tx, rx) = oneshot::channel();
        let meta = Metadata { idempotency_key: Some(step.to_owned()), ..Metadata::default() };
        (Request { id: id.to_owned(), order_id: OrderId::new(), skus: vec![], captured: false, meta, answer: Some(tx) }, Answer(rx))
    }

    #[test]
    fn a_batch_holds_one_request_per_order_and_none_that_nobody_awaits() {
        let (older_b, mut older_answer) = request("acme:b", "older");
        let (a, _a_answer) = request("acme:a", "a");
        let (newer_b, _newer_answer) = request("acme:b", "newer");
        let (gone, gone_answer) = request("acme:c", "gone");
        drop(gone_answer);
        let batch = distinct(vec![older_b, a, gone, newer_b]);
        let kept: Vec<(&str, Option<&str>)> = batch.iter().map(|r| (r.id.as_str(), r.meta.idempotency_key.as_deref())).collect();
        assert_eq!(kept, [("acme:a", Some("a")), ("acme:b", Some("newer"))]);
        assert!(matches!(older_answer.0.try_recv(), Ok(Err(SagaError::Conflict("invoice")))), "the older request looks again");
    }
}
