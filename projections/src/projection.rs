use async_trait::async_trait;
use sqlx::{Any, Transaction};
use store::LogEvent;

/// Why a projection could not apply a batch.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Worker(#[from] worker_kit::WorkerError),
    #[error("read-model database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event store: {0}")]
    Store(#[from] store::StoreError),
    #[error("unreadable event payload: {0}")]
    Payload(#[from] serde_json::Error),
    #[error("malformed event: {0}")]
    Malformed(String),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Another writer moved the checkpoint of a read model that keeps it with its data.
    #[error("checkpoint moved concurrently")]
    Concurrent,
    /// Raised by the fault-injection point in tests.
    #[cfg(feature = "faults")]
    #[error("injected fault")]
    Injected,
}

impl ProjectionError {
    /// A store the read models live in cannot be reached right now (a database or Redis
    /// restarting, a network cut); retrying shortly may succeed.
    pub fn is_unavailable(&self) -> bool {
        match self {
            ProjectionError::Redis(e) => e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout(),
            other => store::caused_by_unavailable_database(other),
        }
    }
}

impl worker_kit::ConsumerError for ProjectionError {
    fn is_concurrent(&self) -> bool {
        matches!(self, ProjectionError::Concurrent | ProjectionError::Worker(worker_kit::WorkerError::Concurrent))
    }
}

/// A read model fed by events. `apply` gets a whole batch (only events of the aggregate types
/// it handles, in log order) inside the batch's transaction, so it can fold them in memory
/// and write each row once; the runner writes the checkpoint in the same transaction.
#[async_trait]
pub trait Projection: Send + Sync {
    /// Stable name: the checkpoint key and what operators see.
    fn name(&self) -> &'static str;

    /// Whether events of this aggregate type matter here (others are skipped).
    fn handles(&self, aggregate_type: &str) -> bool;

    /// Applies `events` to the read model in `table` (the live table, or a shadow being
    /// rebuilt).
    async fn apply(&self, tx: &mut Transaction<'static, Any>, table: &str, events: &[&LogEvent]) -> Result<(), ProjectionError>;

    /// The live table holding this read model, created by the read side's migrations (a
    /// rebuild's shadow is a copy of it: the migrations are the one definition).
    fn table(&self) -> &'static str;

    /// Every table of the read model kept in `table`, `table` first: a read model of more than
    /// one table names the others after it (`{table}_lines`), so that a rebuild into a shadow
    /// gets shadows of them all. Resets empty them all; rebuilds swap them together.
    fn tables(&self, table: &str) -> Vec<String> {
        vec![table.to_owned()]
    }
}

/// An event's payload as its domain type, read in place (no copy of the JSON tree).
pub(crate) fn payload<T: serde::de::DeserializeOwned>(e: &LogEvent) -> Result<T, serde_json::Error> {
    T::deserialize(&e.payload)
}

/// `($1, $2), ($3, $4), …`: placeholders for `rows` rows of `cols` values.
pub(crate) fn values(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", (1..=cols).map(|c| format!("${}", r * cols + c)).collect::<Vec<_>>().join(", ")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rows per multi-row statement: about 2,000 parameters. SQLite resolves each `$n` by a linear
/// search of the names seen so far, so a statement with tens of thousands of parameters takes
/// seconds just to prepare (measured: 1.9 s for 30,000).
pub(crate) fn rows_per_statement(cols: usize) -> usize {
    (2_000 / cols).max(1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_number_rows_then_columns() {
        assert_eq!(super::values(2, 3), "($1, $2, $3), ($4, $5, $6)");
    }
}
