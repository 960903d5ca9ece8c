//! Time travel and the audit trail (`/admin/history`), and schema evolution end to end: an event
//! stored in an older shape reads as the current one everywhere (the aggregate, the read model,
//! the history), in both modes.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use testkit::both_modes;
use testkit::{Answer, TestApp};

async fn get(app: &TestApp, path: &str, token: &str) -> Answer {
    app.call(Method::GET, path, Some(token), None, &[]).await
}

/// Polls `path` until `done` holds for its answer.
async fn until(app: &TestApp, path: &str, token: &str, done: impl Fn(&Answer) -> bool) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = get(app, path, token).await;
        if done(&answer) {
            return answer;
        }
        assert!(Instant::now() < deadline, "{path} never got there; last {} {:?}", answer.status, answer.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

both_modes!(an_aggregates_history_says_who_why_and_when_and_its_state_at_any_point, |app: TestApp| async move {
    let admin = app.admin_token().await;
    let created = app.create_product(&admin, "HIST-1").await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.body["id"].as_str().expect("id").to_owned();
    let first_position = created.body["position"].as_i64().expect("position");
    let mut positions = vec![first_position];
    for amount in [25_000, 27_500] {
        let changed = app
            .call(
                Method::PUT,
                &format!("/api/v1/products/{id}/price"),
                Some(&admin),
                Some(json!({"amount": amount, "currency": "EUR"})),
                &[],
            )
            .await;
        assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.body);
        positions.push(changed.body["position"].as_i64().expect("position"));
    }

    // Every event, oldest first, with who caused it; a page at a time.
    let path = format!("/api/v1/admin/history/product/{id}");
    let all = get(&app, &path, &admin).await;
    assert_eq!(all.status, StatusCode::OK, "{:?}", all.body);
    let events = all.body["events"].as_array().expect("events");
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().expect("type")).collect();
    assert_eq!(types, ["product.created", "product.price_changed", "product.price_changed"]);
    let me = get(&app, "/api/v1/users/me", &admin).await.body["id"].as_str().expect("my id").to_owned();
    for (e, position) in events.iter().zip(&positions) {
        assert_eq!(e["who"]["user_id"], json!(me), "{e}");
        assert_eq!(e["position"], json!(position));
        assert!(e["why"]["correlation_id"].is_string() && e["occurred_at"].is_string(), "{e}");
    }
    assert_eq!(events[2]["data"]["previous"]["amount"], 25_000, "the previous price is recorded");
    assert_eq!(all.body["next_after"], Value::Null);
    let first = get(&app, &format!("{path}?limit=2"), &admin).await;
    assert_eq!(first.body["events"].as_array().map(Vec::len), Some(2));
    let rest = get(&app, &format!("{path}?limit=2&after={}", first.body["next_after"]), &admin).await;
    assert_eq!(rest.body["events"][0]["sequence"], 3, "{:?}", rest.body);
    assert_eq!(rest.body["next_after"], Value::Null);

    // The state then: after the first change, and now (without a point).
    let at = |q: String| {
        let (app, admin, url) = (&app, &admin, format!("{path}/state?{q}"));
        async move { get(app, &url, admin).await }
    };
    let then = at(format!("at_position={}", positions[1])).await;
    assert_eq!(then.status, StatusCode::OK, "{:?}", then.body);
    assert_eq!(
        (then.body["sequence"].as_i64(), then.body["state"]["price"]["amount"].as_i64()),
        (Some(2), Some(25_000)),
        "{:?}",
        then.body
    );
    let between = at(format!("at_position={}", positions[2] - 1)).await;
    assert_eq!(between.body["sequence"], 2, "the last event at or before the position");
    let now = get(&app, &format!("{path}/state"), &admin).await;
    assert_eq!(now.body["state"]["price"]["amount"], 27_500, "{:?}", now.body);
    let by_time = at(format!("at={}", urlencode(events[1]["occurred_at"].as_str().expect("time")))).await;
    assert!(by_time.body["sequence"].as_i64().is_some_and(|s| s >= 2), "{:?}", by_time.body);
    assert_eq!(at("at=2001-01-01T00:00:00Z".into()).await.status, StatusCode::NOT_FOUND, "it did not exist then");

    // Bad input is a 4xx problem, never a 500.
    for (q, field) in [("at_position=0", "at_position"), ("at=yesterday", "at"), ("at_position=1&at=2001-01-01T00:00:00Z", "at")] {
        let bad = at(q.into()).await;
        assert_eq!((bad.status, bad.body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(field)), "{q}: {:?}", bad.body);
    }
    assert_eq!(get(&app, &format!("{path}?after=-1"), &admin).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(get(&app, &format!("{path}?limit=1000"), &admin).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(get(&app, "/api/v1/admin/history/product/no-such-thing", &admin).await.status, StatusCode::NOT_FOUND);

    // Only admins, only their tenant, only published types, no secret even hashed.
    let customer = app.customer_token("ada@example.com").await;
    assert_eq!(get(&app, &path, &customer).await.status, StatusCode::FORBIDDEN);
    let other = app.admin_token_in("globex", "admin@globex.example").await;
    assert_eq!(get(&app, &path, &other).await.status, StatusCode::NOT_FOUND, "another tenant's admin sees nothing");
    for internal in ["session", "email_claim", "admin_roster", "invoice_book"] {
        assert_eq!(get(&app, &format!("/api/v1/admin/history/{internal}/{me}"), &admin).await.status, StatusCode::NOT_FOUND, "{internal}");
    }
    let user = get(&app, &format!("/api/v1/admin/history/user/{me}"), &admin).await;
    assert_eq!(user.status, StatusCode::OK, "{:?}", user.body);
    let user_state = get(&app, &format!("/api/v1/admin/history/user/{me}/state"), &admin).await;
    assert_eq!(user_state.status, StatusCode::OK, "{:?}", user_state.body);
    for answer in [&user, &user_state] {
        let text = answer.body.to_string();
        assert!(!text.contains("password_hash") && !text.contains("argon2"), "no password hash: {text}");
    }
});

/// `application/x-www-form-urlencoded` enough for an RFC 3339 time.
fn urlencode(s: &str) -> String {
    s.replace(':', "%3A").replace('+', "%2B")
}

both_modes!(an_event_stored_in_an_older_shape_reads_as_the_current_one_everywhere, |app: TestApp| async move {
    let admin = app.admin_token().await;
    let customer_id = uuid::Uuid::now_v7();
    let order_id = uuid::Uuid::now_v7();
    // `order.placed` as version 1 wrote it: the address had no `line2` and no `region`.
    let fixture: Value =
        serde_json::from_str(include_str!("../../domain/fixtures/events/order/placed.v1.json")).expect("the version 1 fixture");
    let mut payload = fixture["payload"].clone();
    payload["placed"]["tenant"] = json!("default");
    payload["placed"]["order_id"] = json!(order_id.to_string());
    payload["placed"]["customer"] = json!(customer_id.to_string());
    let stream = format!("default:{order_id}");
    let written = app
        .state
        .store
        .append(&[store::StreamAppend {
            aggregate_type: "order".into(),
            aggregate_id: stream.clone(),
            expected_version: 0,
            events: vec![store::NewEvent {
                event_type: "placed".into(),
                event_version: "1".into(),
                payload,
                metadata: json!({"tenant": "default"}),
            }],
        }])
        .await
        .expect("a version 1 event is stored");
    assert_eq!(written[0].len(), 1);

    // The history and the state: version 2, the new fields empty.
    let path = format!("/api/v1/admin/history/order/{order_id}");
    let history = get(&app, &path, &admin).await;
    assert_eq!(history.status, StatusCode::OK, "{:?}", history.body);
    let placed = &history.body["events"][0];
    assert_eq!((placed["type"].as_str(), placed["version"].as_str()), (Some("order.placed"), Some("2")), "{placed}");
    assert_eq!(placed["data"]["shipping_address"]["line2"], Value::Null);
    assert!(placed["data"]["shipping_address"].as_object().is_some_and(|a| a.contains_key("region")), "{placed}");
    let state = get(&app, &format!("{path}/state?at_position={}", written[0][0]), &admin).await;
    assert_eq!(state.status, StatusCode::OK, "the aggregate folds a version 1 event: {:?}", state.body);
    assert_eq!(state.body["state"]["status"], "placed", "{:?}", state.body);

    // The read model took it (the projections read it as version 2), and the saga moved it on.
    let order = until(&app, &format!("/api/v1/orders/{order_id}"), &admin, |a| a.status == StatusCode::OK).await;
    assert_eq!(order.body["shipping_address"]["line1"], fixture["payload"]["placed"]["shipping_address"]["line1"], "{:?}", order.body);
    assert!(order.body["shipping_address"].get("line2").is_none_or(Value::is_null));

    // A new order gives both new fields, and they are kept.
    let token = app.customer_token("grace@example.com").await;
    app.stocked(&admin, "SHAPE-1", 1_000, 5).await;
    let body = json!({
        "lines": [{"sku": "SHAPE-1", "quantity": 1}],
        "shipping_address": {"name": "Grace Hopper", "line1": "1 Main St", "line2": "Apt 4", "city": "Arlington", "region": "VA", "postal_code": "22201", "country": "US"},
        "payment_method": "tok_approve"
    });
    let placed = app.post("/api/v1/orders", Some(&token), body).await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{:?}", placed.body);
    let id = placed.body["id"].as_str().expect("id");
    let mine = until(&app, &format!("/api/v1/orders/{id}"), &token, |a| a.status == StatusCode::OK).await;
    assert_eq!(
        (mine.body["shipping_address"]["line2"].as_str(), mine.body["shipping_address"]["region"].as_str()),
        (Some("Apt 4"), Some("VA"))
    );
    let too_long = json!({
        "lines": [{"sku": "SHAPE-1", "quantity": 1}],
        "shipping_address": {"name": "G", "line1": "1", "line2": "x".repeat(201), "city": "A", "postal_code": "1", "country": "US"},
        "payment_method": "tok_approve"
    });
    let refused = app.post("/api/v1/orders", Some(&token), too_long).await;
    assert_eq!((refused.status, refused.body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("shipping_address.line2")));
});

both_modes!(the_sagas_steps_are_named_and_a_long_streams_state_starts_from_its_snapshot, |app: TestApp| async move {
    let admin = app.admin_token().await;
    app.stocked(&admin, "SNAP-1", 500, 1).await;
    let mut positions = Vec::new();
    // 120 more receipts: the stock item is snapshotted at its 100th event.
    for _ in 0..120 {
        let received = app.post("/api/v1/stock/SNAP-1/receipts", Some(&admin), json!({"quantity": 1})).await;
        assert!(received.status.is_success(), "{:?}", received.body);
        positions.push(received.body["position"].as_i64().expect("position"));
    }
    let path = "/api/v1/admin/history/stock/SNAP-1/state";
    let early = get(&app, &format!("{path}?at_position={}", positions[48]), &admin).await;
    assert_eq!(
        (early.body["state"]["on_hand"].as_i64(), early.body["from_snapshot"].as_bool()),
        (Some(50), Some(false)),
        "{:?}",
        early.body
    );
    let late = until(&app, &format!("{path}?at_position={}", positions[109]), &admin, |a| a.body["from_snapshot"] == true).await;
    assert_eq!(late.body["state"]["on_hand"], 111, "{:?}", late.body);
    assert_eq!(late.body["sequence"], 111);
    let now = get(&app, path, &admin).await;
    assert_eq!((now.body["state"]["on_hand"].as_i64(), now.body["from_snapshot"].as_bool()), (Some(121), Some(true)), "{:?}", now.body);

    // An order's history names the saga's steps and the customer who placed it.
    let token = app.customer_token("ada@example.com").await;
    let body = json!({
        "lines": [{"sku": "SNAP-1", "quantity": 2}],
        "shipping_address": {"name": "Ada Lovelace", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"},
        "payment_method": "tok_approve"
    });
    let placed = app.post("/api/v1/orders", Some(&token), body).await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{:?}", placed.body);
    let id = placed.body["id"].as_str().expect("id");
    let history = until(&app, &format!("/api/v1/admin/history/order/{id}"), &admin, |a| {
        a.body["events"].as_array().is_some_and(|e| e.iter().any(|e| e["type"] == "order.invoiced"))
    })
    .await;
    let events = history.body["events"].as_array().expect("events");
    let customer = get(&app, "/api/v1/users/me", &token).await.body["id"].clone();
    assert_eq!(events[0]["who"]["user_id"], customer, "the customer placed it: {:?}", events[0]);
    assert_eq!(events[0]["data"]["payment_method"], "tok", "the payment method is masked: {:?}", events[0]);
    for e in &events[1..] {
        assert_eq!(e["why"]["causation_id"], "order_saga", "{e}");
        assert!(e["why"]["saga_step"].as_str().is_some_and(|s| !s.is_empty()), "the step is named: {e}");
        assert_eq!(e["why"]["correlation_id"], json!(id), "{e}");
    }
});
