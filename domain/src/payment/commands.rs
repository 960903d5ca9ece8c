use crate::{Money, OrderId, TenantId, UserId};

use super::FailureReason;

#[derive(Debug, Clone, PartialEq)]
pub enum PaymentCommand {
    /// Record that an authorisation of `amount` is about to be asked of the gateway. Asking
    /// again with the same figures changes nothing (a re-delivered saga step).
    RequestAuthorisation { tenant: TenantId, order_id: OrderId, customer: UserId, amount: Money, method: String },
    /// The gateway approved the authorisation under its `reference`.
    RecordAuthorised { reference: String },
    /// The gateway declined the authorisation or did not answer in time.
    RecordFailed { reason: FailureReason },
    /// The authorised amount was taken.
    RecordCaptured,
    /// The gateway refused to capture an authorised payment.
    RecordCaptureFailed,
    /// The authorisation was released without taking money.
    RecordVoided,
    /// Hold `amount` of the captured money for refund `refund_id` before the gateway is asked;
    /// asking again for the same refund id changes nothing.
    RequestRefund { refund_id: String, amount: Money },
    /// The gateway paid refund `refund_id` back.
    RecordRefunded { refund_id: String },
}
