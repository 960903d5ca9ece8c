use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::promotion::{PromotionError, Terms};
use crate::user::TokenHash;
use crate::{CartId, OrderId, Price, PromotionCode, Quantity, Sku, TenantId, UserId};

/// What the catalogue says of one SKU now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Published, live and priced; `available` units are in stock (held by nothing).
    Priced { unit_price: Price, available: i64 },
    /// Not for sale (unknown, unpublished, discontinued).
    Unavailable,
}

/// The catalogue and the cart's discount code as they are at `at`: every change to a cart
/// carries one, and the cart reprices itself from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Pricing {
    /// An offer for every SKU of the cart (and the one being added); a SKU without one is
    /// unavailable.
    pub offers: BTreeMap<Sku, Offer>,
    /// The terms of the cart's code (or of the code being applied) for this shopper now.
    pub promotion: Option<Result<Terms, PromotionError>>,
    pub at: DateTime<Utc>,
}

impl Pricing {
    pub fn offer(&self, sku: &Sku) -> Offer {
        self.offers.get(sku).copied().unwrap_or(Offer::Unavailable)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum CartCommand {
    /// A guest cart has a `token_hash`, a customer's cart a `customer`.
    Create {
        tenant: TenantId,
        cart_id: CartId,
        customer: Option<UserId>,
        token_hash: Option<TokenHash>,
        at: DateTime<Utc>,
    },
    /// Adds units of a SKU (to its line, if the cart has one).
    AddLine {
        sku: Sku,
        quantity: Quantity,
        pricing: Pricing,
    },
    /// Sets a line's quantity (0 removes it).
    SetQuantity {
        sku: Sku,
        quantity: i64,
        pricing: Pricing,
    },
    /// Prices the lines and the code again (a read after the pricing's lifetime).
    Reprice {
        pricing: Pricing,
    },
    ApplyDiscount {
        code: PromotionCode,
        pricing: Pricing,
    },
    RemoveDiscount {
        pricing: Pricing,
    },
    /// Turns the cart into `order_id`; refused when its prices moved since it was shown.
    CheckOut {
        order_id: OrderId,
        pricing: Pricing,
    },
    /// The customer's cart takes in a guest cart's lines (quantities add), after sign-in.
    Absorb {
        from: CartId,
        lines: Vec<(Sku, i64)>,
        pricing: Pricing,
    },
    /// The guest cart was merged into `into`; it is closed.
    CloseMerged {
        into: CartId,
        at: DateTime<Utc>,
    },
    /// Abandoned: untouched since `cutoff` or before (the saga's deadline). Refused for a cart
    /// touched after `cutoff`, whose deadline moved.
    Expire {
        cutoff: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// A customer's cart untouched since `cutoff`: remind its customer, once per cart.
    Remind {
        cutoff: DateTime<Utc>,
        at: DateTime<Utc>,
    },
}
