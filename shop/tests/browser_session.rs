//! The browser's sign-in (`/auth/browser/*`) and the pages' headers, attacked over HTTP: the
//! refresh token never reaches a script, another site cannot use the cookie, and the pages load
//! only from the shop.

use reqwest::{Method, StatusCode};
use serde_json::json;
use testkit::{both_modes, Answer, TestApp};

const CSRF: (&str, &str) = ("x-shop-csrf", "1");

async fn browser_login(app: &TestApp, headers: &[(&str, &str)]) -> Answer {
    let body = json!({"email": "ada@example.com", "password": "a long enough password"});
    app.call(Method::POST, "/api/v1/auth/browser/login", None, Some(body), headers).await
}

/// The `shop_session=<value>` pair of an answer's `Set-Cookie`, and the whole header.
fn session_cookie(answer: &Answer) -> (String, String) {
    let header = answer.headers.get("set-cookie").and_then(|v| v.to_str().ok()).expect("Set-Cookie").to_owned();
    let pair = header.split(';').next().expect("pair").trim().to_owned();
    assert!(pair.starts_with("shop_session="), "{header}");
    (pair, header)
}

async fn refresh(app: &TestApp, cookie: &str, headers: &[(&str, &str)]) -> Answer {
    let mut all = vec![("cookie", cookie)];
    all.extend_from_slice(headers);
    app.call(Method::POST, "/api/v1/auth/browser/refresh", None, None, &all).await
}

both_modes!(the_refresh_token_lives_in_an_httponly_strict_cookie, |app: TestApp| async move {
    assert_eq!(app.register("ada@example.com", "a long enough password").await.status, StatusCode::CREATED);
    let answer = browser_login(&app, &[CSRF]).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert!(answer.body["access_token"].is_string());
    assert!(answer.body.get("refresh_token").is_none(), "no refresh token for scripts: {}", answer.body);
    let (_, header) = session_cookie(&answer);
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/api/v1/auth/browser"] {
        assert!(header.contains(attribute), "{attribute} in {header}");
    }
    assert!(!header.contains("Secure"), "plain HTTP on localhost: {header}");
    assert_eq!(answer.headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    // Anywhere but on a loopback host the cookie is Secure.
    let public = browser_login(&app, &[CSRF, ("host", "shop.example")]).await;
    assert_eq!(public.status, StatusCode::OK, "{:?}", public.body);
    assert!(session_cookie(&public).1.contains("; Secure"), "{}", session_cookie(&public).1);
});

both_modes!(another_site_cannot_sign_in_or_use_the_cookie, |app: TestApp| async move {
    assert_eq!(app.register("ada@example.com", "a long enough password").await.status, StatusCode::CREATED);
    // A form or a simple request from another page: no custom header.
    let no_header = browser_login(&app, &[]).await;
    assert_eq!((no_header.status, no_header.code()), (StatusCode::FORBIDDEN, "cross_site_request"));
    let other_origin = browser_login(&app, &[CSRF, ("origin", "https://evil.example")]).await;
    assert_eq!((other_origin.status, other_origin.code()), (StatusCode::FORBIDDEN, "cross_site_request"));
    let cross_site = browser_login(&app, &[CSRF, ("sec-fetch-site", "cross-site")]).await;
    assert_eq!((cross_site.status, cross_site.code()), (StatusCode::FORBIDDEN, "cross_site_request"));

    let signed_in = browser_login(&app, &[CSRF]).await;
    let (cookie, _) = session_cookie(&signed_in);
    // The browser sends the cookie along with another site's request: refused, and the
    // session is untouched (the cookie still works from the shop's own page).
    for headers in [vec![], vec![CSRF, ("origin", "https://evil.example")], vec![CSRF, ("sec-fetch-site", "same-site")]] {
        let attack = refresh(&app, &cookie, &headers).await;
        assert_eq!((attack.status, attack.code()), (StatusCode::FORBIDDEN, "cross_site_request"), "{headers:?}");
        let logout = app
            .call(Method::POST, "/api/v1/auth/browser/logout", None, None, &[&[("cookie", cookie.as_str())], &headers[..]].concat())
            .await;
        assert_eq!(logout.status, StatusCode::FORBIDDEN, "{headers:?}");
    }
    let own = refresh(&app, &cookie, &[CSRF, ("sec-fetch-site", "same-origin"), ("origin", app.base.as_str())]).await;
    assert_eq!(own.status, StatusCode::OK, "{:?}", own.body);
});

both_modes!(the_cookie_rotates_and_logout_ends_it, |app: TestApp| async move {
    let registered = app.register("ada@example.com", "a long enough password").await;
    assert_eq!(registered.status, StatusCode::CREATED);
    // The profile is read from the users' view: it must show the registration first.
    let position = registered.body["position"].as_i64().expect("position").to_string();
    let (first, _) = session_cookie(&browser_login(&app, &[CSRF]).await);
    let rotated = refresh(&app, &first, &[CSRF]).await;
    assert_eq!(rotated.status, StatusCode::OK, "{:?}", rotated.body);
    let (second, _) = session_cookie(&rotated);
    assert_ne!(first, second, "a new refresh token each time");
    let me = app.call(Method::GET, "/api/v1/users/me", rotated.body["access_token"].as_str(), None, &[("x-min-position", &position)]).await;
    assert_eq!(me.status, StatusCode::OK);
    // The first cookie again (stolen and replayed): the whole login ends.
    let replayed = refresh(&app, &first, &[CSRF]).await;
    assert_eq!((replayed.status, replayed.code()), (StatusCode::UNAUTHORIZED, "refresh_token_reused"));
    assert_eq!(refresh(&app, &second, &[CSRF]).await.status, StatusCode::UNAUTHORIZED, "the family is revoked");

    let (third, _) = session_cookie(&browser_login(&app, &[CSRF]).await);
    let out = app.call(Method::POST, "/api/v1/auth/browser/logout", None, None, &[CSRF, ("cookie", third.as_str())]).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let (_, cleared) = session_cookie(&out);
    assert!(cleared.starts_with("shop_session=;") && cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(refresh(&app, &third, &[CSRF]).await.code(), "invalid_refresh_token", "the session ended");
    // A second session cookie beside the real one (planted by a neighbouring site): refused,
    // not guessed between.
    let (fourth, _) = session_cookie(&browser_login(&app, &[CSRF]).await);
    let planted = format!("{fourth}; shop_session=01a2.attacker");
    let tossed = refresh(&app, &planted, &[CSRF]).await;
    assert_eq!((tossed.status, tossed.code()), (StatusCode::UNAUTHORIZED, "invalid_refresh_token"));
    assert_eq!(refresh(&app, &fourth, &[CSRF]).await.status, StatusCode::OK, "the real session is untouched");
    let none = app.call(Method::POST, "/api/v1/auth/browser/refresh", None, None, &[CSRF]).await;
    assert_eq!((none.status, none.code()), (StatusCode::UNAUTHORIZED, "invalid_refresh_token"));
});

both_modes!(pages_load_only_from_the_shop_and_assets_are_immutable, |app: TestApp| async move {
    let page = app.client.get(format!("{}/", app.base)).send().await.expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    let header = |r: &reqwest::Response, name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let csp = header(&page, "content-security-policy");
    assert!(csp.contains("default-src 'self'") && csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval") && !csp.contains("http"), "nothing but this origin: {csp}");
    assert_eq!(header(&page, "cache-control"), "no-cache");
    let html = page.text().await.expect("html");
    assert!(!html.contains("<script>") && !html.contains("style="), "no inline script or style");
    let app_js = html.split("src=\"").nth(1).and_then(|s| s.split('"').next()).expect("the app's script").to_owned();
    assert!(app_js.starts_with("/assets/") && app_js.ends_with("/app.js"), "{app_js}");
    let asset = app.client.get(format!("{}{app_js}", app.base)).header("accept-encoding", "gzip").send().await.expect("asset");
    assert_eq!(asset.status(), StatusCode::OK);
    assert_eq!(header(&asset, "cache-control"), "public, max-age=31536000, immutable");
    assert_eq!(header(&asset, "content-encoding"), "gzip");
    // Another build's asset, or a path outside the assets: a problem, never a file.
    for path in ["/assets/0000000000000000/app.js", &app_js.replace("app.js", "../../Cargo.toml"), &app_js.replace("app.js", "nothing.js")]
    {
        let missing = app.call(Method::GET, path, None, None, &[]).await;
        assert_eq!((missing.status, missing.code()), (StatusCode::NOT_FOUND, "not_found"), "{path}");
    }
    // Every page path answers the same page; the API keeps its own answers.
    for path in ["/p/123", "/c/phones/android", "/orders/abc", "/admin/orders", "/search?q=x"] {
        let answer = app.client.get(format!("{}{path}", app.base)).send().await.expect("page");
        assert_eq!(header(&answer, "content-type"), "text/html; charset=utf-8", "{path}");
    }
    assert_eq!(app.call(Method::GET, "/api/v1/nothing", None, None, &[]).await.code(), "not_found");
});
