//! Projections fed by a message source other than the log (a Kafka consumer group,
//! `SHOP_EVENT_SOURCE=kafka`). Exactly once works the same way as with the log: a batch's
//! read-model writes and the source's offsets (next offset per topic partition, in
//! `projection_offsets`) commit in one transaction, compare-and-set; a message below its
//! partition's stored offset was applied before and is skipped, so a redelivery (a consumer
//! that crashed before committing to the broker, a rebalance) has no effect.

use async_trait::async_trait;
use store::LogEvent;
use worker_kit::{
    park, parked_aggregates, read_offsets, Offsets, Sourced, SourcedConsumer, WorkerError, ATTEMPTS_BEFORE_PARKING, HELD_BACK,
};

use crate::{Projection, ProjectionError, Runner};

impl Runner {
    /// The offsets `projection` has applied up to.
    pub async fn offsets(&self, projection: &str) -> Result<Offsets, ProjectionError> {
        Ok(read_offsets(&self.db().pool, projection).await?)
    }

    /// Applies `batch` (in delivery order) to `projection`, skipping messages applied before;
    /// the read-model writes and the new offsets commit together, or not at all. Events of an
    /// aggregate with a dead letter are parked behind it. Returns the number of events applied.
    pub async fn apply_sourced(&self, projection: &dyn Projection, batch: &[Sourced]) -> Result<usize, ProjectionError> {
        use tracing::Instrument as _;
        let started = std::time::Instant::now();
        let span = worker_kit::batch_span("projection.batch", projection.name(), batch.iter().map(|m| &m.event));
        let result = self.commit_sourced(projection, batch, None).instrument(span).await;
        match &result {
            Ok(_) => {
                let oldest = batch.iter().map(|m| m.event.recorded_at).min();
                worker_kit::observe_batch("projection", projection.name(), oldest, batch.len(), started);
            }
            Err(e) if worker_kit::ConsumerError::is_concurrent(e) => {}
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
        let parked = parked_aggregates(&mut tx, projection.name()).await?;
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
            park(&mut tx, projection.name(), &event, failed.unwrap_or(HELD_BACK)).await?;
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
                return Err(WorkerError::Concurrent.into());
            }
        }
        tx.commit().await?;
        Ok(handled.len())
    }
}

/// The projections as a member of a consumer group: each batch goes to every projection in
/// turn (one that applied it before skips it by its stored offsets, so the whole batch can be
/// given again until every projection has it). A projection whose batch failed
/// [`ATTEMPTS_BEFORE_PARKING`] times in a row gets it message by message, parking the ones
/// that fail.
#[async_trait]
impl SourcedConsumer for Runner {
    fn name(&self) -> &'static str {
        "projections"
    }

    fn handles(&self, aggregate_type: &str) -> bool {
        self.projections().any(|p| p.handles(aggregate_type))
    }

    /// A partition starts at the lowest offset any projection stored; at the beginning when
    /// some projection has none.
    async fn start_offsets(&self) -> Result<Option<Offsets>, WorkerError> {
        let mut stored: Vec<Offsets> = Vec::new();
        for p in self.projections() {
            stored.push(read_offsets(&self.db().pool, p.name()).await?);
        }
        let mut starts = Offsets::new();
        if let Some((first, rest)) = stored.split_first() {
            for (key, offset) in first {
                let lowest = rest.iter().map(|o| o.get(key).copied()).try_fold(*offset, |low, o| o.map(|o| low.min(o)));
                if let Some(lowest) = lowest {
                    starts.insert(key.clone(), lowest);
                }
            }
        }
        Ok(Some(starts))
    }

    async fn consume_sourced(&self, batch: &[Sourced]) -> Result<(), String> {
        for p in self.projections() {
            let attempts = self.sourced_failures(p.name(), None);
            let result = if attempts < ATTEMPTS_BEFORE_PARKING {
                self.apply_sourced(p.as_ref(), batch).await.map(|_| ())
            } else {
                self.isolate_sourced(p.as_ref(), batch).await
            };
            match result {
                Ok(()) => {
                    self.sourced_failures(p.name(), Some(0));
                }
                Err(e) => {
                    self.sourced_failures(p.name(), Some(attempts + 1));
                    return Err(format!("projection {}: {e}", p.name()));
                }
            }
        }
        Ok(())
    }
}
