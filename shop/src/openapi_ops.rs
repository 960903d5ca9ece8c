//! Every operation of the HTTP API, as data: `openapi.rs` turns it into the OpenAPI 3.1 document,
//! and a test checks it against the routers.
use serde_json::{json, Value};

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Anyone,
    User,
    Admin,
}

pub struct Op {
    /// `get`, `post`, `put`, `patch` or `delete`.
    pub method: &'static str,
    /// The full path, with `{name}` parameters as in the axum route.
    pub path: &'static str,
    /// Unique operationId, snake_case.
    pub id: &'static str,
    pub tag: &'static str,
    /// One short sentence.
    pub summary: &'static str,
    pub access: Access,
    /// OpenAPI 3.1 Parameter Objects (path, query, header).
    pub params: Vec<Value>,
    /// JSON Schema of the `application/json` request body, if the handler takes one.
    pub body: Option<Value>,
    /// Success statuses: status, description, JSON Schema of the body (`None`: no JSON body).
    pub ok: Vec<(u16, &'static str, Option<Value>)>,
    /// Error statuses this operation can answer (each with the Problem schema).
    pub errors: Vec<u16>,
}

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

/// A path parameter, kept as text by the handler (it may parse it later: a bad one is a 404).
fn path(name: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } })
}

/// An optional query parameter (every field of every `Query` struct is an `Option`).
fn query(name: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "query", "required": false, "schema": schema })
}

fn header(name: &str, description: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "header", "required": false, "description": description, "schema": schema })
}

/// Read by the idempotency middleware of the command API on POST (auth routes but register excluded).
fn idempotency_key() -> Value {
    header(
        "Idempotency-Key",
        "Retries with the same key and the same request get the first successful answer again instead of a second effect.",
        json!({ "type": "string", "minLength": 1, "maxLength": 255 }),
    )
}

/// The `IfMatch` extractor: a version number, quoted or not.
fn if_match() -> Value {
    header(
        "If-Match",
        "The version the client last saw (`3` or `\"3\"`); the command fails with 412 if the aggregate is at another version.",
        json!({ "type": "string" }),
    )
}

/// The `MinPosition` extractor of the query API.
fn min_position() -> Value {
    header(
        "X-Min-Position",
        "A log position a command returned: waits until the read model has reached it (503 `projection_behind` past the bound).",
        json!({ "type": "integer", "minimum": 0 }),
    )
}

/// The `Tenant` extractor (and the `Viewer` extractor without `Authorization`).
fn x_tenant() -> Value {
    header("X-Tenant", "The tenant of an anonymous request; `default` when absent.", json!({ "type": "string" }))
}

/// Single resources answered through `versioned`: an `ETag` and 304.
fn if_none_match() -> Value {
    header("If-None-Match", "An `ETag` of this resource; 304 when it is still current.", json!({ "type": "string" }))
}

fn not_modified() -> (u16, &'static str, Option<Value>) {
    (304, "Not modified: `If-None-Match` names the current `ETag`", None)
}

/// The filters of `GET /products` and `GET /products/search` that both take.
fn product_filters() -> Vec<Value> {
    vec![
        query("category", json!({ "type": "string" })),
        query("min_price", json!({ "type": "integer" })),
        query("max_price", json!({ "type": "integer" })),
        query("published", json!({ "type": "boolean" })),
        query("featured", json!({ "type": "boolean" })),
    ]
}

// ---------------------------------------------------------------------------------------------
// Schemas
// ---------------------------------------------------------------------------------------------

/// `CommandAccepted`: the answer to every successful command.
fn accepted() -> Value {
    json!({
        "type": "object",
        "required": ["id", "version", "position"],
        "properties": {
            "id": { "type": "string" },
            "version": { "type": "integer" },
            "position": { "type": "integer" }
        }
    })
}

/// `TokenResponse` of login and refresh.
fn tokens() -> Value {
    json!({
        "type": "object",
        "required": ["access_token", "refresh_token", "token_type", "expires_in"],
        "properties": {
            "access_token": { "type": "string" },
            "refresh_token": { "type": "string" },
            "token_type": { "type": "string" },
            "expires_in": { "type": "integer" }
        }
    })
}

/// `PriceBody` (command API): `{amount, currency}`, amount in minor units.
fn price_body() -> Value {
    json!({
        "type": "object",
        "required": ["amount", "currency"],
        "additionalProperties": false,
        "properties": { "amount": { "type": "integer" }, "currency": { "type": "string" } }
    })
}

/// `Money` as the read side shows it.
fn money() -> Value {
    json!({
        "type": "object",
        "required": ["amount", "currency"],
        "properties": { "amount": { "type": "integer" }, "currency": { "type": "string" } }
    })
}

/// A page of a keyset-paginated listing.
fn page() -> Value {
    json!({
        "type": "object",
        "properties": {
            "items": { "type": "array", "items": { "type": "object" } },
            "next_cursor": { "type": ["string", "null"] }
        }
    })
}

fn array_of(properties: Value) -> Value {
    json!({ "type": "array", "items": { "type": "object", "properties": properties } })
}

fn object(properties: Value) -> Value {
    json!({ "type": "object", "properties": properties })
}

/// A `#[serde(deny_unknown_fields)]` request struct.
fn strict(required: &[&str], properties: Value) -> Value {
    json!({ "type": "object", "required": required, "additionalProperties": false, "properties": properties })
}

fn user_view() -> Value {
    object(json!({
        "id": { "type": "string" },
        "email": { "type": "string" },
        "name": { "type": "string" },
        "roles": { "type": "array", "items": { "type": "string" } },
        "active": { "type": "boolean" },
        "registered_at": { "type": "string" },
        "version": { "type": "integer" }
    }))
}

fn endpoint() -> Value {
    object(json!({
        "id": { "type": "string" },
        "url": { "type": "string" },
        "event_types": { "type": "array", "items": { "type": "string" } },
        "secret": { "type": "string" }
    }))
}

fn place_order_body() -> Value {
    let line = strict(&["sku", "quantity"], json!({ "sku": { "type": "string" }, "quantity": { "type": "integer" } }));
    let address = strict(
        &["name", "line1", "city", "postal_code", "country"],
        json!({
            "name": { "type": "string" },
            "line1": { "type": "string" },
            "city": { "type": "string" },
            "postal_code": { "type": "string" },
            "country": { "type": "string" }
        }),
    );
    strict(
        &["lines", "shipping_address", "payment_method"],
        json!({
            "lines": { "type": "array", "items": line },
            "shipping_address": address,
            "payment_method": { "type": "string" }
        }),
    )
}

fn create_product_body() -> Value {
    strict(
        &["sku", "name", "category", "price"],
        json!({
            "sku": { "type": "string" },
            "name": { "type": "string" },
            "description": { "type": "string" },
            "category": { "type": "string" },
            "price": price_body(),
            "attributes": { "type": "object", "additionalProperties": { "type": "string" } }
        }),
    )
}

fn update_product_body() -> Value {
    strict(
        &[],
        json!({
            "name": { "type": ["string", "null"] },
            "description": { "type": ["string", "null"] },
            "category": { "type": ["string", "null"] },
            "attributes": { "type": ["object", "null"], "additionalProperties": { "type": "string" } }
        }),
    )
}

// ---------------------------------------------------------------------------------------------
// The operations
// ---------------------------------------------------------------------------------------------

pub fn operations() -> Vec<Op> {
    vec![
        // --- auth (command API; `Tenant` extractor) ---
        Op {
            method: "post",
            path: "/api/v1/auth/register",
            id: "register",
            tag: "auth",
            summary: "Register a customer account with an e-mail address and a password.",
            access: Access::Anyone,
            params: vec![x_tenant(), idempotency_key()],
            body: Some(strict(
                &["email", "password", "name"],
                json!({ "email": { "type": "string" }, "password": { "type": "string" }, "name": { "type": "string" } }),
            )),
            ok: vec![(201, "Registered: the new user's id, version and log position", Some(accepted()))],
            errors: vec![400, 409, 415, 422, 503],
        },
        Op {
            method: "post",
            path: "/api/v1/auth/login",
            id: "login",
            tag: "auth",
            summary: "Log in: an access token and a refresh token.",
            access: Access::Anyone,
            params: vec![x_tenant()],
            body: Some(strict(&["email", "password"], json!({ "email": { "type": "string" }, "password": { "type": "string" } }))),
            ok: vec![(200, "The tokens of a new session", Some(tokens()))],
            errors: vec![400, 401, 415, 422, 429, 503],
        },
        Op {
            method: "post",
            path: "/api/v1/auth/refresh",
            id: "refresh_tokens",
            tag: "auth",
            summary: "Trade a refresh token for a new access token and a new refresh token.",
            access: Access::Anyone,
            params: vec![x_tenant()],
            body: Some(strict(&["refresh_token"], json!({ "refresh_token": { "type": "string" } }))),
            ok: vec![(200, "The rotated tokens", Some(tokens()))],
            errors: vec![400, 401, 409, 415, 422, 503],
        },
        Op {
            method: "post",
            path: "/api/v1/auth/logout",
            id: "logout",
            tag: "auth",
            summary: "Revoke the session of a refresh token.",
            access: Access::Anyone,
            params: vec![x_tenant()],
            body: Some(strict(&["refresh_token"], json!({ "refresh_token": { "type": "string" } }))),
            ok: vec![(204, "The session is revoked", None)],
            errors: vec![400, 401, 409, 415, 422, 503],
        },
        Op {
            method: "post",
            path: "/api/v1/auth/password-reset",
            id: "request_password_reset",
            tag: "auth",
            summary: "Mail a password-reset token to the address, if it has an account.",
            access: Access::Anyone,
            params: vec![x_tenant()],
            body: Some(strict(&["email"], json!({ "email": { "type": "string" } }))),
            ok: vec![(202, "Accepted, whether or not the address has an account", None)],
            errors: vec![400, 415, 422],
        },
        Op {
            method: "post",
            path: "/api/v1/auth/password-reset/confirm",
            id: "confirm_password_reset",
            tag: "auth",
            summary: "Set a new password with a password-reset token.",
            access: Access::Anyone,
            params: vec![x_tenant(), if_match()],
            body: Some(strict(&["token", "new_password"], json!({ "token": { "type": "string" }, "new_password": { "type": "string" } }))),
            ok: vec![(200, "The password is changed: the user's id, version and log position", Some(accepted()))],
            errors: vec![400, 409, 412, 415, 422, 503],
        },
        // --- users (command API) ---
        Op {
            method: "patch",
            path: "/api/v1/users/me",
            id: "change_profile",
            tag: "users",
            summary: "Change the caller's name.",
            access: Access::User,
            params: vec![if_match()],
            body: Some(strict(&["name"], json!({ "name": { "type": "string" } }))),
            ok: vec![(200, "Changed: the user's id, version and log position", Some(accepted()))],
            errors: vec![400, 401, 404, 409, 412, 415, 422, 503],
        },
        Op {
            method: "post",
            path: "/api/v1/users/me/password",
            id: "change_password",
            tag: "users",
            summary: "Change the caller's password, given the current one.",
            access: Access::User,
            params: vec![if_match(), idempotency_key()],
            body: Some(strict(
                &["current_password", "new_password"],
                json!({ "current_password": { "type": "string" }, "new_password": { "type": "string" } }),
            )),
            ok: vec![(200, "Changed: the user's id, version and log position", Some(accepted()))],
            errors: vec![400, 401, 404, 409, 412, 415, 422, 503],
        },
        Op {
            method: "put",
            path: "/api/v1/users/me/preferences",
            id: "set_preferences",
            tag: "users",
            summary: "Turn marketing e-mail on or off for the caller.",
            access: Access::User,
            params: vec![],
            body: Some(strict(&["marketing_emails"], json!({ "marketing_emails": { "type": "boolean" } }))),
            ok: vec![(200, "Set: the user's id, version and log position", Some(accepted()))],
            errors: vec![400, 401, 404, 409, 415, 503],
        },
        Op {
            method: "put",
            path: "/api/v1/users/{id}/roles",
            id: "set_user_roles",
            tag: "users",
            summary: "Replace the roles of a user of the tenant.",
            access: Access::Admin,
            params: vec![path("id"), if_match()],
            body: Some(strict(&["roles"], json!({ "roles": { "type": "array", "items": { "type": "string" } } }))),
            ok: vec![(200, "Set: the user's id, version and log position", Some(accepted()))],
            errors: vec![400, 401, 403, 404, 409, 412, 415, 422, 503],
        },
        Op {
            method: "post",
            path: "/api/v1/users/{id}/deactivate",
            id: "deactivate_user",
            tag: "users",
            summary: "Deactivate a user of the tenant.",
            access: Access::Admin,
            params: vec![path("id"), if_match(), idempotency_key()],
            body: None,
            ok: vec![(200, "Deactivated: the user's id, version and log position", Some(accepted()))],
            errors: vec![400, 401, 403, 404, 409, 412, 422, 503],
        },
        // --- users (query API) ---
        Op {
            method: "get",
            path: "/api/v1/users/me",
            id: "get_me",
            tag: "users",
            summary: "The caller's account.",
            access: Access::User,
            params: vec![min_position(), if_none_match()],
            body: None,
            ok: vec![(200, "The caller's account; the `ETag` is its version", Some(user_view())), not_modified()],
            errors: vec![400, 401, 404, 503],
        },
        Op {
            method: "get",
            path: "/api/v1/admin/users",
            id: "list_users",
            tag: "users",
            summary: "The tenant's users, oldest first, a page at a time.",
            access: Access::Admin,
            params: vec![min_position(), query("limit", json!({ "type": "integer" })), query("cursor", json!({ "type": "string" }))],
            body: None,
            ok: vec![(200, "A page of users; pass `next_cursor` as `cursor` for the next", Some(page()))],
            errors: vec![400, 401, 403, 422, 503],
        },
        // --- products (command API) ---
        Op {
            method: "post",
            path: "/api/v1/products",
            id: "create_product",
            tag: "products",
            summary: "Create a product under a new SKU.",
            access: Access::Admin,
            params: vec![idempotency_key()],
            body: Some(create_product_body()),
            ok: vec![(201, "Created: the product's id, version and log position", Some(accepted()))],
            errors: vec![400, 401, 403, 409, 415, 422, 503],
        },
        Op {
            method: "patch",
            path: "/api/v1/products/{id}",
            id: "update_product",
            tag: "products",
            summary: "Change a product's name, description, category or attributes.",
            access: Access::Admin,
            params: vec![path("id"), if_match()],
            body: Some(update_product_body()),
            ok: vec![(200, "Changed: the product's id, version and log position", Some(accepted()))],
            errors: vec![400, 401, 403, 404, 409, 412, 415, 422, 503],
        },
        Op {
            method: "delete",
            path: "/api/v1/products/{id}",
            id: "discontinue_product",
            tag: "products",
            summary: "Discontinue a product.",
            access: Access::Admin,
            params: vec![path("id"), if_match()],
            body: None,
            ok: vec![(200, "Discontinued: the product's id, version and log position", Some(accepted()))],
            errors: vec![400, 401, 403, 404, 409, 412, 503],
        },
        Op {
            method: "put",
            path: "/api/v1/products/{id}/price",
            id: "change_product_price",
            tag: "products",
            summary: "Change a product's price.",
            access: Access::Admin,
            params: vec![path("id"), if_match()],
            body: Some(price_body()),
            ok: vec![(200, "Changed: the product's id, version and log position", Some(accepted()))],
            errors: vec![400, 401, 403, 404, 409, 412, 415, 422, 503],
        },
        Op {
            method: "post",
            path: "/api/v1/products/{id}/publish",
            id: "publish_product",
            tag: "products",
            summary: "Publish a product: it shows in the catalogue and can be ordered.",
            access: Access::Admin,
            params: vec![path("id"), if_match(), idempotency_key()],
            body: None,
            ok: vec![(200, "Published: the product's id, version and log position", Some(accepted()))],
            errors: vec![400, 401, 403, 404, 409, 412, 422, 503],
        },
        Op {
            method: "post",
            path: "/api/v1/products/{id}/unpublish",
            id: "unpublish_product",
            tag: "products",
            summary: "Take a product out of the catalogue.",
            access: Access::Admin,
            params: vec![path("id"), if_match(), idempotency_key()],
            body: None,
            ok: vec![(200, "Unpublished: the product's id, version and log position", Some(accepted()))],
            errors: vec![400, 401, 403, 404, 409, 412, 422, 503],
        },
        // --- products (query API; `Viewer`: a token is optional, admins see unpublished products) ---
        Op {
            method: "get",
            path: "/api/v1/products",
            id: "list_products",
            tag: "products",
            summary: "The catalogue, filtered and sorted, a page at a time.",
            access: Access::Anyone,
            params: [
                vec![x_tenant(), min_position()],
                product_filters(),
                vec![
                    query("sort", json!({ "type": "string", "enum": ["name", "price", "newest"] })),
                    query("limit", json!({ "type": "integer" })),
                    query("cursor", json!({ "type": "string" })),
                ],
            ]
            .concat(),
            body: None,
            ok: vec![(200, "A page of products; pass `next_cursor` as `cursor` for the next", Some(page()))],
            errors: vec![400, 401, 422, 503],
        },
        Op {
            method: "get",
            path: "/api/v1/products/search",
            id: "search_products",
            tag: "products",
            summary: "Full-text product search with typo tolerance and facets.",
            access: Access::Anyone,
            params: [
                vec![x_tenant(), min_position(), query("q", json!({ "type": "string" }))],
                product_filters(),
                vec![query("limit", json!({ "type": "integer" })), query("offset", json!({ "type": "integer", "minimum": 0 }))],
            ]
            .concat(),
            body: None,
            ok: vec![(
                200,
                "Matching products with their score, the total and facets",
                Some(object(json!({
                    "total": { "type": "integer" },
                    "items": { "type": "array", "items": { "type": "object" } },
                    "facets": object(json!({ "categories": { "type": "array" }, "price": { "type": "array" } }))
                }))),
            )],
            errors: vec![400, 401, 422, 503],
        },
        Op {
            method: "get",
            path: "/api/v1/products/{id}",
            id: "get_product",
            tag: "products",
            summary: "One product.",
            access: Access::Anyone,
            params: vec![path("id"), x_tenant(), min_position(), if_none_match()],
            body: None,
            ok: vec![(200, "The product; the `ETag` is its version", Some(json!({ "type": "object" }))), not_modified()],
            errors: vec![400, 401, 404, 422, 503],
        },
        Op {
            method: "get",
            path: "/api/v1/categories",
            id: "list_categories",
            tag: "products",
            summary: "The category tree with product counts that include sub-categories.",
            access: Access::Anyone,
            params: vec![x_tenant(), min_position()],
            body: None,
            ok: vec![(
                200,
                "The root categories, each with its children",
                Some(array_of(json!({
                    "name": { "type": "string" },
                    "path": { "type": "string" },
                    "count": { "type": "integer" },
                    "children": { "type": "array" }
                }))),
            )],
            errors: vec![400, 401, 422, 503],
        },
        // --- stock ---
        Op {
            method: "post",
            path: "/api/v1/stock/{sku}/receipts",
            id: "receive_stock",
            tag: "stock",
            summary: "Add received units to a SKU's stock on hand.",
            access: Access::Admin,
            params: vec![path("sku"), if_match(), idempotency_key()],
            body: Some(strict(&["quantity"], json!({ "quantity": { "type": "integer" } }))),
            ok: vec![(200, "Received: the SKU, the stock's version and log position", Some(accepted()))],
            errors: vec![400, 401, 403, 404, 409, 412, 415, 422, 503],
        },
        Op {
            method: "post",
            path: "/api/v1/stock/{sku}/adjustments",
            id: "adjust_stock",
            tag: "stock",
            summary: "Correct a SKU's stock on hand by a signed quantity, with a reason.",
            access: Access::Admin,
            params: vec![path("sku"), if_match(), idempotency_key()],
            body: Some(strict(
                &["quantity_delta", "reason"],
                json!({ "quantity_delta": { "type": "integer" }, "reason": { "type": "string" } }),
            )),
            ok: vec![(200, "Adjusted: the SKU, the stock's version and log position", Some(accepted()))],
            errors: vec![400, 401, 403, 404, 409, 412, 415, 422, 503],
        },
        Op {
            method: "get",
            path: "/api/v1/stock/{sku}",
            id: "get_stock",
            tag: "stock",
            summary: "A SKU's available units (admins also see on hand and reserved).",
            access: Access::Anyone,
            params: vec![path("sku"), x_tenant(), min_position(), if_none_match()],
            body: None,
            ok: vec![
                (
                    200,
                    "The SKU's stock; the `ETag` is its version",
                    Some(object(json!({
                        "sku": { "type": "string" },
                        "available": { "type": "integer" },
                        "on_hand": { "type": "integer" },
                        "reserved": { "type": "integer" }
                    }))),
                ),
                not_modified(),
            ],
            errors: vec![400, 401, 404, 422, 503],
        },
        // --- orders (command API) ---
        Op {
            method: "post",
            path: "/api/v1/orders",
            id: "place_order",
            tag: "orders",
            summary: "Place an order; the order saga reserves stock, takes payment and confirms it.",
            access: Access::User,
            params: vec![idempotency_key()],
            body: Some(place_order_body()),
            ok: vec![(202, "Placed: the order's id, version and log position", Some(accepted()))],
            errors: vec![400, 401, 409, 415, 422, 503],
        },
        Op {
            method: "post",
            path: "/api/v1/orders/{id}/cancel",
            id: "cancel_order",
            tag: "orders",
            summary: "Cancel one of the caller's orders (any order for an admin) until it ships.",
            access: Access::User,
            params: vec![path("id"), idempotency_key()],
            body: None,
            ok: vec![(202, "Cancelled: the order's id, version and log position", Some(accepted()))],
            errors: vec![400, 401, 404, 409, 422, 503],
        },
        Op {
            method: "post",
            path: "/api/v1/orders/{id}/ship",
            id: "ship_order",
            tag: "orders",
            summary: "Mark a confirmed order as shipped, with carrier and tracking number.",
            access: Access::Admin,
            params: vec![path("id"), idempotency_key()],
            body: Some(strict(
                &["carrier", "tracking_number"],
                json!({ "carrier": { "type": "string" }, "tracking_number": { "type": "string" } }),
            )),
            ok: vec![(202, "Shipped: the order's id, version and log position", Some(accepted()))],
            errors: vec![400, 401, 403, 404, 409, 415, 422, 503],
        },
        Op {
            method: "post",
            path: "/api/v1/orders/{id}/deliver",
            id: "deliver_order",
            tag: "orders",
            summary: "Mark a shipped order as delivered.",
            access: Access::Admin,
            params: vec![path("id"), idempotency_key()],
            body: None,
            ok: vec![(202, "Delivered: the order's id, version and log position", Some(accepted()))],
            errors: vec![400, 401, 403, 404, 409, 422, 503],
        },
        // --- orders (query API) ---
        Op {
            method: "get",
            path: "/api/v1/orders",
            id: "list_my_orders",
            tag: "orders",
            summary: "The caller's orders, newest first, a page at a time.",
            access: Access::User,
            params: vec![min_position(), query("limit", json!({ "type": "integer" })), query("cursor", json!({ "type": "string" }))],
            body: None,
            ok: vec![(200, "A page of orders; pass `next_cursor` as `cursor` for the next", Some(page()))],
            errors: vec![400, 401, 422, 503],
        },
        Op {
            method: "get",
            path: "/api/v1/orders/{id}",
            id: "get_order",
            tag: "orders",
            summary: "One of the caller's orders (any order for an admin), with its timeline.",
            access: Access::User,
            params: vec![path("id"), min_position(), if_none_match()],
            body: None,
            ok: vec![
                (
                    200,
                    "The order; the `ETag` is the log position of its last event",
                    Some(object(json!({
                        "id": { "type": "string" },
                        "customer": { "type": "string" },
                        "status": { "type": "string" },
                        "lines": { "type": "array" },
                        "total": money(),
                        "version": { "type": "integer" },
                        "position": { "type": "integer" },
                        "timeline": { "type": "array" }
                    }))),
                ),
                not_modified(),
            ],
            errors: vec![400, 401, 404, 503],
        },
        Op {
            method: "get",
            path: "/api/v1/orders/{id}/invoice",
            id: "get_invoice",
            tag: "orders",
            summary: "The order's invoice, once it has a number, as JSON or as a PDF.",
            access: Access::User,
            params: vec![path("id"), min_position(), query("format", json!({ "type": "string", "enum": ["json", "pdf"] }))],
            body: None,
            ok: vec![(200, "The invoice: application/json, or application/pdf for `?format=pdf` or `Accept: application/pdf`", None)],
            errors: vec![400, 401, 404, 503],
        },
        Op {
            method: "get",
            path: "/api/v1/orders/{id}/events",
            id: "stream_order_events",
            tag: "orders",
            summary: "The order's timeline as Server-Sent Events, then each new entry as it happens.",
            access: Access::User,
            params: vec![
                path("id"),
                header(
                    "Last-Event-ID",
                    "The log position of the last event received; only later entries are sent.",
                    json!({ "type": "string" }),
                ),
            ],
            body: None,
            ok: vec![(200, "A text/event-stream: `event: status`, `id:` the log position, `data:` the timeline entry as JSON", None)],
            errors: vec![401, 404],
        },
        Op {
            method: "get",
            path: "/api/v1/admin/orders",
            id: "list_orders",
            tag: "orders",
            summary: "The tenant's orders, newest first, filtered, a page at a time.",
            access: Access::Admin,
            params: vec![
                min_position(),
                query("status", json!({ "type": "string" })),
                query("customer", json!({ "type": "string" })),
                query("from", json!({ "type": "string" })),
                query("to", json!({ "type": "string" })),
                query("limit", json!({ "type": "integer" })),
                query("cursor", json!({ "type": "string" })),
            ],
            body: None,
            ok: vec![(200, "A page of orders; pass `next_cursor` as `cursor` for the next", Some(page()))],
            errors: vec![400, 401, 403, 422, 503],
        },
        Op {
            method: "get",
            path: "/api/v1/admin/orders/{id}/saga",
            id: "get_order_saga",
            tag: "orders",
            summary: "Where the order saga stands with an order.",
            access: Access::Admin,
            params: vec![path("id")],
            body: None,
            ok: vec![(
                200,
                "The saga's step, next deadline, attempts and last error",
                Some(object(json!({
                    "order_id": { "type": "string" },
                    "step": { "type": "string" },
                    "due_at_ms": { "type": ["integer", "null"] },
                    "attempts": { "type": "integer" },
                    "last_error": { "type": ["string", "null"] },
                    "updated_at_ms": { "type": "integer" }
                }))),
            )],
            errors: vec![401, 403, 404],
        },
        // --- payments ---
        Op {
            method: "post",
            path: "/api/v1/payments/{id}/refunds",
            id: "refund_payment",
            tag: "payments",
            summary: "Refund an amount of a captured payment (the payment id is the order id).",
            access: Access::Admin,
            params: vec![path("id"), idempotency_key()],
            body: Some(strict(&["amount"], json!({ "amount": price_body() }))),
            ok: vec![(202, "Refund requested: the payment's id, version and log position", Some(accepted()))],
            errors: vec![400, 401, 403, 404, 409, 415, 422, 503],
        },
        Op {
            method: "get",
            path: "/api/v1/payments/{id}",
            id: "get_payment",
            tag: "payments",
            summary: "The payment of one of the caller's orders (same id), once it has been asked for.",
            access: Access::User,
            params: vec![path("id"), min_position(), if_none_match()],
            body: None,
            ok: vec![
                (
                    200,
                    "The payment; the `ETag` is the log position of the order's last event",
                    Some(object(json!({
                        "id": { "type": "string" },
                        "order_id": { "type": "string" },
                        "status": { "type": "string" },
                        "amount": money(),
                        "refunded": money(),
                        "method": { "type": "string" },
                        "updated_at": { "type": "string" }
                    }))),
                ),
                not_modified(),
            ],
            errors: vec![400, 401, 404, 503],
        },
        // --- webhooks (notifier) ---
        Op {
            method: "post",
            path: "/api/v1/admin/webhooks",
            id: "register_webhook",
            tag: "webhooks",
            summary: "Register a webhook endpoint for some event types.",
            access: Access::Admin,
            params: vec![],
            body: Some(strict(
                &["url", "event_types"],
                json!({ "url": { "type": "string" }, "event_types": { "type": "array", "items": { "type": "string" } } }),
            )),
            ok: vec![(201, "The endpoint with its signing secret (shown only here and at rotation)", Some(endpoint()))],
            errors: vec![400, 401, 403, 415, 422],
        },
        Op {
            method: "get",
            path: "/api/v1/admin/webhooks",
            id: "list_webhooks",
            tag: "webhooks",
            summary: "The tenant's webhook endpoints.",
            access: Access::Admin,
            params: vec![],
            body: None,
            ok: vec![(200, "The endpoints, without their secrets", Some(json!({ "type": "array", "items": endpoint() })))],
            errors: vec![401, 403],
        },
        Op {
            method: "delete",
            path: "/api/v1/admin/webhooks/{id}",
            id: "delete_webhook",
            tag: "webhooks",
            summary: "Delete a webhook endpoint.",
            access: Access::Admin,
            params: vec![path("id")],
            body: None,
            ok: vec![(204, "Deleted", None)],
            errors: vec![401, 403, 404],
        },
        Op {
            method: "post",
            path: "/api/v1/admin/webhooks/{id}/rotate-secret",
            id: "rotate_webhook_secret",
            tag: "webhooks",
            summary: "Give a webhook endpoint a new signing secret.",
            access: Access::Admin,
            params: vec![path("id")],
            body: None,
            ok: vec![(
                200,
                "The endpoint's id and its new secret",
                Some(object(json!({ "id": { "type": "string" }, "secret": { "type": "string" } }))),
            )],
            errors: vec![401, 403, 404],
        },
        Op {
            method: "get",
            path: "/api/v1/admin/webhooks/{id}/deliveries",
            id: "list_webhook_deliveries",
            tag: "webhooks",
            summary: "The last deliveries to a webhook endpoint, newest first.",
            access: Access::Admin,
            params: vec![path("id")],
            body: None,
            ok: vec![(
                200,
                "At most 100 deliveries",
                Some(array_of(json!({
                    "id": { "type": "string" },
                    "event_id": { "type": "string" },
                    "event_type": { "type": "string" },
                    "status": { "type": "string" },
                    "attempts": { "type": "integer" },
                    "last_error": { "type": ["string", "null"] },
                    "next_attempt_ms": { "type": ["integer", "null"] }
                }))),
            )],
            errors: vec![401, 403, 404],
        },
        Op {
            method: "post",
            path: "/api/v1/admin/webhooks/{id}/deliveries/{delivery}/redeliver",
            id: "redeliver_webhook",
            tag: "webhooks",
            summary: "Send a webhook delivery again.",
            access: Access::Admin,
            params: vec![path("id"), path("delivery")],
            body: None,
            ok: vec![(202, "Queued for delivery again", None)],
            errors: vec![401, 403, 404],
        },
        // --- admin ---
        Op {
            method: "get",
            path: "/api/v1/admin/mail",
            id: "list_mail",
            tag: "admin",
            summary: "The tenant's last 100 e-mail deliveries.",
            access: Access::Admin,
            params: vec![],
            body: None,
            ok: vec![(
                200,
                "E-mail deliveries, newest first (`sending` after a crash: the message may not have gone out)",
                Some(array_of(json!({
                    "id": { "type": "string" },
                    "recipient": { "type": "string" },
                    "template": { "type": "string" },
                    "status": { "type": "string" },
                    "attempts": { "type": "integer" },
                    "last_error": { "type": ["string", "null"] }
                }))),
            )],
            errors: vec![401, 403],
        },
        Op {
            method: "get",
            path: "/api/v1/admin/analytics/sales",
            id: "get_sales",
            tag: "admin",
            summary: "Sales figures for orders placed from one day to another (at most 366 days).",
            access: Access::Admin,
            params: vec![min_position(), query("from", json!({ "type": "string" })), query("to", json!({ "type": "string" }))],
            body: None,
            ok: vec![(
                200,
                "Revenue by day, orders by status and the top products",
                Some(object(json!({
                    "from": { "type": "string" },
                    "to": { "type": "string" },
                    "revenue_by_day": { "type": "array" },
                    "orders_by_status": { "type": "object", "additionalProperties": { "type": "integer" } },
                    "top_products": { "type": "array" }
                }))),
            )],
            errors: vec![400, 401, 403, 422, 503],
        },
        Op {
            method: "get",
            path: "/api/v1/admin/projections",
            id: "list_projections",
            tag: "admin",
            summary: "Every projection's progress and lag.",
            access: Access::Admin,
            params: vec![],
            body: None,
            ok: vec![(
                200,
                "One entry per projection",
                Some(array_of(json!({
                    "name": { "type": "string" },
                    "position": { "type": "integer" },
                    "transaction_id": { "type": "integer" },
                    "events": { "type": "integer" },
                    "lag_events": { "type": "integer" },
                    "lag_ms": { "type": ["integer", "null"] },
                    "source": { "type": "string" },
                    "state": { "type": "string" },
                    "last_error": { "type": ["string", "null"] }
                }))),
            )],
            errors: vec![401, 403],
        },
        Op {
            method: "get",
            path: "/api/v1/admin/dead-letters",
            id: "list_dead_letters",
            tag: "admin",
            summary: "Events the projections could not apply, for the tenant.",
            access: Access::Admin,
            params: vec![],
            body: None,
            ok: vec![(
                200,
                "The parked events",
                Some(array_of(json!({
                    "id": { "type": "string" },
                    "projection": { "type": "string" },
                    "aggregate_id": { "type": "string" },
                    "position": { "type": "integer" },
                    "error": { "type": "string" },
                    "parked_at_ms": { "type": "integer" }
                }))),
            )],
            errors: vec![401, 403],
        },
        Op {
            method: "post",
            path: "/api/v1/admin/dead-letters/{id}/retry",
            id: "retry_dead_letter",
            tag: "admin",
            summary: "Apply the parked events of a dead letter's aggregate again.",
            access: Access::Admin,
            params: vec![path("id")],
            body: None,
            ok: vec![(200, "Applied: how many events", Some(object(json!({ "applied": { "type": "integer" } }))))],
            errors: vec![401, 403, 404, 409],
        },
        // --- operations (root level) ---
        Op {
            method: "get",
            path: "/health",
            id: "health",
            tag: "operations",
            summary: "The process answers.",
            access: Access::Anyone,
            params: vec![],
            body: None,
            ok: vec![(200, "Alive", Some(object(json!({ "status": { "type": "string" } }))))],
            errors: vec![],
        },
        Op {
            method: "get",
            path: "/ready",
            id: "ready",
            tag: "operations",
            summary: "The store and every dependency the role needs answer.",
            access: Access::Anyone,
            params: vec![],
            body: None,
            ok: vec![(
                200,
                "Ready, with the state of each dependency",
                Some(object(
                    json!({ "status": { "type": "string" }, "store": { "type": "string" }, "dependencies": { "type": "object" } }),
                )),
            )],
            errors: vec![503],
        },
        Op {
            method: "get",
            path: "/metrics",
            id: "metrics",
            tag: "operations",
            summary: "Prometheus metrics of this process.",
            access: Access::Anyone,
            params: vec![],
            body: None,
            ok: vec![(200, "The metrics in the Prometheus text exposition format (text/plain; version=0.0.4)", None)],
            errors: vec![],
        },
        Op {
            method: "get",
            path: "/openapi.json",
            id: "openapi_document",
            tag: "operations",
            summary: "This OpenAPI 3.1 document.",
            access: Access::Anyone,
            params: vec![],
            body: None,
            ok: vec![(200, "The OpenAPI document", Some(json!({ "type": "object" })))],
            errors: vec![],
        },
        Op {
            method: "get",
            path: "/docs",
            id: "docs",
            tag: "operations",
            summary: "Interactive documentation of the API (Swagger UI).",
            access: Access::Anyone,
            params: vec![],
            body: None,
            ok: vec![(200, "An HTML page (text/html)", None)],
            errors: vec![],
        },
    ]
}
