use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use command_api::auth::JwtKeys;
use command_api::extract::{AuthUser, Tenant};
use command_api::{ApiError, ErrorCode};
use domain::TenantId;

/// Who is reading: an authenticated user (a bad token is a 401, never anonymous) or, without
/// an `Authorization` header, an anonymous visitor of the `X-Tenant` tenant.
#[derive(Debug, Clone)]
pub enum Viewer {
    User(AuthUser),
    Anonymous(TenantId),
}

impl Viewer {
    pub fn tenant(&self) -> &TenantId {
        match self {
            Viewer::User(u) => &u.tenant,
            Viewer::Anonymous(t) => t,
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Viewer::User(u) if u.is_admin())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Viewer
where
    JwtKeys: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if parts.headers.contains_key(axum::http::header::AUTHORIZATION) {
            Ok(Viewer::User(AuthUser::from_request_parts(parts, state).await?))
        } else {
            let Tenant(tenant) = Tenant::from_request_parts(parts, state).await?;
            Ok(Viewer::Anonymous(tenant))
        }
    }
}

/// `X-Min-Position: N`: the global position a command returned.
#[derive(Debug, Clone, Copy)]
pub struct MinPosition(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for MinPosition {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.headers.get("x-min-position") {
            None => Ok(MinPosition(None)),
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .filter(|n| *n >= 0)
                .map(|n| MinPosition(Some(n)))
                .ok_or_else(|| ApiError::new(ErrorCode::MalformedBody, "X-Min-Position must be a non-negative integer")),
        }
    }
}
