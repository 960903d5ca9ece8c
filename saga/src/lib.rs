//! The order saga: a process manager that takes a placed order through stock, payment,
//! confirmation, capture and invoicing, or undoes what it did (release the stock, void or
//! refund the payment, cancel the order with a reason code).
//!
//! # Layout
//! - [`OrderSaga`] (this file): a consumer of the log on the worker kit's driver
//!   ([`OrderSaga::driver`]); where each order stands (`order_sagas`); the due sweep.
//! - `steps.rs`: reconciling one order, step by step.
//! - `reserving.rs`: orders waiting for their stock at the same time, reserved (or rejected) in
//!   one append.
//! - `invoicing.rs`: orders ready for their invoice at the same time, invoiced in one append of
//!   their tenant's invoice book.
//! - `together.rs`: the group commit both share (a queue and a turn per tenant).
//! - `carts.rs`: carts' deadlines (expiry, the customer's reminder), kept the same way.
//! - [`routes`]: `GET /api/v1/admin/orders/{id}/saga`.
//! - `gateway.rs`: [`HttpGateway`], a payment provider over HTTP (`SHOP_PAYMENT_GATEWAY=http`).
//!
//! # How it is built
//! - It reads the store's global log from its own checkpoint (`order_saga` in
//!   `projection_checkpoints`) and looks at order and payment events only. An order and its
//!   payment share one stream id, so a batch is grouped by stream id and each order is
//!   reconciled once per batch; different orders run concurrently. The log is the guarantee:
//!   an order moves on once its batch is read, whatever else happened.
//! - With `SHOP_EVENT_SOURCE=kafka` it is instead a member of consumer group `order-saga` on
//!   the order, payment and cart topics (the `worker_kit::SourcedConsumer` impl below), and
//!   scales out like the projections: partition *i* of the order and of the payment topic go
//!   to one member (an order and its payment share a key), so each order is reconciled by one
//!   process at a time; a member that dies leaves its partitions, and their orders' deadlines
//!   (`order_sagas.source_topic`, `source_partition`), to the others.
//! - On the log, it does not wait for the log where it need not:
//!   [`OrderSaga::follow_commits`] reconciles an order as soon as this process commits to its
//!   stream (a placed order, a cancellation), without waiting for the batch it lands in. One
//!   order is reconciled by one task at a time in a process (a lock per order), so the log's
//!   later look finds it already moved on and changes nothing.
//! - Reconciling reads the order and the payment as they are now and issues the one command
//!   that moves them on, again and again until the order waits for something or is settled
//!   (`steps.rs`). It never acts on an event's content, only on current state, so a
//!   re-delivered event, a crash between two steps, or two saga processes at once can only
//!   repeat a step whose command is refused or changes nothing.
//! - Commands it issues are deterministic: reservations are keyed by order id, the payment has
//!   the order's id, gateway calls carry `<order>:authorise|capture|void|refund:<id>` as their
//!   idempotency key, and the metadata of every write names the step
//!   (`saga:<order>:<step>`).
//! - Steps that must not be half-done are one atomic append across streams: every line's
//!   reservation with the order's `StockReserved` (for every order of the tenant waiting for
//!   stock at that moment, with the `StockRejected` of those that do not fit, in one append);
//!   every line's stock commit with the next number of the tenant's invoice book and the
//!   order's `Invoiced` (for every order of the tenant waiting for its invoice at that moment,
//!   in one append); a paid refund on the payment and on the order; restocked units with the
//!   order's `Restocked`.
//! - Durable deadlines: an order's reservations lapse at the time recorded in its
//!   `StockReserved`; `order_sagas.due_at_ms` holds when each order next needs a look
//!   (expiry, or a retry after a gateway outage), and every round sweeps the due ones with the
//!   injected [`Clock`] (the consumer's timed work, `Consumer::tick`), so a restart loses
//!   nothing and tests move time instead of sleeping.
//! - `order_sagas` also keeps each order's current step and last error for operators.

mod carts;
mod gateway;
mod invoicing;
mod reserving;
pub mod routes;
mod steps;
mod together;

pub use gateway::{GatewayAnswer, GatewayRequest, HttpGateway};

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use domain::cart::Cart;
use domain::order::{InvoiceBook, Order};
use domain::payment::{Payment, PaymentGateway};
use domain::promotion::Promotion;
use domain::stock::Stock;
use domain::Clock;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use store::{EventStore, LogEvent, Repository, StoreError};
use tracing::Instrument as _;
use worker_kit::{advance_checkpoint, Checkpoint, Consumer, ConsumerError, ReadDb, WorkerError};

/// The saga's checkpoint name.
pub const NAME: &str = "order_saga";

/// Settings, with their defaults in [`SagaConfig::default`].
#[derive(Debug, Clone)]
pub struct SagaConfig {
    /// How long reserved stock waits for payment (`SHOP_RESERVATION_TTL_SECS`).
    pub reservation_ttl: chrono::Duration,
    /// Longest wait for one gateway call; an authorisation that takes longer fails with
    /// `payment_timeout`.
    pub gateway_timeout: Duration,
    /// Log events per round.
    pub batch_size: u32,
    /// Orders reconciled at once.
    pub concurrency: usize,
    /// An open guest cart untouched this long expires (`SHOP_GUEST_CART_TTL_DAYS`).
    pub guest_cart_ttl: chrono::Duration,
    /// An open customer cart untouched this long expires (`SHOP_CUSTOMER_CART_TTL_DAYS`).
    pub customer_cart_ttl: chrono::Duration,
    /// A customer's cart untouched this long gets one reminder (`SHOP_CART_REMINDER_HOURS`;
    /// `None`: no reminders).
    pub cart_reminder: Option<chrono::Duration>,
}

impl Default for SagaConfig {
    fn default() -> Self {
        Self {
            reservation_ttl: chrono::Duration::minutes(15),
            gateway_timeout: Duration::from_secs(10),
            batch_size: 500,
            concurrency: 64,
            guest_cart_ttl: chrono::Duration::days(7),
            customer_cart_ttl: chrono::Duration::days(90),
            cart_reminder: None,
        }
    }
}

/// The repositories the saga writes through; share the command API's, so one process keeps
/// one cache and one lock per aggregate.
#[derive(Clone)]
pub struct Repos {
    pub orders: Repository<Order>,
    pub payments: Repository<Payment>,
    pub stock: Repository<Stock>,
    pub invoices: Repository<InvoiceBook>,
    pub promotions: Repository<Promotion>,
    pub carts: Repository<Cart>,
}

impl Repos {
    pub fn new(store: &EventStore) -> Self {
        Self {
            orders: Repository::new(store.clone(), ()),
            payments: Repository::new(store.clone(), ()),
            stock: Repository::new(store.clone(), ()).with_snapshots(100),
            invoices: Repository::new(store.clone(), ()),
            promotions: Repository::new(store.clone(), ()).with_snapshots(100),
            carts: Repository::new(store.clone(), ()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Checkpoint(#[from] WorkerError),
    #[error("saga database: {0}")]
    Db(#[from] sqlx::Error),
    /// An aggregate refused a command the saga did not expect to be refused.
    #[error("{aggregate} refused {action}: {reason}")]
    Refused { aggregate: &'static str, action: &'static str, reason: String },
    #[error("concurrent writers won every attempt at {0}")]
    Conflict(&'static str),
    /// The gateway could not be reached or did not answer; retried later under the same key.
    #[error("payment gateway: {0}")]
    Gateway(String),
    #[error("malformed order stream id {0}")]
    Malformed(String),
    /// The append that was to take this order's step with other orders' failed as a whole.
    #[error("the append shared with other orders failed: {0}")]
    Batch(String),
    /// Raised by [`OrderSaga::crash_after`]: stands in for the process dying at that point.
    #[cfg(feature = "faults")]
    #[error("injected crash")]
    Injected,
}

impl ConsumerError for SagaError {
    fn is_concurrent(&self) -> bool {
        matches!(self, SagaError::Checkpoint(WorkerError::Concurrent))
    }
}

/// Where an order's saga stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SagaStep {
    /// Paid, invoiced and (when shipped) past every refund.
    Completed,
    /// Cancelled, with stock released and money given back.
    Compensated,
    /// A payment event whose order is not visible here: nothing to do.
    UnknownOrder,
    /// The last attempt failed; the saga looks again at `due_at_ms`.
    Retrying,
}

impl SagaStep {
    pub fn as_str(self) -> &'static str {
        match self {
            SagaStep::Completed => "completed",
            SagaStep::Compensated => "compensated",
            SagaStep::UnknownOrder => "unknown_order",
            SagaStep::Retrying => "retrying",
        }
    }
}

impl std::str::FromStr for SagaStep {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        [SagaStep::Completed, SagaStep::Compensated, SagaStep::UnknownOrder, SagaStep::Retrying]
            .into_iter()
            .find(|step| step.as_str() == s)
            .ok_or_else(|| format!("unknown saga step {s:?}"))
    }
}

/// Where one order's saga stands, for operators (`GET /api/v1/admin/orders/{id}/saga`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct SagaState {
    pub order_id: String,
    pub step: SagaStep,
    /// When the saga looks at the order again by itself (expiry or retry).
    pub due_at_ms: Option<i64>,
    /// Consecutive failed attempts.
    pub attempts: i64,
    pub last_error: Option<String>,
    pub updated_at_ms: i64,
}

/// What one reconciliation left the order waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub step: SagaStep,
    pub due: Option<DateTime<Utc>>,
}

/// How long the worker sleeps when idle before looking at the log and the deadlines again
/// (appends in this process wake it at once).
const IDLE: Duration = Duration::from_millis(50);
/// How long new events may gather after a wake-up.
const GATHER: Duration = Duration::from_millis(5);

pub struct OrderSaga {
    store: EventStore,
    db: ReadDb,
    pub(crate) repos: Repos,
    pub(crate) gateway: Arc<dyn PaymentGateway>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: SagaConfig,
    /// A lock per order being reconciled in this process.
    busy: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The tenants' invoice books, where orders wait to be invoiced together.
    books: invoicing::Books,
    /// The tenants' stock queues, where orders wait to be reserved together.
    reservations: reserving::Queues,
    /// Steps left before an injected crash (tests).
    #[cfg(feature = "faults")]
    budget: worker_kit::CrashBudget,
    /// Invoice appends still to fail as if writers elsewhere won every attempt (tests).
    #[cfg(feature = "faults")]
    lost_invoices: std::sync::atomic::AtomicU32,
}

impl OrderSaga {
    pub fn new(
        store: EventStore,
        db: ReadDb,
        repos: Repos,
        gateway: Arc<dyn PaymentGateway>,
        clock: Arc<dyn Clock>,
        config: SagaConfig,
    ) -> Self {
        Self {
            store,
            db,
            repos,
            gateway,
            clock,
            config,
            busy: Default::default(),
            books: invoicing::books(),
            reservations: reserving::queues(),
            #[cfg(feature = "faults")]
            budget: worker_kit::CrashBudget::default(),
            #[cfg(feature = "faults")]
            lost_invoices: Default::default(),
        }
    }

    /// Reconciles order `id` once no other task of this process does.
    async fn reconcile_locked(&self, id: &str) -> Result<Outcome, SagaError> {
        let lock = Arc::clone(self.busy().entry(id.to_owned()).or_default());
        let result = {
            let _held = lock.lock().await;
            self.reconcile(id).await
        };
        self.unlock(id, lock);
        result
    }

    fn busy(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<()>>>> {
        self.busy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets an order's lock when nobody else holds or waits for it.
    fn unlock(&self, id: &str, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut busy = self.busy();
        drop(lock);
        if busy.get(id).is_some_and(|l| Arc::strong_count(l) == 1) {
            busy.remove(id);
        }
    }

    /// Reconciles each order (and payment) stream this process commits to, at once, until
    /// `stop`: a placed order does not wait for the log batch it lands in. Streams whose
    /// reconciliation is already running are left to it (it goes on until the order waits);
    /// what this misses (a full channel, a failure) the log still brings. Outcomes are
    /// recorded by the log's look, not here.
    ///
    /// It subscribes at the call, so commits made after it are seen even before the first poll.
    pub fn follow_commits(
        self: Arc<Self>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let commits = self.store.commits();
        self.reconcile_commits(commits, stop)
    }

    async fn reconcile_commits(
        self: Arc<Self>,
        mut commits: tokio::sync::broadcast::Receiver<store::AppendedStream>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        use tokio::sync::broadcast::error::RecvError;
        let slots = Arc::new(tokio::sync::Semaphore::new(self.config.concurrency.max(1)));
        loop {
            let next = tokio::select! {
                _ = stop.changed() => return,
                next = commits.recv() => next,
            };
            let (id, traceparent) = match next {
                Ok(s) if s.aggregate_type == Order::TYPE || s.aggregate_type == Payment::TYPE => (s.aggregate_id, s.traceparent),
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            };
            if self.busy().contains_key(&id) {
                continue;
            }
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
            let saga = Arc::clone(&self);
            // Continues the trace of the write that woke it, as the log's look does.
            let span = store::trace::span(|| tracing::info_span!("saga.reconcile", order = %id));
            store::trace::continue_from(&span, traceparent.as_deref());
            tokio::spawn(
                async move {
                    let _slot = slot;
                    if let Err(e) = saga.reconcile_locked(&id).await {
                        tracing::debug!(order = %id, error = %e, "order saga step failed; the log's look retries it");
                    }
                }
                .instrument(span),
            );
        }
    }

    /// The saga on the consumer driver, with its batch size.
    pub fn driver(self: Arc<Self>) -> worker_kit::Driver<OrderSaga> {
        let (store, batch_size, db) = (self.store.clone(), self.config.batch_size, self.db.clone());
        worker_kit::Driver::single("saga", store, self).with_batch_size(batch_size).with_pacing(IDLE, GATHER).with_health_db(db)
    }

    /// Fails with [`SagaError::Injected`] when the saga is about to take its `steps + 1`-th
    /// step (a command or a gateway call), writing nothing more: a crash at that point.
    #[cfg(feature = "faults")]
    pub fn crash_after(&self, steps: u32) {
        self.budget.set(steps);
    }

    /// The next `n` invoice appends fail as if writers in other processes won every attempt
    /// at the invoice book.
    #[cfg(feature = "faults")]
    pub fn lose_invoices(&self, n: u32) {
        self.lost_invoices.store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether this invoice append is one [`OrderSaga::lose_invoices`] asked to fail.
    pub(crate) fn invoice_lost(&self) -> bool {
        #[cfg(feature = "faults")]
        {
            use std::sync::atomic::Ordering::SeqCst;
            return self.lost_invoices.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1)).is_ok();
        }
        #[cfg(not(feature = "faults"))]
        false
    }

    /// Counts one step against the crash budget (tests); free otherwise.
    pub(crate) fn tick(&self) -> Result<(), SagaError> {
        #[cfg(feature = "faults")]
        if !self.budget.tick() {
            return Err(SagaError::Injected);
        }
        Ok(())
    }

    /// Reconciles `ids` concurrently. An injected crash stops the round with nothing recorded.
    async fn reconcile_all(
        &self,
        ids: Vec<String>,
        traces: &HashMap<String, String>,
    ) -> Result<Vec<(String, Result<Outcome, SagaError>)>, SagaError> {
        let results: Vec<(String, Result<Outcome, SagaError>)> = futures::stream::iter(ids)
            .map(|id| {
                let span = store::trace::span(|| tracing::info_span!("saga.reconcile", order = %id));
                store::trace::continue_from(&span, traces.get(&id).map(String::as_str));
                async move {
                    let result = self.reconcile_locked(&id).await;
                    (id, result)
                }
                .instrument(span)
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        #[cfg(feature = "faults")]
        if results.iter().any(|(_, r)| matches!(r, Err(SagaError::Injected))) {
            return Err(SagaError::Injected);
        }
        Ok(results)
    }

    /// Orders whose deadline has passed by the injected clock; with `held`, only those a
    /// consumer group last brought from one of these (topic, partition) pairs.
    async fn due(&self, held: Option<&[(String, i32)]>) -> Result<Vec<String>, SagaError> {
        let now = self.clock.now().timestamp_millis();
        let filter = match held {
            None => String::new(),
            Some([]) => return Ok(Vec::new()),
            Some(held) => {
                let pairs: Vec<String> =
                    (0..held.len()).map(|i| format!("(source_topic = ${} AND source_partition = ${})", i * 2 + 2, i * 2 + 3)).collect();
                format!(" AND ({})", pairs.join(" OR "))
            }
        };
        let sql = format!(
            "SELECT order_id FROM order_sagas WHERE due_at_ms IS NOT NULL AND due_at_ms <= $1{filter} ORDER BY due_at_ms LIMIT 500"
        );
        let mut query = sqlx::query(&sql).bind(now);
        for (topic, partition) in held.unwrap_or_default() {
            query = query.bind(topic.as_str()).bind(i64::from(*partition));
        }
        let rows = query.fetch_all(&self.db.pool).await?;
        rows.iter().map(|r| r.try_get::<String, _>(0).map_err(SagaError::from)).collect()
    }

    /// Reconciles the order and payment streams `events` touch (an order and its payment share
    /// one stream id, so each once), each continuing the trace of its latest event, and
    /// records where each stands and the carts' deadlines in `tx`.
    async fn handle<'e>(
        &self,
        events: impl Iterator<Item = &'e LogEvent> + Clone,
        sources: &Sources,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, SagaError> {
        let mut seen = HashSet::new();
        let ids: Vec<String> = events
            .clone()
            .filter(|e| e.aggregate_type == Order::TYPE || e.aggregate_type == Payment::TYPE)
            .filter(|e| seen.insert(e.aggregate_id.as_str()))
            .map(|e| e.aggregate_id.clone())
            .collect();
        let traces: HashMap<String, String> = events
            .clone()
            .filter_map(|e| store::trace::of_metadata(&e.metadata).map(|tp| (e.aggregate_id.clone(), tp.to_owned())))
            .collect();
        let results = self.reconcile_all(ids, &traces).await?;
        let mut seen = HashSet::new();
        let carts: Vec<String> = events
            .filter(|e| e.aggregate_type == Cart::TYPE && seen.insert(e.aggregate_id.as_str()))
            .map(|e| e.aggregate_id.clone())
            .collect();
        let carts = self.cart_deadlines(&carts).await?;
        let mut tx = self.db.begin().await?;
        self.record_all(&mut tx, &results, sources).await?;
        self.schedule_carts(&mut tx, &carts).await?;
        Ok(tx)
    }

    /// Reconciles the orders whose deadline has come (all, or those of the partitions `held`)
    /// and records where they stand.
    async fn sweep_due(&self, held: Option<&[(String, i32)]>) -> Result<(), SagaError> {
        let due = self.due(held).await?;
        if due.is_empty() {
            return Ok(());
        }
        let results = self.reconcile_all(due, &HashMap::new()).await?;
        let mut tx = self.db.begin().await?;
        self.record_all(&mut tx, &results, &Sources::new()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes where each order stands (one statement per 100 orders), and each failure with
    /// when to try again. `sources` holds the (topic, partition) that brought each order, when
    /// a consumer group did; an order without one keeps the one it had.
    async fn record_all(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        results: &[(String, Result<Outcome, SagaError>)],
        sources: &Sources,
    ) -> Result<(), SagaError> {
        let now = self.clock.now().timestamp_millis();
        let done: Vec<(&String, &Outcome)> = results.iter().filter_map(|(id, r)| r.as_ref().ok().map(|o| (id, o))).collect();
        for chunk in done.chunks(100) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let n = |k: usize| i * 7 + k;
                    format!("(${}, ${}, ${}, ${}, 0, NULL, ${}, ${}, ${})", n(1), n(2), n(3), n(4), n(5), n(6), n(7))
                })
                .collect();
            let sql = format!(
                "INSERT INTO order_sagas (order_id, tenant, step, due_at_ms, attempts, last_error, updated_at_ms, source_topic, \
                 source_partition) VALUES {} \
                 ON CONFLICT (order_id) DO UPDATE SET step = excluded.step, due_at_ms = excluded.due_at_ms, attempts = 0, \
                 last_error = NULL, updated_at_ms = excluded.updated_at_ms, \
                 source_topic = COALESCE(excluded.source_topic, order_sagas.source_topic), \
                 source_partition = COALESCE(excluded.source_partition, order_sagas.source_partition)",
                rows.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for (id, outcome) in chunk {
                let tenant = tenant_of(id);
                let source = sources.get(id.as_str());
                query = query
                    .bind(id.as_str())
                    .bind(tenant)
                    .bind(outcome.step.as_str())
                    .bind(outcome.due.map(|d| d.timestamp_millis()))
                    .bind(now)
                    .bind(source.map(|(topic, _)| topic.clone()))
                    .bind(source.map(|(_, partition)| i64::from(*partition)));
            }
            query.execute(&mut **tx).await?;
        }
        for (id, result) in results {
            if let Err(e) = result {
                self.record_failure(tx, id, e, sources.get(id.as_str())).await?;
            }
        }
        Ok(())
    }

    /// Writes an order's failure and when to try again, with the (topic, partition) that
    /// brought it where a consumer group did: the member holding that partition is the one
    /// whose sweep tries again, so an order failing on its first look must not lose it.
    async fn record_failure(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        id: &str,
        e: &SagaError,
        source: Option<&(String, i32)>,
    ) -> Result<(), SagaError> {
        let now = self.clock.now();
        let attempts: i64 = sqlx::query("SELECT attempts FROM order_sagas WHERE order_id = $1")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?
            .unwrap_or(0);
        let backoff = chrono::Duration::milliseconds(500 * (1i64 << attempts.min(6)));
        tracing::warn!(order = id, attempts = attempts + 1, error = %e, "order saga step failed; retrying later");
        sqlx::query(
            "INSERT INTO order_sagas (order_id, tenant, step, due_at_ms, attempts, last_error, updated_at_ms, source_topic, \
             source_partition) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (order_id) DO UPDATE SET step = excluded.step, \
             due_at_ms = excluded.due_at_ms, attempts = excluded.attempts, last_error = excluded.last_error, \
             updated_at_ms = excluded.updated_at_ms, source_topic = COALESCE(excluded.source_topic, order_sagas.source_topic), \
             source_partition = COALESCE(excluded.source_partition, order_sagas.source_partition)",
        )
        .bind(id)
        .bind(tenant_of(id))
        .bind(SagaStep::Retrying.as_str())
        .bind((now + backoff).timestamp_millis())
        .bind(attempts + 1)
        .bind(e.to_string())
        .bind(now.timestamp_millis())
        .bind(source.map(|(topic, _)| topic.clone()))
        .bind(source.map(|(_, partition)| i64::from(*partition)))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Where each order's saga stands; `None` if the saga has not seen the order.
    pub async fn state(db: &ReadDb, order_stream_id: &str) -> Result<Option<SagaState>, SagaError> {
        let row = sqlx::query("SELECT order_id, step, due_at_ms, attempts, last_error, updated_at_ms FROM order_sagas WHERE order_id = $1")
            .bind(order_stream_id)
            .fetch_optional(&db.pool)
            .await?;
        row.map(|r| {
            let step: String = r.try_get(1)?;
            Ok(SagaState {
                order_id: r.try_get(0)?,
                step: step.parse().map_err(|e: String| SagaError::Malformed(e))?,
                due_at_ms: r.try_get(2)?,
                attempts: r.try_get(3)?,
                last_error: r.try_get(4)?,
                updated_at_ms: r.try_get(5)?,
            })
        })
        .transpose()
    }
}

/// The tenant of an order's stream id.
fn tenant_of(id: &str) -> &str {
    domain::StreamId::parse(id).map_or("", |s| s.tenant)
}

#[async_trait]
impl Consumer for OrderSaga {
    type Error = SagaError;

    fn name(&self) -> &'static str {
        NAME
    }

    async fn checkpoint(&self) -> Result<Checkpoint, SagaError> {
        Ok(self.db.checkpoint(NAME).await?)
    }

    /// Reconciles every order the batch touches (an order and its payment share one stream
    /// id, so each once), records where each stands and moves the checkpoint, in one
    /// transaction. An injected crash records nothing.
    async fn consume(&self, from: Checkpoint, events: &[LogEvent]) -> Result<(), SagaError> {
        let Some(last) = events.last() else {
            return Ok(());
        };
        let mut tx = self.handle(events.iter(), &Sources::new()).await?;
        advance_checkpoint(&mut tx, NAME, from.map(|(c, _)| c), last.cursor, events.len() as i64).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The orders whose deadline has come (expiry, or a retry after a failure), and the carts
    /// (expiry, reminder).
    async fn tick(&self) -> Result<bool, SagaError> {
        let carts = self.sweep_carts().await?;
        self.sweep_due(None).await?;
        // Swept orders are looked at again only when due again: no reason to hurry back.
        Ok(carts)
    }
}

/// The (topic, partition) that brought each order, by stream id.
type Sources = HashMap<String, (String, i32)>;

/// The saga as a consumer group member (`SHOP_EVENT_SOURCE=kafka`, group `order-saga`) on the
/// order, payment and cart topics. Partition *i* of the order topic and of the payment topic
/// go to one member (range assignment; an order and its payment share a key), so each order is
/// reconciled by one member at a time, and a member that dies leaves its partitions, and the
/// orders in them, to the others. The group's committed offsets are where a member starts: a
/// batch is durable (every order in it reconciled and recorded) before they move, and a batch
/// given again only repeats reconciliations, which change nothing.
#[async_trait]
impl worker_kit::SourcedConsumer for OrderSaga {
    fn name(&self) -> &'static str {
        NAME
    }

    fn handles(&self, aggregate_type: &str) -> bool {
        [Order::TYPE, Payment::TYPE, Cart::TYPE].contains(&aggregate_type)
    }

    async fn start_offsets(&self) -> Result<Option<worker_kit::Offsets>, WorkerError> {
        Ok(None)
    }

    async fn consume_sourced(&self, batch: &[worker_kit::Sourced]) -> Result<(), String> {
        let sources: Sources = batch
            .iter()
            .filter(|m| m.event.aggregate_type != Cart::TYPE)
            .map(|m| (m.event.aggregate_id.clone(), (m.topic.clone(), m.partition)))
            .collect();
        worker_kit::observed_sourced("saga", NAME, batch, async {
            let tx = self.handle(batch.iter().map(|m| &m.event), &sources).await.map_err(|e| e.to_string())?;
            tx.commit().await.map_err(|e| e.to_string())
        })
        .await
    }

    /// The deadlines of the orders in the partitions this member holds; carts' deadlines on
    /// every member (a cart command that is not due any more is refused, so a repeat changes
    /// nothing).
    async fn tick_sourced(&self, assigned: &[(String, i32)]) -> Result<(), String> {
        self.sweep_carts().await.map_err(|e| e.to_string())?;
        self.sweep_due(Some(assigned)).await.map_err(|e| e.to_string())
    }
}
