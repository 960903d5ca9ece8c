use async_trait::async_trait;
use sqlx::{Any, Transaction};
use store::LogEvent;

/// Why a projection could not apply a batch.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("read-model database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event store: {0}")]
    Store(#[from] store::StoreError),
    #[error("unreadable event payload: {0}")]
    Payload(#[from] serde_json::Error),
    #[error("malformed event: {0}")]
    Malformed(String),
    /// Another worker moved the checkpoint while this batch ran; the batch was dropped.
    #[error("checkpoint moved concurrently")]
    Concurrent,
    /// Raised by the fault-injection point in tests.
    #[error("injected fault")]
    Injected,
}

/// A read model fed by events. `apply` runs inside the batch's transaction; the runner writes
/// the checkpoint in the same transaction.
#[async_trait]
pub trait Projection: Send + Sync {
    /// Stable name: the checkpoint key and what operators see.
    fn name(&self) -> &'static str;

    /// Whether events of this aggregate type matter here (others are skipped).
    fn handles(&self, aggregate_type: &str) -> bool;

    /// Applies one event to the read model in `table` (the live table, or a shadow being
    /// rebuilt).
    async fn apply(&self, tx: &mut Transaction<'static, Any>, table: &str, event: &LogEvent) -> Result<(), ProjectionError>;

    /// The live table holding this read model.
    fn table(&self) -> &'static str;

    /// `CREATE` statements for the read model in `table`; `suffix` keeps index names unique
    /// when a shadow table is built beside the live one.
    fn schema(&self, table: &str, suffix: &str) -> Vec<String>;
}
