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
}

/// Read-model tables; every row carries its tenant.
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS projection_checkpoints (
        name TEXT PRIMARY KEY,
        tx BIGINT NOT NULL,
        position BIGINT NOT NULL,
        events BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS rm_products (
        tenant TEXT NOT NULL,
        product_id TEXT NOT NULL,
        sku TEXT NOT NULL,
        name TEXT NOT NULL,
        name_key TEXT NOT NULL,
        description TEXT NOT NULL,
        category TEXT NOT NULL,
        price_amount BIGINT NOT NULL,
        price_currency TEXT NOT NULL,
        attributes TEXT NOT NULL,
        published BIGINT NOT NULL,
        featured BIGINT NOT NULL,
        discontinued BIGINT NOT NULL,
        created_position BIGINT NOT NULL,
        version BIGINT NOT NULL,
        PRIMARY KEY (tenant, product_id)
    )",
    "CREATE INDEX IF NOT EXISTS rm_products_category ON rm_products (tenant, category)",
    "CREATE TABLE IF NOT EXISTS rm_stock (
        tenant TEXT NOT NULL,
        sku TEXT NOT NULL,
        on_hand BIGINT NOT NULL,
        reserved BIGINT NOT NULL,
        available BIGINT NOT NULL,
        version BIGINT NOT NULL,
        PRIMARY KEY (tenant, sku)
    )",
    "CREATE TABLE IF NOT EXISTS rm_users (
        tenant TEXT NOT NULL,
        user_id TEXT NOT NULL,
        email TEXT NOT NULL,
        name TEXT NOT NULL,
        roles TEXT NOT NULL,
        active BIGINT NOT NULL,
        registered_at TEXT NOT NULL,
        version BIGINT NOT NULL,
        PRIMARY KEY (tenant, user_id)
    )",
];

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
        Ok(Self { pool })
    }

    /// Creates the read-model tables that are missing.
    pub async fn migrate(&self) -> Result<(), ProjectionError> {
        for statement in SCHEMA {
            sqlx::query(statement).execute(&self.pool).await?;
        }
        Ok(())
    }
}
