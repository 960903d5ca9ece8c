//! The topic contract as data, made from the domain's own event types: the AsyncAPI 3.0
//! document (`GET /asyncapi.json`) and the envelope's JSON Schema
//! (`worker-kit/contract/envelope.schema.json`, checked against this by a test). One topic per
//! published aggregate type; every message is an [`crate::envelope::Envelope`] whose `data` is
//! the event's fields as serde writes them, less what the relay never publishes
//! ([`REDACTED`]).

use serde_json::{json, Map, Value};

use crate::envelope::{PUBLIC_TYPES, REDACTED};

/// The CloudEvents headers (Kafka binding) and the shop's own, on every message.
fn headers() -> Value {
    let text = |d: &str| json!({"type": "string", "description": d});
    json!({
        "type": "object",
        "required": ["ce_specversion", "ce_id", "ce_type", "ce_source", "ce_subject", "ce_time", "content-type", "shop_position", "shop_sequence"],
        "properties": {
            "ce_specversion": {"type": "string", "const": "1.0"},
            "ce_id": text("= the envelope's id"),
            "ce_type": text("= the envelope's type"),
            "ce_source": {"type": "string", "const": "shop"},
            "ce_subject": text("the aggregate id"),
            "ce_time": {"type": "string", "format": "date-time"},
            "content-type": {"type": "string", "const": "application/json"},
            "shop_position": text("the global log position, as a decimal string"),
            "shop_sequence": text("the per-aggregate sequence, as a decimal string"),
            "shop_correlation_id": text("shared by everything one request led to"),
            "traceparent": text("W3C trace context of the write, when it was traced")
        }
    })
}

/// The envelope's fields but `type` and `data`, as every message has them.
fn envelope_properties() -> Map<String, Value> {
    let properties = json!({
        "id": {"type": "string", "description": "<aggregate_type>/<tenant>:<aggregate_id>/<sequence>; unique and stable across re-deliveries: de-duplicate by it"},
        "version": {"type": "string", "description": "version of the shape of data (always the current one: older events are brought up to date before they are published)"},
        "aggregate_type": {"type": "string", "enum": PUBLIC_TYPES},
        "aggregate_id": {"type": "string", "description": "also the message key: one aggregate, one partition, in order"},
        "sequence": {"type": "integer", "minimum": 1, "description": "per-aggregate order"},
        "position": {"type": "integer", "minimum": 1, "description": "global log position"},
        "tenant": {"type": "string"},
        "occurred_at": {"type": "string", "format": "date-time"},
        "metadata": {
            "type": "object",
            "required": ["correlation_id", "causation_id", "user_id"],
            "properties": {
                "correlation_id": {"type": ["string", "null"]},
                "causation_id": {"type": ["string", "null"]},
                "user_id": {"type": ["string", "null"], "description": "who caused it (personal data)"},
                "traceparent": {"type": ["string", "null"], "description": "W3C trace context of the write when it was traced (also the traceparent header)"}
            }
        }
    });
    match properties {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

const REQUIRED: [&str; 11] =
    ["id", "type", "version", "aggregate_type", "aggregate_id", "sequence", "position", "tenant", "occurred_at", "metadata", "data"];

/// One event type of an aggregate: its name and the schema of its `data`.
#[derive(Debug, Clone)]
pub struct EventSchema {
    /// `<aggregate type>.<event type>`, as in the envelope's `type`.
    pub name: String,
    pub data: Value,
}

/// The event types of an aggregate from the JSON Schema of its (externally tagged) event enum
/// ([`domain::schema::variants`]), sorted by name. Definitions the schemas refer to are
/// collected into `defs`, under the names components get (`#/components/schemas/<name>`).
pub fn events_of(aggregate_type: &str, enum_schema: &Value, defs: &mut Map<String, Value>) -> Vec<EventSchema> {
    let mut schema = enum_schema.clone();
    rewrite_refs(&mut schema);
    for key in ["$defs", "definitions"] {
        if let Some(Value::Object(found)) = schema.get(key) {
            defs.extend(found.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    let no_fields = || json!({"type": "object", "properties": {}, "additionalProperties": false});
    defs.insert(SEALED_SCHEMA.into(), sealed_schema());
    domain::schema::variants(&schema)
        .into_iter()
        .map(|(name, fields)| {
            let mut data = fields.map_or_else(no_fields, |mut data| {
                strip_redacted(&mut data);
                data
            });
            if let Some(personal) = domain::personal::of(aggregate_type, &name) {
                for field in personal.fields {
                    // `/<event type>/a/b` in the stored payload is `/a/b` of the data.
                    let path: Vec<&str> = field.pointer.split('/').skip(2).collect();
                    mark_sealed(&mut data, &path, defs);
                }
            }
            EventSchema { name: format!("{aggregate_type}.{name}"), data }
        })
        .collect()
}

/// The component a sealed personal field's schema refers to.
const SEALED_SCHEMA: &str = "Sealed";

/// A personal field as published: sealed with its owner's data key (AES-256-GCM, the key id
/// bound as associated data); once the owner is erased the key is gone and it opens no more.
fn sealed_schema() -> Value {
    json!({
        "type": "object",
        "description": "Personal data, sealed with a data key of the person it belongs to (AES-256-GCM; kid: the key id, also the associated data; n: the 96-bit nonce; ct: ciphertext and tag; both base64 without padding). Consumers cannot open it: the shop's own readers can until the person is erased (user.erased), after which nobody can.",
        "required": ["$personal"],
        "additionalProperties": false,
        "properties": {"$personal": {
            "type": "object",
            "required": ["kid", "n", "ct"],
            "additionalProperties": false,
            "properties": {"kid": {"type": "string"}, "n": {"type": "string"}, "ct": {"type": "string"}}
        }}
    })
}

/// The field at `path` of `schema` may be published sealed: its schema becomes "itself or
/// [`sealed_schema`]". A `$ref` on the way is followed into `defs` (the component changes).
fn mark_sealed(schema: &mut Value, path: &[&str], defs: &mut Map<String, Value>) {
    let Some((first, rest)) = path.split_first() else { return };
    if let Some(name) = schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/components/schemas/")).map(str::to_owned)
    {
        let mut def = defs.remove(&name).unwrap_or(Value::Null);
        mark_sealed(&mut def, path, defs);
        defs.insert(name, def);
        return;
    }
    let Some(property) = schema.get_mut("properties").and_then(|p| p.get_mut(*first)) else { return };
    if rest.is_empty() {
        if !property["anyOf"]
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s["$ref"] == json!(format!("#/components/schemas/{SEALED_SCHEMA}"))))
        {
            let mut original = property.take();
            // A description stays on the field, beside the choice.
            let description = original.as_object_mut().and_then(|o| o.remove("description"));
            *property = json!({"anyOf": [original, {"$ref": format!("#/components/schemas/{SEALED_SCHEMA}")}]});
            if let Some(d) = description {
                property["description"] = d;
            }
        }
    } else {
        mark_sealed(property, rest, defs);
    }
}

/// `#/$defs/X` (and `#/definitions/X`) become `#/components/schemas/X`.
fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("$ref") {
                for from in ["#/$defs/", "#/definitions/"] {
                    if let Some(name) = r.strip_prefix(from) {
                        *r = format!("#/components/schemas/{name}");
                    }
                }
            }
            map.values_mut().for_each(rewrite_refs);
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

/// The relay never publishes [`REDACTED`] fields: they leave the data's schema (inline).
fn strip_redacted(data: &mut Value) {
    if let Some(Value::Object(properties)) = data.get_mut("properties") {
        for secret in REDACTED {
            properties.remove(*secret);
        }
    }
    if let Some(Value::Array(required)) = data.get_mut("required") {
        required.retain(|r| !REDACTED.iter().any(|s| r.as_str() == Some(*s)));
    }
}

/// The schema of the whole message of one event type: the envelope with its `type` fixed and
/// its `data` that event's fields.
pub fn message_schema(event: &EventSchema) -> Value {
    let mut properties = envelope_properties();
    properties.insert("type".into(), json!({"type": "string", "const": event.name}));
    properties.insert("data".into(), event.data.clone());
    json!({"type": "object", "required": REQUIRED, "additionalProperties": false, "properties": properties})
}

/// The envelope schema of every published type at once (`type` one of them, `data` an object).
pub fn envelope_schema(types: &[String]) -> Value {
    let mut properties = envelope_properties();
    properties.insert("type".into(), json!({"type": "string", "enum": types}));
    properties.insert("data".into(), json!({"type": "object", "description": "the event's fields (see the AsyncAPI document, /asyncapi.json, for each type's); password and token hashes are never included"}));
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:shop:contract:envelope:v1",
        "title": "shop event envelope, version 1",
        "description": "The value of every message on the shop.<aggregate>.v1 topics. Key: the aggregate id. Headers: ce_specversion, ce_id, ce_type, ce_source, ce_subject, ce_time, content-type, shop_position, shop_sequence, traceparent. Delivery is at least once: de-duplicate by id. Generated from the event types (worker_kit::contract); the AsyncAPI document at /asyncapi.json has each type's data.",
        "type": "object",
        "required": REQUIRED,
        "additionalProperties": false,
        "properties": properties
    })
}

/// The AsyncAPI 3.0 document of the topics `<prefix>.<aggregate type>.v1`, from each published
/// aggregate type's event-enum schema.
pub fn asyncapi(prefix: &str, enum_schemas: &[(&str, Value)]) -> Value {
    let mut defs = Map::new();
    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut messages = Map::new();
    for aggregate_type in PUBLIC_TYPES {
        let Some((_, schema)) = enum_schemas.iter().find(|(t, _)| t == aggregate_type) else { continue };
        let events = events_of(aggregate_type, schema, &mut defs);
        let address = format!("{prefix}.{aggregate_type}.v1");
        let mut channel_messages = Map::new();
        let mut refs = Vec::new();
        for event in &events {
            let key = event.name.clone();
            messages.insert(
                key.clone(),
                json!({
                    "name": event.name,
                    "title": event.name,
                    "contentType": "application/json",
                    "headers": {"$ref": "#/components/schemas/headers"},
                    "payload": message_schema(event),
                    "bindings": {"kafka": {"key": {"type": "string", "description": "the aggregate id (without tenant)"}, "bindingVersion": "0.5.0"}}
                }),
            );
            channel_messages.insert(key.clone(), json!({"$ref": format!("#/components/messages/{key}")}));
            refs.push(json!({"$ref": format!("#/channels/{aggregate_type}/messages/{key}")}));
        }
        channels.insert(
            aggregate_type.to_string(),
            json!({
                "address": address,
                "title": format!("{aggregate_type} events"),
                "description": format!("Every event of every {aggregate_type}, in order per {aggregate_type} (the key is its id)."),
                "messages": channel_messages,
                "bindings": {"kafka": {"topic": address, "bindingVersion": "0.5.0"}}
            }),
        );
        operations.insert(
            format!("receive_{aggregate_type}"),
            json!({
                "action": "receive",
                "title": format!("Receive {aggregate_type} events"),
                "channel": {"$ref": format!("#/channels/{aggregate_type}")},
                "messages": refs
            }),
        );
    }
    defs.insert("headers".into(), headers());
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "shop events",
            "version": "1.0.0",
            "description": "Every public event of the shop, one topic per aggregate type. Delivery is at least once: de-duplicate by the envelope's id. Order is kept per aggregate (the message key). Each message's version is the current shape of its type's data; a change that would break a consumer is a new topic version."
        },
        "defaultContentType": "application/json",
        "servers": {"kafka": {"host": "localhost:9092", "protocol": "kafka", "description": "the brokers of KAFKA_BROKERS"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": defs}
    })
}

/// The AsyncAPI document of the shop's topics (`<prefix>.<type>.v1`), from the domain's
/// event types.
pub fn document(prefix: &str) -> Value {
    let schemas: Vec<(&str, Value)> = domain::schema::event_schemas().into_iter().map(|(t, s)| (t, s.to_value())).collect();
    asyncapi(prefix, &schemas)
}

/// A JSON Schema of message `name` (`order.placed`) of an AsyncAPI `document` made here,
/// standing alone (with the components it refers to), for validating what a consumer receives.
pub fn message_schema_of(document: &Value, name: &str) -> Option<Value> {
    let mut schema = document["components"]["messages"].get(name)?["payload"].clone();
    schema["components"] = json!({"schemas": document["components"]["schemas"].clone()});
    Some(schema)
}
