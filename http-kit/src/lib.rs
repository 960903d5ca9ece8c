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
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod principals;

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
pub use principals::{Principal, Principals};

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
        .layer(middleware::from_fn(security_headers))
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

/// The policy of HTML pages: everything from this origin only, never framed, no plugins.
pub const HTML_CSP: &str =
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// What every answer says to browsers: no content sniffing, no referrer, never in a frame,
/// and a content security policy (HTML pages load only from this origin; other answers load
/// nothing).
async fn security_headers(req: axum::extract::Request, next: middleware::Next) -> axum::response::Response {
    use axum::http::{header, HeaderValue};
    let mut response = next.run(req).await;
    let html = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/html"));
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    let csp = if html { HTML_CSP } else { "default-src 'none'; frame-ancestors 'none'" };
    headers.entry(header::CONTENT_SECURITY_POLICY).or_insert(HeaderValue::from_static(csp));
    response
}

/// Cross-origin requests from `origins` only (`SHOP_CORS_ORIGINS`); with none, no CORS
/// headers at all, so browsers keep other sites' scripts out.
pub fn cors(origins: &[axum::http::HeaderValue]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{header, HeaderName, Method};
    if origins.is_empty() {
        return None;
    }
    Some(
        tower_http::cors::CorsLayer::new()
            .allow_origin(tower_http::cors::AllowOrigin::list(origins.iter().cloned()))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_MATCH,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("x-tenant"),
                HeaderName::from_static("x-min-position"),
            ])
            .expose_headers([header::ETAG, header::LOCATION, header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    )
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    use crate::ApiError;

    /// Counts error-level events.
    struct Errors(Arc<AtomicUsize>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Errors {
        fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            if *event.metadata().level() == tracing::Level::ERROR {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    #[tokio::test]
    async fn an_internal_error_is_answered_generically_and_logged_once() {
        let errors = Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry().with(Errors(Arc::clone(&errors)));
        let _guard = tracing::subscriber::set_default(subscriber);
        let app =
            crate::finish(Router::new().route("/boom", get(|| async { Err::<(), _>(ApiError::internal("database password wrong")) })));
        let response = app.oneshot(Request::get("/boom").body(Body::empty()).expect("request")).await.expect("answer");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 10_000).await.expect("body");
        assert!(!String::from_utf8_lossy(&body).contains("password"), "the cause stays in the log");
        assert_eq!(errors.load(Ordering::SeqCst), 1, "logged once, by the request middleware");
    }
}
