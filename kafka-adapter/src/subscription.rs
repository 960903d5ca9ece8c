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
    /// Replaced when receiving keeps failing for longer than `RelayConfig::recreate_after`
    /// with errors other than an unreachable broker (from which librdkafka recovers itself).
    consumer: std::sync::RwLock<Arc<StreamConsumer<SeekOnAssign>>>,
    starts: Starts,
    reader: Arc<dyn SourcedConsumer>,
    config: RelayConfig,
    group: String,
    /// Whether this member joins the group (else it only answers read-your-writes and lag).
    consume: bool,
    batch_size: usize,
    /// For read-your-writes: the log (where the relay's checkpoint says what was delivered)
    /// and the read-side database (where the reader's offsets are).
    store: EventStore,
    db: ReadDb,
    /// The high watermarks of every public topic and when they were fetched: the status page
    /// asks for every projection's lag at once, and one fetch answers them all.
    marks: tokio::sync::Mutex<Option<(Instant, Offsets)>>,
}

/// Whether `e` only says the broker cannot be reached (down, restarting, not resolvable).
fn unreachable(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode::{AllBrokersDown, BrokerTransportFailure, Resolve};
    matches!(e.rdkafka_error_code(), Some(AllBrokersDown | BrokerTransportFailure | Resolve))
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
        let source = Self {
            consumer: std::sync::RwLock::new(Arc::new(Self::member(&config, group, &starts)?)),
            starts,
            reader,
            config,
            group: group.to_owned(),
            consume,
            batch_size: 500,
            marks: tokio::sync::Mutex::new(None),
            store,
            db,
        };
        source.join()?;
        Ok(source)
    }

    fn member(config: &RelayConfig, group: &str, starts: &Starts) -> Result<StreamConsumer<SeekOnAssign>, RelayError> {
        Ok(ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("partition.assignment.strategy", "range")
            .create_with_context(SeekOnAssign { starts: Arc::clone(starts) })?)
    }

    /// Subscribes the current consumer to the reader's topics (a consuming member only).
    fn join(&self) -> Result<(), RelayError> {
        if self.consume {
            self.subscribe(&self.current())?;
        }
        Ok(())
    }

    fn subscribe(&self, consumer: &StreamConsumer<SeekOnAssign>) -> Result<(), RelayError> {
        let types: Vec<&str> = PUBLIC_TYPES.iter().copied().filter(|t| self.reader.handles(t)).collect();
        let topics = self.topics(&types);
        consumer.subscribe(&topics.iter().map(String::as_str).collect::<Vec<_>>())?;
        Ok(())
    }

    fn current(&self) -> Arc<StreamConsumer<SeekOnAssign>> {
        Arc::clone(&self.consumer.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// A new member in place of one that keeps failing: it rejoins the group and starts each
    /// partition where the reader stored (or the group committed) its offsets.
    /// Returns the member it replaced, for the caller to close off the runtime's threads
    /// (closing waits for the member to leave its group).
    async fn rejoin(&self) -> Result<Arc<StreamConsumer<SeekOnAssign>>, RelayError> {
        *self.starts.lock().unwrap_or_else(|p| p.into_inner()) = self.reader.start_offsets().await?;
        let fresh = Arc::new(Self::member(&self.config, &self.group, &self.starts)?);
        self.subscribe(&fresh)?;
        let old = std::mem::replace(&mut *self.consumer.write().unwrap_or_else(|p| p.into_inner()), fresh);
        metrics::counter!("shop_kafka_consumer_rejoined_total", "group" => self.group.clone()).increment(1);
        tracing::warn!(group = %self.group, reader = self.reader.name(), "kafka consumer re-created after failing; rejoining its group");
        Ok(old)
    }

    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// The topics of aggregate types `types`.
    fn topics(&self, types: &[&str]) -> Vec<String> {
        types.iter().filter_map(|t| self.config.topic(t)).collect()
    }

    /// High watermarks (next offset to be written) of every partition of `topics`, asked all
    /// at once (each question is a round trip that tansu takes about half a second over).
    async fn watermarks(&self, topics: Vec<String>) -> Result<Offsets, WorkerError> {
        let timeout = Duration::from_secs(5);
        let blocking = |work: Box<dyn FnOnce() -> Result<Vec<((String, i32), i64)>, WorkerError> + Send>| async move {
            tokio::task::spawn_blocking(work).await.map_err(|e| WorkerError::Source(format!("watermark task: {e}")))?
        };
        let consumer = self.current();
        let partitions = futures::future::try_join_all(topics.into_iter().map(|topic| {
            let consumer = Arc::clone(&consumer);
            blocking(Box::new(move || {
                let metadata = consumer.fetch_metadata(Some(&topic), timeout).map_err(kafka)?;
                Ok(metadata.topics().iter().flat_map(|t| t.partitions().iter().map(|p| ((topic.clone(), p.id()), 0))).collect())
            }))
        }))
        .await?;
        let marks = futures::future::try_join_all(partitions.into_iter().flatten().map(|((topic, partition), _)| {
            let consumer = Arc::clone(&consumer);
            blocking(Box::new(move || {
                let (_, high) = consumer.fetch_watermarks(&topic, partition, timeout).map_err(kafka)?;
                Ok(vec![((topic, partition), high)])
            }))
        }))
        .await?;
        Ok(marks.into_iter().flatten().collect())
    }

    /// The high watermarks of every public topic: callers that ask while a fetch runs share
    /// its answer (it finished after they asked), the others fetch anew.
    async fn all_watermarks(&self) -> Result<Offsets, WorkerError> {
        let asked = Instant::now();
        let mut cached = self.marks.lock().await;
        if let Some((at, marks)) = &*cached {
            if *at >= asked {
                return Ok(marks.clone());
            }
        }
        let marks = self.watermarks(self.topics(PUBLIC_TYPES)).await?;
        *cached = Some((Instant::now(), marks.clone()));
        Ok(marks)
    }

    /// Consumes and hands over batches until `stop` turns true. A batch is given again with
    /// backoff until the reader has it; nothing is skipped.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        // Since when receiving has been failing without a message in between.
        let mut failing_since: Option<Instant> = None;
        loop {
            let consumer = self.current();
            let first = tokio::select! {
                _ = stop.changed() => return,
                m = consumer.recv() => m,
            };
            let mut batch = Vec::new();
            match first {
                Ok(m) => {
                    failing_since = None;
                    self.push(&mut batch, &m);
                }
                Err(e) if unreachable(&e) => {
                    // librdkafka reconnects and rejoins by itself once the broker answers; a new
                    // member now would only leave a dead one in the group to wait out.
                    tracing::warn!(error = %e, "kafka source: broker unreachable");
                    failing_since = None;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "kafka source: receive failed");
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= self.config.recreate_after {
                        match self.rejoin().await {
                            Ok(old) => {
                                failing_since = Some(Instant::now());
                                drop(consumer);
                                tokio::task::spawn_blocking(move || drop(old));
                            }
                            Err(e) => tracing::warn!(error = %e, "kafka source: cannot rejoin yet"),
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
            let deadline = tokio::time::Instant::now() + Duration::from_millis(5);
            while batch.len() < self.batch_size {
                match tokio::time::timeout_at(deadline, consumer.recv()).await {
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
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Async) {
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
        let topics = self.topics(types);
        let marks = self.all_watermarks().await?;
        let applied = read_offsets(&self.db.pool, name).await?;
        Ok(marks
            .iter()
            .filter(|((topic, _), _)| topics.contains(topic))
            .map(|(k, high)| (high - applied.get(k).copied().unwrap_or(0)).max(0))
            .sum())
    }
}
