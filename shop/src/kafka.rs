//! Kafka support, compiled in with the `kafka` feature: rdkafka builds librdkafka from source
//! with cmake, which the embedded default (`cargo run -p shop -- serve`) must not need.

use std::sync::Arc;

use anyhow::{bail, Context};
use projections::{ReadDb, Runner};
use store::EventStore;
use tokio::sync::watch;

use crate::Config;

/// A Kafka worker of this process: the relay (publishes the log) or the projections'
/// consumer (`SHOP_EVENT_SOURCE=kafka`).
#[cfg(feature = "kafka")]
pub enum KafkaWorker {
    Relay(relay::Relay),
    Source(Arc<relay::subscription::KafkaSource>),
    /// The notifier's consumer (group `notifier`).
    Notifier(relay::notify::KafkaNotifier),
}

/// Without the `kafka` feature there are no Kafka workers.
#[cfg(not(feature = "kafka"))]
pub enum KafkaWorker {}

impl KafkaWorker {
    pub async fn run(&self, stop: watch::Receiver<bool>) {
        #[cfg(feature = "kafka")]
        match self {
            KafkaWorker::Relay(r) => r.run(stop).await,
            KafkaWorker::Source(s) => s.run(stop).await,
            KafkaWorker::Notifier(n) => n.run(stop).await,
        }
        #[cfg(not(feature = "kafka"))]
        {
            let _ = stop;
            match *self {}
        }
    }
}

#[cfg(feature = "kafka")]
fn relay_config(config: &Config) -> Option<relay::RelayConfig> {
    config.kafka_brokers.as_ref().map(|brokers| relay::RelayConfig {
        topic_prefix: config.kafka_topic_prefix.clone(),
        partitions: config.kafka_partitions,
        ..relay::RelayConfig::new(brokers.clone())
    })
}

/// The consumer group member that feeds the notifier with `SHOP_EVENT_SOURCE=kafka` (group
/// `notifier`); `None` with the log as the source.
pub async fn notifier_source(config: &Config, notifier: &Arc<notifier::Notifier>) -> anyhow::Result<Option<KafkaWorker>> {
    if config.event_source != "kafka" {
        return Ok(None);
    }
    #[cfg(feature = "kafka")]
    {
        let Some(relay_config) = relay_config(config) else { bail!("SHOP_EVENT_SOURCE=kafka needs KAFKA_BROKERS") };
        let worker = relay::notify::KafkaNotifier::new(relay_config, "notifier", Arc::clone(notifier))
            .await
            .context("failed to join the notifier's Kafka consumer group")?;
        Ok(Some(KafkaWorker::Notifier(worker)))
    }
    #[cfg(not(feature = "kafka"))]
    {
        let _ = notifier;
        bail!("SHOP_EVENT_SOURCE=kafka, but this build of shop has no Kafka support: build it with --features kafka")
    }
}

/// With `SHOP_EVENT_SOURCE=kafka`: the consumer that feeds `runner` (when `consume`, in the
/// process that runs the projections) and answers read-your-writes for it (every process
/// that serves queries). `None` with the log as the source.
pub async fn event_source(config: &Config, runner: &Arc<Runner>, consume: bool) -> anyhow::Result<Option<Arc<KafkaWorker>>> {
    if config.event_source != "kafka" {
        return Ok(None);
    }
    #[cfg(feature = "kafka")]
    {
        let Some(relay_config) = relay_config(config) else { bail!("SHOP_EVENT_SOURCE=kafka needs KAFKA_BROKERS") };
        let source = relay::subscription::KafkaSource::new(Arc::clone(runner), relay_config, &config.kafka_group, consume)
            .await
            .context("failed to join the Kafka consumer group")?;
        let source = Arc::new(source);
        runner.use_source(Arc::clone(&source) as Arc<dyn projections::sourced::ExternalSource>);
        Ok(Some(Arc::new(KafkaWorker::Source(source))))
    }
    #[cfg(not(feature = "kafka"))]
    {
        let _ = (runner, consume);
        bail!("SHOP_EVENT_SOURCE=kafka, but this build of shop has no Kafka support: build it with --features kafka")
    }
}

/// The relay when `KAFKA_BROKERS` is set; an error if it is set in a build without Kafka.
pub fn relay(config: &Config, store: &EventStore, read_db: &ReadDb) -> anyhow::Result<Option<KafkaWorker>> {
    #[cfg(feature = "kafka")]
    {
        relay_config(config)
            .map(|c| relay::Relay::new(store.clone(), read_db.clone(), c).map(KafkaWorker::Relay))
            .transpose()
            .context("failed to create the Kafka producer")
    }
    #[cfg(not(feature = "kafka"))]
    {
        let _ = (store, read_db);
        if config.kafka_brokers.is_some() {
            bail!("KAFKA_BROKERS is set, but this build of shop has no Kafka support: build it with --features kafka");
        }
        Ok(None)
    }
}

/// The `/ready` check of the Kafka brokers when `KAFKA_BROKERS` is set; `required` for roles
/// that cannot work without them.
pub fn broker_check(config: &Config, required: bool) -> anyhow::Result<Option<command_api::health::ReadyCheck>> {
    #[cfg(feature = "kafka")]
    {
        let Some(brokers) = &config.kafka_brokers else { return Ok(None) };
        let probe = Arc::new(relay::BrokerProbe::new(brokers).context("failed to create the Kafka probe")?);
        Ok(Some(command_api::health::ReadyCheck {
            name: "kafka",
            required,
            check: Arc::new(move || {
                let probe = Arc::clone(&probe);
                Box::pin(async move { probe.check(std::time::Duration::from_secs(2)).await })
            }),
        }))
    }
    #[cfg(not(feature = "kafka"))]
    {
        let _ = (config, required);
        Ok(None)
    }
}

/// `shop relay --republish --from <position>`: publish history again from a position.
pub async fn republish(config: &Config, from: i64) -> anyhow::Result<()> {
    let store = crate::connect_store(config).await?;
    let read_db = ReadDb::connect(&config.store_url(), 2).await.context("failed to connect to the read-model database")?;
    read_db.migrate(&projections::all()).await.context("failed to create the checkpoint table")?;
    let Some(worker) = relay(config, &store, &read_db)? else { bail!("shop relay needs KAFKA_BROKERS") };
    worker.republish_from(from).await?;
    tracing::info!(from, "relay will publish again from this position");
    store.close().await;
    Ok(())
}

impl KafkaWorker {
    async fn republish_from(&self, from: i64) -> anyhow::Result<()> {
        #[cfg(feature = "kafka")]
        {
            match self {
                KafkaWorker::Relay(r) => r.republish_from(from).await.context("failed to move the relay checkpoint"),
                KafkaWorker::Source(_) | KafkaWorker::Notifier(_) => bail!("not a relay"),
            }
        }
        #[cfg(not(feature = "kafka"))]
        {
            let _ = from;
            match *self {}
        }
    }
}
