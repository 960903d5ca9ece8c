//! A consumer group member that feeds a reader from Kafka instead of the log
//! (`SHOP_EVENT_SOURCE=kafka`): what another team's consumer would do, run by us. The reader
//! is any [`SourcedConsumer`] (`shop` wires the projections, group `shop-projections`, and
//! the notifier, group `notifier`).
//!
//! Where each partition starts: a reader that keeps its offsets with its data (the
//! projections, in `projection_offsets`, written in each batch's transaction) is started at
//! the offsets it stored ([`SourcedConsumer::start_offsets`]); the others where the group last
//! committed. A batch is given to the reader again, with backoff, until it is durable; then
//! the group's offsets are committed (for a reader with its own offsets, as a hint for lag
//! tools only).
//!
//! Read-your-writes ([`ExternalSource`]): the event at position N has been applied when the
//! relay's checkpoint is past N (so N was delivered) and the reader's stored offsets have
//! reached the high watermarks of its topics read after that.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use store::EventStore;
use tokio::sync::watch;
use worker_kit::{read_offsets, ExternalSource, Offsets, ReadDb, Sourced, SourcedConsumer, WorkerError};

use crate::{Envelope, RelayConfig, RelayError, CHECKPOINT, PUBLIC_TYPES};

/// Where each partition starts when assigned; `None` to start where the group committed.
type Starts = Arc<Mutex<Option<HashMap<(String, i32), i64>>>>;

/// Seeks every assigned partition to the offset the reader stored.
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
            if let Some(starts) = starts.as_ref() {
                for (topic, partition) in &partitions {
                    let offset = starts.get(&(topic.clone(), *partition)).map_or(Offset::Beginning, |n| Offset::Offset(*n));
                    if let Err(e) = tpl.set_partition_offset(topic, *partition, offset) {
                        tracing::warn!(topic, partition, error = %e, "kafka source: cannot set the start offset");
                    }
                }
            }
        }
        match consumer.assign(tpl) {
            Ok(()) => tracing::info!(partitions = partitions.len(), "kafka source: partitions assigned"),
            Err(e) => tracing::error!(error = %e, "kafka source: assign failed"),
        }
    }
}

/// A consumer group member feeding one reader.
pub struct KafkaGroup {
    consumer: Arc<StreamConsumer<SeekOnAssign>>,
    starts: Starts,
    reader: Arc<dyn SourcedConsumer>,
    config: RelayConfig,
    batch_size: usize,
    /// For read-your-writes: the log (where the relay's checkpoint says what was delivered)
    /// and the read-side database (where the reader's offsets are).
    store: EventStore,
    db: ReadDb,
}

fn kafka(e: rdkafka::error::KafkaError) -> WorkerError {
    WorkerError::Source(format!("kafka: {e}"))
}

impl KafkaGroup {
    /// A member of consumer group `group` on the topics of `reader` (created when missing).
    /// With `consume` false it only answers read-your-writes and lag (a query node), without
    /// joining the group.
    pub async fn new(
        reader: Arc<dyn SourcedConsumer>,
        config: RelayConfig,
        group: &str,
        consume: bool,
        store: EventStore,
        db: ReadDb,
    ) -> Result<Self, RelayError> {
        crate::create_topics(&config).await?;
        let starts: Starts = Arc::new(Mutex::new(reader.start_offsets().await?));
        let consumer: StreamConsumer<SeekOnAssign> = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("partition.assignment.strategy", "range")
            .create_with_context(SeekOnAssign { starts: Arc::clone(&starts) })?;
        let source = Self { consumer: Arc::new(consumer), starts, reader, config, batch_size: 500, store, db };
        let types: Vec<&str> = PUBLIC_TYPES.iter().copied().filter(|t| source.reader.handles(t)).collect();
        let topics = source.topics(&types);
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

    /// The topics of aggregate types `types`.
    fn topics(&self, types: &[&str]) -> Vec<String> {
        types.iter().filter_map(|t| self.config.topic(t)).collect()
    }

    /// High watermarks (next offset to be written) of every partition of `topics`.
    async fn watermarks(&self, topics: Vec<String>) -> Result<Offsets, WorkerError> {
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
        .map_err(|e| WorkerError::Source(format!("watermark task: {e}")))?
    }

    /// Consumes and hands over batches until `stop` turns true. A batch is given again with
    /// backoff until the reader has it; nothing is skipped.
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
            let mut backoff = Duration::from_millis(100);
            while let Err(e) = self.reader.consume_sourced(&batch).await {
                tracing::warn!(reader = self.reader.name(), error = %e, "kafka source: batch not handled yet; retrying");
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            if let Some(starts) = self.starts.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                for m in &batch {
                    let next = starts.entry((m.topic.clone(), m.partition)).or_insert(0);
                    *next = (*next).max(m.offset + 1);
                }
            }
            if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Async) {
                tracing::debug!(error = %e, "kafka source: offsets not committed");
            }
        }
    }

    fn push(&self, batch: &mut Vec<Sourced>, m: &impl Message) {
        match Envelope::parse(m.payload().unwrap_or_default()) {
            Ok(event) => batch.push(Sourced { topic: m.topic().to_owned(), partition: m.partition(), offset: m.offset(), event }),
            // Not from our relay: nothing a reader could apply; later messages move past it.
            Err(e) => {
                tracing::error!(topic = m.topic(), partition = m.partition(), offset = m.offset(), error = %e, "kafka source: unreadable message skipped")
            }
        }
    }

    /// Whether the relay has delivered the event at `position`.
    async fn published(&self, position: i64) -> Result<bool, WorkerError> {
        let relay = self.db.checkpoint(CHECKPOINT).await?;
        Ok(worker_kit::reached(&self.store, relay, position).await?)
    }
}

#[async_trait]
impl ExternalSource for KafkaGroup {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    async fn wait_for(&self, name: &str, types: &[&str], position: i64, timeout: Duration) -> Result<bool, WorkerError> {
        let deadline = Instant::now() + timeout;
        if !worker_kit::poll_until(timeout, || self.published(position)).await? {
            return Ok(false);
        }
        let marks = self.watermarks(self.topics(types)).await?;
        let (marks, db) = (&marks, &self.db);
        worker_kit::poll_until(deadline.saturating_duration_since(Instant::now()), || async move {
            let applied = read_offsets(&db.pool, name).await?;
            Ok(marks.iter().all(|(k, high)| applied.get(k).copied().unwrap_or(0) >= *high))
        })
        .await
    }

    async fn lag(&self, name: &str, types: &[&str]) -> Result<i64, WorkerError> {
        let marks = self.watermarks(self.topics(types)).await?;
        let applied = read_offsets(&self.db.pool, name).await?;
        Ok(marks.iter().map(|(k, high)| (high - applied.get(k).copied().unwrap_or(0)).max(0)).sum())
    }
}
