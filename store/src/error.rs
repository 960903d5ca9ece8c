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
    /// The request's Idempotency-Key was taken over by a retry (the request ran past the
    /// takeover bound); nothing was written.
    #[error("the Idempotency-Key's claim was taken over by another request")]
    ClaimLost,
    /// Personal data could not be sealed (its owner is missing, the index key is gone).
    #[error("personal data: {0}")]
    Personal(String),
}

/// Whether `e` says the database cannot be reached or is going away (a restart, a network
/// cut, a full pool), rather than that the statement was wrong: the caller may retry shortly.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed => true,
        // PostgreSQL: connection exceptions (08…), shutting down or starting (57P01-57P03),
        // too many connections (53300); SQLite: busy or locked beyond the busy timeout.
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300" | "5" | "6" | "261" | "517")
        }),
        _ => false,
    }
}

/// Whether a failure anywhere down `error`'s chain of causes is a database that cannot be
/// reached ([`is_unavailable`]).
pub fn caused_by_unavailable_database(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.downcast_ref::<sqlx::Error>().is_some_and(is_unavailable) {
            return true;
        }
        cause = e.source();
    }
    false
}

impl StoreError {
    /// The database is away (see [`is_unavailable`]); the operation may succeed if retried.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Database(e) if is_unavailable(e))
    }

    pub(crate) fn from_write(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
            // PostgreSQL aborted the transaction for another writer's sake (a deadlock, a
            // serialisation failure): nothing of it landed, so, like a taken key, the command
            // may run again.
            sqlx::Error::Database(db) if db.code().is_some_and(|c| matches!(c.as_ref(), "40P01" | "40001")) => StoreError::Conflict,
            _ => StoreError::Database(e),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::borrow::Cow;

    use super::{caused_by_unavailable_database, is_unavailable};

    /// A database error with an SQLSTATE, as a server would return it.
    #[derive(Debug)]
    struct Coded(&'static str, &'static str);

    impl std::fmt::Display for Coded {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.1)
        }
    }

    impl std::error::Error for Coded {}

    impl sqlx::error::DatabaseError for Coded {
        fn message(&self) -> &str {
            self.1
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    pub(crate) fn database_error(code: &'static str, message: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(Coded(code, message)))
    }

    #[test]
    fn connection_loss_and_shutdown_are_unavailable_and_mistakes_are_not() {
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(is_unavailable(&database_error("57P01", "terminating connection due to administrator command")));
        assert!(is_unavailable(&database_error("08006", "connection failure")));
        assert!(is_unavailable(&database_error("5", "database is locked")));
        assert!(!is_unavailable(&database_error("23505", "duplicate key")));
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
        // Found anywhere down a chain of causes.
        let wrapped = crate::StoreError::Database(sqlx::Error::PoolTimedOut);
        assert!(caused_by_unavailable_database(&wrapped));
    }
}
