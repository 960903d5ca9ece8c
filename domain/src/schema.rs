//! The JSON Schema of every aggregate type's events, from the types serde writes them with: the
//! contract of the Kafka topics (their AsyncAPI document is built from [`event_schemas`]) and
//! of the store's payloads in their current shape ([`crate::upcast`]).
//!
//! Every event enum and every type in it derives or implements `schemars::JsonSchema`, and the
//! serde attributes (`rename_all`, `tag`, `default`, `skip_serializing_if`, `flatten`) shape
//! the derived schemas. Newtypes that serde writes as strings or numbers are string or integer
//! schemas with what their parsers check, where JSON Schema can say it (a `uuid` format for ids,
//! `^[A-Z]{3}$` for currencies, an E.164 pattern for phones, bounds for quantities); each type's
//! doc comment is its description. `tests/schemas.rs` validates every fixture against them.

use cqrs_es::Aggregate;
use schemars::{schema_for, Schema};

use crate::admins::{AdminRoster, AdminRosterEvent};
use crate::cart::{Cart, CartEvent, CustomerCarts, CustomerCartsEvent};
use crate::claim::{ClaimEvent, EmailClaim, EmailKind, SkuClaim, SkuKind};
use crate::history::AGGREGATE_TYPES;
use crate::order::{InvoiceBook, InvoiceEvent, Order, OrderEvent};
use crate::payment::{Payment, PaymentEvent};
use crate::product::{Product, ProductEvent};
use crate::promotion::{Promotion, PromotionEvent};
use crate::session::{Session, SessionEvent};
use crate::settings::{SettingsEvent, TenantSettings};
use crate::stock::{Stock, StockEvent};
use crate::user::{User, UserEvent};

/// The root JSON Schema (draft 2020-12, its `$defs` inside) of the events of the aggregate type
/// stored as `aggregate_type`; `None` for an unknown name. It describes a payload as the store
/// keeps it and the topics carry it, in the current shape: externally tagged
/// (`{"placed": {...}}`, a bare `"confirmed"` for a variant without fields).
///
/// A match of its own next to [`crate::history::for_type`]'s rather than a
/// [`crate::history::ForAggregate`] visitor: cqrs-es does not ask an `Aggregate::Event` for
/// `JsonSchema`.
pub fn event_schema(aggregate_type: &str) -> Option<Schema> {
    Some(match aggregate_type {
        User::TYPE => schema_for!(UserEvent),
        AdminRoster::TYPE => schema_for!(AdminRosterEvent),
        InvoiceBook::TYPE => schema_for!(InvoiceEvent),
        Order::TYPE => schema_for!(OrderEvent),
        EmailClaim::TYPE => schema_for!(ClaimEvent<EmailKind>),
        SkuClaim::TYPE => schema_for!(ClaimEvent<SkuKind>),
        Payment::TYPE => schema_for!(PaymentEvent),
        TenantSettings::TYPE => schema_for!(SettingsEvent),
        Session::TYPE => schema_for!(SessionEvent),
        Cart::TYPE => schema_for!(CartEvent),
        CustomerCarts::TYPE => schema_for!(CustomerCartsEvent),
        Product::TYPE => schema_for!(ProductEvent),
        Stock::TYPE => schema_for!(StockEvent),
        Promotion::TYPE => schema_for!(PromotionEvent),
        _ => return None,
    })
}

/// Every aggregate type ([`AGGREGATE_TYPES`], in its order) with the root schema of its events
/// ([`event_schema`]).
pub fn event_schemas() -> Vec<(&'static str, Schema)> {
    AGGREGATE_TYPES.iter().map(|&t| (t, event_schema(t).unwrap_or_else(|| panic!("no event schema for {t:?}")))).collect()
}

/// The variants of an event enum, from its root schema ([`event_schema`]): each variant's name
/// (the stored event type, its serde tag) and the schema of its fields, `None` for a variant
/// without fields (stored as a bare string). Every variant the enum has is here, so a reader of
/// this list cannot forget one.
pub fn variants(enum_schema: &serde_json::Value) -> Vec<(String, Option<serde_json::Value>)> {
    let alternatives = enum_schema
        .get("oneOf")
        .or_else(|| enum_schema.get("anyOf"))
        .and_then(serde_json::Value::as_array)
        .map_or_else(|| vec![enum_schema], |a| a.iter().collect());
    let mut out = Vec::new();
    for variant in alternatives {
        let bare: Vec<&serde_json::Value> =
            variant.get("enum").and_then(serde_json::Value::as_array).map(|n| n.iter().collect()).unwrap_or_default();
        let constant = variant.get("const");
        for name in bare.into_iter().chain(constant).filter_map(serde_json::Value::as_str) {
            out.push((name.to_owned(), None));
        }
        if let Some(serde_json::Value::Object(properties)) = variant.get("properties") {
            out.extend(properties.iter().map(|(name, fields)| (name.clone(), Some(fields.clone()))));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
