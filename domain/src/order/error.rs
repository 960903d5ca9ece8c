use super::Status;
use crate::Currency;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OrderError {
    #[error("the order was already placed")]
    AlreadyPlaced,
    #[error("no such order")]
    NotFound,
    #[error("an order needs at least one line")]
    NoLines,
    #[error("every price must be in {expected}, found {found}")]
    MixedCurrencies { expected: Currency, found: Currency },
    #[error("the order total does not fit in the money range")]
    TooLarge,
    #[error("{action} is not possible when the order is {from:?}")]
    IllegalTransition { from: Status, action: &'static str },
    #[error("a refund of {requested} would exceed the {refundable} still refundable")]
    RefundTooLarge { requested: i64, refundable: i64 },
    #[error("a refund must be positive and in the order's currency")]
    InvalidRefund,
    #[error("a discount must be positive, in the order's currency and at most its subtotal")]
    InvalidDiscount,
    #[error("the order already has invoice number {0}")]
    AlreadyInvoiced(u64),
}
