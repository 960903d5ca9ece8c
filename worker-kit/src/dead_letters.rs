//! Events a projection could not apply, parked for an operator (`projection_dead_letters`),
//! and the later events of the same aggregate held back behind them so that its order is kept.

use std::collections::HashSet;

use serde::Serialize;
use sqlx::Row as _;
use store::LogEvent;

use crate::checkpoint::now_ms;
use crate::{ReadDb, WorkerError};

/// Consecutive failed batches of a consumer before its batch is taken apart event by event and
/// the failing events are parked (consumers that can park).
pub const ATTEMPTS_BEFORE_PARKING: u32 = 3;

/// Why an event behind a dead letter was parked too.
pub const HELD_BACK: &str = "held back behind an earlier dead letter of this aggregate";

/// An event a projection could not apply, parked for an operator.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DeadLetter {
    pub id: String,
    pub projection: String,
    pub aggregate_id: String,
    pub position: i64,
    pub error: String,
    pub parked_at_ms: i64,
}

/// Parks `event` for `projection` with `error` (once: parking it again changes nothing).
pub async fn park(conn: &mut sqlx::AnyConnection, projection: &str, event: &LogEvent, error: &str) -> Result<(), WorkerError> {
    sqlx::query(
        "INSERT INTO projection_dead_letters (id, projection, aggregate_id, tx, position, error, parked_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
    )
    .bind(format!("{projection}:{}", event.cursor.position))
    .bind(projection)
    .bind(&event.aggregate_id)
    .bind(event.cursor.transaction_id)
    .bind(event.cursor.position)
    .bind(error)
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The aggregates (stream ids) with a dead letter of `projection`.
pub async fn parked_aggregates(conn: &mut sqlx::AnyConnection, projection: &str) -> Result<HashSet<String>, WorkerError> {
    let ids: Vec<String> = sqlx::query_scalar("SELECT DISTINCT aggregate_id FROM projection_dead_letters WHERE projection = $1")
        .bind(projection)
        .fetch_all(&mut *conn)
        .await?;
    Ok(ids.into_iter().collect())
}

/// How many events each projection has parked, every tenant together (for `shop_dead_letters`).
pub async fn parked_counts(db: &ReadDb) -> Result<Vec<(String, i64)>, WorkerError> {
    let rows = sqlx::query("SELECT projection, COUNT(*) AS n FROM projection_dead_letters GROUP BY projection").fetch_all(&db.pool).await?;
    Ok(rows.into_iter().map(|r| Ok::<_, sqlx::Error>((r.try_get("projection")?, r.try_get("n")?))).collect::<Result<_, _>>()?)
}

/// Parked events of tenant `tenant`, oldest first.
pub async fn dead_letters(db: &ReadDb, tenant: &str) -> Result<Vec<DeadLetter>, WorkerError> {
    let rows = sqlx::query(
        "SELECT id, projection, aggregate_id, position, error, parked_at_ms FROM projection_dead_letters \
         WHERE aggregate_id LIKE $1 ORDER BY tx, position",
    )
    .bind(format!("{tenant}:%"))
    .fetch_all(&db.pool)
    .await?;
    let letters = rows
        .into_iter()
        .map(|r| {
            Ok::<_, sqlx::Error>(DeadLetter {
                id: r.try_get(0)?,
                projection: r.try_get(1)?,
                aggregate_id: r.try_get(2)?,
                position: r.try_get(3)?,
                error: r.try_get(4)?,
                parked_at_ms: r.try_get(5)?,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(letters)
}
