//! Checkpoints of the readers whose progress lives in the read-side database
//! (`projection_checkpoints`): where each is in the log and how many log events it has
//! processed. They move compare-and-set, so two workers never both apply one batch.

use sqlx::Row as _;
use store::LogCursor;

use crate::WorkerError;

/// Where a reader is in the log and how many log events it has processed; `None` before its
/// first batch.
pub type Checkpoint = Option<(LogCursor, i64)>;

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The checkpoint called `name`.
pub async fn read_checkpoint(conn: &mut sqlx::AnyConnection, name: &str) -> Result<Checkpoint, WorkerError> {
    let row = sqlx::query("SELECT tx, position, events FROM projection_checkpoints WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row
        .map(|r| Ok::<_, sqlx::Error>((LogCursor { transaction_id: r.try_get(0)?, position: r.try_get(1)? }, r.try_get(2)?)))
        .transpose()?)
}

/// Moves checkpoint `name` from `from` (what was read; `None` if it did not exist) to `to`,
/// counting `events` more, compare-and-set: [`WorkerError::Concurrent`] if anybody moved it in
/// between.
pub async fn advance_checkpoint(
    conn: &mut sqlx::AnyConnection,
    name: &str,
    from: Option<LogCursor>,
    to: LogCursor,
    events: i64,
) -> Result<(), WorkerError> {
    let moved = match from {
        Some(from) => sqlx::query(
            "UPDATE projection_checkpoints SET tx = $1, position = $2, events = events + $3, updated_at_ms = $4 \
             WHERE name = $5 AND tx = $6 AND position = $7",
        )
        .bind(to.transaction_id)
        .bind(to.position)
        .bind(events)
        .bind(now_ms())
        .bind(name)
        .bind(from.transaction_id)
        .bind(from.position)
        .execute(&mut *conn)
        .await?
        .rows_affected(),
        None => sqlx::query(
            "INSERT INTO projection_checkpoints (name, tx, position, events, updated_at_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(to.transaction_id)
        .bind(to.position)
        .bind(events)
        .bind(now_ms())
        .execute(&mut *conn)
        .await?
        .rows_affected(),
    };
    if moved == 1 {
        Ok(())
    } else {
        Err(WorkerError::Concurrent)
    }
}

/// Sets checkpoint `name` to `to` whatever it was (rebuild swaps, republishing), with
/// `events` processed.
pub async fn reset_checkpoint(conn: &mut sqlx::AnyConnection, name: &str, to: Option<(LogCursor, i64)>) -> Result<(), WorkerError> {
    sqlx::query("DELETE FROM projection_checkpoints WHERE name = $1").bind(name).execute(&mut *conn).await?;
    if let Some((cursor, events)) = to {
        sqlx::query("INSERT INTO projection_checkpoints (name, tx, position, events, updated_at_ms) VALUES ($1, $2, $3, $4, $5)")
            .bind(name)
            .bind(cursor.transaction_id)
            .bind(cursor.position)
            .bind(events)
            .bind(now_ms())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
