use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{CancelReason, OrderDiscount, OrderLine, ShippingAddress};
use crate::{Money, Name, OrderId, PaymentId, Sku, TenantId, UserId};

/// Every event carries what a view needs, so none recomputes prices or totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderEvent {
    Placed {
        tenant: TenantId,
        order_id: OrderId,
        customer: UserId,
        lines: Vec<OrderLine>,
        subtotal: Money,
        tax: Money,
        shipping: Money,
        total: Money,
        shipping_address: ShippingAddress,
        payment_method: String,
        /// The discount code redeemed for it; `subtotal - discount` is what tax is on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        discount: Option<OrderDiscount>,
        /// The tax rate applied, in basis points (absent in orders placed before it was
        /// recorded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tax_rate_bp: Option<u32>,
    },
    StockReserved {
        expires_at: DateTime<Utc>,
    },
    StockRejected {
        sku: Sku,
    },
    PaymentAuthorised {
        payment_id: PaymentId,
    },
    PaymentFailed {
        reason: CancelReason,
    },
    Confirmed,
    Cancelled {
        reason: CancelReason,
    },
    Shipped {
        carrier: Name,
        tracking_number: Name,
    },
    Delivered,
    Refunded {
        amount: Money,
        refunded_total: Money,
    },
    Invoiced {
        number: u64,
    },
    Restocked,
    StockReleased,
}

impl DomainEvent for OrderEvent {
    fn event_type(&self) -> String {
        match self {
            OrderEvent::Placed { .. } => "placed",
            OrderEvent::StockReserved { .. } => "stock_reserved",
            OrderEvent::StockRejected { .. } => "stock_rejected",
            OrderEvent::PaymentAuthorised { .. } => "payment_authorised",
            OrderEvent::PaymentFailed { .. } => "payment_failed",
            OrderEvent::Confirmed => "confirmed",
            OrderEvent::Cancelled { .. } => "cancelled",
            OrderEvent::Shipped { .. } => "shipped",
            OrderEvent::Delivered => "delivered",
            OrderEvent::Refunded { .. } => "refunded",
            OrderEvent::Invoiced { .. } => "invoiced",
            OrderEvent::Restocked => "restocked",
            OrderEvent::StockReleased => "stock_released",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        crate::upcast::current_version("order", &self.event_type()).to_owned()
    }
}
