//! One error type for the whole API, rendered as RFC 9457 `application/problem+json` with a
//! stable machine-readable `code`. Each code maps to its status in exactly one place.

use axum::extract::rejection::JsonRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::admins::AdminRosterError;
use domain::cart::CartError;
use domain::claim::ClaimError;
use domain::order::OrderError;
use domain::payment::PaymentError;
use domain::product::ProductError;
use domain::promotion::PromotionError;
use domain::session::SessionError;
use domain::stock::StockError;
use domain::user::UserError;
use domain::InvalidValue;
use serde_json::{json, Map, Value};
use store::{ExecError, StoreError};

/// Declares [`ErrorCode`] with each code's status and wire name in one table.
macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident => $status:ident, $text:literal;)*) => {
        /// What went wrong, as clients may branch on it: a closed set, each with its status and
        /// its `code` string in the table below and nowhere else.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $name,)*
        }

        impl ErrorCode {
            /// Every code, in the order of the table (the OpenAPI document lists them).
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];

            pub fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$name => StatusCode::$status,)*
                }
            }

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $text,)*
                }
            }
        }
    };
}

codes! {
    /// The body is not JSON of the shape the route takes, or a header is malformed.
    MalformedBody => BAD_REQUEST, "malformed_body";
    /// The body is not declared as `application/json`.
    UnsupportedMediaType => UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type";
    /// A value is well-formed JSON but not acceptable (negative price, bad e-mail).
    InvalidValue => UNPROCESSABLE_ENTITY, "invalid_value";
    /// The `Idempotency-Key` was already used for a different request.
    IdempotencyKeyReused => UNPROCESSABLE_ENTITY, "idempotency_key_reused";
    /// The password-reset token is wrong, used or expired.
    InvalidResetToken => UNPROCESSABLE_ENTITY, "invalid_reset_token";
    /// No valid access token.
    Unauthenticated => UNAUTHORIZED, "unauthenticated";
    /// E-mail and password do not match an active user (the same answer either way).
    InvalidCredentials => UNAUTHORIZED, "invalid_credentials";
    /// The refresh token is unknown, expired or revoked.
    InvalidRefreshToken => UNAUTHORIZED, "invalid_refresh_token";
    /// A refresh token was used twice; its whole family is now revoked.
    RefreshTokenReused => UNAUTHORIZED, "refresh_token_reused";
    /// Authenticated, but the role does not allow this.
    Forbidden => FORBIDDEN, "forbidden";
    /// A browser-session request that did not come from the shop's own pages (another origin,
    /// or without the `X-Shop-Csrf` header).
    CrossSiteRequest => FORBIDDEN, "cross_site_request";
    /// No such resource in the caller's tenant.
    NotFound => NOT_FOUND, "not_found";
    /// The route exists but not with this method.
    MethodNotAllowed => METHOD_NOT_ALLOWED, "method_not_allowed";
    /// The e-mail address is already registered in this tenant.
    EmailTaken => CONFLICT, "email_taken";
    /// The SKU already exists in this tenant.
    SkuTaken => CONFLICT, "sku_taken";
    /// Concurrent writers kept winning; retry.
    VersionConflict => CONFLICT, "version_conflict";
    /// The request with this `Idempotency-Key` is still running.
    RequestInProgress => CONFLICT, "request_in_progress";
    /// The user is registered already.
    AlreadyRegistered => CONFLICT, "already_registered";
    /// The user is deactivated.
    UserDeactivated => CONFLICT, "user_deactivated";
    /// The user's personal data was erased; nothing more is done with the user.
    UserErased => GONE, "user_erased";
    /// The current password given is wrong.
    WrongPassword => CONFLICT, "wrong_password";
    /// A user keeps at least one role.
    NoRoles => CONFLICT, "no_roles";
    /// SMS was asked for without a phone number on the profile.
    NoPhone => CONFLICT, "no_phone";
    /// The last active admin of a tenant cannot be demoted or deactivated.
    LastAdmin => CONFLICT, "last_admin";
    /// The product exists already.
    AlreadyExists => CONFLICT, "already_exists";
    /// The product is discontinued.
    ProductDiscontinued => CONFLICT, "product_discontinued";
    /// The product is published already.
    AlreadyPublished => CONFLICT, "already_published";
    /// The product is not published.
    NotPublished => CONFLICT, "not_published";
    /// The order exists already.
    AlreadyPlaced => CONFLICT, "already_placed";
    /// An order's lines are priced in one currency.
    MixedCurrencies => CONFLICT, "mixed_currencies";
    /// The order or payment is in a status that does not allow the command.
    IllegalTransition => CONFLICT, "illegal_transition";
    /// The refund is larger than what was captured and not yet refunded.
    RefundTooLarge => CONFLICT, "refund_too_large";
    /// The order has its invoice already.
    AlreadyInvoiced => CONFLICT, "already_invoiced";
    /// The payment was requested already.
    AlreadyRequested => CONFLICT, "already_requested";
    /// Not enough units are available.
    InsufficientStock => CONFLICT, "insufficient_stock";
    /// An adjustment would leave fewer units on hand than are reserved.
    AdjustmentBelowReserved => CONFLICT, "adjustment_below_reserved";
    /// The cart is checked out or merged into another.
    CartClosed => CONFLICT, "cart_closed";
    /// The cart has no lines.
    CartEmpty => CONFLICT, "cart_empty";
    /// The cart's prices or discount moved since the version the client saw; the body's
    /// `cart` is the cart as it is now.
    CartChanged => CONFLICT, "cart_changed";
    /// The product is not for sale (unpublished, discontinued or unknown); `sku` names it.
    ProductUnavailable => CONFLICT, "product_unavailable";
    /// The discount code has been used as often as it may be.
    PromotionExhausted => CONFLICT, "promotion_exhausted";
    /// The discount code does not apply (see `reason`: inactive, not started, ended,
    /// minimum not met, another currency, the customer's limit reached).
    PromotionNotApplicable => CONFLICT, "promotion_not_applicable";
    /// A per-tenant limit is reached (webhook endpoints).
    LimitReached => CONFLICT, "limit_reached";
    /// A dead letter's events still fail when applied again.
    RetryFailed => CONFLICT, "retry_failed";
    /// `If-Match` names another version than the current one.
    PreconditionFailed => PRECONDITION_FAILED, "precondition_failed";
    /// Too many attempts; see `Retry-After`.
    RateLimited => TOO_MANY_REQUESTS, "rate_limited";
    /// A dependency (the store, the hashing pool) is unavailable; see `Retry-After`.
    Unavailable => SERVICE_UNAVAILABLE, "unavailable";
    /// The read model has not reached the `X-Min-Position` asked for within the bound.
    ProjectionBehind => SERVICE_UNAVAILABLE, "projection_behind";
    /// A fault of ours; details are only in the log.
    Internal => INTERNAL_SERVER_ERROR, "internal";
}

/// An error answer. Build one with [`ApiError::new`] or through a `From` conversion.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    /// Safe to show the client; never an internal error's text.
    pub detail: String,
    /// Extra problem members such as `field` or `current_version`.
    pub extra: Map<String, Value>,
    pub retry_after_secs: Option<u64>,
    /// What really happened, for the log only (internal errors and unavailable dependencies).
    pub cause: Option<String>,
}

/// The cause of an error answer, handed to the request middleware in the response's
/// extensions so that it is logged once, with the request's method and route.
#[derive(Debug, Clone)]
pub struct LoggedCause(pub String);

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self { code, detail: detail.into(), extra: Map::new(), retry_after_secs: None, cause: None }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// Keeps `cause` for the log (never for the client).
    pub fn caused_by(mut self, cause: impl std::fmt::Display) -> Self {
        self.cause = Some(cause.to_string());
        self
    }

    /// A fault of ours: answered with a generic body; its cause is logged once by the
    /// request middleware ([`crate::metrics::track`]).
    pub fn internal(error: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::Internal, "an internal error occurred").caused_by(error)
    }

    /// A dependency that cannot be reached right now: 503 `unavailable` with `Retry-After`.
    pub fn unavailable(what: &str, cause: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::Unavailable, format!("{what} is unavailable, retry shortly")).retry_after(1).caused_by(cause)
    }

    /// An operation that failed: 503 when a database on the way could not be reached (a
    /// restart, a network cut, a full pool), else a fault of ours (500).
    pub fn failure(error: impl std::error::Error + 'static) -> Self {
        if store::caused_by_unavailable_database(&error) {
            Self::unavailable("the database", error)
        } else {
            Self::internal(error)
        }
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// The problem document this error is rendered as.
    pub fn body(&self) -> Value {
        let status = self.code.status();
        let mut body = json!({
            "type": format!("urn:shop:problem:{}", self.code.as_str()),
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": self.detail,
            "code": self.code.as_str(),
        });
        if let Value::Object(map) = &mut body {
            map.extend(self.extra.clone());
        }
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.code.status(), self.body().to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.code.status() == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(cause) = self.cause {
            response.extensions_mut().insert(LoggedCause(cause));
        }
        response
    }
}

impl From<InvalidValue> for ApiError {
    fn from(e: InvalidValue) -> Self {
        ApiError::new(ErrorCode::InvalidValue, e.to_string()).with("field", e.field)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        // A body of the wrong shape (bad syntax, a missing field, a string for a number) is
        // malformed; 422 is kept for well-shaped values that break a rule.
        let code = match r {
            JsonRejection::MissingJsonContentType(_) => ErrorCode::UnsupportedMediaType,
            _ => ErrorCode::MalformedBody,
        };
        ApiError::new(code, r.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(r: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::new(ErrorCode::MalformedBody, r.body_text())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::ClaimLost => {
                ApiError::new(ErrorCode::RequestInProgress, "a retry with this Idempotency-Key took the request over").retry_after(1)
            }
            e => ApiError::failure(e),
        }
    }
}

impl<E: Into<ApiError>> From<ExecError<E>> for ApiError {
    fn from(e: ExecError<E>) -> Self {
        match e {
            ExecError::Domain(e) => e.into(),
            ExecError::VersionMismatch { expected, current } => {
                ApiError::new(ErrorCode::PreconditionFailed, format!("expected version {expected}, current is {current}"))
                    .with("current_version", current)
            }
            ExecError::Conflict { current } => {
                ApiError::new(ErrorCode::VersionConflict, "the resource was changed concurrently; retry").with("current_version", current)
            }
            ExecError::Store(e) => e.into(),
        }
    }
}

impl From<UserError> for ApiError {
    fn from(e: UserError) -> Self {
        let code = match e {
            UserError::AlreadyRegistered => ErrorCode::AlreadyRegistered,
            UserError::NotFound => return ApiError::not_found("user"),
            UserError::Deactivated => ErrorCode::UserDeactivated,
            UserError::Erased => ErrorCode::UserErased,
            UserError::WrongPassword => ErrorCode::WrongPassword,
            UserError::ResetTokenInvalid | UserError::ResetTokenExpired => ErrorCode::InvalidResetToken,
            UserError::NoRoles => ErrorCode::NoRoles,
            UserError::NoPhone => ErrorCode::NoPhone,
            UserError::TooManyResets => ErrorCode::RateLimited,
            UserError::HashingUnavailable => {
                return ApiError::new(ErrorCode::Unavailable, "too many password operations at once; retry shortly")
                    .retry_after(1)
                    .caused_by("password hashing saturated");
            }
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<ProductError> for ApiError {
    fn from(e: ProductError) -> Self {
        let code = match e {
            ProductError::AlreadyExists => ErrorCode::AlreadyExists,
            ProductError::NotFound => return ApiError::not_found("product"),
            ProductError::Discontinued => ErrorCode::ProductDiscontinued,
            ProductError::AlreadyPublished => ErrorCode::AlreadyPublished,
            ProductError::NotPublished => ErrorCode::NotPublished,
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<OrderError> for ApiError {
    fn from(e: OrderError) -> Self {
        let code = match &e {
            OrderError::NotFound => return ApiError::not_found("order"),
            OrderError::AlreadyPlaced => ErrorCode::AlreadyPlaced,
            OrderError::NoLines | OrderError::InvalidRefund | OrderError::InvalidDiscount => ErrorCode::InvalidValue,
            OrderError::MixedCurrencies { .. } => ErrorCode::MixedCurrencies,
            OrderError::TooLarge => ErrorCode::InvalidValue,
            OrderError::IllegalTransition { .. } => ErrorCode::IllegalTransition,
            OrderError::RefundTooLarge { .. } => ErrorCode::RefundTooLarge,
            OrderError::AlreadyInvoiced(_) => ErrorCode::AlreadyInvoiced,
        };
        let mut error = ApiError::new(code, e.to_string());
        if let OrderError::IllegalTransition { from, .. } = e {
            error = error.with("order_status", serde_json::to_value(from).unwrap_or(Value::Null));
        }
        error
    }
}

impl From<PaymentError> for ApiError {
    fn from(e: PaymentError) -> Self {
        let code = match &e {
            PaymentError::NotFound | PaymentError::UnknownRefund => return ApiError::not_found("payment"),
            PaymentError::AlreadyRequested => ErrorCode::AlreadyRequested,
            PaymentError::InvalidAmount => ErrorCode::InvalidValue,
            PaymentError::IllegalTransition { .. } => ErrorCode::IllegalTransition,
            PaymentError::RefundTooLarge { .. } => ErrorCode::RefundTooLarge,
        };
        let mut error = ApiError::new(code, e.to_string());
        if let PaymentError::RefundTooLarge { refundable, .. } = e {
            error = error.with("refundable", refundable);
        }
        if code == ErrorCode::InvalidValue {
            error = error.with("field", "amount");
        }
        error
    }
}

impl From<StockError> for ApiError {
    fn from(e: StockError) -> Self {
        let code = match e {
            StockError::InsufficientStock { .. } => ErrorCode::InsufficientStock,
            StockError::AdjustmentBelowReserved { .. } => ErrorCode::AdjustmentBelowReserved,
            StockError::ReservationNotFound => return ApiError::not_found("reservation"),
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<CartError> for ApiError {
    fn from(e: CartError) -> Self {
        let code = match &e {
            CartError::NotFound => return ApiError::not_found("cart"),
            CartError::NoSuchLine(_) => return ApiError::not_found("cart line"),
            CartError::NoDiscount => return ApiError::not_found("discount"),
            CartError::Promotion(p) => return p.clone().into(),
            CartError::AlreadyExists => ErrorCode::AlreadyExists,
            CartError::Closed | CartError::NotDue => ErrorCode::CartClosed,
            CartError::TooManyLines => return ApiError::from(InvalidValue::new("sku", "a cart has at most 100 lines")),
            CartError::InvalidQuantity => return ApiError::from(InvalidValue::new("quantity", "a line has 1 to 1000 units")),
            CartError::ProductUnavailable(_) => ErrorCode::ProductUnavailable,
            CartError::InsufficientStock { .. } => ErrorCode::InsufficientStock,
            CartError::MixedCurrencies { .. } => ErrorCode::MixedCurrencies,
            CartError::Empty => ErrorCode::CartEmpty,
            CartError::Changed => ErrorCode::CartChanged,
        };
        let error = ApiError::new(code, e.to_string());
        match e {
            CartError::ProductUnavailable(sku) => error.with("sku", sku.to_string()),
            CartError::InsufficientStock { sku, available } => error.with("sku", sku.to_string()).with("available", available),
            _ => error,
        }
    }
}

impl From<PromotionError> for ApiError {
    fn from(e: PromotionError) -> Self {
        let code = match &e {
            PromotionError::NotFound => return ApiError::not_found("discount code"),
            PromotionError::AlreadyExists => ErrorCode::AlreadyExists,
            PromotionError::InvalidTerms => return ApiError::from(InvalidValue::new(
                "kind",
                "a percentage is 1 to 10000 basis points, an amount is positive, limits are at least 1 and a window ends after it starts",
            )),
            PromotionError::Exhausted => ErrorCode::PromotionExhausted,
            _ => ErrorCode::PromotionNotApplicable,
        };
        let error = ApiError::new(code, e.to_string()).with("reason", e.reason());
        match e {
            PromotionError::BelowMinimum { minimum } => {
                error.with("minimum", json!({ "amount": minimum.amount, "currency": minimum.currency.as_str() }))
            }
            _ => error,
        }
    }
}

impl From<domain::settings::SettingsError> for ApiError {
    fn from(e: domain::settings::SettingsError) -> Self {
        ApiError::new(ErrorCode::InvalidValue, e.to_string()).with("field", "tax_rate_bp")
    }
}

impl From<domain::cart::Never> for ApiError {
    fn from(never: domain::cart::Never) -> Self {
        match never {}
    }
}

impl From<AdminRosterError> for ApiError {
    fn from(e: AdminRosterError) -> Self {
        let code = match e {
            AdminRosterError::LastAdmin => ErrorCode::LastAdmin,
            AdminRosterError::ActorNotAdmin => ErrorCode::Forbidden,
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        ApiError::new(ErrorCode::InvalidRefreshToken, e.to_string())
    }
}

/// Claims answer "taken"; which code that is depends on what was claimed.
pub fn email_taken(_: ClaimError) -> ApiError {
    ApiError::new(ErrorCode::EmailTaken, "this e-mail address is already registered")
}

pub fn sku_taken(_: ClaimError) -> ApiError {
    ApiError::new(ErrorCode::SkuTaken, "a product with this sku already exists")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_carry_type_status_and_code() {
        let body = ApiError::from(InvalidValue::new("email", "not a valid e-mail address")).body();
        assert_eq!(body["status"], 422);
        assert_eq!(body["code"], "invalid_value");
        assert_eq!(body["field"], "email");
        assert_eq!(body["type"], "urn:shop:problem:invalid_value");
    }

    #[test]
    fn every_code_has_a_name_of_its_own() {
        let names: std::collections::HashSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len());
    }

    #[test]
    fn internal_errors_do_not_leak_their_text() {
        let error = ApiError::internal("connection string postgres://secret");
        let body = error.body();
        assert_eq!(body["status"], 500);
        assert!(!body.to_string().contains("secret"));
        let response = error.into_response();
        let logged = response.extensions().get::<LoggedCause>().map(|c| c.0.as_str());
        assert_eq!(logged, Some("connection string postgres://secret"), "the cause goes to the log");
    }

    #[test]
    fn a_version_mismatch_is_a_412_with_the_current_version() {
        let e: ApiError = ExecError::<UserError>::VersionMismatch { expected: 1, current: 4 }.into();
        assert_eq!((e.status(), e.body()["current_version"].clone()), (StatusCode::PRECONDITION_FAILED, json!(4)));
    }
}
