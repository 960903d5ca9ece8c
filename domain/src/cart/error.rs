use crate::{Currency, Sku};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CartError {
    #[error("no such cart")]
    NotFound,
    #[error("the cart exists already")]
    AlreadyExists,
    #[error("the cart is closed (checked out, merged or expired)")]
    Closed,
    #[error("a cart has at most 100 lines")]
    TooManyLines,
    #[error("a line has 1 to 1000 units")]
    InvalidQuantity,
    #[error("the cart has no line for {0}")]
    NoSuchLine(Sku),
    #[error("{0} is not for sale")]
    ProductUnavailable(Sku),
    #[error("only {available} units of {sku} are available")]
    InsufficientStock { sku: Sku, available: i64 },
    #[error("every line of a cart is priced in {expected}, not {found}")]
    MixedCurrencies { expected: Currency, found: Currency },
    #[error("the cart is empty")]
    Empty,
    #[error("the cart's prices or discount changed since it was shown")]
    Changed,
    #[error("the cart was touched after the deadline, or was reminded already")]
    NotDue,
    #[error("the cart has no discount code")]
    NoDiscount,
    #[error(transparent)]
    Promotion(crate::promotion::PromotionError),
}
