//! The topic contract is made from the event types, and what is checked in is what they make:
//! `contract/asyncapi.json` and `contract/envelope.schema.json` equal the generator's output
//! (`SHOP_WRITE_CONTRACT=1` writes them anew), and every event type's envelope, made from its
//! fixture the way the relay makes it, validates against its message in the AsyncAPI document.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use worker_kit::contract;
use worker_kit::envelope::{Envelope, PUBLIC_TYPES};

fn contract_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contract")
}

/// `generated` is what `file` holds, or (with `SHOP_WRITE_CONTRACT=1`) becomes it.
fn checked_in(file: &str, generated: &Value) {
    let path = contract_dir().join(file);
    let text = format!("{}\n", serde_json::to_string_pretty(generated).expect("JSON"));
    if std::env::var("SHOP_WRITE_CONTRACT").as_deref() == Ok("1") {
        std::fs::write(&path, &text).expect("write");
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        stored == text,
        "{} is not what the event types make: run `SHOP_WRITE_CONTRACT=1 cargo test -p worker-kit --test contract` and commit it \
         (a changed shape also needs a new version, see domain/src/upcast.rs)",
        path.display()
    );
}

#[test]
fn the_checked_in_contract_is_what_the_event_types_make() {
    let document = contract::document("shop");
    checked_in("asyncapi.json", &document);
    let types: Vec<String> = document["components"]["messages"].as_object().expect("messages").keys().cloned().collect();
    checked_in("envelope.schema.json", &contract::envelope_schema(&types));
    // One channel per published aggregate type, each with its events.
    for aggregate_type in PUBLIC_TYPES {
        let channel = &document["channels"][*aggregate_type];
        assert_eq!(channel["address"], json!(format!("shop.{aggregate_type}.v1")), "{aggregate_type}");
        assert!(channel["messages"].as_object().is_some_and(|m| !m.is_empty()), "{aggregate_type} has events");
    }
    assert!(types.contains(&"order.placed".to_owned()) && types.contains(&"product.price_changed".to_owned()), "{types:?}");
    assert!(!document.to_string().contains("password_hash"), "hashes are never published, nor documented");
}

/// The fixtures of the current version of every published type, as the relay would publish them.
fn published_fixtures() -> Vec<(String, Value)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../domain/fixtures/events");
    let mut out = Vec::new();
    for aggregate_type in PUBLIC_TYPES {
        let Ok(entries) = std::fs::read_dir(root.join(aggregate_type)) else { continue };
        for entry in entries.filter_map(Result::ok).filter(|e| e.path().extension().is_some_and(|x| x == "json")) {
            let fixture: Value = serde_json::from_str(&std::fs::read_to_string(entry.path()).expect("fixture")).expect("fixture JSON");
            let event_type = fixture["event_type"].as_str().expect("event type").to_owned();
            let mut version = fixture["event_version"].as_str().expect("version").to_owned();
            let mut payload = fixture["payload"].clone();
            domain::upcast::upcast(aggregate_type, &event_type, &mut version, &mut payload);
            if fixture["event_version"].as_str() != Some(domain::upcast::current_version(aggregate_type, &event_type)) {
                continue; // older versions: brought up to date, the same as the current one
            }
            let event = store::LogEvent {
                cursor: store::LogCursor { transaction_id: 7, position: 42 },
                aggregate_type: aggregate_type.to_string(),
                aggregate_id: "acme:0193a000-0000-7000-8000-000000000001".into(),
                sequence: 3,
                event_type,
                event_version: version,
                payload,
                metadata: json!({"tenant": "acme", "user_id": "0193a000-0000-7000-8000-000000000002", "correlation_id": "c-1"}),
                recorded_at: chrono::DateTime::parse_from_rfc3339("2024-10-01T12:00:00Z").expect("time").with_timezone(&chrono::Utc),
            };
            let envelope = Envelope::from_event(&event).expect("an envelope");
            out.push((envelope.event_type.clone(), serde_json::from_str(&envelope.value).expect("envelope JSON")));
        }
    }
    out
}

fn message_schema(document: &Value, name: &str) -> Value {
    contract::message_schema_of(document, name).unwrap_or_else(|| panic!("{name} is documented"))
}

fn errors(schema: &Value, instance: &Value) -> Vec<String> {
    let validator = jsonschema::validator_for(schema).expect("a valid schema");
    validator.iter_errors(instance).map(|e| format!("{e} at {}", e.instance_path())).collect()
}

#[test]
fn every_published_event_type_validates_against_its_message_and_a_wrong_one_does_not() {
    let document = contract::document("shop");
    let published = published_fixtures();
    let messages = document["components"]["messages"].as_object().expect("messages");
    assert_eq!(published.len(), messages.len(), "a fixture for every documented event type");
    for (name, envelope) in &published {
        assert!(messages.contains_key(name), "{name} is documented");
        let found = errors(&message_schema(&document, name), envelope);
        assert!(found.is_empty(), "{name} does not match its message: {found:?}\n{envelope}");
    }
    // The check can fail: a field of the wrong type, a missing field, another type's data.
    let (name, envelope) = published.iter().find(|(n, _)| n == "order.placed").expect("order.placed");
    let schema = message_schema(&document, name);
    let mut wrong = envelope.clone();
    wrong["data"]["total"]["amount"] = json!("1800");
    assert!(!errors(&schema, &wrong).is_empty());
    let mut missing = envelope.clone();
    missing["data"].as_object_mut().expect("data").remove("lines");
    assert!(!errors(&schema, &missing).is_empty());
    let mut mislabelled = envelope.clone();
    mislabelled["type"] = json!("order.shipped");
    assert!(!errors(&schema, &mislabelled).is_empty());
}
