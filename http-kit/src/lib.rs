//! The HTTP kit every role that serves HTTP shares: one error type, the extractors, access
//! tokens, `/health` `/ready` `/metrics`, and the middleware stack. It knows no route of its
//! own beyond those three.
//!
//! # Layout
//! - `error.rs`: [`ApiError`], rendered as an RFC 9457 problem, and the closed [`ErrorCode`]
//!   table (each code's status and name in one place); the domain errors' conversions.
//! - `extract.rs`: [`AppJson`], [`AppQuery`], typed path ids ([`Id`]), [`AuthUser`],
//!   [`Admin`], [`Viewer`], [`Tenant`], [`IfMatch`], [`MinPosition`], [`RequestMeta`].
//! - `jwt.rs`: [`JwtKeys`], [`Claims`], [`Secret`] (a string that never prints).
//! - `health.rs`: [`Readiness`] and its checks; `/health`, `/ready`, `/metrics`.
//! - `metrics.rs`: the Prometheus recorder, `/metrics`, request metrics; the place where the
//!   cause of an error answer is logged, once.
//! - `openapi.rs`: how the kit's extractors and answers document themselves (aide), and
//!   [`Problems`] for what a handler refuses itself.
//! - [`finish`] (this file): what every served router gets.

pub mod error;
pub mod extract;
pub mod health;
pub mod jwt;
pub mod metrics;
pub mod openapi;

use std::any::Any;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{middleware, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use error::{ApiError, ErrorCode};
pub use extract::*;
pub use health::{Readiness, ReadyCheck};
pub use jwt::{Claims, JwtKeys, Secret};
pub use openapi::{Accepted, Created, Done, Problems, Queued, Versioned};

/// What every served router gets: problem answers for unknown routes and methods, panics
/// turned into a 500 problem, a 30 s request timeout, request metrics (which log the cause of
/// an error answer once) and request tracing.
pub fn finish(router: Router) -> Router {
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(30)))
        .layer(middleware::from_fn(metrics::track))
        // Failures are logged by `metrics::track` with their cause; the trace layer's own
        // failure log would say the same thing again without it.
        .layer(TraceLayer::new_for_http().make_span_with(request_span).on_failure(()))
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
