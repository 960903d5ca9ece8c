//! Spawns a real shop on port 0 against a fresh SQLite file or PostgreSQL database, and
//! talks to it over HTTP; runs the `shop` binary for process tests.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::{fresh_url, scratch_dir, Backend};
use command_api::auth::Registration;
use command_api::AppState;
use domain::user::Role;
use domain::TenantId;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use shop::{Application, Config};
use store::Metadata;

pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    pub state: AppState,
    pub backend: Backend,
    /// The database the shop runs on (the store and the read models).
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// An answer: status, headers and the JSON body (`Null` when empty).
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Option<Self> {
        Self::spawn_configured(backend, |_| {}).await
    }

    /// A shop on a fresh database of `backend`, its configuration changed by `configure`.
    pub async fn spawn_configured(backend: Backend, configure: impl FnOnce(&mut Config)) -> Option<Self> {
        let data_dir = scratch_dir();
        let url = fresh_url(backend, &data_dir).await?;
        Some(Self::spawn_with(backend, data_dir, url, configure).await)
    }

    /// A shop on the database at `url` (of `backend`) with data under `data_dir`, its
    /// configuration changed by `configure` first.
    pub async fn spawn_with(backend: Backend, data_dir: PathBuf, url: String, configure: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::embedded(data_dir.clone());
        config.jwt_secret = Some(http_kit::Secret::new(JWT_SECRET));
        if backend == Backend::Postgres {
            config.database_url = Some(http_kit::Secret::new(url.clone()));
        }
        configure(&mut config);
        let app = Application::build(&config).await.expect("shop builds");
        let base = format!("http://{}", app.addr());
        let state = app.state().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        Self { base, client: reqwest::Client::new(), data_dir, state, backend, url, stop: Some(stop) }
    }

    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>, headers: &[(&str, &str)]) -> Answer {
        let mut req = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("server answers");
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body reads");
        let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Answer { status, headers, body }
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.call(Method::POST, path, token, Some(body), &[]).await
    }

    pub async fn register(&self, email: &str, password: &str) -> Answer {
        self.post("/api/v1/auth/register", None, json!({"email": email, "password": password, "name": "Test User"})).await
    }

    pub async fn login(&self, email: &str, password: &str) -> Answer {
        self.post("/api/v1/auth/login", None, json!({"email": email, "password": password})).await
    }

    /// Registers (if needed) and logs in; returns the access token.
    pub async fn customer_token(&self, email: &str) -> String {
        self.register(email, "correct horse").await;
        let login = self.login(email, "correct horse").await;
        assert_eq!(login.status, StatusCode::OK, "{:?}", login.body);
        login.body["access_token"].as_str().expect("token").to_owned()
    }

    /// Creates an admin of `tenant` the way `shop user create` does, and logs in.
    pub async fn admin_token_in(&self, tenant: &str, email: &str) -> String {
        let tenant: TenantId = tenant.parse().expect("valid tenant");
        let registration = Registration {
            email: email.parse().expect("valid"),
            password: "admin password".parse().expect("valid"),
            name: "Admin".parse().expect("valid"),
        };
        let roles = BTreeSet::from([Role::Customer, Role::Admin]);
        command_api::users::register_user(&self.state, &tenant, registration, roles, &Metadata::default()).await.expect("admin registers");
        let login = self
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"email": email, "password": "admin password"})),
                &[("x-tenant", tenant.as_str())],
            )
            .await;
        assert_eq!(login.status, StatusCode::OK, "{:?}", login.body);
        login.body["access_token"].as_str().expect("token").to_owned()
    }

    pub async fn admin_token(&self) -> String {
        self.admin_token_in("default", "admin@example.com").await
    }

    pub async fn create_product(&self, token: &str, sku: &str) -> Answer {
        self.post(
            "/api/v1/products",
            Some(token),
            json!({
                "sku": sku, "name": "Phone", "description": "A phone", "category": "electronics/phones",
                "price": {"amount": 19900, "currency": "EUR"}, "attributes": {"colour": "black"}
            }),
        )
        .await
    }

    /// A published product `sku` at `amount` cents (EUR) with `units` in stock; its id.
    pub async fn stocked(&self, admin: &str, sku: &str, amount: i64, units: i64) -> String {
        let created = self
            .post(
                "/api/v1/products",
                Some(admin),
                json!({"sku": sku, "name": format!("Item {sku}"), "category": "misc", "price": {"amount": amount, "currency": "EUR"}}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
        let id = created.body["id"].as_str().expect("id").to_owned();
        assert!(self.post(&format!("/api/v1/products/{id}/publish"), Some(admin), json!({})).await.status.is_success());
        let received = self.post(&format!("/api/v1/stock/{sku}/receipts"), Some(admin), json!({"quantity": units})).await;
        assert!(received.status.is_success(), "{:?}", received.body);
        id
    }

    /// Files in the mail outbox, oldest first.
    pub fn outbox(&self) -> Vec<String> {
        let dir = self.data_dir.join("outbox");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "eml")).collect())
            .unwrap_or_default();
        files.sort();
        files.iter().map(|p| std::fs::read_to_string(p).expect("mail reads")).collect()
    }
}

/// A shop process reached over HTTP at `base` (`http://127.0.0.1:<port>`).
pub struct Remote {
    pub base: String,
    pub http: reqwest::Client,
}

impl Remote {
    pub fn new(base: String) -> Self {
        Self { base, http: reqwest::Client::new() }
    }

    /// `path` from the root (`/api/v1/...`); the body as JSON, or as a string when it is not.
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("answers");
        let status = res.status();
        let text = res.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// A successful login's answer.
    pub async fn login(&self, email: &str, password: &str) -> Value {
        let (status, body) = self.post("/api/v1/auth/login", None, json!({"email": email, "password": password})).await;
        assert_eq!(status, StatusCode::OK, "{body:?}");
        body
    }
}

/// The `shop` binary the tests run: `SHOP_BIN`, else `target/<profile>/shop` beside the test
/// binary that runs (cargo builds it for the `shop` crate's tests).
pub fn shop_bin() -> std::path::PathBuf {
    if let Some(bin) = std::env::var_os("SHOP_BIN") {
        return bin.into();
    }
    // A test binary lives in `target/<profile>/deps/`.
    let exe = std::env::current_exe().expect("the test binary has a path");
    exe.parent().and_then(|deps| deps.parent()).map(|profile| profile.join("shop")).expect("target/<profile>/shop")
}

/// A child process (a `shop`, a consumer, a driver) killed when dropped: when the test ends,
/// passed or failed.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real `shop` binary in embedded mode on `dir` and `port`, with none of the caller's
/// settings (`SHOP_*`, `OTEL_*`, server URLs) inherited.
pub fn binary(dir: &std::path::Path, port: u16) -> std::process::Command {
    let mut cmd = std::process::Command::new(shop_bin());
    for (key, _) in std::env::vars() {
        let server = ["DATABASE_URL", "KAFKA_BROKERS", "REDIS_URL", "SMTP_URL"].contains(&key.as_str());
        if key.starts_with("SHOP_") || key.starts_with("OTEL_") || server {
            cmd.env_remove(key);
        }
    }
    cmd.env("SHOP_DATA_DIR", dir).env("SHOP_HTTP_ADDR", format!("127.0.0.1:{port}"));
    cmd
}

/// `shop user create --role admin` as the README runs it, the password on standard input.
pub fn create_admin(dir: &std::path::Path, email: &str, password: &str) {
    use std::io::Write;
    use std::process::Stdio;
    let mut create = binary(dir, 0)
        .args(["user", "create", "--email", email, "--role", "admin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("user create");
    create.stdin.take().expect("stdin").write_all(format!("{password}\n").as_bytes()).expect("password");
    assert!(create.wait().expect("user create ends").success());
}
