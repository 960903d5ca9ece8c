//! Kafka wiring, compiled in with the `kafka` feature: rdkafka builds librdkafka from source
//! with cmake, which the embedded default (`cargo run -p shop -- serve`) must not need. The
//! Kafka adapter knows no reader; here the projections, the notifier and the order saga are
//! handed to it.

use std::sync::Arc;

#[cfg(not(feature = "kafka"))]
use anyhow::bail;
#[cfg(feature = "kafka")]
use anyhow::{bail, Context};
use http_kit::ReadyCheck;
use store::EventStore;
use worker_kit::{ReadDb, SourcedConsumer};

use crate::{Config, EventSource, Spawn};

/// The relay's and the consumers' settings, when `KAFKA_BROKERS` is set.
#[cfg(feature = "kafka")]
pub fn relay_config(config: &Config) -> anyhow::Result<Option<kafka_adapter::RelayConfig>> {
    let Some(brokers) = &config.kafka_brokers else { return Ok(None) };
    Ok(Some(kafka_adapter::RelayConfig {
        topic_prefix: config.kafka_topic_prefix.clone(),
        partitions: config.kafka_partitions,
        replication: config.kafka_replication,
        security: kafka_adapter::ClientSecurity(config.kafka_security()?),
        ..kafka_adapter::RelayConfig::new(brokers.clone())
    }))
}

#[cfg(not(feature = "kafka"))]
fn no_kafka() -> anyhow::Error {
    anyhow::anyhow!("SHOP_EVENT_SOURCE=kafka, but this build of shop has no Kafka support: build it with --features kafka")
}

/// With `SHOP_EVENT_SOURCE=kafka`: a member of consumer group `group` feeding `reader`. It
/// answers read-your-writes and lag for the reader (returned as an `ExternalSource`), and,
/// when `consume`, joins the group (the returned worker). `None` with the log as the source.
pub async fn group(
    config: &Config,
    reader: Arc<dyn SourcedConsumer>,
    group: &str,
    consume: bool,
    store: &EventStore,
    db: &ReadDb,
) -> anyhow::Result<Option<(Arc<dyn worker_kit::ExternalSource>, Option<Spawn>)>> {
    if config.event_source != EventSource::Kafka {
        return Ok(None);
    }
    #[cfg(feature = "kafka")]
    {
        let Some(relay_config) = relay_config(config)? else { bail!("SHOP_EVENT_SOURCE=kafka needs KAFKA_BROKERS") };
        let member = kafka_adapter::subscription::KafkaGroup::new(reader, relay_config, group, consume, store.clone(), db.clone())
            .await
            .with_context(|| format!("failed to join Kafka consumer group {group}"))?;
        let member = Arc::new(member);
        let worker: Option<Spawn> = consume.then(|| {
            let member = Arc::clone(&member);
            Box::new(move |stop| tokio::spawn(async move { member.run(stop).await })) as Spawn
        });
        Ok(Some((member as Arc<dyn worker_kit::ExternalSource>, worker)))
    }
    #[cfg(not(feature = "kafka"))]
    {
        let _ = (reader, group, consume, store, db);
        Err(no_kafka())
    }
}

/// The relay's worker when `KAFKA_BROKERS` is set; an error if it is set in a build without
/// Kafka.
pub fn relay(config: &Config, store: &EventStore, db: &ReadDb) -> anyhow::Result<Option<Spawn>> {
    #[cfg(feature = "kafka")]
    {
        let Some(relay_config) = relay_config(config)? else {
            return Ok(None);
        };
        let relay = kafka_adapter::Relay::new(store.clone(), db.clone(), relay_config).context("failed to create the Kafka producer")?;
        let driver = Arc::new(Arc::new(relay).driver());
        Ok(Some(Box::new(move |stop| tokio::spawn(driver.run(stop)))))
    }
    #[cfg(not(feature = "kafka"))]
    {
        let _ = (store, db);
        if config.kafka_brokers.is_some() {
            bail!("KAFKA_BROKERS is set, but this build of shop has no Kafka support: build it with --features kafka");
        }
        Ok(None)
    }
}

/// The `/ready` check of the Kafka brokers when `KAFKA_BROKERS` is set; `required` for roles
/// that cannot work without them.
pub fn broker_check(config: &Config, required: bool) -> anyhow::Result<Option<ReadyCheck>> {
    #[cfg(feature = "kafka")]
    {
        let Some(relay_config) = relay_config(config)? else {
            return Ok(None);
        };
        let probe = Arc::new(kafka_adapter::BrokerProbe::new(&relay_config).context("failed to create the Kafka probe")?);
        Ok(Some(ReadyCheck::new("kafka", required, move || {
            let probe = Arc::clone(&probe);
            Box::pin(async move { probe.check(std::time::Duration::from_secs(2)).await })
        })))
    }
    #[cfg(not(feature = "kafka"))]
    {
        let _ = (config, required);
        Ok(None)
    }
}

/// `shop relay --republish --from <position>`: publish history again from a position.
pub async fn republish(config: &Config, from: i64) -> anyhow::Result<()> {
    #[cfg(feature = "kafka")]
    {
        let store = crate::connect_store(config).await?;
        let db = crate::connect_read_db(config, 2).await?;
        let Some(relay_config) = relay_config(config)? else { bail!("shop relay needs KAFKA_BROKERS") };
        let relay = kafka_adapter::Relay::new(store.clone(), db, relay_config).context("failed to create the Kafka producer")?;
        relay.republish_from(from).await.context("failed to move the relay checkpoint")?;
        tracing::info!(from, "relay will publish again from this position");
        store.close().await;
        Ok(())
    }
    #[cfg(not(feature = "kafka"))]
    {
        let _ = (config, from);
        bail!("shop relay needs a build with --features kafka")
    }
}
