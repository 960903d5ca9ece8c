//! The real binary, killed with SIGKILL and started again: nothing acknowledged is lost.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::{both_backends, Backend, TestStore};

const BIN: &str = env!("CARGO_BIN_EXE_shop");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn command(dir: &Path, url: Option<&str>, port: u16) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env("SHOP_DATA_DIR", dir).env("SHOP_HTTP_ADDR", format!("127.0.0.1:{port}")).env_remove("DATABASE_URL");
    cmd.env_remove("SHOP_JWT_SECRET").env_remove("KAFKA_BROKERS");
    if let Some(url) = url {
        cmd.env("DATABASE_URL", url).env("SHOP_JWT_SECRET", "restart-test-secret-restart-test-secret");
    }
    cmd
}

async fn start(dir: &Path, url: Option<&str>, port: u16) -> Child {
    serving(command(dir, url, port), port).await
}

/// Runs `shop serve` from `command` and waits until it is ready.
async fn serving(mut command: Command, port: u16) -> Child {
    let mut child = command.arg("serve").stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("shop starts");
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client.get(format!("http://127.0.0.1:{port}/ready")).send().await.is_ok_and(|r| r.status().is_success()) {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("shop did not become ready");
}

/// `shop user create` of the admin `root@example.com` (password `root password`); the id it
/// prints.
fn create_root(dir: &Path, url: Option<&str>) -> String {
    let mut create = command(dir, url, 0)
        .args(["user", "create", "--email", "root@example.com", "--role", "admin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("user create runs");
    create.stdin.take().expect("stdin").write_all(b"root password\n").expect("password written");
    let out = create.wait_with_output().expect("user create finishes");
    assert!(out.status.success());
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

async fn post(port: u16, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new().post(format!("http://127.0.0.1:{port}{path}")).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.expect("answers");
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn survives_kill_9(t: TestStore) {
    let dir = t.dir.clone();
    let url = (t.backend == Backend::Postgres).then(|| t.url.clone());
    let port = free_port();
    let mut shop = start(&dir, url.as_deref(), port).await;

    let admin_id = create_root(&dir, url.as_deref());
    assert!(admin_id.parse::<uuid::Uuid>().is_ok(), "prints the new id: {admin_id}");

    let (status, login) = post(port, "/api/v1/auth/login", None, json!({"email": "root@example.com", "password": "root password"})).await;
    assert_eq!(status, StatusCode::OK);
    let token = login["access_token"].as_str().expect("token").to_owned();
    let product = json!({"sku": "KEEP-1", "name": "Kept", "category": "misc", "price": {"amount": 100, "currency": "EUR"}});
    assert_eq!(post(port, "/api/v1/products", Some(&token), product.clone()).await.0, StatusCode::CREATED);
    let (status, receipt) = post(port, "/api/v1/stock/KEEP-1/receipts", Some(&token), json!({"quantity": 5})).await;
    assert_eq!((status, receipt["version"].as_u64()), (StatusCode::OK, Some(1)));

    shop.kill().expect("SIGKILL");
    shop.wait().expect("reaped");
    let mut shop = start(&dir, url.as_deref(), port).await;

    // The signing key survived too, so the old access token still works.
    let (status, receipt) = post(port, "/api/v1/stock/KEEP-1/receipts", Some(&token), json!({"quantity": 5})).await;
    assert_eq!((status, receipt["version"].as_u64()), (StatusCode::OK, Some(2)), "{receipt:?}");
    assert_eq!(post(port, "/api/v1/products", Some(&token), product).await.0, StatusCode::CONFLICT);
    let (status, _) = post(port, "/api/v1/auth/login", None, json!({"email": "root@example.com", "password": "root password"})).await;
    assert_eq!(status, StatusCode::OK);

    shop.kill().expect("SIGKILL");
    shop.wait().expect("reaped");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `shop replay` rebuilds the read models of a running shop; queries keep answering.
async fn replay_while_serving(t: TestStore) {
    let dir = t.dir.clone();
    let url = (t.backend == Backend::Postgres).then(|| t.url.clone());
    let port = free_port();
    let mut shop = start(&dir, url.as_deref(), port).await;
    for i in 0..20 {
        let (status, _) = post(
            port,
            "/api/v1/auth/register",
            None,
            json!({"email": format!("u{i}@example.com"), "password": "correct horse", "name": "U"}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let dry = command(&dir, url.as_deref(), port).args(["replay", "--all", "--dry-run"]).output().expect("replay runs");
    assert!(dry.status.success());
    assert!(String::from_utf8_lossy(&dry.stdout).contains("users: would rebuild table rm_users"));
    let unknown = command(&dir, url.as_deref(), port).args(["replay", "nope"]).output().expect("replay runs");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown projection"));
    let replay = command(&dir, url.as_deref(), port).args(["replay", "--all"]).output().expect("replay runs");
    assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stderr));
    let out = String::from_utf8_lossy(&replay.stdout);
    for name in ["catalogue", "stock", "users", "search"] {
        assert!(out.lines().any(|l| l.starts_with(&format!("{name}: ")) && l.contains("swapped in")), "{out}");
    }
    assert!(out.contains("product_detail: kept in process"), "{out}");
    // The running shop moves to the rebuilt search index and removes the old one.
    let search_dir = dir.join("search");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_dir(&search_dir).expect("search dir").filter(|e| e.as_ref().is_ok_and(|e| e.path().is_dir())).count() > 1 {
        assert!(std::time::Instant::now() < deadline, "the old search index was never removed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let search = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/api/v1/products/search?q=lamp"))
        .header("x-tenant", "default")
        .send()
        .await
        .expect("answers");
    assert_eq!(search.status(), StatusCode::OK);
    // The rebuilt users table still answers, with every user.
    let (_, login) = post(port, "/api/v1/auth/login", None, json!({"email": "u0@example.com", "password": "correct horse"})).await;
    let token = login["access_token"].as_str().expect("token").to_owned();
    let me =
        reqwest::Client::new().get(format!("http://127.0.0.1:{port}/api/v1/users/me")).bearer_auth(&token).send().await.expect("answers");
    assert_eq!(me.status(), StatusCode::OK);
    let me: Value = me.json().await.expect("json");
    assert_eq!(me["email"], "u0@example.com");
    shop.kill().expect("SIGKILL");
    shop.wait().expect("reaped");
    let _ = std::fs::remove_dir_all(&dir);
}

both_backends!(fn survives_kill_9, fn replay_while_serving);

/// A keyed request whose process dies between the commit of its events and the answer (a
/// fault point that aborts like `kill -9`): the retry with the same key, on the restarted
/// process, gets the first effect's answer and runs nothing again.
/// A shop with the root admin whose process aborts after the commit of a keyed request, before
/// its answer: (data dir, database url, port, the process).
async fn crashing_shop(t: &TestStore) -> (std::path::PathBuf, Option<String>, u16, Child) {
    assert!(cfg!(feature = "faults"), "the fault point needs `--features faults` (the test command builds with --all-features)");
    let dir = t.dir.clone();
    let url = (t.backend == Backend::Postgres).then(|| t.url.clone());
    let port = free_port();
    create_root(&dir, url.as_deref());
    let mut faulty = command(&dir, url.as_deref(), port);
    faulty.env("SHOP_FAULT_CRASH_AFTER_COMMIT", "1");
    let crashing = serving(faulty, port).await;
    (dir, url, port, crashing)
}

async fn a_keyed_request_has_one_effect_across_a_crash(t: TestStore) {
    let (dir, url, port, mut crashing) = crashing_shop(&t).await;
    let client = reqwest::Client::new();
    let (status, login) = post(port, "/api/v1/auth/login", None, json!({"email": "root@example.com", "password": "root password"})).await;
    assert_eq!(status, StatusCode::OK);
    let token = login["access_token"].as_str().expect("token").to_owned();
    let product = json!({"sku": "ONCE-1", "name": "Once", "category": "misc", "price": {"amount": 100, "currency": "EUR"}});
    assert_eq!(post(port, "/api/v1/products", Some(&token), product).await.0, StatusCode::CREATED, "unkeyed: no fault point");
    // A stock receipt has no natural uniqueness: run twice, it would count twice.
    let keyed = || {
        client
            .post(format!("http://127.0.0.1:{port}/api/v1/stock/ONCE-1/receipts"))
            .bearer_auth(&token)
            .header("idempotency-key", "receipt-once-1")
            .json(&json!({"quantity": 5}))
    };
    let first = keyed().send().await;
    assert!(first.is_err(), "the process died before answering: {first:?}");
    let exit = crashing.wait().expect("reaped");
    assert!(!exit.success(), "aborted at the fault point");

    let mut shop = start(&dir, url.as_deref(), port).await;
    let retry = keyed().send().await.expect("answers");
    assert_eq!(retry.status(), StatusCode::OK);
    assert_eq!(retry.headers().get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    let answer: Value = retry.json().await.expect("json");
    assert_eq!((answer["id"].as_str(), answer["version"].as_u64()), (Some("ONCE-1"), Some(1)), "the first effect: {answer}");
    assert!(answer["position"].as_i64().is_some_and(|p| p > 0), "{answer}");
    // The receipt did not run again: the next one is the stock's second event.
    let (status, next) = post(port, "/api/v1/stock/ONCE-1/receipts", Some(&token), json!({"quantity": 1})).await;
    assert_eq!((status, next["version"].as_u64()), (StatusCode::OK, Some(2)), "one effect: {next}");
    shop.kill().expect("SIGKILL");
    shop.wait().expect("reaped");
    let _ = std::fs::remove_dir_all(&dir);
}

both_backends!(fn a_keyed_request_has_one_effect_across_a_crash);

/// A checkout whose process dies between the commit of the order, the cart's `checked_out`
/// and the redemption, and its answer: the retry with the same key, on the restarted process,
/// gets that order, and the cart holds that one order.
async fn a_checkout_has_one_order_across_a_crash(t: TestStore) {
    let (dir, url, port, mut crashing) = crashing_shop(&t).await;
    let login = |email: &'static str, password: &'static str| async move {
        let (status, body) = post(port, "/api/v1/auth/login", None, json!({"email": email, "password": password})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().expect("token").to_owned()
    };
    let root = login("root@example.com", "root password").await;
    let product = json!({"sku": "CRASH-1", "name": "Crash", "category": "misc", "price": {"amount": 700, "currency": "EUR"}});
    let (_, created) = post(port, "/api/v1/products", Some(&root), product).await;
    let id = created["id"].as_str().expect("product id").to_owned();
    post(port, &format!("/api/v1/products/{id}/publish"), Some(&root), json!({})).await;
    post(port, "/api/v1/stock/CRASH-1/receipts", Some(&root), json!({"quantity": 5})).await;
    post(port, "/api/v1/promotions", Some(&root), json!({"code": "ONCE", "kind": "percentage", "percentage_bp": 1000, "usage_limit": 1}))
        .await;
    let (status, _) =
        post(port, "/api/v1/auth/register", None, json!({"email": "ada@example.com", "password": "correct horse", "name": "Ada"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let ada = login("ada@example.com", "correct horse").await;
    let (_, cart) = post(port, "/api/v1/carts", Some(&ada), json!({})).await;
    let cart = cart["id"].as_str().expect("cart id").to_owned();
    assert_eq!(
        post(port, &format!("/api/v1/carts/{cart}/lines"), Some(&ada), json!({"sku": "CRASH-1", "quantity": 2})).await.0,
        StatusCode::OK
    );
    assert_eq!(post(port, &format!("/api/v1/carts/{cart}/discount"), Some(&ada), json!({"code": "ONCE"})).await.0, StatusCode::OK);
    let body = json!({
        "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"},
        "payment_method": "tok_approve"
    });
    let client = reqwest::Client::new();
    let keyed = || {
        client
            .post(format!("http://127.0.0.1:{port}/api/v1/carts/{cart}/checkout"))
            .bearer_auth(&ada)
            .header("idempotency-key", "checkout-once")
            .json(&body)
    };
    let first = keyed().send().await;
    assert!(first.is_err(), "the process died before answering: {first:?}");
    assert!(!crashing.wait().expect("reaped").success(), "aborted at the fault point");

    let mut shop = start(&dir, url.as_deref(), port).await;
    let retry = keyed().send().await.expect("answers");
    assert_eq!(retry.status(), StatusCode::ACCEPTED);
    assert_eq!(retry.headers().get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    let answer: Value = retry.json().await.expect("json");
    let get = |path: String, token: String| async move {
        let res = reqwest::Client::new().get(format!("http://127.0.0.1:{port}{path}")).bearer_auth(token).send().await.expect("answers");
        res.json::<Value>().await.expect("json")
    };
    let shown = get(format!("/api/v1/carts/{cart}"), ada.clone()).await;
    assert_eq!((shown["status"].as_str(), &shown["order_id"]), (Some("checked_out"), &answer["id"]), "the cart's one order: {shown}");
    let code = get("/api/v1/promotions/ONCE".to_owned(), root.clone()).await;
    assert_eq!(code["uses"], 1, "redeemed once: {code}");
    shop.kill().expect("SIGKILL");
    shop.wait().expect("reaped");
    let _ = std::fs::remove_dir_all(&dir);
}

both_backends!(fn a_checkout_has_one_order_across_a_crash);
