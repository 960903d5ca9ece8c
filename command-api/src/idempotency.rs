//! `Idempotency-Key` on a POST: the first successful answer is stored and every retry with the
//! same key (and the same request) gets it back instead of a second effect. The key's record
//! commits with the request's events (the store's append does it for the claimed key), so a
//! retry after a crash or a timeout between commit and answer is answered from the effect
//! (`{id, version, position}` of the aggregate, with the route's success status) and never
//! runs the command again.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use store::Idempotency;

use aide::transform::{TransformOperation, TransformPathItem};
use http_kit::Problems;

use crate::AppState;
use http_kit::{ApiError, ErrorCode};

/// Largest request body that is buffered to hash it.
const MAX_BODY: usize = 1024 * 1024;

/// The middleware, on the routes whose answers may be stored (not the token routes: their
/// answers are secrets).
pub async fn idempotency(State((state, statuses)): State<(AppState, Arc<SuccessStatuses>)>, req: Request, next: Next) -> Response {
    let key = match req.headers().get("idempotency-key") {
        Some(k) if req.method() == Method::POST => k.to_str().ok().map(str::to_owned),
        _ => return next.run(req).await,
    };
    let Some(key) = key.filter(|k| !k.is_empty() && k.len() <= 255) else {
        return ApiError::new(ErrorCode::MalformedBody, "Idempotency-Key must be 1-255 characters").into_response();
    };
    let scope = scope_of(&state, &req);
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        return ApiError::new(ErrorCode::MalformedBody, "request body too large or unreadable").into_response();
    };
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str());
    hasher.update(b" ");
    hasher.update(parts.uri.path());
    hasher.update(b"\n");
    hasher.update(&bytes);
    let request_hash = hex::encode(hasher.finalize());

    match state.store.idempotency_begin(&scope, &key, &request_hash).await {
        Err(e) => ApiError::from(e).into_response(),
        Ok(Idempotency::Mismatch) => {
            ApiError::new(ErrorCode::IdempotencyKeyReused, "this Idempotency-Key was used for a different request").into_response()
        }
        Ok(Idempotency::InProgress) => ApiError::new(ErrorCode::RequestInProgress, "a request with this Idempotency-Key is still running")
            .retry_after(1)
            .into_response(),
        Ok(Idempotency::Replay { status, body }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut response = (status, body).into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            response
        }
        Ok(Idempotency::Committed(effect)) => {
            let status = statuses.of(&route);
            let id = domain::StreamId::parse(&effect.aggregate_id).map_or(effect.aggregate_id.clone(), |s| s.key.to_owned());
            let answer = crate::CommandAccepted { id, version: effect.sequence.max(0) as u64, position: effect.position };
            let mut response = (status, axum::Json(answer)).into_response();
            response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            response
        }
        Ok(Idempotency::Fresh { claim }) => {
            let response = store::with_key(claim, next.run(Request::from_parts(parts, Body::from(bytes)))).await;
            if !response.status().is_success() {
                if let Err(e) = state.store.idempotency_abandon(&scope, &key).await {
                    tracing::warn!(error = %e, "idempotency key not released");
                }
                return response;
            }
            let (parts, body) = response.into_parts();
            let body = match to_bytes(body, usize::MAX).await {
                Ok(b) => b,
                Err(e) => return ApiError::internal(e).into_response(),
            };
            let text = String::from_utf8_lossy(&body);
            crash_point();
            if let Err(e) = state.store.idempotency_complete(&scope, &key, parts.status.as_u16(), &text).await {
                // The effect happened; the answer just cannot be replayed. Say so in the log.
                tracing::warn!(error = %e, "idempotent answer not stored");
            }
            Response::from_parts(parts, Body::from(body))
        }
    }
}

/// Documents `Idempotency-Key` on every POST of the routes the middleware serves, with the
/// problems it answers itself.
pub fn document(mut item: TransformPathItem<'_>) -> TransformPathItem<'_> {
    if let Some(post) = item.inner_mut().post.as_mut() {
        let description =
            "Retries with the same key and the same request get the first successful answer again instead of a second effect.";
        let _ = TransformOperation::new(post)
            .header("Idempotency-Key", description, serde_json::json!({ "type": "string", "minLength": 1, "maxLength": 255 }))
            .problems(&[ErrorCode::MalformedBody, ErrorCode::RequestInProgress, ErrorCode::IdempotencyKeyReused]);
    }
    item
}

/// Tests: `SHOP_FAULT_CRASH_AFTER_COMMIT=1` ends the process like `kill -9` after a keyed
/// request committed and before its answer is stored (only with the `faults` feature).
fn crash_point() {
    #[cfg(feature = "faults")]
    if std::env::var_os("SHOP_FAULT_CRASH_AFTER_COMMIT").is_some() {
        eprintln!("fault injected: crashing between commit and answer");
        std::process::abort();
    }
}

/// The success status of each keyed route (`/api/v1/orders` → 202), read from the routes'
/// own documentation, for answers rebuilt from an effect.
#[derive(Debug, Default)]
pub struct SuccessStatuses(HashMap<String, StatusCode>);

impl SuccessStatuses {
    /// The lowest 2xx status each POST of `routes` documents, under `prefix`.
    pub fn of_routes(routes: &aide::axum::ApiRouter<AppState>, prefix: &str) -> Self {
        let mut api = aide::openapi::OpenApi::default();
        let _ = routes.clone().finish_api(&mut api);
        let mut statuses = HashMap::new();
        for (path, item) in api.paths.iter().flat_map(|p| p.paths.iter()) {
            let aide::openapi::ReferenceOr::Item(item) = item else { continue };
            let Some(responses) = item.post.as_ref().and_then(|op| op.responses.as_ref()) else { continue };
            let success = responses
                .responses
                .keys()
                .filter_map(|code| match code {
                    aide::openapi::StatusCode::Code(c) if (200..300).contains(c) => StatusCode::from_u16(*c).ok(),
                    _ => None,
                })
                .min();
            if let Some(status) = success {
                statuses.insert(format!("{prefix}{path}"), status);
            }
        }
        Self(statuses)
    }

    fn of(&self, route: &str) -> StatusCode {
        self.0.get(route).copied().unwrap_or(StatusCode::OK)
    }
}

/// Keys are per tenant and caller, so one client's key never collides with another's.
fn scope_of(state: &AppState, req: &Request) -> String {
    let token = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if let Some(claims) = token.and_then(|t| state.jwt.verify(t.trim()).ok()) {
        return format!("{}:{}", claims.tenant, claims.sub);
    }
    let tenant = req.headers().get("x-tenant").and_then(|v| v.to_str().ok()).unwrap_or("default");
    // A guest is known by the cart token it holds: one guest's key never replays another's answer.
    match crate::carts::cart_token(req.headers()) {
        Some(token) => format!("{tenant}:cart:{}", token.hash().0),
        None => format!("{tenant}:anonymous"),
    }
}
