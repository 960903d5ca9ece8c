//! The API's own documentation: the OpenAPI 3.1 document at `GET /openapi.json`, generated
//! by aide from the routers this process serves (each handler's extractors and answer types,
//! see `http_kit::openapi`), and Swagger UI at `GET /docs`, its assets vendored from npm's
//! `swagger-ui-dist` (`shop/assets/swagger-ui/`) and embedded in the binary: the page loads
//! nothing from another origin. The test command runs schemathesis against the served
//! document. `GET /asyncapi.json` is the topics' contract (`worker_kit::contract`).

use std::sync::{Arc, OnceLock};

use aide::axum::routing::get_with;
use aide::axum::ApiRouter;
use aide::openapi::{OpenApi, SecurityScheme};
use aide::transform::TransformOpenApi;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use http_kit::Problems as _;
use serde_json::Value;

/// The document, once the routers that serve it are finished.
type Document = Arc<OnceLock<Value>>;

/// Finishes `routes` (every route this process serves, documented) into a plain router, with
/// `/openapi.json` serving their document, `/docs` the page, and `/asyncapi.json` the topic
/// contract (topics `<topic_prefix>.<type>.v1`).
pub fn finish(routes: ApiRouter, topic_prefix: &str) -> Router {
    let document: Document = Arc::default();
    let served = Arc::clone(&document);
    let contract = Arc::new(worker_kit::contract::document(topic_prefix));
    let routes = routes
        .api_route(
            "/asyncapi.json",
            get_with(
                move || async move { Json((*contract).clone()) },
                |op| op.describe("asyncapi_document", "operations", "The Kafka topics' contract: an AsyncAPI 3.0 document."),
            ),
        )
        .api_route(
            "/openapi.json",
            get_with(
                move || async move { Json(served.get().cloned().unwrap_or(Value::Null)) },
                |op| op.describe("openapi_document", "operations", "This OpenAPI 3.1 document."),
            ),
        )
        .api_route("/docs", get_with(docs, |op| op.describe("docs", "operations", "Interactive documentation of the API (Swagger UI).")));
    let mut api = OpenApi::default();
    let router = routes.finish_api_with(&mut api, describe);
    http_kit::openapi::document_path_parameters(&mut api);
    let value = serde_json::to_value(&api).expect("an OpenAPI document serialises to JSON");
    let _ = document.set(value);
    router.merge(assets())
}

/// The document's own information and security scheme.
fn describe(api: TransformOpenApi<'_>) -> TransformOpenApi<'_> {
    api.title("shop")
        .version(env!("CARGO_PKG_VERSION"))
        .description(
            "An event-sourced CQRS commerce backend. Commands answer with the aggregate's new version and the log position of the \
             write; send that position as `X-Min-Position` to read your own writes. Errors are RFC 9457 problems with a \
             machine-readable `code`.",
        )
        .security_scheme(
            http_kit::openapi::BEARER,
            SecurityScheme::Http {
                scheme: "bearer".into(),
                bearer_format: Some("JWT".into()),
                description: Some("An access token from POST /api/v1/auth/login (at most 15 minutes).".into()),
                extensions: Default::default(),
            },
        )
}

/// `GET /docs`: Swagger UI on `/openapi.json`, from this shop only.
async fn docs() -> Html<&'static str> {
    Html(
        r##"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>shop API</title>
  <link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
  <link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
  <div id="api"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/docs.js"></script>
  <noscript>The document itself is at <a href="/openapi.json">/openapi.json</a>.</noscript>
</body>
</html>"##,
    )
}

/// Swagger UI's files, embedded (`shop/assets/swagger-ui/`, with its licence).
fn assets() -> Router {
    let file = |bytes: &'static [u8], content_type: &'static str| {
        get(move || async move {
            ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=86400")], bytes).into_response()
        })
    };
    Router::new()
        .route("/docs/swagger-ui-bundle.js", file(include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js"), "text/javascript"))
        .route("/docs/swagger-ui.css", file(include_bytes!("../assets/swagger-ui/swagger-ui.css"), "text/css"))
        .route("/docs/docs.js", file(include_bytes!("../assets/swagger-ui/docs.js"), "text/javascript"))
        .route("/docs/favicon-32x32.png", file(include_bytes!("../assets/swagger-ui/favicon-32x32.png"), "image/png"))
        .route("/docs/LICENSE", file(include_bytes!("../assets/swagger-ui/LICENSE"), "text/plain; charset=utf-8"))
}
