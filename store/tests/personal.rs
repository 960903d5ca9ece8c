//! Data keys in the store's database, on both backends: one key per person however many ask
//! at once, and an erased key stays erased (nothing is sealed for the person again).

use std::sync::Arc;

use serde_json::json;
use store::personal::{open, seal, sealed_key_id, KeyState, KeyStore, SqlKeyStore};
use testkit::Backend;

async fn one_key_per_person_and_erasure_is_for_good(backend: Backend) {
    let Some(t) = testkit::fresh_store(backend).await else { return };
    let keys = Arc::new(SqlKeyStore::new(&t.store));
    // Twenty writers ask for Ada's key at once: one key, the same for all.
    let asked = futures::future::join_all((0..20).map(|_| {
        let keys = Arc::clone(&keys);
        async move { keys.key_for("acme", "ada").await.expect("a key").expect("not erased") }
    }))
    .await;
    assert!(asked.iter().all(|(id, key)| (id, key) == (&asked[0].0, &asked[0].1)), "one key for one person");
    let (ada_id, ada_key) = asked[0].clone();
    let (grace_id, _) = keys.key_for("acme", "grace").await.expect("a key").expect("not erased");
    let (other_tenant, _) = keys.key_for("globex", "ada").await.expect("a key").expect("not erased");
    assert!(ada_id != grace_id && ada_id != other_tenant, "a key per person and tenant");

    let sealed = seal(&ada_id, &ada_key, &json!("ada@example.com"));
    let kid = sealed_key_id(&sealed).expect("sealed").to_owned();
    let KeyState::Live(key) = keys.key(&kid).await.expect("read") else { panic!("a live key") };
    assert_eq!(open(&sealed, &key), Ok(json!("ada@example.com")));

    assert!(keys.erase("acme", "ada").await.expect("erase"));
    assert_eq!(keys.key(&kid).await.expect("read"), KeyState::Erased);
    assert!(!keys.erase("acme", "ada").await.expect("erase again"), "erased once");
    assert_eq!(keys.key_for("acme", "ada").await.expect("ask"), None, "nothing is sealed for an erased person");
    assert!(matches!(keys.key(&grace_id).await.expect("read"), KeyState::Live(_)), "the others keep theirs");
    assert_eq!(keys.key("no-such-key").await.expect("read"), KeyState::Unknown);
    // Erasing someone never sealed for leaves a tombstone: no key is made for them later.
    assert!(keys.erase("acme", "nobody").await.expect("erase"));
    assert_eq!(keys.key_for("acme", "nobody").await.expect("ask"), None);
}

#[tokio::test]
async fn sqlite_keeps_one_key_per_person_and_erasure_for_good() {
    one_key_per_person_and_erasure_is_for_good(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_keeps_one_key_per_person_and_erasure_for_good() {
    one_key_per_person_and_erasure_is_for_good(Backend::Postgres).await;
}

/// The text of every stored payload and metadata, as the database holds them.
async fn stored_payloads(store: &store::EventStore) -> String {
    let sql = "SELECT CAST(payload AS TEXT) || CAST(metadata AS TEXT) FROM events ORDER BY global_position";
    let rows: Vec<String> = match store.db() {
        store::Db::Postgres(pool) => sqlx::query_scalar(sql).fetch_all(pool).await.expect("payloads"),
        store::Db::Sqlite { read, .. } => sqlx::query_scalar(sql).fetch_all(read).await.expect("payloads"),
    };
    rows.join("\n")
}

fn one(
    aggregate_type: &str,
    aggregate_id: &str,
    expected_version: u64,
    event_type: &str,
    payload: serde_json::Value,
) -> store::StreamAppend {
    store::StreamAppend {
        aggregate_type: aggregate_type.into(),
        aggregate_id: aggregate_id.into(),
        expected_version,
        events: vec![store::NewEvent { event_type: event_type.into(), event_version: "1".into(), payload, metadata: json!({}) }],
    }
}

async fn sealed_as_appended_opened_as_read_erased_for_good(backend: Backend) {
    let Some(t) = testkit::fresh_store(backend).await else { return };
    let ada = uuid::Uuid::now_v7().to_string();
    let user = format!("acme:{ada}");
    let address = json!({"name": "Ada Lovelace", "line1": "Zwetschgenweg 42", "line2": null, "city": "Quedlinburg", "region": null, "postal_code": "06484", "country": "DE"});
    let registered = json!({"registered": {"tenant": "acme", "user_id": ada, "email": "ada@example.com", "name": "Ada Lovelace", "password_hash": "$argon2id$x", "roles": ["customer"]}});
    let placed = |order: &str| json!({"placed": {"tenant": "acme", "order_id": order, "customer": ada, "shipping_address": address}});
    let first_order = uuid::Uuid::now_v7().to_string();
    let mut order = one("order", &format!("acme:{first_order}"), 0, "placed", placed(&first_order));
    // The client address of a write is personal data too: sealed with the causing user's key.
    order.events[0].metadata = json!({"tenant": "acme", "user_id": ada, "client_addr": "203.0.113.7"});
    let mut anonymous = one("user", &user, 0, "registered", registered);
    anonymous.events[0].metadata = json!({"tenant": "acme", "client_addr": "198.51.100.9"});
    t.store.append(&[anonymous, order]).await.expect("appended");
    // On PostgreSQL a transaction open anywhere in the cluster hides new events for a moment:
    // the later reads find both events once this one has.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let metadata = loop {
        let log = t.store.as_published().read_log(store::LogCursor::default(), 100).await.expect("log");
        if log.len() >= 2 || std::time::Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    assert!(metadata[0].metadata.get("client_addr").is_none(), "an anonymous request's address is not kept");
    assert!(sealed_key_id(&metadata[1].metadata["client_addr"]).is_some(), "{}", metadata[1].metadata);
    let stored = stored_payloads(&t.store).await;
    for clear in ["ada@example.com", "Lovelace", "Zwetschgenweg", "Quedlinburg", "06484", "203.0.113.7", "198.51.100.9"] {
        assert!(!stored.contains(clear), "{clear} is stored sealed: {stored}");
    }
    assert!(stored.contains("\"DE\""), "the country stays in clear");

    let read = t.store.read_log(store::LogCursor::default(), 100).await.expect("log");
    assert_eq!(read[0].payload["registered"]["email"], "ada@example.com", "readers see it opened");
    assert_eq!(read[1].payload["placed"]["shipping_address"], address);
    let loaded = t.store.load_stream("user", &user, 0).await.expect("stream");
    assert_eq!(loaded[0].payload["registered"]["name"], "Ada Lovelace");
    let published = t.store.as_published().read_log(store::LogCursor::default(), 100).await.expect("log");
    let kid = sealed_key_id(&published[0].payload["registered"]["email"]).expect("published sealed").to_owned();
    assert_eq!(sealed_key_id(&published[1].payload["placed"]["shipping_address"]["line1"]), Some(kid.as_str()), "one key per person");
    assert!(published[1].payload["placed"]["shipping_address"]["line2"].is_null(), "nothing to seal in a null");

    // Erased: the key goes as the event commits; every reader sees the fields erased.
    t.store.append(&[one("user", &user, 1, "erased", json!("erased"))]).await.expect("erased");
    assert_eq!(SqlKeyStore::new(&t.store).key(&kid).await.expect("read"), KeyState::Erased);
    let read = t.store.read_log(store::LogCursor::default(), 100).await.expect("log");
    assert_eq!(read[0].payload["registered"]["email"], domain::personal::ERASED_EMAIL);
    assert_eq!(read[0].payload["registered"]["name"], domain::personal::ERASED_TEXT);
    let erased_address = &read[1].payload["placed"]["shipping_address"];
    assert_eq!((erased_address["line1"].as_str(), erased_address["country"].as_str()), (Some("[erased]"), Some("DE")));
    let loaded = t.store.load_stream("user", &user, 0).await.expect("stream");
    assert_eq!(loaded[0].payload["registered"]["email"], domain::personal::ERASED_EMAIL, "aggregates load it erased");

    // Nothing new is sealed for an erased person: it is stored erased.
    let second_order = uuid::Uuid::now_v7().to_string();
    t.store.append(&[one("order", &format!("acme:{second_order}"), 0, "placed", placed(&second_order))]).await.expect("appended");
    let stored = stored_payloads(&t.store).await;
    assert!(!stored.contains("Zwetschgenweg") && stored.contains("[erased]"), "{stored}");

    // A field sealed with a key nobody knows is not quietly read as erased: the read fails.
    let grace = uuid::Uuid::now_v7().to_string();
    let stray = seal("no-such-key", &store::personal::DataKey::generate(), &json!("grace@example.com"));
    let registered = json!({"registered": {"tenant": "acme", "user_id": grace, "email": stray, "name": "Grace", "password_hash": "$argon2id$x", "roles": ["customer"]}});
    t.store.append(&[one("user", &format!("acme:{grace}"), 0, "registered", registered)]).await.expect("appended");
    let failed = t.store.read_log(store::LogCursor::default(), 100).await;
    assert!(matches!(failed, Err(store::StoreError::Personal(_))), "{failed:?}");
}

#[tokio::test]
async fn sqlite_seals_as_appended_opens_as_read_and_erases_for_good() {
    sealed_as_appended_opened_as_read_erased_for_good(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_seals_as_appended_opens_as_read_and_erases_for_good() {
    sealed_as_appended_opened_as_read_erased_for_good(Backend::Postgres).await;
}
