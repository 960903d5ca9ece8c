//! Running it like production: `/metrics` on every role, worker roles answering `/health` and
//! `/ready`, in both modes.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use shop::{Application, Config, Roles};

use testkit::both_modes;
use testkit::TestApp;

/// The value of the first sample of `text` whose line starts with `prefix` (name and labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

async fn metrics(app: &TestApp) -> String {
    let res = app.client.get(format!("{}/metrics", app.base)).send().await.expect("metrics answer");
    assert_eq!(res.status(), StatusCode::OK);
    let kind = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "Prometheus text format, got {kind}");
    res.text().await.expect("body")
}

both_modes!(metrics_count_requests_commands_projections_and_mail, |app: TestApp| async move {
    let reg = app.register("metrics@example.com", "correct horse").await;
    assert_eq!(reg.status, StatusCode::CREATED);
    let bad = app.post("/api/v1/auth/register", None, json!({"email": "nope", "password": "correct horse", "name": "X"})).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let unknown = app.call(Method::GET, "/no/such/route/12345", None, None, &[]).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let made_up = app.call(Method::from_bytes(b"BREWCOFFEE").expect("a token"), "/api/v1/products", None, None, &[]).await;
    assert_eq!(made_up.status, StatusCode::METHOD_NOT_ALLOWED);

    // The projections and the notifier catch up in the background: wait for their figures.
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = metrics(&app).await;
        // Counters with known labels start at 0 (for alerts): wait for them to count.
        let counted = |prefix: &str| sample(&text, prefix).is_some_and(|v| v >= 1.0);
        let ready = counted("shop_projection_lag_seconds_count{name=\"users\"}")
            && counted("shop_notifier_deliveries_total{channel=\"email\",status=\"sent\"}")
            && counted("shop_notifier_lag_seconds_count{name=\"notifier\"}");
        if ready {
            break text;
        }
        assert!(Instant::now() < deadline, "projection and notifier metrics never showed:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Other tests in this process add to the same counters: at least ours are there.
    let route = "route=\"/api/v1/auth/register\"";
    assert!(
        sample(&text, &format!("shop_http_requests_total{{method=\"POST\",{route},status=\"201\"}}")).is_some_and(|v| v >= 1.0),
        "{text}"
    );
    assert!(sample(&text, &format!("shop_http_requests_total{{method=\"POST\",{route},status=\"422\"}}")).is_some_and(|v| v >= 1.0));
    assert!(sample(&text, "shop_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}").is_some_and(|v| v >= 1.0));
    assert!(!text.contains("/no/such/route"), "unknown paths do not become labels");
    assert!(!text.contains("BREWCOFFEE"), "made-up methods do not become labels");
    assert!(
        sample(&text, "shop_http_requests_total{method=\"other\",route=\"/api/v1/products\",status=\"405\"}").is_some_and(|v| v >= 1.0),
        "{text}"
    );
    assert!(sample(&text, &format!("shop_http_request_duration_seconds_bucket{{method=\"POST\",{route},le=\"+Inf\"}}"))
        .is_some_and(|v| v >= 2.0));
    assert!(sample(&text, "shop_commands_total{aggregate=\"user\",outcome=\"ok\"}").is_some_and(|v| v >= 1.0));
    assert!(sample(&text, "shop_command_duration_seconds_count{aggregate=\"user\"}").is_some_and(|v| v >= 1.0));
    assert!(sample(&text, "shop_projection_batch_duration_seconds_count{name=\"users\"}").is_some_and(|v| v >= 1.0));
    assert!(sample(&text, "shop_projection_events_total{name=\"users\"}").is_some_and(|v| v >= 1.0));
    assert!(sample(&text, "shop_notifier_lag_seconds_count{name=\"notifier\"}").is_some_and(|v| v >= 1.0));
});

/// An application served in the background until `stop`.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    fn start(app: Application) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        Self { stop, served }
    }

    /// Stops it as SIGTERM would and checks it stopped cleanly.
    async fn stop(self) {
        let _ = self.stop.send(());
        self.served.await.expect("joins").expect("stops cleanly");
    }
}

/// A worker role (`shop project`) serves `/health`, `/ready` and `/metrics`, and nothing else.
#[tokio::test]
async fn worker_roles_answer_health_readiness_and_metrics() {
    let dir = testkit::scratch_dir();
    let mut config = Config::embedded(dir.clone());
    config.jwt_secret = Some(http_kit::Secret::new(testkit::JWT_SECRET));
    let app = Application::build_roles(&config, Roles::Projections).await.expect("builds");
    let base = format!("http://{}", app.addr());
    let served = Running::start(app);
    let client = reqwest::Client::new();
    for (path, status) in [("/health", 200), ("/ready", 200), ("/metrics", 200), ("/api/v1/products", 404)] {
        let res = client.get(format!("{base}{path}")).send().await.expect("answers");
        assert_eq!(res.status().as_u16(), status, "{path}");
    }
    served.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// A TCP forwarder to `upstream` that can be cut (open connections dropped, new ones refused)
/// and restored, standing in for a network partition.
struct Partition {
    addr: std::net::SocketAddr,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Partition {
    async fn to(upstream: String, open: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(open));
        let links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Default::default();
        let (flag, list) = (open.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !flag.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection closed
                }
                let upstream = upstream.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                list.lock().expect("links").push(link);
            }
        });
        Self { addr, open, links }
    }

    fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for link in self.links.lock().expect("links").drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

async fn ready_status(client: &reqwest::Client, base: &str) -> (u16, Value) {
    match client.get(format!("{base}/ready")).timeout(Duration::from_secs(10)).send().await {
        Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or(Value::Null)),
        Err(e) => panic!("/ready did not answer: {e}"),
    }
}

async fn ready_becomes(client: &reqwest::Client, base: &str, want: u16) -> Value {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (status, body) = ready_status(client, base).await;
        if status == want {
            return body;
        }
        assert!(Instant::now() < deadline, "/ready stayed {status} ({body}), wanted {want}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `/ready` of a command API on PostgreSQL goes 503 while the database is cut off and back to
/// 200 once it is reachable again, without a restart; `/health` stays 200 throughout.
#[tokio::test]
async fn readiness_follows_the_store_without_a_restart() {
    let dir = testkit::scratch_dir();
    let Some(url) = testkit::fresh_url(testkit::Backend::Postgres, &dir).await else {
        return;
    };
    let (scheme_and_auth, rest) = url.rsplit_once('@').expect("url with credentials");
    let (host, database) = rest.split_once('/').expect("url with a database");
    let partition = Partition::to(host.to_owned(), true).await;
    let mut config = Config::embedded(dir.clone());
    config.jwt_secret = Some(http_kit::Secret::new(testkit::JWT_SECRET));
    config.database_url = Some(http_kit::Secret::new(format!("{scheme_and_auth}@{}/{database}", partition.addr)));
    let app = Application::build_roles(&config, Roles::CommandApi).await.expect("builds");
    let base = format!("http://{}", app.addr());
    let served = Running::start(app);
    let client = reqwest::Client::new();
    assert_eq!(ready_status(&client, &base).await.0, 200);
    partition.cut();
    let body = ready_becomes(&client, &base, 503).await;
    assert_eq!(body["code"], "unavailable");
    assert_eq!(client.get(format!("{base}/health")).send().await.expect("health").status().as_u16(), 200, "alive, only not ready");
    partition.restore();
    let body = ready_becomes(&client, &base, 200).await;
    assert_eq!(body["store"], "postgresql");
    served.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// `shop relay` cannot work without the brokers: it is not ready until they answer. `shop
/// serve` can (the log is the outbox): it only reports them.
#[tokio::test]
async fn the_relay_is_ready_only_with_its_brokers() {
    let Ok(brokers) = std::env::var("KAFKA_BROKERS") else {
        assert!(!testkit::in_ci(), "KAFKA_BROKERS (a Kafka-protocol broker) is required in CI");
        eprintln!("skipping: KAFKA_BROKERS is not set");
        return;
    };
    let broker = brokers.split(',').next().expect("a broker").to_owned();
    let partition = Partition::to(broker, false).await;
    let dir = testkit::scratch_dir();
    let mut config = Config::embedded(dir.clone());
    config.jwt_secret = Some(http_kit::Secret::new(testkit::JWT_SECRET));
    config.kafka_brokers = Some(partition.addr.to_string());
    config.kafka_topic_prefix = format!("ready{}", uuid::Uuid::new_v4().simple());
    let client = reqwest::Client::new();

    let relay = Application::build_roles(&config, Roles::Relay).await.expect("builds");
    let relay_base = format!("http://{}", relay.addr());
    let relay_served = Running::start(relay);
    let body = ready_becomes(&client, &relay_base, 503).await;
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("kafka")), "{body}");
    partition.restore();
    let body = ready_becomes(&client, &relay_base, 200).await;
    assert_eq!(body["dependencies"]["kafka"], "ok");
    relay_served.stop().await;

    // The combined role with brokers that never answer: ready, with the brokers reported.
    let mut unreachable = config.clone();
    unreachable.kafka_brokers = Some(format!("127.0.0.1:{}", testkit::free_port()));
    unreachable.data_dir = testkit::scratch_dir();
    let serve = Application::build(&unreachable).await.expect("builds");
    let serve_base = format!("http://{}", serve.addr());
    let serve_served = Running::start(serve);
    let (status, body) = ready_status(&client, &serve_base).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["dependencies"]["kafka"].as_str().is_some_and(|s| s.starts_with("unreachable (not required)")), "{body}");
    serve_served.stop().await;
    let _ = std::fs::remove_dir_all(unreachable.data_dir);
    let _ = std::fs::remove_dir_all(dir);
}

/// A query API whose read models are not being projected (no projection worker runs) answers
/// a read-your-writes request for a real position with 503 `projection_behind` after its wait,
/// never with stale data.
#[tokio::test]
async fn a_view_that_is_behind_answers_503_after_the_wait() {
    let dir = testkit::scratch_dir();
    let mut config = Config::embedded(dir.clone());
    config.jwt_secret = Some(http_kit::Secret::new(testkit::JWT_SECRET));
    config.read_wait_ms = 300;
    let commands = Application::build_roles(&config, Roles::CommandApi).await.expect("builds");
    let command_base = format!("http://{}", commands.addr());
    let commands = Running::start(commands);
    let queries = Application::build_roles(&config, Roles::QueryApi).await.expect("builds");
    let query_base = format!("http://{}", queries.addr());
    let queries = Running::start(queries);

    let client = reqwest::Client::new();
    let registered: Value = client
        .post(format!("{command_base}/api/v1/auth/register"))
        .json(&json!({"email": "ada@example.com", "password": "correct horse", "name": "Ada"}))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("json");
    let position = registered["position"].as_i64().expect("position");
    let login: Value = client
        .post(format!("{command_base}/api/v1/auth/login"))
        .json(&json!({"email": "ada@example.com", "password": "correct horse"}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let token = login["access_token"].as_str().expect("token").to_owned();
    let started = Instant::now();
    let behind = client
        .get(format!("{query_base}/api/v1/users/me"))
        .bearer_auth(&token)
        .header("x-min-position", position.to_string())
        .send()
        .await
        .expect("answers");
    assert_eq!(behind.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() >= Duration::from_millis(300), "it waited SHOP_READ_WAIT_MS first");
    assert_eq!(behind.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    let problem: Value = behind.json().await.expect("problem");
    assert_eq!(problem["code"], "projection_behind");
    queries.stop().await;
    commands.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// With `sslmode=require` in `DATABASE_URL` (RDS with `rds.force_ssl`), the event store and
/// the read-model database talk to PostgreSQL over TLS: the server says so for each connection.
#[tokio::test]
async fn the_store_and_the_read_models_connect_over_tls_when_the_url_asks_for_it() {
    let Some(t) = testkit::fresh_store(testkit::Backend::Postgres).await else { return };
    let url = format!("{}{}sslmode=require", t.url, if t.url.contains('?') { '&' } else { '?' });
    let ssl = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    let store = store::EventStore::connect(&url, 2).await.expect("the store connects with sslmode=require");
    let store::Db::Postgres(pool) = store.db() else { panic!("a PostgreSQL store") };
    let encrypted: bool = sqlx::query_scalar(ssl).fetch_one(pool).await.expect("pg_stat_ssl");
    assert!(encrypted, "the store's connection is encrypted");
    let read = worker_kit::ReadDb::connect(&url, 2).await.expect("the read side connects with sslmode=require");
    let encrypted: bool = sqlx::query_scalar(ssl).fetch_one(&read.pool).await.expect("pg_stat_ssl");
    assert!(encrypted, "the read side's connection is encrypted");
    // Without sslmode (or with `disable`) the connection is plain, though the server offers TLS.
    let disabled = format!("{}{}sslmode=disable", t.url, if t.url.contains('?') { '&' } else { '?' });
    for plain in [t.url.as_str(), disabled.as_str()] {
        let read = worker_kit::ReadDb::connect(plain, 1).await.expect("connects without TLS");
        assert!(!sqlx::query_scalar::<_, bool>(ssl).fetch_one(&read.pool).await.expect("pg_stat_ssl"), "{plain}");
        let store = store::EventStore::connect(plain, 1).await.expect("connects without TLS");
        let store::Db::Postgres(pool) = store.db() else { panic!("a PostgreSQL store") };
        assert!(!sqlx::query_scalar::<_, bool>(ssl).fetch_one(pool).await.expect("pg_stat_ssl"), "{plain}");
    }
}

/// MSK's SASL/SCRAM over TLS: librdkafka is built with TLS and SCRAM, and the settings reach
/// every client (a client of a build without them refuses `sasl_ssl` when it is created).
#[cfg(feature = "kafka")]
#[test]
fn kafka_clients_take_sasl_scram_over_tls() {
    let mut config = Config::embedded(testkit::scratch_dir());
    config.kafka_brokers = Some("b-1.example.kafka.eu-west-1.amazonaws.com:9096".to_owned());
    config.kafka_security_protocol = shop::KafkaSecurity::SaslSsl;
    config.kafka_sasl_mechanism = Some(shop::SaslMechanism::ScramSha512);
    config.kafka_sasl_username = Some("shop".to_owned());
    config.kafka_sasl_password = Some(http_kit::Secret::new("scram-pw-1d2c"));
    let relay = shop::kafka::relay_config(&config).expect("a complete setting").expect("brokers are set");
    assert!(!format!("{relay:?}").contains("scram-pw-1d2c"), "the password does not print");
    let client = relay.client();
    assert_eq!(client.get("security.protocol"), Some("sasl_ssl"));
    assert_eq!(client.get("sasl.mechanisms"), Some("SCRAM-SHA-512"));
    let created: Result<rdkafka::consumer::BaseConsumer, _> = client.create();
    assert!(created.is_ok(), "librdkafka takes SASL_SSL with SCRAM: {:?}", created.err());
    // Half a setting is refused at start.
    config.kafka_sasl_username = None;
    let refused = shop::kafka::relay_config(&config).expect_err("no user");
    assert!(refused.to_string().contains("KAFKA_SASL_USERNAME"), "{refused}");
}
