//! `/health`: the process answers. `/ready`: the event store answers too.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::error::{ApiError, ErrorCode};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(health)).route("/ready", get(ready))
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match state.store.ping().await {
        Ok(()) => Ok(Json(json!({ "status": "ready", "store": state.store.backend_name() }))),
        Err(e) => {
            tracing::warn!(error = %e, "store not reachable");
            Err(ApiError::new(ErrorCode::Unavailable, "the event store is not reachable").retry_after(1))
        }
    }
}
