use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::AnyPool;

use crate::ProjectionError;

/// The read-model database. SQL here is written once for both backends: `$n` placeholders in
/// order of first use (SQLite numbers `$n` parameters that way), `TEXT` and `BIGINT` columns
/// only (flags are 0/1), `ON CONFLICT … DO UPDATE` upserts.
#[derive(Debug, Clone)]
pub struct ReadDb {
    pub pool: AnyPool,
    sqlite: bool,
}

/// Checkpoints of every projection; the read-model tables come from each projection's
/// [`Projection::schema`](crate::Projection::schema).
const CHECKPOINTS: &str = "CREATE TABLE IF NOT EXISTS projection_checkpoints (
    name TEXT PRIMARY KEY,
    tx BIGINT NOT NULL,
    position BIGINT NOT NULL,
    events BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
)";

/// Events a projection could not apply, and the later events of the same aggregate held back
/// behind them so that its order is kept.
/// Offsets of an external source (Kafka) a projection has applied, stored with its read model.
const OFFSETS: &str = "CREATE TABLE IF NOT EXISTS projection_offsets (
    projection TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition_id BIGINT NOT NULL,
    next_offset BIGINT NOT NULL,
    PRIMARY KEY (projection, topic, partition_id)
)";

const DEAD_LETTERS: &str = "CREATE TABLE IF NOT EXISTS projection_dead_letters (
    id TEXT PRIMARY KEY,
    projection TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    tx BIGINT NOT NULL,
    position BIGINT NOT NULL,
    error TEXT NOT NULL,
    parked_at_ms BIGINT NOT NULL
)";

impl ReadDb {
    /// Connects to the same kind of URL as the event store (`postgres://` or `sqlite://`).
    pub async fn connect(url: &str, pool_size: u32) -> Result<Self, ProjectionError> {
        sqlx::any::install_default_drivers();
        let options = AnyConnectOptions::from_str(url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(pool_size)
            .acquire_timeout(Duration::from_secs(10))
            // SQLite shares its one writer with the event store: wait for it rather than fail.
            .after_connect(|conn, _| {
                Box::pin(async move {
                    if conn.backend_name() == "SQLite" {
                        sqlx::query("PRAGMA busy_timeout = 10000").execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self { pool, sqlite: url.starts_with("sqlite:") })
    }

    /// A write transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`):
    /// a deferred transaction that reads and then writes fails at once with `SQLITE_BUSY`
    /// when another connection wrote in between, instead of waiting its turn.
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        if self.sqlite {
            self.pool.begin_with("BEGIN IMMEDIATE").await
        } else {
            self.pool.begin().await
        }
    }

    /// Creates the checkpoint table and the live tables of `projections` that are missing.
    pub async fn migrate(&self, projections: &[std::sync::Arc<dyn crate::Projection>]) -> Result<(), ProjectionError> {
        sqlx::query(CHECKPOINTS).execute(&self.pool).await?;
        sqlx::query(DEAD_LETTERS).execute(&self.pool).await?;
        sqlx::query(OFFSETS).execute(&self.pool).await?;
        for p in projections {
            for statement in p.schema(p.table(), "") {
                sqlx::query(&statement).execute(&self.pool).await?;
            }
        }
        Ok(())
    }
}
