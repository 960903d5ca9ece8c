use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::{Any, Transaction};
use store::{EventStore, LogCursor, LogEvent};
use worker_kit::{
    advance_checkpoint, park, parked_aggregates, read_checkpoint, reset_checkpoint, Checkpoint, Consumer, DeadLetter, Driver,
    ExternalSource, ReadDb, ReaderState, ReaderStatus, HELD_BACK,
};

use crate::{Projection, ProjectionError};

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

/// Fails one batch of a projection when it reaches its `at`-th event, once: stands in for a
/// crash in the middle of a batch.
#[cfg(feature = "faults")]
struct Fault {
    projection: &'static str,
    at: usize,
}

/// One SQL projection as a consumer of the log: each batch's read-model writes and its
/// checkpoint commit in one transaction, compare-and-set.
pub struct SqlProjection {
    projection: Arc<dyn Projection>,
    db: ReadDb,
    #[cfg(feature = "faults")]
    fault: Arc<std::sync::Mutex<Option<Fault>>>,
}

impl SqlProjection {
    pub fn projection(&self) -> &Arc<dyn Projection> {
        &self.projection
    }

    /// Where to fail this batch of `handled` events, if a fault is due in it (taken once).
    #[cfg(feature = "faults")]
    fn take_fault(&self, handled: usize) -> Option<usize> {
        let mut fault = self.fault.lock().unwrap_or_else(|p| p.into_inner());
        let at = fault.as_ref().filter(|f| f.projection == self.projection.name() && f.at < handled).map(|f| f.at)?;
        *fault = None;
        Some(at)
    }
}

#[async_trait]
impl Consumer for SqlProjection {
    type Error = ProjectionError;

    fn name(&self) -> &'static str {
        self.projection.name()
    }

    async fn checkpoint(&self) -> Result<Checkpoint, ProjectionError> {
        Ok(self.db.checkpoint(self.name()).await?)
    }

    async fn consume(&self, from: Checkpoint, events: &[LogEvent]) -> Result<(), ProjectionError> {
        let mut tx = self.db.begin().await?;
        apply_events(&mut tx, self, self.projection.table(), self.name(), from.map(|(c, _)| c), events).await?;
        tx.commit().await?;
        Ok(())
    }

    fn can_park(&self) -> bool {
        true
    }

    async fn park(&self, from: Checkpoint, event: &LogEvent, error: &str) -> Result<(), ProjectionError> {
        let mut tx = self.db.begin().await?;
        if self.projection.handles(&event.aggregate_type) {
            park(&mut tx, self.name(), event, error).await?;
        }
        advance_checkpoint(&mut tx, self.name(), from.map(|(c, _)| c), event.cursor, 1).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Applies `events` (the log right after checkpoint `stored`) to `table` inside `tx` and
/// moves checkpoint `checkpoint` past them, compare-and-set: if anybody else moved it since it
/// was read (a second worker, a rebuild that swapped tables), nothing of the batch is kept.
/// Events of an aggregate with a dead letter are parked behind it.
async fn apply_events(
    tx: &mut Transaction<'static, Any>,
    member: &SqlProjection,
    table: &str,
    checkpoint: &str,
    stored: Option<LogCursor>,
    events: &[LogEvent],
) -> Result<usize, ProjectionError> {
    let Some(last) = events.last().map(|e| e.cursor) else {
        return Ok(0);
    };
    let projection = member.projection.as_ref();
    // A batch with nothing for this projection only moves its checkpoint: no need to ask which
    // of its aggregates are parked (one query less per idle projection and batch).
    if !events.iter().any(|e| projection.handles(&e.aggregate_type)) {
        advance_checkpoint(tx, checkpoint, stored, last, events.len() as i64).await?;
        return Ok(events.len());
    }
    let parked = parked_aggregates(tx, projection.name()).await?;
    let (held, handled): (Vec<&LogEvent>, Vec<&LogEvent>) =
        events.iter().filter(|e| projection.handles(&e.aggregate_type)).partition(|e| parked.contains(&e.aggregate_id));
    for event in held {
        park(tx, projection.name(), event, HELD_BACK).await?;
    }
    #[cfg(feature = "faults")]
    if let Some(at) = member.take_fault(handled.len()) {
        // Half the batch written, then the "crash": the transaction is never committed.
        projection.apply(tx, table, &handled[..at]).await?;
        return Err(ProjectionError::Injected);
    }
    if !handled.is_empty() {
        projection.apply(tx, table, &handled).await?;
    }
    advance_checkpoint(tx, checkpoint, stored, last, events.len() as i64).await?;
    Ok(events.len())
}

/// The driver of the SQL projections in `db`: failures recorded there, members at the same time
/// where the database takes concurrent writers.
fn sql_driver(store: EventStore, db: &ReadDb, members: Vec<Arc<SqlProjection>>) -> Driver<SqlProjection> {
    Driver::new("projection", store, members).with_health_db(db.clone()).with_concurrent_members(!db.is_sqlite())
}

/// The SQL projections on the one consumer driver, and what operators do with them: status,
/// read-your-writes waits, rebuilds, resets, dead letters.
pub struct Runner {
    db: ReadDb,
    driver: Arc<Driver<SqlProjection>>,
    #[cfg(feature = "faults")]
    fault: Arc<std::sync::Mutex<Option<Fault>>>,
    /// Set when the projections are fed by Kafka instead of the log (`SHOP_EVENT_SOURCE=kafka`).
    source: OnceLock<Arc<dyn ExternalSource>>,
    /// Failed Kafka-fed batches in a row, per projection.
    sourced_failures: std::sync::Mutex<std::collections::HashMap<&'static str, u32>>,
}

impl Runner {
    pub fn new(store: EventStore, db: ReadDb, projections: Vec<Arc<dyn Projection>>) -> Self {
        #[cfg(feature = "faults")]
        let fault = Arc::new(std::sync::Mutex::new(None));
        let members = projections
            .into_iter()
            .map(|projection| {
                Arc::new(SqlProjection {
                    projection,
                    db: db.clone(),
                    #[cfg(feature = "faults")]
                    fault: Arc::clone(&fault),
                })
            })
            .collect();
        Self {
            driver: Arc::new(sql_driver(store, &db, members)),
            db,
            #[cfg(feature = "faults")]
            fault,
            source: OnceLock::new(),
            sourced_failures: Default::default(),
        }
    }

    /// Failed Kafka-fed batches of `projection` in a row; sets them when `set`.
    pub(crate) fn sourced_failures(&self, projection: &'static str, set: Option<u32>) -> u32 {
        let mut failures = self.sourced_failures.lock().unwrap_or_else(|p| p.into_inner());
        match set {
            Some(n) => {
                failures.insert(projection, n);
                n
            }
            None => failures.get(projection).copied().unwrap_or(0),
        }
    }

    /// Log events read per step.
    pub fn with_batch_size(self, n: u32) -> Self {
        let members = self.driver.members().to_vec();
        let store = self.driver.store().clone();
        Self { driver: Arc::new(sql_driver(store, &self.db, members).with_batch_size(n)), ..self }
    }

    pub fn driver(&self) -> &Arc<Driver<SqlProjection>> {
        &self.driver
    }

    pub fn store(&self) -> &EventStore {
        self.driver.store()
    }

    pub fn db(&self) -> &ReadDb {
        &self.db
    }

    pub fn projections(&self) -> impl Iterator<Item = &Arc<dyn Projection>> {
        self.driver.members().iter().map(|m| &m.projection)
    }

    fn member(&self, name: &str) -> Result<&Arc<SqlProjection>, ProjectionError> {
        self.driver.member(name).ok_or_else(|| ProjectionError::Malformed(format!("unknown projection {name}")))
    }

    /// Makes the next batch of `projection` with more than `at` events for it write the first
    /// `at` and then fail before committing.
    #[cfg(feature = "faults")]
    pub fn inject_fault(&self, projection: &'static str, at: usize) {
        *self.fault.lock().unwrap_or_else(|p| p.into_inner()) = Some(Fault { projection, at });
    }

    /// The stored checkpoint of a projection (the start of the log if it has none) and the
    /// number of log events it has processed.
    pub async fn checkpoint(&self, name: &str) -> Result<(LogCursor, i64), ProjectionError> {
        Ok(self.db.checkpoint(name).await?.unwrap_or_default())
    }

    /// Processes every projection up to the last event committed before the call.
    pub async fn catch_up(&self) -> Result<(), ProjectionError> {
        self.driver.catch_up().await
    }

    /// Whether `projection` has processed the event at `position` (true for position 0).
    pub async fn reached(&self, projection: &str, position: i64) -> Result<bool, ProjectionError> {
        let checkpoint = self.member(projection)?.checkpoint().await?;
        Ok(worker_kit::reached(self.store(), checkpoint, position).await?)
    }

    /// Waits up to `timeout` until `projection` has processed the event at global `position`
    /// (read-your-writes). `false` if it has not by then.
    pub async fn wait_for(&self, projection: &str, position: i64, timeout: Duration) -> Result<bool, ProjectionError> {
        if let Some(source) = self.source.get() {
            let types = public_types_of(self.member(projection)?.projection.as_ref());
            return Ok(source.wait_for(projection, &types, position, timeout).await?);
        }
        worker_kit::poll_until(timeout, || self.reached(projection, position)).await
    }

    /// Every projection's progress, and that of the other readers that keep their checkpoint
    /// in this database (the relay, the order saga, the notifier) once they have started.
    pub async fn status(&self) -> Result<Vec<ReaderStatus>, ProjectionError> {
        let store = self.store();
        let head = store.head_position().await?;
        let mut conn = self.db.pool.acquire().await?;
        // Fed by Kafka: every projection's lag at once, each bounded, so that brokers that do
        // not answer make the lag unknown rather than the status page slow.
        let lags = match self.source.get() {
            Some(source) => Some(
                futures::future::join_all(self.driver.members().iter().map(|member| {
                    let types = public_types_of(member.projection.as_ref());
                    async move {
                        match tokio::time::timeout(LAG_TIMEOUT, source.lag(member.name(), &types)).await {
                            Ok(Ok(lag)) => Ok(lag),
                            Ok(Err(e)) => Err(e.to_string()),
                            Err(_) => Err(format!("the brokers did not answer within {LAG_TIMEOUT:?}")),
                        }
                    }
                }))
                .await,
            ),
            None => None,
        };
        let mut out = Vec::new();
        for (i, member) in self.driver.members().iter().enumerate() {
            let name = member.name();
            let checkpoint = Some(read_checkpoint(&mut conn, name).await?.unwrap_or_default());
            let mut status = worker_kit::status_at(store, head, name, checkpoint, self.driver.last_error(name)).await?;
            // A rebuild keeps its shadow checkpoint until it swaps.
            if status.last_error.is_none() && read_checkpoint(&mut conn, &format!("{name}:rebuild")).await?.is_some() {
                status.state = ReaderState::Rebuilding;
            }
            if let (Some(source), Some(lags)) = (self.source.get(), &lags) {
                // Fed by Kafka: the log checkpoint does not move; the lag is in messages, and
                // the age of the oldest one not applied is not known without reading it.
                status.source = source.kind();
                match &lags[i] {
                    Ok(lag) => {
                        status.lag_events = Some(*lag);
                        status.lag_ms = (*lag == 0).then_some(0);
                    }
                    Err(e) => {
                        (status.lag_events, status.lag_ms) = (None, None);
                        status.last_error.get_or_insert_with(|| format!("lag unknown: {e}"));
                    }
                }
            }
            out.push(status);
        }
        for reader in OTHER_READERS {
            if let Some(checkpoint) = read_checkpoint(&mut conn, reader).await? {
                out.push(worker_kit::status_at(store, head, reader, Some(checkpoint), None).await?);
            }
        }
        Ok(out)
    }

    /// Empties a projection's read model and checkpoint, so it rebuilds from the start.
    pub async fn reset(&self, projection: &dyn Projection) -> Result<(), ProjectionError> {
        let mut tx = self.db.begin().await?;
        for table in projection.tables(projection.table()) {
            sqlx::query(&format!("DELETE FROM {table}")).execute(&mut *tx).await?;
        }
        reset_checkpoint(&mut tx, projection.name(), None).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Rebuilds a projection from the start of the log into a shadow table while the live one
    /// keeps serving (and keeps being updated), then swaps them in one transaction once the
    /// shadow has caught up. `progress(processed, head)` is called after every batch.
    pub async fn rebuild(&self, projection: &dyn Projection, mut progress: impl FnMut(i64, i64)) -> Result<RebuildReport, ProjectionError> {
        let member = self.member(projection.name())?;
        let store = self.store();
        let started = Instant::now();
        let live = projection.table();
        let shadow = format!("{live}_shadow");
        let shadow_checkpoint = format!("{}:rebuild", projection.name());
        // Live and shadow tables pair up in order: `rm_x` with `rm_x_shadow`, `rm_x_lines` with
        // `rm_x_shadow_lines`.
        let tables: Vec<(String, String)> = projection.tables(live).into_iter().zip(projection.tables(&shadow)).collect();
        {
            let mut conn = self.db.pool.acquire().await?;
            reset_checkpoint(&mut conn, &shadow_checkpoint, None).await?;
            for (live, shadow) in &tables {
                sqlx::query(&format!("DROP TABLE IF EXISTS {shadow}")).execute(&mut *conn).await?;
                self.db.create_shadow(&mut conn, live, shadow).await?;
            }
        }
        let mut processed = 0i64;
        // Up to the head, the next batch is read while this one is written.
        let (mut batches, reader) = worker_kit::read_ahead(store.clone(), LogCursor::default(), REBUILD_BATCH);
        let mut stored = None;
        let head = store.head_position().await?;
        while let Some(events) = batches.recv().await {
            let events = events?;
            let Some(last) = events.last().map(|e| e.cursor) else {
                break;
            };
            let mut tx = self.db.begin().await?;
            apply_events(&mut tx, member, &shadow, &shadow_checkpoint, stored, &events).await?;
            tx.commit().await?;
            stored = Some(last);
            processed += events.len() as i64;
            progress(processed, head.max(processed));
        }
        reader.abort();
        // Then what arrived meanwhile, batch by batch from the shadow checkpoint.
        loop {
            let mut tx = self.db.begin().await?;
            match self.apply_next(&mut tx, member, &shadow, &shadow_checkpoint).await? {
                0 => break,
                n => {
                    tx.commit().await?;
                    processed += n as i64;
                    progress(processed, store.head_position().await?);
                }
            }
        }
        // The swap: block the live tables, apply what arrived meanwhile to the shadows, replace
        // the live tables and the checkpoint, all or nothing.
        let mut tx = self.db.begin().await?;
        if !self.db.is_sqlite() {
            let live: Vec<&str> = tables.iter().map(|(live, _)| live.as_str()).collect();
            sqlx::query(&format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", live.join(", "))).execute(&mut *tx).await?;
        }
        loop {
            match self.apply_next(&mut tx, member, &shadow, &shadow_checkpoint).await? {
                0 => break,
                n => processed += n as i64,
            }
        }
        for (live, shadow) in &tables {
            sqlx::query(&format!("DROP TABLE {live}")).execute(&mut *tx).await?;
            sqlx::query(&format!("ALTER TABLE {shadow} RENAME TO {live}")).execute(&mut *tx).await?;
        }
        let rebuilt = read_checkpoint(&mut tx, &shadow_checkpoint).await?.unwrap_or_default();
        reset_checkpoint(&mut tx, &shadow_checkpoint, None).await?;
        reset_checkpoint(&mut tx, projection.name(), Some(rebuilt)).await?;
        tx.commit().await?;
        progress(processed, store.head_position().await?);
        Ok(RebuildReport { events: processed, elapsed: started.elapsed() })
    }

    /// Applies the batch after checkpoint `checkpoint` to `table` inside `tx`; the number of
    /// log events it held.
    async fn apply_next(
        &self,
        tx: &mut Transaction<'static, Any>,
        member: &SqlProjection,
        table: &str,
        checkpoint: &str,
    ) -> Result<usize, ProjectionError> {
        let stored = read_checkpoint(tx, checkpoint).await?.map(|(c, _)| c);
        let events = self.store().read_log(stored.unwrap_or_default(), REBUILD_BATCH).await?;
        apply_events(tx, member, table, checkpoint, stored, &events).await
    }

    /// Parked events of `tenant`, oldest first.
    pub async fn dead_letters(&self, tenant: &str) -> Result<Vec<DeadLetter>, ProjectionError> {
        Ok(worker_kit::dead_letters(&self.db, tenant).await?)
    }

    /// Applies again, in order and in one transaction, every parked event of the aggregate of
    /// dead letter `id`; they leave the dead letters only if all apply. `Ok(None)` if there
    /// is no such dead letter, else the number of events applied.
    pub async fn retry_dead_letter(&self, id: &str) -> Result<Option<usize>, ProjectionError> {
        use sqlx::Row as _;
        let row = sqlx::query("SELECT projection, aggregate_id FROM projection_dead_letters WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.db.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let (name, aggregate_id): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        let projection = self.member(&name)?.projection.clone();
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
            let event = self.store().read_log(before, 1).await?.into_iter().next().filter(|e| e.cursor == at);
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

    /// Makes read-your-writes and status ask `source` instead of the log checkpoints.
    pub fn use_source(&self, source: Arc<dyn ExternalSource>) {
        let _ = self.source.set(source);
    }

    pub fn source(&self) -> Option<&Arc<dyn ExternalSource>> {
        self.source.get()
    }
}

/// Readers of the log outside this crate that keep their checkpoint in the read-side
/// database, listed in the status once they have started.
/// How long the status waits for the brokers to give a Kafka-fed projection's lag.
const LAG_TIMEOUT: Duration = Duration::from_secs(3);

const OTHER_READERS: [&str; 3] = ["relay", "order_saga", "notifier"];

/// The published aggregate types a projection reads (its topics, when fed by Kafka).
fn public_types_of(projection: &dyn Projection) -> Vec<&'static str> {
    worker_kit::envelope::PUBLIC_TYPES.iter().copied().filter(|t| projection.handles(t)).collect()
}
