//! The command side of shop over HTTP (axum): every write goes through here.
//!
//! A handler extracts typed input (`AppJson`, `AuthUser`/`Admin`, `Tenant`, `IfMatch`), turns
//! the body into a domain command (`TryFrom`, so invalid input never reaches an aggregate),
//! executes it through a [`store::Repository`] and answers with the aggregate id, its new
//! version and the global position of its last event ([`CommandAccepted`]).
//!
//! # Layout
//! - `auth/`: register, login, refresh-token rotation, logout, password reset; argon2id
//!   hashing, JWTs, the failed-login limiter.
//! - `users.rs`: `/users/me`, role management; `register_user` for the CLI too.
//! - `products.rs`, `stock.rs`: catalogue and stock commands (admin).
//! - `orders.rs`: place and cancel orders (customers); ship, deliver, refund (admins).
//! - `health.rs`: `/health`, `/ready`.
//! - `error.rs`: [`ApiError`] and its problem+json rendering.
//! - `extract.rs`: the extractors above; `idempotency.rs`: `Idempotency-Key` replay.
//! - `state.rs`: [`AppState`], [`ApiConfig`], the clock; `mail.rs`: the outbox mailer.

pub mod auth;
pub mod error;
pub mod extract;
pub mod health;
mod idempotency;
pub mod mail;
pub mod metrics;
mod orders;
mod products;
mod state;
mod stock;
pub mod templates;
pub mod users;

use std::any::Any;
use std::fmt::Display;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{middleware, Router};
use cqrs_es::Aggregate;
use serde::Serialize;
use store::Committed;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use error::{ApiError, ErrorCode};
pub use state::*;

/// The answer to every successful command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CommandAccepted {
    /// The aggregate's id (user id, product id, SKU).
    pub id: String,
    /// The aggregate's version after the command; send it back as `If-Match`.
    pub version: u64,
    /// Global log position of the aggregate's last event; read models that reached it show
    /// this write.
    pub position: i64,
}

impl CommandAccepted {
    pub fn new<A: Aggregate>(id: impl Display, done: &Committed<A>) -> Self {
        Self { id: id.to_string(), version: done.version, position: done.position }
    }
}

/// The command API's routes (`/api/v1/...`, `/health`, `/ready`); serve it through
/// [`finish`], alone or merged with the query API.
pub fn router(state: AppState) -> Router {
    let api =
        Router::new().merge(auth::router()).merge(users::router()).merge(products::router()).merge(stock::router()).merge(orders::router());
    Router::new()
        .nest("/api/v1", api)
        .merge(health::router())
        .layer(middleware::from_fn_with_state(state.clone(), idempotency::idempotency))
        .with_state(state)
}

/// What every served router gets: `GET /metrics`, problem answers for unknown routes and
/// methods, panics turned into a 500 problem, a 30 s request timeout, request metrics and
/// request tracing.
pub fn finish(router: Router) -> Router {
    router
        .route("/metrics", axum::routing::get(metrics::render))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(30)))
        .layer(middleware::from_fn(metrics::track))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
}

/// The span of one request: method and path (never the query string, which may carry
/// cursors or search words), continuing the caller's trace when it sends `traceparent`.
fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    if !store::trace::enabled() {
        // tower-http's own default: a debug-level span, free unless debug logs are on.
        return tracing::debug_span!("request", method = %request.method(), uri = %request.uri().path(), version = ?request.version());
    }
    // Named by the route template (`GET /api/v1/orders/{id}`), never by the raw path.
    let route = metrics::route_label(request);
    let span = tracing::info_span!(
        "request",
        otel.name = format!("{} {route}", metrics::method_label(request.method())),
        otel.kind = "server",
        method = %request.method(),
        path = %request.uri().path(),
    );
    let traceparent = request.headers().get("traceparent").and_then(|v| v.to_str().ok());
    store::trace::continue_from(&span, traceparent);
    span
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, "this route does not take this method")
}

fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response {
    ApiError::internal("handler panicked").into_response()
}
