//! The shop's business rules: aggregates, their commands, events and errors, with no I/O.
//!
//! Every aggregate follows the cqrs-es 0.5 shape: rules live only in `handle`, `apply` only
//! mutates state, and every event is past tense and carries the values views need.
//!
//! # Layout
//! - [`common`]: typed ids, tenants, money, e-mail addresses, SKUs, category paths, stream ids.
//! - [`user`]: registration, profile, passwords and resets, roles, deactivation.
//! - [`claim`]: `EmailClaim` and `SkuClaim`, which make natural keys unique per tenant through
//!   the event store's key on (type, id, sequence) instead of a read-then-write check.
//! - [`product`]: the catalogue entry: details, price, publication, discontinuation.
//! - [`stock`]: one aggregate per SKU with on-hand quantity and reservations per order.
//! - [`session`]: refresh-token families with rotation and reuse detection.
//! - [`settings`]: the seller's own settings per tenant (legal name, address, VAT id,
//!   currency, tax rate, shipping terms).
//! - [`order`]: orders and their status machine; the per-tenant invoice book.
//! - [`cart`]: shopping carts (guest or customer), priced again at every change; a customer's
//!   current cart ([`cart::CustomerCarts`]).
//! - [`promotion`]: discount codes with their terms, usage limits and redemptions.
//! - [`payment`]: authorisation, capture, void, refunds; the `PaymentGateway` service and its
//!   simulated provider.
//!
//! - [`personal`]: which event fields are personal data, whose, and what they read as once
//!   erased (sealed by the store with the owner's key).
//! - [`history`]: an aggregate's state folded up to any point; every aggregate type by name.
//! - [`schema`]: the JSON Schema of every aggregate type's events, the Kafka topics' contract
//!   (every event enum and every type in it implements `schemars::JsonSchema`).
//! - [`upcast`]: the versions of event shapes and the steps that bring old ones to the current
//!   shape, applied by the store to every event it reads.
//!
//! Each aggregate folder has the same files: `aggregate.rs`, `commands.rs`, `events.rs`,
//! `error.rs` and, where it calls out, `services.rs`.

/// The JSON Schema of a newtype serde writes as a bare string (`transparent`): a string named
/// and described (by the type's doc comments) as the type, plus any `"key": "value"` given (a
/// `format`). A derived one would be the inner type's, named after it and undescribed.
macro_rules! string_schema {
    ($name:ident, [$($doc:literal),*] $(, $key:literal : $value:literal)*) => {
        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn schema_id() -> std::borrow::Cow<'static, str> {
                concat!(module_path!(), "::", stringify!($name)).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", $($key: $value,)* "description": concat!($($doc, "\n"),*).trim() })
            }
        }
    };
}

pub mod admins;
pub mod cart;
pub mod claim;
pub mod common;
pub mod history;
pub mod order;
pub mod payment;
pub mod personal;
pub mod product;
pub mod promotion;
pub mod schema;
pub mod session;
pub mod settings;
pub mod stock;
pub mod upcast;
pub mod user;

pub use common::*;
