//! The one consumer driver: every reader of the global log (the SQL projections, the product
//! documents, the search index, the order saga, the notifier, the relay to Kafka) runs on it.
//!
//! A [`Consumer`] says where it stands ([`Consumer::checkpoint`]) and handles a batch of the
//! log right after that point ([`Consumer::consume`]), moving its checkpoint past the whole
//! batch, events of no interest to it included: a batch that holds none of its events still
//! moves it, so it never looks behind while it is current. The [`Driver`] does the rest, the
//! same way for all of them:
//!
//! - one step ([`Driver::try_process_next`]): read the members' checkpoints, read the log once
//!   from the one furthest behind, give each member the part after its own checkpoint, then
//!   let each do its timed work ([`Consumer::tick`]); members run one after another, or all
//!   at once where their store takes concurrent writers ([`Driver::with_concurrent_members`]);
//! - a member that fails is retried with a growing backoff without holding the others back;
//!   after [`ATTEMPTS_BEFORE_PARKING`] failures in a row a member that can park
//!   ([`Consumer::can_park`]) gets its batch event by event and parks the events that fail;
//! - the loop ([`Driver::run`]): again at once while there is more, otherwise after a pause or
//!   as soon as this process appends (then a few milliseconds later, so events arrive in
//!   batches);
//! - per member: `shop_<kind>_batch_duration_seconds`, `shop_<kind>_events_total`,
//!   `shop_<kind>_lag_seconds` (now − when the oldest event of the batch was recorded),
//!   `shop_<kind>_failures_total`, a `<kind>.batch` span linked to the traces of its events,
//!   and its last error for the status pages.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use store::{EventStore, LogCursor, LogEvent};
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::{Checkpoint, ATTEMPTS_BEFORE_PARKING};

/// The errors of a consumer.
pub trait ConsumerError: std::error::Error + Send + Sync + 'static {
    /// Another worker moved the checkpoint first: the batch was dropped, which is no failure.
    fn is_concurrent(&self) -> bool {
        false
    }
}

/// A reader of the global log.
#[async_trait]
pub trait Consumer: Send + Sync + 'static {
    type Error: ConsumerError + From<store::StoreError>;

    /// Stable name: the checkpoint key, the `name` label of its metrics, what operators see.
    fn name(&self) -> &'static str;

    /// Where it stands.
    async fn checkpoint(&self) -> Result<Checkpoint, Self::Error>;

    /// Up to where its readers see its work (read-your-writes, status pages): the checkpoint,
    /// unless it holds processed work back to write it out in larger pieces (the search index
    /// commits on a timer).
    async fn visible(&self) -> Result<Checkpoint, Self::Error> {
        self.checkpoint().await
    }

    /// Handles `events`, the log right after `from`, and moves the checkpoint past the last of
    /// them (events it has no use for included): in one transaction with its effects where
    /// they share a store, after them otherwise (at least once).
    async fn consume(&self, from: Checkpoint, events: &[LogEvent]) -> Result<(), Self::Error>;

    /// Work on the consumer's own clock (due deadlines, retries of failed sends), after every
    /// step; `true` when it found some.
    async fn tick(&self) -> Result<bool, Self::Error> {
        Ok(false)
    }

    /// Whether a batch that keeps failing may be taken apart and its failing events parked.
    fn can_park(&self) -> bool {
        false
    }

    /// Sets `event` (the log right after `from`) aside with `error` and moves the checkpoint
    /// past it.
    async fn park(&self, _from: Checkpoint, _event: &LogEvent, _error: &str) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// This many log events were read (some may concern no member), or a member's timed work
    /// found something to do.
    Worked(usize),
    /// Nothing new in the log and nothing due.
    Idle,
}

/// How a member is doing, for status pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReaderState {
    Running,
    /// Its last batch failed and is being retried (with backoff) until it passes.
    Retrying,
    /// `shop replay` is building a replacement.
    Rebuilding,
}

#[derive(Debug, Default)]
struct Health {
    /// Failed batches in a row.
    failures: u32,
    /// When the first of them failed.
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// When the loop may try again, and the backoff that led there.
    retry_at: Option<(Instant, Duration)>,
    last_error: Option<String>,
}

/// Runs a group of consumers of one kind over the log (one member for most).
pub struct Driver<C: Consumer> {
    /// The metrics family: `projection`, `relay`, `saga`, `notifier`.
    kind: &'static str,
    store: EventStore,
    members: Vec<Arc<C>>,
    batch_size: u32,
    /// Pause when there is nothing to do.
    idle: Duration,
    /// How long new events may gather after a wake-up.
    gather: Duration,
    health: Mutex<HashMap<&'static str, Health>>,
    /// Where failures are recorded for other processes' status pages (`reader_health`).
    health_db: Option<crate::ReadDb>,
    /// Whether the members' checkpoints, batches and timed work run at the same time in a
    /// step (a step then takes as long as its slowest member, not the sum of them all).
    concurrent: bool,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl<C: Consumer> Driver<C> {
    pub fn new(kind: &'static str, store: EventStore, members: Vec<Arc<C>>) -> Self {
        // Failure counters exist from the start, so that the first failure shows as an increase.
        for member in &members {
            metrics::counter!(format!("shop_{kind}_failures_total"), "name" => member.name()).increment(0);
        }
        Self {
            kind,
            store,
            members,
            batch_size: 500,
            idle: Duration::from_millis(50),
            gather: Duration::from_millis(10),
            health: Mutex::new(HashMap::new()),
            health_db: None,
            concurrent: false,
        }
    }

    /// Runs the members' work in each step at the same time rather than one after another:
    /// for members whose stores take concurrent writers (SQLite has one writer, so members
    /// there would only queue on its lock).
    pub fn with_concurrent_members(mut self, concurrent: bool) -> Self {
        self.concurrent = concurrent;
        self
    }

    /// Records each member's failures in `db` (`reader_health`) while they last, so that any
    /// process shows them.
    pub fn with_health_db(mut self, db: crate::ReadDb) -> Self {
        self.health_db = Some(db);
        self
    }

    pub fn single(kind: &'static str, store: EventStore, member: Arc<C>) -> Self {
        Self::new(kind, store, vec![member])
    }

    /// Log events read per step.
    pub fn with_batch_size(mut self, n: u32) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// The pause when idle, and how long events may gather after a wake-up.
    pub fn with_pacing(mut self, idle: Duration, gather: Duration) -> Self {
        self.idle = idle;
        self.gather = gather;
        self
    }

    pub fn members(&self) -> &[Arc<C>] {
        &self.members
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// The member called `name`.
    pub fn member(&self, name: &str) -> Option<&Arc<C>> {
        self.members.iter().find(|m| m.name() == name)
    }

    /// The last error of member `name` while it is failing.
    pub fn last_error(&self, name: &str) -> Option<String> {
        self.health.lock().unwrap_or_else(|p| p.into_inner()).get(name).and_then(|h| h.last_error.clone())
    }

    /// One step for every member, failing ones included (tests and tools drive this): the
    /// first member error is returned after every member had its turn.
    pub async fn try_process_next(&self) -> Result<Outcome, C::Error> {
        self.step(false).await
    }

    async fn step(&self, respect_backoff: bool) -> Result<Outcome, C::Error> {
        let now = Instant::now();
        let due: Vec<&Arc<C>> = if respect_backoff {
            let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
            self.members.iter().filter(|m| health.get(m.name()).and_then(|h| h.retry_at).is_none_or(|(at, _)| at <= now)).collect()
        } else {
            self.members.iter().collect()
        };
        let checkpoints: Vec<_> = due.iter().map(|member| member.checkpoint()).collect();
        let checkpoints = self.each(checkpoints).await.into_iter().collect::<Result<Vec<_>, _>>()?;
        let Some(from) = checkpoints.iter().map(|c| c.map(|(c, _)| c).unwrap_or_default()).min() else {
            return Ok(Outcome::Idle);
        };
        let events = self.store.read_log(from, self.batch_size).await?;
        let mut batches = Vec::with_capacity(due.len());
        for (member, checkpoint) in due.iter().zip(checkpoints) {
            let after = checkpoint.map(|(c, _)| c).unwrap_or_default();
            let mine = &events[events.partition_point(|e| e.cursor <= after)..];
            if !mine.is_empty() {
                batches.push(self.consume(member, checkpoint, mine));
            }
        }
        let mut first_error = self.each(batches).await.into_iter().find_map(Result::err);
        let ticks: Vec<_> = due.iter().map(|member| member.tick()).collect();
        let mut ticked = false;
        for (member, result) in due.iter().zip(self.each(ticks).await) {
            match result {
                Ok(found) => ticked |= found,
                Err(e) => {
                    tracing::warn!(reader = member.name(), error = %e, "timed work failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None if events.is_empty() && !ticked => Ok(Outcome::Idle),
            None => Ok(Outcome::Worked(events.len())),
        }
    }

    /// Runs `work`, all at once when the members run concurrently, one after another
    /// otherwise; the results in the order of `work`.
    async fn each<Fut: std::future::Future>(&self, work: Vec<Fut>) -> Vec<Fut::Output> {
        if self.concurrent {
            return futures::future::join_all(work).await;
        }
        let mut done = Vec::with_capacity(work.len());
        for future in work {
            done.push(future.await);
        }
        done
    }

    /// Gives one member its batch, with metrics, span and failure bookkeeping.
    async fn consume(&self, member: &C, checkpoint: Checkpoint, events: &[LogEvent]) -> Result<(), C::Error> {
        let name = member.name();
        let started = Instant::now();
        let span = batch_span(span_name(self.kind), name, events.iter());
        let result = member.consume(checkpoint, events).instrument(span).await;
        let result = match result {
            Err(e) if !e.is_concurrent() && member.can_park() && self.failures(name) + 1 >= ATTEMPTS_BEFORE_PARKING => {
                tracing::warn!(reader = name, error = %e, "batch keeps failing; applying it event by event");
                self.isolate(member, checkpoint, events).await
            }
            other => other,
        };
        let record = {
            let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
            let h = health.entry(name).or_default();
            match &result {
                Ok(()) => {
                    observe_batch(self.kind, name, events.first().map(|e| e.recorded_at), events.len(), started);
                    let recovered = h.failures > 0;
                    if recovered {
                        tracing::info!(reader = name, kind = self.kind, failures = h.failures, "reader recovered");
                    }
                    *h = Health::default();
                    recovered.then_some(None)
                }
                // Another replica moving the checkpoint first is not a failure.
                Err(e) if e.is_concurrent() => None,
                Err(e) => {
                    h.failures += 1;
                    let since = *h.since.get_or_insert_with(chrono::Utc::now);
                    let backoff = h.retry_at.map_or(FIRST_BACKOFF, |(_, b)| (b * 2).min(MAX_BACKOFF));
                    h.retry_at = Some((Instant::now() + backoff, backoff));
                    h.last_error = Some(e.to_string());
                    tracing::warn!(reader = name, kind = self.kind, error = %e, failures = h.failures, retry_in_ms = backoff.as_millis() as u64, "batch failed");
                    metrics::counter!(format!("shop_{}_failures_total", self.kind), "name" => name).increment(1);
                    Some(Some((e.to_string(), h.failures, since)))
                }
            }
        };
        if let (Some(failing), Some(db)) = (record, &self.health_db) {
            if let Err(e) = crate::health::record(db, name, failing).await {
                tracing::debug!(reader = name, error = %e, "reader health not recorded");
            }
        }
        result
    }

    fn failures(&self, name: &str) -> u32 {
        self.health.lock().unwrap_or_else(|p| p.into_inner()).get(name).map_or(0, |h| h.failures)
    }

    /// Applies `events` one at a time, each with its checkpoint; an event that fails alone is
    /// parked with its error, and the checkpoint moves past it.
    async fn isolate(&self, member: &C, mut checkpoint: Checkpoint, events: &[LogEvent]) -> Result<(), C::Error> {
        for event in events {
            let one = std::slice::from_ref(event);
            if let Err(e) = member.consume(checkpoint, one).await {
                if e.is_concurrent() {
                    return Err(e);
                }
                tracing::error!(reader = member.name(), position = event.cursor.position, aggregate_id = %event.aggregate_id, error = %e, "event parked as a dead letter");
                member.park(checkpoint, event, &e.to_string()).await?;
            }
            checkpoint = Some((event.cursor, checkpoint.map_or(0, |(_, n)| n) + 1));
        }
        Ok(())
    }

    /// Runs steps until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let wake = self.store.appended();
        loop {
            if *stop.borrow() {
                return;
            }
            let stepped = tokio::select! {
                _ = stop.changed() => return,
                stepped = self.step(true) => stepped,
            };
            let wait = match stepped {
                Ok(Outcome::Worked(n)) if n >= self.batch_size as usize => continue,
                // Caught up: let a few milliseconds of events gather, so a busy log is read in
                // batches instead of once per command.
                Ok(Outcome::Worked(_)) => self.gather,
                Ok(Outcome::Idle) => self.idle,
                // Failing members wait out their own backoff; the others go on.
                Err(_) => self.next_retry().unwrap_or(self.idle).min(self.idle.max(Duration::from_millis(10))),
            };
            tokio::select! {
                _ = stop.changed() => {}
                _ = wake.notified() => tokio::time::sleep(self.gather).await,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Time until the earliest failing member may try again.
    fn next_retry(&self) -> Option<Duration> {
        let now = Instant::now();
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        health.values().filter_map(|h| h.retry_at).map(|(at, _)| at.saturating_duration_since(now)).min()
    }

    /// Steps until every member has processed the log up to the last event committed before
    /// the call (tools and tests). A transaction still open anywhere in the cluster can hide
    /// later events for a moment (see `EventStore::read_log`), so an idle log is only trusted
    /// once that event has been processed.
    pub async fn catch_up(&self) -> Result<(), C::Error> {
        let head = self.store.head_position().await?;
        loop {
            if self.try_process_next().await? == Outcome::Idle {
                let mut all = true;
                for member in &self.members {
                    all &= reached(&self.store, member.visible().await?, head).await?;
                }
                if all {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

/// Whether a reader at `checkpoint` has processed the event at global `position` (always for
/// position 0).
pub async fn reached(store: &EventStore, checkpoint: Checkpoint, position: i64) -> Result<bool, store::StoreError> {
    if position == 0 {
        return Ok(true);
    }
    match store.cursor_of(position).await? {
        Some(target) => Ok(checkpoint.is_some_and(|(c, _)| c >= target)),
        None => Ok(false),
    }
}

/// Waits up to `timeout` until `consumer` has processed the event at global `position`
/// (read-your-writes); `false` if it has not by then.
pub async fn wait_for<C: Consumer>(consumer: &C, store: &EventStore, position: i64, timeout: Duration) -> Result<bool, C::Error> {
    poll_until(timeout, || async { Ok(reached(store, consumer.visible().await?, position).await?) }).await
}

/// A reader's progress, for `/admin/projections`.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct ReaderStatus {
    pub name: &'static str,
    /// Global position of the last event processed.
    pub position: i64,
    pub transaction_id: i64,
    /// Log events processed since the reader started (or its read model was rebuilt).
    pub events: i64,
    /// Events written but not yet processed (approximate under concurrent writers); `null`
    /// when unknown (a Kafka-fed projection while the brokers do not answer).
    pub lag_events: Option<i64>,
    /// Age of the oldest event not yet processed; 0 when caught up; `null` when unknown (a
    /// Kafka-fed projection with messages pending).
    pub lag_ms: Option<i64>,
    /// Where the events come from: `log` or `kafka`.
    pub source: &'static str,
    pub state: ReaderState,
    pub last_error: Option<String>,
}

/// The progress of a reader of the log at `checkpoint`, with its lag behind `head`.
pub async fn status_at(
    store: &EventStore,
    head: i64,
    name: &'static str,
    checkpoint: Checkpoint,
    last_error: Option<String>,
) -> Result<ReaderStatus, store::StoreError> {
    let (cursor, events) = checkpoint.unwrap_or_default();
    let next = store.read_log(cursor, 1).await?;
    Ok(ReaderStatus {
        name,
        position: cursor.position,
        transaction_id: cursor.transaction_id,
        events,
        lag_events: Some(if next.is_empty() { 0 } else { (head - cursor.position).max(1) }),
        lag_ms: Some(next.first().map_or(0, |e| (chrono::Utc::now() - e.recorded_at).num_milliseconds().max(0))),
        source: "log",
        state: if last_error.is_some() { ReaderState::Retrying } else { ReaderState::Running },
        last_error,
    })
}

fn span_name(kind: &'static str) -> &'static str {
    match kind {
        "projection" => "projection.batch",
        "relay" => "relay.publish",
        "saga" => "saga.batch",
        "notifier" => "notifier.batch",
        _ => "batch",
    }
}

/// Metrics of one batch a reader finished: `shop_<kind>_batch_duration_seconds`,
/// `shop_<kind>_events_total` and `shop_<kind>_lag_seconds` (now − when its oldest event was
/// recorded), each labelled `name`.
pub fn observe_batch(kind: &str, name: &str, oldest: Option<chrono::DateTime<chrono::Utc>>, events: usize, started: Instant) {
    let name = name.to_owned();
    metrics::histogram!(format!("shop_{kind}_batch_duration_seconds"), "name" => name.clone()).record(started.elapsed().as_secs_f64());
    metrics::counter!(format!("shop_{kind}_events_total"), "name" => name.clone()).increment(events as u64);
    if let Some(at) = oldest {
        let lag = (chrono::Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::histogram!(format!("shop_{kind}_lag_seconds"), "name" => name).record(lag);
    }
}

/// Handles one batch from a consumer group with the metrics of a log reader of `kind`: the
/// batch's figures when `handle` succeeds ([`observe_batch`]), `shop_<kind>_failures_total`
/// when it fails.
pub async fn observed_sourced<F>(kind: &str, name: &str, batch: &[crate::Sourced], handle: F) -> Result<(), String>
where
    F: std::future::Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    let failures = metrics::counter!(format!("shop_{kind}_failures_total"), "name" => name.to_owned());
    match handle.await {
        Ok(()) => {
            observe_batch(kind, name, batch.iter().map(|m| m.event.recorded_at).min(), batch.len(), started);
            Ok(())
        }
        Err(e) => {
            failures.increment(1);
            Err(e)
        }
    }
}

/// A span for one batch of a reader, linked to the traces of (up to 32 of) its events: a
/// batch serves many requests, so it continues none of them but points at each.
pub fn batch_span<'a>(what: &'static str, name: &str, events: impl ExactSizeIterator<Item = &'a LogEvent>) -> tracing::Span {
    let span = store::trace::span(|| tracing::info_span!("batch", otel.name = what, reader = name, events = events.len()));
    if span.is_disabled() {
        return span;
    }
    let mut seen = std::collections::HashSet::new();
    for tp in events.filter_map(|e| store::trace::of_metadata(&e.metadata)).filter(|tp| seen.insert(*tp)).take(32) {
        store::trace::link_to(&span, Some(tp));
    }
    span
}

/// Polls `reached` every 5 ms until it answers true (then `true`) or `timeout` passes (`false`).
pub async fn poll_until<F, Fut, E>(timeout: Duration, mut reached: F) -> Result<bool, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, E>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if reached().await? {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(5).min(deadline - now)).await;
    }
}

/// Reads the log from `from` in batches of `limit` on a task of its own, two batches ahead of
/// the consumer (rebuilds: the next read overlaps the current batch's work). Ends after an
/// empty batch or an error; abort the handle to stop early.
pub fn read_ahead(
    store: EventStore,
    from: LogCursor,
    limit: u32,
) -> (tokio::sync::mpsc::Receiver<Result<Vec<LogEvent>, store::StoreError>>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let reader = tokio::spawn(async move {
        let mut at = from;
        loop {
            let events = store.read_log(at, limit).await;
            let next = events.as_ref().ok().and_then(|e| e.last().map(|e| e.cursor));
            if tx.send(events).await.is_err() {
                return;
            }
            match next {
                Some(c) => at = c,
                None => return,
            }
        }
    });
    (rx, reader)
}
