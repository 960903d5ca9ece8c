//! Schema evolution: every stored event carries the version of its payload's shape, and the
//! steps here turn an older shape into the next one, so every reader (aggregates loading a
//! stream, projections, the relay, the notifier, the saga, replay) sees only the current shape.
//! The store applies [`upcast`] to every event it reads; nothing is rewritten on disk.
//!
//! Stored payloads are externally tagged (`{"price_changed": {...}}`); a step sees the inner
//! object. cqrs-es's `EventUpcaster` is asked only for the event type and version, but event
//! type names repeat across aggregates here (`created`), so a step is keyed by the aggregate type
//! too; [`Upcaster`] still implements that trait for code written against cqrs-es.
//!
//! Adding a change: bump the type's `event_version()`, add a [`Step`] from the old version to
//! the new one, and check in a fixture of the new version next to the old one
//! (`domain/fixtures/events`, see `tests/fixtures.rs`).

use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use serde_json::{json, Value};

/// One change of one event type's shape: `from` becomes `to` through `apply`.
pub struct Step {
    pub aggregate_type: &'static str,
    pub event_type: &'static str,
    pub from: &'static str,
    pub to: &'static str,
    /// Rewrites the inner payload object in place.
    pub apply: fn(&mut Value),
}

/// Every step, oldest first.
pub const STEPS: &[Step] = &[Step { aggregate_type: "order", event_type: "placed", from: "1", to: "2", apply: address_lines }];

/// `order.placed` 1 → 2: the shipping address gains `line2` and `region` (none before).
fn address_lines(placed: &mut Value) {
    if let Some(Value::Object(address)) = placed.get_mut("shipping_address") {
        address.entry("line2").or_insert(Value::Null);
        address.entry("region").or_insert(Value::Null);
    }
}

/// The version every event without a step is at.
pub const FIRST: &str = "1";

/// The version the code writes for `(aggregate_type, event_type)`.
pub fn current_version(aggregate_type: &str, event_type: &str) -> &'static str {
    STEPS.iter().rev().find(|s| s.aggregate_type == aggregate_type && s.event_type == event_type).map_or(FIRST, |s| s.to)
}

/// Brings a stored payload (externally tagged) of `version` to the current shape; `version`
/// becomes the current one. A payload of an unknown or newer version is left as it is (the
/// reader's deserialisation then says what is wrong).
pub fn upcast(aggregate_type: &str, event_type: &str, version: &mut String, payload: &mut Value) {
    for step in STEPS {
        if step.aggregate_type == aggregate_type && step.event_type == event_type && step.from == version.as_str() {
            if let Some(inner) = payload.get_mut(event_type) {
                (step.apply)(inner);
            } else if payload.as_str() == Some(event_type) {
                // A unit variant (`"published"`) gains fields: it becomes an object.
                let mut inner = json!({});
                (step.apply)(&mut inner);
                *payload = json!({ event_type: inner });
            }
            step.to.clone_into(version);
        }
    }
}

/// The steps of one aggregate type as a cqrs-es [`EventUpcaster`].
pub struct Upcaster {
    pub aggregate_type: &'static str,
}

impl EventUpcaster for Upcaster {
    fn can_upcast(&self, event_type: &str, event_version: &str) -> bool {
        STEPS.iter().any(|s| s.aggregate_type == self.aggregate_type && s.event_type == event_type && s.from == event_version)
    }

    fn upcast(&self, mut event: SerializedEvent) -> SerializedEvent {
        upcast(&event.aggregate_type, &event.event_type, &mut event.event_version, &mut event.payload);
        event
    }
}

/// Reads a payload of the current shape as its aggregate's event and writes it again: what the
/// code makes of a stored event. `Err` when the code cannot read it (or knows no such type).
pub fn reread(aggregate_type: &str, payload: &Value) -> Result<Value, String> {
    struct Reread<'a>(&'a Value);
    impl crate::history::ForAggregate for Reread<'_> {
        type Out = Result<Value, String>;
        fn run<A: cqrs_es::Aggregate>(self) -> Self::Out {
            let event: A::Event = serde_json::from_value(self.0.clone()).map_err(|e| e.to_string())?;
            serde_json::to_value(event).map_err(|e| e.to_string())
        }
    }
    crate::history::for_type(aggregate_type, Reread(payload)).unwrap_or_else(|| Err(format!("no aggregate type {aggregate_type:?}")))
}
