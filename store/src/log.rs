use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a reader of the global log stands: the last event it has seen, in log order
/// (`transaction_id`, then `position`). Start from `LogCursor::default()`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LogCursor {
    /// The writing transaction (PostgreSQL `xid8`); always 0 on SQLite.
    pub transaction_id: i64,
    pub position: i64,
}

/// One event of the global log: as stored, its payload brought to the current shape of its
/// type ([`domain::upcast`]) when read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEvent {
    pub cursor: LogCursor,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

impl LogEvent {
    /// Brings the payload (and `event_version`) to the current shape of its type.
    pub fn upcast(mut self) -> Self {
        domain::upcast::upcast(&self.aggregate_type, &self.event_type, &mut self.event_version, &mut self.payload);
        self
    }
}
