//! Traces over OTLP: `shop serve` with `OTEL_EXPORTER_OTLP_ENDPOINT` pointed at a real OTLP/HTTP
//! receiver in this test. An order placed with a `traceparent` is followed end to end: the HTTP
//! request continues the caller's trace, the saga's reconciliation and the notifier's mail
//! continue it through the events' metadata, and the projections' batch links to it.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::Router;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// One exported span: trace id, span id, parent span id, name, linked trace ids, service.
#[derive(Debug, Clone)]
struct Span {
    trace: String,
    id: String,
    parent: String,
    name: String,
    links: Vec<String>,
    service: String,
}

fn spans_of(body: &Value) -> Vec<Span> {
    let mut out = Vec::new();
    for rs in body["resourceSpans"].as_array().into_iter().flatten() {
        let service = rs["resource"]["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["key"] == "service.name")
            .and_then(|a| a["value"]["stringValue"].as_str())
            .unwrap_or_default()
            .to_owned();
        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
            for s in ss["spans"].as_array().into_iter().flatten() {
                let text = |v: &Value| v.as_str().unwrap_or_default().to_lowercase();
                out.push(Span {
                    trace: text(&s["traceId"]),
                    id: text(&s["spanId"]),
                    parent: text(&s["parentSpanId"]),
                    name: text(&s["name"]),
                    links: s["links"].as_array().into_iter().flatten().map(|l| text(&l["traceId"])).collect(),
                    service: service.clone(),
                });
            }
        }
    }
    out
}

#[tokio::test]
async fn an_order_is_followed_from_the_request_through_the_saga_to_the_mail() {
    // The OTLP/HTTP receiver (JSON encoding).
    let received: Arc<Mutex<Vec<Span>>> = Arc::default();
    let sink = received.clone();
    let app = Router::new().route(
        "/v1/traces",
        post(move |body: String| {
            let sink = sink.clone();
            async move {
                let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                sink.lock().expect("spans").extend(spans_of(&parsed));
                (StatusCode::OK, [("content-type", "application/json")], "{}")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let collector = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("collector serves") });

    let dir = testkit::scratch_dir();
    let port = testkit::free_port();
    testkit::create_admin(&dir, "admin@example.com", "admin password");
    let mut child = testkit::binary(&dir, port)
        .arg("serve")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("shop starts");
    let base = format!("http://127.0.0.1:{port}");
    testkit::until_ready(&base).await;
    let http = reqwest::Client::new();
    let post = |path: &str, token: Option<&str>, body: Value| {
        let mut req = http.post(format!("{base}{path}")).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req
    };
    let json_of = |r: reqwest::Response| async move { r.json::<Value>().await.expect("json") };
    let login = |email: &'static str, password: &'static str| {
        json_of_login(post("/api/v1/auth/login", None, json!({"email": email, "password": password})))
    };
    let admin = login("admin@example.com", "admin password").await;
    let product = json_of(
        post(
            "/api/v1/products",
            Some(&admin),
            json!({"sku": "TRACE-1", "name": "Lamp", "category": "misc", "price": {"amount": 900, "currency": "EUR"}}),
        )
        .send()
        .await
        .expect("create"),
    )
    .await;
    let id = product["id"].as_str().expect("product id").to_owned();
    assert!(post(&format!("/api/v1/products/{id}/publish"), Some(&admin), json!({})).send().await.expect("publish").status().is_success());
    assert!(post("/api/v1/stock/TRACE-1/receipts", Some(&admin), json!({"quantity": 3}))
        .send()
        .await
        .expect("receive")
        .status()
        .is_success());
    assert!(post("/api/v1/auth/register", None, json!({"email": "ada@example.com", "password": "correct horse", "name": "Ada"}))
        .send()
        .await
        .expect("register")
        .status()
        .is_success());
    let ada = login("ada@example.com", "correct horse").await;

    // The caller's trace.
    let (trace, caller_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let placed = post(
        "/api/v1/orders",
        Some(&ada),
        json!({
            "lines": [{"sku": "TRACE-1", "quantity": 1}],
            "shipping_address": {"name": "Ada Lovelace", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "de"},
            "payment_method": "tok_approve"
        }),
    )
    .header("traceparent", format!("00-{trace}-{caller_span}-01"))
    .send()
    .await
    .expect("place");
    assert_eq!(placed.status(), StatusCode::ACCEPTED);
    let order = json_of(placed).await["id"].as_str().expect("order id").to_owned();

    // Until the request, the saga's steps to confirmation, the mail and a projection batch
    // have all been exported.
    let deadline = Instant::now() + Duration::from_secs(30);
    let spans = loop {
        let spans: Vec<Span> =
            received.lock().expect("spans").iter().filter(|s| s.trace == trace || s.links.iter().any(|l| l == trace)).cloned().collect();
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        // The confirmation mail: handled under one of the saga's steps (the event that
        // confirmed the order was written by it).
        let by_id: HashMap<&str, &Span> = spans.iter().map(|s| (s.id.as_str(), s)).collect();
        let mailed = spans.iter().any(|s| {
            s.name == "notifier.handle" && s.trace == trace && by_id.get(s.parent.as_str()).is_some_and(|p| p.name == "saga.reconcile")
        });
        let confirmed = http.get(format!("{base}/api/v1/orders/{order}")).bearer_auth(&ada).send().await.expect("order");
        let confirmed = confirmed.json::<Value>().await.unwrap_or(Value::Null)["status"] == "confirmed";
        if confirmed
            && mailed
            && names.contains(&"saga.reconcile")
            && names.contains(&"projection.batch")
            && names.contains(&"post /api/v1/orders")
        {
            break spans;
        }
        assert!(Instant::now() < deadline, "spans of the order's trace so far: {names:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let request = spans.iter().find(|s| s.name == "post /api/v1/orders").expect("request span");
    assert_eq!((request.trace.as_str(), request.parent.as_str()), (trace, caller_span), "the request continues the caller's span");
    assert_eq!(request.service, "shop-serve");
    // The saga's first look at the order is a child of the request, through the event.
    assert!(
        spans.iter().any(|s| s.name == "saga.reconcile" && s.trace == trace && s.parent == request.id),
        "a saga span is a child of the request: {spans:#?}"
    );
    // The placement itself is handled by the notifier under the request (it sends nothing for
    // it); the confirmation under a saga step, as the loop above waited for.
    assert!(spans.iter().any(|s| s.name == "notifier.handle" && s.parent == request.id), "{spans:#?}");
    assert!(
        spans.iter().any(|s| s.name == "projection.batch" && s.links.iter().any(|l| l == trace)),
        "a projection batch links to the trace"
    );

    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill").success());
    assert!(child.wait().expect("stops").success());
    let _ = std::fs::remove_dir_all(&dir);
}

async fn json_of_login(request: reqwest::RequestBuilder) -> String {
    let answer: Value = request.send().await.expect("login").json().await.expect("json");
    answer["access_token"].as_str().unwrap_or_else(|| panic!("token in {answer}")).to_owned()
}
