//! Events from a source other than the log: a Kafka consumer group (`SHOP_EVENT_SOURCE=kafka`).
//! The Kafka adapter receives the messages and hands them to a [`SourcedConsumer`] (the
//! projections, the notifier); it also answers read-your-writes for them
//! ([`ExternalSource`]). Neither side knows the other's crate: they meet here.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row as _;
use store::LogEvent;

use crate::WorkerError;

/// One event as a source delivered it.
#[derive(Debug, Clone)]
pub struct Sourced {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub event: LogEvent,
}

/// Next offset to apply, by (topic, partition).
pub type Offsets = HashMap<(String, i32), i64>;

/// A reader fed by a consumer group.
#[async_trait]
pub trait SourcedConsumer: Send + Sync + 'static {
    /// For logs.
    fn name(&self) -> &'static str;

    /// Whether events of this aggregate type matter to it (its topics are subscribed).
    fn handles(&self, aggregate_type: &str) -> bool;

    /// Where each partition starts when assigned, when the reader keeps its offsets itself
    /// (with its data); `None` to start where the group last committed.
    async fn start_offsets(&self) -> Result<Option<Offsets>, WorkerError>;

    /// Handles `batch` in delivery order. `Ok` once its effects are durable; the caller tries
    /// again (with backoff) until then, and commits the group's offsets after.
    async fn consume_sourced(&self, batch: &[Sourced]) -> Result<(), String>;

    /// Timed work (deadlines) for what this member holds: `assigned` are the (topic,
    /// partition) pairs assigned to it now. Called between batches and when idle, at most
    /// every [`TICK`]; nothing by default.
    async fn tick_sourced(&self, _assigned: &[(String, i32)]) -> Result<(), String> {
        Ok(())
    }
}

/// How often a consumer group member gives its reader [`SourcedConsumer::tick_sourced`].
pub const TICK: Duration = Duration::from_millis(100);

/// What a query node asks of an external source for read-your-writes and status.
#[async_trait]
pub trait ExternalSource: Send + Sync {
    /// `kafka`, for status and logs.
    fn kind(&self) -> &'static str;
    /// Waits up to `timeout` until reader `name`, which reads the topics of aggregate types
    /// `types`, has applied the event at global `position`.
    async fn wait_for(&self, name: &str, types: &[&str], position: i64, timeout: Duration) -> Result<bool, WorkerError>;
    /// Messages of those topics that reader `name` has not applied yet.
    async fn lag(&self, name: &str, types: &[&str]) -> Result<i64, WorkerError>;
}

/// The offsets reader `name` has applied up to (`projection_offsets`).
pub async fn read_offsets<'c, E>(executor: E, name: &str) -> Result<Offsets, WorkerError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let rows = sqlx::query("SELECT topic, partition_id, next_offset FROM projection_offsets WHERE projection = $1")
        .bind(name)
        .fetch_all(executor)
        .await?;
    let offsets = rows
        .into_iter()
        .map(|r| Ok::<_, sqlx::Error>(((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)? as i32), r.try_get::<i64, _>(2)?)))
        .collect::<Result<_, _>>()?;
    Ok(offsets)
}
