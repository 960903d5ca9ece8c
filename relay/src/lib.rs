//! The relay: every event of the store's global log reaches Kafka, in log order, at least once.
//!
//! The event store is the outbox: commands never wait for Kafka. The relay tails the log from
//! its checkpoint, publishes each event of a public aggregate type to `<prefix>.<type>.v1` with
//! the aggregate id as key (one aggregate's events stay in order in one partition), waits for
//! every delivery report of the batch (idempotent producer, `acks=all`), and only then moves
//! its checkpoint. A crash between delivery and checkpoint publishes the batch again, so
//! consumers de-duplicate by the envelope `id` (`<type>/<stream id>/<sequence>`).
//!
//! # Layout
//! - `projections::envelope` (shared with the notifier's webhooks): the published value and headers, the topic contract
//!   (documented in `relay/contract/`).
//! - [`Relay`] (this file): topics, the publish loop, republishing history.
//! - [`subscription`]: the other direction, a consumer group feeding the projections
//!   (`SHOP_EVENT_SOURCE=kafka`).

pub mod notify;
pub mod subscription;

use std::sync::Mutex;
use std::time::Duration;

use futures::future::join_all;
use projections::{advance_checkpoint, read_checkpoint, ProjectionError, ReadDb};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use store::{EventStore, LogCursor};
use tokio::sync::watch;

pub use projections::envelope::*;

/// The checkpoint the relay keeps beside the projections'.
pub const CHECKPOINT: &str = "relay";

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] ProjectionError),
    #[error("event store: {0}")]
    Store(#[from] store::StoreError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event not publishable: {0}")]
    Envelope(String),
    /// Raised by the fault-injection point in tests.
    #[error("injected fault after delivery")]
    Injected,
}

/// Creates the topics of every public type that are missing.
pub async fn create_topics(config: &RelayConfig) -> Result<(), RelayError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", &config.brokers).create()?;
    let names: Vec<String> = PUBLIC_TYPES.iter().filter_map(|t| config.topic(t)).collect();
    let topics: Vec<NewTopic> = names.iter().map(|n| NewTopic::new(n, config.partitions, TopicReplication::Fixed(1))).collect();
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

/// Settings of the relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// `host:port,…` of the brokers.
    pub brokers: String,
    /// Topics are `<prefix>.<aggregate type>.v1`.
    pub topic_prefix: String,
    /// Partitions of topics the relay creates.
    pub partitions: i32,
    /// Log events per batch.
    pub batch_size: u32,
}

impl RelayConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        Self { brokers: brokers.into(), topic_prefix: "shop".to_owned(), partitions: 3, batch_size: 500 }
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
    pub fn new(brokers: &str) -> Result<Self, RelayError> {
        let client: rdkafka::consumer::BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
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

/// What one step of the relay did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// This many log events were processed (published, or skipped as internal).
    Published(usize),
    Idle,
}

pub struct Relay {
    store: EventStore,
    db: ReadDb,
    producer: FutureProducer,
    config: RelayConfig,
    fault_after_delivery: Mutex<bool>,
}

impl Relay {
    pub fn new(store: EventStore, db: ReadDb, config: RelayConfig) -> Result<Self, RelayError> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            .create()?;
        Ok(Self { store, db, producer, config, fault_after_delivery: Mutex::new(false) })
    }

    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// Creates the topics that are missing.
    pub async fn ensure_topics(&self) -> Result<(), RelayError> {
        create_topics(&self.config).await
    }

    /// Makes the next batch fail after its messages were delivered and before the checkpoint
    /// moves: what a crash at the worst moment does (tests only).
    pub fn inject_fault_after_delivery(&self) {
        *self.fault_after_delivery.lock().unwrap_or_else(|p| p.into_inner()) = true;
    }

    /// Publishes the next batch of the log and moves the checkpoint once every message of it
    /// is confirmed.
    pub async fn try_publish_next(&self) -> Result<Outcome, RelayError> {
        let started = std::time::Instant::now();
        let mut conn = self.db.pool.acquire().await?;
        let stored = read_checkpoint(&mut conn, CHECKPOINT).await?;
        let cursor = stored.map(|(c, _)| c).unwrap_or_default();
        let events = self.store.read_log(cursor, self.config.batch_size).await?;
        let Some(last) = events.last().map(|e| e.cursor) else {
            return Ok(Outcome::Idle);
        };
        let span = projections::batch_span("relay.publish", CHECKPOINT, events.iter());
        let mut messages = Vec::new();
        for event in &events {
            if let Some(topic) = self.config.topic(&event.aggregate_type) {
                messages.push((topic, Envelope::from_event(event).map_err(RelayError::Envelope)?));
            }
        }
        let deliveries = messages.iter().map(|(topic, envelope)| {
            let mut headers = OwnedHeaders::new();
            for (key, value) in envelope.headers() {
                headers = headers.insert(Header { key, value: Some(value.as_str()) });
            }
            let record = FutureRecord::to(topic).key(&envelope.key).payload(&envelope.value).headers(headers);
            self.producer.send(record, Duration::from_secs(30))
        });
        for delivery in tracing::Instrument::instrument(join_all(deliveries), span).await {
            delivery.map_err(|(e, _)| e)?;
        }
        let fault = std::mem::take(&mut *self.fault_after_delivery.lock().unwrap_or_else(|p| p.into_inner()));
        if fault {
            return Err(RelayError::Injected);
        }
        advance_checkpoint(&mut conn, CHECKPOINT, stored.map(|(c, _)| c), last, events.len() as i64).await?;
        projections::observe_batch("relay", CHECKPOINT, events.first().map(|e| e.recorded_at), events.len(), started);
        metrics::counter!("shop_relay_messages_total").increment(messages.len() as u64);
        Ok(Outcome::Published(events.len()))
    }

    /// Creates the topics, then publishes until `stop` turns true, retrying with backoff
    /// while the broker is away (commands go on meanwhile: the log is the outbox).
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        let wake = self.store.appended();
        let mut topics_ready = false;
        loop {
            if *stop.borrow() {
                return;
            }
            let step = async {
                if !topics_ready {
                    self.ensure_topics().await?;
                    topics_ready = true;
                }
                self.try_publish_next().await
            };
            // Abandoning a batch on stop is safe: the checkpoint only moves after every message
            // of it is confirmed, so the next start publishes it again (at least once).
            let stepped = tokio::select! {
                _ = stop.changed() => return,
                stepped = step => stepped,
            };
            let wait = match stepped {
                Ok(Outcome::Published(n)) if n >= self.config.batch_size as usize => {
                    backoff = Duration::from_millis(100);
                    continue;
                }
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    Duration::from_millis(50)
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "relay batch failed");
                    let wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    wait
                }
            };
            tokio::select! {
                _ = stop.changed() => {}
                _ = wake.notified() => tokio::time::sleep(Duration::from_millis(5)).await,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Sets the checkpoint so that the next batches publish again every event from global
    /// `position` on (`shop relay --republish --from <position>`).
    pub async fn republish_from(&self, position: i64) -> Result<(), RelayError> {
        let target = match self.store.cursor_of(position).await? {
            Some(c) => LogCursor { transaction_id: c.transaction_id, position: c.position - 1 },
            None => LogCursor::default(),
        };
        sqlx::query("DELETE FROM projection_checkpoints WHERE name = $1").bind(CHECKPOINT).execute(&self.db.pool).await?;
        let mut conn = self.db.pool.acquire().await?;
        advance_checkpoint(&mut conn, CHECKPOINT, None, target, 0).await?;
        Ok(())
    }
}
