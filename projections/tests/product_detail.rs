//! Product detail documents in a real Redis and in process: the same documents from the same
//! log, tenant-scoped keys, and a per-key version guard that makes a replay from the start of
//! the log (a lost checkpoint) change nothing.

use domain::product::{Attributes, ProductCommand};
use std::sync::Arc;

use projections::detail::ProductDetails;
use store::Metadata;
use testkit::{both_backends, eur, write_product, TestProduct, TestStore};
use worker_kit::{Consumer, Driver, Outcome};

async fn write_products(t: &TestStore) -> i64 {
    let mut last = 0;
    for n in 1..=2u128 {
        let sku = format!("D-{n}");
        let lamp = TestProduct { n, sku: &sku, name: "Lamp", description: "bright", category: "home/lighting", ..TestProduct::default() };
        let details = ProductCommand::UpdateDetails {
            name: Some("Desk lamp".parse().expect("valid")),
            description: None,
            category: None,
            attributes: Some(Attributes::from([("featured".into(), "true".into())])),
        };
        let then = vec![ProductCommand::ChangePrice { price: eur(900) }, details, ProductCommand::Publish];
        last = write_product(&t.store, &lamp, then, &Metadata::default()).await;
    }
    last
}

/// Steps the documents' worker until it has processed `position`.
async fn caught_up(t: &TestStore, details: &Arc<ProductDetails>, position: i64) {
    let driver = Driver::single("projection", t.store.clone(), Arc::clone(details));
    for _ in 0..400 {
        if driver.try_process_next().await.expect("batch") == Outcome::Idle
            && worker_kit::reached(&t.store, details.checkpoint().await.expect("checkpoint"), position).await.expect("reached")
        {
            return;
        }
    }
    panic!("product details never reached {position}");
}

both_backends!(product_details, |t: TestStore| async move {
    let Some(redis_url) = testkit::redis().await else {
        return;
    };
    let last = write_products(&t).await;
    let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    let in_redis = Arc::new(ProductDetails::connect(t.store.clone(), Some(&redis_url), &prefix).await.expect("redis"));
    let in_memory = Arc::new(ProductDetails::connect(t.store.clone(), None, &prefix).await.expect("memory"));
    caught_up(&t, &in_redis, last).await;
    caught_up(&t, &in_memory, last).await;
    let id = uuid::Uuid::from_u128(1).to_string();
    let doc = in_redis.get("default", &id).await.expect("get").expect("document");
    assert_eq!(doc["name"], "Desk lamp");
    assert_eq!(doc["price"]["amount"], 900);
    assert_eq!((doc["published"].as_bool(), doc["featured"].as_bool(), doc["version"].as_i64()), (Some(true), Some(true), Some(4)));
    assert_eq!(Some(doc), in_memory.get("default", &id).await.expect("get"));
    assert!(in_redis.get("other-tenant", &id).await.expect("get").is_none());

    // The checkpoint is lost: a worker starts again from the beginning of the log, and the
    // version guard keeps every document as it was.
    let mut conn = redis::Client::open(redis_url.as_str()).expect("client").get_multiplexed_async_connection().await.expect("conn");
    let checkpoint_key = format!("{prefix}:checkpoint:product_detail");
    let _: () = redis::cmd("DEL").arg(&checkpoint_key).query_async(&mut conn).await.expect("del");
    let again = Arc::new(ProductDetails::connect(t.store.clone(), Some(&redis_url), &prefix).await.expect("redis"));
    caught_up(&t, &again, last).await;
    let replayed = again.get("default", &id).await.expect("get").expect("document");
    assert_eq!((replayed["version"].as_i64(), replayed["price"]["amount"].as_i64()), (Some(4), Some(900)));

    // A replay repairs what the version guard alone would keep: a damaged document, and a
    // document whose content does not match its version.
    let other = uuid::Uuid::from_u128(2).to_string();
    let _: () = redis::cmd("SET").arg(format!("{prefix}:product:default:{id}")).arg("not json").query_async(&mut conn).await.expect("set");
    let mut wrong = replayed.clone();
    wrong["name"] = serde_json::json!("tampered");
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}:product:default:{other}"))
        .arg(wrong.to_string())
        .query_async(&mut conn)
        .await
        .expect("set");
    let report = again.rebuild(|_, _| {}).await.expect("rebuild");
    assert!(report.events >= last, "{report:?}");
    for key in [&id, &other] {
        assert_eq!(again.get("default", key).await.expect("get"), in_memory.get("default", key).await.expect("get"), "{key}");
    }
    let _: () = redis::cmd("DEL").arg(&checkpoint_key).query_async(&mut conn).await.expect("del");
});

// The defect this guards against: a batch without product events must still move the
// checkpoint, or a current worker looks thousands of events behind and a read at the position
// of a stock receipt waits in vain.
both_backends!(the_checkpoint_moves_through_batches_without_product_events, |t: TestStore| async move {
    let Some(redis_url) = testkit::redis().await else {
        return;
    };
    let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    for details in [
        ProductDetails::connect(t.store.clone(), Some(&redis_url), &prefix).await.expect("redis"),
        ProductDetails::connect(t.store.clone(), None, &prefix).await.expect("memory"),
    ] {
        testkit::moves_past_foreign_events(&t, Arc::new(details), 300).await;
    }
});
