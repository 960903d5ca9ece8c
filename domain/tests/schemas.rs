//! Every event's JSON Schema (`domain::schema::event_schemas`, the contract of the Kafka
//! topics) describes what serde writes: each fixture under `domain/fixtures/events` (see
//! `tests/fixtures.rs`), brought to the current version by `domain::upcast`, validates against
//! the schema of its aggregate type's event enum, and a payload with a field of another type
//! or shape does not.
//!
//! Each schema is checked in both of schemars' contracts: as `schema_for!` makes it (what a
//! reader must accept: a field with a serde default may be absent) and for serialising (what a
//! writer writes: every field serde writes is required, `null` or not).

use std::collections::BTreeSet;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cqrs_es::Aggregate;
use schemars::generate::SchemaSettings;
use schemars::{schema_for, JsonSchema, Schema};
use serde_json::{json, Value};

use domain::admins::AdminRoster;
use domain::cart::{Cart, CustomerCarts};
use domain::claim::{EmailClaim, SkuClaim};
use domain::history::{for_type, ForAggregate, AGGREGATE_TYPES};
use domain::order::{InvoiceBook, Order};
use domain::payment::Payment;
use domain::product::Product;
use domain::promotion::Promotion;
use domain::schema::{event_schema, event_schemas};
use domain::session::Session;
use domain::settings::TenantSettings;
use domain::stock::Stock;
use domain::upcast::{current_version, reread, upcast};
use domain::user::User;
use domain::{
    CategoryPath, CountryCode, Currency, Description, Email, Money, Name, Phone, Price, PromotionCode, Quantity, QuantityDelta, Sku,
    TenantId, UserId,
};

// ---------------------------------------------------------------------------------------------
// Schemas

/// One aggregate type's events as JSON Schema, in both contracts.
struct Contract {
    aggregate_type: &'static str,
    /// `schema_for!` of its event enum (the deserialise contract): what readers accept.
    read: Schema,
    /// The same enum for serialising: what writers write.
    written: Schema,
}

fn contract<A: Aggregate>() -> Contract
where
    A::Event: JsonSchema,
{
    Contract {
        aggregate_type: A::TYPE,
        read: schema_for!(A::Event),
        written: SchemaSettings::draft2020_12().for_serialize().into_generator().into_root_schema_for::<A::Event>(),
    }
}

/// Every aggregate type with its own `Aggregate::Event`, listed apart from
/// `domain::history` so that a name paired there with another aggregate's events shows.
fn contracts() -> Vec<Contract> {
    vec![
        contract::<User>(),
        contract::<AdminRoster>(),
        contract::<InvoiceBook>(),
        contract::<Order>(),
        contract::<EmailClaim>(),
        contract::<SkuClaim>(),
        contract::<Payment>(),
        contract::<TenantSettings>(),
        contract::<Session>(),
        contract::<Cart>(),
        contract::<CustomerCarts>(),
        contract::<Product>(),
        contract::<Stock>(),
        contract::<Promotion>(),
    ]
}

/// A validator that also checks formats (`uuid`, `date-time`), which JSON Schema only
/// annotates unless asked.
fn validator(schema: &Schema) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(schema.as_value())
        .unwrap_or_else(|e| panic!("not a usable schema: {e}\n{:#}", schema.as_value()))
}

/// Every error of `payload` against `validator`, one line each; empty when it is valid.
fn errors(validator: &jsonschema::Validator, payload: &Value) -> Vec<String> {
    validator.iter_errors(payload).map(|e| format!("{e} at {:?}", e.instance_path().as_str())).collect()
}

/// The branch of an event enum's root schema for `event_type`, with the root's `$defs`: its
/// errors name the field at fault, where the whole enum's `oneOf` only says no branch matched.
fn variant_schema(root: &Schema, event_type: &str) -> Option<Schema> {
    let root = root.as_value();
    let tag = json!(event_type);
    let branch = root["oneOf"].as_array()?.iter().find(|b| {
        b["required"] == json!([event_type]) || b["const"] == tag || b["enum"].as_array().is_some_and(|names| names.contains(&tag))
    })?;
    let mut schema = branch.clone();
    schema["$schema"] = root["$schema"].clone();
    if let Some(defs) = root.get("$defs") {
        schema["$defs"] = defs.clone();
    }
    Schema::try_from(schema).ok()
}

// ---------------------------------------------------------------------------------------------
// Fixtures

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join("events")
}

/// A fixture as stored, brought to the current shape.
struct Fixture {
    path: PathBuf,
    aggregate_type: String,
    event_type: String,
    /// The version after upcasting.
    version: String,
    payload: Value,
}

/// Every fixture under `domain/fixtures/events/<aggregate_type>/`, upcast.
fn fixtures() -> Vec<Fixture> {
    let root = fixtures_dir();
    let mut found = Vec::new();
    for dir in std::fs::read_dir(&root).unwrap_or_else(|e| panic!("cannot read {}: {e}", root.display())) {
        let dir = dir.expect("a directory entry").path();
        if !dir.is_dir() {
            continue; // README.md
        }
        for file in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display())) {
            let path = file.expect("a directory entry").path();
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let file: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not json: {e}", path.display()));
            let field = |name: &str| {
                file.get(name).and_then(Value::as_str).unwrap_or_else(|| panic!("{}: no string {name:?}", path.display())).to_owned()
            };
            let (aggregate_type, event_type, mut version) = (field("aggregate_type"), field("event_type"), field("event_version"));
            let mut payload = file.get("payload").cloned().unwrap_or_else(|| panic!("{}: no \"payload\"", path.display()));
            upcast(&aggregate_type, &event_type, &mut version, &mut payload);
            found.push(Fixture { path, aggregate_type, event_type, version, payload });
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    assert!(!found.is_empty(), "no fixtures under {}", root.display());
    found
}

/// The payload of the fixture `<aggregate_type>/<event_type>` at its current version.
fn current_payload(aggregate_type: &str, event_type: &str) -> Value {
    let version = current_version(aggregate_type, event_type);
    let path = fixtures_dir().join(aggregate_type).join(format!("{event_type}.v{version}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let file: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not json: {e}", path.display()));
    file["payload"].clone()
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn every_fixture_at_the_current_version_validates_against_its_aggregate_types_event_schema() {
    let contracts = contracts();
    let validators: Vec<_> = contracts.iter().map(|c| (c.aggregate_type, validator(&c.read), validator(&c.written))).collect();
    let (mut checked, mut failures) = (0, Vec::new());
    for f in fixtures() {
        // One that upcasting does not bring to the current version fails tests/fixtures.rs.
        if f.version != current_version(&f.aggregate_type, &f.event_type) {
            continue;
        }
        let (contract, read, written) = contracts
            .iter()
            .zip(&validators)
            .find(|(c, _)| c.aggregate_type == f.aggregate_type)
            .map(|(c, (_, read, written))| (c, read, written))
            .unwrap_or_else(|| panic!("{}: no event schema for aggregate type {:?}", f.path.display(), f.aggregate_type));
        for (name, schema, validator) in [("read", &contract.read, read), ("written", &contract.written, written)] {
            if validator.is_valid(&f.payload) {
                continue;
            }
            // The variant's own errors where there is such a branch, else the enum's.
            let variant = variant_schema(schema, &f.event_type).map(|s| errors(&self::validator(&s), &f.payload));
            let found = variant.filter(|e| !e.is_empty()).unwrap_or_else(|| errors(validator, &f.payload));
            failures.extend(found.into_iter().map(|e| format!("{} ({name}): {e}", f.path.display())));
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "fixtures that their event schema rejects:\n{}", failures.join("\n"));
    assert!(checked >= contracts.len(), "only {checked} fixtures checked");
}

#[test]
fn every_event_schema_is_a_valid_json_schema() {
    for (aggregate_type, schema) in event_schemas() {
        if let Err(e) = jsonschema::meta::validate(schema.as_value()) {
            panic!("{aggregate_type}: not a valid JSON Schema: {e}");
        }
        assert_eq!(
            schema.as_value()["$schema"],
            json!("https://json-schema.org/draft/2020-12/schema"),
            "{aggregate_type}: the schemas are draft 2020-12"
        );
    }
}

#[test]
fn event_schemas_and_for_type_know_the_same_aggregate_types_each_with_its_own_events() {
    struct TypeName;
    impl ForAggregate for TypeName {
        type Out = &'static str;
        fn run<A: Aggregate>(self) -> Self::Out {
            A::TYPE
        }
    }

    let listed: BTreeSet<&str> = AGGREGATE_TYPES.iter().copied().collect();
    assert_eq!(listed.len(), AGGREGATE_TYPES.len(), "an aggregate type is listed twice");
    let with_schemas: Vec<&str> = event_schemas().into_iter().map(|(t, _)| t).collect();
    assert_eq!(with_schemas, AGGREGATE_TYPES, "event_schemas() covers AGGREGATE_TYPES in order");
    for t in AGGREGATE_TYPES {
        assert_eq!(for_type(t, TypeName), Some(*t), "for_type does not know {t:?}, or runs another aggregate for it");
    }
    assert!(for_type("no_such_type", TypeName).is_none() && event_schema("no_such_type").is_none());

    // Each name's schema is its own aggregate's `Aggregate::Event`'s.
    let contracts = contracts();
    let known: BTreeSet<&str> = contracts.iter().map(|c| c.aggregate_type).collect();
    assert_eq!(known, listed, "tests/schemas.rs lists other aggregate types than domain::history::AGGREGATE_TYPES");
    for c in &contracts {
        assert_eq!(event_schema(c.aggregate_type).as_ref(), Some(&c.read), "{}: not the schema of its own events", c.aggregate_type);
    }

    // Every aggregate type has fixtures, and every fixture's directory is a known type.
    let with_fixtures: BTreeSet<String> = fixtures().into_iter().map(|f| f.aggregate_type).collect();
    let listed_owned: BTreeSet<String> = listed.iter().map(|t| (*t).to_owned()).collect();
    assert_eq!(with_fixtures, listed_owned, "the fixtures' aggregate types are not AGGREGATE_TYPES");
}

/// Changes `payload` at a JSON pointer: sets the value there, or removes it (`None`).
fn changed(payload: &Value, pointer: &str, to: Option<Value>) -> Value {
    let mut payload = payload.clone();
    match to {
        Some(value) => *payload.pointer_mut(pointer).unwrap_or_else(|| panic!("no {pointer} in the fixture")) = value,
        None => {
            let (parent, key) = pointer.rsplit_once('/').expect("a pointer below the root");
            let removed = payload.pointer_mut(parent).and_then(Value::as_object_mut).and_then(|o| o.remove(key));
            assert!(removed.is_some(), "no {pointer} in the fixture");
        }
    }
    payload
}

#[test]
fn a_payload_with_a_field_of_another_type_or_shape_fails_validation_as_serde_fails_to_read_it() {
    let contracts = contracts();
    let validators = |t: &str| {
        let c = contracts.iter().find(|c| c.aggregate_type == t).expect("a known aggregate type");
        (validator(&c.read), validator(&c.written))
    };
    let placed = current_payload("order", "placed");
    let price_changed = current_payload("product", "price_changed");
    let cases: Vec<(&str, &str, Value)> = vec![
        ("an amount as a string", "order", changed(&placed, "/placed/subtotal/amount", Some(json!("5248")))),
        ("a fractional amount", "order", changed(&placed, "/placed/total/amount", Some(json!(61.15)))),
        ("lines as an object", "order", changed(&placed, "/placed/lines", Some(json!({})))),
        ("a tenant as a number", "order", changed(&placed, "/placed/tenant", Some(json!(42)))),
        ("a tenant with upper case", "order", changed(&placed, "/placed/tenant", Some(json!("Acme")))),
        ("an id that is no uuid", "order", changed(&placed, "/placed/customer", Some(json!("ada")))),
        ("a sku with a space", "order", changed(&placed, "/placed/lines/0/sku", Some(json!("TSHIRT BLK")))),
        ("a three-letter country", "order", changed(&placed, "/placed/shipping_address/country", Some(json!("DEU")))),
        ("a currency of four letters", "order", changed(&placed, "/placed/tax/currency", Some(json!("EURO")))),
        ("a missing total", "order", changed(&placed, "/placed/total", None)),
        ("a missing line sku", "order", changed(&placed, "/placed/lines/1/sku", None)),
        ("an unknown event", "order", json!({ "teleported": {} })),
        ("an unknown unit event", "order", json!("teleported")),
        ("two events in one", "order", json!({ "placed": placed["placed"].clone(), "confirmed": {} })),
        ("a negative price", "product", changed(&price_changed, "/price_changed/price/amount", Some(json!(-1)))),
        ("a price as a number", "product", changed(&price_changed, "/price_changed/previous", Some(json!(1999)))),
    ];
    for (what, aggregate_type, payload) in cases {
        let (read, written) = validators(aggregate_type);
        assert!(!read.is_valid(&payload), "{aggregate_type}: {what} validates against the schema:\n{payload:#}");
        assert!(!written.is_valid(&payload), "{aggregate_type}: {what} validates against the schema for writing:\n{payload:#}");
        assert!(reread(aggregate_type, &payload).is_err(), "{aggregate_type}: serde reads {what}, which the schema rejects");
    }
}

#[test]
fn a_field_with_a_serde_default_may_be_absent_for_readers_but_is_written() {
    let contracts = contracts();
    let validators = |t: &str| {
        let c = contracts.iter().find(|c| c.aggregate_type == t).expect("a known aggregate type");
        (validator(&c.read), validator(&c.written))
    };
    let placed = current_payload("order", "placed");
    let started = current_payload("session", "started");
    let (order_read, order_written) = validators("order");
    let (session_read, session_written) = validators("session");

    // `#[serde(default, skip_serializing_if = ...)]`: absent for both.
    let no_discount = changed(&placed, "/placed/discount", None);
    assert!(order_read.is_valid(&no_discount) && order_written.is_valid(&no_discount));
    assert!(reread("order", &no_discount).is_ok());

    // `#[serde(default)]` alone: readers take it absent, but serde always writes it.
    for (aggregate_type, payload, read, written) in [
        ("order", changed(&placed, "/placed/shipping_address/line2", None), &order_read, &order_written),
        ("session", changed(&started, "/started/epoch", None), &session_read, &session_written),
    ] {
        assert!(read.is_valid(&payload), "{aggregate_type}: {:?}", errors(read, &payload));
        assert!(!written.is_valid(&payload), "{aggregate_type}: a field serde always writes may not be absent for writers");
        assert!(reread(aggregate_type, &payload).is_ok(), "{aggregate_type}: serde reads it without the field");
    }

    // A field without a default is required for both.
    let no_tenant = changed(&started, "/started/tenant", None);
    assert!(!session_read.is_valid(&no_tenant) && !session_written.is_valid(&no_tenant));
}

/// A string newtype's schema accepts what its parser makes of each of `written` (the normalised
/// value serde writes) and rejects each of `refused`, which the parser refuses.
fn string_schema_agrees<T: JsonSchema + FromStr + Display>(written: &[&str], refused: &[&str]) {
    let name = T::schema_name();
    let validator = validator(&schema_for!(T));
    for raw in written {
        let value = raw.parse::<T>().unwrap_or_else(|_| panic!("{name}: {raw:?} is a valid value")).to_string();
        assert!(validator.is_valid(&json!(value)), "{name}: the schema rejects {value:?}: {:?}", errors(&validator, &json!(value)));
    }
    for raw in refused {
        assert!(raw.parse::<T>().is_err(), "{name}: the parser takes {raw:?}");
        assert!(!validator.is_valid(&json!(raw)), "{name}: the schema accepts {raw:?}, which the parser refuses");
    }
}

#[test]
fn string_schemas_accept_what_the_parsers_write_and_reject_what_they_refuse() {
    string_schema_agrees::<UserId>(
        &["01924a7e-3c00-7000-8000-000000000001", "{01924A7E-3C00-7000-8000-000000000001}", "01924a7e3c0070008000000000000001"],
        &["", "ada", "01924a7e-3c00-7000-8000-00000000000"],
    );
    string_schema_agrees::<TenantId>(&["acme", "acme-1", "0", &"a".repeat(63)], &["", "Acme", "-x", "a:b", "a b", &"a".repeat(64)]);
    // The schema asks for three upper-case letters, not for a code ISO 4217 lists (`EUX`).
    string_schema_agrees::<Currency>(&["EUR", "eur", "JPY"], &["", "EU", "EURO", "E1R"]);
    string_schema_agrees::<Email>(
        &["ada@example.com", " Ada.Lovelace@Example.COM ", "a+b@mail.example.co.uk"],
        &["", "ada", "ada@", "@example.com", "ada@example", "a da@example.com", "a@b@c.com", "ada@.example.com", "ada@example..com"],
    );
    string_schema_agrees::<Sku>(&["TSHIRT-BLK-M", "ab-1", "A.B_C", &"X".repeat(64)], &["", "AB 1", "AB:1", "Ä", &"X".repeat(65)]);
    string_schema_agrees::<CategoryPath>(
        &["electronics", "/Electronics/phones/", "a/b/c/d/e/f/g/h", "t-shirts"],
        &["", "a//b", "a b", "a_b", "a/b/c/d/e/f/g/h/i", &"a".repeat(65)],
    );
    string_schema_agrees::<Name>(
        &["Ada", "  Ada Lovelace ", "Friedrichstraße 123", "T-shirt, black, M", "a\u{2028}b", &"n".repeat(200)],
        &["", "   ", "a\u{7}b", "a\nb", "\u{85}", &"n".repeat(201)],
    );
    string_schema_agrees::<Description>(&["", "Organic cotton.\nMade in Portugal.", &"d".repeat(10_000)], &[&"d".repeat(10_001)]);
    string_schema_agrees::<PromotionCode>(
        &["SUMMER-10", "summer_10", "ABC", &"C".repeat(32)],
        &["", "AB", "SUMMER 10", "€10", &"C".repeat(33)],
    );
    string_schema_agrees::<Phone>(
        &["+4915112345678", "+49 151 1234-5678", "+1 (415) 555.0100", "+2901234", "+123456789012345"],
        &["", "+", "015112345678", "+0151123456", "+123456", "+1234567890123456", "++4915112345678"],
    );
    string_schema_agrees::<CountryCode>(&["DE", "de", " fr "], &["", "D", "DEU", "D1", "Germany"]);
}

#[test]
fn number_schemas_accept_what_the_types_take_and_reject_what_they_refuse() {
    let quantity = validator(&schema_for!(Quantity));
    for n in [1, 2, Quantity::MAX] {
        assert!(Quantity::try_from(n).is_ok() && quantity.is_valid(&json!(n)), "quantity {n}");
    }
    for n in [i64::MIN, -1, 0, Quantity::MAX + 1] {
        assert!(Quantity::try_from(n).is_err() && !quantity.is_valid(&json!(n)), "quantity {n}");
    }
    assert!(!quantity.is_valid(&json!(1.5)) && !quantity.is_valid(&json!("1")));

    let delta = validator(&schema_for!(QuantityDelta));
    for n in [-Quantity::MAX, -1, 1, Quantity::MAX] {
        assert!(QuantityDelta::try_from(n).is_ok() && delta.is_valid(&json!(n)), "delta {n}");
    }
    for n in [-Quantity::MAX - 1, 0, Quantity::MAX + 1] {
        assert!(QuantityDelta::try_from(n).is_err() && !delta.is_valid(&json!(n)), "delta {n}");
    }

    let price = validator(&schema_for!(Price));
    let eur: Currency = "EUR".parse().expect("valid");
    for amount in [0, 1999] {
        let written = serde_json::to_value(Price::try_from(Money::new(amount, eur)).expect("not negative")).expect("serialises");
        assert!(price.is_valid(&written), "price {written}: {:?}", errors(&price, &written));
    }
    let negative = json!({ "amount": -1, "currency": "EUR" });
    assert!(serde_json::from_value::<Price>(negative.clone()).is_err() && !price.is_valid(&negative));
    assert!(validator(&schema_for!(Money)).is_valid(&negative), "money may be negative");
}
