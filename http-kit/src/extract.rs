//! Extractors: JSON and query strings with our error format, typed path ids, the
//! authenticated caller ([`AuthUser`], [`Admin`], [`Viewer`]), the tenant of an anonymous
//! request, `If-Match`, `X-Min-Position`, and the metadata stored with every event.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts};
use axum::http::request::Parts;
use domain::user::Role;
use domain::{TenantId, UserId};
use store::Metadata;

use crate::error::{ApiError, ErrorCode};
use crate::jwt::JwtKeys;

/// A typed id taken from the path: one that does not parse names nothing, so it is the same
/// 404 as an id that names nothing.
#[derive(Debug, Clone, Copy)]
pub struct Id<T>(pub T);

/// A type that can name a resource in a path.
pub trait PathId: std::str::FromStr + Send {
    /// What a missing one is called in the 404 (`order not found`).
    const WHAT: &'static str;
}

impl PathId for domain::OrderId {
    const WHAT: &'static str = "order";
}

impl PathId for domain::ProductId {
    const WHAT: &'static str = "product";
}

impl PathId for UserId {
    const WHAT: &'static str = "user";
}

impl PathId for domain::CartId {
    const WHAT: &'static str = "cart";
}

impl PathId for domain::PromotionCode {
    const WHAT: &'static str = "discount code";
}

impl PathId for domain::Sku {
    const WHAT: &'static str = "sku";
}

impl<S: Send + Sync, T: PathId> FromRequestParts<S> for Id<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state).await.map_err(|_| ApiError::not_found(T::WHAT))?;
        raw.parse().map(Id).map_err(|_| ApiError::not_found(T::WHAT))
    }
}

/// `axum::Json`, but rejections are problem documents.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct AppJson<T>(pub T);

/// `axum::extract::Query`, but rejections are problem documents.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct AppQuery<T>(pub T);

/// The caller, from a valid `Authorization: Bearer` access token. A missing or bad token is a
/// 401, never an anonymous caller.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user_id: UserId,
    pub tenant: TenantId,
    pub roles: BTreeSet<Role>,
    /// When the access token expires (unix seconds): long-lived answers (event streams) end
    /// then.
    pub expires_at: i64,
}

impl AuthUser {
    pub fn is_admin(&self) -> bool {
        self.roles.contains(&Role::Admin)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuthUser
where
    JwtKeys: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated, "a bearer token is required"))?;
        JwtKeys::from_ref(state).authenticate(token).await
    }
}

pub fn bearer(parts: &Parts) -> Option<&str> {
    parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// An authenticated caller with the `admin` role (403 otherwise).
#[derive(Debug, Clone)]
pub struct Admin(pub AuthUser);

impl<S: Send + Sync> FromRequestParts<S> for Admin
where
    JwtKeys: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        if user.is_admin() {
            Ok(Admin(user))
        } else {
            Err(ApiError::new(ErrorCode::Forbidden, "this needs the admin role"))
        }
    }
}

/// The tenant an anonymous request addresses: `X-Tenant`, default `default`.
#[derive(Debug, Clone)]
pub struct Tenant(pub TenantId);

impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.headers.get("x-tenant") {
            None => Ok(Tenant(TenantId::default_tenant())),
            Some(v) => {
                let s = v.to_str().map_err(|_| ApiError::new(ErrorCode::MalformedBody, "X-Tenant is not text"))?;
                Ok(Tenant(s.parse()?))
            }
        }
    }
}

/// `If-Match: <version>` (quoted or not): the version the client last saw.
#[derive(Debug, Clone, Copy)]
pub struct IfMatch(pub Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(v) = parts.headers.get(axum::http::header::IF_MATCH) else {
            return Ok(IfMatch(None));
        };
        v.to_str()
            .ok()
            .map(|s| s.trim().trim_start_matches("W/").trim_matches('"'))
            .and_then(|s| s.parse().ok())
            .map(|n| IfMatch(Some(n)))
            .ok_or_else(|| ApiError::new(ErrorCode::MalformedBody, "If-Match must be a version number"))
    }
}

/// Correlation id, idempotency key and client address of the request, for event metadata.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub correlation_id: String,
    /// This request alone: the causation id of the events it writes.
    pub request_id: String,
    pub idempotency_key: Option<String>,
    pub client_addr: Option<String>,
}

impl RequestMeta {
    pub fn metadata(&self, tenant: &TenantId, user: Option<UserId>) -> Metadata {
        Metadata {
            tenant: Some(tenant.to_string()),
            user_id: user.map(|u| u.to_string()),
            correlation_id: Some(self.correlation_id.clone()),
            causation_id: Some(self.request_id.clone()),
            idempotency_key: self.idempotency_key.clone(),
            client_addr: self.client_addr.clone(),
            traceparent: store::trace::traceparent_of(&tracing::Span::current()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        // A request without its own correlation id is correlated by its trace, when traced.
        let trace = store::trace::trace_id_of(&tracing::Span::current())
            .and_then(|t| u128::from_str_radix(&t, 16).ok())
            .map(|t| uuid::Uuid::from_u128(t).to_string());
        let correlation_id = header("x-correlation-id")
            .filter(|c| !c.is_empty() && c.len() <= 128)
            .or(trace)
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let client_addr = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
        let request_id = uuid::Uuid::now_v7().to_string();
        Ok(RequestMeta { correlation_id, request_id, idempotency_key: header("idempotency-key"), client_addr })
    }
}

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
