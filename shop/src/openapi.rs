//! The API's own documentation: the OpenAPI 3.1 document at `GET /openapi.json`, built from
//! the operation table in [`crate::openapi_ops`], and an interactive page at `GET /docs`.
//! `shop/tests/openapi.rs` checks the table against the routers both ways, and the test
//! command runs schemathesis against the served document.

use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use crate::openapi_ops::{operations, Access};

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for op in operations() {
        let mut responses = Map::new();
        for (status, description, schema) in &op.ok {
            let mut response = json!({ "description": description });
            if let Some(schema) = schema {
                response["content"] = json!({ "application/json": { "schema": schema } });
            }
            responses.insert(status.to_string(), response);
        }
        // Every read that takes X-Min-Position refuses one past the end of the log.
        let mut errors = op.errors.clone();
        let reads_own_writes = op.params.iter().any(|p| p["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case("x-min-position")));
        if reads_own_writes && !errors.contains(&422) {
            errors.push(422);
        }
        errors.sort_unstable();
        for status in &errors {
            let reason = axum::http::StatusCode::from_u16(*status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error");
            responses.insert(
                status.to_string(),
                json!({
                    "description": format!("{reason}: a problem (RFC 9457) whose `code` says what went wrong"),
                    "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } }
                }),
            );
        }
        let mut operation = json!({
            "operationId": op.id,
            "tags": [op.tag],
            "summary": op.summary,
            "responses": responses,
        });
        if !op.params.is_empty() {
            operation["parameters"] = Value::Array(op.params.clone());
        }
        if let Some(body) = &op.body {
            operation["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": body } } });
        }
        match op.access {
            // Anonymous, or with a token (an admin sees more).
            Access::Anyone => operation["security"] = json!([{}, { "bearer": [] }]),
            Access::User => {}
            Access::Admin => operation["description"] = json!("Needs a token with the `admin` role of the tenant."),
        }
        let item = paths.entry(op.path.to_owned()).or_insert_with(|| json!({}));
        item[op.method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "shop",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "An event-sourced CQRS commerce backend. Commands answer with the aggregate's new version and the log position of the write; send that position as `X-Min-Position` to read your own writes. Errors are RFC 9457 problems with a machine-readable `code`."
        },
        "security": [{ "bearer": [] }],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "An access token from POST /api/v1/auth/login (at most 15 minutes)." }
            },
            "schemas": {
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "detail", "code"],
                    "properties": {
                        "type": { "type": "string" },
                        "title": { "type": "string" },
                        "status": { "type": "integer" },
                        "detail": { "type": "string" },
                        "code": { "type": "string" },
                        "field": { "type": "string", "description": "the request field at fault (invalid_value)" },
                        "current_version": { "type": "integer", "description": "the aggregate's version (version conflicts)" },
                        "order_status": { "type": "string", "description": "the order's status (illegal_transition)" }
                    }
                }
            }
        }
    })
}

/// `GET /openapi.json` and `GET /docs`.
pub fn router() -> Router {
    Router::new().route("/openapi.json", get(|| async { Json(document()) })).route("/docs", get(docs))
}

/// Swagger UI from a CDN, pointed at the document: the browser fetches the assets, the server
/// bundles none.
async fn docs() -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "no-cache")],
        Html(
            r##"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>shop API</title>
  <link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.17.14/swagger-ui.css">
</head>
<body>
  <div id="api"></div>
  <script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.17.14/swagger-ui-bundle.js"></script>
  <script>SwaggerUIBundle({ url: "/openapi.json", dom_id: "#api" });</script>
  <noscript>The document itself is at <a href="/openapi.json">/openapi.json</a>.</noscript>
</body>
</html>"##,
        ),
    )
}
