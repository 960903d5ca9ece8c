//! The OpenAPI document is generated from the handlers' types (aide), so a route and its
//! documentation are one declaration. These tests check what the generator cannot: every
//! documented operation reaches a handler on the running server (not the router's "no such
//! route" or "method not allowed" fallbacks), operation ids are unique, every path parameter
//! is documented, problems carry the Problem schema, and the page loads only from this shop.
//! schemathesis (in the test command) then checks every answer against the document.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use testkit::both_modes;
use testkit::TestApp;

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            ops.insert((method.to_uppercase(), path.clone()));
        }
    }
    ops
}

both_modes!(the_document_is_openapi_3_1_and_complete, |app: TestApp| async move {
    let doc = app.call(Method::GET, "/openapi.json", None, None, &[]).await.body;
    assert_eq!(doc["openapi"], "3.1.0");
    let ops = documented(&doc);
    assert!(ops.len() > 50, "every route of every API is documented: {ops:?}");
    for expected in
        [("POST", "/api/v1/orders"), ("GET", "/api/v1/admin/orders/{id}/saga"), ("POST", "/api/v1/admin/webhooks"), ("GET", "/ready")]
    {
        assert!(ops.contains(&(expected.0.to_owned(), expected.1.to_owned())), "{expected:?} missing");
    }
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let names: Vec<&str> = path.split('{').skip(1).filter_map(|p| p.split('}').next()).collect();
        for (method, op) in item.as_object().expect("item") {
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has an operationId"));
            assert!(ids.insert(id.to_owned()), "operationId {id} twice");
            let responses = op["responses"].as_object().expect("responses");
            assert!(responses.keys().any(|s| s.starts_with('2')), "{id} documents its success");
            for (status, response) in responses {
                if status.starts_with('4') || status == "500" {
                    let schema = &response["content"]["application/problem+json"]["schema"]["$ref"];
                    assert_eq!(schema, "#/components/schemas/Problem", "{id} {status} is a problem");
                }
            }
            let params: Vec<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            for name in &names {
                assert!(params.contains(name), "{id}: path parameter {name} is documented");
            }
        }
    }
    let codes = doc["components"]["schemas"]["ProblemCode"]["enum"].as_array().expect("problem codes");
    assert!(codes.iter().any(|c| c == "insufficient_stock") && codes.iter().any(|c| c == "projection_behind"), "{codes:?}");
    let place = &doc["paths"]["/api/v1/orders"]["post"];
    assert!(
        place["parameters"].as_array().expect("parameters").iter().any(|p| p["name"] == "Idempotency-Key"),
        "commands take Idempotency-Key"
    );
    let login = &doc["paths"]["/api/v1/auth/login"]["post"];
    assert!(
        !login["parameters"].as_array().into_iter().flatten().any(|p| p["name"] == "Idempotency-Key"),
        "token answers are never stored for replay, so login does not offer it"
    );
    assert!(place["requestBody"]["content"]["application/json"]["schema"].is_object(), "the body's schema comes from the request type");
});

both_modes!(every_documented_operation_reaches_a_handler, |app: TestApp| async move {
    let served = app.call(Method::GET, "/openapi.json", None, None, &[]).await;
    assert_eq!(served.status, StatusCode::OK);
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

both_modes!(the_docs_page_loads_only_from_this_shop, |app: TestApp| async move {
    let page = app.client.get(format!("{}/docs", app.base)).send().await.expect("docs");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers()["content-type"].to_str().unwrap_or_default().starts_with("text/html"));
    let html = page.text().await.expect("html");
    let sources: Vec<&str> =
        html.split(['"', '\'']).filter(|s| s.starts_with('/') || s.starts_with("http") || s.starts_with("//")).collect();
    assert!(sources.iter().all(|s| s.starts_with('/') && !s.starts_with("//")), "only same-origin assets: {sources:?}");
    for (asset, kind) in [
        ("/docs/swagger-ui-bundle.js", "text/javascript"),
        ("/docs/swagger-ui.css", "text/css"),
        ("/docs/docs.js", "text/javascript"),
        ("/docs/LICENSE", "text/plain"),
    ] {
        assert!(html.contains(asset) || asset.ends_with("LICENSE"), "the page uses {asset}");
        let answer = app.client.get(format!("{}{asset}", app.base)).send().await.expect("asset");
        assert_eq!(answer.status(), StatusCode::OK, "{asset}");
        assert!(answer.headers()["content-type"].to_str().unwrap_or_default().starts_with(kind), "{asset}");
        assert!(!answer.bytes().await.expect("bytes").is_empty(), "{asset}");
    }
});

both_modes!(the_topic_contract_is_served_as_checked_in, |app: TestApp| async move {
    let served = app.call(Method::GET, "/asyncapi.json", None, None, &[]).await;
    assert_eq!(served.status, StatusCode::OK);
    let checked_in: Value =
        serde_json::from_str(include_str!("../../worker-kit/contract/asyncapi.json")).expect("worker-kit/contract/asyncapi.json");
    assert_eq!(served.body, checked_in, "/asyncapi.json is the checked-in contract (the default topic prefix)");
    assert_eq!(served.body["asyncapi"], "3.0.0");
    assert_eq!(served.body["channels"]["order"]["address"], "shop.order.v1");
});
