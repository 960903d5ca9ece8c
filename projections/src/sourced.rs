//! Projections fed by a message source other than the log (a Kafka consumer group,
//! `SHOP_EVENT_SOURCE=kafka`). Exactly once works the same way as with the log: a batch's
//! read-model writes and the source's offsets (next offset per topic partition, in
//! `projection_offsets`) commit in one transaction, compare-and-set; a message below its
//! partition's stored offset was applied before and is skipped, so a redelivery (a consumer
//! that crashed before committing to the broker, a rebalance) has no effect.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row as _;
use store::LogEvent;

use crate::{Projection, ProjectionError, Runner};

/// One event as a source delivered it.
#[derive(Debug, Clone)]
pub struct Sourced {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub event: LogEvent,
}

/// Next offset to apply, by (topic, partition).
pub type Offsets = HashMap<(String, i32), i64>;

/// What the runner asks of an external source for read-your-writes and status.
#[async_trait]
pub trait ExternalSource: Send + Sync {
    /// `kafka`, for status and logs.
    fn kind(&self) -> &'static str;
    /// Waits up to `timeout` until `projection` has applied the event at global `position`.
    async fn wait_for(&self, projection: &dyn Projection, position: i64, timeout: Duration) -> Result<bool, ProjectionError>;
    /// Messages of the projection's topics not yet applied.
    async fn lag(&self, projection: &dyn Projection) -> Result<i64, ProjectionError>;
}

async fn read_offsets<'c, E>(executor: E, projection: &str) -> Result<Offsets, ProjectionError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let rows = sqlx::query("SELECT topic, partition_id, next_offset FROM projection_offsets WHERE projection = $1")
        .bind(projection)
        .fetch_all(executor)
        .await?;
    rows.into_iter().map(|r| Ok(((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)? as i32), r.try_get::<i64, _>(2)?))).collect()
}

impl Runner {
    /// The offsets `projection` has applied up to.
    pub async fn offsets(&self, projection: &str) -> Result<Offsets, ProjectionError> {
        read_offsets(&self.db().pool, projection).await
    }

    /// Applies `batch` (in delivery order) to `projection`, skipping messages applied before;
    /// the read-model writes and the new offsets commit together, or not at all. Events of an
    /// aggregate with a dead letter are parked behind it. Returns the number of events applied.
    pub async fn apply_sourced(&self, projection: &dyn Projection, batch: &[Sourced]) -> Result<usize, ProjectionError> {
        use tracing::Instrument as _;
        let started = std::time::Instant::now();
        let span = crate::batch_span("projection.batch", projection.name(), batch.iter().map(|m| &m.event));
        let result = self.commit_sourced(projection, batch, None).instrument(span).await;
        match &result {
            Ok(_) => {
                let oldest = batch.iter().map(|m| m.event.recorded_at).min();
                crate::observe_batch("projection", projection.name(), oldest, batch.len(), started);
            }
            Err(ProjectionError::Concurrent) => {}
            Err(_) => metrics::counter!("shop_projection_failures_total", "name" => projection.name().to_owned()).increment(1),
        }
        result
    }

    /// Applies `batch` message by message after it kept failing: a message that fails alone is
    /// parked as a dead letter (with the later events of its aggregate), and the rest go on.
    pub async fn isolate_sourced(&self, projection: &dyn Projection, batch: &[Sourced]) -> Result<(), ProjectionError> {
        for m in batch {
            let one = std::slice::from_ref(m);
            if let Err(e) = self.commit_sourced(projection, one, None).await {
                tracing::error!(projection = projection.name(), position = m.event.cursor.position, aggregate_id = %m.event.aggregate_id, error = %e, "event parked as a dead letter");
                self.commit_sourced(projection, one, Some(&e.to_string())).await?;
            }
        }
        Ok(())
    }

    /// With `failed`, parks the batch's events with that error instead of applying them.
    async fn commit_sourced(&self, projection: &dyn Projection, batch: &[Sourced], failed: Option<&str>) -> Result<usize, ProjectionError> {
        let mut tx = self.db().begin().await?;
        let stored = read_offsets(&mut *tx, projection.name()).await?;
        let parked: std::collections::HashSet<String> =
            sqlx::query_scalar("SELECT DISTINCT aggregate_id FROM projection_dead_letters WHERE projection = $1")
                .bind(projection.name())
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();
        let mut next = stored.clone();
        let mut fresh = Vec::new();
        for m in batch {
            let at = next.entry((m.topic.clone(), m.partition)).or_insert(0);
            if m.offset >= *at {
                *at = m.offset + 1;
                fresh.push(&m.event);
            }
        }
        let (held, handled): (Vec<&LogEvent>, Vec<&LogEvent>) = fresh
            .into_iter()
            .filter(|e| projection.handles(&e.aggregate_type))
            .partition(|e| failed.is_some() || parked.contains(&e.aggregate_id));
        for event in held {
            // Parked at its place in the log, so a retry reads it back from there.
            let cursor = self.store().cursor_of(event.cursor.position).await?.unwrap_or(event.cursor);
            let event = LogEvent { cursor, ..event.clone() };
            let why = failed.unwrap_or("held back behind an earlier dead letter of this aggregate");
            crate::runner::park(&mut tx, projection.name(), &event, why).await?;
        }
        if !handled.is_empty() {
            projection.apply(&mut tx, projection.table(), &handled).await?;
        }
        for (key, offset) in &next {
            let moved = match stored.get(key) {
                Some(old) if old == offset => continue,
                Some(old) => sqlx::query(
                    "UPDATE projection_offsets SET next_offset = $1 WHERE projection = $2 AND topic = $3 AND partition_id = $4 AND next_offset = $5",
                )
                .bind(*offset)
                .bind(projection.name())
                .bind(&key.0)
                .bind(i64::from(key.1))
                .bind(*old),
                None => sqlx::query(
                    "INSERT INTO projection_offsets (projection, topic, partition_id, next_offset) VALUES ($2, $3, $4, $1) \
                     ON CONFLICT (projection, topic, partition_id) DO NOTHING",
                )
                .bind(*offset)
                .bind(projection.name())
                .bind(&key.0)
                .bind(i64::from(key.1)),
            }
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if moved != 1 {
                return Err(ProjectionError::Concurrent);
            }
        }
        tx.commit().await?;
        Ok(handled.len())
    }

    /// Makes read-your-writes and status ask `source` instead of the log checkpoints.
    pub fn use_source(&self, source: Arc<dyn ExternalSource>) {
        let _ = self.source.set(source);
    }

    pub fn source(&self) -> Option<&Arc<dyn ExternalSource>> {
        self.source.get()
    }
}
