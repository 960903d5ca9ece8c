//! Attacks on a running shop, each of which must fail: stolen sessions outliving a password
//! change, a reset or a deactivation; rotation past the absolute lifetime; demoted admins
//! keeping their powers; forged tokens for users that do not exist; parallel password guessing;
//! floods of the auth routes; reset-mail floods; weak and published keys; world-readable data;
//! framing and cross-origin calls; payment tokens leaking into read models; internal webhook
//! targets; unbounded live streams.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use domain::user::Role;
use domain::{TenantId, UserId};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use testkit::{both_modes, Answer, TestApp};

fn refresh_token(login: &Answer) -> String {
    login.body["refresh_token"].as_str().expect("refresh token").to_owned()
}

fn access_token(login: &Answer) -> String {
    login.body["access_token"].as_str().expect("access token").to_owned()
}

async fn refresh(app: &TestApp, token: &str) -> Answer {
    app.post("/api/v1/auth/refresh", None, json!({"refresh_token": token})).await
}

async fn me(app: &TestApp, token: &str) -> StatusCode {
    app.call(Method::GET, "/api/v1/users/me", Some(token), None, &[]).await.status
}

/// Polls until `token` is refused (privileges follow the users' events within about a second).
async fn refused_soon(app: &TestApp, token: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = me(app, token).await;
        if status == StatusCode::UNAUTHORIZED {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: the old access token still works ({status})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn user_id(app: &TestApp, token: &str) -> String {
    app.state.jwt.verify(token).expect("valid token").sub.to_string()
}

both_modes!(a_password_change_ends_every_other_session, |app: TestApp| async move {
    app.register("ada@example.com", "correct horse").await;
    let victim = app.login("ada@example.com", "correct horse").await;
    let thief = app.login("ada@example.com", "correct horse").await;
    let stolen = refresh_token(&thief);
    let stolen_access = access_token(&thief);
    let rotated = refresh(&app, &stolen).await;
    assert_eq!(rotated.status, StatusCode::OK, "a stolen refresh token works until the change");
    let stolen = refresh_token(&rotated);

    let changed = app
        .post(
            "/api/v1/users/me/password",
            Some(&access_token(&victim)),
            json!({"current_password": "correct horse", "new_password": "battery staple"}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.body);
    let fresh = refresh_token(&changed);
    let thief_try = refresh(&app, &stolen).await;
    assert_eq!((thief_try.status, thief_try.code()), (StatusCode::UNAUTHORIZED, "invalid_refresh_token"));
    assert_eq!(refresh(&app, &refresh_token(&victim)).await.status, StatusCode::UNAUTHORIZED, "the changing session's old pair too");
    refused_soon(&app, &stolen_access, "password change").await;
    let renewed = refresh(&app, &fresh).await;
    assert_eq!(renewed.status, StatusCode::OK, "the fresh pair goes on: {:?}", renewed.body);
    assert_eq!(me(&app, &access_token(&renewed)).await, StatusCode::OK);
    assert_eq!(me(&app, &access_token(&changed)).await, StatusCode::OK);
});

both_modes!(a_reset_and_a_deactivation_end_sessions, |app: TestApp| async move {
    let admin = app.admin_token().await;
    app.register("ada@example.com", "correct horse").await;
    let before_reset = app.login("ada@example.com", "correct horse").await;
    assert_eq!(app.post("/api/v1/auth/password-reset", None, json!({"email": "ada@example.com"})).await.status, StatusCode::ACCEPTED);
    let token = reset_token(&app, 1).await;
    let confirmed = app.post("/api/v1/auth/password-reset/confirm", None, json!({"token": token, "new_password": "battery staple"})).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{:?}", confirmed.body);
    assert_eq!(refresh(&app, &refresh_token(&before_reset)).await.status, StatusCode::UNAUTHORIZED);
    refused_soon(&app, &access_token(&before_reset), "password reset").await;

    let session = app.login("ada@example.com", "battery staple").await;
    let id = user_id(&app, &access_token(&session)).await;
    assert_eq!(app.post(&format!("/api/v1/users/{id}/deactivate"), Some(&admin), json!({})).await.status, StatusCode::OK);
    assert_eq!(refresh(&app, &refresh_token(&session)).await.status, StatusCode::UNAUTHORIZED);
    refused_soon(&app, &access_token(&session), "deactivation").await;
});

/// The reset token of the `n`-th reset mail to arrive.
async fn reset_token(app: &TestApp, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mails: Vec<String> = app.outbox().into_iter().filter(|m| m.contains("Subject: Reset your shop password")).collect();
        if mails.len() >= n {
            return mails[n - 1].lines().find_map(|l| l.strip_prefix("Reset token: ")).expect("token in mail").trim().to_owned();
        }
        assert!(Instant::now() < deadline, "reset mail {n} never came");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

both_modes!(a_pending_reset_dies_when_the_password_changes_otherwise, |app: TestApp| async move {
    let token = app.customer_token("ada@example.com").await;
    app.post("/api/v1/auth/password-reset", None, json!({"email": "ada@example.com"})).await;
    let reset = reset_token(&app, 1).await;
    let changed = app
        .post("/api/v1/users/me/password", Some(&token), json!({"current_password": "correct horse", "new_password": "battery staple"}))
        .await;
    assert_eq!(changed.status, StatusCode::OK);
    let used = app.post("/api/v1/auth/password-reset/confirm", None, json!({"token": reset, "new_password": "attacker's choice"})).await;
    assert_eq!((used.status, used.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_reset_token"));
    assert_eq!(app.login("ada@example.com", "battery staple").await.status, StatusCode::OK);
});

both_modes!(reset_mail_is_limited_and_earlier_tokens_stay_valid, |app: TestApp| async move {
    app.register("ada@example.com", "correct horse").await;
    for _ in 0..6 {
        app.post("/api/v1/auth/password-reset", None, json!({"email": "ada@example.com"})).await;
    }
    let first = reset_token(&app, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = app.outbox().iter().filter(|m| m.contains("Subject: Reset your shop password")).count();
    assert_eq!(sent, 3, "at most three reset mails an hour");
    let used = app.post("/api/v1/auth/password-reset/confirm", None, json!({"token": first, "new_password": "battery staple"})).await;
    assert_eq!(used.status, StatusCode::OK, "the first token survives the flood: {:?}", used.body);
});

both_modes!(
    rotation_never_extends_a_session_past_its_age,
    configure = |c: &mut shop::Config| c.session_max_age_secs = 2,
    |app: TestApp| async move {
        app.register("ada@example.com", "correct horse").await;
        let mut token = refresh_token(&app.login("ada@example.com", "correct horse").await);
        let started = Instant::now();
        loop {
            let rotated = refresh(&app, &token).await;
            if rotated.status != StatusCode::OK {
                assert_eq!(rotated.code(), "invalid_refresh_token");
                break;
            }
            token = refresh_token(&rotated);
            assert!(started.elapsed() < Duration::from_secs(5), "rotating kept the session alive past its maximum age");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(started.elapsed() >= Duration::from_millis(1500), "it lived its age: {:?}", started.elapsed());
    }
);

both_modes!(a_demoted_admin_loses_the_role_at_once, |app: TestApp| async move {
    let boss = app.admin_token().await;
    let mallory = app.admin_token_in("default", "mallory@example.com").await;
    let mallory_id = user_id(&app, &mallory).await;
    let boss_id = user_id(&app, &boss).await;
    let demoted =
        app.call(Method::PUT, &format!("/api/v1/users/{mallory_id}/roles"), Some(&boss), Some(json!({"roles": ["customer"]})), &[]).await;
    assert_eq!(demoted.status, StatusCode::OK, "{:?}", demoted.body);
    // Her token, still signed and unexpired, no longer holds: she cannot restore herself.
    refused_soon(&app, &mallory, "demotion").await;
    let restore = app
        .call(Method::PUT, &format!("/api/v1/users/{mallory_id}/roles"), Some(&mallory), Some(json!({"roles": ["customer", "admin"]})), &[])
        .await;
    assert_eq!(restore.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.create_product(&mallory, "MAL-1").await.status, StatusCode::UNAUTHORIZED);

    // Nobody changes their own roles; the last admin stays.
    let own =
        app.call(Method::PUT, &format!("/api/v1/users/{boss_id}/roles"), Some(&boss), Some(json!({"roles": ["customer"]})), &[]).await;
    assert_eq!((own.status, own.code()), (StatusCode::FORBIDDEN, "forbidden"));
    let last = app.post(&format!("/api/v1/users/{boss_id}/deactivate"), Some(&boss), json!({})).await;
    assert_eq!((last.status, last.code()), (StatusCode::CONFLICT, "last_admin"));
    assert_eq!(me(&app, &boss).await, StatusCode::OK);
});

both_modes!(two_admins_demoting_each_other_leave_one, |app: TestApp| async move {
    let a = app.admin_token().await;
    let b = app.admin_token_in("default", "second@example.com").await;
    let (a_id, b_id) = (user_id(&app, &a).await, user_id(&app, &b).await);
    let roles = json!({"roles": ["customer"]});
    let (b_path, a_path) = (format!("/api/v1/users/{b_id}/roles"), format!("/api/v1/users/{a_id}/roles"));
    let (x, y) = tokio::join!(
        app.call(Method::PUT, &b_path, Some(&a), Some(roles.clone()), &[]),
        app.call(Method::PUT, &a_path, Some(&b), Some(roles.clone()), &[]),
    );
    let ok = [x.status, y.status].iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(ok, 1, "exactly one demotion wins: {:?} {:?} / {:?} {:?}", x.status, x.body, y.status, y.body);
    let survivor = if x.status == StatusCode::OK { &a } else { &b };
    assert_eq!(app.create_product(survivor, "KEEP-1").await.status, StatusCode::CREATED, "one admin is left");
});

both_modes!(a_well_signed_token_for_nobody_is_refused, |app: TestApp| async move {
    let tenant = TenantId::default_tenant();
    let roles = BTreeSet::from([Role::Customer, Role::Admin]);
    let forged = app.state.jwt.issue(UserId::new(), &tenant, &roles, 0, chrono::Utc::now()).expect("signs");
    assert_eq!(me(&app, &forged).await, StatusCode::UNAUTHORIZED);
    assert_eq!(app.create_product(&forged, "FORGED-1").await.status, StatusCode::UNAUTHORIZED);
    // A real customer's token claiming admin is refused as well.
    let ada = app.customer_token("ada@example.com").await;
    let claims = app.state.jwt.verify(&ada).expect("valid");
    let escalated = app.state.jwt.issue(claims.sub, &claims.tenant, &roles, claims.ep, chrono::Utc::now()).expect("signs");
    assert_eq!(app.create_product(&escalated, "ESC-1").await.status, StatusCode::UNAUTHORIZED);
});

both_modes!(
    parallel_guesses_are_counted_before_hashing,
    configure = |c: &mut shop::Config| c.auth_rate_per_client = 10_000,
    |app: TestApp| async move {
        app.register("ada@example.com", "correct horse").await;
        let guesses = (0..60).map(|i| app.login("ada@example.com", if i % 2 == 0 { "wrong horse" } else { "bad horse!" }));
        let answers = futures::future::join_all(guesses).await;
        let checked = answers.iter().filter(|a| a.code() == "invalid_credentials").count();
        let limited = answers.iter().filter(|a| a.status == StatusCode::TOO_MANY_REQUESTS).count();
        assert!(checked <= 10, "{checked} of 60 parallel guesses were checked");
        assert_eq!(checked + limited, 60, "every other guess is refused unchecked");
        assert!(answers.iter().filter(|a| a.status == StatusCode::TOO_MANY_REQUESTS).all(|a| a.headers.contains_key("retry-after")));
        let right = app.login("ada@example.com", "correct horse").await;
        assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS, "locked for the window, even with the right password");
    }
);

both_modes!(
    auth_routes_are_rate_limited_per_client,
    configure = |c: &mut shop::Config| c.auth_rate_per_client = 20,
    |app: TestApp| async move {
        let mut limited = None;
        for i in 0..30 {
            // Another address in X-Forwarded-For every time: believed only from trusted proxies.
            let forwarded = format!("198.51.100.{i}");
            let answer = app
                .call(
                    Method::POST,
                    "/api/v1/auth/login",
                    None,
                    Some(json!({"email": format!("nobody{i}@example.com"), "password": "whatever"})),
                    &[("x-forwarded-for", forwarded.as_str())],
                )
                .await;
            if answer.status == StatusCode::TOO_MANY_REQUESTS {
                limited = Some((i, answer));
                break;
            }
        }
        let (i, answer) = limited.expect("the flood was limited");
        assert_eq!(i, 20, "after the bucket's 20");
        assert_eq!(answer.code(), "rate_limited");
        assert!(answer.headers.get("retry-after").is_some());
        let registered = app.register("late@example.com", "correct horse").await;
        assert_eq!(registered.status, StatusCode::CREATED, "other routes have their own buckets");
    }
);

both_modes!(subjects_carry_no_user_text, |app: TestApp| async move {
    let registered = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": "victim@example.com", "password": "correct horse", "name": "Urgent verify at evil"}),
        )
        .await;
    assert_eq!(registered.status, StatusCode::CREATED);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let welcome: Vec<String> = app.outbox().into_iter().filter(|m| m.contains("victim@example.com")).collect();
        if let Some(mail) = welcome.first() {
            let subject = mail.lines().find(|l| l.starts_with("Subject:")).unwrap_or_default();
            assert!(!subject.contains("evil"), "{subject}");
            break;
        }
        assert!(Instant::now() < deadline, "no welcome mail");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
});

both_modes!(answers_carry_security_headers_and_no_cors, |app: TestApp| async move {
    for path in ["/api/v1/products", "/docs", "/health", "/api/v1/nope"] {
        let answer = app.call(Method::GET, path, None, None, &[("origin", "https://evil.example")]).await;
        let header = |name: &str| answer.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert!(header("content-security-policy").contains("frame-ancestors 'none'"), "{path}");
        assert!(answer.headers.get("access-control-allow-origin").is_none(), "{path}: no CORS by default");
    }
    let docs = app.call(Method::GET, "/docs", None, None, &[]).await;
    let csp = docs.headers.get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(csp.contains("default-src 'self'"), "the HTML page loads from the shop only: {csp}");
    assert!(preflight(&app, "https://evil.example").await.headers.get("access-control-allow-origin").is_none());
});

/// A browser's CORS preflight for `POST /orders` from `origin`.
async fn preflight(app: &TestApp, origin: &str) -> Answer {
    app.call(Method::OPTIONS, "/api/v1/orders", None, None, &[("origin", origin), ("access-control-request-method", "POST")]).await
}

both_modes!(
    cors_allows_the_listed_origins_only,
    configure = |c: &mut shop::Config| c.cors_origins = vec!["https://shop.example".into()],
    |app: TestApp| async move {
        let good = preflight(&app, "https://shop.example").await;
        assert_eq!(good.headers.get("access-control-allow-origin").and_then(|v| v.to_str().ok()), Some("https://shop.example"));
        let bad = preflight(&app, "https://evil.example").await;
        assert!(bad.headers.get("access-control-allow-origin").is_none());
    }
);

both_modes!(webhook_targets_inside_are_refused, |app: TestApp| async move {
    let admin = app.admin_token().await;
    for url in [
        "http://93.184.215.14/hook",
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://2130706433/hook",
        "https://0x7f.0.0.1/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.8/hook",
        "https://100.64.1.1/hook",
        "https://[fe80::1]/hook",
        "https://user:pw@93.184.215.14/hook",
    ] {
        let answer = app.post("/api/v1/admin/webhooks", Some(&admin), json!({"url": url, "event_types": ["stock.*"]})).await;
        assert_eq!(
            (answer.status, answer.body["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("url")),
            "{url}: {:?}",
            answer.body
        );
    }
    for i in 0..20 {
        let url = format!("https://93.184.215.14/hook/{i}");
        let answer = app.post("/api/v1/admin/webhooks", Some(&admin), json!({"url": url, "event_types": ["stock.*"]})).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    }
    let more = app.post("/api/v1/admin/webhooks", Some(&admin), json!({"url": "https://93.184.215.14/21", "event_types": ["*"]})).await;
    assert_eq!((more.status, more.code()), (StatusCode::CONFLICT, "limit_reached"));
});

/// A published product with stock, and an order of it by a new customer: (customer token,
/// order id, position).
async fn placed_order(app: &TestApp, admin: &str, sku: &str) -> (String, String, i64) {
    let created = app.create_product(admin, sku).await;
    let product = created.body["id"].as_str().expect("id").to_owned();
    assert_eq!(app.post(&format!("/api/v1/products/{product}/publish"), Some(admin), json!({})).await.status, StatusCode::OK);
    assert!(app.post(&format!("/api/v1/stock/{sku}/receipts"), Some(admin), json!({"quantity": 5})).await.status.is_success());
    let ada = app.customer_token(&format!("{}@example.com", sku.to_lowercase())).await;
    let order = app
        .post(
            "/api/v1/orders",
            Some(&ada),
            json!({
                "lines": [{"sku": sku, "quantity": 1}],
                "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"},
                "payment_method": "tok_approve"
            }),
        )
        .await;
    assert_eq!(order.status, StatusCode::ACCEPTED, "{:?}", order.body);
    (ada, order.body["id"].as_str().expect("id").to_owned(), order.body["position"].as_i64().expect("position"))
}

both_modes!(read_models_show_no_payment_token, |app: TestApp| async move {
    let admin = app.admin_token().await;
    let (ada, id, position) = placed_order(&app, &admin, "PAY-1").await;
    let position = position.to_string();
    let view = app.call(Method::GET, &format!("/api/v1/orders/{id}"), Some(&ada), None, &[("x-min-position", position.as_str())]).await;
    assert_eq!(view.status, StatusCode::OK, "{:?}", view.body);
    let text = view.body.to_string();
    assert!(!text.contains("tok_approve"), "the token stays in the payment context: {text}");
    assert_eq!(view.body["payment_method"], Value::from("tok"));
});

both_modes!(a_live_stream_ends_after_the_final_entry, |app: TestApp| async move {
    let admin = app.admin_token().await;
    let (ada, id, _) = placed_order(&app, &admin, "FIN-1").await;
    let mut stream = open_stream(&app, &ada, &id).await;
    let cancelled = app.post(&format!("/api/v1/orders/{id}/cancel"), Some(&admin), json!({})).await;
    assert!(cancelled.status.is_success(), "{:?}", cancelled.body);
    let mut seen = String::new();
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(chunk)) = stream.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream went on after the order was cancelled: {seen}");
    assert!(seen.contains("cancelled"), "{seen}");
});

/// Opens the order's event stream once the order is readable.
async fn open_stream(app: &TestApp, token: &str, id: &str) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stream = app.client.get(format!("{}/api/v1/orders/{id}/events", app.base)).bearer_auth(token).send().await.expect("answers");
        if stream.status() == StatusCode::OK {
            return stream;
        }
        assert!(Instant::now() < deadline, "the order never became readable: {}", stream.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

both_modes!(live_streams_are_bounded, configure = |c: &mut shop::Config| c.access_token_ttl_secs = 8, |app: TestApp| async move {
    let admin = app.admin_token().await;
    let (ada, id, _) = placed_order(&app, &admin, "LIVE-1").await;
    let mut streams = vec![open_stream(&app, &ada, &id).await];
    for _ in 0..4 {
        let stream = app.client.get(format!("{}/api/v1/orders/{id}/events", app.base)).bearer_auth(&ada).send().await.expect("answers");
        assert_eq!(stream.status(), StatusCode::OK);
        streams.push(stream);
    }
    let sixth = app.client.get(format!("{}/api/v1/orders/{id}/events", app.base)).bearer_auth(&ada).send().await.expect("answers");
    assert_eq!(sixth.status(), StatusCode::TOO_MANY_REQUESTS, "a sixth stream of one user is refused");
    assert!(sixth.headers().contains_key("retry-after"));
    // A stream ends when its token expires (8 s here).
    let mut first = streams.remove(0);
    let ended = tokio::time::timeout(Duration::from_secs(20), async { while let Ok(Some(_)) = first.chunk().await {} }).await;
    assert!(ended.is_ok(), "the stream outlived its token");
    drop(streams);
});

#[tokio::test]
async fn short_empty_and_published_keys_are_refused() {
    for secret in ["short", "local-trial-secret-change-me-local-trial", "change-me-to-32-or-more-random-characters"] {
        let dir = testkit::scratch_dir();
        let mut config = shop::Config::embedded(dir.clone());
        config.jwt_secret = Some(http_kit::Secret::new(secret));
        let refused = shop::Application::build(&config).await.err().map(|e| format!("{e:#}"));
        assert!(refused.as_deref().is_some_and(|e| e.contains("SHOP_JWT_SECRET")), "{secret}: {refused:?}");
        let _ = std::fs::remove_dir_all(dir);
    }
    // The key file of the embedded mode is held to the same rule: an empty one is no key.
    for contents in ["", "too short\n"] {
        let dir = testkit::scratch_dir();
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("jwt-secret"), contents).expect("key file");
        let refused = shop::Application::build(&shop::Config::embedded(dir.clone())).await.err().map(|e| format!("{e:#}"));
        assert!(refused.as_deref().is_some_and(|e| e.contains("jwt-secret") && e.contains("32 bytes")), "{contents:?}: {refused:?}");
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test]
async fn the_embedded_data_is_for_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let Some(app) = TestApp::spawn_configured(testkit::Backend::Sqlite, |c| c.jwt_secret = None).await else {
        return;
    };
    app.register("ada@example.com", "correct horse").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.outbox().is_empty() {
        assert!(Instant::now() < deadline, "no mail");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mode = |p: &std::path::Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
    assert_eq!(mode(&app.data_dir), 0o700, "the data directory");
    for file in ["shop.db", "jwt-secret"] {
        assert_eq!(mode(&app.data_dir.join(file)), 0o600, "{file}");
    }
    let outbox = app.data_dir.join("outbox");
    assert_eq!(mode(&outbox), 0o700, "the outbox");
    for mail in std::fs::read_dir(&outbox).expect("outbox") {
        assert_eq!(mode(&mail.expect("entry").path()), 0o600, "a mail");
    }
    let key = std::fs::read_to_string(app.data_dir.join("jwt-secret")).expect("key");
    assert_eq!(key.trim().len(), 64, "32 random bytes, hex");
}

#[test]
fn compose_ships_no_key_and_keeps_its_servers_local() {
    let compose = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docker-compose.yml")).expect("compose file");
    assert!(compose.contains("SHOP_JWT_SECRET: ${SHOP_JWT_SECRET:?"), "compose fails without a key instead of using a default");
    for port in ["5432:5432", "6379:6379", "8025:8025"] {
        let published: Vec<&str> = compose.lines().filter(|l| l.contains(port)).collect();
        assert!(!published.is_empty() && published.iter().all(|l| l.contains(&format!("127.0.0.1:{port}"))), "{port}: {published:?}");
    }
}

/// Two processes on one PostgreSQL database: a deactivation through one is honoured by the
/// other within about a second (its cache follows the users' events, not its own writes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivation_reaches_every_process() {
    let dir = testkit::scratch_dir();
    let Some(url) = testkit::fresh_url(testkit::Backend::Postgres, &dir).await else {
        return;
    };
    let one = TestApp::spawn_with(testkit::Backend::Postgres, dir.clone(), url.clone(), |_| {}).await;
    let other = TestApp::spawn_with(testkit::Backend::Postgres, testkit::scratch_dir(), url, |_| {}).await;
    let admin = one.admin_token().await;
    let ada = one.customer_token("ada@example.com").await;
    assert_eq!(me(&other, &ada).await, StatusCode::OK, "the other process knows her");
    let id = user_id(&one, &ada).await;
    assert_eq!(one.post(&format!("/api/v1/users/{id}/deactivate"), Some(&admin), json!({})).await.status, StatusCode::OK);
    let started = Instant::now();
    refused_soon(&other, &ada, "deactivation seen by another process").await;
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}
