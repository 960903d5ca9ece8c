use cqrs_es::DomainEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Money, OrderId, TenantId, UserId};

/// Why a payment could not be authorised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    Declined,
    Timeout,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentEvent {
    AuthorisationRequested { tenant: TenantId, order_id: OrderId, customer: UserId, amount: Money, method: String },
    Authorised { reference: String },
    Failed { reason: FailureReason },
    Captured { amount: Money },
    CaptureFailed,
    Voided,
    RefundRequested { refund_id: String, amount: Money },
    Refunded { refund_id: String, amount: Money, refunded_total: Money },
}

impl DomainEvent for PaymentEvent {
    fn event_type(&self) -> String {
        match self {
            PaymentEvent::AuthorisationRequested { .. } => "authorisation_requested",
            PaymentEvent::Authorised { .. } => "authorised",
            PaymentEvent::Failed { .. } => "failed",
            PaymentEvent::Captured { .. } => "captured",
            PaymentEvent::CaptureFailed => "capture_failed",
            PaymentEvent::Voided => "voided",
            PaymentEvent::RefundRequested { .. } => "refund_requested",
            PaymentEvent::Refunded { .. } => "refunded",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
