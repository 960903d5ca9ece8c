//! Probes for the servers tests talk to.

use std::time::Duration;

use crate::in_ci;

/// Whether something listens at `address`; outside CI a missing server skips the test (after
/// saying why), in CI it fails it.
async fn reachable(what: &str, url: &str, address: &str) -> bool {
    match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(address)).await {
        Ok(Ok(_)) => true,
        _ if in_ci() => panic!("{what} at {url} is required in CI"),
        _ => {
            eprintln!("skipping: no {what} at {url}");
            false
        }
    }
}

/// The Kafka-protocol brokers to test against (`KAFKA_BROKERS`, default `127.0.0.1:9092`), or
/// `None` outside CI when none answers.
pub async fn broker() -> Option<String> {
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
    let first = brokers.split(',').next().unwrap_or_default().to_owned();
    reachable("a Kafka-protocol broker", &brokers, &first).await.then_some(brokers)
}

/// The Redis server to test against (`SHOP_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`),
/// or `None` outside CI when it does not answer.
pub async fn redis() -> Option<String> {
    let url = std::env::var("SHOP_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let address = url.trim_start_matches("redis://").split('/').next().unwrap_or_default().to_owned();
    reachable("Redis", &url, &address).await.then_some(url)
}

/// Waits until `base` answers `/ready` with a success.
pub async fn until_ready(base: &str) {
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !client.get(format!("{base}/ready")).send().await.is_ok_and(|r| r.status().is_success()) {
        assert!(std::time::Instant::now() < deadline, "shop at {base} did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TCP port free at the time of the call.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}
