//! Prometheus metrics: one recorder per process, `GET /metrics` in the text exposition format,
//! and the request rate, errors and latency of every route.
//!
//! Names are `shop_*`; durations are histograms in seconds. What each role adds (commands,
//! projections, relay, notifier) is listed in the README.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::error::LoggedCause;
use crate::health::Readiness;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Buckets of every `*_seconds` histogram: 1 ms to 30 s.
const BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Installs this process's recorder (once); metrics recorded before it are lost, so every
/// role calls this at start. `None` if another recorder was installed first.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new().set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &BUCKETS).ok()?;
            match builder.install_recorder() {
                Ok(handle) => {
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                    let _ = STARTED.set(now.as_secs_f64());
                    // Histogram samples are kept raw until drained: drain them every few
                    // seconds, scraped or not, so memory stays bounded.
                    let upkeep = handle.clone();
                    let drain = move || loop {
                        std::thread::sleep(std::time::Duration::from_secs(5));
                        upkeep.run_upkeep();
                    };
                    if let Err(e) = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(drain) {
                        tracing::warn!(error = %e, "metrics upkeep thread not started");
                    }
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed; /metrics will answer 503");
                    None
                }
            }
        })
        .as_ref()
}

/// `GET /metrics`: the text exposition format, or 503 when this process has no recorder.
/// The readiness checks, the process's own figures and the role's [`crate::health::Scrape`]s
/// are read first.
pub async fn render(State(readiness): State<Arc<Readiness>>) -> Exposition {
    let Some(handle) = install() else { return Exposition(None) };
    readiness.scrape().await;
    process_gauges();
    handle.run_upkeep();
    Exposition(Some(handle.render()))
}

/// When this process installed its recorder, as Unix time: `shop_process_start_time_seconds`
/// (a restart changes it).
static STARTED: OnceLock<f64> = OnceLock::new();

/// `shop_build_info{version, role}` = 1: which build runs which role.
pub fn build_info(version: &'static str, role: &'static str) {
    metrics::gauge!("shop_build_info", "version" => version, "role" => role).set(1.0);
}

/// `shop_process_start_time_seconds`, and from `/proc/self/status` (Linux)
/// `shop_process_resident_memory_bytes` and `shop_process_threads`.
fn process_gauges() {
    if let Some(started) = STARTED.get() {
        metrics::gauge!("shop_process_start_time_seconds").set(*started);
    }
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return };
    for line in status.lines() {
        let mut fields = line.split_whitespace();
        let (Some(key), Some(value)) = (fields.next(), fields.next().and_then(|v| v.parse::<f64>().ok())) else { continue };
        match key {
            "VmRSS:" => metrics::gauge!("shop_process_resident_memory_bytes").set(value * 1024.0),
            "Threads:" => metrics::gauge!("shop_process_threads").set(value),
            _ => {}
        }
    }
}

/// The answer of `/metrics`.
pub struct Exposition(Option<String>);

impl IntoResponse for Exposition {
    fn into_response(self) -> Response {
        match self.0 {
            Some(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response(),
            None => (StatusCode::SERVICE_UNAVAILABLE, "no metrics recorder in this process\n").into_response(),
        }
    }
}

impl aide::OperationOutput for Exposition {
    type Inner = String;

    fn inferred_responses(
        _: &mut aide::generate::GenContext,
        _: &mut aide::openapi::Operation,
    ) -> Vec<(Option<u16>, aide::openapi::Response)> {
        let text = |description: &str| {
            serde_json::from_value(
                serde_json::json!({ "description": description, "content": { "text/plain": { "schema": { "type": "string" } } } }),
            )
            .expect("a well-formed response object")
        };
        vec![(Some(200), text("The Prometheus text exposition format")), (Some(503), text("This process has no metrics recorder"))]
    }
}

/// The standard methods by name; any other token a client sends is `other`, so made-up
/// methods cannot grow the label set.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The route template a request matched (`/api/v1/orders/{id}`); `unmatched` for unknown
/// paths, so probing cannot blow up the label set or the span names.
pub fn route_label<B>(request: &axum::http::Request<B>) -> &str {
    request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str())
}

/// Counts every request by method, route template and status, and times it by method and
/// route. Unknown paths are one route, `unmatched`, so probing cannot blow up the label set.
/// The cause of an error answer ([`LoggedCause`]) is logged here, once per request.
pub async fn track(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(request.method()).to_owned();
    let route = route_label(&request).to_owned();
    let response = next.run(request).await;
    let status = response.status();
    if let Some(LoggedCause(cause)) = response.extensions().get::<LoggedCause>() {
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(method = %method, route = %route, status = status.as_u16(), error = %cause, "request failed");
        } else {
            tracing::warn!(method = %method, route = %route, status = status.as_u16(), error = %cause, "dependency unavailable");
        }
    }
    metrics::counter!("shop_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status.as_str().to_owned())
        .increment(1);
    if status.is_server_error() {
        metrics::counter!("shop_http_server_errors_total", "method" => method.clone(), "route" => route.clone()).increment(1);
    }
    metrics::histogram!("shop_http_request_duration_seconds", "method" => method, "route" => route).record(start.elapsed().as_secs_f64());
    response
}
