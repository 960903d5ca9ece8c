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
