//! Sign-in for the shop's own pages: the refresh token lives in an `HttpOnly`,
//! `SameSite=Strict` cookie (`Secure` except on localhost) that scripts cannot read, and the
//! pages keep only the short-lived access token, in memory. These routes act on a cookie the
//! browser sends by itself, so each one checks that the request comes from the shop's own
//! pages: the `X-Shop-Csrf` header (which another site cannot add without a CORS preflight that
//! the shop refuses), an `Origin` naming this host, and `Sec-Fetch-Site: same-origin`.

use aide::axum::routing::post_with;
use aide::axum::ApiRouter;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Uri};
use axum::Json;
use http_kit::openapi::SetCookie;
use http_kit::{ApiError, AppJson, ErrorCode, Problems, RequestMeta, Tenant};
use schemars::JsonSchema;
use serde::Serialize;

use super::routes::{revoke, rotate, sign_in, LoginRequest, TokenResponse};
use crate::AppState;

/// The cookie that carries the refresh token.
pub const COOKIE: &str = "shop_session";
/// Where the browser sends it: these routes only.
const COOKIE_PATH: &str = "/api/v1/auth/browser";
/// The header the shop's pages add to every request of theirs.
pub const CSRF_HEADER: &str = "x-shop-csrf";

pub fn router() -> ApiRouter<AppState> {
    use ErrorCode::*;
    ApiRouter::new()
        .api_route(
            "/auth/browser/login",
            post_with(login, |op| {
                crate::carts::cart_op(op.describe(
                    "browser_login",
                    "auth",
                    "Log in from the shop's pages: the access token in the answer, the refresh token in an HttpOnly cookie. \
                     Needs `X-Shop-Csrf: 1` and a same-origin request.",
                ))
                .problems(&[InvalidCredentials, RateLimited, CrossSiteRequest])
            }),
        )
        .api_route(
            "/auth/browser/refresh",
            post_with(refresh, |op| {
                op.describe("browser_refresh", "auth", "A new access token for the session in the cookie (which is rotated).").problems(&[
                    InvalidRefreshToken,
                    RefreshTokenReused,
                    VersionConflict,
                    CrossSiteRequest,
                ])
            }),
        )
        .api_route(
            "/auth/browser/logout",
            post_with(logout, |op| {
                op.describe("browser_logout", "auth", "End the session in the cookie and clear it.").problems(&[CrossSiteRequest])
            }),
        )
}

/// What the pages get: the access token only.
#[derive(Debug, Serialize, JsonSchema)]
struct BrowserTokens {
    access_token: String,
    token_type: &'static str,
    /// Seconds until the access token expires; the pages refresh before then.
    expires_in: u64,
}

/// The host the request was sent to: `Host`, or the URI's authority (HTTP/2).
fn host<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> &'a str {
    headers.get(header::HOST).and_then(|h| h.to_str().ok()).or_else(|| uri.authority().map(|a| a.as_str())).unwrap_or_default()
}

/// Rejects a request that may come from another site's page.
pub fn same_origin(headers: &HeaderMap, uri: &Uri) -> Result<(), ApiError> {
    let rejected = |why: &str| ApiError::new(ErrorCode::CrossSiteRequest, format!("not a request of the shop's own pages: {why}"));
    if headers.get(CSRF_HEADER).is_none() {
        return Err(rejected("the X-Shop-Csrf header is missing"));
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        if !matches!(site.to_str(), Ok("same-origin" | "none")) {
            return Err(rejected("Sec-Fetch-Site is not same-origin"));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = host(headers, uri);
        let authority = origin.to_str().ok().and_then(|o| o.split_once("://")).map(|(_, rest)| rest);
        if host.is_empty() || authority != Some(host) {
            return Err(rejected("Origin names another site"));
        }
    }
    Ok(())
}

/// `Secure` everywhere but on a loopback host, where browsers accept plain HTTP.
fn secure(headers: &HeaderMap, uri: &Uri) -> bool {
    let host = host(headers, uri);
    let name = host.rsplit_once(':').map_or(host, |(name, port)| if port.chars().all(|c| c.is_ascii_digit()) { name } else { host });
    !matches!(name, "localhost" | "127.0.0.1" | "[::1]")
}

fn cookie(headers: &HeaderMap, uri: &Uri, value: &str, max_age_secs: u64) -> Result<HeaderValue, ApiError> {
    let secure = if secure(headers, uri) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{COOKIE}={value}; Path={COOKIE_PATH}; Max-Age={max_age_secs}; HttpOnly; SameSite=Strict{secure}"))
        .map_err(ApiError::internal)
}

/// The refresh token the browser sent, if any. Two of them (one planted by a neighbouring
/// site under a narrower path, say) are refused rather than guessed between.
fn presented(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut found = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned());
    let first = found.next();
    if found.next().is_some() {
        return Err(ApiError::new(ErrorCode::InvalidRefreshToken, "more than one session cookie"));
    }
    Ok(first)
}

fn answer(state: &AppState, headers: &HeaderMap, uri: &Uri, tokens: TokenResponse) -> Result<SetCookie<Json<BrowserTokens>>, ApiError> {
    let cookie = cookie(headers, uri, &tokens.refresh_token, state.config.refresh_token_ttl.as_secs())?;
    Ok(SetCookie(
        cookie,
        Json(BrowserTokens { access_token: tokens.access_token, token_type: tokens.token_type, expires_in: tokens.expires_in }),
    ))
}

async fn login(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    headers: HeaderMap,
    uri: Uri,
    meta: RequestMeta,
    AppJson(req): AppJson<LoginRequest>,
) -> Result<SetCookie<Json<BrowserTokens>>, ApiError> {
    same_origin(&headers, &uri)?;
    let Json(tokens) = sign_in(&state, &tenant, &headers, &meta, req).await?;
    answer(&state, &headers, &uri, tokens)
}

async fn refresh(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    headers: HeaderMap,
    uri: Uri,
    meta: RequestMeta,
) -> Result<SetCookie<Json<BrowserTokens>>, ApiError> {
    same_origin(&headers, &uri)?;
    let token = presented(&headers)?.ok_or_else(|| ApiError::new(ErrorCode::InvalidRefreshToken, "not signed in"))?;
    let Json(tokens) = rotate(&state, &tenant, &meta, &token).await?;
    answer(&state, &headers, &uri, tokens)
}

async fn logout(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    headers: HeaderMap,
    uri: Uri,
    meta: RequestMeta,
) -> Result<SetCookie<http_kit::Done>, ApiError> {
    same_origin(&headers, &uri)?;
    if let Some(token) = presented(&headers)? {
        // An unknown or ended session is signed out already: the cookie goes either way.
        match revoke(&state, &tenant, &meta, &token).await {
            Err(e) if e.code.status().is_client_error() => {
                tracing::info!(code = e.code.as_str(), "browser logout of a session that was not open");
            }
            // The session could not be ended (store away): say so, and keep the cookie.
            Err(e) => return Err(e),
            Ok(()) => {}
        }
    }
    Ok(SetCookie(cookie(&headers, &uri, "", 0)?, http_kit::Done))
}
