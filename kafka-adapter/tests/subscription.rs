//! The projections fed by a Kafka consumer group (`SHOP_EVENT_SOURCE=kafka`) against a real
//! Kafka-protocol broker: the read models equal those built from the log, across a consumer
//! that stops mid-stream and a successor in the same group; a redelivery of everything changes
//! nothing; read-your-writes and lag work through the broker.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::user::{User, UserCommand, UserServices};
use domain::{TenantId, UserId};
use kafka_adapter::subscription::KafkaGroup;
use kafka_adapter::{Envelope, Relay, RelayConfig};
use projections::Runner;
use rdkafka::message::Message;
use store::{Metadata, Repository};
use testkit::{both_backends, dump, fresh_store, write_events, PlainHasher, TestStore};
use worker_kit::{ExternalSource, Outcome, ReadDb, Sourced, SourcedConsumer};

/// The shared events, plus the user events whose hashes the relay strips.
async fn write_all(t: &TestStore) -> i64 {
    write_events(t).await;
    let users = Repository::<User>::new(t.store.clone(), UserServices { hasher: Arc::new(PlainHasher) });
    let acme: TenantId = "acme".parse().expect("valid");
    let stream = domain::stream_id(&acme, UserId::from_uuid(uuid::Uuid::from_u128(99)));
    let meta = Metadata::default();
    let change =
        UserCommand::ChangePassword { current: "correct horse".parse().expect("valid"), new: "battery staple".parse().expect("valid") };
    users.execute(&stream, change, None, &meta).await.expect("password");
    let rename = UserCommand::ChangeProfile { name: Some("Ada L.".parse().expect("valid")), phone: None };
    users.execute(&stream, rename, None, &meta).await.expect("profile").position
}

async fn read_db(url: &str) -> ReadDb {
    let db = ReadDb::connect(url, 4).await.expect("read db");
    db.migrate().await.expect("schema");
    db
}

/// Publishes the whole log, keeping the relay checkpoint in the read-model database at
/// `checkpoints` (beside the projections it feeds, as in production).
async fn publish_all(t: &TestStore, checkpoints: &str, config: &RelayConfig, last: i64) {
    let relay = Arc::new(Relay::new(t.store.clone(), read_db(checkpoints).await, config.clone()).expect("producer"));
    relay.ensure_topics().await.expect("topics");
    let relay = relay.driver();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if relay.try_process_next().await.expect("publish") == Outcome::Idle {
            let log = t.store.read_log(store::LogCursor::default(), 10_000).await.expect("log");
            if log.last().is_some_and(|e| e.cursor.position >= last) && relay.try_process_next().await.expect("publish") == Outcome::Idle {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(Instant::now() < deadline, "the relay stalled");
    }
}

async fn kafka_fed_read_models_match_the_log(t: TestStore) {
    let Some(brokers) = testkit::broker().await else {
        return;
    };
    let Some(other) = fresh_store(t.backend).await else {
        return;
    };
    let last = write_all(&t).await;
    let mut config = RelayConfig::new(brokers.clone());
    config.topic_prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    config.partitions = 2;
    publish_all(&t, &other.url, &config, last).await;

    // The reference: the same projections from the log.
    let from_log = Runner::new(t.store.clone(), read_db(&t.url).await, projections::all());
    from_log.catch_up().await.expect("catch up");
    let reference = dump(from_log.db()).await;
    assert!(reference.iter().any(|r| r.contains("Ada L.")), "{reference:?}");

    // The Kafka-fed read models live in another database.
    let runner = Arc::new(Runner::new(t.store.clone(), read_db(&other.url).await, projections::all()));
    let group = format!("g{}", uuid::Uuid::new_v4().simple());
    // A first member applies a few small batches, then stops mid-stream.
    let member = |consume: bool| {
        let (runner, config, group) = (Arc::clone(&runner), config.clone(), group.clone());
        let (store, db) = (t.store.clone(), runner.db().clone());
        async move {
            KafkaGroup::new(runner as Arc<dyn SourcedConsumer>, config, &group, consume, store, db).await.expect("consumer group member")
        }
    };
    let first = Arc::new(member(true).await.with_batch_size(2));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn({
        let first = Arc::clone(&first);
        async move { first.run(stopped).await }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while runner.offsets("catalogue").await.expect("offsets").is_empty() {
        assert!(Instant::now() < deadline, "the first member applied nothing");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.send(true);
    worker.await.expect("first member");
    drop(first);
    assert_ne!(dump(runner.db()).await, reference, "the first member should have stopped part way");

    // A successor in the same group starts where the read models say and finishes.
    let second = Arc::new(member(true).await);
    runner.use_source(Arc::clone(&second) as Arc<dyn ExternalSource>);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn({
        let second = Arc::clone(&second);
        async move { second.run(stopped).await }
    });
    for p in runner.projections() {
        assert!(runner.wait_for(p.name(), last, Duration::from_secs(60)).await.expect("wait"), "{} never reached {last}", p.name());
    }
    assert_eq!(dump(runner.db()).await, reference);
    for status in runner.status().await.expect("status") {
        if status.name != "relay" {
            assert_eq!((status.source, status.lag_events, status.lag_ms), ("kafka", Some(0), Some(0)), "{status:?}");
        }
    }
    let _ = stop.send(true);
    worker.await.expect("second member");

    // Everything delivered again (a consumer that lost its broker offsets): no effect.
    let topics: Vec<String> = kafka_adapter::PUBLIC_TYPES.iter().filter_map(|t| config.topic(t)).collect();
    let public = t.store.read_log(store::LogCursor::default(), 10_000).await.expect("log");
    let want = public.iter().filter(|e| kafka_adapter::PUBLIC_TYPES.contains(&e.aggregate_type.as_str())).count();
    let again = common::read_all(&brokers, &topics, want, |m| Sourced {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        event: Envelope::parse(m.payload().unwrap_or_default()).expect("envelope"),
    })
    .await;
    assert_eq!(again.len(), want);
    for p in runner.projections() {
        assert_eq!(runner.apply_sourced(p.as_ref(), &again).await.expect("apply"), 0, "{} applied a redelivery", p.name());
    }
    assert_eq!(dump(runner.db()).await, reference);
}

both_backends!(fn kafka_fed_read_models_match_the_log);
