//! `Idempotency-Key` records. A key is claimed before its request runs (with a claim token);
//! the request's first append then marks the key's record with the effect **in the same
//! transaction as its events** ([`with_key`] hands the claim to the append through a task
//! local), so a crash or timeout between commit and answer cannot let a retry run the command
//! a second time: the retry finds the effect and is answered from it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::backend::on_pool;
use crate::{Db, EventStore, StoreError};

/// What to do with a request that carries an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Idempotency {
    /// First time (or the first request died before committing anything): run it under
    /// [`with_key`] with this claim, then [`EventStore::idempotency_complete`] or `_abandon`.
    Fresh { claim: PendingKey },
    /// Already answered: send this answer again.
    Replay { status: u16, body: String },
    /// The first request committed its effect but its answer was never stored (it crashed or
    /// timed out in between): answer from the effect.
    Committed(Effect),
    /// The first request with this key is still running.
    InProgress,
    /// The key was used for a different request.
    Mismatch,
}

/// The last stream a keyed request appended to: the aggregate it answers about (a handler that
/// commits several streams puts that one last).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Effect {
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The aggregate's version after the request.
    pub sequence: i64,
    /// Global position of that event (filled when read back).
    #[serde(default)]
    pub position: i64,
}

/// A claimed key, handed to the request's first append.
#[derive(Debug, Clone)]
pub struct PendingKey {
    pub scope: String,
    pub key: String,
    pub claim: String,
    /// Set once an append carried the key: later appends of the request go without it.
    used: Arc<AtomicBool>,
}

impl PartialEq for PendingKey {
    fn eq(&self, other: &Self) -> bool {
        (&self.scope, &self.key, &self.claim) == (&other.scope, &other.key, &other.claim)
    }
}

impl Eq for PendingKey {}

impl PendingKey {
    fn new(scope: &str, key: &str) -> Self {
        Self { scope: scope.to_owned(), key: key.to_owned(), claim: uuid::Uuid::new_v4().to_string(), used: Arc::default() }
    }

    pub(crate) fn mark_used(&self) {
        self.used.store(true, Ordering::SeqCst);
    }
}

tokio::task_local! {
    static PENDING: PendingKey;
}

/// Runs `request` with `key` claimed: its first append records the key's effect atomically.
pub async fn with_key<F: std::future::Future>(key: PendingKey, request: F) -> F::Output {
    PENDING.scope(key, request).await
}

/// The claim of the running request, if it has one its appends have not used yet.
pub(crate) fn pending_key() -> Option<PendingKey> {
    PENDING.try_with(|k| (!k.used.load(Ordering::SeqCst)).then(|| k.clone())).ok().flatten()
}

/// A pending claim older than this is taken to belong to a crashed request and can be taken
/// over, unless that request committed an effect.
const STALE_SECONDS: i64 = 60;

impl EventStore {
    /// Claims `key` within `scope` (tenant and caller) for the request with `request_hash`.
    pub async fn idempotency_begin(&self, scope: &str, key: &str, request_hash: &str) -> Result<Idempotency, StoreError> {
        let pending = PendingKey::new(scope, key);
        let claim = "INSERT INTO idempotency_keys (scope, key, request_hash, claim) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
        let claimed = on_pool!(self.db(), write, |pool| sqlx::query(claim)
            .bind(scope)
            .bind(key)
            .bind(request_hash)
            .bind(&pending.claim)
            .execute(pool)
            .await?
            .rows_affected());
        if claimed == 1 {
            return Ok(Idempotency::Fresh { claim: pending });
        }
        // Time arithmetic is where the two dialects disagree: a claim of a crashed request
        // (unanswered, without effect, older than `STALE_SECONDS`) is taken over.
        let take_over = match self.db() {
            Db::Postgres(_) => format!(
                "UPDATE idempotency_keys SET created_at = now(), claim = $4 WHERE scope = $1 AND key = $2 AND request_hash = $3 \
                 AND status IS NULL AND effect IS NULL AND created_at < now() - interval '{STALE_SECONDS} seconds'"
            ),
            Db::Sqlite { .. } => format!(
                "UPDATE idempotency_keys SET created_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), claim = $4 \
                 WHERE scope = $1 AND key = $2 AND request_hash = $3 AND status IS NULL AND effect IS NULL \
                 AND created_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-{STALE_SECONDS} seconds')"
            ),
        };
        let taken_over = on_pool!(self.db(), write, |pool| {
            sqlx::query(&take_over).bind(scope).bind(key).bind(request_hash).bind(&pending.claim).execute(pool).await?.rows_affected()
        });
        if taken_over == 1 {
            return Ok(Idempotency::Fresh { claim: pending });
        }
        let read = "SELECT request_hash, status, response_body, effect FROM idempotency_keys WHERE scope = $1 AND key = $2";
        let row: Option<(String, Option<i32>, Option<String>, Option<String>)> =
            on_pool!(self.db(), write, |pool| sqlx::query_as(read).bind(scope).bind(key).fetch_optional(pool).await?);
        Ok(match row {
            // Abandoned between our insert attempt and the read: the client may try again.
            None => Idempotency::InProgress,
            Some((hash, ..)) if hash != request_hash => Idempotency::Mismatch,
            Some((_, Some(status), Some(body), _)) => Idempotency::Replay { status: status as u16, body },
            Some((_, _, _, Some(effect))) => {
                let mut effect: Effect = serde_json::from_str(&effect)?;
                let sql = "SELECT global_position FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3";
                let position: Option<i64> = on_pool!(self.db(), write, |pool| sqlx::query_scalar(sql)
                    .bind(&effect.aggregate_type)
                    .bind(&effect.aggregate_id)
                    .bind(effect.sequence)
                    .fetch_optional(pool)
                    .await?);
                effect.position = position.unwrap_or(0);
                Idempotency::Committed(effect)
            }
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
    /// corrected retry can run. A key whose request committed an effect stays taken.
    pub async fn idempotency_abandon(&self, scope: &str, key: &str) -> Result<(), StoreError> {
        let sql = "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND status IS NULL AND effect IS NULL";
        on_pool!(self.db(), write, |pool| sqlx::query(sql).bind(scope).bind(key).execute(pool).await.map(|_| ())?);
        Ok(())
    }
}
