//! Web push through the whole shop on each backend: the VAPID key endpoint, subscriptions
//! (checked, at most 10, the caller's own), and an order's news reaching a subscribed browser
//! through a local push service that verifies and decrypts what it gets.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use testkit::{both_modes, PushService, TestApp};

fn configure(c: &mut shop::Config) {
    let key = notifier::push::VapidKey::generate("mailto:ops@shop.example");
    c.vapid_private_key = Some(http_kit::Secret::new(key.private_encoded()));
    c.vapid_subject = "mailto:ops@shop.example".into();
    // The push service of the test listens on 127.0.0.1 over plain http.
    c.webhook_allow_private = true;
    c.webhook_allow_http = true;
}

both_modes!(a_subscribed_browser_hears_that_its_order_shipped, configure = configure, |app: TestApp| async move {
    let key = app.call(Method::GET, "/api/v1/push/vapid-public-key", None, None, &[]).await;
    assert_eq!(key.status, StatusCode::OK);
    let public = key.body["public_key"].as_str().expect("key").to_owned();
    assert_eq!(public.len(), 87, "65 bytes, base64url without padding: {public}");

    let admin = app.admin_token().await;
    app.stocked(&admin, "LAMP-1", 1_000, 5).await;
    let ada = app.customer_token("ada@example.com").await;
    let bob = app.customer_token("bob@example.com").await;
    let service = PushService::start().await;
    let path = "/api/v1/users/me/push-subscriptions";

    assert_eq!(app.post(path, None, service.subscribe().json()).await.status, StatusCode::UNAUTHORIZED);
    let mut bad = service.subscribe().json();
    bad["keys"]["p256dh"] = json!("not-a-key");
    let refused = app.post(path, Some(&ada), bad).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_value"), "{:?}", refused.body);
    let malformed = app.post(path, Some(&ada), json!({"endpoint": 5})).await;
    assert!(malformed.status.is_client_error() && !malformed.code().is_empty(), "{:?}", malformed.body);

    let browser = service.subscribe();
    let created = app.post(path, Some(&ada), browser.json()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.body["id"].as_str().expect("id").to_owned();
    for _ in 0..9 {
        assert_eq!(app.post(path, Some(&ada), service.subscribe().json()).await.status, StatusCode::CREATED);
    }
    let eleventh = app.post(path, Some(&ada), service.subscribe().json()).await;
    assert_eq!((eleventh.status, eleventh.code()), (StatusCode::CONFLICT, "limit_reached"));
    let mine = app.call(Method::GET, path, Some(&ada), None, &[]).await.body;
    assert_eq!(mine.as_array().map(Vec::len), Some(10));
    assert!(!mine.to_string().contains(&browser.auth), "the keys are not shown again");
    let theirs = app.call(Method::DELETE, &format!("{path}/{id}"), Some(&bob), None, &[]).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND, "Bob cannot remove Ada's");
    // Nine of Ada's other browsers go; the first stays.
    for other in mine.as_array().expect("list").iter().filter_map(|s| s["id"].as_str()).filter(|s| *s != id) {
        assert_eq!(app.call(Method::DELETE, &format!("{path}/{other}"), Some(&ada), None, &[]).await.status, StatusCode::NO_CONTENT);
    }

    let body = json!({
        "lines": [{"sku": "LAMP-1", "quantity": 1}],
        "shipping_address": {"name": "Ada Lovelace", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "de"},
        "payment_method": "tok_approve"
    });
    let order = app.post("/api/v1/orders", Some(&ada), body).await.body["id"].as_str().expect("order").to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = app.call(Method::GET, &format!("/api/v1/orders/{order}"), Some(&ada), None, &[]).await.body;
        if view["status"] == "confirmed" {
            break;
        }
        assert!(Instant::now() < deadline, "{view:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ship = json!({"carrier": "DHL", "tracking_number": "JD0001"});
    assert_eq!(app.post(&format!("/api/v1/orders/{order}/ship"), Some(&admin), ship).await.status, StatusCode::ACCEPTED);
    let deadline = Instant::now() + Duration::from_secs(30);
    let shipped = loop {
        let pushed = service.pushed();
        if let Some(p) = pushed.iter().find(|p| p.payload["title"].as_str().is_some_and(|t| t.ends_with("has shipped"))) {
            break p.clone();
        }
        assert!(Instant::now() < deadline, "no push for the shipment: {pushed:?}, refused {:?}", service.refused());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(shipped.token, browser.token);
    assert_eq!(shipped.vapid_key, public, "signed with the key the shop hands out");
    assert_eq!(shipped.payload["url"], format!("/orders/{order}"));
    assert!(service.pushed().iter().all(|p| p.token == browser.token), "only the subscription that stayed");

    let listed = app.call(Method::GET, "/api/v1/admin/deliveries?channel=push", Some(&admin), None, &[]).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert!(!listed.body.to_string().contains(&id), "devices are masked: {}", listed.body);
});

#[tokio::test]
async fn a_malformed_vapid_key_stops_the_start() {
    let dir = std::env::temp_dir().join(format!("shop-vapid-start-{}", uuid::Uuid::new_v4().simple()));
    let mut config = shop::Config::embedded(dir.clone());
    config.jwt_secret = Some(http_kit::Secret::new("a-test-secret-of-at-least-32-bytes-0123456789"));
    config.vapid_private_key = Some(http_kit::Secret::new("not-a-key"));
    let started = shop::Application::build(&config).await;
    let _ = std::fs::remove_dir_all(&dir);
    let err = started.err().expect("refused");
    assert!(format!("{err:#}").contains("SHOP_VAPID_PRIVATE_KEY"), "{err:#}");
    assert!(!format!("{err:#}").contains("not-a-key"), "the key is not printed: {err:#}");
}
