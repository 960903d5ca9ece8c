use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::AnyPool;

use crate::WorkerError;

/// The read-side database: read models, checkpoints, dead letters, the saga's and the
/// notifier's tables. SQL here is written once for both backends: `$n` placeholders in order
/// of first use (SQLite numbers `$n` parameters that way), `TEXT` and `BIGINT` columns only
/// (flags are 0/1), `ON CONFLICT … DO UPDATE` upserts.
#[derive(Debug, Clone)]
pub struct ReadDb {
    pub pool: AnyPool,
    sqlite: bool,
}

impl ReadDb {
    /// Connects to the same kind of URL as the event store (`postgres://` or `sqlite://`).
    pub async fn connect(url: &str, pool_size: u32) -> Result<Self, WorkerError> {
        sqlx::any::install_default_drivers();
        let options = AnyConnectOptions::from_str(&store::plain_unless_asked(url))?;
        let pool = AnyPoolOptions::new()
            .max_connections(pool_size)
            .acquire_timeout(Duration::from_secs(5))
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

    pub fn is_sqlite(&self) -> bool {
        self.sqlite
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

    /// The checkpoint called `name`, read on a connection of the pool.
    pub async fn checkpoint(&self, name: &str) -> Result<crate::Checkpoint, WorkerError> {
        let mut conn = self.pool.acquire().await?;
        crate::read_checkpoint(&mut conn, name).await
    }

    /// Creates table `shadow` with the columns, keys and indexes of the live table `live` (as
    /// the migrations made it): a rebuild's shadow is a copy, never a second definition.
    pub async fn create_shadow(&self, conn: &mut sqlx::AnyConnection, live: &str, shadow: &str) -> Result<(), WorkerError> {
        if !self.sqlite {
            sqlx::query(&format!("CREATE TABLE {shadow} (LIKE {live} INCLUDING ALL)")).execute(&mut *conn).await?;
            return Ok(());
        }
        // SQLite keeps each table's and index's `CREATE` text: the same definitions, renamed.
        let not_found = || WorkerError::Database(sqlx::Error::RowNotFound);
        let table: String = sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = $1")
            .bind(live)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(not_found)?;
        let columns = &table[table.find('(').ok_or_else(not_found)?..];
        sqlx::query(&format!("CREATE TABLE {shadow} {columns}")).execute(&mut *conn).await?;
        let indexes: Vec<String> =
            sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = $1 AND sql IS NOT NULL")
                .bind(live)
                .fetch_all(&mut *conn)
                .await?;
        // Index names are per database: unique by the shadow's name and the time.
        let stamp = chrono::Utc::now().timestamp_millis();
        for (i, index) in indexes.iter().enumerate() {
            let on = index.find(" ON ").ok_or_else(not_found)?;
            let columns = &index[on + index[on..].find('(').ok_or_else(not_found)?..];
            let unique = if index.starts_with("CREATE UNIQUE") { "UNIQUE " } else { "" };
            sqlx::query(&format!("CREATE {unique}INDEX ix_{shadow}_{i}_{stamp} ON {shadow} {columns}")).execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Applies the read side's migrations (`worker-kit/migrations/`): one SQL text for both
    /// backends, as every read-side statement is; each database records the versions it has.
    /// They share sqlx's bookkeeping table with the event store's migrations, so each set
    /// passes over the other's versions.
    pub async fn migrate(&self) -> Result<(), WorkerError> {
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.set_ignore_missing(true);
        migrator.run(&self.pool).await?;
        Ok(())
    }
}
