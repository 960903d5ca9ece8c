//! The example consumers (`examples/`) against a real broker and a running shop, as an
//! integrator runs them: after a scripted flow (stock received and adjusted, orders confirmed
//! and one cancelled for want of stock), the Python daily sales export equals the query API's
//! sales figures and the Rust stock mirror's warehouse equals the API's stock levels; each,
//! killed (SIGKILL) mid-stream and started again, ends with the same output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::routing::put;
use axum::{Json, Router};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn contract() -> PathBuf {
    repo().join("worker-kit/contract/asyncapi.json")
}

/// The Python of the test command's virtualenv (`SHOP_EXAMPLES_PYTHON`), with
/// `confluent-kafka` and `jsonschema`.
fn python() -> Option<String> {
    match std::env::var("SHOP_EXAMPLES_PYTHON") {
        Ok(p) => Some(p),
        Err(_) if testkit::in_ci() => panic!("SHOP_EXAMPLES_PYTHON is required in CI (the test command sets it)"),
        Err(_) => {
            eprintln!("skipping: SHOP_EXAMPLES_PYTHON is not set");
            None
        }
    }
}

async fn eventually<F, Fut>(what: &str, seconds: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        match check().await {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("{what}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// The warehouse system's stand-in: what it was last told of each `<tenant>/<sku>`, and how
/// many times it was told anything.
#[derive(Default)]
struct Warehouse {
    levels: BTreeMap<String, (i64, i64)>,
    puts: usize,
}

async fn warehouse() -> (String, Arc<Mutex<Warehouse>>) {
    let shared = Arc::new(Mutex::new(Warehouse::default()));
    async fn level(State(w): State<Arc<Mutex<Warehouse>>>, UrlPath((tenant, sku)): UrlPath<(String, String)>, Json(v): Json<Value>) {
        let mut w = w.lock().expect("warehouse");
        w.puts += 1;
        w.levels.insert(format!("{tenant}/{sku}"), (v["on_hand"].as_i64().unwrap_or(-1), v["available"].as_i64().unwrap_or(-1)));
    }
    let app = Router::new().route("/levels/{tenant}/{sku}", put(level)).with_state(Arc::clone(&shared));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (base, shared)
}

fn daily_sales(python: &str, broker: &str, dir: &Path, group: &str, pace: &str) -> Child {
    Command::new(python)
        .arg(repo().join("examples/daily-sales/daily_sales.py"))
        .args(["--brokers", broker, "--group", group, "--pace", pace, "--batch", "5", "--exit-when-idle", "3"])
        .arg("--contract")
        .arg(contract())
        .arg("--out")
        .arg(dir.join(format!("{group}.csv")))
        .arg("--state")
        .arg(dir.join(format!("{group}.state.json")))
        .stdout(Stdio::null())
        .spawn()
        .expect("python runs")
}

fn stock_mirror(broker: &str, warehouse: &str, dir: &Path, pace_ms: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_stock-mirror"))
        .args(["--brokers", broker, "--warehouse", warehouse, "--group", "mirror", "--pace-ms", pace_ms])
        .arg("--contract")
        .arg(contract())
        .arg("--state")
        .arg(dir.join("mirror.state.json"))
        .stdout(Stdio::null())
        .spawn()
        .expect("stock-mirror runs")
}

fn seen(state: &Path) -> usize {
    std::fs::read_to_string(state)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .map_or(0, |v| v["seen"].as_array().map_or(0, Vec::len))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_consumers_agree_with_the_api_also_when_killed_midstream() {
    let Some(python) = python() else { return };
    let Some(broker) = testkit::own_broker() else { return };
    let dir = testkit::scratch_dir();
    let port = testkit::free_port();
    testkit::create_admin(&dir, "admin@example.com", "Adm1n-Pass-examples-1");
    let shop = testkit::binary(&dir, port)
        .env("KAFKA_BROKERS", broker.address())
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("shop starts");
    let _shop = testkit::Running(shop);
    let api = testkit::Remote::new(format!("http://127.0.0.1:{port}"));
    testkit::until_ready(&api.base).await;

    // The flow: two products in stock, one adjusted; three orders, one cancelled for want of stock.
    let admin = api.login("admin@example.com", "Adm1n-Pass-examples-1").await["access_token"].as_str().expect("token").to_owned();
    for (sku, price, units) in [("MUG-1", 1200, 10), ("LAMP-1", 4500, 3)] {
        let product = json!({"sku": sku, "name": sku, "description": "an example", "category": "misc", "price": {"amount": price, "currency": "EUR"}});
        let (status, product) = api.post("/api/v1/products", Some(&admin), product).await;
        assert_eq!(status, StatusCode::CREATED, "{product:?}");
        let id = product["id"].as_str().expect("id");
        assert!(api.post(&format!("/api/v1/products/{id}/publish"), Some(&admin), json!({})).await.0.is_success());
        assert!(api.post(&format!("/api/v1/stock/{sku}/receipts"), Some(&admin), json!({"quantity": units})).await.0.is_success());
    }
    let adjusted = api.post("/api/v1/stock/MUG-1/adjustments", Some(&admin), json!({"quantity_delta": -1, "reason": "broken"})).await;
    assert!(adjusted.0.is_success(), "{adjusted:?}");
    let customer = json!({"email": "ivy@example.com", "password": "Ivy-Pass-examples-2", "name": "Ivy"});
    assert_eq!(api.post("/api/v1/auth/register", None, customer).await.0, StatusCode::CREATED);
    let ivy = api.login("ivy@example.com", "Ivy-Pass-examples-2").await["access_token"].as_str().expect("token").to_owned();
    let mut orders = Vec::new();
    for lines in [
        json!([{"sku": "MUG-1", "quantity": 2}]),
        json!([{"sku": "MUG-1", "quantity": 1}, {"sku": "LAMP-1", "quantity": 1}]),
        json!([{"sku": "LAMP-1", "quantity": 5}]),
    ] {
        let order = json!({
            "lines": lines,
            "shipping_address": {"name": "Ivy", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "de"},
            "payment_method": "tok_approve"
        });
        let (status, placed) = api.post("/api/v1/orders", Some(&ivy), order).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{placed:?}");
        orders.push(placed["id"].as_str().expect("id").to_owned());
    }
    eventually("every order settled", 90, || async {
        let mut statuses = Vec::new();
        for id in &orders {
            let (_, o) = api.call(Method::GET, &format!("/api/v1/orders/{id}"), Some(&ivy), None).await;
            statuses.push(o["status"].as_str().unwrap_or_default().to_owned());
        }
        (statuses == ["confirmed", "confirmed", "cancelled"]).then_some(()).ok_or(format!("{statuses:?}"))
    })
    .await;

    // What the query API reports.
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let (status, sales) =
        api.call(Method::GET, &format!("/api/v1/admin/analytics/sales?from={today}&to={today}"), Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK, "{sales:?}");
    let mut expected_csv = String::from("day,currency,orders,revenue,captured\n");
    for day in sales["revenue_by_day"].as_array().expect("revenue by day") {
        let revenue = day["revenue"].as_i64().expect("revenue");
        expected_csv += &format!(
            "{},{},{},{revenue},{revenue}\n",
            day["day"].as_str().expect("day"),
            day["currency"].as_str().expect("currency"),
            day["orders"]
        );
    }
    assert!(expected_csv.lines().count() == 2 && expected_csv.contains(",EUR,2,"), "{expected_csv}");
    let mut expected_levels = BTreeMap::new();
    for sku in ["MUG-1", "LAMP-1"] {
        let (status, level) = api.call(Method::GET, &format!("/api/v1/stock/{sku}"), Some(&admin), None).await;
        assert_eq!(status, StatusCode::OK, "{level:?}");
        expected_levels.insert(
            format!("default/{sku}"),
            (level["on_hand"].as_i64().expect("on hand"), level["available"].as_i64().expect("available")),
        );
    }
    assert_eq!(expected_levels["default/MUG-1"], (6, 6), "10 received, 1 broken, 3 sold");

    // The Python export, once straight through, once killed after its first batches.
    let broker_address = broker.address();
    let straight = daily_sales(&python, &broker_address, &dir, "sales-straight", "0");
    let killed = daily_sales(&python, &broker_address, &dir, "sales-killed", "0.3");
    let mut straight = testkit::Running(straight);
    let mut killed = testkit::Running(killed);
    let killed_state = dir.join("sales-killed.state.json");
    eventually("the paced export wrote its first batch", 60, || async {
        (seen(&killed_state) > 0).then_some(()).ok_or("nothing yet".into())
    })
    .await;
    let _ = killed.0.kill(); // SIGKILL
    let _ = killed.0.wait();
    let at_kill = seen(&killed_state);
    let mut restarted = testkit::Running(daily_sales(&python, &broker_address, &dir, "sales-killed", "0"));
    for (name, run) in [("straight", &mut straight), ("restarted", &mut restarted)] {
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = run.0.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "the {name} export ends once idle");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(status.success(), "the {name} export ended with {status}");
    }
    let total = seen(&killed_state);
    assert!(at_kill < total, "killed mid-stream: {at_kill} of {total} messages applied");
    for group in ["sales-straight", "sales-killed"] {
        let csv = std::fs::read_to_string(dir.join(format!("{group}.csv"))).expect("csv");
        assert_eq!(csv, expected_csv, "{group}: the export equals the API's sales figures");
    }

    // The Rust stock mirror, killed after its first levels and started again.
    let (warehouse_url, warehouse) = warehouse().await;
    let mut mirror = testkit::Running(stock_mirror(&broker_address, &warehouse_url, &dir, "300"));
    eventually("the mirror told the warehouse something", 60, || async {
        (warehouse.lock().expect("warehouse").puts >= 2).then_some(()).ok_or("nothing yet".into())
    })
    .await;
    let _ = mirror.0.kill();
    let _ = mirror.0.wait();
    let puts_at_kill = warehouse.lock().expect("warehouse").puts;
    let _mirror = testkit::Running(stock_mirror(&broker_address, &warehouse_url, &dir, "0"));
    eventually("the warehouse has the API's levels", 90, || async {
        let levels = warehouse.lock().expect("warehouse").levels.clone();
        (levels == expected_levels).then_some(()).ok_or(format!("{levels:?} != {expected_levels:?}"))
    })
    .await;
    let puts = warehouse.lock().expect("warehouse").puts;
    assert!(puts > puts_at_kill, "it went on after the restart ({puts_at_kill} before, {puts} in all)");
    let _ = std::fs::remove_dir_all(&dir);
}
