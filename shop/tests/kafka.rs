//! `shop serve` with Kafka: commands succeed while the broker is away (the event store is the
//! outbox), and the relay catches up once a broker comes up. Needs the `kafka` feature (the
//! test command builds with `--all-features`).
#![cfg(feature = "kafka")]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::{in_ci, scratch_dir};

const BIN: &str = env!("CARGO_BIN_EXE_shop");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn tansu() -> Option<PathBuf> {
    let path = std::env::var("SHOP_TANSU_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/shop/tansu/bin/tansu"));
    if path.exists() {
        Some(path)
    } else if in_ci() {
        panic!("tansu is required in CI (SHOP_TANSU_BIN={})", path.display());
    } else {
        eprintln!("skipping: no tansu binary at {}", path.display());
        None
    }
}

async fn wait_port(port: u16) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {port}");
}

fn start_broker(tansu: &PathBuf, port: u16, dir: &std::path::Path) -> testkit::Running {
    testkit::Running(
        Command::new(tansu)
            .args(["broker", "--listener-url", &format!("tcp://127.0.0.1:{port}")])
            .args(["--advertised-listener-url", &format!("tcp://127.0.0.1:{port}"), "--storage-engine", "sqlite://tansu.db"])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts"),
    )
}

/// `shop serve` in embedded mode on `http`, with the brokers on `kafka`.
fn serve(dir: &std::path::Path, http: u16, kafka: u16, env: &[(&str, &str)]) -> testkit::Running {
    testkit::Running(
        Command::new(BIN)
            .arg("serve")
            .env("SHOP_DATA_DIR", dir)
            .env("SHOP_HTTP_ADDR", format!("127.0.0.1:{http}"))
            .env("KAFKA_BROKERS", format!("127.0.0.1:{kafka}"))
            .envs(env.iter().copied())
            .env_remove("DATABASE_URL")
            .env_remove("SHOP_JWT_SECRET")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("shop starts"),
    )
}

async fn register(client: &reqwest::Client, http: u16, n: usize) {
    let res = client
        .post(format!("http://127.0.0.1:{http}/api/v1/auth/register"))
        .json(&json!({"email": format!("k{n}@example.com"), "password": "correct horse", "name": "K"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(res.status(), StatusCode::CREATED, "the command succeeds whatever the broker does");
}

/// Reads `user.registered` messages until `want` distinct users' have arrived.
async fn read_emails(consumer: &StreamConsumer, emails: &mut std::collections::BTreeSet<String>, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while emails.len() < want && Instant::now() < deadline {
        let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await else {
            continue;
        };
        let value: Value = serde_json::from_slice(m.payload().unwrap_or_default()).expect("json");
        assert_eq!(value["type"], "user.registered");
        assert!(value["data"].get("password_hash").is_none(), "no hashes on the wire");
        // Personal data travels sealed; one message per registered user.
        assert!(value["data"]["email"]["$personal"]["kid"].is_string(), "the address is sealed: {value}");
        emails.insert(value["aggregate_id"].as_str().expect("aggregate id").to_owned());
    }
    assert_eq!(emails.len(), want, "every registration arrived: {emails:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_succeed_while_kafka_is_down_and_the_relay_catches_up() {
    let Some(tansu) = tansu() else { return };
    let dir = scratch_dir();
    let (http, kafka) = (free_port(), free_port());
    let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    let _shop = serve(&dir, http, kafka, &[("SHOP_KAFKA_TOPIC_PREFIX", &prefix)]);
    wait_port(http).await;
    let client = reqwest::Client::new();
    for i in 0..5 {
        register(&client, http, i).await;
    }

    // Now a broker comes up on the address the relay keeps trying.
    let broker_dir = dir.join("tansu");
    std::fs::create_dir_all(&broker_dir).expect("dir");
    let broker = start_broker(&tansu, kafka, &broker_dir);
    wait_port(kafka).await;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", format!("127.0.0.1:{kafka}"))
        .set("group.id", "catch-up-test")
        .set("auto.offset.reset", "earliest")
        .set("reconnect.backoff.max.ms", "1000")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .create()
        .expect("consumer");
    let topic = format!("{prefix}.user.v1");
    let deadline = Instant::now() + Duration::from_secs(60);
    // The relay creates the topic once the broker answers; subscribe when it exists.
    loop {
        let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(2));
        if metadata.is_ok_and(|m| m.topics().iter().any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())) {
            break;
        }
        assert!(Instant::now() < deadline, "the relay never created {topic}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut emails = std::collections::BTreeSet::new();
    read_emails(&consumer, &mut emails, 5).await;

    // The broker restarts (same durable storage) while more commands come in.
    drop(broker);
    for i in 5..8 {
        register(&client, http, i).await;
    }
    let _broker = start_broker(&tansu, kafka, &broker_dir);
    wait_port(kafka).await;
    read_emails(&consumer, &mut emails, 8).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh broker and `shop serve` with `SHOP_EVENT_SOURCE=kafka` on it (killed on drop).
struct KafkaFed {
    dir: PathBuf,
    http: u16,
    _broker: testkit::Running,
    _shop: testkit::Running,
}

async fn kafka_fed_shop() -> Option<KafkaFed> {
    let tansu = tansu()?;
    let dir = scratch_dir();
    let (http, kafka) = (free_port(), free_port());
    let broker_dir = dir.join("tansu");
    std::fs::create_dir_all(&broker_dir).expect("dir");
    let broker = start_broker(&tansu, kafka, &broker_dir);
    wait_port(kafka).await;
    let shop = serve(&dir, http, kafka, &[("SHOP_EVENT_SOURCE", "kafka"), ("SHOP_READ_WAIT_MS", "20000")]);
    wait_port(http).await;
    Some(KafkaFed { dir, http, _broker: broker, _shop: shop })
}

/// `SHOP_EVENT_SOURCE=kafka`: the projections read the relay's topics through a consumer
/// group, and read-your-writes waits on the broker (the user read model gets registrations
/// without password hashes, as every other consumer does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projections_fed_by_kafka_read_your_writes() {
    let Some(KafkaFed { dir, http, _broker, _shop }) = kafka_fed_shop().await else {
        return;
    };
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{http}/api/v1");
    let post = |path: &str, body: Value| {
        let request = client.post(format!("{base}{path}")).json(&body);
        async move { request.send().await.expect("answers").json::<Value>().await.expect("json") }
    };
    let registered = post("/auth/register", json!({"email": "kafka@example.com", "password": "correct horse", "name": "Kay"})).await;
    let position = registered["position"].as_i64().expect("position");
    let login = post("/auth/login", json!({"email": "kafka@example.com", "password": "correct horse"})).await;
    let token = login["access_token"].as_str().expect("token");
    let me = client
        .get(format!("{base}/users/me"))
        .bearer_auth(token)
        .header("x-min-position", position.to_string())
        .send()
        .await
        .expect("answers");
    assert_eq!(me.status(), StatusCode::OK);
    let me: Value = me.json().await.expect("json");
    assert_eq!((me["email"].as_str(), me["name"].as_str()), (Some("kafka@example.com"), Some("Kay")), "{me}");

    // The notifier is fed through the broker too (group `notifier`): the welcome mail comes.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mail: Vec<String> = std::fs::read_dir(dir.join("outbox"))
            .map(|d| d.filter_map(Result::ok).filter_map(|e| std::fs::read_to_string(e.path()).ok()).collect())
            .unwrap_or_default();
        let welcomes = mail.iter().filter(|m| m.contains("Subject: Welcome to shop\r\n") && m.contains("Hello Kay")).count();
        if welcomes == 1 {
            break;
        }
        assert!(welcomes <= 1, "one welcome mail, not {welcomes}");
        assert!(Instant::now() < deadline, "no welcome mail through kafka");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Orders with `SHOP_EVENT_SOURCE=kafka`: the saga (group `order-saga`) and the orders view
/// are both fed through the broker (order and payment events on two topics), and orders settle
/// as on the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_settle_and_show_through_kafka_fed_read_models() {
    use std::io::Write;
    let Some(KafkaFed { dir, http, _broker, _shop }) = kafka_fed_shop().await else {
        return;
    };
    let mut create = Command::new(BIN)
        .args(["user", "create", "--email", "admin@example.com", "--role", "admin"])
        .env("SHOP_DATA_DIR", &dir)
        .env_remove("DATABASE_URL")
        .env_remove("SHOP_JWT_SECRET")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("user create runs");
    create.stdin.take().expect("stdin").write_all(b"admin password\n").expect("password");
    assert!(create.wait().expect("exits").success());

    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{http}/api/v1");
    let call = |token: Option<&str>, path: &str, body: Value| {
        let mut request = client.post(format!("{base}{path}")).json(&body);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        async move {
            let res = request.send().await.expect("answers");
            let status = res.status();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let token = |body: Value| body["access_token"].as_str().expect("token").to_owned();
    let admin = token(call(None, "/auth/login", json!({"email": "admin@example.com", "password": "admin password"})).await.1);
    let (status, product) = call(
        Some(&admin),
        "/products",
        json!({"sku": "K-1", "name": "Kettle", "category": "kitchen", "price": {"amount": 2500, "currency": "EUR"}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{product}");
    let id = product["id"].as_str().expect("id");
    assert!(call(Some(&admin), &format!("/products/{id}/publish"), json!({})).await.0.is_success());
    assert!(call(Some(&admin), "/stock/K-1/receipts", json!({"quantity": 1})).await.0.is_success());
    call(None, "/auth/register", json!({"email": "ada@example.com", "password": "correct horse", "name": "Ada"})).await;
    let ada = token(call(None, "/auth/login", json!({"email": "ada@example.com", "password": "correct horse"})).await.1);
    let order = |method: &'static str| {
        json!({
            "lines": [{"sku": "K-1", "quantity": 1}],
            "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"},
            "payment_method": method
        })
    };
    let (status, declined) = call(Some(&ada), "/orders", order("tok_decline")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{declined}");
    let settle = |id: String| {
        let (client, base, ada) = (client.clone(), base.clone(), ada.clone());
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let res = client.get(format!("{base}/orders/{id}")).bearer_auth(&ada).send().await.expect("answers");
                if res.status() == StatusCode::OK {
                    let body: Value = res.json().await.expect("json");
                    if body["status"] == "cancelled" || !body["invoice_number"].is_null() {
                        return body;
                    }
                }
                assert!(Instant::now() < deadline, "order {id} not settled through kafka");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let declined = settle(declined["id"].as_str().expect("id").to_owned()).await;
    assert_eq!((declined["status"].as_str(), declined["cancel_reason"].as_str()), (Some("cancelled"), Some("payment_declined")));
    assert_eq!(declined["payment_status"], "failed", "the payment topic reached the view: {declined}");
    // The declined order's unit is back, so the next order gets it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let paid = loop {
        let (status, placed) = call(Some(&ada), "/orders", order("tok_approve")).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{placed}");
        let settled = settle(placed["id"].as_str().expect("id").to_owned()).await;
        if settled["status"] == "confirmed" || Instant::now() > deadline {
            break settled;
        }
    };
    assert_eq!(
        (paid["status"].as_str(), paid["invoice_number"].as_i64(), paid["payment_status"].as_str()),
        (Some("confirmed"), Some(1), Some("captured")),
        "{paid}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
