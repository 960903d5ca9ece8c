//! Failures of readers, recorded where every process can see them (`reader_health`): a reader
//! stuck in one process (the relay while the brokers are away) shows as `retrying` with its
//! error on the status page of any other.

use std::collections::HashMap;

use sqlx::Row as _;

use crate::checkpoint::now_ms;
use crate::{ReadDb, WorkerError};

/// Records that reader `name` is failing (`Some((error, failures in a row, since))`) or has
/// recovered (`None`).
pub(crate) async fn record(
    db: &ReadDb,
    name: &str,
    failing: Option<(String, u32, chrono::DateTime<chrono::Utc>)>,
) -> Result<(), WorkerError> {
    match failing {
        None => {
            sqlx::query("DELETE FROM reader_health WHERE name = $1").bind(name).execute(&db.pool).await?;
        }
        Some((error, failures, since)) => {
            sqlx::query(
                "INSERT INTO reader_health (name, last_error, failures, failing_since_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (name) DO UPDATE SET last_error = excluded.last_error, failures = excluded.failures, \
                 failing_since_ms = excluded.failing_since_ms, updated_at_ms = excluded.updated_at_ms",
            )
            .bind(name)
            .bind(error)
            .bind(i64::from(failures))
            .bind(since.timestamp_millis())
            .bind(now_ms())
            .execute(&db.pool)
            .await?;
        }
    }
    Ok(())
}

/// The last error of every reader that is failing now, by name.
pub async fn failing_readers(db: &ReadDb) -> Result<HashMap<String, String>, WorkerError> {
    let rows = sqlx::query("SELECT name, last_error FROM reader_health").fetch_all(&db.pool).await?;
    let failing = rows.iter().map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?))).collect::<Result<_, _>>()?;
    Ok(failing)
}
