//! The event store: an append-only log in PostgreSQL (production) or SQLite (embedded), a
//! repository that runs cqrs-es aggregates against it, and a gap-free reader of the global log.
//!
//! Why not `postgres-es`' `PersistedEventStore`: it replays the whole stream on every command
//! and writes each event in its own statement inside a transaction (six round trips and two
//! commits per command). Here a command costs one round trip when its aggregate is cached: the
//! append is a single multi-row `INSERT` whose primary key on (type, id, sequence) is the
//! optimistic-concurrency check. The table keeps postgres-es's seven columns, so its
//! repository can still read the log.
//!
//! # Layout
//! - [`EventStore`] (`backend.rs`): connection, migrations, atomic multi-stream appends,
//!   stream loads, snapshots, for both backends.
//! - `batch.rs`: single-event appends waiting at the same moment share one statement and
//!   one commit (group commit), each still succeeding or conflicting on its own.
//! - [`Repository`] (`repository.rs`): load (cached, snapshot + tail), handle, append, retry on
//!   conflict; several aggregates can be committed in one atomic write ([`commit`]).
//! - [`LogCursor`], [`LogEvent`] (`log.rs`): the global log, read in commit order;
//!   `log_cache.rs`: its newest stretch, read once per process for every reader.
//! - [`Idempotency`] (`idempotency.rs`): stored answers for retried requests.
//! - [`trace`]: trace context carried in event metadata and Kafka headers.
//! - [`personal`]: personal data sealed with a data key per person, and where the keys live
//!   ([`personal::KeyStore`]), so that deleting a key erases the data (crypto-shredding).

mod backend;
mod batch;
mod error;
mod idempotency;
mod log;
mod log_cache;
mod metadata;
pub mod personal;
mod repository;
pub mod trace;

pub use backend::*;
pub use error::*;
pub use idempotency::*;
pub use log::*;
pub use metadata::*;
pub use repository::*;
