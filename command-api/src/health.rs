//! `/health`: the process answers. `/ready`: the event store answers too, and so does every
//! dependency the role cannot work without (the Kafka brokers of the relay and of Kafka-fed
//! workers). Dependencies the role can do without (the brokers of `shop serve`, whose relay
//! catches up later) are reported but do not make it unready.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use crate::error::{ApiError, ErrorCode};
use crate::AppState;

/// A dependency `/ready` asks about: `Err` says why it is not usable.
#[derive(Clone)]
pub struct ReadyCheck {
    pub name: &'static str,
    /// Whether the role is unready while this fails.
    pub required: bool,
    pub check: Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>,
}

pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(health)).route("/ready", get(ready))
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if let Err(e) = state.store.ping().await {
        tracing::warn!(error = %e, "store not reachable");
        return Err(ApiError::new(ErrorCode::Unavailable, "the event store is not reachable").retry_after(1));
    }
    let checks: Vec<ReadyCheck> = state.ready_checks.read().unwrap_or_else(|p| p.into_inner()).clone();
    let mut report = Map::new();
    for c in checks {
        let result = match tokio::time::timeout(Duration::from_secs(3), (c.check)()).await {
            Ok(r) => r,
            Err(_) => Err("no answer within 3 s".to_owned()),
        };
        match result {
            Ok(()) => {
                report.insert(c.name.to_owned(), json!("ok"));
            }
            // The reason (broker addresses and all) goes to the log, not to anonymous callers.
            Err(e) if c.required => {
                tracing::warn!(dependency = c.name, error = %e, "not ready");
                return Err(ApiError::new(ErrorCode::Unavailable, format!("{} is not reachable", c.name)).retry_after(1));
            }
            Err(e) => {
                tracing::warn!(dependency = c.name, error = %e, "unreachable (not required)");
                report.insert(c.name.to_owned(), json!("unreachable (not required)"));
            }
        }
    }
    Ok(Json(json!({ "status": "ready", "store": state.store.backend_name(), "dependencies": report })))
}
