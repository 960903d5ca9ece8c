//! Webhook administration under `/api/v1/admin/webhooks` (admins of the tenant only).

use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use http_kit::{Admin, ApiError, AppJson, ErrorCode, JwtKeys};
use serde::Deserialize;
use worker_kit::ReadDb;

use crate::webhooks::{self, Endpoint, InvalidEndpoint, WebhookDelivery};
use crate::NotifyError;

#[derive(Clone)]
pub struct WebhookApi {
    pub db: ReadDb,
    pub jwt: JwtKeys,
}

impl FromRef<WebhookApi> for JwtKeys {
    fn from_ref(state: &WebhookApi) -> JwtKeys {
        state.jwt.clone()
    }
}

/// The webhook routes, to nest under `/api/v1`.
pub fn router(state: WebhookApi) -> Router {
    Router::new()
        .route("/admin/webhooks", post(register).get(list))
        .route("/admin/webhooks/{id}", axum::routing::delete(delete))
        .route("/admin/webhooks/{id}/rotate-secret", post(rotate))
        .route("/admin/webhooks/{id}/deliveries", get(deliveries))
        .route("/admin/webhooks/{id}/deliveries/{delivery}/redeliver", post(redeliver))
        .route("/admin/mail", get(mail))
        .with_state(state)
}

/// `GET /admin/mail`: the tenant's last 100 e-mail deliveries (`sending` after a crash means
/// the message may not have gone out; it is not sent again by itself).
async fn mail(State(state): State<WebhookApi>, Admin(admin): Admin) -> Result<Json<Vec<crate::Delivery>>, ApiError> {
    Ok(Json(crate::deliveries(&state.db, &admin.tenant, 100).await.map_err(internal)?))
}

fn internal(e: NotifyError) -> ApiError {
    ApiError::internal(e)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterRequest {
    url: String,
    event_types: Vec<String>,
}

/// `POST /admin/webhooks`: 201 with the endpoint and its signing secret (shown only here and
/// at rotation).
async fn register(
    State(state): State<WebhookApi>,
    Admin(admin): Admin,
    AppJson(req): AppJson<RegisterRequest>,
) -> Result<(StatusCode, Json<Endpoint>), ApiError> {
    match webhooks::register(&state.db, admin.tenant.as_str(), &req.url, req.event_types).await.map_err(internal)? {
        Ok(endpoint) => Ok((StatusCode::CREATED, Json(endpoint))),
        Err(e) => {
            let field = if e == InvalidEndpoint::Url { "url" } else { "event_types" };
            Err(ApiError::new(ErrorCode::InvalidValue, e.to_string()).with("field", field))
        }
    }
}

async fn list(State(state): State<WebhookApi>, Admin(admin): Admin) -> Result<Json<Vec<Endpoint>>, ApiError> {
    Ok(Json(webhooks::list(&state.db, admin.tenant.as_str()).await.map_err(internal)?))
}

async fn delete(State(state): State<WebhookApi>, Admin(admin): Admin, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    match webhooks::delete(&state.db, admin.tenant.as_str(), &id).await.map_err(internal)? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::not_found("webhook")),
    }
}

async fn rotate(State(state): State<WebhookApi>, Admin(admin): Admin, Path(id): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    let secret = webhooks::rotate_secret(&state.db, admin.tenant.as_str(), &id).await.map_err(internal)?;
    secret.map(|s| Json(serde_json::json!({ "id": id, "secret": s }))).ok_or_else(|| ApiError::not_found("webhook"))
}

async fn deliveries(
    State(state): State<WebhookApi>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<Json<Vec<WebhookDelivery>>, ApiError> {
    let found = webhooks::deliveries(&state.db, admin.tenant.as_str(), &id, 100).await.map_err(internal)?;
    found.map(Json).ok_or_else(|| ApiError::not_found("webhook"))
}

async fn redeliver(
    State(state): State<WebhookApi>,
    Admin(admin): Admin,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    match webhooks::redeliver(&state.db, admin.tenant.as_str(), &id, &delivery).await.map_err(internal)? {
        true => Ok(StatusCode::ACCEPTED),
        false => Err(ApiError::not_found("delivery")),
    }
}
