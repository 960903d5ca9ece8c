//! The worker kit: what every reader of the event log shares — the read-side database and its
//! migrations, checkpoints, dead letters, the public event envelope, and the one consumer
//! driver that the projections, the order saga, the notifier and the relay all run on.
//!
//! # Layout
//! - `db.rs`: [`ReadDb`] (sqlx `Any`, one SQL text for both backends) and its migrations
//!   (`migrations/<backend>/`: every durable table of the read side).
//! - `checkpoint.rs`: [`Checkpoint`], read and moved compare-and-set.
//! - `dead_letters.rs`: parked events ([`DeadLetter`]).
//! - `driver.rs`: [`Consumer`] and [`Driver`] (one step, one loop, metrics, spans, backoff,
//!   parking), [`ReaderStatus`], read-your-writes helpers.
//! - `health.rs`: failing readers recorded for every process's status page.
//! - `source.rs`: events from a consumer group instead of the log ([`SourcedConsumer`],
//!   [`ExternalSource`]), met by the Kafka adapter.
//! - [`envelope`]: the published shape of an event (Kafka value and headers, webhook body),
//!   documented by `contract/envelope.schema.json`.
//! - [`contract`]: the topic contract made from the event types: the AsyncAPI document
//!   (`contract/asyncapi.json`, `/asyncapi.json`) and the envelope's schema.
//! - `faults.rs` (feature `faults`, tests only): [`CrashBudget`].

mod checkpoint;
pub mod contract;
mod db;
mod dead_letters;
mod driver;
pub mod envelope;
#[cfg(feature = "faults")]
mod faults;
mod health;
pub mod service;
mod source;

pub use checkpoint::*;
pub use db::*;
pub use dead_letters::*;
pub use driver::*;
#[cfg(feature = "faults")]
pub use faults::*;
pub use health::failing_readers;
pub use source::*;

/// Why a worker-kit operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("read-side database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("read-side migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("event store: {0}")]
    Store(#[from] store::StoreError),
    /// An external source (a Kafka consumer group) failed.
    #[error("{0}")]
    Source(String),
    /// Another worker moved the checkpoint while this batch ran; the batch was dropped.
    #[error("checkpoint moved concurrently")]
    Concurrent,
}

impl ConsumerError for WorkerError {
    fn is_concurrent(&self) -> bool {
        matches!(self, WorkerError::Concurrent)
    }
}
