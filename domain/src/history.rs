//! An aggregate's past: its state folded from its events up to any point, and every aggregate
//! type reachable by its stored name, so tools that know only a name (the history endpoints,
//! the fixture checks) run the same `apply` the aggregates run.

use cqrs_es::Aggregate;
use serde_json::Value;

use crate::admins::AdminRoster;
use crate::cart::{Cart, CustomerCarts};
use crate::claim::{EmailClaim, SkuClaim};
use crate::order::{InvoiceBook, Order};
use crate::payment::Payment;
use crate::product::Product;
use crate::promotion::Promotion;
use crate::session::Session;
use crate::settings::TenantSettings;
use crate::stock::Stock;
use crate::user::User;

/// Work on one aggregate type, chosen by its stored name ([`for_type`]).
pub trait ForAggregate {
    type Out;
    fn run<A: Aggregate>(self) -> Self::Out;
}

/// Runs `work` with the aggregate type stored as `aggregate_type`; `None` for an unknown name.
pub fn for_type<W: ForAggregate>(aggregate_type: &str, work: W) -> Option<W::Out> {
    Some(match aggregate_type {
        User::TYPE => work.run::<User>(),
        AdminRoster::TYPE => work.run::<AdminRoster>(),
        InvoiceBook::TYPE => work.run::<InvoiceBook>(),
        Order::TYPE => work.run::<Order>(),
        EmailClaim::TYPE => work.run::<EmailClaim>(),
        SkuClaim::TYPE => work.run::<SkuClaim>(),
        Payment::TYPE => work.run::<Payment>(),
        TenantSettings::TYPE => work.run::<TenantSettings>(),
        Session::TYPE => work.run::<Session>(),
        Cart::TYPE => work.run::<Cart>(),
        CustomerCarts::TYPE => work.run::<CustomerCarts>(),
        Product::TYPE => work.run::<Product>(),
        Stock::TYPE => work.run::<Stock>(),
        Promotion::TYPE => work.run::<Promotion>(),
        _ => return None,
    })
}

/// Every aggregate type's stored name: the names [`for_type`] and
/// [`crate::schema::event_schema`] know (`tests/schemas.rs` checks that all three agree, and
/// with the fixtures' directories).
pub const AGGREGATE_TYPES: &[&str] = &[
    User::TYPE,
    AdminRoster::TYPE,
    InvoiceBook::TYPE,
    Order::TYPE,
    EmailClaim::TYPE,
    SkuClaim::TYPE,
    Payment::TYPE,
    TenantSettings::TYPE,
    Session::TYPE,
    Cart::TYPE,
    CustomerCarts::TYPE,
    Product::TYPE,
    Stock::TYPE,
    Promotion::TYPE,
];

/// The state of an aggregate of `aggregate_type` after `events` (payloads in the current
/// shape, in stream order), starting from `from` (a snapshot's state) or from nothing; as
/// JSON, the way snapshots store it.
pub fn fold<'a>(aggregate_type: &str, from: Option<&Value>, events: impl IntoIterator<Item = &'a Value>) -> Result<Value, String> {
    struct Fold<'v, I>(Option<&'v Value>, I);
    impl<'a, I: Iterator<Item = &'a Value>> ForAggregate for Fold<'_, I> {
        type Out = Result<Value, String>;
        fn run<A: Aggregate>(self) -> Self::Out {
            let Fold(from, events) = self;
            let mut state = match from {
                Some(v) => serde_json::from_value::<A>(v.clone()).map_err(|e| format!("snapshot: {e}"))?,
                None => A::default(),
            };
            for (i, payload) in events.enumerate() {
                let event: A::Event = serde_json::from_value(payload.clone()).map_err(|e| format!("event {}: {e}", i + 1))?;
                state.apply(event);
            }
            serde_json::to_value(&state).map_err(|e| e.to_string())
        }
    }
    for_type(aggregate_type, Fold(from, events.into_iter())).unwrap_or_else(|| Err(format!("no aggregate type {aggregate_type:?}")))
}
