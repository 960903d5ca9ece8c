//! Webhooks against a real HTTP receiver on 127.0.0.1: signatures check out, a failing
//! endpoint is retried and then dead-lettered and can be redelivered by hand, a slow endpoint
//! does not hold back a fast one, and re-delivered events send nothing new. `https://`
//! endpoints are verified against trusted roots, and a dispatcher killed around a request sends
//! at most that one request again, with the same `Shop-Event-Id`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use domain::stock::{Stock, StockCommand};
use domain::{stream_id, Quantity, Sku, TenantId};
use mailer::OutboxMailer;
use mailer::Templates;
use notifier::targets::TargetPolicy;
use notifier::webhooks::{self, DispatchConfig, Dispatcher};
use notifier::{DeliveryStatus, Notifier, NotifierConfig};
use store::{Metadata, Repository};
use testkit::both_backends;
use testkit::TestStore;
use worker_kit::Driver;
use worker_kit::ReadDb;

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

/// The same receiver over HTTPS, with a certificate for 127.0.0.1 issued by a fresh test CA;
/// also answers the CA's certificate as PEM.
async fn tls_receiver() -> (String, Shared, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("params")
        .signed_by(&key, &ca, &ca_key)
        .expect("certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()))
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let shared: Shared = Arc::default();
    let app = Router::new().route("/hook/{path}", post(receive)).with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("https://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                // A client that does not trust the CA hangs up during the handshake.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(tls), service).await;
            });
        }
    });
    (base, shared, ca.pem())
}

/// The test's receivers listen on 127.0.0.1, over plain http mostly: allowed here only.
const LOCAL: TargetPolicy = TargetPolicy { allow_private: true, allow_http: true };

fn local_rules() -> webhooks::RegistrationRules {
    webhooks::RegistrationRules { policy: LOCAL, ..webhooks::RegistrationRules::default() }
}

fn local() -> DispatchConfig {
    DispatchConfig { policy: LOCAL, ..DispatchConfig::default() }
}

async fn register_at(db: &ReadDb, shared: &Shared, url: &str, path: &str) -> String {
    let registered = webhooks::register(db, "acme", url, vec!["stock.*".into()], local_rules()).await.expect("db").expect("valid endpoint");
    shared.lock().expect("receiver").secrets.insert(path.to_owned(), registered.secret.clone().expect("secret at registration"));
    registered.id
}

/// Runs rounds of `dispatcher` until `done` holds.
async fn dispatch_until(dispatcher: &Dispatcher, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        dispatcher.round().await.expect("dispatch");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn statuses(db: &ReadDb, endpoint: &str) -> Vec<webhooks::WebhookDelivery> {
    let mut list = webhooks::deliveries(db, "acme", endpoint, 100).await.expect("db").expect("endpoint");
    list.reverse();
    list
}

/// The read models' schema, and a notifier whose mail goes to a scratch outbox.
async fn setup(t: &TestStore) -> (ReadDb, Driver<Notifier>, std::path::PathBuf) {
    let db = ReadDb::connect(&t.url, 8).await.expect("read db");
    db.migrate().await.expect("schema");
    let dir = testkit::scratch_dir();
    let mailer = Arc::new(OutboxMailer::new(dir.clone()));
    let notifier = Arc::new(Notifier::new(t.store.clone(), db.clone(), mailer, Arc::new(Templates::default()), NotifierConfig::default()));
    (db, notifier.driver(), dir)
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
    let (db, notifier, dir) = setup(&t).await;
    let (base, shared) = receiver().await;
    let mut endpoints = HashMap::new();
    for (path, types) in [
        ("fast", vec!["stock.*"]),
        ("flaky", vec!["stock.received"]),
        ("slow", vec!["*"]),
        ("down", vec!["stock.received"]),
        ("other", vec!["order.*"]),
    ] {
        let registered =
            webhooks::register(&db, "acme", &format!("{base}/{path}"), types.into_iter().map(str::to_owned).collect(), local_rules())
                .await
                .expect("db")
                .expect("valid endpoint");
        shared.lock().expect("receiver").secrets.insert(path.to_owned(), registered.secret.clone().expect("secret at registration"));
        endpoints.insert(path, registered.id);
    }
    assert_eq!(
        webhooks::register(&db, "acme", "ftp://x", vec!["stock.*".into()], local_rules()).await.expect("db"),
        Err(webhooks::InvalidEndpoint::Target(notifier::targets::Refused::NotHttps))
    );
    assert_eq!(
        webhooks::register(&db, "acme", "http://127.0.0.1/x", vec!["Stock".into()], local_rules()).await.expect("db"),
        Err(webhooks::InvalidEndpoint::EventTypes)
    );
    assert_eq!(webhooks::list(&db, "acme").await.expect("list").len(), 5);
    assert!(webhooks::list(&db, "acme").await.expect("list").iter().all(|e| e.secret.is_none()), "secrets are not listed");

    // `flaky` fails its first requests; `down` fails every one.
    shared.lock().expect("receiver").failing = vec!["flaky".into(), "down".into()];
    for (sku, n) in [("LAMP-1", 3), ("LAMP-2", 4)] {
        receive_stock(&t, sku, n).await;
    }
    let dispatcher = Arc::new(
        Dispatcher::new(
            db.clone(),
            DispatchConfig { max_attempts: 5, timeout: Duration::from_secs(60), base_backoff: Duration::from_millis(200), ..local() },
        )
        .expect("dispatcher"),
    );
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
    wait_until("flaky to be refused at least twice", || shared.lock().expect("receiver").refused.get("flaky").copied().unwrap_or(0) >= 2)
        .await;
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
        dead = webhooks::deliveries(&db, "acme", &down, 10)
            .await
            .expect("db")
            .expect("endpoint")
            .into_iter()
            .filter(|d| d.status == DeliveryStatus::Dead)
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!((dead[0].attempts, dead[0].last_error.as_deref()), (5, Some("http_status 500")));
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
    worker_kit::read_checkpoint(&mut conn, notifier::NAME).await.expect("checkpoint").map_or(0, |(c, _)| c.position)
}

/// Runs the notifier until its checkpoint has passed the whole log.
async fn pass_log(t: &TestStore, db: &ReadDb, notifier: &Driver<Notifier>) {
    let head = t.store.head_position().await.expect("head");
    let deadline = Instant::now() + Duration::from_secs(20);
    while checkpoint(db).await < head {
        notifier.try_process_next().await.expect("notifier round");
        assert!(Instant::now() < deadline, "the notifier did not pass the log");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

both_backends!(https_endpoints_are_verified_against_the_trusted_roots, |t: TestStore| async move {
    let (db, notifier, dir) = setup(&t).await;
    let (base, shared, ca_pem) = tls_receiver().await;
    let endpoint = register_at(&db, &shared, &format!("{base}/tls"), "tls").await;
    receive_stock(&t, "TLS-1", 2).await;
    pass_log(&t, &db, &notifier).await;

    // Without the test CA the certificate is refused: the attempt fails and nothing arrives.
    let config = DispatchConfig { base_backoff: Duration::from_millis(50), ..local() };
    let untrusting = Dispatcher::new(db.clone(), config.clone()).expect("dispatcher");
    let mut failed = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while failed.is_none() {
        assert!(Instant::now() < deadline, "the untrusted attempt never failed");
        untrusting.round().await.expect("dispatch");
        tokio::time::sleep(Duration::from_millis(20)).await;
        failed = statuses(&db, &endpoint).await.into_iter().find(|d| d.status == DeliveryStatus::Failed);
    }
    let error = failed.and_then(|d| d.last_error).unwrap_or_default();
    assert_eq!(error, "tls", "the failure is a category, not the error's text");
    assert!(shared.lock().expect("receiver").accepted.is_empty());

    // Trusting the CA, the same delivery goes through, signed.
    let trusting =
        Dispatcher::new(db.clone(), DispatchConfig { extra_roots_pem: Some(ca_pem.into_bytes()), ..config.clone() }).expect("dispatcher");
    let accepted = || shared.lock().expect("receiver").accepted.get("tls").map_or(0, Vec::len);
    dispatch_until(&trusting, "the delivery over TLS", || accepted() == 1).await;
    assert_eq!(shared.lock().expect("receiver").bad_signatures, 0);
    wait_until("the delivery to be recorded", || trusting.in_flight() == 0).await;
    assert_eq!(statuses(&db, &endpoint).await.iter().map(|d| d.status).collect::<Vec<_>>(), [DeliveryStatus::Sent]);

    // A CA file without a certificate stops the dispatcher from being built.
    let bad = DispatchConfig { extra_roots_pem: Some(b"not a certificate".to_vec()), ..config };
    assert!(matches!(Dispatcher::new(db.clone(), bad), Err(notifier::NotifyError::Config(_))));
    let _ = std::fs::remove_dir_all(dir);
});

both_backends!(a_dispatcher_killed_around_a_request_repeats_at_most_that_request, |t: TestStore| async move {
    let (db, notifier, dir) = setup(&t).await;
    let (base, shared) = receiver().await;
    // Steps are: before the request of delivery i (2i), and after its answer, before it is
    // recorded (2i + 1). Three deliveries: crash at each of the six steps in turn.
    for k in 0..6u32 {
        let path = format!("crash{k}");
        let endpoint = register_at(&db, &shared, &format!("{base}/{path}"), &path).await;
        for i in 0..3 {
            receive_stock(&t, &format!("CRASH-{k}-{i}"), 1).await;
        }
        pass_log(&t, &db, &notifier).await;
        let planned: Vec<String> = statuses(&db, &endpoint).await.into_iter().map(|d| d.event_id).collect();
        assert_eq!(planned.len(), 3);

        // The first dispatcher dies at step k. It would only take over a claim after an hour,
        // so it leaves the claimed delivery alone from then on, as a dead process would.
        let first = Dispatcher::new(db.clone(), DispatchConfig { stale_after: Duration::from_secs(3600), ..local() }).expect("dispatcher");
        first.crash_after(k);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            first.round().await.expect("dispatch");
            tokio::time::sleep(Duration::from_millis(20)).await;
            let claimed = statuses(&db, &endpoint).await.iter().any(|d| d.status == DeliveryStatus::Sending);
            if claimed && first.in_flight() == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "the first dispatcher never stopped at step {k}");
        }

        // A new dispatcher takes the claim over once it is stale and finishes.
        let second =
            Dispatcher::new(db.clone(), DispatchConfig { stale_after: Duration::from_millis(300), ..local() }).expect("dispatcher");
        let received = || shared.lock().expect("receiver").accepted.get(&path).cloned().unwrap_or_default();
        let mut expected = planned.clone();
        if k % 2 == 1 {
            // The endpoint had answered the request the first dispatcher did not record: it
            // gets that request once more, under the same id.
            expected.insert(k as usize / 2, planned[k as usize / 2].clone());
        }
        dispatch_until(&second, &format!("every delivery after a crash at step {k}"), || received().len() >= expected.len()).await;
        wait_until("the deliveries to be recorded", || second.in_flight() == 0).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        second.round().await.expect("dispatch");
        assert_eq!(received(), expected, "crash at step {k}: in log order, repeating at most the request in flight");
        assert!(statuses(&db, &endpoint).await.iter().all(|d| d.status == DeliveryStatus::Sent), "crash at step {k}: all sent");
        assert!(webhooks::delete(&db, "acme", &endpoint).await.expect("db"));
    }
    assert_eq!(shared.lock().expect("receiver").bad_signatures, 0);
    let _ = std::fs::remove_dir_all(dir);
});

/// The state of every delivery to `endpoint` of `tenant`.
async fn all_deliveries(db: &ReadDb, tenant: &str, endpoint: &str) -> Vec<webhooks::WebhookDelivery> {
    webhooks::deliveries(db, tenant, endpoint, 100_000).await.expect("db").expect("endpoint")
}

/// Runs rounds of `dispatcher` until a delivery of `endpoint` has failed; its `last_error`.
async fn first_failure(dispatcher: &Dispatcher, db: &ReadDb, endpoint: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        dispatcher.round().await.expect("dispatch");
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Some(failed) =
            all_deliveries(db, "acme", endpoint).await.into_iter().find(|d| d.attempts > 0 && d.status != DeliveryStatus::Sent)
        {
            return failed.last_error.unwrap_or_default();
        }
        assert!(Instant::now() < deadline, "no delivery to {endpoint} was attempted");
    }
}

both_backends!(targets_are_checked_again_at_every_delivery, |t: TestStore| async move {
    let (db, notifier, dir) = setup(&t).await;
    let (base, shared) = receiver().await;
    // Registered while internal targets were allowed (or its name resolved elsewhere then):
    // the delivery checks again, by address and by name.
    let by_address = register_at(&db, &shared, &format!("{base}/inside"), "inside").await;
    let port = base.trim_start_matches("http://127.0.0.1:").split('/').next().expect("port").to_owned();
    let by_name = register_at(&db, &shared, &format!("http://localhost:{port}/hook/named"), "named").await;
    receive_stock(&t, "IN-1", 1).await;
    pass_log(&t, &db, &notifier).await;
    let strict = Dispatcher::new(
        db.clone(),
        DispatchConfig {
            base_backoff: Duration::from_secs(60),
            policy: TargetPolicy { allow_private: false, allow_http: true },
            ..DispatchConfig::default()
        },
    )
    .expect("dispatcher");
    assert_eq!(first_failure(&strict, &db, &by_address).await, "forbidden_target");
    assert_eq!(first_failure(&strict, &db, &by_name).await, "forbidden_target");
    assert!(shared.lock().expect("receiver").accepted.is_empty(), "nothing reached the inside");
    let _ = std::fs::remove_dir_all(dir);
});

both_backends!(redirects_are_not_followed_and_errors_are_categories, |t: TestStore| async move {
    let (db, notifier, dir) = setup(&t).await;
    let (base, shared) = receiver().await;
    // A public endpoint that answers with a redirect inside.
    let inside = format!("{base}/inside");
    let redirecting = axum::Router::new().route(
        "/redirect",
        post(move || {
            let inside = inside.clone();
            async move { (StatusCode::TEMPORARY_REDIRECT, [("location", inside)]) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let redirect_url = format!("http://{}/redirect", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, redirecting).await.expect("serves") });
    let redirect = register_at(&db, &shared, &redirect_url, "redirect").await;
    register_at(&db, &shared, &format!("{base}/inside"), "inside").await;
    let unused = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let refused = register_at(&db, &shared, &format!("http://127.0.0.1:{unused}/nothing"), "nothing").await;
    receive_stock(&t, "REDIR-1", 1).await;
    pass_log(&t, &db, &notifier).await;
    let dispatcher = Dispatcher::new(db.clone(), DispatchConfig { base_backoff: Duration::from_secs(60), ..local() }).expect("dispatcher");
    assert_eq!(first_failure(&dispatcher, &db, &redirect).await, "http_status 307");
    assert_eq!(first_failure(&dispatcher, &db, &refused).await, "connection_failed", "no port or address in the text");
    wait_until("the inside endpoint's own delivery", || shared.lock().expect("receiver").accepted.get("inside").map_or(0, Vec::len) == 1)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(shared.lock().expect("receiver").accepted.get("inside").map_or(0, Vec::len), 1, "the redirect was not followed");
    let _ = std::fs::remove_dir_all(dir);
});

both_backends!(one_endpoints_backlog_does_not_delay_another_tenant, |t: TestStore| async move {
    let (db, _notifier, dir) = setup(&t).await;
    let (base, shared) = receiver().await;
    let unused = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let dead = webhooks::register(&db, "globex", &format!("http://127.0.0.1:{unused}/dead"), vec!["*".into()], local_rules())
        .await
        .expect("db")
        .expect("valid endpoint")
        .id;
    let live = register_at(&db, &shared, &format!("{base}/live"), "live").await;
    // 10,000 deliveries waiting for the dead endpoint, all older than the other tenant's one.
    let now = chrono::Utc::now().timestamp_millis();
    for chunk in 0..20 {
        let rows: Vec<String> = (0..500)
            .map(|i| {
                let n = chunk * 500 + i + 1;
                format!("('dead-{n}', 'globex', 'webhook', '{dead}', 'stock.received', {n}, 'evt-{n}', '{{}}', 'pending', 0, NULL, NULL, {now}, {now})")
            })
            .collect();
        sqlx::query(&format!(
            "INSERT INTO notifier_deliveries (id, tenant, channel, recipient, template, event_position, subject, body, status, \
             attempts, last_error, next_attempt_ms, created_at_ms, updated_at_ms) VALUES {}",
            rows.join(", ")
        ))
        .execute(&db.pool)
        .await
        .expect("backlog");
    }
    sqlx::query(
        "INSERT INTO notifier_deliveries (id, tenant, channel, recipient, template, event_position, subject, body, status, \
         attempts, last_error, next_attempt_ms, created_at_ms, updated_at_ms) \
         VALUES ('live-1', 'acme', 'webhook', $1, 'stock.received', 20000, 'evt-live', '{\"id\":\"evt-live\"}', 'pending', 0, NULL, NULL, $2, $2)",
    )
    .bind(&live)
    .bind(now)
    .execute(&db.pool)
    .await
    .expect("the other tenant's delivery");
    let dispatcher = Dispatcher::new(db.clone(), DispatchConfig { base_backoff: Duration::from_secs(60), ..local() }).expect("dispatcher");
    let started = Instant::now();
    let accepted = || shared.lock().expect("receiver").accepted.get("live").map_or(0, Vec::len);
    dispatch_until(&dispatcher, "the other tenant's delivery behind a 10,000 backlog", || accepted() == 1).await;
    assert!(started.elapsed() < Duration::from_secs(5), "it waited {:?}", started.elapsed());
    let _ = std::fs::remove_dir_all(dir);
});

// Webhooks carry personal fields as the topics do: sealed with the person's key, never in clear
// (the notifier's own mail, read from the same event, has them opened).
both_backends!(webhooks_carry_personal_fields_sealed, |t: TestStore| async move {
    let (db, notifier, dir) = setup(&t).await;
    let (base, shared) = receiver().await;
    let registered = webhooks::register(&db, "acme", &format!("{base}/users"), vec!["user.*".into()], local_rules())
        .await
        .expect("db")
        .expect("valid endpoint");
    shared.lock().expect("receiver").secrets.insert("users".into(), registered.secret.clone().expect("secret at registration"));
    let users =
        Repository::<domain::user::User>::new(t.store.clone(), domain::user::UserServices { hasher: Arc::new(testkit::PlainHasher) });
    let ada = domain::UserId::new();
    let register = domain::user::UserCommand::Register {
        tenant: tenant(),
        user_id: ada,
        email: "ada.sealed@example.com".parse().expect("email"),
        name: "Ada Lovelace".parse().expect("name"),
        password: "correct horse battery".parse().expect("password"),
        roles: [domain::user::Role::Customer].into(),
    };
    users.execute(&stream_id(&tenant(), ada), register, None, &Metadata::default()).await.expect("registered");
    pass_log(&t, &db, &notifier).await;
    let bodies: Vec<String> =
        sqlx::query_scalar("SELECT body FROM notifier_deliveries WHERE channel = 'webhook'").fetch_all(&db.pool).await.expect("bodies");
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let envelope: serde_json::Value = serde_json::from_str(&bodies[0]).expect("json");
    assert_eq!(envelope["type"], "user.registered");
    assert!(envelope["data"]["email"]["$personal"]["kid"].is_string(), "sealed: {envelope}");
    assert!(!bodies[0].contains("ada.sealed@example.com") && !bodies[0].contains("Lovelace"), "{}", bodies[0]);
    let welcome: Vec<String> =
        std::fs::read_dir(&dir).expect("outbox").flatten().filter_map(|f| std::fs::read_to_string(f.path()).ok()).collect();
    assert!(welcome.iter().any(|m| m.contains("ada.sealed@example.com")), "the welcome mail went to the address opened");
    let _ = std::fs::remove_dir_all(&dir);
});
