//! An SMS provider for tests, shaped like Twilio's Messages API (what `notifier::sms::HttpSms`
//! speaks): `POST /2010-04-01/Accounts/<account>/Messages.json`, form-encoded `To`, `From`,
//! `Body`, basic auth with the account and its token. It records every request it answered,
//! and answers as it is told: the next requests with a given status (`429`, `500`), or a
//! number it refuses (`400`, as a provider does for a number it cannot text).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;

/// One request the provider answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsRequest {
    pub to: String,
    pub from: String,
    pub body: String,
    /// The `Idempotency-Key` header.
    pub key: String,
    /// Whether the basic auth was the account and its token.
    pub authorised: bool,
    /// What it answered.
    pub status: u16,
}

#[derive(Default)]
struct Script {
    /// Statuses for the next requests, in order.
    next: VecDeque<u16>,
    refused: HashSet<String>,
    requests: Vec<SmsRequest>,
}

#[derive(Clone)]
struct Provider {
    auth: String,
    script: Arc<Mutex<Script>>,
}

/// The provider, served on 127.0.0.1 until dropped.
pub struct SmsServer {
    /// The Messages endpoint (`SHOP_SMS_URL`).
    pub url: String,
    pub account: String,
    pub token: String,
    script: Arc<Mutex<Script>>,
    task: tokio::task::JoinHandle<()>,
}

impl SmsServer {
    pub async fn start() -> Self {
        let account = format!("AC{}", uuid::Uuid::new_v4().simple());
        let token = uuid::Uuid::new_v4().simple().to_string();
        let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{account}:{token}")));
        let script = Arc::new(Mutex::new(Script::default()));
        let path = format!("/2010-04-01/Accounts/{account}/Messages.json");
        let provider = Provider { auth, script: Arc::clone(&script) };
        let app = axum::Router::new().route(&path, axum::routing::post(answer)).with_state(provider);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the sms provider");
        let url = format!("http://{}{path}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, account, token, script, task }
    }

    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next requests are answered with these statuses, in order (then `201` again).
    pub fn answer_next(&self, statuses: &[u16]) {
        self.script().next.extend(statuses);
    }

    /// Messages to `number` are refused (`400`).
    pub fn refuse(&self, number: &str) {
        self.script().refused.insert(number.to_owned());
    }

    /// Messages to `number` are taken again.
    pub fn accept(&self, number: &str) {
        self.script().refused.remove(number);
    }

    /// Every request answered so far, in the order they came.
    pub fn requests(&self) -> Vec<SmsRequest> {
        self.script().requests.clone()
    }

    /// The messages it took (`201`).
    pub fn sent(&self) -> Vec<SmsRequest> {
        self.requests().into_iter().filter(|r| r.status == 201).collect()
    }
}

impl Drop for SmsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    State(provider): State<Provider>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> (StatusCode, axum::Json<serde_json::Value>) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    let authorised = header("authorization") == provider.auth;
    let mut script = provider.script.lock().unwrap_or_else(|p| p.into_inner());
    let to = field("To");
    let status = if !authorised {
        401
    } else if let Some(status) = script.next.pop_front() {
        status
    } else if script.refused.contains(&to) || to.is_empty() || field("Body").is_empty() {
        400
    } else {
        201
    };
    script.requests.push(SmsRequest {
        to: to.clone(),
        from: field("From"),
        body: field("Body"),
        key: header("idempotency-key"),
        authorised,
        status,
    });
    let body = match status {
        201 => serde_json::json!({"sid": format!("SM{}", uuid::Uuid::new_v4().simple()), "to": to, "status": "queued"}),
        400 => serde_json::json!({"code": 21211, "message": format!("The 'To' number {to} is not a valid phone number.")}),
        _ => serde_json::json!({"message": "try again later"}),
    };
    (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), axum::Json(body))
}
