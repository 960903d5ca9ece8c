//! Shared by the relay's broker tests.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;

/// A consumer in a throwaway group reading `topics` from the beginning.
pub fn fresh_consumer(brokers: &str, topics: &[String]) -> StreamConsumer {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("test-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("consumer");
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names).expect("subscribe");
    consumer
}

/// Reads `topics` from the beginning until `want` messages came (or a minute passed), each
/// turned into a `T` by `read`.
pub async fn read_all<T>(brokers: &str, topics: &[String], want: usize, mut read: impl FnMut(&BorrowedMessage<'_>) -> T) -> Vec<T> {
    let consumer = fresh_consumer(brokers, topics);
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < want && Instant::now() < deadline {
        let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await else {
            continue;
        };
        out.push(read(&m));
    }
    out
}
