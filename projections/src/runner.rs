use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::Row as _;
use store::{EventStore, LogCursor};
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
    /// Age of the oldest event not yet processed; 0 when caught up.
    pub lag_ms: i64,
    /// `running` or `failed` (its last batch failed and is being retried).
    pub state: &'static str,
    pub last_error: Option<String>,
}

/// Fails one batch of a projection when it reaches its `at`-th event, once: stands in for a
/// crash in the middle of a batch.
struct Fault {
    projection: &'static str,
    at: usize,
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
    fault: Mutex<Option<Fault>>,
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
            fault: Mutex::new(None),
        }
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

    /// Makes the next batch of `projection` fail at its `at`-th applied event (tests only).
    pub fn inject_fault(&self, projection: &'static str, at: usize) {
        *self.fault.lock().unwrap_or_else(|p| p.into_inner()) = Some(Fault { projection, at });
    }

    fn take_fault(&self, projection: &str, applied: usize) -> Result<(), ProjectionError> {
        let mut fault = self.fault.lock().unwrap_or_else(|p| p.into_inner());
        if fault.as_ref().is_some_and(|f| f.projection == projection && f.at == applied) {
            *fault = None;
            return Err(ProjectionError::Injected);
        }
        Ok(())
    }

    /// The stored checkpoint of a projection (the start of the log if it has none).
    pub async fn checkpoint(&self, name: &str) -> Result<(LogCursor, i64), ProjectionError> {
        let row = sqlx::query("SELECT tx, position, events FROM projection_checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.db.pool)
            .await?;
        Ok(match row {
            Some(r) => (LogCursor { transaction_id: r.try_get(0)?, position: r.try_get(1)? }, r.try_get(2)?),
            None => (LogCursor::default(), 0),
        })
    }

    /// Processes the next batch of the log for one projection: its read-model writes and its
    /// new checkpoint commit together, or not at all.
    pub async fn try_process_next(&self, projection: &dyn Projection) -> Result<Outcome, ProjectionError> {
        let name = projection.name();
        let (cursor, _) = self.checkpoint(name).await?;
        let events = self.store.read_log(cursor, self.batch_size).await?;
        let Some(last) = events.last().map(|e| e.cursor) else { return Ok(Outcome::Idle) };
        let mut tx = self.db.pool.begin().await?;
        let mut applied = 0;
        for event in events.iter().filter(|e| projection.handles(&e.aggregate_type)) {
            self.take_fault(name, applied)?;
            projection.apply(&mut tx, event).await?;
            applied += 1;
        }
        sqlx::query(
            "INSERT INTO projection_checkpoints (name, tx, position, events, updated_at_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO UPDATE SET tx = excluded.tx, position = excluded.position, \
             events = projection_checkpoints.events + excluded.events, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(name)
        .bind(last.transaction_id)
        .bind(last.position)
        .bind(events.len() as i64)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Outcome::Applied(events.len()))
    }

    /// Runs one projection until `stop` turns true: batches back to back while there is work,
    /// waiting for new events (or 50 ms) when idle, backing off after failures.
    pub async fn run_one(&self, projection: Arc<dyn Projection>, mut stop: watch::Receiver<bool>) {
        let name = projection.name();
        let mut backoff = Duration::from_millis(100);
        loop {
            if *stop.borrow() {
                return;
            }
            let wait = match self.try_process_next(projection.as_ref()).await {
                Ok(Outcome::Applied(_)) => {
                    self.errors.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
                    backoff = Duration::from_millis(100);
                    continue;
                }
                Ok(Outcome::Idle) => Duration::from_millis(50),
                Err(e) => {
                    tracing::warn!(projection = name, error = %e, retry_in_ms = backoff.as_millis() as u64, "projection batch failed");
                    self.errors.lock().unwrap_or_else(|p| p.into_inner()).insert(name, e.to_string());
                    let wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    wait
                }
            };
            tokio::select! {
                _ = stop.changed() => {}
                _ = self.new_events.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Runs every projection until `stop` turns true.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let workers: Vec<_> = self
            .projections
            .iter()
            .map(|p| {
                let (runner, p, stop) = (Arc::clone(&self), Arc::clone(p), stop.clone());
                tokio::spawn(async move { runner.run_one(p, stop).await })
            })
            .collect();
        for w in workers {
            let _ = w.await;
        }
    }

    /// Processes every projection until the log is exhausted (tools and tests).
    pub async fn catch_up(&self) -> Result<(), ProjectionError> {
        for p in &self.projections {
            while self.try_process_next(p.as_ref()).await? != Outcome::Idle {}
        }
        Ok(())
    }

    /// Waits up to `timeout` until `projection` has processed the event at global `position`
    /// (read-your-writes). `false` if it has not by then.
    pub async fn wait_for(&self, projection: &str, position: i64, timeout: Duration) -> Result<bool, ProjectionError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(target) = self.store.cursor_of(position).await? {
                if self.checkpoint(projection).await?.0 >= target {
                    return Ok(true);
                }
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(5).min(deadline - Instant::now())).await;
        }
    }

    pub async fn status(&self) -> Result<Vec<ProjectionStatus>, ProjectionError> {
        let head = self.store.head_position().await?;
        let mut out = Vec::new();
        for p in &self.projections {
            let name = p.name();
            let (cursor, events) = self.checkpoint(name).await?;
            let next = self.store.read_log(cursor, 1).await?;
            let lag_ms = next.first().map_or(0, |e| (chrono::Utc::now() - e.recorded_at).num_milliseconds().max(0));
            let last_error = self.errors.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned();
            out.push(ProjectionStatus {
                name,
                position: cursor.position,
                transaction_id: cursor.transaction_id,
                events,
                lag_events: if next.is_empty() { 0 } else { (head - cursor.position).max(1) },
                lag_ms,
                state: if last_error.is_some() { "failed" } else { "running" },
                last_error,
            });
        }
        Ok(out)
    }
}
