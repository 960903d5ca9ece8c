//! Orders over real HTTP in both modes: placement to invoice, the read side, access rules,
//! bad input, cancellation with its compensation, refunds and the admin views.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use testkit::both_modes;
use testkit::{Answer, TestApp};

fn order_body(lines: Value, method: &str) -> Value {
    json!({
        "lines": lines,
        "shipping_address": {"name": "Ada Lovelace", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "de"},
        "payment_method": method
    })
}

async fn place(app: &TestApp, token: &str, lines: Value, method: &str) -> String {
    placed(app, token, lines, method).await.0
}

/// Places an order; its id and the placing command's log position.
async fn placed(app: &TestApp, token: &str, lines: Value, method: &str) -> (String, i64) {
    let placed = app.post("/api/v1/orders", Some(token), order_body(lines, method)).await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{:?}", placed.body);
    (placed.body["id"].as_str().expect("order id").to_owned(), placed.body["position"].as_i64().expect("position"))
}

async fn get(app: &TestApp, path: &str, token: &str) -> Answer {
    app.call(Method::GET, path, Some(token), None, &[]).await
}

/// Polls the order until `done` holds for it.
async fn until(app: &TestApp, token: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let order = get(app, &format!("/api/v1/orders/{id}"), token).await;
        if order.status == StatusCode::OK && done(&order.body) {
            return order.body;
        }
        assert!(Instant::now() < deadline, "order {id} never reached the state; last {:?}", order.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the stock view until it shows `on_hand` and `available`.
async fn until_stock(app: &TestApp, admin: &str, sku: &str, on_hand: i64, available: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stock = get(app, &format!("/api/v1/stock/{sku}"), admin).await;
        if (stock.body["on_hand"].as_i64(), stock.body["available"].as_i64()) == (Some(on_hand), Some(available)) {
            return;
        }
        assert!(Instant::now() < deadline, "stock of {sku} never showed {on_hand}/{available}; last {:?}", stock.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn settled(order: &Value) -> bool {
    (order["status"] == "confirmed" && !order["invoice_number"].is_null()) || order["status"] == "cancelled"
}

fn events(order: &Value) -> Vec<String> {
    order["timeline"].as_array().expect("timeline").iter().map(|e| e["event"].as_str().expect("event").to_owned()).collect()
}

both_modes!(an_order_goes_from_placement_to_invoice_shipment_and_refund, |app: TestApp| async move {
    let admin = app.admin_token().await;
    app.stocked(&admin, "PHONE-1", 19_900, 5).await;
    let ada = app.customer_token("ada@example.com").await;
    let id = place(&app, &ada, json!([{"sku": "PHONE-1", "quantity": 2}]), "tok_approve").await;
    let order = until(&app, &ada, &id, settled).await;
    assert_eq!(order["status"], "confirmed", "{order:?}");
    assert_eq!(order["subtotal"]["amount"], 39_800);
    assert_eq!(order["tax"]["amount"], 7_960, "20% default tax");
    assert_eq!(order["total"]["amount"], 47_760);
    assert_eq!(order["invoice_number"], 1);
    let timeline = events(&order);
    for step in ["placed", "stock_reserved", "payment_authorised", "confirmed", "invoiced"] {
        assert!(timeline.contains(&step.to_owned()), "{step} in {timeline:?}");
    }
    let mine = get(&app, "/api/v1/orders", &ada).await;
    assert_eq!(mine.body["items"][0]["id"].as_str().or(mine.body["items"][0]["order_id"].as_str()), Some(id.as_str()), "{:?}", mine.body);

    let invoice = get(&app, &format!("/api/v1/orders/{id}/invoice"), &ada).await;
    assert_eq!((invoice.status, invoice.body["number"].as_i64()), (StatusCode::OK, Some(1)), "{:?}", invoice.body);
    let pdf = app
        .client
        .get(format!("{}/api/v1/orders/{id}/invoice", app.base))
        .bearer_auth(&ada)
        .header("accept", "application/pdf")
        .send()
        .await
        .expect("pdf");
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    assert!(pdf.bytes().await.expect("bytes").starts_with(b"%PDF"));

    // The units left the warehouse.
    until_stock(&app, &admin, "PHONE-1", 3, 3).await;

    // Admins ship, deliver and refund; customers may not.
    let ship = json!({"carrier": "DHL", "tracking_number": "JD0001"});
    assert_eq!(app.post(&format!("/api/v1/orders/{id}/ship"), Some(&ada), ship.clone()).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.post(&format!("/api/v1/orders/{id}/ship"), Some(&admin), ship).await.status, StatusCode::ACCEPTED);
    let cancel = app.post(&format!("/api/v1/orders/{id}/cancel"), Some(&ada), json!({})).await;
    assert_eq!((cancel.status, cancel.code()), (StatusCode::CONFLICT, "illegal_transition"), "no cancel after shipping");
    assert_eq!(app.post(&format!("/api/v1/orders/{id}/deliver"), Some(&admin), json!({})).await.status, StatusCode::ACCEPTED);
    let refund =
        app.post(&format!("/api/v1/payments/{id}/refunds"), Some(&admin), json!({"amount": {"amount": 10_000, "currency": "EUR"}})).await;
    assert_eq!(refund.status, StatusCode::ACCEPTED, "{:?}", refund.body);
    let too_much =
        app.post(&format!("/api/v1/payments/{id}/refunds"), Some(&admin), json!({"amount": {"amount": 37_761, "currency": "EUR"}})).await;
    assert_eq!(
        (too_much.status, too_much.code(), too_much.body["refundable"].as_i64()),
        (StatusCode::CONFLICT, "refund_too_large", Some(37_760))
    );
    let negative =
        app.post(&format!("/api/v1/payments/{id}/refunds"), Some(&admin), json!({"amount": {"amount": -5, "currency": "EUR"}})).await;
    assert_eq!(negative.status, StatusCode::UNPROCESSABLE_ENTITY);
    let order = until(&app, &ada, &id, |o| o["refunded"]["amount"] == 10_000 || o["refunded"] == 10_000).await;
    assert_eq!(order["status"], "delivered");
    assert!(events(&order).contains(&"refunded".to_owned()));

    // The admin views.
    let listed = get(&app, "/api/v1/admin/orders?status=delivered", &admin).await;
    assert_eq!(listed.status, StatusCode::OK, "{:?}", listed.body);
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(get(&app, "/api/v1/admin/orders", &ada).await.status, StatusCode::FORBIDDEN);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let sales = get(&app, &format!("/api/v1/admin/analytics/sales?from={today}&to={today}"), &admin).await;
    assert_eq!(sales.status, StatusCode::OK, "{:?}", sales.body);
    assert_eq!(sales.body["revenue_by_day"][0]["revenue"], 47_760 - 10_000, "{:?}", sales.body);
    assert_eq!(sales.body["top_products"][0]["sku"], "PHONE-1");
    let bad_range = get(&app, "/api/v1/admin/analytics/sales?from=yesterday&to=2026-01-01", &admin).await;
    assert!(bad_range.status.is_client_error(), "{:?}", bad_range.body);
    let saga = get(&app, &format!("/api/v1/admin/orders/{id}/saga"), &admin).await;
    assert_eq!((saga.status, saga.body["step"].as_str()), (StatusCode::OK, Some("completed")), "{:?}", saga.body);
});

both_modes!(customers_see_and_touch_only_their_own_orders, |app: TestApp| async move {
    let admin = app.admin_token().await;
    app.stocked(&admin, "BOOK-1", 1_000, 10).await;
    let ada = app.customer_token("ada@example.com").await;
    let bob = app.customer_token("bob@example.com").await;
    let id = place(&app, &ada, json!([{"sku": "BOOK-1", "quantity": 1}]), "tok_approve").await;
    until(&app, &ada, &id, settled).await;
    for path in [format!("/api/v1/orders/{id}"), format!("/api/v1/orders/{id}/invoice"), format!("/api/v1/payments/{id}")] {
        assert_eq!(get(&app, &path, &bob).await.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(get(&app, &path, &ada).await.status, StatusCode::OK, "{path}");
        assert_eq!(get(&app, &path, &admin).await.status, StatusCode::OK, "{path}");
    }
    assert_eq!(app.post(&format!("/api/v1/orders/{id}/cancel"), Some(&bob), json!({})).await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&app, "/api/v1/orders", &bob).await.body["items"].as_array().map(Vec::len), Some(0));
    // Another tenant's admin sees nothing of it.
    let other = app.admin_token_in("globex", "boss@globex.example").await;
    assert_eq!(get(&app, &format!("/api/v1/orders/{id}"), &other).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.post(&format!("/api/v1/orders/{id}/ship"), Some(&other), json!({"carrier": "x", "tracking_number": "y"})).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(get(&app, "/api/v1/admin/orders", &other).await.body["items"].as_array().map(Vec::len), Some(0));
    assert_eq!(app.call(Method::GET, "/api/v1/orders", None, None, &[]).await.status, StatusCode::UNAUTHORIZED);
});

both_modes!(bad_orders_are_refused_with_a_problem_and_nothing_written, |app: TestApp| async move {
    let admin = app.admin_token().await;
    app.stocked(&admin, "CUP-1", 500, 10).await;
    let ada = app.customer_token("ada@example.com").await;
    let cases = [
        (order_body(json!([]), "tok_approve"), "lines"),
        (order_body(json!([{"sku": "NOPE-1", "quantity": 1}]), "tok_approve"), "lines.sku"),
        (order_body(json!([{"sku": "CUP-1", "quantity": 0}]), "tok_approve"), "lines.quantity"),
        (order_body(json!([{"sku": "CUP-1", "quantity": 1}]), "4242 4242 4242 4242"), "payment_method"),
        (
            json!({"lines": [{"sku": "CUP-1", "quantity": 1}], "payment_method": "tok_approve",
                   "shipping_address": {"name": "A", "line1": "B", "city": "C", "postal_code": "D", "country": "Germany"}}),
            "shipping_address.country",
        ),
    ];
    for (body, field) in cases {
        let refused = app.post("/api/v1/orders", Some(&ada), body).await;
        assert_eq!((refused.status, refused.body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(field)), "{:?}", refused.body);
    }
    let malformed = app.post("/api/v1/orders", Some(&ada), json!({"lines": "many"})).await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        app.post("/api/v1/orders", None, order_body(json!([{"sku": "CUP-1", "quantity": 1}]), "tok_approve")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(get(&app, "/api/v1/orders", &ada).await.body["items"].as_array().map(Vec::len), Some(0), "nothing was written");
    assert_eq!(get(&app, "/api/v1/orders/not-a-uuid", &ada).await.status, StatusCode::NOT_FOUND);
});

both_modes!(declines_out_of_stock_and_customer_cancels_give_everything_back, |app: TestApp| async move {
    let admin = app.admin_token().await;
    app.stocked(&admin, "LAMP-1", 2_000, 3).await;
    let ada = app.customer_token("ada@example.com").await;
    let declined = place(&app, &ada, json!([{"sku": "LAMP-1", "quantity": 1}]), "tok_decline").await;
    let short = place(&app, &ada, json!([{"sku": "LAMP-1", "quantity": 2}, {"sku": "LAMP-1", "quantity": 2}]), "tok_approve").await;
    let declined = until(&app, &ada, &declined, settled).await;
    assert_eq!((declined["status"].as_str(), declined["cancel_reason"].as_str()), (Some("cancelled"), Some("payment_declined")));
    let short = until(&app, &ada, &short, settled).await;
    assert_eq!(short["cancel_reason"], "out_of_stock", "two lines of one SKU reserve their sum");
    // The declined order's unit is back: all three can be sold.
    until_stock(&app, &admin, "LAMP-1", 3, 3).await;
    let paid = place(&app, &ada, json!([{"sku": "LAMP-1", "quantity": 3}]), "tok_approve").await;
    until(&app, &ada, &paid, |o| o["status"] == "confirmed" && !o["invoice_number"].is_null()).await;
    let cancel = app.post(&format!("/api/v1/orders/{paid}/cancel"), Some(&ada), json!({})).await;
    assert_eq!(cancel.status, StatusCode::ACCEPTED, "{:?}", cancel.body);
    let cancelled =
        until(&app, &ada, &paid, |o| o["status"] == "cancelled" && (o["refunded"]["amount"] == 7_200 || o["refunded"] == 7_200)).await;
    assert_eq!(cancelled["cancel_reason"], "cancelled_by_customer");
    until_stock(&app, &admin, "LAMP-1", 3, 3).await;
});

/// Reads Server-Sent Events from `response` until `enough` holds for the (id, data) read so far.
async fn read_events(mut response: reqwest::Response, enough: impl Fn(&[(i64, Value)]) -> bool) -> Vec<(i64, Value)> {
    let mut text = String::new();
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !enough(&events) {
        assert!(Instant::now() < deadline, "the stream stopped short: {events:?}");
        let chunk = tokio::time::timeout(Duration::from_secs(30), response.chunk()).await.expect("in time").expect("stream reads");
        let Some(chunk) = chunk else { break };
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let field = |name: &str| block.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_owned());
            if let (Some(id), Some(data)) = (field("id:"), field("data:")) {
                events.push((id.parse().expect("numeric id"), serde_json::from_str(&data).expect("json data")));
            }
        }
    }
    events
}

both_modes!(order_status_changes_stream_live_and_resume_from_the_last_event_id, |app: TestApp| async move {
    let admin = app.admin_token().await;
    app.stocked(&admin, "SSE-1", 1_000, 5).await;
    let ada = app.customer_token("ada@example.com").await;
    let bob = app.customer_token("bob@example.com").await;
    let (id, position) = placed(&app, &ada, json!([{"sku": "SSE-1", "quantity": 1}]), "tok_approve").await;
    let url = format!("{}/api/v1/orders/{id}/events", app.base);
    // A position no command has answered is refused at once, as on every read.
    let beyond = app.client.get(&url).bearer_auth(&ada).header("X-Min-Position", (position + 1_000_000).to_string()).send().await;
    assert_eq!(beyond.expect("answers").status(), StatusCode::UNPROCESSABLE_ENTITY);
    // The order shows in the view a moment after it is placed: the placing command's position
    // opens the stream once it does.
    let response = app.client.get(&url).bearer_auth(&ada).header("X-Min-Position", position.to_string()).send().await.expect("answers");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let seen = read_events(response, |e| e.iter().any(|(_, d)| d["event"] == "invoiced")).await;
    let names: Vec<&str> = seen.iter().map(|(_, d)| d["event"].as_str().expect("event")).collect();
    assert_eq!(&names[..2], ["placed", "stock_reserved"], "in order: {names:?}");
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "ids rise");
    let statuses: Vec<&str> =
        seen.iter().filter(|(_, d)| d["source"] == "order").map(|(_, d)| d["status"].as_str().expect("status")).collect();
    assert!(statuses.contains(&"confirmed"), "{statuses:?}");

    // Reconnecting after the second event resumes with the third.
    let resumed = app.client.get(&url).bearer_auth(&ada).header("last-event-id", seen[1].0.to_string()).send().await.expect("answers");
    let again = read_events(resumed, |e| !e.is_empty()).await;
    assert_eq!(again[0].0, seen[2].0);
    assert_eq!(again[0].1, seen[2].1);

    // A shipment arrives on a stream that is already open.
    let open = app
        .client
        .get(&url)
        .bearer_auth(&ada)
        .header("last-event-id", seen.last().expect("events").0.to_string())
        .send()
        .await
        .expect("answers");
    let ship = app.post(&format!("/api/v1/orders/{id}/ship"), Some(&admin), json!({"carrier": "DHL", "tracking_number": "JD1"})).await;
    assert_eq!(ship.status, StatusCode::ACCEPTED);
    let live = read_events(open, |e| e.iter().any(|(_, d)| d["event"] == "shipped")).await;
    assert_eq!(live.last().map(|(_, d)| d["status"].clone()), Some(json!("shipped")));

    assert_eq!(app.client.get(&url).bearer_auth(&bob).send().await.expect("answers").status(), StatusCode::NOT_FOUND);
    assert_eq!(app.client.get(&url).send().await.expect("answers").status(), StatusCode::UNAUTHORIZED);
});

/// The SMS messages in the outbox (`<data dir>/outbox/sms/*.json`), parsed.
fn sms_outbox(app: &TestApp) -> Vec<Value> {
    let dir = app.data_dir.join("outbox/sms");
    let mut files: Vec<_> = std::fs::read_dir(dir).map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect()).unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|x| x == "json"));
    files.sort();
    files.iter().filter_map(|p| serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()).collect()
}

both_modes!(a_customer_with_a_phone_who_opted_in_hears_of_the_shipment_by_sms, |app: TestApp| async move {
    let admin = app.admin_token().await;
    app.stocked(&admin, "PHONE-1", 19_900, 5).await;
    let ada = app.customer_token("ada@example.com").await;
    let patch = |body: Value| app.call(Method::PATCH, "/api/v1/users/me", Some(&ada), Some(body), &[]);
    let prefs = |body: Value| app.call(Method::PUT, "/api/v1/users/me/preferences", Some(&ada), Some(body), &[]);

    // Bad input is a 4xx problem with nothing written.
    for bad in [json!({"phone": "0151 1234567"}), json!({"phone": "+49 151 x"}), json!({"phone": 4915112345678_i64}), json!({})] {
        let answer = patch(bad.clone()).await;
        assert!(answer.status.is_client_error(), "{bad}: {:?}", answer.body);
        assert!(!answer.code().is_empty(), "a problem body for {bad}");
    }
    let no_phone = prefs(json!({"sms": true})).await;
    assert_eq!((no_phone.status, no_phone.code()), (StatusCode::CONFLICT, "no_phone"));
    assert_eq!(prefs(json!({})).await.status, StatusCode::UNPROCESSABLE_ENTITY);

    assert_eq!(patch(json!({"phone": "+49 151 1234-5678"})).await.status, StatusCode::OK);
    assert_eq!(prefs(json!({"sms": true})).await.status, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut me = get(&app, "/api/v1/users/me", &ada).await.body;
    while me["sms"] != true {
        assert!(Instant::now() < deadline, "the profile never showed the opt-in: {me:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        me = get(&app, "/api/v1/users/me", &ada).await.body;
    }
    assert_eq!((me["phone"].as_str(), me["marketing_emails"].as_bool()), (Some("+4915112345678"), Some(true)), "{me:?}");

    let id = place(&app, &ada, json!([{"sku": "PHONE-1", "quantity": 1}]), "tok_approve").await;
    assert_eq!(until(&app, &ada, &id, settled).await["status"], "confirmed");
    let long = json!({"carrier": "DHL", "tracking_number": "J".repeat(65)});
    let refused = app.post(&format!("/api/v1/orders/{id}/ship"), Some(&admin), long).await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_value"),
        "a tracking number too long for an SMS"
    );
    let ship = json!({"carrier": "DHL", "tracking_number": "JD0001"});
    assert_eq!(app.post(&format!("/api/v1/orders/{id}/ship"), Some(&admin), ship).await.status, StatusCode::ACCEPTED);

    let deadline = Instant::now() + Duration::from_secs(20);
    let sms = loop {
        let sms = sms_outbox(&app);
        if !sms.is_empty() {
            break sms;
        }
        assert!(Instant::now() < deadline, "no SMS in the outbox");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(sms.len(), 1, "{sms:?}");
    assert_eq!(sms[0]["to"], "+4915112345678");
    let short = &id[id.len() - 8..];
    assert_eq!(sms[0]["body"], format!("shop: your order {short} has shipped with DHL. Tracking number: JD0001"));

    // One view of deliveries: the SMS masked, beside the mail; customers may not look.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = app.call(Method::GET, "/api/v1/admin/deliveries?channel=sms", Some(&admin), None, &[]).await;
        assert_eq!(listed.status, StatusCode::OK, "{:?}", listed.body);
        let items = listed.body.as_array().cloned().unwrap_or_default();
        if items.iter().any(|d| d["status"] == "sent") {
            assert_eq!(items.len(), 1, "{items:?}");
            assert_eq!(
                (items[0]["recipient"].as_str(), items[0]["template"].as_str()),
                (Some("+49*********78"), Some("sms/order_shipped"))
            );
            assert!(!listed.body.to_string().contains("+4915112345678"), "the number is masked everywhere: {}", listed.body);
            break;
        }
        assert!(Instant::now() < deadline, "the SMS was never listed as sent: {:?}", listed.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // `/metrics` counts deliveries per channel and status.
    let metrics = app.client.get(format!("{}/metrics", app.base)).send().await.expect("metrics").text().await.expect("text");
    assert!(metrics.lines().any(|l| l.starts_with("shop_notifier_deliveries_total{channel=\"sms\",status=\"sent\"}")), "{metrics}");
    let all = app.call(Method::GET, "/api/v1/admin/deliveries", Some(&admin), None, &[]).await.body;
    assert!(all.as_array().is_some_and(|a| a.iter().any(|d| d["channel"] == "email")), "{all:?}");
    assert_eq!(app.call(Method::GET, "/api/v1/admin/deliveries", Some(&ada), None, &[]).await.status, StatusCode::FORBIDDEN);
    let bad_filter = app.call(Method::GET, "/api/v1/admin/deliveries?channel=fax", Some(&admin), None, &[]).await;
    assert_eq!(bad_filter.status, StatusCode::BAD_REQUEST, "{:?}", bad_filter.body);
    let sent_again = app.post("/api/v1/admin/deliveries/1:sms:x:y/redeliver", Some(&admin), json!({})).await;
    assert_eq!(sent_again.status, StatusCode::NOT_FOUND);

    // A new number clears the opt-in.
    assert_eq!(patch(json!({"phone": "+4915199999999"})).await.status, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let me = get(&app, "/api/v1/users/me", &ada).await.body;
        if me["phone"] == "+4915199999999" {
            assert_eq!(me["sms"], false, "{me:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{me:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(patch(json!({"phone": null})).await.status, StatusCode::OK);
});
