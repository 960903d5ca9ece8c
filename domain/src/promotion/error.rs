use crate::Money;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PromotionError {
    #[error("no such discount code")]
    NotFound,
    #[error("the discount code exists already")]
    AlreadyExists,
    #[error("a percentage is 1 to 10000 basis points, an amount is positive, and a window ends after it starts")]
    InvalidTerms,
    #[error("the discount code is no longer active")]
    Inactive,
    #[error("the discount code is not valid yet")]
    NotStarted,
    #[error("the discount code has ended")]
    Ended,
    #[error("the discount code needs a subtotal of at least {minimum}")]
    BelowMinimum { minimum: Money },
    #[error("the discount code is for another currency")]
    OtherCurrency,
    #[error("the discount code has been used as often as it may be")]
    Exhausted,
    #[error("the discount code has been used as often as one customer may use it")]
    CustomerLimitReached,
}

impl PromotionError {
    /// A short reason code for clients (`minimum_not_met`, `ended`, ...).
    pub fn reason(&self) -> &'static str {
        match self {
            PromotionError::NotFound => "not_found",
            PromotionError::AlreadyExists => "already_exists",
            PromotionError::InvalidTerms => "invalid_terms",
            PromotionError::Inactive => "inactive",
            PromotionError::NotStarted => "not_started",
            PromotionError::Ended => "ended",
            PromotionError::BelowMinimum { .. } => "minimum_not_met",
            PromotionError::OtherCurrency => "other_currency",
            PromotionError::Exhausted => "exhausted",
            PromotionError::CustomerLimitReached => "customer_limit_reached",
        }
    }
}
