use crate::backend::on_pool;
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
        let claim = "INSERT INTO idempotency_keys (scope, key, request_hash) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
        let claimed = on_pool!(self.db(), write, |pool| sqlx::query(claim)
            .bind(scope)
            .bind(key)
            .bind(request_hash)
            .execute(pool)
            .await?
            .rows_affected());
        if claimed == 1 {
            return Ok(Idempotency::Fresh);
        }
        // Time arithmetic is where the two dialects disagree: a claim of a crashed request
        // (unanswered, older than `STALE_SECONDS`) is taken over.
        let take_over = match self.db() {
            Db::Postgres(_) => format!(
                "UPDATE idempotency_keys SET created_at = now() WHERE scope = $1 AND key = $2 AND request_hash = $3 \
                 AND status IS NULL AND created_at < now() - interval '{STALE_SECONDS} seconds'"
            ),
            Db::Sqlite { .. } => format!(
                "UPDATE idempotency_keys SET created_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
                 WHERE scope = $1 AND key = $2 AND request_hash = $3 AND status IS NULL \
                 AND created_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-{STALE_SECONDS} seconds')"
            ),
        };
        let taken_over = on_pool!(self.db(), write, |pool| {
            sqlx::query(&take_over).bind(scope).bind(key).bind(request_hash).execute(pool).await?.rows_affected()
        });
        let read = "SELECT request_hash, status, response_body FROM idempotency_keys WHERE scope = $1 AND key = $2";
        let row: Option<(String, Option<i32>, Option<String>)> =
            on_pool!(self.db(), write, |pool| sqlx::query_as(read).bind(scope).bind(key).fetch_optional(pool).await?);
        let inserted = taken_over;
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
        let sql = "UPDATE idempotency_keys SET status = $1, response_body = $2 WHERE scope = $3 AND key = $4";
        on_pool!(self.db(), write, |pool| sqlx::query(sql)
            .bind(i32::from(status))
            .bind(body)
            .bind(scope)
            .bind(key)
            .execute(pool)
            .await
            .map(|_| ())?);
        Ok(())
    }

    /// Frees the key after a request that changed nothing (a refused or failed request), so a
    /// corrected retry can run.
    pub async fn idempotency_abandon(&self, scope: &str, key: &str) -> Result<(), StoreError> {
        let sql = "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND status IS NULL";
        on_pool!(self.db(), write, |pool| sqlx::query(sql).bind(scope).bind(key).execute(pool).await.map(|_| ())?);
        Ok(())
    }
}
