//! Read models that keep their checkpoint with their data, outside the SQL read-model
//! database: product detail documents (Redis, the checkpoint written by the same Lua script)
//! and product search (tantivy, the checkpoint in the commit payload). Both are consumers of
//! the one driver like every other reader; this file holds the form their checkpoints take.

use store::LogCursor;

pub use worker_kit::Checkpoint;

/// `transaction:position:events`, the form both stores keep.
pub(crate) fn encode(c: LogCursor, events: i64) -> String {
    format!("{}:{}:{events}", c.transaction_id, c.position)
}

pub(crate) fn decode(s: &str) -> Checkpoint {
    let mut parts = s.split(':').map(|p| p.parse::<i64>().ok());
    Some((LogCursor { transaction_id: parts.next()??, position: parts.next()?? }, parts.next()??))
}
