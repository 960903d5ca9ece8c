use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::types::Json;
use sqlx::{QueryBuilder, Row as _};

use crate::batch::Batcher;
use crate::idempotency::{Effect, PendingKey};
use crate::personal::{KeyStore, Personal, SqlKeyStore};
use crate::{LogCursor, LogEvent, StoreError};

/// The columns of a [`LogEvent`] on PostgreSQL (`jsonb` payloads, the writer's transaction),
/// as a literal so that each query is one constant string.
macro_rules! pg_log_columns {
    () => {
        "transaction_id::text::bigint AS tx, global_position, aggregate_type, aggregate_id, \
         sequence, event_type, event_version, payload, metadata, recorded_at"
    };
}

/// The columns of a [`LogEvent`] on SQLite (text payloads; one writer, so no transaction id).
macro_rules! sqlite_log_columns {
    () => {
        "global_position, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at"
    };
}

/// Events to add to one stream, which must be at `expected_version` when they land.
#[derive(Debug, Clone)]
pub struct StreamAppend {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub expected_version: u64,
    pub events: Vec<NewEvent>,
}

#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_type: String,
    pub event_version: String,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
}

/// An event of one stream, as loaded to rebuild an aggregate.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub sequence: u64,
    pub position: i64,
    pub payload: serde_json::Value,
}

/// A saved aggregate state and the stream point it reflects.
#[derive(Debug, Clone)]
pub struct StoredSnapshot {
    pub last_sequence: u64,
    pub last_position: i64,
    pub payload: serde_json::Value,
}

/// Runs `$body` with `$pool` bound to the store's pool for reads or for writes, whichever backend
/// it is: a statement both dialects agree on is written once (`$n` placeholders in order of
/// first use, which SQLite numbers the same way; JSON bound and read as `sqlx::types::Json`).
/// Only what truly differs (the multi-row insert, the log reader, time arithmetic) is written per
/// backend.
macro_rules! on_pool {
    ($db:expr, read, |$pool:ident| $body:expr) => {
        match $db {
            Db::Postgres($pool) => $body,
            Db::Sqlite { read: $pool, .. } => $body,
        }
    };
    ($db:expr, write, |$pool:ident| $body:expr) => {
        match $db {
            Db::Postgres($pool) => $body,
            Db::Sqlite { write: $pool, .. } => $body,
        }
    };
}
pub(crate) use on_pool;

/// Streams read in one query at most ([`EventStore::load_streams`]).
pub const STREAMS_PER_READ: usize = 200;

/// The database behind an [`EventStore`].
#[derive(Debug, Clone)]
pub enum Db {
    Postgres(PgPool),
    /// SQLite allows one writer at a time, so writes go through a one-connection pool and
    /// queue in-process instead of spinning on `SQLITE_BUSY`.
    Sqlite {
        read: SqlitePool,
        write: SqlitePool,
    },
}

/// The event store; cheap to clone (pools inside).
#[derive(Debug, Clone)]
pub struct EventStore {
    db: Db,
    batcher: Batcher,
    /// Notified after every successful append from this process, so in-process readers of
    /// the log (projections) wake at once instead of on their next poll.
    appended: std::sync::Arc<tokio::sync::Notify>,
    /// Each stream this process appended to, as its append commits (for in-process wake-ups of
    /// one stream's reader; lossy: a reader that falls behind still has the log).
    commits: tokio::sync::broadcast::Sender<AppendedStream>,
    /// Seals personal fields as they are appended and opens them as they are read.
    personal: std::sync::Arc<Personal>,
    /// Whether reads open personal fields (all but the published view, [`EventStore::as_published`]).
    opens: bool,
    /// The newest stretch of the log as this process last read it, shared by every reader.
    log_window: std::sync::Arc<tokio::sync::Mutex<crate::log_cache::Window>>,
}

/// A stream this process just appended to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendedStream {
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The trace context the append's events carry, so a reader woken by it continues the
    /// writer's trace.
    pub traceparent: Option<String>,
}

/// (aggregate type, aggregate id, sequence): the key of one event.
pub(crate) type StreamKey = (String, String, i64);

/// One event row, ready to insert.
#[derive(Clone)]
pub(crate) struct Row {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: String,
    pub metadata: String,
}

impl Row {
    pub fn new(a: &StreamAppend, sequence: u64, e: &NewEvent) -> Self {
        Self {
            aggregate_type: a.aggregate_type.clone(),
            aggregate_id: a.aggregate_id.clone(),
            sequence: sequence as i64,
            event_type: e.event_type.clone(),
            event_version: e.event_version.clone(),
            payload: e.payload.to_string(),
            metadata: e.metadata.to_string(),
        }
    }

    pub fn key(&self) -> StreamKey {
        (self.aggregate_type.clone(), self.aggregate_id.clone(), self.sequence)
    }
}

/// Inserts `rows` in one statement (one transaction) and returns the position of each row
/// inserted. Without `skip_conflicts` any taken key fails the whole statement with
/// [`StoreError::Conflict`]; with it, rows whose key is taken are left out of the answer.
pub(crate) async fn insert_rows(db: &Db, rows: &[Row], skip_conflicts: bool) -> Result<HashMap<StreamKey, i64>, StoreError> {
    insert(db, rows, skip_conflicts, None).await
}

/// [`insert_rows`], and with `key` the key's record marked with the effect (the last row's
/// stream and sequence) in the same transaction; [`StoreError::ClaimLost`] and nothing written
/// when the key's claim is no longer ours (another request took it over).
async fn insert(db: &Db, rows: &[Row], skip_conflicts: bool, key: Option<&PendingKey>) -> Result<HashMap<StreamKey, i64>, StoreError> {
    let on_conflict = if skip_conflicts { " ON CONFLICT (aggregate_type, aggregate_id, sequence) DO NOTHING" } else { "" };
    let effect = match (key, rows.last()) {
        (Some(_), Some(last)) => serde_json::to_string(&Effect {
            aggregate_type: last.aggregate_type.clone(),
            aggregate_id: last.aggregate_id.clone(),
            sequence: last.sequence,
            position: 0,
        })?,
        _ => String::new(),
    };
    // Marks the key if its claim is still ours; placeholders from `$n` on: effect, scope, key, claim.
    let mark = |n: usize| {
        format!(
            "UPDATE idempotency_keys SET effect = ${n} WHERE scope = ${} AND key = ${} AND claim = ${} \
             AND status IS NULL AND effect IS NULL",
            n + 1,
            n + 2,
            n + 3
        )
    };
    let returned: Vec<(String, String, i64, i64)> = match db {
        Db::Postgres(pool) => {
            let column = |f: fn(&Row) -> &String| rows.iter().map(|r| f(r).clone()).collect::<Vec<String>>();
            // With a key: one statement marks the key and inserts only if the mark took.
            let (with, only_if) = match key {
                Some(_) => (format!("WITH k AS ({} RETURNING 1) ", mark(8)), " WHERE EXISTS (SELECT 1 FROM k)"),
                None => (String::new(), ""),
            };
            let sql = format!(
                "{with}INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
                 SELECT t, i, s, et, ev, p::jsonb, m::jsonb \
                 FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[]) \
                   AS u(t, i, s, et, ev, p, m){only_if}{on_conflict} \
                 RETURNING aggregate_type, aggregate_id, sequence, global_position"
            );
            let mut query = sqlx::query_as(&sql)
                .bind(column(|r| &r.aggregate_type))
                .bind(column(|r| &r.aggregate_id))
                .bind(rows.iter().map(|r| r.sequence).collect::<Vec<i64>>())
                .bind(column(|r| &r.event_type))
                .bind(column(|r| &r.event_version))
                .bind(column(|r| &r.payload))
                .bind(column(|r| &r.metadata));
            if let Some(k) = key {
                query = query.bind(&effect).bind(&k.scope).bind(&k.key).bind(&k.claim);
            }
            query.fetch_all(pool).await.map_err(StoreError::from_write)?
        }
        Db::Sqlite { write, .. } => {
            let mut qb = QueryBuilder::new(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) ",
            );
            qb.push_values(rows, |mut b, r| {
                b.push_bind(&r.aggregate_type)
                    .push_bind(&r.aggregate_id)
                    .push_bind(r.sequence)
                    .push_bind(&r.event_type)
                    .push_bind(&r.event_version)
                    .push_bind(&r.payload)
                    .push_bind(&r.metadata);
            });
            qb.push(on_conflict);
            qb.push(" RETURNING aggregate_type, aggregate_id, sequence, global_position");
            match key {
                None => qb.build_query_as().fetch_all(write).await.map_err(StoreError::from_write)?,
                Some(k) => {
                    let mut tx = write.begin().await.map_err(StoreError::from_write)?;
                    let marked = sqlx::query(&mark(1))
                        .bind(&effect)
                        .bind(&k.scope)
                        .bind(&k.key)
                        .bind(&k.claim)
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::from_write)?
                        .rows_affected();
                    if marked == 0 {
                        return Err(StoreError::ClaimLost);
                    }
                    let returned = qb.build_query_as().fetch_all(&mut *tx).await.map_err(StoreError::from_write)?;
                    tx.commit().await.map_err(StoreError::from_write)?;
                    returned
                }
            }
        }
    };
    if key.is_some() && returned.is_empty() && !rows.is_empty() {
        return Err(StoreError::ClaimLost);
    }
    Ok(returned.into_iter().map(|(t, i, s, p)| ((t, i, s), p)).collect())
}

impl EventStore {
    /// Connects to `postgres://…` or `sqlite://<path>` (the file is created if missing).
    pub async fn connect(url: &str, pool_size: u32) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let url = plain_unless_asked(url);
            let pool = PgPoolOptions::new().max_connections(pool_size).acquire_timeout(Duration::from_secs(5)).connect(&url).await?;
            Ok(Self::new(Db::Postgres(pool), 4))
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a commit is on disk before the command is answered.
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10));
            let write = SqlitePoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
            let read = SqlitePoolOptions::new().max_connections(pool_size.max(2)).connect_with(options).await?;
            Ok(Self::new(Db::Sqlite { read, write }, 1))
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    fn new(db: Db, batch_workers: usize) -> Self {
        let batcher = Batcher::start(db.clone(), batch_workers);
        let personal = std::sync::Arc::new(Personal::new(std::sync::Arc::new(SqlKeyStore::of(db.clone()))));
        Self {
            db,
            batcher,
            appended: Default::default(),
            commits: tokio::sync::broadcast::channel(4096).0,
            personal,
            opens: true,
            log_window: Default::default(),
        }
    }

    /// This store with personal data keys kept in `keys` (a KMS, a separate database) instead
    /// of the store's own `personal_keys` table.
    pub fn with_key_store(mut self, keys: std::sync::Arc<dyn KeyStore>) -> Self {
        self.personal = std::sync::Arc::new(Personal::new(keys));
        self
    }

    /// The log as it is published (the relay, webhooks): personal fields stay sealed as read.
    pub fn as_published(&self) -> Self {
        Self { opens: false, ..self.clone() }
    }

    /// Sealing, opening and erasing personal data, and blind indexes.
    pub fn personal(&self) -> &Personal {
        &self.personal
    }

    /// Opens the personal fields of events read elsewhere (from Kafka).
    pub async fn open_events<'a>(&self, events: impl IntoIterator<Item = &'a mut LogEvent>) -> Result<(), StoreError> {
        let mut fields: Vec<(&str, &str, &str, &mut serde_json::Value)> = events
            .into_iter()
            .map(|e| (e.aggregate_type.as_str(), e.aggregate_id.as_str(), e.event_type.as_str(), &mut e.payload))
            .collect();
        self.personal.open(&mut fields).await
    }

    /// Seals the personal fields of an event read opened, as the published log has them.
    pub async fn seal_event(&self, e: &mut LogEvent) -> Result<(), StoreError> {
        self.personal.seal(&e.aggregate_type, &e.aggregate_id, &e.event_type, &mut e.payload).await
    }

    async fn opened(&self, mut events: Vec<LogEvent>) -> Result<Vec<LogEvent>, StoreError> {
        if self.opens {
            self.open_events(events.iter_mut()).await?;
        }
        Ok(events)
    }

    /// Notified after each successful append made through this store (and its clones).
    pub fn appended(&self) -> std::sync::Arc<tokio::sync::Notify> {
        std::sync::Arc::clone(&self.appended)
    }

    /// Every stream appended to through this store (and its clones) from now on, as each append
    /// commits. Lossy ([`tokio::sync::broadcast`]): a receiver that falls behind misses some.
    pub fn commits(&self) -> tokio::sync::broadcast::Receiver<AppendedStream> {
        self.commits.subscribe()
    }

    /// The database, for tests and tools that need SQL of their own.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// `postgresql` or `sqlite`, for the start-up log line and `/ready`.
    pub fn backend_name(&self) -> &'static str {
        match &self.db {
            Db::Postgres(_) => "postgresql",
            Db::Sqlite { .. } => "sqlite",
        }
    }

    /// Applies the embedded migrations of this backend.
    /// Applies the event store's migrations (`store/migrations/<backend>`). The read side's
    /// migrations share sqlx's bookkeeping table, so each set passes over the other's versions.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.db {
            Db::Postgres(pool) => {
                let mut migrator = sqlx::migrate!("./migrations/postgres");
                migrator.set_ignore_missing(true);
                migrator.run(pool).await?
            }
            Db::Sqlite { write, .. } => {
                let mut migrator = sqlx::migrate!("./migrations/sqlite");
                migrator.set_ignore_missing(true);
                migrator.run(write).await?
            }
        }
        Ok(())
    }

    /// The connections of the store's pools (both of SQLite's, added up): (open, idle, the limit).
    pub fn pool_usage(&self) -> (u32, u32, u32) {
        fn usage<D: sqlx::Database>(pool: &sqlx::Pool<D>) -> (u32, u32, u32) {
            (pool.size(), pool.num_idle() as u32, pool.options().get_max_connections())
        }
        match &self.db {
            Db::Postgres(pool) => usage(pool),
            Db::Sqlite { read, write } => {
                let (r, w) = (usage(read), usage(write));
                (r.0 + w.0, r.1 + w.1, r.2 + w.2)
            }
        }
    }

    /// One cheap query: is the store reachable?
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(&self.db, read, |pool| sqlx::query("SELECT 1").execute(pool).await.map(|_| ())?);
        Ok(())
    }

    pub async fn close(&self) {
        match &self.db {
            Db::Postgres(pool) => pool.close().await,
            Db::Sqlite { read, write } => {
                read.close().await;
                write.close().await;
            }
        }
    }

    /// Appends to one or more streams atomically, in one statement: either every event lands
    /// with consecutive sequences after each stream's expected version, or none does and the
    /// answer is [`StoreError::Conflict`]. Returns the global position of each event, stream by
    /// stream, in the order given.
    pub async fn append(&self, appends: &[StreamAppend]) -> Result<Vec<Vec<i64>>, StoreError> {
        let personal = |a: &StreamAppend| {
            a.events
                .iter()
                .any(|e| domain::personal::of(&a.aggregate_type, &e.event_type).is_some() || e.metadata.get("client_addr").is_some())
        };
        let sealed;
        let appends = if appends.iter().any(personal) {
            let mut copy = appends.to_vec();
            for a in copy.iter_mut() {
                for e in a.events.iter_mut() {
                    self.personal.seal(&a.aggregate_type, &a.aggregate_id, &e.event_type, &mut e.payload).await?;
                    self.personal.seal_metadata(&a.aggregate_id, &mut e.metadata).await?;
                }
            }
            sealed = copy;
            &sealed[..]
        } else {
            appends
        };
        // The common case, one event for one stream, shares a statement and a commit with the
        // other single events waiting at the same moment.
        // A request with a claimed Idempotency-Key records its effect with its events, in a
        // statement of its own.
        let key = crate::idempotency::pending_key();
        let result = match appends {
            [single] if single.events.len() == 1 && key.is_none() => {
                self.batcher.append(single, &single.events[0]).await.map(|position| vec![vec![position]])
            }
            _ => self.append_now(appends, key.as_ref()).await,
        };
        if let (Ok(_), Some(key)) = (&result, &key) {
            key.mark_used();
        }
        if result.is_ok() {
            self.after_erasures(appends).await;
            self.appended.notify_waiters();
            if self.commits.receiver_count() > 0 {
                for a in appends.iter().filter(|a| !a.events.is_empty()) {
                    let _ = self.commits.send(AppendedStream {
                        aggregate_type: a.aggregate_type.clone(),
                        aggregate_id: a.aggregate_id.clone(),
                        traceparent: a.events.first().and_then(|e| crate::trace::of_metadata(&e.metadata)).map(str::to_owned),
                    });
                }
            }
        }
        result
    }

    /// For each `user.erased` just committed: the user's data key is deleted and stored
    /// answers that name the user are dropped. A failure here is logged: every log reader
    /// deletes the key again as it reads the event.
    async fn after_erasures(&self, appends: &[StreamAppend]) {
        for a in appends.iter().filter(|a| a.aggregate_type == "user" && a.events.iter().any(|e| e.event_type == "erased")) {
            let Ok(id) = domain::StreamId::parse(&a.aggregate_id) else { continue };
            if let Err(e) = self.personal.erase(id.tenant, id.key).await {
                tracing::error!(user = %a.aggregate_id, error = %e, "user erased but the data key not yet deleted; log readers will");
            }
            if let Err(e) = self.forget_answers_about(id.tenant, id.key).await {
                tracing::error!(user = %a.aggregate_id, error = %e, "stored answers about an erased user not dropped");
            }
        }
    }

    /// Drops the stored `Idempotency-Key` answers of `user` or that name them (a registration's).
    pub async fn forget_answers_about(&self, tenant: &str, user: &str) -> Result<u64, StoreError> {
        let sql = "DELETE FROM idempotency_keys WHERE scope = $1 OR response_body LIKE $2";
        let (scope, named) = (format!("{tenant}:{user}"), format!("%{user}%"));
        Ok(on_pool!(&self.db, write, |pool| sqlx::query(sql).bind(&scope).bind(&named).execute(pool).await?.rows_affected()))
    }

    async fn append_now(&self, appends: &[StreamAppend], key: Option<&PendingKey>) -> Result<Vec<Vec<i64>>, StoreError> {
        let rows: Vec<Row> = appends
            .iter()
            .flat_map(|a| a.events.iter().enumerate().map(move |(i, e)| Row::new(a, a.expected_version + 1 + i as u64, e)))
            .collect();
        if rows.is_empty() {
            return Ok(appends.iter().map(|_| Vec::new()).collect());
        }
        let mut positions = insert(&self.db, &rows, false, key).await?;
        let mut out: Vec<Vec<i64>> = appends.iter().map(|a| Vec::with_capacity(a.events.len())).collect();
        for (n, a) in appends.iter().enumerate() {
            for i in 0..a.events.len() {
                let key = (a.aggregate_type.clone(), a.aggregate_id.clone(), (a.expected_version + 1 + i as u64) as i64);
                let position = positions
                    .remove(&key)
                    .ok_or_else(|| StoreError::Database(sqlx::Error::Protocol("insert returned fewer rows than it wrote".into())))?;
                out[n].push(position);
            }
        }
        Ok(out)
    }

    /// The events of one stream after `after_sequence`, in order, in their current shape.
    pub async fn load_stream(&self, aggregate_type: &str, aggregate_id: &str, after_sequence: u64) -> Result<Vec<StoredEvent>, StoreError> {
        let mut streams = self.load_streams(aggregate_type, &[(aggregate_id, after_sequence)]).await?;
        Ok(streams.pop().unwrap_or_default())
    }

    /// The events of several streams of one type, each after its own sequence, in one query
    /// (per [`STREAMS_PER_READ`]): `streams` as distinct (id, after_sequence); the answer holds
    /// each stream's events, in the order given.
    pub async fn load_streams(&self, aggregate_type: &str, streams: &[(&str, u64)]) -> Result<Vec<Vec<StoredEvent>>, StoreError> {
        let mut out: Vec<Vec<StoredEvent>> = streams.iter().map(|_| Vec::new()).collect();
        for (c, chunk) in streams.chunks(STREAMS_PER_READ).enumerate() {
            let each: Vec<String> =
                (0..chunk.len()).map(|i| format!("(aggregate_id = ${} AND sequence > ${})", 2 * i + 2, 2 * i + 3)).collect();
            let sql = format!(
                "SELECT aggregate_id, sequence, global_position, event_type, event_version, payload FROM events \
                 WHERE aggregate_type = $1 AND ({}) ORDER BY aggregate_id, sequence",
                each.join(" OR ")
            );
            let rows: Vec<(String, i64, i64, String, String, Json<serde_json::Value>)> = on_pool!(&self.db, read, |pool| {
                let mut query = sqlx::query_as(&sql).bind(aggregate_type);
                for (id, after) in chunk {
                    query = query.bind(*id).bind(*after as i64);
                }
                query.fetch_all(pool).await?
            });
            let index: HashMap<&str, usize> = chunk.iter().enumerate().map(|(i, (id, _))| (*id, c * STREAMS_PER_READ + i)).collect();
            let mut events: Vec<(usize, String, StoredEvent)> = Vec::with_capacity(rows.len());
            for (id, s, p, event_type, mut version, Json(mut payload)) in rows {
                let Some(&n) = index.get(id.as_str()) else { continue };
                domain::upcast::upcast(aggregate_type, &event_type, &mut version, &mut payload);
                events.push((n, event_type, StoredEvent { sequence: s as u64, position: p, payload }));
            }
            if self.opens {
                let mut fields: Vec<(&str, &str, &str, &mut serde_json::Value)> =
                    events.iter_mut().map(|(n, t, e)| (aggregate_type, streams[*n].0, t.as_str(), &mut e.payload)).collect();
                self.personal.open(&mut fields).await?;
            }
            for (n, _, e) in events {
                out[n].push(e);
            }
        }
        Ok(out)
    }

    /// The current version (last sequence) of a stream; 0 if it has no events.
    pub async fn stream_version(&self, aggregate_type: &str, aggregate_id: &str) -> Result<u64, StoreError> {
        let sql = "SELECT COALESCE(MAX(sequence), 0) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2";
        let v: i64 =
            on_pool!(&self.db, read, |pool| sqlx::query_scalar(sql).bind(aggregate_type).bind(aggregate_id).fetch_one(pool).await?);
        Ok(v as u64)
    }

    pub async fn load_snapshot(&self, aggregate_type: &str, aggregate_id: &str) -> Result<Option<StoredSnapshot>, StoreError> {
        let sql = "SELECT last_sequence, last_position, payload FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2";
        let row: Option<(i64, i64, Json<serde_json::Value>)> =
            on_pool!(&self.db, read, |pool| sqlx::query_as(sql).bind(aggregate_type).bind(aggregate_id).fetch_optional(pool).await?);
        Ok(row.map(|(s, p, Json(payload))| StoredSnapshot { last_sequence: s as u64, last_position: p, payload }))
    }

    /// Saves a snapshot unless a newer one is already stored.
    pub async fn save_snapshot(&self, aggregate_type: &str, aggregate_id: &str, snapshot: &StoredSnapshot) -> Result<(), StoreError> {
        let sql = "INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, last_position, payload) \
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE \
                   SET last_sequence = excluded.last_sequence, last_position = excluded.last_position, payload = excluded.payload \
                   WHERE snapshots.last_sequence < excluded.last_sequence";
        on_pool!(&self.db, write, |pool| {
            sqlx::query(sql)
                .bind(aggregate_type)
                .bind(aggregate_id)
                .bind(snapshot.last_sequence as i64)
                .bind(snapshot.last_position)
                .bind(Json(&snapshot.payload))
                .execute(pool)
                .await
                .map(|_| ())?
        });
        Ok(())
    }

    /// Where the event at global `position` stands in log order, if it exists.
    pub async fn cursor_of(&self, position: i64) -> Result<Option<LogCursor>, StoreError> {
        let tx: Option<i64> = match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_scalar("SELECT transaction_id::text::bigint FROM events WHERE global_position = $1")
                    .bind(position)
                    .fetch_optional(pool)
                    .await?
            }
            Db::Sqlite { read, .. } => {
                sqlx::query_scalar("SELECT 0 FROM events WHERE global_position = ?").bind(position).fetch_optional(read).await?
            }
        };
        Ok(tx.map(|transaction_id| LogCursor { transaction_id, position }))
    }

    /// The highest global position written so far (0 for an empty log).
    pub async fn head_position(&self) -> Result<i64, StoreError> {
        let sql = "SELECT COALESCE(MAX(global_position), 0) FROM events";
        Ok(on_pool!(&self.db, read, |pool| sqlx::query_scalar(sql).fetch_one(pool).await?))
    }

    /// Where [`EventStore::changed_streams`] starts: everything before it has committed.
    pub async fn change_horizon(&self) -> Result<i64, StoreError> {
        Ok(match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint").fetch_one(pool).await?
            }
            Db::Sqlite { .. } => self.head_position().await?,
        })
    }

    /// The streams of `aggregate_type` written since `since` (a horizon from
    /// [`EventStore::change_horizon`] or from an earlier call), each with its highest sequence,
    /// and the horizon to ask from next time. Never misses a write: on PostgreSQL the horizon
    /// is the oldest transaction still running, so a write that commits late is still ahead.
    pub async fn changed_streams(&self, aggregate_type: &str, since: i64) -> Result<(Vec<(String, i64)>, i64), StoreError> {
        let until = self.change_horizon().await?;
        let rows: Vec<(String, i64)> = match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT aggregate_id, MAX(sequence) FROM events WHERE aggregate_type = $1 \
                     AND transaction_id >= $2::text::xid8 AND transaction_id < $3::text::xid8 GROUP BY aggregate_id",
                )
                .bind(aggregate_type)
                .bind(since.to_string())
                .bind(until.to_string())
                .fetch_all(pool)
                .await?
            }
            Db::Sqlite { read, .. } => {
                sqlx::query_as(
                    "SELECT aggregate_id, MAX(sequence) FROM events WHERE aggregate_type = ? \
                     AND global_position > ? AND global_position <= ? GROUP BY aggregate_id",
                )
                .bind(aggregate_type)
                .bind(since)
                .bind(until)
                .fetch_all(read)
                .await?
            }
        };
        Ok((rows, until.max(since)))
    }

    /// Up to `limit` events of the global log after `after`, in log order, never passing an
    /// event whose transaction might still commit.
    ///
    /// PostgreSQL hands out `global_position` before commit, so a later position can become
    /// visible before an earlier one. Reading only transactions older than the oldest one still
    /// running (`pg_snapshot_xmin`) and ordering by (transaction, position) means that nothing
    /// can ever appear behind the cursor: no event is skipped. SQLite commits one writer at a
    /// time, so its positions become visible in order.
    ///
    /// Events this process has already read are served from its window of the log
    /// (`log_cache`) instead of being queried and decoded again; a read queries the database
    /// only from the window's end on, so every read returns what the database alone would have
    /// returned.
    pub async fn read_log(&self, after: LogCursor, limit: u32) -> Result<Vec<LogEvent>, StoreError> {
        use crate::log_cache::Hit;
        let known = {
            // Held while reading, so that readers arriving meanwhile are served from the window.
            let mut window = self.log_window.lock().await;
            match window.get(after, limit as usize) {
                Hit::Events(mut events) => {
                    // Short of the limit, the window has run out: the rest comes from the
                    // database, so that a read returns what it would have without the window (a
                    // reader that reads again from the same cursor must see the log move on).
                    if events.len() < limit as usize {
                        let end = window.end();
                        let more = self.query_log(end, limit - events.len() as u32).await?;
                        window.record(end, &more);
                        events.extend(more);
                    }
                    Some(events)
                }
                Hit::Behind => None,
                Hit::AtEnd | Hit::Ahead => {
                    let events = self.query_log(after, limit).await?;
                    window.record(after, &events);
                    Some(events)
                }
            }
        };
        let events = match known {
            Some(events) => events,
            None => self.query_log(after, limit).await?,
        };
        self.opened(events).await
    }

    /// [`Self::read_log`] from the database, personal fields as stored.
    async fn query_log(&self, after: LogCursor, limit: u32) -> Result<Vec<LogEvent>, StoreError> {
        match &self.db {
            Db::Postgres(pool) => {
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    pg_log_columns!(),
                    " FROM events \
                     WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
                       AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
                     ORDER BY transaction_id, global_position \
                     LIMIT $3"
                ))
                .bind(after.transaction_id.to_string())
                .bind(after.position)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
                rows.iter().map(pg_log_event).collect()
            }
            Db::Sqlite { read, .. } => {
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    sqlite_log_columns!(),
                    " FROM events WHERE global_position > ? ORDER BY global_position LIMIT ?"
                ))
                .bind(after.position)
                .bind(i64::from(limit))
                .fetch_all(read)
                .await?;
                rows.iter().map(sqlite_log_event).collect()
            }
        }
    }

    /// Up to `limit` events of one stream after `after_sequence`, in stream order, with their
    /// log positions, metadata and times (for history; aggregates load with [`Self::load_stream`]).
    pub async fn stream_log(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after_sequence: i64,
        limit: u32,
    ) -> Result<Vec<LogEvent>, StoreError> {
        macro_rules! filter {
            () => {
                " FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 ORDER BY sequence LIMIT $4"
            };
        }
        match &self.db {
            Db::Postgres(pool) => {
                let rows = sqlx::query(concat!("SELECT ", pg_log_columns!(), filter!()))
                    .bind(aggregate_type)
                    .bind(aggregate_id)
                    .bind(after_sequence)
                    .bind(i64::from(limit))
                    .fetch_all(pool)
                    .await?;
                self.opened(rows.iter().map(pg_log_event).collect::<Result<_, _>>()?).await
            }
            Db::Sqlite { read, .. } => {
                let rows = sqlx::query(concat!("SELECT ", sqlite_log_columns!(), filter!()))
                    .bind(aggregate_type)
                    .bind(aggregate_id)
                    .bind(after_sequence)
                    .bind(i64::from(limit))
                    .fetch_all(read)
                    .await?;
                self.opened(rows.iter().map(sqlite_log_event).collect::<Result<_, _>>()?).await
            }
        }
    }
}

fn pg_log_event(r: &sqlx::postgres::PgRow) -> Result<LogEvent, StoreError> {
    Ok(LogEvent {
        cursor: LogCursor { transaction_id: r.try_get("tx")?, position: r.try_get("global_position")? },
        aggregate_type: r.try_get("aggregate_type")?,
        aggregate_id: r.try_get("aggregate_id")?,
        sequence: r.try_get("sequence")?,
        event_type: r.try_get("event_type")?,
        event_version: r.try_get("event_version")?,
        payload: r.try_get("payload")?,
        metadata: r.try_get("metadata")?,
        recorded_at: r.try_get("recorded_at")?,
    }
    .upcast())
}

fn sqlite_log_event(r: &sqlx::sqlite::SqliteRow) -> Result<LogEvent, StoreError> {
    let payload: String = r.try_get("payload")?;
    let metadata: String = r.try_get("metadata")?;
    Ok(LogEvent {
        cursor: LogCursor { transaction_id: 0, position: r.try_get("global_position")? },
        aggregate_type: r.try_get("aggregate_type")?,
        aggregate_id: r.try_get("aggregate_id")?,
        sequence: r.try_get("sequence")?,
        event_type: r.try_get("event_type")?,
        event_version: r.try_get("event_version")?,
        payload: serde_json::from_str(&payload)?,
        metadata: serde_json::from_str(&metadata)?,
        recorded_at: r.try_get::<DateTime<Utc>, _>("recorded_at")?,
    }
    .upcast())
}

/// A PostgreSQL URL without `sslmode` speaks plain TCP, as builds without TLS did: sqlx's
/// default (`prefer`) would encrypt every connection the server allows, costing CPU on every
/// query, and verify nothing. TLS is what the URL asks for:
/// `sslmode=require`, `verify-ca` or `verify-full` (RDS with `rds.force_ssl`). Other URLs pass.
pub fn plain_unless_asked(url: &str) -> std::borrow::Cow<'_, str> {
    let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    if !postgres || query.split('&').any(|p| p.starts_with("sslmode=")) {
        return url.into();
    }
    format!("{url}{}sslmode=disable", if url.contains('?') { '&' } else { '?' }).into()
}
