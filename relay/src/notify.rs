//! The notifier fed by a Kafka consumer group (`SHOP_EVENT_SOURCE=kafka`; group `notifier`):
//! each message is parsed back into the stored event and handed to the notifier, whose
//! deliveries are keyed by the event's log position, so a redelivered message (or a switch
//! between the log and Kafka) sends nothing new. Offsets are committed to the group after
//! each message is handled: at least once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use notifier::Notifier;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use tokio::sync::watch;

use crate::{Envelope, RelayConfig, RelayError, PUBLIC_TYPES};

/// A member of consumer group `group` that feeds `notifier`.
pub struct KafkaNotifier {
    consumer: StreamConsumer,
    notifier: Arc<Notifier>,
}

impl KafkaNotifier {
    pub async fn new(config: RelayConfig, group: &str, notifier: Arc<Notifier>) -> Result<Self, RelayError> {
        crate::create_topics(&config).await?;
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .create()?;
        let topics: Vec<String> = PUBLIC_TYPES.iter().filter_map(|t| config.topic(t)).collect();
        consumer.subscribe(&topics.iter().map(String::as_str).collect::<Vec<_>>())?;
        Ok(Self { consumer, notifier })
    }

    /// Handles messages until `stop` turns true. A message that fails (a user the users view
    /// has not caught up with, a database error) is tried again with backoff before the next.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        let mut retried_at = Instant::now();
        loop {
            let received = tokio::select! {
                _ = stop.changed() => return,
                m = tokio::time::timeout(Duration::from_secs(1), self.consumer.recv()) => m,
            };
            if retried_at.elapsed() > Duration::from_secs(1) {
                if let Err(e) = self.notifier.retry_failed().await {
                    tracing::warn!(error = %e, "kafka notifier: retrying failed mail");
                }
                retried_at = Instant::now();
            }
            let message = match received {
                Err(_) => continue,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "kafka notifier: receive failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                Ok(Ok(m)) => m,
            };
            match Envelope::parse(message.payload().unwrap_or_default()) {
                Ok(event) => {
                    let mut backoff = Duration::from_millis(100);
                    while let Err(e) = self.notifier.handle(&event).await {
                        tracing::warn!(position = event.cursor.position, error = %e, "kafka notifier: event not handled yet");
                        tokio::select! {
                            _ = stop.changed() => return,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
                Err(e) => {
                    tracing::warn!(topic = message.topic(), offset = message.offset(), error = %e, "kafka notifier: not an envelope; skipped")
                }
            }
            if let Err(e) = self.consumer.commit_message(&message, CommitMode::Async) {
                tracing::warn!(error = %e, "kafka notifier: offset not committed");
            }
        }
    }
}
