//! Carts, discount codes and checkout over real HTTP in both modes: a guest's cart merged at
//! sign-in, prices that moved before checkout, stock limits, and the guarantees under
//! concurrency (a code's usage limits, one order per cart) and cancellation.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use domain::user::Role;
use domain::{stream_id, OrderId, TenantId};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use testkit::both_modes;
use testkit::{Answer, TestApp};

/// Calls a cart route as a guest holding `token`.
async fn as_guest(app: &TestApp, method: Method, path: &str, token: &str, body: Option<Value>) -> Answer {
    app.call(method, path, None, body, &[("x-cart-token", token)]).await
}

async fn as_customer(app: &TestApp, method: Method, path: &str, token: &str, body: Option<Value>) -> Answer {
    app.call(method, path, Some(token), body, &[]).await
}

fn checkout_body() -> Value {
    json!({
        "shipping_address": {"name": "Ada Lovelace", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"},
        "payment_method": "tok_approve"
    })
}

async fn checkout(app: &TestApp, token: &str, cart: &str, version: Option<u64>, key: &str) -> Answer {
    let mut headers = vec![("idempotency-key", key.to_owned())];
    if let Some(v) = version {
        headers.push(("if-match", v.to_string()));
    }
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    app.call(Method::POST, &format!("/api/v1/carts/{cart}/checkout"), Some(token), Some(checkout_body()), &headers).await
}

async fn code(app: &TestApp, admin: &str, body: Value) {
    let created = app.post("/api/v1/promotions", Some(admin), body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
}

/// A customer made directly (no HTTP, so no rate limit; one hash each) and an access token.
async fn customer(app: &TestApp, n: usize) -> String {
    let tenant = TenantId::default_tenant();
    let registration = command_api::auth::Registration {
        email: format!("shopper{n}@example.com").parse().expect("valid"),
        password: "correct horse".parse().expect("valid"),
        name: "Shopper".parse().expect("valid"),
    };
    let roles = BTreeSet::from([Role::Customer]);
    let done = command_api::users::register_user(&app.state, &tenant, registration, roles.clone(), &store::Metadata::default())
        .await
        .expect("registers");
    let user_id = done.id.parse().expect("user id");
    app.state.jwt.issue(user_id, &tenant, &roles, 0, chrono::Utc::now()).expect("token")
}

/// A customer's cart holding `quantity` of `sku`, with `code` applied if given; its id.
async fn filled_cart(app: &TestApp, token: &str, sku: &str, quantity: i64, code: Option<&str>) -> String {
    let cart = as_customer(app, Method::POST, "/api/v1/carts", token, Some(json!({}))).await;
    assert_eq!(cart.status, StatusCode::CREATED, "{:?}", cart.body);
    let id = cart.body["id"].as_str().expect("cart id").to_owned();
    let added =
        as_customer(app, Method::POST, &format!("/api/v1/carts/{id}/lines"), token, Some(json!({"sku": sku, "quantity": quantity}))).await;
    assert_eq!(added.status, StatusCode::OK, "{:?}", added.body);
    if let Some(code) = code {
        let applied = as_customer(app, Method::POST, &format!("/api/v1/carts/{id}/discount"), token, Some(json!({"code": code}))).await;
        assert_eq!(applied.status, StatusCode::OK, "{:?}", applied.body);
    }
    id
}

both_modes!(a_guest_cart_is_merged_at_sign_in_repriced_and_checked_out_as_shown, |app: TestApp| async move {
    let admin = app.admin_token().await;
    let phone = app.stocked(&admin, "PHONE", 1_000, 5).await;
    app.stocked(&admin, "CASE", 500, 10).await;

    // A guest opens a cart and fills it; stock and the catalogue bound what goes in.
    let created = app.post("/api/v1/carts", None, json!({})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let guest_cart = created.body["id"].as_str().expect("id").to_owned();
    let token = created.body["token"].as_str().expect("a guest gets a token").to_owned();
    let lines = format!("/api/v1/carts/{guest_cart}/lines");
    let added = as_guest(&app, Method::POST, &lines, &token, Some(json!({"sku": "phone", "quantity": 2}))).await;
    assert_eq!(added.status, StatusCode::OK, "{:?}", added.body);
    assert_eq!(added.body["lines"][0]["unit_price"], json!({"amount": 1000, "currency": "EUR"}));
    assert_eq!(added.body["lines"][0]["name"], "Item PHONE", "each line names its product");
    assert_eq!(added.body["totals"]["subtotal"]["amount"], 2_000);
    assert_eq!(added.body["totals"]["tax"]["amount"], 400, "20% of the subtotal");
    let too_many = as_guest(&app, Method::POST, &lines, &token, Some(json!({"sku": "PHONE", "quantity": 4}))).await;
    assert_eq!((too_many.status, too_many.code()), (StatusCode::CONFLICT, "insufficient_stock"));
    assert_eq!(too_many.body["available"], 5);
    let unknown = as_guest(&app, Method::POST, &lines, &token, Some(json!({"sku": "NOPE", "quantity": 1}))).await;
    assert_eq!((unknown.status, unknown.code()), (StatusCode::CONFLICT, "product_unavailable"));
    let zero = as_guest(&app, Method::POST, &lines, &token, Some(json!({"sku": "CASE", "quantity": 0}))).await;
    assert_eq!((zero.status, zero.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_value"));
    let case = as_guest(&app, Method::POST, &lines, &token, Some(json!({"sku": "CASE", "quantity": 1}))).await;
    assert_eq!(case.status, StatusCode::OK, "{:?}", case.body);
    let removed = as_guest(&app, Method::PUT, &format!("{lines}/CASE"), &token, Some(json!({"quantity": 0}))).await;
    assert_eq!(removed.body["lines"].as_array().map(Vec::len), Some(1));

    // Nobody else opens it: no token, another cart's token, a customer's token.
    let path = format!("/api/v1/carts/{guest_cart}");
    assert_eq!(app.call(Method::GET, &path, None, None, &[]).await.status, StatusCode::NOT_FOUND);
    let other = app.post("/api/v1/carts", None, json!({})).await.body["token"].as_str().expect("token").to_owned();
    assert_eq!(as_guest(&app, Method::GET, &path, &other, None).await.status, StatusCode::NOT_FOUND);
    let forged = format!("{guest_cart}.{}", "0".repeat(64));
    assert_eq!(as_guest(&app, Method::GET, &path, &forged, None).await.status, StatusCode::NOT_FOUND);
    let elsewhere = app.call(Method::GET, &path, None, None, &[("x-cart-token", &token), ("x-tenant", "acme")]).await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND, "another tenant's cart of the same id is another stream");
    let stranger = app.customer_token("stranger@example.com").await;
    assert_eq!(as_customer(&app, Method::GET, &path, &stranger, None).await.status, StatusCode::NOT_FOUND);

    // Signing in with the token merges the guest cart into the customer's and closes it.
    assert_eq!(app.register("ada@example.com", "correct horse").await.status, StatusCode::CREATED);
    let login = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "ada@example.com", "password": "correct horse"})),
            &[("x-cart-token", &token)],
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{:?}", login.body);
    let ada = login.body["access_token"].as_str().expect("token").to_owned();
    let mine = as_customer(&app, Method::GET, "/api/v1/carts/mine", &ada, None).await;
    assert_eq!(mine.status, StatusCode::OK, "{:?}", mine.body);
    assert_eq!(mine.body["lines"][0]["sku"], "PHONE");
    assert_eq!(mine.body["lines"][0]["quantity"], 2);
    let cart = mine.body["id"].as_str().expect("id").to_owned();
    assert_ne!(cart, guest_cart);
    assert_eq!(as_guest(&app, Method::GET, &path, &token, None).await.body["status"], "merged");
    let closed = as_guest(&app, Method::POST, &lines, &token, Some(json!({"sku": "PHONE", "quantity": 1}))).await;
    assert_eq!((closed.status, closed.code()), (StatusCode::CONFLICT, "cart_closed"));

    // A code takes 10% off; then the price moves before checkout.
    code(&app, &admin, json!({"code": "ten", "kind": "percentage", "percentage_bp": 1000})).await;
    let unknown_code =
        as_customer(&app, Method::POST, &format!("/api/v1/carts/{cart}/discount"), &ada, Some(json!({"code": "NOPE"}))).await;
    assert_eq!(unknown_code.status, StatusCode::NOT_FOUND);
    let applied = as_customer(&app, Method::POST, &format!("/api/v1/carts/{cart}/discount"), &ada, Some(json!({"code": "TEN"}))).await;
    assert_eq!(applied.status, StatusCode::OK, "{:?}", applied.body);
    assert_eq!(applied.body["discount"], json!({"code": "TEN", "amount": {"amount": 200, "currency": "EUR"}}));
    let shown = applied.body["version"].as_u64().expect("version");
    let acme = app.admin_token_in("acme", "boss@acme.example").await;
    assert_eq!(
        as_customer(&app, Method::GET, "/api/v1/promotions/TEN", &acme, None).await.status,
        StatusCode::NOT_FOUND,
        "codes are per tenant"
    );
    let repriced = app
        .call(Method::PUT, &format!("/api/v1/products/{phone}/price"), Some(&admin), Some(json!({"amount": 1_200, "currency": "EUR"})), &[])
        .await;
    assert!(repriced.status.is_success(), "{:?}", repriced.body);

    let refused = checkout(&app, &ada, &cart, Some(shown), "first").await;
    assert_eq!((refused.status, refused.code()), (StatusCode::CONFLICT, "cart_changed"), "{:?}", refused.body);
    let fresh = &refused.body["cart"];
    assert_eq!(fresh["lines"][0]["unit_price"]["amount"], 1_200);
    assert_eq!(fresh["lines"][0]["previous_unit_price"]["amount"], 1_000);
    assert_eq!(fresh["problems"][0]["kind"], "price_changed");
    assert_eq!(fresh["discount"]["amount"]["amount"], 240, "the code follows the new subtotal");
    let version = fresh["version"].as_u64().expect("version");
    assert!(version > shown);

    // Checked out at the version shown: the order is exactly what the cart showed.
    let placed = checkout(&app, &ada, &cart, Some(version), "second").await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{:?}", placed.body);
    let order_id: OrderId = placed.body["id"].as_str().expect("order id").parse().expect("uuid");
    let (order, _) = app.state.orders.read(&stream_id(&TenantId::default_tenant(), order_id)).await.expect("order");
    assert_eq!(order.lines.len(), 1);
    assert_eq!((order.lines[0].quantity, order.lines[0].unit_price.amount), (2, 1_200));
    let discount = order.discount.expect("the code is on the order");
    assert_eq!((discount.code.as_str(), discount.amount.amount), ("TEN", 240));
    assert_eq!(order.total.map(|t| t.amount), fresh["totals"]["total"]["amount"].as_i64(), "the total the cart showed");
    let again = checkout(&app, &ada, &cart, None, "third").await;
    assert_eq!((again.status, again.code()), (StatusCode::CONFLICT, "cart_closed"));
    let replay = checkout(&app, &ada, &cart, Some(version), "second").await;
    assert_eq!(replay.body["id"], placed.body["id"], "the same key answers the same order");
    assert_eq!(as_customer(&app, Method::GET, "/api/v1/carts/mine", &ada, None).await.status, StatusCode::NOT_FOUND);
});

both_modes!(
    a_read_after_the_price_lifetime_reprices_the_cart,
    configure = |c: &mut shop::Config| c.cart_price_ttl_secs = 1,
    |app: TestApp| async move {
        let admin = app.admin_token().await;
        let id = app.stocked(&admin, "MUG", 800, 3).await;
        let ada = app.customer_token("ada@example.com").await;
        let cart = filled_cart(&app, &ada, "MUG", 2, None).await;
        app.call(Method::PUT, &format!("/api/v1/products/{id}/price"), Some(&admin), Some(json!({"amount": 900, "currency": "EUR"})), &[])
            .await;
        // Within the lifetime the cart shows what it was priced at; after it, the new price.
        let path = format!("/api/v1/carts/{cart}");
        let before = as_customer(&app, Method::GET, &path, &ada, None).await;
        assert_eq!(before.body["lines"][0]["unit_price"]["amount"], 800, "{:?}", before.body);
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let after = as_customer(&app, Method::GET, &path, &ada, None).await;
        assert_eq!(after.body["lines"][0]["unit_price"]["amount"], 900, "{:?}", after.body);
        assert_eq!(
            after.body["problems"][0],
            json!({"kind": "price_changed", "sku": "MUG", "previous_unit_price": {"amount": 800, "currency": "EUR"}, "unit_price": {"amount": 900, "currency": "EUR"}})
        );
        // Stock that fell below the line shows as a problem; the product leaving the catalogue too.
        app.post("/api/v1/stock/MUG/adjustments", Some(&admin), json!({"delta": -2, "reason": "broken"})).await;
        app.call(Method::POST, &format!("/api/v1/products/{id}/unpublish"), Some(&admin), Some(json!({})), &[]).await;
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let gone = as_customer(&app, Method::GET, &path, &ada, None).await;
        let kinds: Vec<&str> = gone.body["problems"].as_array().expect("problems").iter().filter_map(|p| p["kind"].as_str()).collect();
        assert!(kinds.contains(&"product_unavailable"), "{:?}", gone.body);
        let refused = checkout(&app, &ada, &cart, None, "k").await;
        assert_eq!((refused.status, refused.code()), (StatusCode::CONFLICT, "product_unavailable"));
    }
);

both_modes!(a_code_limited_to_50_uses_is_redeemed_exactly_50_times_by_200_concurrent_checkouts, |app: TestApp| async move {
    let admin = app.admin_token().await;
    app.stocked(&admin, "BOOK", 2_000, 1_000).await;
    code(&app, &admin, json!({"code": "FIFTY", "kind": "fixed", "amount": {"amount": 500, "currency": "EUR"}, "usage_limit": 50})).await;
    let mut carts = Vec::new();
    for n in 0..200 {
        let token = customer(&app, n).await;
        let cart = filled_cart(&app, &token, "BOOK", 1, Some("FIFTY")).await;
        carts.push((token, cart));
    }
    let started = Instant::now();
    let answers = futures::future::join_all(carts.iter().enumerate().map(|(n, (token, cart))| {
        let app = &app;
        async move { checkout(app, token, cart, None, &format!("k{n}")).await }
    }))
    .await;
    let placed: Vec<&Answer> = answers.iter().filter(|a| a.status == StatusCode::ACCEPTED).collect();
    let exhausted = answers.iter().filter(|a| a.code() == "promotion_exhausted").count();
    assert_eq!(placed.len(), 50, "in {:?}: {:?}", started.elapsed(), answers.iter().map(|a| a.code().to_owned()).collect::<BTreeSet<_>>());
    assert_eq!(exhausted, 150);
    for answer in placed {
        let order_id: OrderId = answer.body["id"].as_str().expect("id").parse().expect("uuid");
        let (order, _) = app.state.orders.read(&stream_id(&TenantId::default_tenant(), order_id)).await.expect("order");
        assert_eq!(order.discount.map(|d| d.amount.amount), Some(500));
    }
    let promotion = as_customer(&app, Method::GET, "/api/v1/promotions/FIFTY", &admin, None).await;
    assert_eq!(promotion.body["uses"], 50, "{:?}", promotion.body);
    // The 150 carts are still open and can check out without the code.
    let ((token, cart), _) = carts.iter().zip(&answers).find(|(_, a)| a.code() == "promotion_exhausted").expect("a refused cart");
    let removed = as_customer(&app, Method::DELETE, &format!("/api/v1/carts/{cart}/discount"), token, None).await;
    assert_eq!(removed.status, StatusCode::OK, "{:?}", removed.body);
    assert_eq!(checkout(&app, token, cart, None, "without").await.status, StatusCode::ACCEPTED);
});

both_modes!(one_cart_yields_one_order_under_20_concurrent_checkouts, |app: TestApp| async move {
    let admin = app.admin_token().await;
    app.stocked(&admin, "LAMP", 3_000, 50).await;
    let ada = app.customer_token("ada@example.com").await;
    let cart = filled_cart(&app, &ada, "LAMP", 1, None).await;
    let answers = futures::future::join_all((0..20).map(|n| {
        let (app, ada, cart) = (&app, &ada, &cart);
        async move { checkout(app, ada, cart, None, &format!("k{n}")).await }
    }))
    .await;
    let placed = answers.iter().filter(|a| a.status == StatusCode::ACCEPTED).count();
    assert_eq!(placed, 1, "{:?}", answers.iter().map(|a| (a.status, a.code().to_owned())).collect::<Vec<_>>());
    assert!(answers.iter().filter(|a| a.status != StatusCode::ACCEPTED).all(|a| a.code() == "cart_closed"));
});

both_modes!(the_per_customer_limit_holds_and_a_cancelled_order_gives_its_use_back, |app: TestApp| async move {
    let admin = app.admin_token().await;
    app.stocked(&admin, "PEN", 300, 100).await;
    code(&app, &admin, json!({"code": "ONCE", "kind": "percentage", "percentage_bp": 5000, "per_customer_limit": 1})).await;
    let ada = app.customer_token("ada@example.com").await;
    let cart = filled_cart(&app, &ada, "PEN", 2, Some("ONCE")).await;
    let placed = checkout(&app, &ada, &cart, None, "k1").await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{:?}", placed.body);
    let order = placed.body["id"].as_str().expect("id").to_owned();

    // Used once by this customer: the next cart cannot take it (another customer's can).
    let next = filled_cart(&app, &ada, "PEN", 1, None).await;
    let refused = as_customer(&app, Method::POST, &format!("/api/v1/carts/{next}/discount"), &ada, Some(json!({"code": "ONCE"}))).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::CONFLICT, "promotion_not_applicable"), "{:?}", refused.body);
    assert_eq!(refused.body["reason"], "customer_limit_reached");
    let bob = app.customer_token("bob@example.com").await;
    filled_cart(&app, &bob, "PEN", 1, Some("ONCE")).await;

    // Cancelled, the order gives its use back (the saga does it).
    let cancelled = as_customer(&app, Method::POST, &format!("/api/v1/orders/{order}/cancel"), &ada, Some(json!({}))).await;
    assert_eq!(cancelled.status, StatusCode::ACCEPTED, "{:?}", cancelled.body);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let promotion = as_customer(&app, Method::GET, "/api/v1/promotions/ONCE", &admin, None).await;
        if promotion.body["uses"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the use never came back: {:?}", promotion.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let applied = as_customer(&app, Method::POST, &format!("/api/v1/carts/{next}/discount"), &ada, Some(json!({"code": "ONCE"}))).await;
    assert_eq!(applied.status, StatusCode::OK, "{:?}", applied.body);
});

// Two repositories stand for two processes (no shared lock): 20 concurrent redemptions by one
// customer of a code with a per-customer limit of 1 commit exactly one.
both_modes!(the_per_customer_limit_holds_under_20_concurrent_redemptions_across_processes, |app: TestApp| async move {
    let admin = app.admin_token().await;
    code(&app, &admin, json!({"code": "ONEEACH", "kind": "percentage", "percentage_bp": 1000, "per_customer_limit": 1})).await;
    let stream = stream_id(&TenantId::default_tenant(), "ONEEACH");
    let customer = domain::UserId::new();
    let processes = [
        store::Repository::<domain::promotion::Promotion>::new(app.state.store.clone(), ()),
        store::Repository::<domain::promotion::Promotion>::new(app.state.store.clone(), ()),
    ];
    let results = futures::future::join_all((0..20).map(|n| {
        let (repo, stream) = (&processes[n % 2], &stream);
        async move {
            let redeem = domain::promotion::PromotionCommand::Redeem {
                order_id: OrderId::new(),
                customer,
                subtotal: domain::Money::new(5_000, "EUR".parse().expect("valid")),
                at: chrono::Utc::now(),
            };
            repo.execute(stream, redeem, None, &store::Metadata::default()).await
        }
    }))
    .await;
    let committed = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(committed, 1, "{:?}", results.iter().map(|r| r.as_ref().err().map(ToString::to_string)).collect::<Vec<_>>());
    assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| matches!(
        e,
        store::ExecError::Domain(domain::promotion::PromotionError::CustomerLimitReached) | store::ExecError::Conflict { .. }
    )));
    let (promotion, _) = app.state.promotions.read(&stream).await.expect("reads");
    assert_eq!(promotion.uses(), 1);
});

both_modes!(admins_see_carts_codes_and_conversion_from_the_read_models, |app: TestApp| async move {
    let admin = app.admin_token().await;
    app.stocked(&admin, "BOWL", 1_500, 20).await;
    code(&app, &admin, json!({"code": "BOWLS", "kind": "fixed", "amount": {"amount": 300, "currency": "EUR"}, "min_subtotal": {"amount": 1000, "currency": "EUR"}})).await;
    let ada = app.customer_token("ada@example.com").await;
    let bob = app.customer_token("bob@example.com").await;
    let ada_cart = filled_cart(&app, &ada, "BOWL", 2, Some("BOWLS")).await;
    let bob_cart = filled_cart(&app, &bob, "BOWL", 1, None).await;
    let placed = checkout(&app, &ada, &ada_cart, None, "k").await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{:?}", placed.body);
    let position = placed.body["position"].as_i64().expect("position").to_string();
    let read = |path: &str| {
        let (app, admin, position) = (&app, &admin, &position);
        let path = path.to_owned();
        async move { app.call(Method::GET, &path, Some(admin), None, &[("x-min-position", position)]).await }
    };

    let carts = read("/api/v1/admin/carts").await;
    assert_eq!(carts.status, StatusCode::OK, "{:?}", carts.body);
    let rows = carts.body.as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{rows:?}");
    let ada_row = rows.iter().find(|r| r["id"] == json!(ada_cart)).expect("ada's cart");
    assert_eq!((ada_row["status"].as_str(), ada_row["order_id"].clone()), (Some("checked_out"), placed.body["id"].clone()));
    assert_eq!((ada_row["units"].as_i64(), ada_row["discount_code"].as_str()), (Some(2), Some("BOWLS")));
    let open = read("/api/v1/admin/carts?status=open").await;
    assert_eq!(open.body.as_array().map(|r| r.iter().map(|c| c["id"].clone()).collect::<Vec<_>>()), Some(vec![json!(bob_cart)]));
    assert_eq!(open.body[0]["subtotal"], json!({"amount": 1500, "currency": "EUR"}));
    let bad = read("/api/v1/admin/carts?status=lost").await;
    assert_eq!((bad.status, bad.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_value"));
    let forbidden = app.call(Method::GET, "/api/v1/admin/carts", Some(&ada), None, &[]).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);

    let codes = read("/api/v1/promotions").await;
    assert_eq!(codes.status, StatusCode::OK, "{:?}", codes.body);
    assert_eq!((codes.body[0]["code"].as_str(), codes.body[0]["uses"].as_i64()), (Some("BOWLS"), Some(1)));
    assert_eq!(codes.body[0]["min_subtotal"], json!({"amount": 1000, "currency": "EUR"}));

    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let sales = read(&format!("/api/v1/admin/analytics/sales?from={today}&to={today}")).await;
    assert_eq!(sales.status, StatusCode::OK, "{:?}", sales.body);
    assert_eq!(sales.body["carts_by_day"], json!([{"day": today, "created": 2, "checked_out": 1, "abandoned": 0, "conversion_bp": 5000}]));
    assert_eq!(sales.body["redemptions_by_code"], json!([{"code": "BOWLS", "currency": "EUR", "redemptions": 1, "discount": 300}]));
});

both_modes!(the_sellers_settings_price_carts_and_orders_and_head_the_invoice, |app: TestApp| async move {
    let admin = app.admin_token().await;
    let settings = json!({
        "legal_name": "Acme GmbH",
        "address": {"line1": "2 Market Sq", "city": "Hamburg", "postal_code": "20095", "country": "de"},
        "vat_id": "DE123456789",
        "default_currency": "EUR",
        "tax_rate_bp": 1900,
        "shipping_amount": 495,
        "free_shipping_threshold": 5000
    });
    let put = |body: Value, token: String| {
        let app = &app;
        async move { app.call(Method::PUT, "/api/v1/admin/settings", Some(&token), Some(body), &[]).await }
    };
    let mut bad = settings.clone();
    bad["tax_rate_bp"] = json!(10_001);
    assert_eq!(put(bad, admin.clone()).await.code(), "invalid_value");
    let ada = app.customer_token("ada@example.com").await;
    assert_eq!(put(settings.clone(), ada.clone()).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.call(Method::GET, "/api/v1/admin/settings", Some(&admin), None, &[]).await.status, StatusCode::NOT_FOUND);
    let saved = put(settings.clone(), admin.clone()).await;
    assert_eq!(saved.status, StatusCode::OK, "{:?}", saved.body);
    let shown = app.call(Method::GET, "/api/v1/admin/settings", Some(&admin), None, &[]).await;
    assert_eq!((shown.body["legal_name"].as_str(), shown.body["address"]["country"].as_str()), (Some("Acme GmbH"), Some("DE")));

    app.stocked(&admin, "LAMP", 2_000, 10).await;
    let cart = filled_cart(&app, &ada, "LAMP", 1, None).await;
    let view = as_customer(&app, Method::GET, &format!("/api/v1/carts/{cart}"), &ada, None).await;
    assert_eq!(view.body["totals"]["tax"]["amount"], 380, "19% of 20.00: {:?}", view.body);
    assert_eq!(view.body["totals"]["shipping"]["amount"], 495);
    let more = as_customer(&app, Method::PUT, &format!("/api/v1/carts/{cart}/lines/LAMP"), &ada, Some(json!({"quantity": 3}))).await;
    assert_eq!(more.body["totals"]["shipping"]["amount"], 0, "free from 50.00: {:?}", more.body);

    let placed = checkout(&app, &ada, &cart, None, "k").await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{:?}", placed.body);
    let order = placed.body["id"].as_str().expect("id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let invoice = loop {
        let invoice = as_customer(&app, Method::GET, &format!("/api/v1/orders/{order}/invoice"), &ada, None).await;
        if invoice.status == StatusCode::OK {
            break invoice.body;
        }
        assert!(Instant::now() < deadline, "no invoice: {:?}", invoice.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        invoice["seller"],
        json!({"name": "Acme GmbH", "address": {"line1": "2 Market Sq", "city": "Hamburg", "postal_code": "20095", "country": "DE"}, "vat_id": "DE123456789"})
    );
    assert_eq!((invoice["lines"][0]["sku"].as_str(), invoice["lines"][0]["name"].as_str()), (Some("LAMP"), Some("Item LAMP")));
    assert_eq!(
        (invoice["tax_rate_bp"].as_i64(), invoice["tax"]["amount"].as_i64(), invoice["shipping"]["amount"].as_i64()),
        (Some(1900), Some(1140), Some(0))
    );
});

both_modes!(
    guests_opening_carts_by_the_thousand_are_held_back_per_address,
    configure = |c: &mut shop::Config| c.auth_rate_per_client = 5,
    |app: TestApp| async move {
        let mut statuses = Vec::new();
        for _ in 0..8 {
            statuses.push(app.post("/api/v1/carts", None, json!({})).await);
        }
        assert!(
            statuses[..5].iter().all(|a| a.status == StatusCode::CREATED),
            "{:?}",
            statuses.iter().map(|a| a.status).collect::<Vec<_>>()
        );
        let refused = &statuses[7];
        assert_eq!((refused.status, refused.code()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"));
        assert!(refused.headers.contains_key("retry-after"));
        // A signed-in customer opens (finds) their one cart whatever the guests do.
        let ada = app.customer_token("ada@example.com").await;
        for _ in 0..8 {
            assert_eq!(as_customer(&app, Method::POST, "/api/v1/carts", &ada, Some(json!({}))).await.status, StatusCode::CREATED);
        }
    }
);
