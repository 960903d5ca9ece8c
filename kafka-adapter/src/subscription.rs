//! A consumer group member that feeds a reader from Kafka instead of the log
//! (`SHOP_EVENT_SOURCE=kafka`): what another team's consumer would do, run by us. The reader
//! is any [`SourcedConsumer`] (`shop` wires the projections, group `shop-projections`, the
//! notifier, group `notifier`, and the order saga, group `order-saga`).
//!
//! Where each partition starts: a reader that keeps its offsets with its data (the
//! projections, in `projection_offsets`, written in each batch's transaction) is started at
//! the offsets it stored ([`SourcedConsumer::start_offsets`]); the others where the group last
//! committed. A batch is given to the reader again, with backoff, until it is durable; then
//! the group's offsets are committed (for a reader with its own offsets, as a hint for lag
//! tools only).
//!
//! A member also gives its reader timed work for the partitions it holds
//! ([`SourcedConsumer::tick_sourced`]: the saga's deadlines), and watches for partitions that
//! nobody consumes (messages waiting, the group's offset standing still for 45 s): then the
//! group's assignment is stale and the member joins again (tansu 0.6 leaves a dead follower's
//! partitions assigned).
//!
//! Read-your-writes ([`ExternalSource`]): the event at position N has been applied when the
//! relay's checkpoint is past N (so N was delivered) and the reader's stored offsets have
//! reached the high watermarks of its topics read after that.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use store::EventStore;
use tokio::sync::watch;
use worker_kit::{read_offsets, ExternalSource, Offsets, ReadDb, Sourced, SourcedConsumer, WorkerError, TICK};

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

/// How often a member looks for partitions nobody consumes ([`KafkaGroup::stalled`]).
const STALL_CHECK: Duration = Duration::from_secs(5);
/// How long a partition's messages may wait, its committed offset unmoved, before the member
/// takes the group's assignment for stale: longer than a session (30 s), so a dead member's
/// partitions are first handed on the normal way.
const STALL: Duration = Duration::from_secs(45);

/// What [`KafkaGroup::stalled`] saw: for each partition held elsewhere that has messages
/// waiting, its committed offset and since when it stands.
type Stalls = HashMap<(String, i32), (i64, Instant)>;

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

/// The (topic, partition) pairs assigned to `consumer` now.
fn assigned(consumer: &StreamConsumer<SeekOnAssign>) -> rdkafka::error::KafkaResult<Vec<(String, i32)>> {
    Ok(consumer.assignment()?.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect())
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
        metrics::counter!("shop_kafka_consumer_rejoined_total", "group" => group.to_owned()).increment(0);
        metrics::counter!("shop_kafka_stale_assignments_total", "group" => group.to_owned()).increment(0);
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
        Ok(config
            .client()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            // A member that stops answering loses its partitions after this long. Not less:
            // tansu under load (the relay writing, two saga members reading) took over 6 s to
            // answer heartbeats, and with 6 s every member kept timing out and rejoining.
            .set("session.timeout.ms", "30000")
            // Partition i of every topic goes to one member: an order's events and its
            // payment's share a key, so the same partition number on their two topics.
            .set("partition.assignment.strategy", "range")
            // Small fetches: tansu answers large ones too slowly for a reader that is behind.
            .set("max.partition.fetch.bytes", "262144")
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
        let topics = self.reader_topics();
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

    /// [`KafkaGroup::rejoin`], closing the replaced member off the runtime's threads; false
    /// when it could not be replaced yet.
    async fn replace_member(&self) -> bool {
        match self.rejoin().await {
            Ok(old) => {
                tokio::task::spawn_blocking(move || drop(old));
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "kafka source: cannot rejoin yet");
                false
            }
        }
    }

    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// The topics of aggregate types `types`.
    fn topics(&self, types: &[&str]) -> Vec<String> {
        types.iter().filter_map(|t| self.config.topic(t)).collect()
    }

    /// The topics the reader is subscribed to.
    fn reader_topics(&self) -> Vec<String> {
        let types: Vec<&str> = PUBLIC_TYPES.iter().copied().filter(|t| self.reader.handles(t)).collect();
        self.topics(&types)
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
    pub async fn run(&self, stop: watch::Receiver<bool>) {
        let stale = AtomicBool::new(false);
        tokio::select! {
            _ = self.consume(stop, &stale) => {}
            _ = self.watch_assignment(&stale) => {}
        }
    }

    /// Looks every [`STALL_CHECK`] for partitions nobody consumes, and sets `stale` when it
    /// finds one (beside the consuming loop: each look asks the broker several questions).
    async fn watch_assignment(&self, stale: &AtomicBool) {
        let mut stalls = Stalls::default();
        loop {
            tokio::time::sleep(STALL_CHECK).await;
            if self.stalled(&self.current(), &mut stalls).await {
                stalls.clear();
                stale.store(true, Ordering::Relaxed);
            }
        }
    }

    async fn consume(&self, mut stop: watch::Receiver<bool>, stale: &AtomicBool) {
        // Since when receiving has been failing without a message in between.
        let mut failing_since: Option<Instant> = None;
        let mut ticked: Option<Instant> = None;
        loop {
            if stale.swap(false, Ordering::Relaxed) {
                self.replace_member().await;
            }
            let consumer = self.current();
            if ticked.is_none_or(|at| at.elapsed() >= TICK) {
                self.tick(&consumer).await;
                ticked = Some(Instant::now());
            }
            let first = tokio::select! {
                _ = stop.changed() => return,
                m = tokio::time::timeout(TICK, consumer.recv()) => match m {
                    Ok(m) => m,
                    Err(_) => continue,
                },
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
                        drop(consumer);
                        if self.replace_member().await {
                            failing_since = Some(Instant::now());
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
            // Personal fields arrive sealed; the reader gets them opened (or erased).
            while let Err(e) = self.store.open_events(batch.iter_mut().map(|s| &mut s.event)).await {
                tracing::warn!(reader = self.reader.name(), error = %e, "kafka source: personal data not opened yet; retrying");
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
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

    /// Whether a partition of the reader's topics that this member does not hold has had
    /// messages waiting, with the group's committed offset standing still, for longer than
    /// [`STALL`]: nobody consumes it. A live member moves its offsets batch by batch, and a
    /// dead one's partitions are handed on when its session ends, so this means the group's
    /// assignment is stale. tansu 0.6 leaves it so when a member that does not lead the group
    /// dies: it drops the member but keeps its partitions assigned, and never rebalances.
    /// The answer is to join again (the caller replaces this member), which makes the group
    /// assign every partition anew.
    async fn stalled(&self, consumer: &Arc<StreamConsumer<SeekOnAssign>>, stalls: &mut Stalls) -> bool {
        let Ok(held) = assigned(consumer) else { return false };
        let held: std::collections::HashSet<(String, i32)> = held.into_iter().collect();
        let marks = match self.watermarks(self.reader_topics()).await {
            Ok(marks) => marks,
            Err(e) => {
                tracing::debug!(error = %e, "kafka source: stall check skipped");
                return false;
            }
        };
        let others: Vec<((String, i32), i64)> = marks.into_iter().filter(|(k, _)| !held.contains(k)).collect();
        if held.is_empty() || others.is_empty() {
            stalls.clear();
            return false;
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), _) in &others {
            tpl.add_partition(topic, *partition);
        }
        let asking = Arc::clone(consumer);
        let committed = match tokio::task::spawn_blocking(move || asking.committed_offsets(tpl, Duration::from_secs(5))).await {
            Ok(Ok(committed)) => committed,
            _ => return false,
        };
        let now = Instant::now();
        let mut stuck = None;
        for ((topic, partition), high) in others {
            let at = match committed.find_partition(&topic, partition).map(|e| e.offset()) {
                Some(Offset::Offset(n)) => n,
                _ => 0,
            };
            let key = (topic, partition);
            if high <= at {
                stalls.remove(&key);
                continue;
            }
            let entry = stalls.entry(key.clone()).or_insert((at, now));
            if entry.0 != at {
                *entry = (at, now);
            } else if now.duration_since(entry.1) >= STALL {
                stuck = Some((key, at, high));
            }
        }
        let Some(((topic, partition), at, high)) = stuck else { return false };
        metrics::counter!("shop_kafka_stale_assignments_total", "group" => self.group.clone()).increment(1);
        tracing::warn!(
            group = %self.group, topic, partition, committed = at, high,
            "kafka source: a partition nobody consumes; joining the group again for a new assignment"
        );
        true
    }

    /// The reader's timed work for the partitions assigned to this member now (between
    /// batches, so never beside one, and never while a rebalance moves them).
    async fn tick(&self, consumer: &StreamConsumer<SeekOnAssign>) {
        let assigned = match assigned(consumer) {
            Ok(assigned) => assigned,
            Err(e) => return tracing::debug!(error = %e, "kafka source: assignment unknown"),
        };
        if let Err(e) = self.reader.tick_sourced(&assigned).await {
            tracing::warn!(reader = self.reader.name(), error = %e, "kafka source: timed work failed; trying again");
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
