/// A failure of the event store itself (not of a business rule).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended to one of the streams first.
    #[error("optimistic concurrency conflict")]
    Conflict,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A stored payload does not match the current event types.
    #[error("stored data is unreadable: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("unsupported database url (expected postgres:// or sqlite://)")]
    UnsupportedUrl,
}

impl StoreError {
    pub(crate) fn from_write(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
            _ => StoreError::Database(e),
        }
    }
}
