use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{CountryCode, Money, Name, OrderId, PaymentId, Price, PromotionCode, Quantity, Sku, TenantId, UserId};

/// One line as placed: the unit price is the catalogue's at placement, recorded for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderLine {
    pub sku: Sku,
    pub quantity: i64,
    pub unit_price: Money,
    /// The product's name at placement (for the invoice); absent in orders placed before it
    /// was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Name>,
}

/// A line as the customer asks for it, priced by the command side.
#[derive(Debug, Clone, PartialEq)]
pub struct PricedLine {
    pub sku: Sku,
    pub quantity: Quantity,
    pub unit_price: Price,
    pub name: Option<Name>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ShippingAddress {
    pub name: Name,
    pub line1: Name,
    /// A second line (flat, floor, c/o); since `order.placed` version 2.
    #[serde(default)]
    pub line2: Option<Name>,
    pub city: Name,
    /// State, province or county, where the country uses one; since version 2.
    #[serde(default)]
    pub region: Option<Name>,
    pub postal_code: Name,
    pub country: CountryCode,
}

/// A discount code's reduction, as redeemed for the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderDiscount {
    pub code: PromotionCode,
    pub amount: Money,
}

/// Why an order was cancelled: the codes the saga and customers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    OutOfStock,
    PaymentDeclined,
    PaymentTimeout,
    ReservationExpired,
    CancelledByCustomer,
}

#[derive(Debug, Clone, PartialEq)]
pub enum OrderCommand {
    /// `tax_rate_bp`: the tenant's tax rate in basis points (2000 = 20%), applied to the
    /// subtotal and rounded half up to the minor unit.
    Place {
        tenant: TenantId,
        order_id: OrderId,
        customer: UserId,
        lines: Vec<PricedLine>,
        /// A redeemed discount code (checkout commits its redemption in the same write).
        discount: Option<OrderDiscount>,
        tax_rate_bp: u32,
        shipping: Money,
        shipping_address: ShippingAddress,
        payment_method: String,
    },
    /// Every line is held until `expires_at`; unpaid by then, the saga cancels the order.
    MarkStockReserved {
        expires_at: DateTime<Utc>,
    },
    RejectStock {
        sku: Sku,
    },
    MarkPaymentAuthorised {
        payment_id: PaymentId,
    },
    /// The payment is authorised and nothing else stands in the way: `PaymentAuthorised` and
    /// `Confirmed` in one append (the saga's step after the gateway's yes).
    ConfirmPaid {
        payment_id: PaymentId,
    },
    FailPayment {
        reason: CancelReason,
    },
    Confirm,
    Cancel {
        reason: CancelReason,
    },
    Ship {
        carrier: Name,
        tracking_number: Name,
    },
    Deliver,
    /// Records money given back (the payment refund itself is the payment's business).
    Refund {
        amount: Money,
    },
    /// Gives the captured order its invoice number (committed with the tenant's
    /// [`super::InvoiceBook`] entry, so numbers have no gaps).
    AssignInvoice {
        number: u64,
    },
    /// The committed units of a cancelled, invoiced order went back on the shelf.
    MarkRestocked,
    /// The held units of a cancelled order were given back (written with the releases).
    MarkReleased,
}
