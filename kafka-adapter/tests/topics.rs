//! Topic creation asks the brokers what exists first: librdkafka's mock cluster has no admin
//! API (CreateTopics times out there), so a relay pointed at it works only if topics that
//! exist are never asked for again.

use std::time::{Duration, Instant};

use kafka_adapter::{create_topics, RelayConfig};

#[tokio::test]
async fn topics_that_exist_are_not_created_again() {
    let mock = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    let mut config = RelayConfig::new(mock.bootstrap_servers());
    config.topic_prefix = "existing".into();
    for t in worker_kit::envelope::PUBLIC_TYPES {
        mock.create_topic(&config.topic(t).expect("public"), 3, 1).expect("topic");
    }
    let started = Instant::now();
    create_topics(&config).await.expect("every topic exists: nothing to create");
    assert!(started.elapsed() < Duration::from_secs(8), "no admin request waited for its timeout");
}
