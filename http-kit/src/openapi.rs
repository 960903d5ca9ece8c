//! The OpenAPI document comes from the handlers' types (aide): each extractor documents the
//! parameters it reads, the security it needs and the problems it answers before the handler
//! runs; each answer type its status and body; [`ApiError`] the problem body. A route and its
//! documentation are therefore one declaration, and a route cannot be served undocumented.
//!
//! What a handler itself can refuse (a business rule, a missing resource) is declared with the
//! route by [`Problems::problems`], naming [`ErrorCode`]s: typed, and checked by the tests
//! that run schemathesis against the served document.

use std::borrow::Cow;

use aide::generate::GenContext;
use aide::openapi::{MediaType, Operation, Parameter, ReferenceOr, Response, SchemaObject};
use aide::operation::{add_parameters, OperationInput, OperationOutput};
use aide::transform::TransformOperation;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response as AxumResponse};
use axum::Json;
use indexmap::IndexMap;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ErrorCode};
use crate::extract::{Admin, AppJson, AppQuery, AuthUser, Id, IfMatch, MinPosition, PathId, RequestMeta, Tenant, Viewer};

/// The security scheme every authenticated operation names.
pub const BEARER: &str = "bearer";

/// The body of every error answer (RFC 9457 problem details), as the document describes it.
#[derive(JsonSchema)]
#[allow(dead_code)] // documentation only: `ApiError::body` writes the answers
struct Problem {
    #[serde(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    detail: String,
    code: Code,
    /// The request field at fault (`invalid_value`).
    field: Option<String>,
    /// The aggregate's version (version conflicts, failed preconditions).
    current_version: Option<u64>,
    /// The order's status (`illegal_transition`).
    order_status: Option<String>,
}

/// Every [`ErrorCode`] by its wire name.
struct Code;

impl JsonSchema for Code {
    fn schema_name() -> Cow<'static, str> {
        "ProblemCode".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        schemars::json_schema!({ "type": "string", "enum": names, "description": "What went wrong, for clients to branch on." })
    }
}

/// A problem answer with `status`, naming the codes it carries.
fn problem(ctx: &mut GenContext, status: u16, codes: &[ErrorCode]) -> Response {
    let names: Vec<&str> = codes.iter().filter(|c| c.status().as_u16() == status).map(|c| c.as_str()).collect();
    let reason = StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error");
    let description = if names.is_empty() { format!("{reason}: a problem") } else { format!("{reason}: `{}`", names.join("`, `")) };
    Response {
        description,
        content: IndexMap::from([(
            "application/problem+json".to_owned(),
            MediaType {
                schema: Some(SchemaObject { json_schema: ctx.schema.subschema_for::<Problem>(), example: None, external_docs: None }),
                ..Default::default()
            },
        )]),
        ..Default::default()
    }
}

/// One problem response per status among `codes`.
fn problems(ctx: &mut GenContext, codes: &[ErrorCode]) -> Vec<(Option<u16>, Response)> {
    let mut statuses: Vec<u16> = codes.iter().map(|c| c.status().as_u16()).collect();
    statuses.sort_unstable();
    statuses.dedup();
    statuses.into_iter().map(|s| (Some(s), problem(ctx, s, codes))).collect()
}

/// Declares, with a route, its operation and the problems its handler answers itself.
pub trait Problems {
    /// `operationId`, tag and one-sentence summary.
    fn describe(self, id: &str, tag: &str, summary: &str) -> Self;
    fn problems(self, codes: &[ErrorCode]) -> Self;
    /// An optional header the route reads outside its extractors (a middleware's).
    fn header(self, name: &str, description: &str, schema: Value) -> Self;
}

impl Problems for TransformOperation<'_> {
    fn describe(self, id: &str, tag: &str, summary: &str) -> Self {
        self.id(id).tag(tag).summary(summary)
    }

    fn header(mut self, name: &str, description: &str, schema: Value) -> Self {
        self.inner_mut().parameters.push(ReferenceOr::Item(header(name, description, schema)));
        self
    }

    fn problems(mut self, codes: &[ErrorCode]) -> Self {
        aide::generate::in_context(|ctx| {
            let operation = self.inner_mut();
            let responses = operation.responses.get_or_insert_with(Default::default);
            for (status, response) in problems(ctx, codes) {
                let Some(status) = status else { continue };
                let key = aide::openapi::StatusCode::Code(status);
                match responses.responses.get_mut(&key) {
                    // Another source named this status already: list every code once.
                    Some(ReferenceOr::Item(existing)) if existing.content.contains_key("application/problem+json") => {
                        existing.description = merge_descriptions(&existing.description, &response.description);
                    }
                    _ => {
                        responses.responses.insert(key, ReferenceOr::Item(response));
                    }
                }
            }
        });
        self
    }
}

/// `Conflict: `a`, `b`` and `Conflict: `b`, `c`` → `Conflict: `a`, `b`, `c``.
pub(crate) fn merge_descriptions(a: &str, b: &str) -> String {
    let codes = |d: &str| -> Vec<String> { d.split('`').skip(1).step_by(2).map(str::to_owned).collect() };
    let mut all = codes(a);
    for code in codes(b) {
        if !all.contains(&code) {
            all.push(code);
        }
    }
    let reason = a.split(':').next().unwrap_or(a);
    if all.is_empty() {
        a.to_owned()
    } else {
        format!("{reason}: `{}`", all.join("`, `"))
    }
}

fn parameter(value: Value) -> Parameter {
    serde_json::from_value(value).expect("a well-formed OpenAPI parameter object (a literal in this file)")
}

fn header(name: &str, description: &str, schema: Value) -> Parameter {
    parameter(json!({ "name": name, "in": "header", "required": false, "description": description, "schema": schema }))
}

fn require(operation: &mut Operation, anonymous_too: bool) {
    if anonymous_too {
        operation.security = vec![Default::default(), IndexMap::from([(BEARER.to_owned(), Vec::new())])];
    } else if !operation.security.iter().any(|r| r.contains_key(BEARER) && r.len() == 1) || operation.security.len() != 1 {
        operation.security = vec![IndexMap::from([(BEARER.to_owned(), Vec::new())])];
    }
}

impl OperationOutput for ApiError {
    type Inner = ();

    /// What any route may answer beyond its own problems: a fault of ours, or a dependency away
    /// (the store, a request that outlived its timeout).
    fn inferred_responses(ctx: &mut GenContext, _: &mut Operation) -> Vec<(Option<u16>, Response)> {
        problems(ctx, &[ErrorCode::Internal, ErrorCode::Unavailable])
    }
}

impl<T: JsonSchema> OperationInput for AppJson<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        <Json<T> as OperationInput>::operation_input(ctx, operation);
    }

    fn inferred_early_responses(ctx: &mut GenContext, _: &mut Operation) -> Vec<(Option<u16>, Response)> {
        problems(ctx, &[ErrorCode::MalformedBody, ErrorCode::UnsupportedMediaType, ErrorCode::InvalidValue])
    }
}

impl<T: JsonSchema> OperationInput for AppQuery<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        <axum::extract::Query<T> as OperationInput>::operation_input(ctx, operation);
    }

    fn inferred_early_responses(ctx: &mut GenContext, _: &mut Operation) -> Vec<(Option<u16>, Response)> {
        problems(ctx, &[ErrorCode::MalformedBody, ErrorCode::InvalidValue])
    }
}

/// The path parameter itself is named by the route (see `document_path_parameters`).
impl<T: PathId> OperationInput for Id<T> {
    fn inferred_early_responses(ctx: &mut GenContext, _: &mut Operation) -> Vec<(Option<u16>, Response)> {
        problems(ctx, &[ErrorCode::NotFound])
    }
}

impl OperationInput for AuthUser {
    fn operation_input(_: &mut GenContext, operation: &mut Operation) {
        require(operation, false);
    }

    fn inferred_early_responses(ctx: &mut GenContext, _: &mut Operation) -> Vec<(Option<u16>, Response)> {
        problems(ctx, &[ErrorCode::Unauthenticated])
    }
}

impl OperationInput for Admin {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        AuthUser::operation_input(ctx, operation);
        let note = "Needs a token with the `admin` role of the tenant.";
        operation.description = Some(operation.description.take().map_or(note.to_owned(), |d| format!("{d} {note}")));
    }

    fn inferred_early_responses(ctx: &mut GenContext, _: &mut Operation) -> Vec<(Option<u16>, Response)> {
        problems(ctx, &[ErrorCode::Unauthenticated, ErrorCode::Forbidden])
    }
}

impl OperationInput for Tenant {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        let tenant = json!({ "type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$", "default": "default" });
        add_parameters(ctx, operation, [header("X-Tenant", "The tenant an anonymous request addresses.", tenant)]);
    }

    fn inferred_early_responses(ctx: &mut GenContext, _: &mut Operation) -> Vec<(Option<u16>, Response)> {
        problems(ctx, &[ErrorCode::MalformedBody, ErrorCode::InvalidValue])
    }
}

/// Anonymous (in the `X-Tenant` tenant) or with a token; an admin sees more.
impl OperationInput for Viewer {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        Tenant::operation_input(ctx, operation);
        require(operation, true);
    }

    fn inferred_early_responses(ctx: &mut GenContext, _: &mut Operation) -> Vec<(Option<u16>, Response)> {
        problems(ctx, &[ErrorCode::MalformedBody, ErrorCode::InvalidValue, ErrorCode::Unauthenticated])
    }
}

impl OperationInput for IfMatch {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        let description =
            "The version the client last saw (`3` or `\"3\"`); the command fails with 412 if the aggregate is at another version.";
        add_parameters(ctx, operation, [header("If-Match", description, json!({ "type": "string" }))]);
    }

    fn inferred_early_responses(ctx: &mut GenContext, _: &mut Operation) -> Vec<(Option<u16>, Response)> {
        problems(ctx, &[ErrorCode::MalformedBody, ErrorCode::PreconditionFailed])
    }
}

impl OperationInput for MinPosition {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        let description = "A log position a command returned: waits until the read model has reached it (503 `projection_behind` past the bound; 422 past the end of the log).";
        add_parameters(ctx, operation, [header("X-Min-Position", description, json!({ "type": "integer", "minimum": 0 }))]);
    }

    fn inferred_early_responses(ctx: &mut GenContext, _: &mut Operation) -> Vec<(Option<u16>, Response)> {
        problems(ctx, &[ErrorCode::MalformedBody, ErrorCode::InvalidValue, ErrorCode::ProjectionBehind])
    }
}

impl OperationInput for RequestMeta {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        let description = "Ties the events this request writes to a flow (1-128 characters); by default the request's trace.";
        add_parameters(ctx, operation, [header("X-Correlation-Id", description, json!({ "type": "string", "maxLength": 128 }))]);
    }
}

/// Adds every path parameter a route names (`{id}`) that no extractor documented, as a
/// required string: typed path ids ([`Id`]) parse it themselves and answer 404 when it does
/// not parse.
pub fn document_path_parameters(api: &mut aide::openapi::OpenApi) {
    let Some(paths) = api.paths.as_mut() else { return };
    for (path, item) in paths.paths.iter_mut() {
        let ReferenceOr::Item(item) = item else { continue };
        let names: Vec<&str> = path.split('{').skip(1).filter_map(|p| p.split('}').next()).collect();
        let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        for operation in operations.into_iter().flatten() {
            for name in &names {
                let documented =
                    operation.parameters.iter().any(|p| matches!(p, ReferenceOr::Item(p) if p.parameter_data_ref().name == *name));
                if !documented {
                    let p = parameter(json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }));
                    operation.parameters.push(ReferenceOr::Item(p));
                }
            }
        }
    }
}

/// A JSON answer with a fixed status: [`Created`] (201) or [`Accepted`] (202).
fn with_status<T: JsonSchema>(ctx: &mut GenContext, operation: &mut Operation, status: u16) -> Vec<(Option<u16>, Response)> {
    <Json<T> as OperationOutput>::operation_response(ctx, operation).map(|r| (Some(status), r)).into_iter().collect()
}

/// Declares a JSON answer with a fixed status.
macro_rules! json_with_status {
    ($(#[$doc:meta])* $name:ident, $status:ident) => {
        $(#[$doc])*
        pub struct $name<T>(pub T);

        impl<T: Serialize> IntoResponse for $name<T> {
            fn into_response(self) -> AxumResponse {
                (StatusCode::$status, Json(self.0)).into_response()
            }
        }

        impl<T: JsonSchema> OperationOutput for $name<T> {
            type Inner = T;

            fn inferred_responses(ctx: &mut GenContext, operation: &mut Operation) -> Vec<(Option<u16>, Response)> {
                with_status::<T>(ctx, operation, StatusCode::$status.as_u16())
            }
        }
    };
}

json_with_status!(
    /// 201 with a JSON body.
    Created,
    CREATED
);
json_with_status!(
    /// 202 with a JSON body: the command is recorded; what follows happens asynchronously.
    Accepted,
    ACCEPTED
);

/// Declares an answer without a body.
macro_rules! empty_with_status {
    ($(#[$doc:meta])* $name:ident, $status:ident) => {
        $(#[$doc])*
        pub struct $name;

        impl IntoResponse for $name {
            fn into_response(self) -> AxumResponse {
                StatusCode::$status.into_response()
            }
        }

        impl OperationOutput for $name {
            type Inner = ();

            fn inferred_responses(_: &mut GenContext, _: &mut Operation) -> Vec<(Option<u16>, Response)> {
                let status = StatusCode::$status;
                let description = status.canonical_reason().unwrap_or_default().to_owned();
                vec![(Some(status.as_u16()), Response { description, ..Default::default() })]
            }
        }
    };
}

empty_with_status!(
    /// 202 without a body: taken, and nothing to say about it (a password reset).
    Queued,
    ACCEPTED
);
empty_with_status!(
    /// 204: done, nothing to return.
    Done,
    NO_CONTENT
);

/// An answer that also sets a cookie (`Set-Cookie`), documented as the answer it wraps.
pub struct SetCookie<R>(pub axum::http::HeaderValue, pub R);

impl<R: IntoResponse> IntoResponse for SetCookie<R> {
    fn into_response(self) -> AxumResponse {
        let mut response = self.1.into_response();
        response.headers_mut().append(axum::http::header::SET_COOKIE, self.0);
        response.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
        response
    }
}

impl<R: OperationOutput> OperationOutput for SetCookie<R> {
    type Inner = R::Inner;

    fn inferred_responses(ctx: &mut GenContext, operation: &mut Operation) -> Vec<(Option<u16>, Response)> {
        R::inferred_responses(ctx, operation)
    }
}

/// One resource with its version as `ETag`; `304` when `If-None-Match` already names it.
pub struct Versioned<T> {
    pub body: T,
    pub version: i64,
    /// The request's `If-None-Match`.
    pub if_none_match: Option<String>,
}

impl<T> Versioned<T> {
    pub fn new(headers: &axum::http::HeaderMap, version: i64, body: T) -> Self {
        let if_none_match = headers.get(axum::http::header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Self { body, version, if_none_match }
    }
}

impl<T: Serialize> IntoResponse for Versioned<T> {
    fn into_response(self) -> AxumResponse {
        let etag = format!("\"{}\"", self.version);
        let matches = self.if_none_match.as_deref().is_some_and(|v| v.split(',').any(|t| t.trim().trim_start_matches("W/") == etag));
        let mut response = if matches { StatusCode::NOT_MODIFIED.into_response() } else { Json(self.body).into_response() };
        if let Ok(v) = axum::http::HeaderValue::from_str(&etag) {
            response.headers_mut().insert(axum::http::header::ETAG, v);
        }
        response
    }
}

impl<T: JsonSchema> OperationOutput for Versioned<T> {
    type Inner = T;

    fn inferred_responses(ctx: &mut GenContext, operation: &mut Operation) -> Vec<(Option<u16>, Response)> {
        let mut responses = with_status::<T>(ctx, operation, 200);
        responses.push((
            Some(304),
            Response { description: "Not Modified: `If-None-Match` names the current version".into(), ..Default::default() },
        ));
        responses
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn problem_descriptions_merge_their_codes() {
        let merged = super::merge_descriptions("Conflict: `a`, `b`", "Conflict: `b`, `c`");
        assert_eq!(merged, "Conflict: `a`, `b`, `c`");
    }
}
