//! The right to erasure, tried end to end on real servers: a customer registers, changes
//! their profile, orders and is erased; afterwards their e-mail address, name and street are
//! nowhere in clear: not in a full `pg_dump` of the database (event log, keys, read models,
//! deliveries, stored answers), not on any Kafka topic (read with a client of the test's own),
//! not in Redis, not in the search index files. Before the erasure the same search finds them
//! in the read models (so the search can fail), and never on Kafka (personal fields are
//! published sealed). A full replay afterwards gives the same erased answers.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const EMAIL: &str = "erin.quill-7f3@example.org";
const PASSWORD: &str = "Erin-Pass-erase-91";
/// Distinctive words of the person's name, street and second line, searched for as bytes.
const SECRETS: [&str; 5] = [EMAIL, "Quillfeather", "Zwetschgenweg", "Hinterhaus", "Quedlinburg"];

/// Which of `SECRETS` are in `bytes`.
fn found_in(bytes: &[u8]) -> Vec<&'static str> {
    SECRETS.iter().copied().filter(|s| bytes.windows(s.len()).any(|w| w == s.as_bytes())).collect()
}

fn pg_dump(url: &str) -> Vec<u8> {
    let out = std::process::Command::new("pg_dump").arg("--no-owner").arg(url).output().expect("pg_dump runs");
    assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.len() > 10_000, "a whole dump");
    out.stdout
}

/// Every message of every topic, from the start to the end offsets, with a consumer of the
/// test's own (partitions assigned by hand, no group shared with the shop).
fn kafka_messages(broker: &str) -> Vec<Vec<u8>> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", format!("erasure-check-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        // tansu answers large fetches slowly: small ones keep the client moving.
        .set("max.partition.fetch.bytes", "262144")
        .create()
        .expect("consumer");
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10)).expect("metadata");
    let mut ends = std::collections::HashMap::new();
    let mut assignment = rdkafka::TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            let (_, high) = consumer.fetch_watermarks(t.name(), p.id(), Duration::from_secs(10)).expect("watermarks");
            if high > 0 {
                ends.insert((t.name().to_owned(), p.id()), high);
                assignment.add_partition_offset(t.name(), p.id(), rdkafka::Offset::Beginning).expect("partition");
            }
        }
    }
    assert!(ends.keys().any(|(t, _)| t == "shop.user.v1") && ends.keys().any(|(t, _)| t == "shop.order.v1"), "{ends:?}");
    consumer.assign(&assignment).expect("assign");
    let mut at: std::collections::HashMap<(String, i32), i64> = std::collections::HashMap::new();
    let mut messages = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while ends.iter().any(|(k, high)| at.get(k).copied().unwrap_or(0) < *high) {
        assert!(Instant::now() < deadline, "read every topic to its end within 120 s ({} messages)", messages.len());
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) else { continue };
        at.insert((m.topic().to_owned(), m.partition()), m.offset() + 1);
        let mut bytes = m.payload().unwrap_or_default().to_vec();
        bytes.extend_from_slice(m.key().unwrap_or_default());
        if let Some(headers) = m.headers() {
            for h in rdkafka::message::Headers::iter(headers) {
                bytes.extend_from_slice(h.key.as_bytes());
                bytes.extend_from_slice(h.value.unwrap_or_default());
            }
        }
        messages.push(bytes);
    }
    messages
}

/// Every key and value in Redis (strings, hashes, sets, lists), as bytes.
async fn redis_contents(url: &str) -> Vec<u8> {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.expect("keys");
    assert!(!keys.is_empty(), "the product documents are in Redis");
    let mut all = Vec::new();
    for key in keys {
        all.extend_from_slice(key.as_bytes());
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await.expect("type");
        let values: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![redis::cmd("GET").arg(&key).query_async(&mut conn).await.expect("get")],
            "hash" => redis::cmd("HGETALL").arg(&key).query_async(&mut conn).await.expect("hgetall"),
            "set" => redis::cmd("SMEMBERS").arg(&key).query_async(&mut conn).await.expect("smembers"),
            "zset" => redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).query_async(&mut conn).await.expect("zrange"),
            "list" => redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query_async(&mut conn).await.expect("lrange"),
            other => panic!("a Redis {other} at {key}"),
        };
        for v in values {
            all.extend_from_slice(&v);
        }
    }
    all
}

/// The bytes of every file under `dir` whose path passes `keep`.
fn files_under(dir: &Path, keep: &dyn Fn(&Path) -> bool, out: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, keep, out);
        } else if keep(&path) {
            out.push((path.display().to_string(), std::fs::read(&path).expect("file")));
        }
    }
}

/// The shop's answers about the customer and their order, as an admin sees them.
async fn answers(api: &testkit::Remote, admin: &str, user_id: &str, order_id: &str) -> (Value, Value) {
    let (status, users) = api.call(Method::GET, "/api/v1/admin/users?limit=100", Some(admin), None).await;
    assert_eq!(status, StatusCode::OK, "{users:?}");
    let list = users["items"].as_array().or(users.as_array()).cloned().unwrap_or_default();
    let user = list.into_iter().find(|u| u["id"] == user_id || u["user_id"] == user_id).expect("the user is listed");
    let (status, mut order) = api.call(Method::GET, &format!("/api/v1/orders/{order_id}"), Some(admin), None).await;
    assert_eq!(status, StatusCode::OK, "{order:?}");
    // Where the order stands in the log moves on with later events, not its contents.
    if let Value::Object(o) = &mut order {
        o.retain(|k, _| !["version", "position", "updated_at"].contains(&k.as_str()));
    }
    (user, order)
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match check().await {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("{what}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[tokio::test]
async fn an_erased_customer_is_nowhere_in_clear_and_a_replay_agrees() {
    let Some(broker) = testkit::own_broker() else { return };
    let Some(redis) = testkit::own_redis() else { return };
    let Some(url) = testkit::fresh_database(&testkit::admin_url()).await else { return };
    let redis_url = format!("redis://{}", redis.address());
    let dir = testkit::scratch_dir();
    let port = testkit::free_port();
    let shop = |cmd: &mut std::process::Command| {
        cmd.env("DATABASE_URL", &url)
            .env("REDIS_URL", &redis_url)
            .env("KAFKA_BROKERS", broker.address())
            .env("SHOP_JWT_SECRET", testkit::JWT_SECRET);
    };
    {
        use std::io::Write;
        let mut create = testkit::binary(&dir, 0);
        shop(&mut create);
        let mut create = create
            .args(["user", "create", "--email", "admin@example.com", "--role", "admin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("user create");
        create.stdin.take().expect("stdin").write_all(b"Adm1n-Pass-erase-3\n").expect("password");
        assert!(create.wait().expect("user create ends").success());
    }
    let mut serve = testkit::binary(&dir, port);
    shop(&mut serve);
    // The projections, the saga and the notifier read Kafka: the sealed fields are opened
    // on that path too.
    let child =
        serve.env("SHOP_EVENT_SOURCE", "kafka").arg("serve").stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("shop starts");
    let _serving = testkit::Running(child);
    let api = testkit::Remote::new(format!("http://127.0.0.1:{port}"));
    testkit::until_ready(&api.base).await;

    let admin = api.login("admin@example.com", "Adm1n-Pass-erase-3").await["access_token"].as_str().expect("token").to_owned();
    let product = json!({"sku": "ERASE-1", "name": "Lamp", "description": "a lamp", "category": "misc", "price": {"amount": 1500, "currency": "EUR"}});
    let (status, product) = api.post("/api/v1/products", Some(&admin), product).await;
    assert_eq!(status, StatusCode::CREATED, "{product:?}");
    let product_id = product["id"].as_str().expect("id").to_owned();
    assert!(api.post(&format!("/api/v1/products/{product_id}/publish"), Some(&admin), json!({})).await.0.is_success());
    assert!(api.post("/api/v1/stock/ERASE-1/receipts", Some(&admin), json!({"quantity": 5})).await.0.is_success());

    // Register, change the profile, order.
    // With an Idempotency-Key: its stored answer names the user, and goes with the erasure.
    let registered = api
        .http
        .post(format!("{}/api/v1/auth/register", api.base))
        .header("Idempotency-Key", "erasure-register-key-51")
        .json(&json!({"email": EMAIL, "password": PASSWORD, "name": "Erin Quill"}))
        .send()
        .await
        .expect("register");
    assert_eq!(registered.status(), StatusCode::CREATED);
    let registered: Value = registered.json().await.expect("json");
    let user_id = registered["id"].as_str().expect("id").to_owned();
    let erin = api.login(EMAIL, PASSWORD).await["access_token"].as_str().expect("token").to_owned();
    let (status, changed) = api
        .call(Method::PATCH, "/api/v1/users/me", Some(&erin), Some(json!({"name": "Erin Quillfeather", "phone": "+4915112345678"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{changed:?}");
    let order = json!({
        "lines": [{"sku": "ERASE-1", "quantity": 1}],
        "shipping_address": {"name": "Erin Quillfeather", "line1": "Zwetschgenweg 42", "line2": "Hinterhaus", "city": "Quedlinburg", "postal_code": "06484", "country": "de"},
        "payment_method": "tok_approve"
    });
    let (status, placed) = api.post("/api/v1/orders", Some(&erin), order).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{placed:?}");
    let order_id = placed["id"].as_str().expect("id").to_owned();
    eventually("the order is confirmed and the user listed by name", || async {
        let (_, o) = api.call(Method::GET, &format!("/api/v1/orders/{order_id}"), Some(&erin), None).await;
        let (_, me) = api.call(Method::GET, "/api/v1/users/me", Some(&erin), None).await;
        match (o["status"].as_str(), me["name"].as_str()) {
            (Some("confirmed"), Some("Erin Quillfeather")) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    let (_, order_before) = answers(&api, &admin, &user_id, &order_id).await;
    assert_eq!(order_before["shipping_address"]["line1"], "Zwetschgenweg 42", "{order_before}");

    // Before: the read models hold the person's data (the search below can find it), Kafka
    // never does (sealed), and the log holds it sealed only.
    let before = pg_dump(&url);
    assert_eq!(found_in(&before), SECRETS.to_vec(), "the read models hold the customer's data before the erasure");
    // The stored answers' table in a dump (the key is also in the event's metadata).
    let answer_kept = |dump: &[u8]| {
        let text = String::from_utf8_lossy(dump);
        let table = text.split("COPY public.idempotency_keys ").nth(1).expect("the stored answers are dumped");
        table[..table.find("\\.").expect("end of the table's data")].contains("erasure-register-key-51")
    };
    assert!(answer_kept(&before), "the registration's answer is stored");
    let messages = kafka_messages(&broker.address());
    let on_kafka: Vec<&str> = messages.iter().flat_map(|m| found_in(m)).collect();
    assert!(on_kafka.is_empty(), "personal data on Kafka in clear: {on_kafka:?}");
    assert!(messages.iter().any(|m| found_in(m).is_empty() && String::from_utf8_lossy(m).contains("\"$personal\"")), "sealed fields");
    let text = String::from_utf8_lossy(&before);
    let events_table = text.split("COPY public.events ").nth(1).expect("the events table is dumped");
    let events_table = &events_table[..events_table.find("\\.").expect("end of the table's data")];
    assert!(events_table.contains("\"$personal\"") && !SECRETS.iter().any(|s| events_table.contains(s)), "the log holds them sealed");

    // Erase, as the customer asks (a wrong password first).
    let erase = |password: &str| json!({"password": password});
    let (status, _) = api.call(Method::DELETE, "/api/v1/users/me", Some(&erin), Some(erase("not-the-password"))).await;
    assert_eq!(status, StatusCode::CONFLICT, "a wrong password erases nothing");
    let (status, erased) = api.call(Method::DELETE, "/api/v1/users/me", Some(&erin), Some(erase(PASSWORD))).await;
    assert_eq!(status, StatusCode::OK, "{erased:?}");
    eventually("the session ended", || async {
        let (status, _) = api.call(Method::GET, "/api/v1/users/me", Some(&erin), None).await;
        (status == StatusCode::UNAUTHORIZED).then_some(()).ok_or(format!("{status}"))
    })
    .await;
    let (status, _) = api.post("/api/v1/auth/login", None, json!({"email": EMAIL, "password": PASSWORD})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no login afterwards");
    let (status, again) = api.post(&format!("/api/v1/admin/users/{user_id}/erase"), Some(&admin), json!({})).await;
    assert_eq!(status, StatusCode::GONE, "erased once: {again:?}");

    eventually("every read model applied the erasure", || async {
        let (user, order) = answers(&api, &admin, &user_id, &order_id).await;
        let address = &order["shipping_address"];
        let done = user["email"] == "erased@erased.invalid"
            && user["name"] == "[erased]"
            && address["line1"] == "[erased]"
            && address["line2"].is_null()
            && address["country"] == "DE";
        done.then_some(()).ok_or(format!("{user}\n{order}"))
    })
    .await;
    // The order keeps everything but the name and address: amounts, tax, status, dates.
    let (_, mut order) = answers(&api, &admin, &user_id, &order_id).await;
    let mut kept = order_before.clone();
    for o in [&mut order, &mut kept] {
        if let Value::Object(o) = o {
            o.remove("shipping_address");
        }
    }
    assert_eq!(order, kept, "the order keeps what the shop must keep");
    let (status, history) = api.call(Method::GET, &format!("/api/v1/admin/history/user/{user_id}"), Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK, "{history:?}");
    let history_text = history.to_string();
    assert!(history_text.contains("erased") && found_in(history_text.as_bytes()).is_empty(), "history shows it erased: {history_text}");

    // After: nowhere in clear.
    let wait_for_kafka = Instant::now() + Duration::from_secs(60);
    loop {
        let messages = kafka_messages(&broker.address());
        let on_kafka: Vec<&str> = messages.iter().flat_map(|m| found_in(m)).collect();
        assert!(on_kafka.is_empty(), "personal data on Kafka in clear: {on_kafka:?}");
        if messages.iter().any(|m| String::from_utf8_lossy(m).contains("\"user.erased\"")) {
            break;
        }
        assert!(Instant::now() < wait_for_kafka, "user.erased reaches Kafka");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let after = pg_dump(&url);
    assert!(found_in(&after).is_empty(), "in the database dump after the erasure: {:?}", found_in(&after));
    assert!(!answer_kept(&after), "stored answers that name the user are dropped");
    assert!(found_in(&redis_contents(&redis_url).await).is_empty(), "in Redis");
    let mut index = Vec::new();
    files_under(&dir, &|p| !p.components().any(|c| c.as_os_str() == "outbox"), &mut index);
    assert!(
        index.iter().any(|(p, _)| p.contains("index")),
        "the search index files are read: {:?}",
        index.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    for (path, bytes) in &index {
        assert!(found_in(bytes).is_empty(), "in {path}: {:?}", found_in(bytes));
    }
    // The mail outbox keeps what was sent before (the README says so), and nothing after.
    let mut outbox = Vec::new();
    files_under(&dir.join("outbox"), &|_| true, &mut outbox);
    assert!(outbox.iter().any(|(_, m)| found_in(m).contains(&EMAIL)), "the welcome mail was sent before");

    // A full replay gives the same erased answers.
    let before_replay = answers(&api, &admin, &user_id, &order_id).await;
    let mut replay = testkit::binary(&dir, 0);
    shop(&mut replay);
    let replayed = replay.args(["replay", "--all"]).stdout(Stdio::null()).stderr(Stdio::piped()).output().expect("replay runs");
    assert!(replayed.status.success(), "replay: {}", String::from_utf8_lossy(&replayed.stderr));
    eventually("the rebuilt read models answer as before", || async {
        let now = answers(&api, &admin, &user_id, &order_id).await;
        (now == before_replay).then_some(()).ok_or(format!("{:?}\n!=\n{before_replay:?}", now))
    })
    .await;
    let after_replay = pg_dump(&url);
    assert!(found_in(&after_replay).is_empty(), "after the replay: {:?}", found_in(&after_replay));

    // The erasure gave the address up: the person may register with it again, as someone new.
    let (status, again) = api.post("/api/v1/auth/register", None, json!({"email": EMAIL, "password": PASSWORD, "name": "Erin"})).await;
    assert_eq!(status, StatusCode::CREATED, "{again:?}");
    assert_ne!(again["id"], json!(user_id), "a new user");
    assert!(api.login(EMAIL, PASSWORD).await["access_token"].is_string(), "who can sign in");

    let _ = std::fs::remove_dir_all(&dir);
}
