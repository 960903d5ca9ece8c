use chrono::{DateTime, Utc};

use super::Terms;
use crate::{Money, OrderId, PromotionCode, TenantId, UserId};

#[derive(Debug, Clone, PartialEq)]
pub enum PromotionCommand {
    Create {
        tenant: TenantId,
        code: PromotionCode,
        terms: Terms,
        /// Redemptions in all; unlimited when `None`.
        usage_limit: Option<u32>,
        /// Redemptions per customer; unlimited when `None`.
        per_customer_limit: Option<u32>,
    },
    Deactivate,
    /// Takes one use for `order_id`, checking every term and limit at `at`.
    Redeem {
        order_id: OrderId,
        customer: UserId,
        subtotal: Money,
        at: DateTime<Utc>,
    },
    /// The order was cancelled: its use is given back (nothing happens when it holds none).
    Release {
        order_id: OrderId,
    },
}
