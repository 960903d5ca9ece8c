//! `/health`: the process answers. `/ready`: every dependency the role cannot work without
//! answers too (the event store, the read-model database of a query node, the Kafka brokers of
//! the relay and of Kafka-fed workers). Dependencies the role can do without (the brokers of
//! `shop serve`, whose relay catches up later) are reported but do not make it unready.
//! `/metrics` asks the same checks at each scrape (`shop_ready`, `shop_dependency_up`) and runs
//! the [`Scrape`]s a role registered: gauges of state kept elsewhere (a reader's lag, a pool).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aide::axum::routing::get_with;
use aide::axum::ApiRouter;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Map, Value};

use crate::error::{ApiError, ErrorCode};
use crate::openapi::Problems as _;

/// The answer of one check: `Err` says why the dependency is not usable (for the log only).
pub type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// A dependency `/ready` asks about.
#[derive(Clone)]
pub struct ReadyCheck {
    pub name: &'static str,
    /// Whether the role is unready while this fails.
    pub required: bool,
    pub check: Arc<dyn Fn() -> CheckFuture + Send + Sync>,
}

impl ReadyCheck {
    pub fn new(name: &'static str, required: bool, check: impl Fn() -> CheckFuture + Send + Sync + 'static) -> Self {
        Self { name, required, check: Arc::new(check) }
    }
}

/// Sets gauges of this process's state when `/metrics` is scraped (errors are logged, not
/// raised: a scrape answers with what it could read).
pub type Scrape = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// How long a check or a scrape may take before it counts as failed (or is left out).
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// What `/ready` checks in this process, in order, and what `/metrics` reads at each scrape.
#[derive(Default)]
pub struct Readiness {
    /// The event store's backend (`sqlite`, `postgresql`), reported in the answer.
    store: Option<&'static str>,
    checks: RwLock<Vec<ReadyCheck>>,
    scrapes: RwLock<Vec<Scrape>>,
}

impl Readiness {
    pub fn new(store: Option<&'static str>) -> Self {
        Self { store, ..Self::default() }
    }

    pub fn add(&self, check: ReadyCheck) {
        self.checks.write().unwrap_or_else(|p| p.into_inner()).push(check);
    }

    /// Runs `scrape` before each `/metrics` answer.
    pub fn on_scrape(&self, scrape: impl Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync + 'static) {
        self.scrapes.write().unwrap_or_else(|p| p.into_inner()).push(Arc::new(scrape));
    }

    fn checks(&self) -> Vec<ReadyCheck> {
        self.checks.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Before a scrape: `shop_ready` (1 when `/ready` would answer 200), `shop_dependency_up`
    /// per check, and every registered [`Scrape`], side by side, each bounded.
    pub async fn scrape(&self) {
        let checks = self.checks();
        let results = futures::future::join_all(checks.iter().map(run)).await;
        let mut ready = true;
        for (c, result) in checks.iter().zip(results) {
            ready &= result.is_ok() || !c.required;
            metrics::gauge!("shop_dependency_up", "dependency" => c.name).set(if result.is_ok() { 1.0 } else { 0.0 });
        }
        metrics::gauge!("shop_ready").set(if ready { 1.0 } else { 0.0 });
        let scrapes: Vec<Scrape> = self.scrapes.read().unwrap_or_else(|p| p.into_inner()).clone();
        futures::future::join_all(scrapes.iter().map(|s| async move {
            if tokio::time::timeout(CHECK_TIMEOUT, s()).await.is_err() {
                tracing::warn!("a metrics scrape took longer than {CHECK_TIMEOUT:?}; its gauges keep their last values");
            }
        }))
        .await;
    }

    /// The report of every check; `Err` at the first required one that fails.
    pub async fn check(&self) -> Result<Value, ApiError> {
        let mut report = Map::new();
        for c in self.checks() {
            match run(&c).await {
                Ok(()) => {
                    report.insert(c.name.to_owned(), json!("ok"));
                }
                // The reason (addresses and all) goes to the log, not to anonymous callers.
                Err(e) if c.required => {
                    return Err(ApiError::new(ErrorCode::Unavailable, format!("{} is not reachable", c.name)).retry_after(1).caused_by(e));
                }
                Err(e) => {
                    tracing::warn!(dependency = c.name, error = %e, "unreachable (not required)");
                    report.insert(c.name.to_owned(), json!("unreachable (not required)"));
                }
            }
        }
        let mut body = json!({ "status": "ready", "dependencies": report });
        if let Some(store) = self.store {
            body["store"] = json!(store);
        }
        Ok(body)
    }
}

/// One check, bounded by [`CHECK_TIMEOUT`].
async fn run(c: &ReadyCheck) -> Result<(), String> {
    match tokio::time::timeout(CHECK_TIMEOUT, (c.check)()).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
    }
}

/// `GET /health`, `GET /ready` and `GET /metrics`, documented.
pub fn router(readiness: Arc<Readiness>) -> ApiRouter {
    ApiRouter::new()
        .api_route("/health", get_with(health, |op| op.describe("health", "operations", "The process answers.")))
        .api_route(
            "/ready",
            get_with(ready, |op| {
                op.describe("ready", "operations", "The store and every dependency the role needs answer.")
                    .problems(&[ErrorCode::Unavailable])
            }),
        )
        .api_route(
            "/metrics",
            get_with(crate::metrics::render, |op| op.describe("metrics", "operations", "Prometheus metrics of this process.")),
        )
        .with_state(readiness)
}

/// The answer of `/health`.
#[derive(serde::Serialize, schemars::JsonSchema)]
struct Health {
    /// Always `ok`: the process answers.
    status: &'static str,
}

async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

async fn ready(State(readiness): State<Arc<Readiness>>) -> Result<Json<Value>, ApiError> {
    readiness.check().await.map(Json)
}
