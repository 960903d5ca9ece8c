//! Every route over real HTTP, in both modes (SQLite and PostgreSQL).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use testkit::both_modes;
use testkit::TestApp;

both_modes!(health_and_readiness_answer, |app: TestApp| async move {
    let health = app.call(Method::GET, "/health", None, None, &[]).await;
    assert_eq!((health.status, health.body["status"].as_str()), (StatusCode::OK, Some("ok")));
    let ready = app.call(Method::GET, "/ready", None, None, &[]).await;
    assert_eq!(ready.status, StatusCode::OK);
    let expected = if app.backend == testkit::Backend::Sqlite { "sqlite" } else { "postgresql" };
    assert_eq!(ready.body["store"], expected);
});

both_modes!(a_registered_user_logs_in_and_gets_tokens, |app: TestApp| async move {
    let reg = app.register("Ada@Example.com", "correct horse").await;
    assert_eq!(reg.status, StatusCode::CREATED, "{:?}", reg.body);
    assert_eq!(reg.body["version"], 1);
    assert!(reg.body["position"].as_i64().expect("position") > 0);
    let login = app.login("ada@example.com", "correct horse").await;
    assert_eq!(login.status, StatusCode::OK);
    assert_eq!(login.body["token_type"], "Bearer");
    assert_eq!(login.body["expires_in"], 900);
    assert!(login.body["refresh_token"].as_str().is_some_and(|t| t.len() > 64));
    let claims = app.state.jwt.verify(login.body["access_token"].as_str().expect("token")).expect("valid jwt");
    assert_eq!(claims.sub.to_string(), reg.body["id"].as_str().expect("id"));
    assert_eq!(claims.tenant.as_str(), "default");
    assert_eq!(claims.exp - claims.iat, 900);
});

both_modes!(bad_registrations_get_problem_answers, |app: TestApp| async move {
    let bad_email = app.register("not-an-email", "correct horse").await;
    assert_eq!((bad_email.status, bad_email.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_value"));
    assert_eq!(bad_email.body["field"], "email");
    assert_eq!(bad_email.headers["content-type"], "application/problem+json");
    let short = app.register("ada@example.com", "short").await;
    assert_eq!((short.status, short.body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("password")));
    let missing = app.post("/api/v1/auth/register", None, json!({"email": "ada@example.com"})).await;
    assert_eq!((missing.status, missing.code()), (StatusCode::BAD_REQUEST, "malformed_body"));
    let res = app
        .client
        .post(format!("{}/api/v1/auth/register", app.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("answers");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = app.client.post(format!("{}/api/v1/auth/register", app.base)).body("x").send().await.expect("answers");
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let bad_tenant = app
        .call(
            Method::POST,
            "/api/v1/auth/register",
            None,
            Some(json!({"email": "a@b.co", "password": "correct horse", "name": "A"})),
            &[("x-tenant", "Bad Tenant")],
        )
        .await;
    assert_eq!((bad_tenant.status, bad_tenant.body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("tenant")));
    // Nothing half-written: the address is still free.
    assert_eq!(app.register("ada@example.com", "correct horse").await.status, StatusCode::CREATED);
});

both_modes!(an_email_is_registered_once_per_tenant, |app: TestApp| async move {
    assert_eq!(app.register("ada@example.com", "correct horse").await.status, StatusCode::CREATED);
    let again = app.register("ADA@example.com", "other horse").await;
    assert_eq!((again.status, again.code()), (StatusCode::CONFLICT, "email_taken"));
    let other_tenant = app
        .call(
            Method::POST,
            "/api/v1/auth/register",
            None,
            Some(json!({"email": "ada@example.com", "password": "correct horse", "name": "Ada"})),
            &[("x-tenant", "acme")],
        )
        .await;
    assert_eq!(other_tenant.status, StatusCode::CREATED);
});

both_modes!(fifty_concurrent_registrations_with_one_email_create_one_user, |app: TestApp| async move {
    let app = std::sync::Arc::new(app);
    let tries = (0..50).map(|i| {
        let app = std::sync::Arc::clone(&app);
        tokio::spawn(async move { app.register("race@example.com", &format!("password {i}")).await.status })
    });
    let statuses: Vec<StatusCode> = futures::future::join_all(tries).await.into_iter().map(|r| r.expect("task")).collect();
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CREATED).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CONFLICT).count(), 49, "{statuses:?}");
});

both_modes!(failed_logins_look_alike_and_are_limited, |app: TestApp| async move {
    app.register("ada@example.com", "correct horse").await;
    let wrong = app.login("ada@example.com", "wrong horse").await;
    let unknown = app.login("nobody@example.com", "wrong horse").await;
    assert_eq!((wrong.status, wrong.code()), (StatusCode::UNAUTHORIZED, "invalid_credentials"));
    assert_eq!(wrong.body, unknown.body);
    for _ in 0..9 {
        assert_eq!(app.login("ada@example.com", "wrong horse").await.status, StatusCode::UNAUTHORIZED);
    }
    let limited = app.login("ada@example.com", "correct horse").await;
    assert_eq!((limited.status, limited.code()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"));
    assert!(limited.headers.contains_key("retry-after"));
    // Other accounts are not affected.
    app.register("bob@example.com", "correct horse").await;
    assert_eq!(app.login("bob@example.com", "correct horse").await.status, StatusCode::OK);
});

both_modes!(refresh_tokens_rotate_and_a_reused_one_revokes_the_family, |app: TestApp| async move {
    app.register("ada@example.com", "correct horse").await;
    let first = app.login("ada@example.com", "correct horse").await.body["refresh_token"].as_str().expect("rt").to_owned();
    let rotated = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": first})).await;
    assert_eq!(rotated.status, StatusCode::OK, "{:?}", rotated.body);
    let second = rotated.body["refresh_token"].as_str().expect("rt").to_owned();
    assert_ne!(first, second);
    assert!(app.state.jwt.verify(rotated.body["access_token"].as_str().expect("at")).is_ok());
    let reused = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": first})).await;
    assert_eq!((reused.status, reused.code()), (StatusCode::UNAUTHORIZED, "refresh_token_reused"));
    let revoked = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": second})).await;
    assert_eq!((revoked.status, revoked.code()), (StatusCode::UNAUTHORIZED, "invalid_refresh_token"));
    let garbage = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": "garbage"})).await;
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);
});

both_modes!(logout_ends_the_session, |app: TestApp| async move {
    app.register("ada@example.com", "correct horse").await;
    let rt = app.login("ada@example.com", "correct horse").await.body["refresh_token"].as_str().expect("rt").to_owned();
    assert_eq!(app.post("/api/v1/auth/logout", None, json!({"refresh_token": rt})).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.post("/api/v1/auth/refresh", None, json!({"refresh_token": rt})).await.status, StatusCode::UNAUTHORIZED);
});

/// Waits until the outbox holds `n` messages with `subject`; returns those.
async fn wait_for_mail(app: &TestApp, subject: &str, n: usize) -> Vec<String> {
    for _ in 0..200 {
        let mail: Vec<String> = app.outbox().into_iter().filter(|m| m.contains(&format!("Subject: {subject}"))).collect();
        if mail.len() >= n {
            return mail;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no mail with subject {subject:?} arrived in the outbox");
}

both_modes!(a_password_reset_works_once, |app: TestApp| async move {
    // Ada takes no marketing mail; the reset mail comes all the same.
    let ada = app.customer_token("ada@example.com").await;
    let call = app.call(Method::PUT, "/api/v1/users/me/preferences", Some(&ada), Some(json!({"marketing_emails": false})), &[]).await;
    assert_eq!(call.status, StatusCode::OK, "{:?}", call.body);
    let unknown = app.post("/api/v1/auth/password-reset", None, json!({"email": "nobody@example.com"})).await;
    assert_eq!(unknown.status, StatusCode::ACCEPTED);
    let asked = app.post("/api/v1/auth/password-reset", None, json!({"email": "ada@example.com"})).await;
    assert_eq!(asked.status, StatusCode::ACCEPTED);
    let mail = wait_for_mail(&app, "Reset your shop password", 1).await;
    assert_eq!(mail.len(), 1, "no mail for an unknown address");
    // The notifier welcomed the new user (through the same outbox).
    let welcome = wait_for_mail(&app, "Welcome to shop", 1).await;
    assert!(welcome[0].contains("To: ada@example.com"), "{}", welcome[0]);
    let admin = app.admin_token().await;
    // The file is written a moment before the delivery is marked sent.
    let mut recorded = false;
    for _ in 0..100 {
        let sent = app.call(Method::GET, "/api/v1/admin/mail", Some(&admin), None, &[]).await;
        let list = sent.body.as_array().cloned().unwrap_or_default();
        if list.iter().any(|d| d["template"] == "welcome" && d["recipient"] == "ada@example.com" && d["status"] == "sent") {
            recorded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recorded, "the welcome mail is listed as sent");
    assert_eq!(app.call(Method::GET, "/api/v1/admin/mail", Some(&ada), None, &[]).await.status, StatusCode::FORBIDDEN);
    assert!(mail[0].contains("To: ada@example.com"));
    let token = mail[0].lines().find_map(|l| l.strip_prefix("Reset token: ")).expect("token in mail").trim().to_owned();
    let confirm = json!({"token": token, "new_password": "battery staple"});
    let done = app.post("/api/v1/auth/password-reset/confirm", None, confirm.clone()).await;
    assert_eq!(done.status, StatusCode::OK, "{:?}", done.body);
    assert_eq!(app.login("ada@example.com", "battery staple").await.status, StatusCode::OK);
    assert_eq!(app.login("ada@example.com", "correct horse").await.status, StatusCode::UNAUTHORIZED);
    let again = app.post("/api/v1/auth/password-reset/confirm", None, confirm).await;
    assert_eq!((again.status, again.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_reset_token"));
    let forged = app.post("/api/v1/auth/password-reset/confirm", None, json!({"token": "x.y", "new_password": "battery staple"})).await;
    assert_eq!(forged.code(), "invalid_reset_token");
});

both_modes!(users_change_their_profile_and_password, |app: TestApp| async move {
    let token = app.customer_token("ada@example.com").await;
    let unauthenticated = app.call(Method::PATCH, "/api/v1/users/me", None, Some(json!({"name": "Ada L"})), &[]).await;
    assert_eq!((unauthenticated.status, unauthenticated.code()), (StatusCode::UNAUTHORIZED, "unauthenticated"));
    let bad_token = app.call(Method::PATCH, "/api/v1/users/me", Some("nope"), Some(json!({"name": "Ada L"})), &[]).await;
    assert_eq!(bad_token.status, StatusCode::UNAUTHORIZED);
    let changed = app.call(Method::PATCH, "/api/v1/users/me", Some(&token), Some(json!({"name": "Ada L"})), &[]).await;
    assert_eq!((changed.status, changed.body["version"].as_u64()), (StatusCode::OK, Some(2)));
    let stale = app.call(Method::PATCH, "/api/v1/users/me", Some(&token), Some(json!({"name": "Ada M"})), &[("if-match", "1")]).await;
    assert_eq!((stale.status, stale.body["current_version"].as_u64()), (StatusCode::PRECONDITION_FAILED, Some(2)));
    let current = app.call(Method::PATCH, "/api/v1/users/me", Some(&token), Some(json!({"name": "Ada M"})), &[("if-match", "\"2\"")]).await;
    assert_eq!(current.status, StatusCode::OK);
    let wrong = app
        .post("/api/v1/users/me/password", Some(&token), json!({"current_password": "wrong horse", "new_password": "battery staple"}))
        .await;
    assert_eq!((wrong.status, wrong.code()), (StatusCode::CONFLICT, "wrong_password"));
    let ok = app
        .post("/api/v1/users/me/password", Some(&token), json!({"current_password": "correct horse", "new_password": "battery staple"}))
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(app.login("ada@example.com", "battery staple").await.status, StatusCode::OK);
});

both_modes!(only_admins_manage_roles_and_accounts, |app: TestApp| async move {
    let customer = app.customer_token("ada@example.com").await;
    let ada_id = app.state.jwt.verify(&customer).expect("valid").sub.to_string();
    let admin = app.admin_token().await;
    let path = format!("/api/v1/users/{ada_id}/roles");
    let forbidden = app.call(Method::PUT, &path, Some(&customer), Some(json!({"roles": ["admin"]})), &[]).await;
    assert_eq!((forbidden.status, forbidden.code()), (StatusCode::FORBIDDEN, "forbidden"));
    let bad_role = app.call(Method::PUT, &path, Some(&admin), Some(json!({"roles": ["root"]})), &[]).await;
    assert_eq!(bad_role.status, StatusCode::UNPROCESSABLE_ENTITY);
    let unknown = app
        .call(Method::PUT, "/api/v1/users/0190b5c4-0000-7000-8000-000000000000/roles", Some(&admin), Some(json!({"roles": ["admin"]})), &[])
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let granted = app.call(Method::PUT, &path, Some(&admin), Some(json!({"roles": ["customer", "admin"]})), &[]).await;
    assert_eq!(granted.status, StatusCode::OK, "{:?}", granted.body);
    let relogin = app.login("ada@example.com", "correct horse").await.body["access_token"].as_str().expect("at").to_owned();
    assert_eq!(app.create_product(&relogin, "ADA-1").await.status, StatusCode::CREATED);
    let deactivated = app.post(&format!("/api/v1/users/{ada_id}/deactivate"), Some(&admin), json!({})).await;
    assert_eq!(deactivated.status, StatusCode::OK);
    assert_eq!(app.login("ada@example.com", "correct horse").await.status, StatusCode::UNAUTHORIZED);
});

both_modes!(admins_manage_the_catalogue, |app: TestApp| async move {
    let admin = app.admin_token().await;
    let customer = app.customer_token("ada@example.com").await;
    assert_eq!(app.create_product(&customer, "PHONE-1").await.status, StatusCode::FORBIDDEN);
    let created = app.create_product(&admin, "phone-1").await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.body["id"].as_str().expect("id").to_owned();
    let dup = app.create_product(&admin, "PHONE-1").await;
    assert_eq!((dup.status, dup.code()), (StatusCode::CONFLICT, "sku_taken"));

    let product = |price: serde_json::Value, category: &str| json!({"sku": "X-1", "name": "X", "category": category, "price": price});
    for (body, field) in [
        (product(json!({"amount": -1, "currency": "EUR"}), "electronics"), "price.amount"),
        (product(json!({"amount": 100, "currency": "XXX"}), "electronics"), "price.currency"),
        (product(json!({"amount": 100, "currency": "EUR"}), "bad category!"), "category"),
    ] {
        let refused = app.post("/api/v1/products", Some(&admin), body).await;
        assert_eq!((refused.status, refused.body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(field)));
    }
    let float = app.post("/api/v1/products", Some(&admin), product(json!({"amount": 1.5, "currency": "EUR"}), "a")).await;
    assert_eq!(float.status, StatusCode::BAD_REQUEST);

    let p = format!("/api/v1/products/{id}");
    let patched = app.call(Method::PATCH, &p, Some(&admin), Some(json!({"name": "Phone 2"})), &[]).await;
    assert_eq!((patched.status, patched.body["version"].as_u64()), (StatusCode::OK, Some(2)));
    let priced = app
        .call(Method::PUT, &format!("{p}/price"), Some(&admin), Some(json!({"amount": 17900, "currency": "EUR"})), &[("if-match", "2")])
        .await;
    assert_eq!((priced.status, priced.body["version"].as_u64()), (StatusCode::OK, Some(3)));
    let stale = app
        .call(Method::PUT, &format!("{p}/price"), Some(&admin), Some(json!({"amount": 1, "currency": "EUR"})), &[("if-match", "2")])
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(app.post(&format!("{p}/publish"), Some(&admin), json!({})).await.status, StatusCode::OK);
    let twice = app.post(&format!("{p}/publish"), Some(&admin), json!({})).await;
    assert_eq!((twice.status, twice.code()), (StatusCode::CONFLICT, "already_published"));
    assert_eq!(app.post(&format!("{p}/unpublish"), Some(&admin), json!({})).await.status, StatusCode::OK);
    let unpublished = app.post(&format!("{p}/unpublish"), Some(&admin), json!({})).await;
    assert_eq!(unpublished.code(), "not_published");
    assert_eq!(app.call(Method::DELETE, &p, Some(&admin), None, &[]).await.status, StatusCode::OK);
    let gone = app.call(Method::PUT, &format!("{p}/price"), Some(&admin), Some(json!({"amount": 1, "currency": "EUR"})), &[]).await;
    assert_eq!((gone.status, gone.code()), (StatusCode::CONFLICT, "product_discontinued"));
    let missing = app
        .call(Method::PATCH, "/api/v1/products/0190b5c4-0000-7000-8000-000000000000", Some(&admin), Some(json!({"name": "x"})), &[])
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let not_an_id = app.call(Method::PATCH, "/api/v1/products/zzz", Some(&admin), Some(json!({"name": "x"})), &[]).await;
    assert_eq!(not_an_id.status, StatusCode::NOT_FOUND);
});

both_modes!(admins_receive_and_adjust_stock, |app: TestApp| async move {
    let admin = app.admin_token().await;
    let unknown = app.post("/api/v1/stock/NOPE-1/receipts", Some(&admin), json!({"quantity": 5})).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    app.create_product(&admin, "PHONE-1").await;
    let zero = app.post("/api/v1/stock/PHONE-1/receipts", Some(&admin), json!({"quantity": 0})).await;
    assert_eq!(zero.status, StatusCode::UNPROCESSABLE_ENTITY);
    let received = app.post("/api/v1/stock/phone-1/receipts", Some(&admin), json!({"quantity": 5})).await;
    assert_eq!((received.status, received.body["id"].as_str()), (StatusCode::OK, Some("PHONE-1")));
    let adjusted = app.post("/api/v1/stock/PHONE-1/adjustments", Some(&admin), json!({"quantity_delta": -2, "reason": "damaged"})).await;
    assert_eq!((adjusted.status, adjusted.body["version"].as_u64()), (StatusCode::OK, Some(2)));
    let below = app.post("/api/v1/stock/PHONE-1/adjustments", Some(&admin), json!({"quantity_delta": -4, "reason": "count"})).await;
    assert_eq!((below.status, below.code()), (StatusCode::CONFLICT, "adjustment_below_reserved"));
    let no_reason = app.post("/api/v1/stock/PHONE-1/adjustments", Some(&admin), json!({"quantity_delta": 1, "reason": " "})).await;
    assert_eq!(no_reason.status, StatusCode::UNPROCESSABLE_ENTITY);
    let customer = app.customer_token("ada@example.com").await;
    assert_eq!(app.post("/api/v1/stock/PHONE-1/receipts", Some(&customer), json!({"quantity": 5})).await.status, StatusCode::FORBIDDEN);
});

both_modes!(an_idempotency_key_replays_the_first_answer, |app: TestApp| async move {
    let admin = app.admin_token().await;
    let body = json!({"sku": "IDEM-1", "name": "Idem", "category": "misc", "price": {"amount": 100, "currency": "EUR"}});
    let key = [("idempotency-key", "create-idem-1")];
    let first = app.call(Method::POST, "/api/v1/products", Some(&admin), Some(body.clone()), &key).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let retry = app.call(Method::POST, "/api/v1/products", Some(&admin), Some(body.clone()), &key).await;
    assert_eq!((retry.status, &retry.body), (StatusCode::CREATED, &first.body), "the same answer, not sku_taken");
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    let other = app
        .call(
            Method::POST,
            "/api/v1/products",
            Some(&admin),
            Some(json!({"sku": "IDEM-2", "name": "I", "category": "misc", "price": {"amount": 1, "currency": "EUR"}})),
            &key,
        )
        .await;
    assert_eq!((other.status, other.code()), (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"));
    // A refused request does not use the key up.
    let refused =
        app.call(Method::POST, "/api/v1/products", Some(&admin), Some(json!({"sku": "IDEM-3"})), &[("idempotency-key", "k3")]).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let fixed = app
        .call(
            Method::POST,
            "/api/v1/products",
            Some(&admin),
            Some(json!({"sku": "IDEM-3", "name": "I", "category": "misc", "price": {"amount": 1, "currency": "EUR"}})),
            &[("idempotency-key", "k3")],
        )
        .await;
    assert_eq!(fixed.status, StatusCode::CREATED);
});

both_modes!(tenants_never_see_each_other, |app: TestApp| async move {
    let acme = app.admin_token_in("acme", "admin@acme.example").await;
    let globex = app.admin_token_in("globex", "admin@globex.example").await;
    let created = app.create_product(&acme, "SHARED-1").await;
    let id = created.body["id"].as_str().expect("id").to_owned();
    // The same SKU is free in another tenant.
    assert_eq!(app.create_product(&globex, "SHARED-1").await.status, StatusCode::CREATED);
    let foreign = app.call(Method::PATCH, &format!("/api/v1/products/{id}"), Some(&globex), Some(json!({"name": "Hijacked"})), &[]).await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    let acme_user = app
        .call(
            Method::POST,
            "/api/v1/auth/register",
            None,
            Some(json!({"email": "ada@acme.example", "password": "correct horse", "name": "Ada"})),
            &[("x-tenant", "acme")],
        )
        .await;
    let acme_user_id = acme_user.body["id"].as_str().expect("id").to_owned();
    let cross =
        app.call(Method::PUT, &format!("/api/v1/users/{acme_user_id}/roles"), Some(&globex), Some(json!({"roles": ["admin"]})), &[]).await;
    assert_eq!(cross.status, StatusCode::NOT_FOUND);
    // A login in the wrong tenant fails like an unknown account.
    assert_eq!(app.login("ada@acme.example", "correct horse").await.status, StatusCode::UNAUTHORIZED);
});

both_modes!(unknown_routes_and_methods_get_problems, |app: TestApp| async move {
    let missing = app.call(Method::GET, "/api/v1/nope", None, None, &[]).await;
    assert_eq!((missing.status, missing.code()), (StatusCode::NOT_FOUND, "not_found"));
    let method = app.call(Method::GET, "/api/v1/auth/login", None, None, &[]).await;
    assert_eq!((method.status, method.code()), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));
});

both_modes!(readiness_fails_while_the_store_is_unreachable, |app: TestApp| async move {
    app.state.store.close().await;
    let ready = app.call(Method::GET, "/ready", None, None, &[]).await;
    assert_eq!((ready.status, ready.code()), (StatusCode::SERVICE_UNAVAILABLE, "unavailable"));
    assert!(ready.headers.contains_key("retry-after"));
    let health = app.call(Method::GET, "/health", None, None, &[]).await;
    assert_eq!(health.status, StatusCode::OK, "the process itself is still up");
});
