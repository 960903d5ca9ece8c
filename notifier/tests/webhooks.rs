//! Webhooks against a real HTTP receiver on 127.0.0.1: signatures check out, a failing
//! endpoint is retried and then dead-lettered and can be redelivered by hand, a slow endpoint
//! does not hold back a fast one, and re-delivered events send nothing new.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use command_api::mail::OutboxMailer;
use domain::stock::{Stock, StockCommand};
use domain::{stream_id, Quantity, Sku, TenantId};
use notifier::webhooks::{self, DispatchConfig, Dispatcher};
use notifier::{Notifier, NotifierConfig, Templates};
use projections::both_backends;
use projections::testkit::TestStore;
use projections::ReadDb;
use store::{Metadata, Repository};

/// What the receiver saw: per path, the `Shop-Event-Id`s of the requests it accepted, and how
/// many it refused.
#[derive(Default)]
struct Receiver {
    accepted: HashMap<String, Vec<String>>,
    refused: HashMap<String, usize>,
    /// Secrets by path, to check signatures.
    secrets: HashMap<String, String>,
    /// Paths that answer 500 for now.
    failing: Vec<String>,
    bad_signatures: usize,
}

type Shared = Arc<Mutex<Receiver>>;

async fn receive(State(shared): State<Shared>, Path(path): Path<String>, headers: HeaderMap, body: String) -> StatusCode {
    if path == "slow" {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    let mut r = shared.lock().expect("receiver");
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let signature = header("shop-signature");
    let t: i64 = signature.strip_prefix("t=").and_then(|s| s.split(',').next()).and_then(|t| t.parse().ok()).unwrap_or(0);
    let expected = r.secrets.get(&path).map(|secret| webhooks::signature(secret, t, &body));
    if expected.as_deref() != Some(signature.as_str()) || (chrono::Utc::now().timestamp() - t).abs() > 300 {
        r.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let envelope: serde_json::Value = serde_json::from_str(&body).expect("json body");
    assert_eq!(envelope["id"].as_str(), Some(header("shop-event-id").as_str()), "the header names the envelope");
    if r.failing.contains(&path) {
        *r.refused.entry(path).or_default() += 1;
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    r.accepted.entry(path).or_default().push(header("shop-event-id"));
    StatusCode::OK
}

async fn receiver() -> (String, Shared) {
    let shared: Shared = Arc::default();
    let app = Router::new().route("/hook/{path}", post(receive)).with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("receiver serves") });
    (base, shared)
}

fn tenant() -> TenantId {
    "acme".parse().expect("valid")
}

async fn receive_stock(t: &TestStore, sku: &str, n: i64) {
    let stock = Repository::<Stock>::new(t.store.clone(), ());
    let sku: Sku = sku.parse().expect("valid");
    let command = StockCommand::Receive { tenant: tenant(), sku: sku.clone(), quantity: Quantity::try_from(n).expect("valid") };
    stock.execute(&stream_id(&tenant(), &sku), command, None, &Metadata::default()).await.expect("receive");
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

both_backends!(webhooks_are_signed_retried_dead_lettered_and_never_held_back, |t: TestStore| async move {
    let db = ReadDb::connect(&t.url, 8).await.expect("read db");
    db.migrate(&projections::all()).await.expect("schema");
    Notifier::migrate(&db).await.expect("notifier schema");
    let (base, shared) = receiver().await;
    let mut endpoints = HashMap::new();
    for (path, types) in [("fast", vec!["stock.*"]), ("flaky", vec!["stock.received"]), ("slow", vec!["*"]), ("down", vec!["stock.received"]), ("other", vec!["order.*"])] {
        let registered = webhooks::register(&db, "acme", &format!("{base}/{path}"), types.into_iter().map(str::to_owned).collect())
            .await
            .expect("db")
            .expect("valid endpoint");
        shared.lock().expect("receiver").secrets.insert(path.to_owned(), registered.secret.clone().expect("secret at registration"));
        endpoints.insert(path, registered.id);
    }
    assert_eq!(
        webhooks::register(&db, "acme", "ftp://x", vec!["stock.*".into()]).await.expect("db"),
        Err(webhooks::InvalidEndpoint::Url)
    );
    assert_eq!(webhooks::register(&db, "acme", "http://x", vec!["Stock".into()]).await.expect("db"), Err(webhooks::InvalidEndpoint::EventTypes));
    assert_eq!(webhooks::list(&db, "acme").await.expect("list").len(), 5);
    assert!(webhooks::list(&db, "acme").await.expect("list").iter().all(|e| e.secret.is_none()), "secrets are not listed");

    // `flaky` fails its first requests; `down` fails every one.
    shared.lock().expect("receiver").failing = vec!["flaky".into(), "down".into()];
    for (sku, n) in [("LAMP-1", 3), ("LAMP-2", 4)] {
        receive_stock(&t, sku, n).await;
    }
    let dir = store::testkit::scratch_dir();
    let notifier = Notifier::new(t.store.clone(), db.clone(), Arc::new(OutboxMailer::new(dir.clone())), Templates::default(), NotifierConfig::default());
    let dispatcher = Arc::new(Dispatcher::new(
        db.clone(),
        DispatchConfig { max_attempts: 5, timeout: Duration::from_secs(60), base_backoff: Duration::from_millis(200) },
    ));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let worker = {
        let (dispatcher, stop) = (dispatcher.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                dispatcher.round().await.expect("dispatch");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    pass_log(&t, &db, &notifier).await;

    // The fast endpoint has both events while the slow one is still on its first.
    let accepted = |path: &str| shared.lock().expect("receiver").accepted.get(path).map_or(0, Vec::len);
    wait_until("fast deliveries", || accepted("fast") == 2).await;
    assert_eq!(accepted("slow"), 0, "the slow endpoint is still busy with its first request");
    assert_eq!(accepted("other"), 0, "order.* takes no stock events");

    // `flaky` recovers: its two deliveries arrive in order after retries.
    wait_until("flaky to be refused at least twice", || shared.lock().expect("receiver").refused.get("flaky").copied().unwrap_or(0) >= 2).await;
    shared.lock().expect("receiver").failing.retain(|p| p != "flaky");
    wait_until("flaky deliveries", || accepted("flaky") == 2).await;
    {
        let r = shared.lock().expect("receiver");
        assert_eq!(r.accepted["flaky"], r.accepted["fast"], "in log order, same ids");
    }

    // `down` is dead-lettered after 3 attempts; by hand it is sent again once it is back.
    let down = endpoints["down"].clone();
    let mut dead = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while dead.is_empty() {
        assert!(Instant::now() < deadline, "never dead-lettered");
        dead = webhooks::deliveries(&db, "acme", &down, 10).await.expect("db").expect("endpoint").into_iter().filter(|d| d.status == "dead").collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!((dead[0].attempts, dead[0].last_error.as_deref()), (5, Some("endpoint answered 500 Internal Server Error")));
    shared.lock().expect("receiver").failing.clear();
    assert!(webhooks::redeliver(&db, "acme", &down, &dead[0].id).await.expect("db"));
    wait_until("the redelivered message", || accepted("down") >= 1).await;
    assert!(!webhooks::redeliver(&db, "globex", &down, &dead[0].id).await.expect("db"), "another tenant cannot touch it");
    assert_eq!(shared.lock().expect("receiver").bad_signatures, 0);

    // Events delivered again queue nothing new.
    let rows_before = count_rows(&db).await;
    sqlx::query("DELETE FROM projection_checkpoints WHERE name = 'notifier'").execute(&db.pool).await.expect("reset");
    pass_log(&t, &db, &notifier).await;
    assert_eq!(count_rows(&db).await, rows_before);

    // A rotated secret signs from the next request on; a deleted endpoint gets nothing more.
    let fast = endpoints["fast"].clone();
    let secret = webhooks::rotate_secret(&db, "acme", &fast).await.expect("db").expect("endpoint");
    shared.lock().expect("receiver").secrets.insert("fast".into(), secret);
    assert!(webhooks::delete(&db, "acme", &endpoints["flaky"]).await.expect("db"));
    receive_stock(&t, "LAMP-3", 1).await;
    pass_log(&t, &db, &notifier).await;
    wait_until("the third event at fast", || accepted("fast") == 3).await;
    assert_eq!(accepted("flaky"), 2);
    assert_eq!(shared.lock().expect("receiver").bad_signatures, 0, "the new secret signed it");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = worker.await;
    let _ = std::fs::remove_dir_all(dir);
});

async fn count_rows(db: &ReadDb) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM notifier_deliveries WHERE channel = 'webhook'").fetch_one(&db.pool).await.expect("count")
}

async fn checkpoint(db: &ReadDb) -> i64 {
    let mut conn = db.pool.acquire().await.expect("conn");
    projections::read_checkpoint(&mut conn, notifier::NAME).await.expect("checkpoint").map_or(0, |(c, _)| c.position)
}

/// Runs the notifier until its checkpoint has passed the whole log.
async fn pass_log(t: &TestStore, db: &ReadDb, notifier: &Notifier) {
    let head = t.store.head_position().await.expect("head");
    let deadline = Instant::now() + Duration::from_secs(20);
    while checkpoint(db).await < head {
        notifier.step().await.expect("notifier round");
        assert!(Instant::now() < deadline, "the notifier did not pass the log");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
