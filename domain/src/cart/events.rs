use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::PriceSource;
use crate::user::TokenHash;
use crate::{CartId, Money, OrderId, PromotionCode, Sku, TenantId, UserId};

/// A line as merged into another cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MergedLine {
    pub sku: Sku,
    /// Units added to the line.
    pub quantity: i64,
    /// The line's units after the merge.
    pub line_quantity: i64,
    pub unit_price: Money,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CartEvent {
    /// `token_hash` (guests only) is never published.
    Created {
        tenant: TenantId,
        cart_id: CartId,
        customer: Option<UserId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_hash: Option<TokenHash>,
        at: DateTime<Utc>,
    },
    LineAdded {
        sku: Sku,
        quantity: i64,
        line_quantity: i64,
        unit_price: Money,
        source: PriceSource,
        at: DateTime<Utc>,
    },
    LineQuantityChanged {
        sku: Sku,
        line_quantity: i64,
        at: DateTime<Utc>,
    },
    LineRemoved {
        sku: Sku,
        at: DateTime<Utc>,
    },
    /// The catalogue price moved from `previous_unit_price`.
    LineRepriced {
        sku: Sku,
        previous_unit_price: Money,
        unit_price: Money,
        source: PriceSource,
    },
    /// The product is no longer for sale; the line stays until removed but blocks checkout.
    LineUnavailable {
        sku: Sku,
    },
    /// The code and what it takes off the cart's current subtotal.
    DiscountApplied {
        code: PromotionCode,
        amount: Money,
    },
    /// `reason`: `removed` by the shopper, or why the code no longer applies.
    DiscountRemoved {
        code: PromotionCode,
        reason: String,
    },
    /// Priced again with nothing else to record (a read after the pricing's lifetime).
    Priced {
        at: DateTime<Utc>,
    },
    CheckedOut {
        order_id: OrderId,
        total: Money,
        at: DateTime<Utc>,
    },
    /// On both carts: `from` (the guest's, now closed) went into `into` (the customer's), whose
    /// lines grew by `lines`.
    CartsMerged {
        from: CartId,
        into: CartId,
        lines: Vec<MergedLine>,
        at: DateTime<Utc>,
    },
    /// Abandoned: untouched for the cart lifetime; closed.
    Expired {
        at: DateTime<Utc>,
    },
    /// The customer is to be reminded of what the cart holds (the notifier mails those who
    /// take marketing mail).
    ReminderDue {
        customer: UserId,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for CartEvent {
    fn event_type(&self) -> String {
        match self {
            CartEvent::Created { .. } => "created",
            CartEvent::LineAdded { .. } => "line_added",
            CartEvent::LineQuantityChanged { .. } => "line_quantity_changed",
            CartEvent::LineRemoved { .. } => "line_removed",
            CartEvent::LineRepriced { .. } => "line_repriced",
            CartEvent::LineUnavailable { .. } => "line_unavailable",
            CartEvent::DiscountApplied { .. } => "discount_applied",
            CartEvent::DiscountRemoved { .. } => "discount_removed",
            CartEvent::Priced { .. } => "priced",
            CartEvent::CheckedOut { .. } => "checked_out",
            CartEvent::CartsMerged { .. } => "carts_merged",
            CartEvent::Expired { .. } => "expired",
            CartEvent::ReminderDue { .. } => "reminder_due",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
