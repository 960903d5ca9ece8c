//! The relay against a real Kafka-protocol broker (`KAFKA_BROKERS`, default 127.0.0.1:9092):
//! an independent consumer reads every event exactly as stored, in per-key order, across a
//! relay that crashed between delivery and checkpoint.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::claim::{ClaimCommand, EmailClaim};
use domain::product::ProductCommand;
use domain::stock::{Stock, StockCommand};
use domain::{Quantity, TenantId, UserId};
use kafka_adapter::{Relay, RelayConfig, RelayError};
use rdkafka::message::{Headers, Message};
use serde_json::Value;
use store::{LogCursor, Metadata, Repository};
use testkit::{both_backends, eur, write_product, TestProduct, TestStore};
use worker_kit::{Driver, Outcome};

async fn write_events(t: &TestStore) {
    let meta = Metadata { correlation_id: Some("01931b2c-0000-7000-8000-000000000001".into()), ..Metadata::default() };
    for n in 0..3u128 {
        let sku = format!("K-{n}");
        let item = TestProduct { n: n + 1, sku: &sku, name: "Item", price: 100, ..TestProduct::default() };
        let mut then: Vec<ProductCommand> = [90, 80, 70].into_iter().map(|a| ProductCommand::ChangePrice { price: eur(a) }).collect();
        then.push(ProductCommand::Publish);
        write_product(&t.store, &item, then, &meta).await;
    }
    let stock = Repository::<Stock>::new(t.store.clone(), ());
    for _ in 0..6 {
        let receive = StockCommand::Receive {
            tenant: TenantId::default(),
            sku: "K-0".parse().expect("valid"),
            quantity: Quantity::try_from(2).expect("valid"),
        };
        stock.execute("default:K-0", receive, None, &meta).await.expect("receive");
    }
    // Internal: must not be published.
    let claims = Repository::<EmailClaim>::new(t.store.clone(), ());
    let claim = ClaimCommand::Claim { tenant: TenantId::default(), key: "a@b.example".parse().expect("valid"), owner: UserId::new() };
    claims.execute("default:a@b.example", claim, None, &meta).await.expect("claim");
}

/// A relay process on its driver.
async fn relay_for(t: &TestStore, config: &RelayConfig) -> Driver<Relay> {
    let db = worker_kit::ReadDb::connect(&t.url, 2).await.expect("read db");
    db.migrate().await.expect("schema");
    Arc::new(Relay::new(t.store.clone(), db, config.clone()).expect("producer")).driver()
}

async fn consume(brokers: &str, topics: &[String], want: usize) -> Vec<(String, Value, HashMap<String, String>)> {
    common::read_all(brokers, topics, want, |m| {
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
        let value: Value = serde_json::from_slice(m.payload().unwrap_or_default()).expect("json value");
        let mut headers = HashMap::new();
        if let Some(h) = m.headers() {
            for header in h.iter() {
                headers.insert(header.key.to_owned(), String::from_utf8_lossy(header.value.unwrap_or_default()).into_owned());
            }
        }
        (key, value, headers)
    })
    .await
}

both_backends!(every_event_reaches_kafka_as_stored_in_order_across_a_crash, |t: TestStore| async move {
    let Some(brokers) = testkit::broker().await else {
        return;
    };
    write_events(&t).await;
    let mut config = RelayConfig::new(brokers.clone());
    config.topic_prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    config.partitions = 2;
    config.batch_size = 4;
    let crashing = relay_for(&t, &config).await;
    crashing.members()[0].ensure_topics().await.expect("topics");
    crashing.members()[0].ensure_topics().await.expect("topics exist already: fine");
    crashing.members()[0].inject_fault_after_delivery();
    assert!(matches!(crashing.try_process_next().await, Err(RelayError::Injected)));
    drop(crashing);
    // 22 events were written. An open transaction anywhere in the PostgreSQL cluster can hide
    // some for a moment, so an idle log only counts once all 22 went through.
    let restarted = relay_for(&t, &config).await;
    let mut processed = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while processed < 22 {
        match restarted.try_process_next().await.expect("publish") {
            Outcome::Worked(n) => processed += n,
            Outcome::Idle => tokio::time::sleep(Duration::from_millis(20)).await,
        }
        assert!(Instant::now() < deadline, "the relay stalled at {processed} events");
    }
    assert_eq!(restarted.try_process_next().await.expect("publish"), Outcome::Idle);

    // Every stored event of a public type, by envelope id.
    let stored: Vec<store::LogEvent> = t.store.read_log(LogCursor::default(), 10_000).await.expect("log");
    assert_eq!(stored.len(), 22);
    let public: BTreeMap<String, &store::LogEvent> = stored
        .iter()
        .filter(|e| kafka_adapter::PUBLIC_TYPES.contains(&e.aggregate_type.as_str()))
        .map(|e| (format!("{}/{}/{}", e.aggregate_type, e.aggregate_id, e.sequence), e))
        .collect();
    assert_eq!(public.len(), 21);
    let topics: Vec<String> = ["product", "stock", "user"].iter().filter_map(|a| config.topic(a)).collect();
    let received = consume(&brokers, &topics, public.len() + 4).await;

    // What the relay publishes matches the contract: each message its type's in /asyncapi.json.
    let contract = worker_kit::contract::document("shop");
    let mut first_seen: BTreeMap<String, Value> = BTreeMap::new();
    let mut order: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (key, value, headers) in &received {
        let kind = value["type"].as_str().expect("type");
        let schema = worker_kit::contract::message_schema_of(&contract, kind).unwrap_or_else(|| panic!("undocumented type {kind}"));
        let validator = jsonschema::validator_for(&schema).expect("a valid schema");
        let wrong: Vec<String> = validator.iter_errors(value).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(wrong.is_empty(), "{kind} does not match the contract: {wrong:?}\n{value}");
        let id = value["id"].as_str().expect("id").to_owned();
        assert_eq!(headers.get("ce_id"), Some(&id));
        assert_eq!(headers.get("ce_type").map(String::as_str), value["type"].as_str());
        assert_eq!(headers.get("content-type").map(String::as_str), Some("application/json"));
        assert!(headers.get("traceparent").is_some_and(|t| t.starts_with("00-01931b2c000070008000000000000001-")));
        assert_eq!(key, value["aggregate_id"].as_str().expect("aggregate id"));
        if first_seen.insert(id, value.clone()).is_none() {
            order.entry(key.clone()).or_default().push(value["sequence"].as_i64().expect("sequence"));
        }
    }
    assert_eq!(first_seen.keys().collect::<Vec<_>>(), public.keys().collect::<Vec<_>>(), "every public event, nothing else");
    for (id, value) in &first_seen {
        let e = public[id];
        let data = match &e.payload {
            Value::Object(m) => m.values().next().cloned().expect("tagged payload"),
            _ => serde_json::json!({}),
        };
        assert_eq!(value["data"], data, "{id} as stored");
        assert_eq!(value["position"].as_i64(), Some(e.cursor.position));
    }
    for (key, seqs) in order {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{key}: {seqs:?}");
    }
    assert!(received.len() > public.len(), "the crashed batch was delivered twice (at least once, de-duplicated by id)");
});

both_backends!(the_relay_moves_past_batches_of_internal_events, |t: TestStore| async move {
    let Some(brokers) = testkit::broker().await else {
        return;
    };
    let mut config = RelayConfig::new(brokers);
    config.topic_prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    let relay = relay_for(&t, &config).await;
    testkit::moves_past_foreign_events(&t, Arc::clone(&relay.members()[0]), 120).await;
});
