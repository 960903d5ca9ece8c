use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::Instrument as _;

use serde::Serialize;
use sqlx::{Any, Row as _, Transaction};
use store::{EventStore, LogCursor, LogEvent};
use tokio::sync::{watch, Notify};

use crate::{Projection, ProjectionError, ReadDb};

/// What one step of a projection did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A batch of this many log events was processed (some may not concern the projection).
    Applied(usize),
    /// Nothing new in the log.
    Idle,
}

/// A projection's progress, for `/admin/projections`.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectionStatus {
    pub name: &'static str,
    /// Global position of the last event processed.
    pub position: i64,
    pub transaction_id: i64,
    /// Log events processed since the read model was built.
    pub events: i64,
    /// Events written but not yet processed (approximate under concurrent writers).
    pub lag_events: i64,
    /// Age of the oldest event not yet processed; 0 when caught up; `null` when unknown (a
    /// Kafka-fed projection with messages pending).
    pub lag_ms: Option<i64>,
    /// Where the events come from: `log` or `kafka`.
    pub source: &'static str,
    /// `running`, `rebuilding` (`shop replay` is building a replacement), or `failed` (its last
    /// batch failed and is being retried).
    pub state: &'static str,
    pub last_error: Option<String>,
}

/// Fails one batch of a projection when it reaches its `at`-th event, once: stands in for a
/// crash in the middle of a batch.
struct Fault {
    projection: &'static str,
    at: usize,
}

/// How long a worker lets new events gather after catching up or being woken.
const GATHER: Duration = Duration::from_millis(10);

/// Log events per transaction while rebuilding: larger than live batches, since nobody waits
/// on a shadow table and each batch folds many events into few row writes.
const REBUILD_BATCH: u32 = 10_000;

/// What a rebuild did.
#[derive(Debug, Clone, Copy)]
pub struct RebuildReport {
    /// Log events processed.
    pub events: i64,
    pub elapsed: Duration,
}

/// An event a projection could not apply, parked for an operator.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub id: String,
    pub projection: String,
    pub aggregate_id: String,
    pub position: i64,
    pub error: String,
    pub parked_at_ms: i64,
}

pub(crate) async fn park(conn: &mut sqlx::AnyConnection, projection: &str, event: &LogEvent, error: &str) -> Result<(), ProjectionError> {
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

/// Consecutive failed rounds of a projection before its batch is taken apart event by event
/// and the failing events are parked.
pub const ATTEMPTS_BEFORE_PARKING: u32 = 3;

/// A checkpoint (position in the log and log events processed) by name, `None` if never set.
pub async fn read_checkpoint(conn: &mut sqlx::AnyConnection, name: &str) -> Result<Option<(LogCursor, i64)>, ProjectionError> {
    let row = sqlx::query("SELECT tx, position, events FROM projection_checkpoints WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| Ok((LogCursor { transaction_id: r.try_get(0)?, position: r.try_get(1)? }, r.try_get(2)?))).transpose()
}

/// Moves checkpoint `name` from `from` (what was read; `None` if it did not exist) to `to`,
/// counting `events` more, compare-and-set: [`ProjectionError::Concurrent`] if anybody moved
/// it in between.
pub async fn advance_checkpoint(
    conn: &mut sqlx::AnyConnection,
    name: &str,
    from: Option<LogCursor>,
    to: LogCursor,
    events: i64,
) -> Result<(), ProjectionError> {
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
        Err(ProjectionError::Concurrent)
    }
}

/// Runs projections over the global log.
pub struct Runner {
    store: EventStore,
    db: ReadDb,
    projections: Vec<Arc<dyn Projection>>,
    batch_size: u32,
    /// Notified by the event store after appends in this process, so idle workers look at once.
    new_events: Arc<Notify>,
    errors: Mutex<HashMap<&'static str, String>>,
    /// Consecutive failed rounds per projection.
    failures: Mutex<HashMap<&'static str, u32>>,
    /// When a failed projection may try again, and its current backoff.
    retry_at: Mutex<HashMap<&'static str, (Instant, Duration)>>,
    fault: Mutex<Option<Fault>>,
    /// Set when the projections are fed by Kafka instead of the log (`SHOP_EVENT_SOURCE=kafka`).
    pub(crate) source: std::sync::OnceLock<Arc<dyn crate::sourced::ExternalSource>>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Runner {
    pub fn new(store: EventStore, db: ReadDb, projections: Vec<Arc<dyn Projection>>) -> Self {
        Self {
            new_events: store.appended(),
            store,
            db,
            projections,
            batch_size: 500,
            errors: Mutex::new(HashMap::new()),
            retry_at: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            fault: Mutex::new(None),
            source: std::sync::OnceLock::new(),
        }
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    pub fn with_batch_size(mut self, n: u32) -> Self {
        self.batch_size = n.max(1);
        self
    }

    pub fn projections(&self) -> &[Arc<dyn Projection>] {
        &self.projections
    }

    pub fn db(&self) -> &ReadDb {
        &self.db
    }

    /// Makes the next batch of `projection` with more than `at` events for it write the first
    /// `at` and then fail before committing (tests only).
    pub fn inject_fault(&self, projection: &'static str, at: usize) {
        *self.fault.lock().unwrap_or_else(|p| p.into_inner()) = Some(Fault { projection, at });
    }

    /// Where to fail this batch of `handled` events, if a fault is due in it (taken once).
    fn take_fault(&self, projection: &str, handled: usize) -> Option<usize> {
        let mut fault = self.fault.lock().unwrap_or_else(|p| p.into_inner());
        let at = fault.as_ref().filter(|f| f.projection == projection && f.at < handled).map(|f| f.at)?;
        *fault = None;
        Some(at)
    }

    /// The stored checkpoint of a projection (the start of the log if it has none) and the
    /// number of log events it has processed.
    pub async fn checkpoint(&self, name: &str) -> Result<(LogCursor, i64), ProjectionError> {
        let mut conn = self.db.pool.acquire().await?;
        Ok(read_checkpoint(&mut conn, name).await?.unwrap_or_default())
    }

    /// Processes the next batch of the log for one projection: its read-model writes and its
    /// new checkpoint commit together, or not at all.
    pub async fn try_process_next(&self, projection: &dyn Projection) -> Result<Outcome, ProjectionError> {
        let mut tx = self.db.begin().await?;
        let outcome = self.apply_batch(&mut tx, projection, projection.table(), projection.name(), self.batch_size).await?;
        if outcome != Outcome::Idle {
            tx.commit().await?;
        }
        Ok(outcome)
    }

    /// Applies the batch after checkpoint `checkpoint` to `table` inside `tx` and moves the
    /// checkpoint, compare-and-set: if anybody else moved it since it was read (a second
    /// worker, a rebuild that swapped tables), the batch fails and nothing of it is kept.
    async fn apply_batch(
        &self,
        tx: &mut Transaction<'static, Any>,
        projection: &dyn Projection,
        table: &str,
        checkpoint: &str,
        limit: u32,
    ) -> Result<Outcome, ProjectionError> {
        let stored = read_checkpoint(tx, checkpoint).await?.map(|(c, _)| c);
        let events = self.store.read_log(stored.unwrap_or_default(), limit).await?;
        self.apply_events(tx, projection, table, checkpoint, stored, &events).await
    }

    /// Applies `events` (the log right after checkpoint `stored`) to `table` inside `tx` and
    /// moves the checkpoint past them, compare-and-set.
    async fn apply_events(
        &self,
        tx: &mut Transaction<'static, Any>,
        projection: &dyn Projection,
        table: &str,
        checkpoint: &str,
        stored: Option<LogCursor>,
        events: &[LogEvent],
    ) -> Result<Outcome, ProjectionError> {
        let Some(last) = events.last().map(|e| e.cursor) else {
            return Ok(Outcome::Idle);
        };
        let parked: std::collections::HashSet<String> =
            sqlx::query_scalar("SELECT DISTINCT aggregate_id FROM projection_dead_letters WHERE projection = $1")
                .bind(projection.name())
                .fetch_all(&mut **tx)
                .await?
                .into_iter()
                .collect();
        let (held, handled): (Vec<&LogEvent>, Vec<&LogEvent>) =
            events.iter().filter(|e| projection.handles(&e.aggregate_type)).partition(|e| parked.contains(&e.aggregate_id));
        for event in held {
            park(tx, projection.name(), event, "held back behind an earlier dead letter of this aggregate").await?;
        }
        if let Some(at) = self.take_fault(projection.name(), handled.len()) {
            // Half the batch written, then the "crash": the transaction is never committed.
            projection.apply(tx, table, &handled[..at]).await?;
            return Err(ProjectionError::Injected);
        }
        if !handled.is_empty() {
            projection.apply(tx, table, &handled).await?;
        }
        advance_checkpoint(tx, checkpoint, stored, last, events.len() as i64).await?;
        Ok(Outcome::Applied(events.len()))
    }

    /// Empties a projection's read model and checkpoint, so it rebuilds from the start.
    pub async fn reset(&self, projection: &dyn Projection) -> Result<(), ProjectionError> {
        let mut tx = self.db.begin().await?;
        for table in projection.tables(projection.table()) {
            sqlx::query(&format!("DELETE FROM {table}")).execute(&mut *tx).await?;
        }
        sqlx::query("DELETE FROM projection_checkpoints WHERE name = $1").bind(projection.name()).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Rebuilds a projection from the start of the log into a shadow table while the live one
    /// keeps serving (and keeps being updated), then swaps them in one transaction once the
    /// shadow has caught up. `progress(processed, head)` is called after every batch.
    pub async fn rebuild(&self, projection: &dyn Projection, mut progress: impl FnMut(i64, i64)) -> Result<RebuildReport, ProjectionError> {
        let started = Instant::now();
        let live = projection.table();
        let shadow = format!("{live}_shadow");
        let shadow_checkpoint = format!("{}:rebuild", projection.name());
        // Live and shadow tables pair up in order: `rm_x` with `rm_x_shadow`, `rm_x_lines` with
        // `rm_x_shadow_lines`.
        let tables: Vec<(String, String)> = projection.tables(live).into_iter().zip(projection.tables(&shadow)).collect();
        for (_, shadow) in &tables {
            sqlx::query(&format!("DROP TABLE IF EXISTS {shadow}")).execute(&self.db.pool).await?;
        }
        sqlx::query("DELETE FROM projection_checkpoints WHERE name = $1").bind(&shadow_checkpoint).execute(&self.db.pool).await?;
        for statement in projection.schema(&shadow, &format!("_{}", now_ms())) {
            sqlx::query(&statement).execute(&self.db.pool).await?;
        }
        let mut processed = 0i64;
        // Up to the head, the next batch is read while this one is written.
        let (mut batches, reader) = crate::read_ahead(self.store.clone(), LogCursor::default(), REBUILD_BATCH);
        let mut stored = None;
        let head = self.store.head_position().await?;
        while let Some(events) = batches.recv().await {
            let events = events?;
            let Some(last) = events.last().map(|e| e.cursor) else { break };
            let mut tx = self.db.begin().await?;
            self.apply_events(&mut tx, projection, &shadow, &shadow_checkpoint, stored, &events).await?;
            tx.commit().await?;
            stored = Some(last);
            processed += events.len() as i64;
            progress(processed, head.max(processed));
        }
        reader.abort();
        // Then what arrived meanwhile, batch by batch from the shadow checkpoint.
        loop {
            let mut tx = self.db.begin().await?;
            match self.apply_batch(&mut tx, projection, &shadow, &shadow_checkpoint, REBUILD_BATCH).await? {
                Outcome::Applied(n) => {
                    tx.commit().await?;
                    processed += n as i64;
                    progress(processed, self.store.head_position().await?);
                }
                Outcome::Idle => break,
            }
        }
        // The swap: block the live tables, apply what arrived meanwhile to the shadows, replace
        // the live tables and the checkpoint, all or nothing.
        let mut tx = self.db.begin().await?;
        if tx.backend_name() == "PostgreSQL" {
            let live: Vec<&str> = tables.iter().map(|(live, _)| live.as_str()).collect();
            sqlx::query(&format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", live.join(", "))).execute(&mut *tx).await?;
        }
        while let Outcome::Applied(n) = self.apply_batch(&mut tx, projection, &shadow, &shadow_checkpoint, REBUILD_BATCH).await? {
            processed += n as i64;
        }
        for (live, shadow) in &tables {
            sqlx::query(&format!("DROP TABLE {live}")).execute(&mut *tx).await?;
            sqlx::query(&format!("ALTER TABLE {shadow} RENAME TO {live}")).execute(&mut *tx).await?;
        }
        let (cursor, events) = read_checkpoint(&mut tx, &shadow_checkpoint).await?.unwrap_or_default();
        sqlx::query("DELETE FROM projection_checkpoints WHERE name = $1 OR name = $2")
            .bind(projection.name())
            .bind(&shadow_checkpoint)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO projection_checkpoints (name, tx, position, events, updated_at_ms) VALUES ($1, $2, $3, $4, $5)")
            .bind(projection.name())
            .bind(cursor.transaction_id)
            .bind(cursor.position)
            .bind(events)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        progress(processed, self.store.head_position().await?);
        Ok(RebuildReport { events: processed, elapsed: started.elapsed() })
    }

    /// Runs every projection until `stop` turns true. The log is read once per round, from
    /// the checkpoint of the projection furthest behind, and each projection applies the part
    /// after its own checkpoint in its own transaction; a failing projection is retried with
    /// backoff without holding the others back (they skip what they already have).
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            if *stop.borrow() {
                return;
            }
            let wait = match self.round().await {
                Ok(n) if n >= self.batch_size as usize => {
                    backoff = Duration::from_millis(100);
                    continue;
                }
                // Caught up: let a few milliseconds of events gather, so a busy log is read in
                // batches instead of once per command.
                Ok(n) if n > 0 => GATHER,
                Ok(_) => Duration::from_millis(50),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "projection round failed");
                    let wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    wait
                }
            };
            if wait == GATHER {
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            tokio::select! {
                _ = stop.changed() => {}
                _ = self.new_events.notified() => tokio::time::sleep(GATHER).await,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One read of the log for every projection; returns how many log events were read.
    async fn round(&self) -> Result<usize, ProjectionError> {
        let stored: HashMap<String, LogCursor> = sqlx::query("SELECT name, tx, position FROM projection_checkpoints")
            .fetch_all(&self.db.pool)
            .await?
            .into_iter()
            .map(|r| Ok((r.try_get(0)?, LogCursor { transaction_id: r.try_get(1)?, position: r.try_get(2)? })))
            .collect::<Result<_, sqlx::Error>>()?;
        let cursors: Vec<Option<LogCursor>> = self.projections.iter().map(|p| stored.get(p.name()).copied()).collect();
        let from = cursors.iter().map(|c| c.unwrap_or_default()).min().unwrap_or_default();
        let events = self.store.read_log(from, self.batch_size).await?;
        for (projection, cursor) in self.projections.iter().zip(cursors) {
            let name = projection.name();
            if self.retry_at.lock().unwrap_or_else(|p| p.into_inner()).get(name).is_some_and(|(at, _)| Instant::now() < *at) {
                continue;
            }
            let after = cursor.unwrap_or_default();
            let mine = &events[events.partition_point(|e| e.cursor <= after)..];
            if mine.is_empty() {
                continue;
            }
            let started = Instant::now();
            let span = crate::batch_span("projection.batch", name, mine.iter());
            let applied = async {
                let mut tx = self.db.begin().await?;
                self.apply_events(&mut tx, projection.as_ref(), projection.table(), name, cursor, mine).await?;
                tx.commit().await?;
                Ok::<_, ProjectionError>(())
            }
            .instrument(span)
            .await;
            match &applied {
                Ok(()) => crate::observe_batch("projection", name, mine.first().map(|e| e.recorded_at), mine.len(), started),
                // Another replica moving the checkpoint first is not a failure.
                Err(ProjectionError::Concurrent) => {}
                Err(_) => metrics::counter!("shop_projection_failures_total", "name" => name).increment(1),
            }
            let failures = match &applied {
                Ok(()) => 0,
                Err(ProjectionError::Concurrent) => 0,
                Err(_) => self.failures.lock().unwrap_or_else(|p| p.into_inner()).get(name).copied().unwrap_or(0) + 1,
            };
            if failures >= ATTEMPTS_BEFORE_PARKING {
                // A batch that keeps failing: apply it event by event and park what fails.
                self.isolate(projection.as_ref(), cursor, mine).await?;
                self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
                self.retry_at.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
                self.errors.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
                continue;
            }
            self.failures.lock().unwrap_or_else(|p| p.into_inner()).insert(name, failures);
            let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
            let mut retry_at = self.retry_at.lock().unwrap_or_else(|p| p.into_inner());
            match applied {
                Ok(()) => {
                    errors.remove(name);
                    retry_at.remove(name);
                }
                Err(e) => {
                    let backoff = retry_at.get(name).map_or(Duration::from_millis(100), |(_, b)| (*b * 2).min(Duration::from_secs(5)));
                    tracing::warn!(projection = name, error = %e, retry_in_ms = backoff.as_millis() as u64, "projection batch failed");
                    errors.insert(name, e.to_string());
                    retry_at.insert(name, (Instant::now() + backoff, backoff));
                }
            }
        }
        Ok(events.len())
    }

    /// Applies `events` one at a time, each with its checkpoint; an event that fails is parked
    /// (with its error) and the checkpoint moves past it, so the projection goes on.
    async fn isolate(
        &self,
        projection: &dyn Projection,
        mut cursor: Option<LogCursor>,
        events: &[LogEvent],
    ) -> Result<(), ProjectionError> {
        let name = projection.name();
        for event in events {
            let one = std::slice::from_ref(event);
            let mut tx = self.db.begin().await?;
            match self.apply_events(&mut tx, projection, projection.table(), name, cursor, one).await {
                Ok(_) => tx.commit().await?,
                Err(e) => {
                    drop(tx);
                    tracing::error!(projection = name, position = event.cursor.position, aggregate_id = %event.aggregate_id, error = %e, "event parked as a dead letter");
                    let mut tx = self.db.begin().await?;
                    if projection.handles(&event.aggregate_type) {
                        park(&mut tx, name, event, &e.to_string()).await?;
                    }
                    advance_checkpoint(&mut tx, name, cursor, event.cursor, 1).await?;
                    tx.commit().await?;
                }
            }
            cursor = Some(event.cursor);
        }
        Ok(())
    }

    /// Parked events whose aggregate id starts with `prefix` (a tenant's `<tenant>:`), oldest
    /// first.
    pub async fn dead_letters(&self, prefix: &str) -> Result<Vec<DeadLetter>, ProjectionError> {
        let rows = sqlx::query(
            "SELECT id, projection, aggregate_id, position, error, parked_at_ms FROM projection_dead_letters \
             WHERE aggregate_id LIKE $1 ORDER BY tx, position",
        )
        .bind(format!("{prefix}%"))
        .fetch_all(&self.db.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(DeadLetter {
                    id: r.try_get(0)?,
                    projection: r.try_get(1)?,
                    aggregate_id: r.try_get(2)?,
                    position: r.try_get(3)?,
                    error: r.try_get(4)?,
                    parked_at_ms: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// Applies again, in order and in one transaction, every parked event of the aggregate of
    /// dead letter `id`; they leave the dead letters only if all apply. `Ok(None)` if there
    /// is no such dead letter, else the number of events applied.
    pub async fn retry_dead_letter(&self, id: &str) -> Result<Option<usize>, ProjectionError> {
        let row = sqlx::query("SELECT projection, aggregate_id FROM projection_dead_letters WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.db.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let (name, aggregate_id): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        let projection = self
            .projections
            .iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| ProjectionError::Malformed(format!("unknown projection {name}")))?;
        let mut tx = self.db.begin().await?;
        let parked = sqlx::query(
            "SELECT tx, position FROM projection_dead_letters WHERE projection = $1 AND aggregate_id = $2 ORDER BY tx, position",
        )
        .bind(&name)
        .bind(&aggregate_id)
        .fetch_all(&mut *tx)
        .await?;
        let mut events = Vec::new();
        for r in parked {
            let at = LogCursor { transaction_id: r.try_get(0)?, position: r.try_get(1)? };
            let before = LogCursor { transaction_id: at.transaction_id, position: at.position - 1 };
            let event = self.store.read_log(before, 1).await?.into_iter().next().filter(|e| e.cursor == at);
            events.push(event.ok_or_else(|| ProjectionError::Malformed(format!("parked event at {} is not in the log", at.position)))?);
        }
        let refs: Vec<&LogEvent> = events.iter().collect();
        projection.apply(&mut tx, projection.table(), &refs).await?;
        sqlx::query("DELETE FROM projection_dead_letters WHERE projection = $1 AND aggregate_id = $2")
            .bind(&name)
            .bind(&aggregate_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(events.len()))
    }

    /// Processes every projection up to the last event committed before the call (tools and
    /// tests). A transaction still open anywhere in the cluster can hide later events for a
    /// moment (see `EventStore::read_log`), so an idle log is only trusted once that event has
    /// been processed.
    pub async fn catch_up(&self) -> Result<(), ProjectionError> {
        let head = self.store.head_position().await?;
        for p in &self.projections {
            loop {
                if self.try_process_next(p.as_ref()).await? == Outcome::Idle {
                    if self.reached(p.name(), head).await? {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        Ok(())
    }

    /// Whether `projection` has processed the event at `position` (true for position 0).
    pub async fn reached(&self, projection: &str, position: i64) -> Result<bool, ProjectionError> {
        if position == 0 {
            return Ok(true);
        }
        match self.store.cursor_of(position).await? {
            Some(target) => Ok(self.checkpoint(projection).await?.0 >= target),
            None => Ok(false),
        }
    }

    /// Waits up to `timeout` until `projection` has processed the event at global `position`
    /// (read-your-writes). `false` if it has not by then.
    pub async fn wait_for(&self, projection: &str, position: i64, timeout: Duration) -> Result<bool, ProjectionError> {
        if let Some(source) = self.source.get() {
            let Some(p) = self.projections.iter().find(|p| p.name() == projection) else {
                return Err(ProjectionError::Malformed(format!("unknown projection {projection}")));
            };
            return source.wait_for(p.as_ref(), position, timeout).await;
        }
        crate::poll_until(timeout, || self.reached(projection, position)).await
    }

    /// Every projection's progress, and the relay's when one has run against this database.
    pub async fn status(&self) -> Result<Vec<ProjectionStatus>, ProjectionError> {
        let head = self.store.head_position().await?;
        let mut conn = self.db.pool.acquire().await?;
        let mut out = Vec::new();
        for p in &self.projections {
            let name = p.name();
            let checkpoint = read_checkpoint(&mut conn, name).await?.unwrap_or_default();
            let last_error = self.errors.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned();
            let mut status = status_at(&self.store, head, name, Some(checkpoint), last_error).await?;
            // A rebuild keeps its shadow checkpoint until it swaps.
            if status.last_error.is_none() && read_checkpoint(&mut conn, &format!("{name}:rebuild")).await?.is_some() {
                status.state = "rebuilding";
            }
            if let Some(source) = self.source.get() {
                // Fed by Kafka: the log checkpoint does not move; the lag is in messages, and
                // the age of the oldest one not applied is not known without reading it.
                status.source = source.kind();
                status.lag_events = source.lag(p.as_ref()).await?;
                status.lag_ms = (status.lag_events == 0).then_some(0);
            }
            out.push(status);
        }
        // Other readers of the log that keep their checkpoint here: the relay to Kafka, the
        // order saga and the notifier (their crates name them; listed once they have started).
        for reader in ["relay", "order_saga", "notifier"] {
            if let Some(checkpoint) = read_checkpoint(&mut conn, reader).await? {
                out.push(status_at(&self.store, head, reader, Some(checkpoint), None).await?);
            }
        }
        Ok(out)
    }
}

/// The progress of a reader of the log at `checkpoint`, with its lag behind `head`.
pub(crate) async fn status_at(
    store: &EventStore,
    head: i64,
    name: &'static str,
    checkpoint: Option<(LogCursor, i64)>,
    last_error: Option<String>,
) -> Result<ProjectionStatus, ProjectionError> {
    let (cursor, events) = checkpoint.unwrap_or_default();
    let next = store.read_log(cursor, 1).await?;
    Ok(ProjectionStatus {
        name,
        position: cursor.position,
        transaction_id: cursor.transaction_id,
        events,
        lag_events: if next.is_empty() { 0 } else { (head - cursor.position).max(1) },
        lag_ms: Some(next.first().map_or(0, |e| (chrono::Utc::now() - e.recorded_at).num_milliseconds().max(0))),
        source: "log",
        state: if last_error.is_some() { "failed" } else { "running" },
        last_error,
    })
}
