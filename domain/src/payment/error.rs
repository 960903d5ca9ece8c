use super::PaymentStatus;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PaymentError {
    #[error("no such payment")]
    NotFound,
    #[error("this payment was already requested with other figures")]
    AlreadyRequested,
    #[error("an amount must be positive and in the payment's currency")]
    InvalidAmount,
    #[error("{action} is not possible when the payment is {from:?}")]
    IllegalTransition { from: PaymentStatus, action: &'static str },
    #[error("a refund of {requested} would exceed the {refundable} still refundable")]
    RefundTooLarge { requested: i64, refundable: i64 },
    #[error("no such refund")]
    UnknownRefund,
}
