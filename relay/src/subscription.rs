//! The projections fed by a Kafka consumer group (`SHOP_EVENT_SOURCE=kafka`) instead of the
//! log: what another team's consumer would do, run by us.
//!
//! Offsets live with the read models (`projection_offsets`, written in each batch's
//! transaction, see `projections::sourced`), not in the broker: when partitions are assigned,
//! the consumer starts each one at the lowest next offset any projection stored (the
//! beginning when one has none), and a projection skips what it applied before. The group's
//! committed offsets are written too, as a hint for lag tools only.
//!
//! Read-your-writes: the event at position N has been applied when the relay's checkpoint is
//! past N (so N was delivered) and the projection's stored offsets have reached the high
//! watermarks of its topics read after that.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use projections::sourced::{ExternalSource, Offsets, Sourced};
use projections::{read_checkpoint, Projection, ProjectionError, Runner};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::{Envelope, RelayConfig, RelayError, CHECKPOINT, PUBLIC_TYPES};

/// Where each partition starts when assigned.
type Starts = Arc<Mutex<HashMap<(String, i32), i64>>>;

/// Seeks every assigned partition to the offset the read models stored.
pub struct SeekOnAssign {
    starts: Starts,
}

impl ClientContext for SeekOnAssign {}

impl ConsumerContext for SeekOnAssign {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
            if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
                tracing::warn!(?err, "kafka source: rebalance error");
            }
            if let Err(e) = consumer.unassign() {
                tracing::warn!(error = %e, "kafka source: unassign failed");
            }
            return;
        }
        let partitions: Vec<(String, i32)> = tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
        {
            let starts = self.starts.lock().unwrap_or_else(|p| p.into_inner());
            for (topic, partition) in &partitions {
                let offset = starts.get(&(topic.clone(), *partition)).map_or(Offset::Beginning, |n| Offset::Offset(*n));
                if let Err(e) = tpl.set_partition_offset(topic, *partition, offset) {
                    tracing::warn!(topic, partition, error = %e, "kafka source: cannot set the start offset");
                }
            }
        }
        match consumer.assign(tpl) {
            Ok(()) => tracing::info!(partitions = partitions.len(), "kafka source: partitions assigned at the stored offsets"),
            Err(e) => tracing::error!(error = %e, "kafka source: assign failed"),
        }
    }
}

/// A consumer group member that feeds the runner's projections.
pub struct KafkaSource {
    consumer: Arc<StreamConsumer<SeekOnAssign>>,
    starts: Starts,
    runner: Arc<Runner>,
    config: RelayConfig,
    batch_size: usize,
}

fn kafka(e: rdkafka::error::KafkaError) -> ProjectionError {
    ProjectionError::Malformed(format!("kafka: {e}"))
}

impl KafkaSource {
    /// A member of consumer group `group` on the topics of the runner's projections (created
    /// when missing). With `consume` false it only answers read-your-writes and lag (a query
    /// node), without joining the group.
    pub async fn new(runner: Arc<Runner>, config: RelayConfig, group: &str, consume: bool) -> Result<Self, RelayError> {
        crate::create_topics(&config).await?;
        // A partition starts at the lowest offset any projection stored; at the beginning when
        // some projection has none.
        let mut stored: Vec<Offsets> = Vec::new();
        for p in runner.projections() {
            stored.push(runner.offsets(p.name()).await?);
        }
        let mut starts: HashMap<(String, i32), i64> = HashMap::new();
        if let Some((first, rest)) = stored.split_first() {
            for (key, offset) in first {
                let lowest = rest.iter().map(|o| o.get(key).copied()).try_fold(*offset, |low, o| o.map(|o| low.min(o)));
                if let Some(lowest) = lowest {
                    starts.insert(key.clone(), lowest);
                }
            }
        }
        let starts = Arc::new(Mutex::new(starts));
        let consumer: StreamConsumer<SeekOnAssign> = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("partition.assignment.strategy", "range")
            .create_with_context(SeekOnAssign { starts: Arc::clone(&starts) })?;
        let source = Self { consumer: Arc::new(consumer), starts, runner, config, batch_size: 500 };
        let topics = source.topics(None);
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        if consume {
            source.consumer.subscribe(&names)?;
        }
        Ok(source)
    }

    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// The topics of `projection` (of every projection when `None`).
    fn topics(&self, projection: Option<&dyn Projection>) -> Vec<String> {
        PUBLIC_TYPES
            .iter()
            .filter(|t| match projection {
                Some(p) => p.handles(t),
                None => self.runner.projections().iter().any(|p| p.handles(t)),
            })
            .filter_map(|t| self.config.topic(t))
            .collect()
    }

    /// High watermarks (next offset to be written) of every partition of `topics`.
    async fn watermarks(&self, topics: Vec<String>) -> Result<Offsets, ProjectionError> {
        let consumer = Arc::clone(&self.consumer);
        tokio::task::spawn_blocking(move || {
            let timeout = Duration::from_secs(5);
            let mut marks = Offsets::new();
            for topic in topics {
                let metadata = consumer.fetch_metadata(Some(&topic), timeout).map_err(kafka)?;
                for t in metadata.topics() {
                    for p in t.partitions() {
                        let (_, high) = consumer.fetch_watermarks(&topic, p.id(), timeout).map_err(kafka)?;
                        marks.insert((topic.clone(), p.id()), high);
                    }
                }
            }
            Ok(marks)
        })
        .await
        .map_err(|e| ProjectionError::Malformed(format!("watermark task: {e}")))?
    }

    /// Consumes and applies batches until `stop` turns true. A batch is retried with backoff
    /// until every projection has applied it; nothing is skipped.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        loop {
            let first = tokio::select! {
                _ = stop.changed() => return,
                m = self.consumer.recv() => m,
            };
            let mut batch = Vec::new();
            match first {
                Ok(m) => self.push(&mut batch, &m),
                Err(e) => {
                    tracing::warn!(error = %e, "kafka source: receive failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
            let deadline = tokio::time::Instant::now() + Duration::from_millis(5);
            while batch.len() < self.batch_size {
                match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                    Ok(Ok(m)) => self.push(&mut batch, &m),
                    _ => break,
                }
            }
            for p in self.runner.projections() {
                if !self.apply(p.as_ref(), &batch, &stop).await {
                    return;
                }
            }
            {
                let mut starts = self.starts.lock().unwrap_or_else(|p| p.into_inner());
                for m in &batch {
                    let next = starts.entry((m.topic.clone(), m.partition)).or_insert(0);
                    *next = (*next).max(m.offset + 1);
                }
            }
            if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Async) {
                tracing::debug!(error = %e, "kafka source: offset hint not committed");
            }
        }
    }

    /// Applies `batch` to `p`, retrying with backoff; a batch that failed
    /// `ATTEMPTS_BEFORE_PARKING` times is applied message by message, parking the ones that
    /// fail. `false` when asked to stop first.
    async fn apply(&self, p: &dyn Projection, batch: &[Sourced], stop: &watch::Receiver<bool>) -> bool {
        let mut backoff = Duration::from_millis(100);
        let mut attempts = 0;
        loop {
            let result = if attempts < projections::ATTEMPTS_BEFORE_PARKING {
                self.runner.apply_sourced(p, batch).await.map(|_| ())
            } else {
                self.runner.isolate_sourced(p, batch).await
            };
            match result {
                Ok(()) => return true,
                Err(e) => tracing::warn!(projection = p.name(), attempts, error = %e, "kafka source: batch failed; retrying"),
            }
            if *stop.borrow() {
                return false;
            }
            attempts += 1;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    fn push(&self, batch: &mut Vec<Sourced>, m: &impl Message) {
        match Envelope::parse(m.payload().unwrap_or_default()) {
            Ok(event) => batch.push(Sourced { topic: m.topic().to_owned(), partition: m.partition(), offset: m.offset(), event }),
            // Not from our relay: nothing a projection could apply; later messages move past it.
            Err(e) => {
                tracing::error!(topic = m.topic(), partition = m.partition(), offset = m.offset(), error = %e, "kafka source: unreadable message skipped")
            }
        }
    }

    /// Whether the relay has delivered the event at `position`.
    async fn published(&self, position: i64) -> Result<bool, ProjectionError> {
        let Some(target) = self.runner.store().cursor_of(position).await? else {
            return Ok(position == 0);
        };
        let mut conn = self.runner.db().pool.acquire().await?;
        Ok(read_checkpoint(&mut conn, CHECKPOINT).await?.is_some_and(|(c, _)| c >= target))
    }
}

#[async_trait]
impl ExternalSource for KafkaSource {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    async fn wait_for(&self, projection: &dyn Projection, position: i64, timeout: Duration) -> Result<bool, ProjectionError> {
        let deadline = Instant::now() + timeout;
        if !projections::poll_until(timeout, || self.published(position)).await? {
            return Ok(false);
        }
        let marks = self.watermarks(self.topics(Some(projection))).await?;
        let (name, marks, this) = (projection.name(), &marks, self);
        projections::poll_until(deadline.saturating_duration_since(Instant::now()), || async move {
            let applied = this.runner.offsets(name).await?;
            Ok(marks.iter().all(|(k, high)| applied.get(k).copied().unwrap_or(0) >= *high))
        })
        .await
    }

    async fn lag(&self, projection: &dyn Projection) -> Result<i64, ProjectionError> {
        let marks = self.watermarks(self.topics(Some(projection))).await?;
        let applied = self.runner.offsets(projection.name()).await?;
        Ok(marks.iter().map(|(k, high)| (high - applied.get(k).copied().unwrap_or(0)).max(0)).sum())
    }
}
