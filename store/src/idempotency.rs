use crate::{Db, EventStore, StoreError};

/// What to do with a request that carries an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Idempotency {
    /// First time: run it, then [`EventStore::idempotency_complete`] or `_abandon`.
    Fresh,
    /// Already answered: send this answer again.
    Replay { status: u16, body: String },
    /// The first request with this key is still running.
    InProgress,
    /// The key was used for a different request.
    Mismatch,
}

/// A pending claim older than this is taken to belong to a crashed request and can be taken over.
const STALE_SECONDS: i64 = 60;

impl EventStore {
    /// Claims `key` within `scope` (tenant and caller) for the request with `request_hash`.
    pub async fn idempotency_begin(&self, scope: &str, key: &str, request_hash: &str) -> Result<Idempotency, StoreError> {
        let (inserted, row) = match self.db() {
            Db::Postgres(pool) => {
                let inserted =
                    sqlx::query("INSERT INTO idempotency_keys (scope, key, request_hash) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                        .bind(scope)
                        .bind(key)
                        .bind(request_hash)
                        .execute(pool)
                        .await?
                        .rows_affected();
                if inserted == 1 {
                    return Ok(Idempotency::Fresh);
                }
                let taken_over = sqlx::query(&format!(
                    "UPDATE idempotency_keys SET created_at = now() WHERE scope = $1 AND key = $2 AND request_hash = $3 \
                     AND status IS NULL AND created_at < now() - interval '{STALE_SECONDS} seconds'"
                ))
                .bind(scope)
                .bind(key)
                .bind(request_hash)
                .execute(pool)
                .await?
                .rows_affected();
                let row: Option<(String, Option<i32>, Option<String>)> =
                    sqlx::query_as("SELECT request_hash, status, response_body FROM idempotency_keys WHERE scope = $1 AND key = $2")
                        .bind(scope)
                        .bind(key)
                        .fetch_optional(pool)
                        .await?;
                (taken_over, row)
            }
            Db::Sqlite { write, .. } => {
                let inserted =
                    sqlx::query("INSERT INTO idempotency_keys (scope, key, request_hash) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
                        .bind(scope)
                        .bind(key)
                        .bind(request_hash)
                        .execute(write)
                        .await?
                        .rows_affected();
                if inserted == 1 {
                    return Ok(Idempotency::Fresh);
                }
                let taken_over = sqlx::query(&format!(
                    "UPDATE idempotency_keys SET created_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
                     WHERE scope = ? AND key = ? AND request_hash = ? AND status IS NULL \
                     AND created_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-{STALE_SECONDS} seconds')"
                ))
                .bind(scope)
                .bind(key)
                .bind(request_hash)
                .execute(write)
                .await?
                .rows_affected();
                let row: Option<(String, Option<i32>, Option<String>)> =
                    sqlx::query_as("SELECT request_hash, status, response_body FROM idempotency_keys WHERE scope = ? AND key = ?")
                        .bind(scope)
                        .bind(key)
                        .fetch_optional(write)
                        .await?;
                (taken_over, row)
            }
        };
        Ok(match row {
            _ if inserted == 1 => Idempotency::Fresh,
            // Abandoned between our insert attempt and the read: try again as new.
            None => Idempotency::InProgress,
            Some((hash, _, _)) if hash != request_hash => Idempotency::Mismatch,
            Some((_, Some(status), Some(body))) => Idempotency::Replay { status: status as u16, body },
            Some(_) => Idempotency::InProgress,
        })
    }

    /// Stores the answer to send to every retry of the request.
    pub async fn idempotency_complete(&self, scope: &str, key: &str, status: u16, body: &str) -> Result<(), StoreError> {
        match self.db() {
            Db::Postgres(pool) => {
                sqlx::query("UPDATE idempotency_keys SET status = $3, response_body = $4 WHERE scope = $1 AND key = $2")
                    .bind(scope)
                    .bind(key)
                    .bind(i32::from(status))
                    .bind(body)
                    .execute(pool)
                    .await?;
            }
            Db::Sqlite { write, .. } => {
                sqlx::query("UPDATE idempotency_keys SET status = ?, response_body = ? WHERE scope = ? AND key = ?")
                    .bind(i32::from(status))
                    .bind(body)
                    .bind(scope)
                    .bind(key)
                    .execute(write)
                    .await?;
            }
        }
        Ok(())
    }

    /// Frees the key after a request that changed nothing (a refused or failed request), so a
    /// corrected retry can run.
    pub async fn idempotency_abandon(&self, scope: &str, key: &str) -> Result<(), StoreError> {
        match self.db() {
            Db::Postgres(pool) => {
                sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND status IS NULL")
                    .bind(scope)
                    .bind(key)
                    .execute(pool)
                    .await?;
            }
            Db::Sqlite { write, .. } => {
                sqlx::query("DELETE FROM idempotency_keys WHERE scope = ? AND key = ? AND status IS NULL")
                    .bind(scope)
                    .bind(key)
                    .execute(write)
                    .await?;
            }
        }
        Ok(())
    }
}
