//! The OpenAPI document matches the code both ways: every route the routers declare is
//! documented, and every documented operation reaches a handler on the running server (not
//! the router's "no such route" or "method not allowed" fallbacks).

use std::collections::BTreeSet;
use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use testkit::both_modes;
use testkit::TestApp;

/// Paths served outside `/api/v1`.
const ROOT_PATHS: [&str; 5] = ["/health", "/ready", "/metrics", "/openapi.json", "/docs"];

/// `(METHOD, full path)` of every `.route("…", …)` in the crates that serve HTTP.
fn declared_routes() -> BTreeSet<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for krate in ["command-api/src", "query-api/src", "notifier/src", "saga/src", "shop/src", "http-kit/src"] {
        let mut dirs = vec![root.join(krate)];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("source dir").filter_map(Result::ok) {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
    }
    let mut routes = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("source");
        let mut rest = text.as_str();
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            let Some(open) = rest.find('"') else { break };
            let Some(len) = rest[open + 1..].find('"') else {
                break;
            };
            let path = &rest[open + 1..open + 1 + len];
            if !path.starts_with('/') {
                continue;
            }
            // The call's text up to its closing parenthesis.
            let mut depth = 1;
            let end = rest.char_indices().find_map(|(i, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                (depth == 0).then_some(i)
            });
            let call = &rest[..end.unwrap_or(rest.len())];
            let full = if ROOT_PATHS.contains(&path) { path.to_owned() } else { format!("/api/v1{path}") };
            for method in ["get", "post", "put", "patch", "delete"] {
                let upper = method.to_uppercase();
                let by_function = call
                    .match_indices(&format!("{method}("))
                    .any(|(i, _)| i == 0 || !call[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_'));
                if by_function || call.contains(&format!("MethodFilter::{upper}")) {
                    routes.insert((upper, full.clone()));
                }
            }
        }
    }
    routes
}

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            ops.insert((method.to_uppercase(), path.clone()));
        }
    }
    ops
}

#[test]
fn every_route_is_documented_and_every_documented_route_is_declared() {
    let declared = declared_routes();
    assert!(declared.len() > 40, "the scan found the routes: {declared:?}");
    let documented = documented(&shop::openapi::document());
    let undocumented: Vec<_> = declared.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&declared).collect();
    assert!(undocumented.is_empty(), "routes missing from the OpenAPI document: {undocumented:?}");
    assert!(unknown.is_empty(), "documented operations no router declares: {unknown:?}");
}

#[test]
fn the_document_is_openapi_3_1_with_unique_operation_ids() {
    let doc = shop::openapi::document();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut ids = BTreeSet::new();
    for item in doc["paths"].as_object().expect("paths").values() {
        for op in item.as_object().expect("item").values() {
            let id = op["operationId"].as_str().expect("operationId");
            assert!(ids.insert(id.to_owned()), "operationId {id} twice");
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{id} has responses");
        }
    }
}

both_modes!(every_documented_operation_reaches_a_handler, |app: TestApp| async move {
    let served = app.call(Method::GET, "/openapi.json", None, None, &[]).await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.body, shop::openapi::document());
    let docs = app.client.get(format!("{}/docs", app.base)).send().await.expect("docs");
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.headers()["content-type"].to_str().unwrap_or_default().starts_with("text/html"));
    assert!(docs.text().await.expect("html").contains("/openapi.json"));

    let admin = app.admin_token().await;
    for (method, path) in documented(&served.body) {
        if path.ends_with("/events") {
            continue; // an event stream: checked by the orders tests
        }
        let concrete = path.replace("{sku}", "NO-SUCH-SKU").replace('{', "").replace('}', "");
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let body = matches!(method, Method::POST | Method::PUT | Method::PATCH).then(|| json!({}));
        let answer = app.call(method.clone(), &concrete, Some(&admin), body, &[]).await;
        let fallback =
            (answer.status == StatusCode::NOT_FOUND && answer.body["detail"] == "no such route") || answer.code() == "method_not_allowed";
        assert!(!fallback, "{method} {path} is documented but not served: {:?}", answer.body);
        assert!(answer.status.as_u16() < 500 || answer.status == StatusCode::SERVICE_UNAVAILABLE, "{method} {path}: {:?}", answer.body);
    }
});
