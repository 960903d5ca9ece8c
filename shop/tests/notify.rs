//! Webhook administration over HTTP in both modes, and a signed delivery from `shop serve` to
//! a real receiver.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::json;

use testkit::both_modes;
use testkit::TestApp;

/// The receivers here listen on 127.0.0.1 over plain http, which only a development setting
/// allows (`shop/tests/security.rs` checks that the defaults refuse them).
fn local_webhooks(c: &mut shop::Config) {
    c.webhook_allow_private = true;
    c.webhook_allow_http = true;
}

both_modes!(admins_register_webhooks_and_receive_signed_events, configure = local_webhooks, |app: TestApp| async move {
    let received: Arc<Mutex<Vec<(HeaderMap, String)>>> = Arc::default();
    let kept = received.clone();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let kept = kept.clone();
            async move {
                kept.lock().expect("kept").push((headers, body));
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, receiver).await.expect("serves") });

    let admin = app.admin_token().await;
    let ada = app.customer_token("ada@example.com").await;
    let body = json!({"url": url, "event_types": ["stock.*"]});
    assert_eq!(app.post("/api/v1/admin/webhooks", Some(&ada), body.clone()).await.status, StatusCode::FORBIDDEN);
    let bad = app.post("/api/v1/admin/webhooks", Some(&admin), json!({"url": "ftp://x", "event_types": ["stock.*"]})).await;
    assert_eq!((bad.status, bad.body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("url")));
    let created = app.post("/api/v1/admin/webhooks", Some(&admin), body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.body["id"].as_str().expect("id").to_owned();
    let secret = created.body["secret"].as_str().expect("secret").to_owned();
    let listed = app.call(Method::GET, "/api/v1/admin/webhooks", Some(&admin), None, &[]).await;
    assert_eq!(listed.body.as_array().map(Vec::len), Some(1));
    assert!(listed.body[0].get("secret").is_none(), "secrets are shown once");

    app.create_product(&admin, "HOOK-1").await;
    let receipt = app.post("/api/v1/stock/HOOK-1/receipts", Some(&admin), json!({"quantity": 7})).await;
    assert!(receipt.status.is_success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.lock().expect("kept").is_empty() {
        assert!(Instant::now() < deadline, "no webhook arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (headers, body) = received.lock().expect("kept")[0].clone();
    let signature = headers["shop-signature"].to_str().expect("ascii").to_owned();
    let t: i64 = signature.trim_start_matches("t=").split(',').next().and_then(|t| t.parse().ok()).expect("t");
    assert_eq!(signature, notifier::webhooks::signature(&secret, t, &body));
    let envelope: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(envelope["type"], "stock.received");
    assert_eq!(headers["shop-event-id"].to_str().ok(), envelope["id"].as_str());

    // The receiver has the request a moment before the dispatcher records the answer.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let deliveries = app.call(Method::GET, &format!("/api/v1/admin/webhooks/{id}/deliveries"), Some(&admin), None, &[]).await;
        if deliveries.body[0]["status"] == "sent" {
            break;
        }
        assert!(Instant::now() < deadline && deliveries.body[0]["status"] == "sending", "{:?}", deliveries.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let other = app.admin_token_in("globex", "boss@globex.example").await;
    assert_eq!(
        app.call(Method::GET, &format!("/api/v1/admin/webhooks/{id}/deliveries"), Some(&other), None, &[]).await.status,
        StatusCode::NOT_FOUND
    );
    let rotated = app.post(&format!("/api/v1/admin/webhooks/{id}/rotate-secret"), Some(&admin), json!({})).await;
    assert!(rotated.body["secret"].as_str().is_some_and(|s| s != secret));
    assert_eq!(
        app.call(Method::DELETE, &format!("/api/v1/admin/webhooks/{id}"), Some(&other), None, &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call(Method::DELETE, &format!("/api/v1/admin/webhooks/{id}"), Some(&admin), None, &[]).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.call(Method::GET, "/api/v1/admin/webhooks", Some(&admin), None, &[]).await.body.as_array().map(Vec::len), Some(0));
});
