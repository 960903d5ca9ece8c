//! One error type for the whole API, rendered as RFC 9457 `application/problem+json` with a
//! stable machine-readable `code`. Each code maps to its status in exactly one place.

use axum::extract::rejection::JsonRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::claim::ClaimError;
use domain::order::OrderError;
use domain::payment::PaymentError;
use domain::product::ProductError;
use domain::session::SessionError;
use domain::stock::StockError;
use domain::user::UserError;
use domain::InvalidValue;
use serde_json::{json, Map, Value};
use store::{ExecError, StoreError};

/// What went wrong, as clients may branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 400: the body is not JSON of the shape the route takes, or a header is malformed.
    MalformedBody,
    /// 415: the body is not declared as `application/json`.
    UnsupportedMediaType,
    /// 422: a value is well-formed JSON but not acceptable (negative price, bad e-mail).
    InvalidValue,
    /// 401: no valid access token.
    Unauthenticated,
    /// 401: e-mail and password do not match an active user (the same answer either way).
    InvalidCredentials,
    /// 401: the refresh token is unknown, expired or revoked.
    InvalidRefreshToken,
    /// 401: a refresh token was used twice; its whole family is now revoked.
    RefreshTokenReused,
    /// 403: authenticated, but the role does not allow this.
    Forbidden,
    /// 404: no such resource in the caller's tenant.
    NotFound,
    /// 405: the route exists but not with this method.
    MethodNotAllowed,
    /// 409: the e-mail address is already registered in this tenant.
    EmailTaken,
    /// 409: the SKU already exists in this tenant.
    SkuTaken,
    /// 409: concurrent writers kept winning; retry.
    VersionConflict,
    /// 409: the request with this `Idempotency-Key` is still running.
    RequestInProgress,
    /// 409: the aggregate's state does not allow the command; the string names the rule.
    Rule(&'static str),
    /// 412: `If-Match` names another version than the current one.
    PreconditionFailed,
    /// 422: the `Idempotency-Key` was already used for a different request.
    IdempotencyKeyReused,
    /// 422: the password-reset token is wrong, used or expired.
    InvalidResetToken,
    /// 429: too many attempts; see `Retry-After`.
    RateLimited,
    /// 503: a dependency (the store, the hashing pool) is unavailable; see `Retry-After`.
    Unavailable,
    /// 503: the read model has not reached the `X-Min-Position` asked for within the bound.
    ProjectionBehind,
    /// 500: a fault of ours; details are only in the log.
    Internal,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            MalformedBody => StatusCode::BAD_REQUEST,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            InvalidValue | IdempotencyKeyReused | InvalidResetToken => StatusCode::UNPROCESSABLE_ENTITY,
            Unauthenticated | InvalidCredentials | InvalidRefreshToken | RefreshTokenReused => StatusCode::UNAUTHORIZED,
            Forbidden => StatusCode::FORBIDDEN,
            NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            EmailTaken | SkuTaken | VersionConflict | RequestInProgress | Rule(_) => StatusCode::CONFLICT,
            PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Unavailable | ProjectionBehind => StatusCode::SERVICE_UNAVAILABLE,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            MalformedBody => "malformed_body",
            UnsupportedMediaType => "unsupported_media_type",
            InvalidValue => "invalid_value",
            Unauthenticated => "unauthenticated",
            InvalidCredentials => "invalid_credentials",
            InvalidRefreshToken => "invalid_refresh_token",
            RefreshTokenReused => "refresh_token_reused",
            Forbidden => "forbidden",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            EmailTaken => "email_taken",
            SkuTaken => "sku_taken",
            VersionConflict => "version_conflict",
            RequestInProgress => "request_in_progress",
            Rule(rule) => rule,
            PreconditionFailed => "precondition_failed",
            IdempotencyKeyReused => "idempotency_key_reused",
            InvalidResetToken => "invalid_reset_token",
            RateLimited => "rate_limited",
            Unavailable => "unavailable",
            ProjectionBehind => "projection_behind",
            Internal => "internal",
        }
    }
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
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self { code, detail: detail.into(), extra: Map::new(), retry_after_secs: None }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// A fault of ours: logged here, once, and answered with a generic body.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "internal error");
        Self::new(ErrorCode::Internal, "an internal error occurred")
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
        match &e {
            StoreError::Database(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)) => {
                tracing::error!(error = %e, "event store unavailable");
                ApiError::new(ErrorCode::Unavailable, "the store is unavailable, retry shortly").retry_after(1)
            }
            _ => ApiError::internal(e),
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
            UserError::AlreadyRegistered => ErrorCode::Rule("already_registered"),
            UserError::NotFound => return ApiError::not_found("user"),
            UserError::Deactivated => ErrorCode::Rule("user_deactivated"),
            UserError::WrongPassword => ErrorCode::Rule("wrong_password"),
            UserError::ResetTokenInvalid | UserError::ResetTokenExpired => ErrorCode::InvalidResetToken,
            UserError::NoRoles => ErrorCode::Rule("no_roles"),
            UserError::HashingUnavailable => {
                tracing::warn!("password hashing saturated");
                return ApiError::new(ErrorCode::Unavailable, "too many password operations at once; retry shortly").retry_after(1);
            }
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<ProductError> for ApiError {
    fn from(e: ProductError) -> Self {
        let code = match e {
            ProductError::AlreadyExists => ErrorCode::Rule("already_exists"),
            ProductError::NotFound => return ApiError::not_found("product"),
            ProductError::Discontinued => ErrorCode::Rule("product_discontinued"),
            ProductError::AlreadyPublished => ErrorCode::Rule("already_published"),
            ProductError::NotPublished => ErrorCode::Rule("not_published"),
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<OrderError> for ApiError {
    fn from(e: OrderError) -> Self {
        let code = match &e {
            OrderError::NotFound => return ApiError::not_found("order"),
            OrderError::AlreadyPlaced => ErrorCode::Rule("already_placed"),
            OrderError::NoLines | OrderError::InvalidCountry | OrderError::InvalidRefund => ErrorCode::InvalidValue,
            OrderError::MixedCurrencies { .. } => ErrorCode::Rule("mixed_currencies"),
            OrderError::TooLarge => ErrorCode::InvalidValue,
            OrderError::IllegalTransition { .. } => ErrorCode::Rule("illegal_transition"),
            OrderError::RefundTooLarge { .. } => ErrorCode::Rule("refund_too_large"),
            OrderError::AlreadyInvoiced(_) => ErrorCode::Rule("already_invoiced"),
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
            PaymentError::AlreadyRequested => ErrorCode::Rule("already_requested"),
            PaymentError::InvalidAmount => ErrorCode::InvalidValue,
            PaymentError::IllegalTransition { .. } => ErrorCode::Rule("illegal_transition"),
            PaymentError::RefundTooLarge { .. } => ErrorCode::Rule("refund_too_large"),
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
            StockError::InsufficientStock { .. } => ErrorCode::Rule("insufficient_stock"),
            StockError::AdjustmentBelowReserved { .. } => ErrorCode::Rule("adjustment_below_reserved"),
            StockError::ReservationNotFound => return ApiError::not_found("reservation"),
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
    fn internal_errors_do_not_leak_their_text() {
        let body = ApiError::internal("connection string postgres://secret").body();
        assert_eq!(body["status"], 500);
        assert!(!body.to_string().contains("secret"));
    }

    #[test]
    fn a_version_mismatch_is_a_412_with_the_current_version() {
        let e: ApiError = ExecError::<UserError>::VersionMismatch { expected: 1, current: 4 }.into();
        assert_eq!((e.status(), e.body()["current_version"].clone()), (StatusCode::PRECONDITION_FAILED, json!(4)));
    }
}
