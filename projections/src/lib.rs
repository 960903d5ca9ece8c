//! Projection workers: they read the global log from a checkpoint and keep read models in
//! SQL (PostgreSQL in production, the embedded SQLite file otherwise).
//!
//! Each batch of events and the projection's checkpoint are written in one transaction, so a
//! crash anywhere replays at most the uncommitted batch and no event takes effect twice.
//!
//! # Layout
//! - [`ReadDb`] (`db.rs`): the read-model database (sqlx `Any`, one SQL text for both
//!   backends) and its schema.
//! - [`Projection`] (`projection.rs`): what a projection is; `ProjectionError`.
//! - [`Runner`] (`runner.rs`): drives projections (`try_process_next`, `run`), checkpoints,
//!   status and lag, read-your-writes waits, and a fault-injection point for tests.
//! - [`sourced`]: the same projections fed by an external source (a Kafka consumer group),
//!   offsets stored in the read-model transaction.
//! - `catalogue.rs`, `stock.rs`, `users.rs`: the SQL read models.
//! - [`envelope`]: the published shape of an event (Kafka value and headers, webhook body).
//! - [`orders`]: orders with their payment, lines and timeline, and payment events that
//!   arrived before their order (Kafka: two topics); four tables that rebuild together.
//! - [`own`]: read models that keep their checkpoint with their data (one worker loop, wait
//!   and status for them all):
//!   - [`detail`]: product detail documents in Redis (embedded: in process);
//!   - [`search`]: product search in a tantivy index on disk.

mod catalogue;
mod db;
pub mod detail;
pub mod envelope;
pub mod orders;
pub mod own;
mod projection;
mod runner;
pub mod search;
pub mod sourced;
mod stock;
pub mod testkit;
mod users;

pub use catalogue::Catalogue;
pub use db::*;
pub use orders::Orders;
pub use projection::*;
pub use runner::*;
pub use stock::StockLevels;
pub use users::Users;

/// The tenant and key of a stream id `<tenant>:<key>`.
pub fn split_stream_id(aggregate_id: &str) -> Result<(&str, &str), ProjectionError> {
    aggregate_id.split_once(':').ok_or_else(|| ProjectionError::Malformed(format!("stream id without tenant: {aggregate_id}")))
}

/// Reads the log from `from` in batches of `limit` on a task of its own, two batches ahead of
/// the consumer (rebuilds: the next read overlaps the current batch's work). Ends after an
/// empty batch or an error; abort the handle to stop early.
pub(crate) fn read_ahead(
    store: store::EventStore,
    from: store::LogCursor,
    limit: u32,
) -> (tokio::sync::mpsc::Receiver<Result<Vec<store::LogEvent>, ProjectionError>>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let reader = tokio::spawn(async move {
        let mut at = from;
        loop {
            let events = store.read_log(at, limit).await.map_err(ProjectionError::from);
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

/// Polls `reached` every 5 ms until it answers true (then `true`) or `timeout` passes (`false`).
pub async fn poll_until<F, Fut>(timeout: std::time::Duration, mut reached: F) -> Result<bool, ProjectionError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, ProjectionError>>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if reached().await? {
            return Ok(true);
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(std::time::Duration::from_millis(5).min(deadline - now)).await;
    }
}

/// Runs `round` until `stop` turns true: again at once while it finds work (it answers
/// `Ok(true)`), otherwise after `idle` or as soon as `wake` fires (then `gather` later, so new
/// events arrive in a batch), and after a failure with a wait that grows with each one in a
/// row. For log readers with their own loop (the order saga, the notifier).
pub async fn run_rounds<F, Fut, E>(
    name: &'static str,
    mut stop: tokio::sync::watch::Receiver<bool>,
    wake: std::sync::Arc<tokio::sync::Notify>,
    idle: std::time::Duration,
    gather: std::time::Duration,
    mut round: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, E>>,
    E: std::fmt::Display,
{
    let mut failures = 0u32;
    loop {
        if *stop.borrow() {
            return;
        }
        let wait = match round().await {
            Ok(true) => {
                failures = 0;
                continue;
            }
            Ok(false) => {
                failures = 0;
                idle
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(worker = name, error = %e, failures, "round failed");
                std::time::Duration::from_millis(100 * u64::from(failures.min(30)))
            }
        };
        tokio::select! {
            _ = stop.changed() => {}
            _ = wake.notified() => tokio::time::sleep(gather).await,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Metrics of one batch a log reader finished: `shop_<kind>_batch_duration_seconds`,
/// `shop_<kind>_events_total` and `shop_<kind>_lag_seconds` (now − when its oldest event was
/// recorded), each labelled `name`. Kinds: `projection`, `relay`, `notifier`, `saga`.
pub fn observe_batch(kind: &str, name: &str, oldest: Option<chrono::DateTime<chrono::Utc>>, events: usize, started: std::time::Instant) {
    let name = name.to_owned();
    metrics::histogram!(format!("shop_{kind}_batch_duration_seconds"), "name" => name.clone()).record(started.elapsed().as_secs_f64());
    metrics::counter!(format!("shop_{kind}_events_total"), "name" => name.clone()).increment(events as u64);
    if let Some(at) = oldest {
        let lag = (chrono::Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::histogram!(format!("shop_{kind}_lag_seconds"), "name" => name).record(lag);
    }
}

/// A span for one batch of a log reader, linked to the traces of (up to 32 of) its events:
/// a batch serves many requests, so it continues none of them but points at each.
pub fn batch_span<'a>(what: &'static str, name: &str, events: impl ExactSizeIterator<Item = &'a store::LogEvent>) -> tracing::Span {
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

/// Every projection this build knows, in the order they are run and listed.
pub fn all() -> Vec<std::sync::Arc<dyn Projection>> {
    vec![std::sync::Arc::new(Catalogue), std::sync::Arc::new(StockLevels), std::sync::Arc::new(Users), std::sync::Arc::new(Orders)]
}
