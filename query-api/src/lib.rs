//! The read side over HTTP: catalogue, categories, stock, users, orders and projection status,
//! served from the read models that `projections` keeps.
//!
//! Every query is scoped to the caller's tenant (from the token, or `X-Tenant` when
//! anonymous). `X-Min-Position: N` waits, up to a bound, until the read model a route uses has
//! processed the event at position `N` (the position a command returned); past the bound the
//! answer is a 503 `projection_behind`, never stale data presented as fresh.
//!
//! # Layout
//! - `products.rs`: `/products`, `/products/{id}`, `/products/search`, `/categories`.
//! - `stock.rs`: `/stock/{sku}`; `users.rs`: `/users/me`, `/admin/users`, `/admin/projections`,
//!   `/admin/dead-letters`.
//! - `orders.rs`: `/orders`, `/orders/{id}`, `/orders/{id}/invoice`, `/payments/{id}`,
//!   `/admin/orders`, `/admin/analytics/sales`; `invoice_pdf.rs`: the invoice as a PDF.
//! - `carts.rs`: `/admin/carts`, `/promotions` (admins).
//! - `history.rs`: `/admin/history/{type}/{id}` (events with who, why, when) and `…/state`
//!   (the state at a log position or a time), folded from the store.
//! - [`QueryState`] (this file): the read models and read-your-writes; paging and cursors.
//!
//! The extractors and the error type come from `http-kit`; every route is documented from its
//! handler's types (aide).

mod carts;
mod history;
mod invoice_pdf;
pub mod live;
mod orders;
mod products;
mod stock;
mod users;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use aide::axum::ApiRouter;
use axum::extract::FromRef;
use axum::response::{IntoResponse, Response};
use http_kit::{ApiError, ErrorCode, JwtKeys, MinPosition, Viewer};
use projections::ReadModels;
use serde::Serialize;

/// What query handlers use; cheap to clone.
#[derive(Clone)]
pub struct QueryState {
    /// The SQL read models, the product documents (Redis, or in process) and the search
    /// index (on this node's disk).
    pub read: ReadModels,
    pub jwt: JwtKeys,
    /// Longest wait for `X-Min-Position`.
    pub read_wait: Duration,
    /// The feed and limits of the live order streams.
    pub live: Arc<live::LiveFeed>,
}

impl FromRef<QueryState> for JwtKeys {
    fn from_ref(state: &QueryState) -> JwtKeys {
        state.jwt.clone()
    }
}

impl QueryState {
    fn pool(&self) -> &sqlx::AnyPool {
        &self.read.sql.db().pool
    }

    /// Read-your-writes: waits until `projection` has processed `min` (when asked).
    async fn consistent(&self, projection: &str, MinPosition(min): MinPosition) -> Result<(), ApiError> {
        let Some(position) = min else { return Ok(()) };
        // A position past the log's end was never handed out (a command answers only after its
        // commit): waiting could not help, so it is refused at once.
        let head = self.read.sql.store().head_position().await.map_err(ApiError::failure)?;
        if position > head {
            return Err(ApiError::new(ErrorCode::InvalidValue, format!("X-Min-Position {position} is beyond the end of the log"))
                .with("field", "X-Min-Position"));
        }
        let reached = self.read.wait_for(projection, position, self.read_wait).await.map_err(ApiError::failure)?;
        if reached {
            Ok(())
        } else {
            Err(ApiError::new(ErrorCode::ProjectionBehind, format!("the {projection} view has not reached position {position} yet; retry"))
                .retry_after(1))
        }
    }
}

/// The query API's routes (under `/api/v1`) and their documentation, ready to merge with the
/// command API.
pub fn router(state: QueryState) -> ApiRouter {
    let api = ApiRouter::new()
        .merge(products::router())
        .merge(stock::router())
        .merge(users::router())
        .merge(orders::router())
        .merge(carts::router())
        .merge(history::router())
        // A WebSocket (its protocol is in `ws`, not in the OpenAPI document).
        .route("/ws", axum::routing::get(ws::upgrade));
    ApiRouter::new().nest("/api/v1", api).with_state(state)
}

fn db_error(e: sqlx::Error) -> ApiError {
    ApiError::failure(e)
}

/// An amount in minor units of a currency, as every view shows money.
#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Money {
    amount: i64,
    currency: String,
}

/// A bind value of a query built at run time.
enum Param {
    Text(String),
    Int(i64),
}

/// `sql` with `params` bound in order.
fn bound(sql: &str, params: Vec<Param>) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
    params.into_iter().fold(sqlx::query(sql), |query, p| match p {
        Param::Text(s) => query.bind(s),
        Param::Int(n) => query.bind(n),
    })
}

/// A Server-Sent Events answer, documented as `text/event-stream`.
pub struct EventStream<S>(pub axum::response::sse::Sse<S>);

impl<S> IntoResponse for EventStream<S>
where
    S: futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>> + Send + 'static,
{
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

impl<S> aide::OperationOutput for EventStream<S> {
    type Inner = ();

    fn inferred_responses(
        _: &mut aide::generate::GenContext,
        _: &mut aide::openapi::Operation,
    ) -> Vec<(Option<u16>, aide::openapi::Response)> {
        let response = serde_json::from_value(serde_json::json!({
            "description": "`event: status`, `id:` the log position, `data:` a timeline entry; `Last-Event-ID` resumes after it",
            "content": { "text/event-stream": { "schema": { "type": "string" } } }
        }))
        .expect("a well-formed response object");
        vec![(Some(200), response)]
    }
}

/// An opaque keyset cursor: the last row's sort key and id.
fn encode_cursor(key: &str, id: &str) -> String {
    hex::encode(format!("{key}\u{1f}{id}"))
}

fn decode_cursor(cursor: &str) -> Result<(String, String), ApiError> {
    let bad = || ApiError::new(ErrorCode::InvalidValue, "invalid cursor").with("field", "cursor");
    let bytes = hex::decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (key, id) = text.split_once('\u{1f}').ok_or_else(bad)?;
    Ok((key.to_owned(), id.to_owned()))
}

/// `limit` within 1..=100, default 20.
fn page_size(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(20),
        Some(n) if (1..=100).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::new(ErrorCode::InvalidValue, "limit must be between 1 and 100").with("field", "limit")),
    }
}
