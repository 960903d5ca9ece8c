//! A payment provider over HTTP for tests: the simulated provider's answers
//! (`domain::payment::SimulatedGateway`) behind the protocol of `saga::HttpGateway`, with a
//! journal of every call (which process asked, under which key), so tests with several saga
//! processes can check what each one asked for.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use domain::payment::{GatewayError, PaymentGateway, SimulatedGateway};
use domain::Money;
use serde_json::{json, Value};

/// One call the provider answered.
#[derive(Debug, Clone)]
pub struct GatewayCall {
    pub operation: String,
    pub key: String,
    /// The caller's `User-Agent` (`shop/<version> (pid <pid>)`).
    pub agent: String,
    pub at: Instant,
}

impl GatewayCall {
    /// The caller's process id, from its `User-Agent`.
    pub fn pid(&self) -> Option<u32> {
        self.agent.rsplit_once("(pid ")?.1.trim_end_matches(')').parse().ok()
    }
}

/// The provider, served on 127.0.0.1 until dropped.
pub struct GatewayServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The bearer key it asks for.
    pub key: String,
    pub ledger: Arc<SimulatedGateway>,
    calls: Arc<Mutex<Vec<GatewayCall>>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Provider {
    key: String,
    ledger: Arc<SimulatedGateway>,
    calls: Arc<Mutex<Vec<GatewayCall>>>,
}

impl GatewayServer {
    pub async fn start() -> Self {
        let key = format!("sk_test_{}", uuid::Uuid::new_v4().simple());
        let ledger = Arc::new(SimulatedGateway::new());
        let calls = Arc::new(Mutex::new(Vec::new()));
        let provider = Provider { key: key.clone(), ledger: Arc::clone(&ledger), calls: Arc::clone(&calls) };
        let app = axum::Router::new().route("/v1/{operation}", axum::routing::post(answer)).with_state(provider);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the gateway");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, key, ledger, calls, task }
    }

    /// Every call answered so far, in the order they came.
    pub fn calls(&self) -> Vec<GatewayCall> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for GatewayServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn money(v: &Value) -> Option<Money> {
    Some(Money::new(v["amount"].as_i64()?, v["currency"].as_str()?.parse().ok()?))
}

async fn answer(
    State(p): State<Provider>,
    Path(operation): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    if header("authorization") != format!("Bearer {}", p.key) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"code": "unauthorised"})));
    }
    let key = header("idempotency-key");
    if key.is_empty() {
        return (StatusCode::BAD_REQUEST, Json(json!({"code": "idempotency_key_missing"})));
    }
    p.calls.lock().unwrap_or_else(|e| e.into_inner()).push(GatewayCall {
        operation: operation.clone(),
        key: key.clone(),
        agent: header("user-agent"),
        at: Instant::now(),
    });
    let reference = body["reference"].as_str().unwrap_or_default();
    let amount = money(&body["amount"]);
    let result = match (operation.as_str(), amount) {
        ("authorise", Some(amount)) => {
            p.ledger.authorise(&key, amount, body["method"].as_str().unwrap_or_default()).await.map(|r| json!({"reference": r}))
        }
        ("capture", Some(amount)) => p.ledger.capture(&key, reference, amount).await.map(|()| json!({})),
        ("void", _) => p.ledger.void(&key, reference).await.map(|()| json!({})),
        ("refund", Some(amount)) => p.ledger.refund(&key, reference, amount).await.map(|()| json!({})),
        _ => return (StatusCode::BAD_REQUEST, Json(json!({"code": "bad_request"}))),
    };
    match result {
        Ok(body) => (StatusCode::OK, Json(body)),
        Err(GatewayError::Declined(code)) => (StatusCode::PAYMENT_REQUIRED, Json(json!({"code": code}))),
        Err(GatewayError::Timeout) => (StatusCode::GATEWAY_TIMEOUT, Json(json!({"code": "timeout"}))),
        Err(GatewayError::Unavailable(_)) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"code": "unavailable"}))),
    }
}
