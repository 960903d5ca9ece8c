//! Kafka support, compiled in with the `kafka` feature: rdkafka builds librdkafka from source
//! with cmake, which the embedded default (`cargo run -p shop -- serve`) must not need.

use anyhow::{bail, Context};
use projections::ReadDb;
use store::EventStore;
use tokio::sync::watch;

use crate::Config;

/// The relay of this process, if it runs one.
#[cfg(feature = "kafka")]
pub struct RelayWorker(relay::Relay);

/// Without the `kafka` feature there is never a relay.
#[cfg(not(feature = "kafka"))]
pub enum RelayWorker {}

impl RelayWorker {
    pub async fn run(&self, stop: watch::Receiver<bool>) {
        #[cfg(feature = "kafka")]
        self.0.run(stop).await;
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

/// The relay when `KAFKA_BROKERS` is set; an error if it is set in a build without Kafka.
pub fn relay(config: &Config, store: &EventStore, read_db: &ReadDb) -> anyhow::Result<Option<RelayWorker>> {
    #[cfg(feature = "kafka")]
    {
        relay_config(config)
            .map(|c| relay::Relay::new(store.clone(), read_db.clone(), c).map(RelayWorker))
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

impl RelayWorker {
    async fn republish_from(&self, from: i64) -> anyhow::Result<()> {
        #[cfg(feature = "kafka")]
        {
            self.0.republish_from(from).await.context("failed to move the relay checkpoint")
        }
        #[cfg(not(feature = "kafka"))]
        {
            let _ = from;
            match *self {}
        }
    }
}
