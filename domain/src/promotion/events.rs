use cqrs_es::DomainEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Terms;
use crate::{Money, OrderId, PromotionCode, TenantId, UserId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PromotionEvent {
    Created {
        tenant: TenantId,
        code: PromotionCode,
        #[serde(flatten)]
        terms: Terms,
        usage_limit: Option<u32>,
        per_customer_limit: Option<u32>,
    },
    Deactivated,
    /// `uses`: redemptions held after this one.
    Redeemed {
        order_id: OrderId,
        customer: UserId,
        discount: Money,
        uses: u32,
    },
    Released {
        order_id: OrderId,
        uses: u32,
    },
}

impl DomainEvent for PromotionEvent {
    fn event_type(&self) -> String {
        match self {
            PromotionEvent::Created { .. } => "created",
            PromotionEvent::Deactivated => "deactivated",
            PromotionEvent::Redeemed { .. } => "redeemed",
            PromotionEvent::Released { .. } => "released",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
