//! The Kafka adapter: the relay that publishes the log to Kafka, and the consumer group member
//! that feeds readers from Kafka instead of the log. It knows no reader: `shop` wires the
//! projections and the notifier to it through the worker kit's [`SourcedConsumer`].
//!
//! The relay: every event of the store's global log reaches Kafka, in log order, at least
//! once. The event store is the outbox: commands never wait for Kafka. The relay is a consumer
//! of the log on the worker kit's driver: it publishes each event of a public aggregate type
//! to `<prefix>.<type>.v1` with the aggregate id as key (one aggregate's events stay in order
//! in one partition), waits for every delivery report of the batch (idempotent producer,
//! `acks=all`), and only then moves its checkpoint. A crash between delivery and checkpoint
//! publishes the batch again, so consumers de-duplicate by the envelope `id`
//! (`<type>/<stream id>/<sequence>`).
//!
//! # Layout
//! - [`Relay`] (this file): topics, publishing, republishing history; [`BrokerProbe`] for
//!   `/ready`.
//! - [`subscription`]: [`subscription::KafkaGroup`], a consumer group member feeding any
//!   [`SourcedConsumer`], and read-your-writes through it.
//! - The envelope and the topic contract live in the worker kit (`worker_kit::envelope`,
//!   `worker-kit/contract/`): the notifier's webhooks send the same body.

pub mod subscription;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use store::{EventStore, LogCursor, LogEvent};
use worker_kit::{advance_checkpoint, reset_checkpoint, Checkpoint, Consumer, ConsumerError, Driver, ReadDb, WorkerError};

pub use worker_kit::envelope::*;
pub use worker_kit::SourcedConsumer;

/// The checkpoint the relay keeps beside the projections'.
pub const CHECKPOINT: &str = "relay";

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] WorkerError),
    #[error("event store: {0}")]
    Store(#[from] store::StoreError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event not publishable: {0}")]
    Envelope(String),
    /// Raised by the fault-injection point in tests.
    #[cfg(feature = "faults")]
    #[error("injected fault after delivery")]
    Injected,
}

impl ConsumerError for RelayError {
    fn is_concurrent(&self) -> bool {
        matches!(self, RelayError::Checkpoint(WorkerError::Concurrent))
    }
}

/// Creates the topics of every public type that are missing. The brokers' metadata is asked
/// first, so topics an operator created (or a broker without the admin API, such as
/// librdkafka's mock cluster, holds) are left alone.
pub async fn create_topics(config: &RelayConfig) -> Result<(), RelayError> {
    let admin: AdminClient<DefaultClientContext> = config.client().create()?;
    let mut names: Vec<String> = PUBLIC_TYPES.iter().filter_map(|t| config.topic(t)).collect();
    let existing = existing_topics(config).await;
    names.retain(|n| !existing.contains(n));
    if names.is_empty() {
        return Ok(());
    }
    let topics: Vec<NewTopic> =
        names.iter().map(|n| NewTopic::new(n, config.partitions, TopicReplication::Fixed(config.replication))).collect();
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10))).operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&topics, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(RelayError::Kafka(rdkafka::error::KafkaError::AdminOp(code)))
                    .inspect_err(|_| tracing::warn!(topic, ?code, "topic not created"))
            }
        }
    }
    Ok(())
}

/// The topics the brokers know of (none when they do not answer within a few seconds: then
/// every topic is asked for, and the brokers say which exist).
async fn existing_topics(config: &RelayConfig) -> std::collections::HashSet<String> {
    let Ok(client) = config.client().create::<rdkafka::consumer::BaseConsumer>() else {
        return Default::default();
    };
    let found = tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::Consumer as _;
        client
            .fetch_metadata(None, Duration::from_secs(5))
            .map(|m| m.topics().iter().filter(|t| t.error().is_none()).map(|t| t.name().to_owned()).collect())
            .unwrap_or_default()
    })
    .await;
    found.unwrap_or_default()
}

/// librdkafka properties for TLS and SASL (`security.protocol`, `sasl.mechanisms`,
/// `sasl.username`, `sasl.password`, `ssl.ca.location`), set on every client. `{:?}` does not
/// print the values (a password is among them).
#[derive(Clone, Default)]
pub struct ClientSecurity(pub Vec<(String, String)>);

impl std::fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(key, _)| key)).finish()
    }
}

/// Settings of the relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// `host:port,…` of the brokers.
    pub brokers: String,
    /// Topics are `<prefix>.<aggregate type>.v1`.
    pub topic_prefix: String,
    /// Partitions of topics the relay creates.
    pub partitions: i32,
    /// Copies of each partition in topics the relay creates.
    pub replication: i32,
    /// Log events per batch.
    pub batch_size: u32,
    /// TLS and SASL settings of every client (producer, consumers, admin, probe).
    pub security: ClientSecurity,
    /// How long delivery may keep failing before the producer is thrown away and a new one
    /// publishes again from the checkpoint (an idempotent producer can stay wedged after an
    /// outage; a fatal error replaces it at once).
    pub recreate_after: Duration,
    /// How long one message may wait for its delivery report (`message.timeout.ms`).
    pub message_timeout: Duration,
}

impl RelayConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic_prefix: "shop".to_owned(),
            partitions: 3,
            replication: 1,
            batch_size: 500,
            security: ClientSecurity::default(),
            recreate_after: Duration::from_secs(15),
            message_timeout: Duration::from_secs(15),
        }
    }

    /// A client configuration for these brokers, with the security settings.
    pub fn client(&self) -> ClientConfig {
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", &self.brokers);
        for (key, value) in &self.security.0 {
            client.set(key, value);
        }
        client
    }

    /// The topic of an aggregate type, if its events are published.
    pub fn topic(&self, aggregate_type: &str) -> Option<String> {
        PUBLIC_TYPES.contains(&aggregate_type).then(|| format!("{}.{aggregate_type}.v1", self.topic_prefix))
    }
}

/// Asks the brokers for their metadata, for `/ready`: one client kept for the process, which
/// reconnects by itself when the brokers come back.
/// At most one probe runs at a time, and an answer is reused for 2 s: `/ready` is public, and
/// each probe may hold a blocking thread for its whole timeout while the brokers are away.
pub struct BrokerProbe {
    client: std::sync::Arc<rdkafka::consumer::BaseConsumer>,
    last: tokio::sync::Mutex<Option<(std::time::Instant, Result<(), String>)>>,
}

impl BrokerProbe {
    pub fn new(config: &RelayConfig) -> Result<Self, RelayError> {
        let client: rdkafka::consumer::BaseConsumer = config.client().create()?;
        Ok(Self { client: std::sync::Arc::new(client), last: tokio::sync::Mutex::new(None) })
    }

    /// `Err` with librdkafka's reason when no broker answers within `timeout`.
    pub async fn check(&self, timeout: Duration) -> Result<(), String> {
        use rdkafka::consumer::Consumer as _;
        let mut last = self.last.lock().await;
        if let Some((_, answer)) = last.as_ref().filter(|(at, _)| at.elapsed() < Duration::from_secs(2)) {
            return answer.clone();
        }
        let client = std::sync::Arc::clone(&self.client);
        let answer = tokio::task::spawn_blocking(move || {
            let answer = client.fetch_metadata(None, timeout).map(|_| ()).map_err(|e| e.to_string());
            // Nothing else polls this client: drain the error events it queued meanwhile.
            while client.poll(Duration::ZERO).is_some() {}
            answer
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|a| a);
        *last = Some((std::time::Instant::now(), answer.clone()));
        answer
    }
}

pub struct Relay {
    store: EventStore,
    db: ReadDb,
    /// Replaced when it cannot get past an error (see [`RelayConfig::recreate_after`]).
    producer: std::sync::RwLock<FutureProducer>,
    /// Since when delivery has been failing without a break.
    failing_since: std::sync::Mutex<Option<std::time::Instant>>,
    config: RelayConfig,
    /// Whether the topics were created (or found) since the start.
    topics_ready: AtomicBool,
    #[cfg(feature = "faults")]
    fault_after_delivery: AtomicBool,
}

impl Relay {
    /// The relay reads the log as it is published ([`EventStore::as_published`]): personal
    /// fields leave sealed, with their key ids.
    pub fn new(store: EventStore, db: ReadDb, config: RelayConfig) -> Result<Self, RelayError> {
        let store = store.as_published();
        let producer = Self::producer(&config)?;
        metrics::counter!("shop_relay_messages_total").increment(0);
        metrics::counter!("shop_relay_producer_recreated_total").increment(0);
        Ok(Self {
            store,
            db,
            producer: std::sync::RwLock::new(producer),
            failing_since: std::sync::Mutex::new(None),
            config,
            topics_ready: AtomicBool::new(false),
            #[cfg(feature = "faults")]
            fault_after_delivery: AtomicBool::new(false),
        })
    }

    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// An idempotent producer (`acks=all`): a message the broker took once is stored once,
    /// however often the client retried it.
    fn producer(config: &RelayConfig) -> Result<FutureProducer, RelayError> {
        Ok(config
            .client()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // The relay hands a whole batch over at once and waits for every report: lingering
            // would only delay the batch.
            .set("linger.ms", "0")
            .set("message.timeout.ms", config.message_timeout.as_millis().to_string())
            .create()?)
    }

    /// After a failed batch: replaces the producer when a message of it failed, when it has a
    /// fatal error, or when publishing has been failing for longer than `recreate_after`. Its
    /// queue is dropped with it; the batch is published again from the checkpoint (duplicates
    /// are allowed, losses are not). A producer whose message timed out is not kept: its next
    /// step is an epoch bump, which tansu 0.6 cannot take after a restart (its storage task
    /// panics and every later request fails until the broker restarts); a fresh producer
    /// starts with a fresh producer id.
    fn after_failure(&self, error: &RelayError) {
        let now = std::time::Instant::now();
        let since = *self.failing_since.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(now);
        let fatal = {
            let producer = self.producer.read().unwrap_or_else(|p| p.into_inner());
            rdkafka::producer::Producer::client(&*producer).fatal_error()
        };
        let delivery_failed = matches!(error, RelayError::Kafka(rdkafka::error::KafkaError::MessageProduction(_)));
        let stuck = now.duration_since(since) >= self.config.recreate_after;
        if fatal.is_none() && !delivery_failed && !stuck {
            return;
        }
        match Self::producer(&self.config) {
            Ok(fresh) => {
                *self.producer.write().unwrap_or_else(|p| p.into_inner()) = fresh;
                *self.failing_since.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
                self.topics_ready.store(false, Ordering::SeqCst);
                metrics::counter!("shop_relay_producer_recreated_total").increment(1);
                tracing::warn!(error = %error, fatal = ?fatal, failing_for_ms = now.duration_since(since).as_millis() as u64, "relay producer re-created; publishing again from the checkpoint");
            }
            Err(e) => tracing::warn!(error = %e, "relay producer could not be re-created; retrying later"),
        }
    }

    /// Publishes the batch (creating the topics first, once) and moves the checkpoint once
    /// every message of it is confirmed. Abandoning a batch (a stop, a failure) is safe: the
    /// checkpoint has not moved, so it is published again (at least once).
    async fn publish(&self, from: Checkpoint, events: &[LogEvent]) -> Result<(), RelayError> {
        let Some(last) = events.last().map(|e| e.cursor) else {
            return Ok(());
        };
        if !self.topics_ready.load(Ordering::SeqCst) {
            self.ensure_topics().await?;
            self.topics_ready.store(true, Ordering::SeqCst);
        }
        let mut messages = Vec::new();
        for event in events {
            if let Some(topic) = self.config.topic(&event.aggregate_type) {
                messages.push((topic, Envelope::from_event(event).map_err(RelayError::Envelope)?));
            }
        }
        let producer = self.producer.read().unwrap_or_else(|p| p.into_inner()).clone();
        let deliveries = messages.iter().map(|(topic, envelope)| {
            let mut headers = OwnedHeaders::new();
            for (key, value) in envelope.headers() {
                headers = headers.insert(Header { key, value: Some(value.as_str()) });
            }
            let record = FutureRecord::to(topic).key(&envelope.key).payload(&envelope.value).headers(headers);
            producer.send(record, self.config.message_timeout)
        });
        for delivery in join_all(deliveries).await {
            delivery.map_err(|(e, _)| e)?;
        }
        #[cfg(feature = "faults")]
        if self.fault_after_delivery.swap(false, Ordering::SeqCst) {
            return Err(RelayError::Injected);
        }
        let mut conn = self.db.pool.acquire().await?;
        advance_checkpoint(&mut conn, CHECKPOINT, from.map(|(c, _)| c), last, events.len() as i64).await?;
        metrics::counter!("shop_relay_messages_total").increment(messages.len() as u64);
        Ok(())
    }

    /// The relay on the consumer driver.
    pub fn driver(self: std::sync::Arc<Self>) -> Driver<Relay> {
        let (store, batch_size, db) = (self.store.clone(), self.config.batch_size, self.db.clone());
        Driver::single("relay", store, self)
            .with_batch_size(batch_size)
            .with_pacing(Duration::from_millis(50), Duration::from_millis(5))
            .with_health_db(db)
    }

    /// Creates the topics that are missing.
    pub async fn ensure_topics(&self) -> Result<(), RelayError> {
        create_topics(&self.config).await
    }

    /// Makes the next batch fail after its messages were delivered and before the checkpoint
    /// moves: what a crash at the worst moment does (tests only).
    #[cfg(feature = "faults")]
    pub fn inject_fault_after_delivery(&self) {
        self.fault_after_delivery.store(true, Ordering::SeqCst);
    }

    /// Sets the checkpoint so that the next batches publish again every event from global
    /// `position` on (`shop relay --republish --from <position>`).
    pub async fn republish_from(&self, position: i64) -> Result<(), RelayError> {
        let target = match self.store.cursor_of(position).await? {
            Some(c) => LogCursor { transaction_id: c.transaction_id, position: c.position - 1 },
            None => LogCursor::default(),
        };
        let mut conn = self.db.pool.acquire().await?;
        reset_checkpoint(&mut conn, CHECKPOINT, Some((target, 0))).await?;
        Ok(())
    }
}

#[async_trait]
impl Consumer for Relay {
    type Error = RelayError;

    fn name(&self) -> &'static str {
        CHECKPOINT
    }

    async fn checkpoint(&self) -> Result<Checkpoint, RelayError> {
        Ok(self.db.checkpoint(CHECKPOINT).await?)
    }

    /// Publishes the batch; after a failure, re-creates the producer when it cannot get past
    /// the error (see [`Relay::after_failure`]).
    async fn consume(&self, from: Checkpoint, events: &[LogEvent]) -> Result<(), RelayError> {
        let published = self.publish(from, events).await;
        match &published {
            Ok(()) => *self.failing_since.lock().unwrap_or_else(|p| p.into_inner()) = None,
            Err(e) => self.after_failure(e),
        }
        published
    }
}
