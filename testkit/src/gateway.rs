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
use saga::{GatewayAnswer, GatewayRequest};

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

/// An answer with only a decline's (or an error's) code.
fn code(status: StatusCode, code: &str) -> (StatusCode, Json<GatewayAnswer>) {
    (status, Json(GatewayAnswer { code: Some(code.to_owned()), reference: None }))
}

async fn answer(
    State(p): State<Provider>,
    Path(operation): Path<String>,
    headers: HeaderMap,
    Json(body): Json<GatewayRequest>,
) -> (StatusCode, Json<GatewayAnswer>) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    if header("authorization") != format!("Bearer {}", p.key) {
        return code(StatusCode::UNAUTHORIZED, "unauthorised");
    }
    let key = header("idempotency-key");
    if key.is_empty() {
        return code(StatusCode::BAD_REQUEST, "idempotency_key_missing");
    }
    p.calls.lock().unwrap_or_else(|e| e.into_inner()).push(GatewayCall {
        operation: operation.clone(),
        key: key.clone(),
        agent: header("user-agent"),
        at: Instant::now(),
    });
    let reference = body.reference.as_deref().unwrap_or_default();
    let result = match (operation.as_str(), body.amount) {
        ("authorise", Some(amount)) => p
            .ledger
            .authorise(&key, amount, body.method.as_deref().unwrap_or_default())
            .await
            .map(|r| GatewayAnswer { reference: Some(r), code: None }),
        ("capture", Some(amount)) => p.ledger.capture(&key, reference, amount).await.map(|()| GatewayAnswer::default()),
        ("void", _) => p.ledger.void(&key, reference).await.map(|()| GatewayAnswer::default()),
        ("refund", Some(amount)) => p.ledger.refund(&key, reference, amount).await.map(|()| GatewayAnswer::default()),
        _ => return code(StatusCode::BAD_REQUEST, "bad_request"),
    };
    match result {
        Ok(body) => (StatusCode::OK, Json(body)),
        Err(GatewayError::Declined(reason)) => code(StatusCode::PAYMENT_REQUIRED, &reason),
        Err(GatewayError::Timeout) => code(StatusCode::GATEWAY_TIMEOUT, "timeout"),
        Err(GatewayError::Unavailable(_)) => code(StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    }
}
