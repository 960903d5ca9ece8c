use std::collections::BTreeMap;
use std::sync::Arc;

use aide::axum::routing::get_with;
use aide::axum::ApiRouter;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use domain::{OrderId, TenantId, UserId};
use http_kit::{Admin, ApiError, AppQuery, AuthUser, ErrorCode, Problems, Versioned};
use projections::orders::{LINES_TABLE, NAME, TABLE, TIMELINE_TABLE};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row as _;

use crate::{decode_cursor, encode_cursor, page_size, EventStream, MinPosition, Money, Param, QueryState};

pub fn router() -> ApiRouter<QueryState> {
    use ErrorCode::NotFound;
    ApiRouter::new()
        .api_route(
            "/orders",
            get_with(mine, |op| op.describe("list_my_orders", "orders", "The caller's orders, newest first, a page at a time.")),
        )
        .api_route(
            "/orders/{id}",
            get_with(detail, |op| {
                op.describe("get_order", "orders", "One of the caller's orders (any order for an admin), with its timeline.")
                    .problems(&[NotFound])
            }),
        )
        .api_route(
            "/orders/{id}/invoice",
            get_with(invoice, |op| {
                op.describe("get_invoice", "orders", "The order's invoice, once it has a number, as JSON or as a PDF.")
                    .problems(&[NotFound])
            }),
        )
        .api_route(
            "/orders/{id}/events",
            get_with(live, |op| {
                op.describe(
                    "stream_order_events",
                    "orders",
                    "The order's timeline as Server-Sent Events, then each new entry as it happens.",
                )
                .problems(&[NotFound])
            }),
        )
        .api_route(
            "/payments/{id}",
            get_with(payment, |op| {
                op.describe("get_payment", "payments", "The payment of one of the caller's orders (same id), once it has been asked for.")
                    .problems(&[NotFound])
            }),
        )
        .api_route(
            "/admin/orders",
            get_with(admin_list, |op| {
                op.describe("list_orders", "orders", "The tenant's orders, newest first, filtered, a page at a time.")
            }),
        )
        .api_route(
            "/admin/analytics/sales",
            get_with(sales, |op| {
                op.describe("get_sales", "admin", "Sales figures for orders placed from one day to another (at most 366 days).")
            }),
        )
}

/// Every order status, as stored and as the `status` filter takes it.
const STATUSES: [&str; 7] = ["placed", "stock_reserved", "payment_authorised", "confirmed", "shipped", "delivered", "cancelled"];

/// Orders in these statuses count as sales.
const SOLD: &str = "('confirmed', 'shipped', 'delivered')";

const COLUMNS: &str = "order_id, customer, status, cancel_reason, currency, subtotal, tax, shipping, total, refunded, \
                       payment_method, payment_status, payment_amount, payment_refunded, invoice_number, invoiced_at_ms, carrier, \
                       tracking_number, shipping_address, lines, discount_code, discount, tax_rate_bp, placed_at_ms, updated_at_ms, \
                       version, position";

fn invalid(field: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidValue, detail).with("field", field)
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds.
fn rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms).single().map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)).unwrap_or_default()
}

/// A shipping address, as placed.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub(crate) struct Address {
    pub(crate) name: String,
    pub(crate) line1: String,
    /// A second line (flat, floor, c/o), when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) line2: Option<String>,
    pub(crate) city: String,
    /// State, province or county, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) region: Option<String>,
    pub(crate) postal_code: String,
    pub(crate) country: String,
}

/// An order line as stored.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct StoredLine {
    sku: String,
    quantity: i64,
    unit_price: Money,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub(crate) struct LineView {
    pub(crate) sku: String,
    /// The product's name at placement (absent for orders placed before names were kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    pub(crate) quantity: i64,
    pub(crate) unit_price: Money,
    /// Quantity times unit price.
    pub(crate) amount: Money,
}

/// A discount code and what it took off.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub(crate) struct DiscountView {
    pub(crate) code: String,
    pub(crate) amount: Money,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
struct Shipment {
    carrier: String,
    tracking_number: String,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct TimelineEntry {
    /// The event type; payment events are prefixed `payment_` (`payment_captured`).
    event: String,
    /// `order` or `payment`: the order's `payment_authorised` and the payment's
    /// `payment_authorised` are two entries.
    source: String,
    /// The order status after the event.
    status: String,
    detail: Value,
    at: String,
}

/// What the payment of an order adds to its row.
#[derive(Debug)]
struct PaymentFigures {
    status: Option<String>,
    amount: Option<i64>,
    refunded: i64,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
struct OrderView {
    id: String,
    customer: String,
    /// `placed`, `stock_reserved`, `payment_authorised`, `confirmed`, `shipped`, `delivered`
    /// or `cancelled`.
    status: String,
    /// Why a cancelled order was cancelled (`out_of_stock`, `payment_declined`, …).
    cancel_reason: Option<String>,
    lines: Vec<LineView>,
    subtotal: Money,
    /// The discount code redeemed for the order, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    discount: Option<DiscountView>,
    tax: Money,
    /// The tax rate applied, in basis points (absent for orders placed before it was kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    tax_rate_bp: Option<i64>,
    shipping: Money,
    total: Money,
    /// Given back so far.
    refunded: Money,
    payment_method: String,
    /// `requested`, `authorised`, `failed`, `captured`, `capture_failed` or `voided`; `null`
    /// until the payment is asked for.
    payment_status: Option<String>,
    invoice_number: Option<i64>,
    invoiced_at: Option<String>,
    shipping_address: Address,
    /// Set once shipped.
    shipment: Option<Shipment>,
    placed_at: String,
    updated_at: String,
    /// Sequence of the order's last event.
    version: i64,
    /// Global position of the last event, of the order or its payment, in this view; the `ETag`.
    position: i64,
    /// In log order; only on `GET /orders/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    timeline: Option<Vec<TimelineEntry>>,
    #[serde(skip)]
    placed_at_ms: i64,
    #[serde(skip)]
    invoiced_at_ms: Option<i64>,
    #[serde(skip)]
    payment: PaymentFigures,
}

/// A column that holds JSON text, as `T`.
fn json_column<T: serde::de::DeserializeOwned>(r: &AnyRow, column: &str) -> Result<T, sqlx::Error> {
    serde_json::from_str(&r.try_get::<String, _>(column)?).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

impl TryFrom<AnyRow> for OrderView {
    type Error = sqlx::Error;

    fn try_from(r: AnyRow) -> Result<Self, Self::Error> {
        let currency: String = r.try_get("currency")?;
        let money = |column: &str| -> Result<Money, sqlx::Error> { Ok(Money { amount: r.try_get(column)?, currency: currency.clone() }) };
        let lines: Vec<StoredLine> = json_column(&r, "lines")?;
        let carrier: Option<String> = r.try_get("carrier")?;
        let tracking_number: Option<String> = r.try_get("tracking_number")?;
        let invoiced_at_ms: Option<i64> = r.try_get("invoiced_at_ms")?;
        let placed_at_ms: i64 = r.try_get("placed_at_ms")?;
        let payment_status: Option<String> = r.try_get("payment_status")?;
        Ok(Self {
            id: r.try_get("order_id")?,
            customer: r.try_get("customer")?,
            status: r.try_get("status")?,
            cancel_reason: r.try_get("cancel_reason")?,
            lines: lines
                .into_iter()
                .map(|l| LineView {
                    amount: Money { amount: l.unit_price.amount.saturating_mul(l.quantity), currency: l.unit_price.currency.clone() },
                    sku: l.sku,
                    name: l.name,
                    quantity: l.quantity,
                    unit_price: l.unit_price,
                })
                .collect(),
            subtotal: money("subtotal")?,
            discount: r
                .try_get::<Option<String>, _>("discount_code")?
                .map(|code| -> Result<DiscountView, sqlx::Error> { Ok(DiscountView { code, amount: money("discount")? }) })
                .transpose()?,
            tax: money("tax")?,
            tax_rate_bp: r.try_get("tax_rate_bp")?,
            shipping: money("shipping")?,
            total: money("total")?,
            refunded: money("refunded")?,
            payment_method: r.try_get("payment_method")?,
            payment_status: payment_status.clone(),
            invoice_number: r.try_get("invoice_number")?,
            invoiced_at: invoiced_at_ms.map(rfc3339),
            shipping_address: json_column(&r, "shipping_address")?,
            shipment: carrier.zip(tracking_number).map(|(carrier, tracking_number)| Shipment { carrier, tracking_number }),
            placed_at: rfc3339(placed_at_ms),
            updated_at: rfc3339(r.try_get("updated_at_ms")?),
            version: r.try_get("version")?,
            position: r.try_get("position")?,
            timeline: None,
            placed_at_ms,
            invoiced_at_ms,
            payment: PaymentFigures {
                status: payment_status,
                amount: r.try_get("payment_amount")?,
                refunded: r.try_get("payment_refunded")?,
            },
        })
    }
}

/// Order `id` of `user`'s tenant, if `user` may see it: their own, or any for an admin.
/// Anything else is a 404 naming `what`, as for an order that does not exist, so that ids
/// cannot be probed.
async fn visible(state: &QueryState, user: &AuthUser, id: &str, what: &str) -> Result<OrderView, ApiError> {
    let not_found = || ApiError::not_found(what);
    let id: OrderId = id.parse().map_err(|_| not_found())?;
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM {TABLE} WHERE tenant = $1 AND order_id = $2"))
        .bind(user.tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(state.pool())
        .await
        .map_err(crate::db_error)?;
    let view = row.map(OrderView::try_from).transpose().map_err(crate::db_error)?.ok_or_else(not_found)?;
    if user.is_admin() || view.customer == user.user_id.to_string() {
        Ok(view)
    } else {
        Err(not_found())
    }
}

/// Which orders a listing shows, beyond the tenant.
#[derive(Debug, Default, PartialEq)]
struct Filters {
    status: Option<&'static str>,
    customer: Option<UserId>,
    /// Placed at or after (ms).
    placed_from: Option<i64>,
    /// Placed before (ms).
    placed_before: Option<i64>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "OrderListQuery")]
struct ListQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct AdminListQuery {
    status: Option<String>,
    customer: Option<String>,
    /// RFC 3339, or `YYYY-MM-DD` for the start of that day (UTC).
    from: Option<String>,
    /// RFC 3339, or `YYYY-MM-DD` for the whole of that day (UTC); inclusive.
    to: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// A day `YYYY-MM-DD` in field `field`.
fn day(field: &'static str, value: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| invalid(field, format!("{field} must be a date YYYY-MM-DD")))
}

/// The start of `day` (UTC) in ms.
fn day_start(day: NaiveDate) -> i64 {
    day.and_time(chrono::NaiveTime::MIN).and_utc().timestamp_millis()
}

/// A `from` or `to` bound on the placement time, in ms: an RFC 3339 instant, or a whole UTC
/// day. `to` is inclusive, so its bound is the first millisecond after it.
fn time_bound(field: &'static str, value: &str) -> Result<i64, ApiError> {
    let to = field == "to";
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.timestamp_millis() + i64::from(to));
    }
    let day = NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map_err(|_| invalid(field, format!("{field} must be an RFC 3339 time or a date YYYY-MM-DD")))?;
    Ok(if to { day_start(day) + 86_400_000 } else { day_start(day) })
}

impl TryFrom<&AdminListQuery> for Filters {
    type Error = ApiError;

    fn try_from(q: &AdminListQuery) -> Result<Self, Self::Error> {
        let status = match q.status.as_deref() {
            None => None,
            Some(s) => Some(
                STATUSES
                    .iter()
                    .find(|known| **known == s)
                    .copied()
                    .ok_or_else(|| invalid("status", format!("status must be one of: {}", STATUSES.join(", "))))?,
            ),
        };
        let customer =
            q.customer.as_deref().map(|c| c.parse().map_err(|_| invalid("customer", "customer must be a user id"))).transpose()?;
        let placed_from = q.from.as_deref().map(|v| time_bound("from", v)).transpose()?;
        let placed_before = q.to.as_deref().map(|v| time_bound("to", v)).transpose()?;
        if let (Some(from), Some(before)) = (placed_from, placed_before) {
            if from >= before {
                return Err(invalid("to", "to must not be before from"));
            }
        }
        Ok(Self { status, customer, placed_from, placed_before })
    }
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
#[schemars(rename = "OrderPage")]
struct Page {
    items: Vec<OrderView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    next_cursor: Option<String>,
}

/// A page of `tenant`'s orders that pass `filters`, newest first.
async fn page(
    state: &QueryState,
    tenant: &TenantId,
    filters: &Filters,
    limit: Option<i64>,
    cursor: Option<&str>,
) -> Result<Page, ApiError> {
    let limit = page_size(limit)?;
    let mut sql = format!("SELECT {COLUMNS} FROM {TABLE} WHERE tenant = $1");
    let mut params = vec![Param::Text(tenant.to_string())];
    let mut push = |sql: &mut String, clause: &str, p: Param| {
        params.push(p);
        sql.push_str(&clause.replace("$?", &format!("${}", params.len())));
    };
    if let Some(status) = filters.status {
        push(&mut sql, " AND status = $?", Param::Text(status.to_owned()));
    }
    if let Some(customer) = filters.customer {
        push(&mut sql, " AND customer = $?", Param::Text(customer.to_string()));
    }
    if let Some(from) = filters.placed_from {
        push(&mut sql, " AND placed_at_ms >= $?", Param::Int(from));
    }
    if let Some(before) = filters.placed_before {
        push(&mut sql, " AND placed_at_ms < $?", Param::Int(before));
    }
    if let Some(cursor) = cursor {
        let (key, id) = decode_cursor(cursor)?;
        let placed: i64 = key.parse().map_err(|_| invalid("cursor", "invalid cursor"))?;
        push(&mut sql, " AND (placed_at_ms < $?", Param::Int(placed));
        push(&mut sql, " OR (placed_at_ms = $?", Param::Int(placed));
        push(&mut sql, " AND order_id < $?))", Param::Text(id));
    }
    sql.push_str(&format!(" ORDER BY placed_at_ms DESC, order_id DESC LIMIT {}", limit + 1));
    let rows = crate::bound(&sql, params).fetch_all(state.pool()).await.map_err(crate::db_error)?;
    let mut items = rows.into_iter().map(OrderView::try_from).collect::<Result<Vec<_>, _>>().map_err(crate::db_error)?;
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|o| encode_cursor(&o.placed_at_ms.to_string(), &o.id))
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

/// The caller's own orders, newest first.
async fn mine(
    State(state): State<QueryState>,
    user: AuthUser,
    min: MinPosition,
    AppQuery(q): AppQuery<ListQuery>,
) -> Result<Json<Page>, ApiError> {
    state.consistent(NAME, min).await?;
    let filters = Filters { customer: Some(user.user_id), ..Filters::default() };
    Ok(Json(page(&state, &user.tenant, &filters, q.limit, q.cursor.as_deref()).await?))
}

/// The tenant's orders, newest first, filtered.
async fn admin_list(
    State(state): State<QueryState>,
    Admin(admin): Admin,
    min: MinPosition,
    AppQuery(q): AppQuery<AdminListQuery>,
) -> Result<Json<Page>, ApiError> {
    let filters = Filters::try_from(&q)?;
    state.consistent(NAME, min).await?;
    Ok(Json(page(&state, &admin.tenant, &filters, q.limit, q.cursor.as_deref()).await?))
}

/// One order with its timeline; the `ETag` is the position of its last event.
async fn detail(
    State(state): State<QueryState>,
    user: AuthUser,
    min: MinPosition,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Versioned<OrderView>, ApiError> {
    state.consistent(NAME, min).await?;
    let mut view = visible(&state, &user, &id, "order").await?;
    let timeline = timeline_after(&state, &user.tenant, &view.id, -1).await?;
    view.timeline = Some(timeline.into_iter().map(|(_, entry)| entry).collect());
    Ok(Versioned::new(&headers, view.position, view))
}

/// The order's timeline entries after log position `after`, with their positions, in order.
async fn timeline_after(state: &QueryState, tenant: &TenantId, order_id: &str, after: i64) -> Result<Vec<(i64, TimelineEntry)>, ApiError> {
    let rows = sqlx::query(&format!(
        "SELECT position, source, event, status, detail, at_ms FROM {TIMELINE_TABLE} \
         WHERE tenant = $1 AND order_id = $2 AND position > $3 ORDER BY position"
    ))
    .bind(tenant.to_string())
    .bind(order_id)
    .bind(after)
    .fetch_all(state.pool())
    .await
    .map_err(crate::db_error)?;
    rows.iter().map(timeline_entry).collect::<Result<Vec<_>, sqlx::Error>>().map_err(crate::db_error)
}

/// (position, entry) of a timeline row (`position, source, event, status, detail, at_ms`).
pub(crate) fn timeline_entry(r: &AnyRow) -> Result<(i64, TimelineEntry), sqlx::Error> {
    let entry = TimelineEntry {
        source: r.try_get("source")?,
        event: r.try_get("event")?,
        status: r.try_get("status")?,
        detail: json_column(r, "detail")?,
        at: rfc3339(r.try_get("at_ms")?),
    };
    Ok((r.try_get("position")?, entry))
}

/// After an order's final entry (`delivered` or `cancelled`), its stream stays open this long
/// for the entries that follow at once (stock released, a refund asked for), then ends.
const FINAL_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// What a live stream carries between polls.
struct LiveStream {
    state: QueryState,
    tenant: TenantId,
    order: String,
    key: Arc<str>,
    last: i64,
    queue: std::collections::VecDeque<axum::response::sse::Event>,
    changes: tokio::sync::broadcast::Receiver<Arc<str>>,
    /// The token's expiry, or shortly after the order's final entry.
    ends: tokio::time::Instant,
    _permit: crate::live::StreamPermit,
}

impl LiveStream {
    /// Waits for a signal for this order, the safety poll or the end; false at the end.
    async fn wait(&mut self) -> bool {
        let deadline = tokio::time::sleep_until(self.ends);
        let safety = tokio::time::sleep(crate::live::SAFETY_POLL);
        tokio::pin!(deadline, safety);
        loop {
            tokio::select! {
                _ = &mut deadline => return false,
                _ = &mut safety => return true,
                change = self.changes.recv() => match change {
                    Ok(key) if key == self.key => return true,
                    Ok(_) => {}
                    // Missed signals: look, to be sure.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return true,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return false,
                },
            }
        }
    }
}

/// `GET /orders/{id}/events`: the order's timeline as Server-Sent Events (`event: status`,
/// `id:` the log position, `data:` the entry), then each new entry as it happens. A client
/// that reconnects with `Last-Event-ID` gets only what came after it. Same visibility as the
/// order; with `X-Min-Position` (the placing command's position) it opens once the order is in
/// the view, like every read. The stream ends shortly after the order's final entry or when
/// the access token expires; a user has at most a few streams open (429 beyond), and new
/// entries reach every stream of the process from one feed ([`crate::live`]).
async fn live(
    State(state): State<QueryState>,
    user: AuthUser,
    min: MinPosition,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<EventStream<impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>> + Send + 'static>, ApiError>
{
    use axum::response::sse::{Event, KeepAlive, Sse};
    // A client that just placed the order follows it from the placing command's position.
    state.consistent(NAME, min).await?;
    let view = visible(&state, &user, &id, "order").await?;
    let permit = state
        .live
        .open(user.user_id)
        .ok_or_else(|| ApiError::new(ErrorCode::RateLimited, "too many open event streams; close one or wait").retry_after(5))?;
    let last: i64 = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok()).unwrap_or(-1);
    let left = (user.expires_at - chrono::Utc::now().timestamp()).max(0) as u64;
    let stream = LiveStream {
        // Subscribed before the first read: nothing written after it goes unsignalled.
        changes: state.live.subscribe(),
        key: Arc::from(format!("{}/{}", user.tenant, view.id)),
        state,
        tenant: user.tenant,
        order: view.id,
        last,
        queue: Default::default(),
        ends: tokio::time::Instant::now() + std::time::Duration::from_secs(left),
        _permit: permit,
    };
    let events = futures::stream::unfold(stream, |mut s| async move {
        loop {
            if let Some(event) = s.queue.pop_front() {
                return Some((Ok(event), s));
            }
            match timeline_after(&s.state, &s.tenant, &s.order, s.last).await {
                Ok(entries) if !entries.is_empty() => {
                    for (position, entry) in entries {
                        s.last = position;
                        if matches!(entry.status.as_str(), "delivered" | "cancelled") {
                            s.ends = s.ends.min(tokio::time::Instant::now() + FINAL_GRACE);
                        }
                        let data = serde_json::to_string(&entry).unwrap_or_default();
                        s.queue.push_back(Event::default().event("status").id(position.to_string()).data(data));
                    }
                }
                Ok(_) => {
                    if !s.wait().await {
                        return None;
                    }
                }
                Err(_) => {
                    tracing::warn!(order = %s.order, "live order stream could not read the timeline; ending it");
                    return None;
                }
            }
        }
    });
    Ok(EventStream(Sse::new(events).keep_alive(KeepAlive::default())))
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
struct PaymentView {
    /// The payment id, which is the order id.
    id: String,
    order_id: String,
    /// `requested`, `authorised`, `failed`, `captured`, `capture_failed` or `voided`.
    status: String,
    /// Asked to be authorised.
    amount: Money,
    /// Paid back by the gateway so far.
    refunded: Money,
    method: String,
    updated_at: String,
}

/// The payment of an order (same id), once it has been asked for.
async fn payment(
    State(state): State<QueryState>,
    user: AuthUser,
    min: MinPosition,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Versioned<PaymentView>, ApiError> {
    state.consistent(NAME, min).await?;
    let order = visible(&state, &user, &id, "payment").await?;
    let (Some(status), Some(amount)) = (order.payment.status, order.payment.amount) else {
        return Err(ApiError::not_found("payment"));
    };
    let currency = order.total.currency;
    let view = PaymentView {
        id: order.id.clone(),
        order_id: order.id,
        status,
        amount: Money { amount, currency: currency.clone() },
        refunded: Money { amount: order.payment.refunded, currency },
        method: order.payment_method,
        updated_at: order.updated_at,
    };
    Ok(Versioned::new(&headers, order.position, view))
}

/// An order's invoice, as JSON or rendered as a PDF.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct Invoice {
    pub(crate) number: i64,
    pub(crate) order_id: String,
    pub(crate) issued_at: String,
    /// The seller, from the tenant's settings (its legal name, address and VAT id); the tenant
    /// id alone while the tenant has none.
    pub(crate) seller: Seller,
    pub(crate) customer: String,
    pub(crate) bill_to: Address,
    pub(crate) lines: Vec<LineView>,
    pub(crate) subtotal: Money,
    pub(crate) discount: Option<DiscountView>,
    pub(crate) tax: Money,
    /// The tax rate applied, in basis points.
    pub(crate) tax_rate_bp: Option<i64>,
    pub(crate) shipping: Money,
    pub(crate) total: Money,
    /// Given back so far.
    pub(crate) refunded: Money,
}

/// Who sells, as an invoice names them.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct Seller {
    pub(crate) name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) address: Option<SellerAddress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) vat_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub(crate) struct SellerAddress {
    pub(crate) line1: String,
    pub(crate) city: String,
    pub(crate) postal_code: String,
    pub(crate) country: String,
}

/// The seller of `tenant` from its settings (the tenant id while it has none).
async fn seller(state: &QueryState, tenant: &TenantId) -> Result<Seller, ApiError> {
    let row = sqlx::query("SELECT legal_name, address, vat_id FROM rm_settings WHERE tenant = $1")
        .bind(tenant.to_string())
        .fetch_optional(state.pool())
        .await
        .map_err(crate::db_error)?;
    let Some(row) = row else {
        return Ok(Seller { name: tenant.to_string(), address: None, vat_id: None });
    };
    let address: SellerAddress = json_column(&row, "address").map_err(crate::db_error)?;
    Ok(Seller { name: row.try_get(0).map_err(crate::db_error)?, address: Some(address), vat_id: row.try_get(2).map_err(crate::db_error)? })
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Format {
    Json,
    Pdf,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct InvoiceQuery {
    format: Option<Format>,
}

/// The order's invoice once it has a number (404 before): JSON, or a PDF for `?format=pdf`
/// or `Accept: application/pdf`.
async fn invoice(
    State(state): State<QueryState>,
    user: AuthUser,
    min: MinPosition,
    Path(id): Path<String>,
    AppQuery(q): AppQuery<InvoiceQuery>,
    headers: HeaderMap,
) -> Result<InvoiceAnswer, ApiError> {
    state.consistent(NAME, min).await?;
    let order = visible(&state, &user, &id, "invoice").await?;
    let (Some(number), Some(issued_ms)) = (order.invoice_number, order.invoiced_at_ms) else {
        return Err(ApiError::not_found("invoice"));
    };
    let invoice = Invoice {
        number,
        order_id: order.id,
        issued_at: rfc3339(issued_ms),
        seller: seller(&state, &user.tenant).await?,
        customer: order.customer,
        bill_to: order.shipping_address,
        lines: order.lines,
        subtotal: order.subtotal,
        discount: order.discount,
        tax: order.tax,
        tax_rate_bp: order.tax_rate_bp,
        shipping: order.shipping,
        total: order.total,
        refunded: order.refunded,
    };
    let accepts_pdf = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("application/pdf"));
    if q.format.map_or(accepts_pdf, |f| f == Format::Pdf) {
        return Ok(InvoiceAnswer::Pdf { number, bytes: crate::invoice_pdf::render(&invoice) });
    }
    Ok(InvoiceAnswer::Json(invoice))
}

/// An invoice as JSON, or rendered as a PDF.
enum InvoiceAnswer {
    Json(Invoice),
    Pdf { number: i64, bytes: Vec<u8> },
}

impl IntoResponse for InvoiceAnswer {
    fn into_response(self) -> Response {
        match self {
            InvoiceAnswer::Json(invoice) => Json(invoice).into_response(),
            InvoiceAnswer::Pdf { number, bytes } => {
                let mut response = bytes.into_response();
                let headers = response.headers_mut();
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/pdf"));
                if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"invoice-{number}.pdf\"")) {
                    headers.insert(header::CONTENT_DISPOSITION, v);
                }
                response
            }
        }
    }
}

impl aide::OperationOutput for InvoiceAnswer {
    type Inner = Invoice;

    fn inferred_responses(
        ctx: &mut aide::generate::GenContext,
        operation: &mut aide::openapi::Operation,
    ) -> Vec<(Option<u16>, aide::openapi::Response)> {
        let Some(mut response) = <Json<Invoice> as aide::OperationOutput>::operation_response(ctx, operation) else { return Vec::new() };
        response.description = "The invoice as JSON, or as a PDF for `?format=pdf` or `Accept: application/pdf`".into();
        let pdf = serde_json::from_value(serde_json::json!({ "schema": { "type": "string", "contentMediaType": "application/pdf" } }))
            .expect("a well-formed media type object");
        response.content.insert("application/pdf".into(), pdf);
        vec![(Some(200), response)]
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct SalesQuery {
    from: Option<String>,
    to: Option<String>,
}

/// The longest range the sales figures cover, in days.
const MAX_SALES_DAYS: i64 = 366;

/// Days `from` to `to` (UTC, both included) as placement times in ms: `[start, end)`.
fn sales_range(q: &SalesQuery) -> Result<(NaiveDate, NaiveDate, i64, i64), ApiError> {
    let from = day("from", q.from.as_deref().ok_or_else(|| invalid("from", "from is required"))?)?;
    let to = day("to", q.to.as_deref().ok_or_else(|| invalid("to", "to is required"))?)?;
    let days = (to - from).num_days() + 1;
    if days < 1 {
        return Err(invalid("to", "to must not be before from"));
    }
    if days > MAX_SALES_DAYS {
        return Err(invalid("to", format!("the range must be at most {MAX_SALES_DAYS} days")));
    }
    Ok((from, to, day_start(from), day_start(to) + 86_400_000))
}

#[derive(Debug, Serialize, sqlx::FromRow, schemars::JsonSchema)]
struct DaySales {
    /// `YYYY-MM-DD`, UTC, of placement.
    day: String,
    currency: String,
    orders: i64,
    /// Totals less refunds, in minor units.
    revenue: i64,
}

#[derive(Debug, Serialize, sqlx::FromRow, schemars::JsonSchema)]
struct ProductSales {
    sku: String,
    currency: String,
    quantity: i64,
    /// Line amounts (before tax and shipping), in minor units.
    revenue: i64,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
struct Sales {
    from: String,
    to: String,
    /// Confirmed, shipped and delivered orders by day of placement.
    revenue_by_day: Vec<DaySales>,
    /// Orders placed in the range by current status; every status is present.
    orders_by_status: BTreeMap<String, i64>,
    /// The ten SKUs sold most by quantity in orders not cancelled.
    top_products: Vec<ProductSales>,
    /// Carts by day: opened, checked out and abandoned (expired) that day.
    carts_by_day: Vec<DayCarts>,
    /// Redemptions of each discount code in the range (cancelled orders gave theirs back).
    redemptions_by_code: Vec<CodeRedemptions>,
}

#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
struct DayCarts {
    /// `YYYY-MM-DD`, UTC.
    day: String,
    created: i64,
    checked_out: i64,
    abandoned: i64,
    /// Carts checked out per cart created that day, in basis points (0 without carts created).
    conversion_bp: i64,
}

#[derive(Debug, Serialize, sqlx::FromRow, schemars::JsonSchema)]
struct CodeRedemptions {
    code: String,
    currency: String,
    redemptions: i64,
    /// What the code took off, in minor units.
    discount: i64,
}

/// The rows of `sql`, which takes a tenant and a range of placement times `[start, end)` as
/// `$1`, `$2`, `$3`.
async fn in_range<T>(state: &QueryState, (tenant, start, end): &(String, i64, i64), sql: String) -> Result<Vec<T>, ApiError>
where
    T: for<'r> sqlx::FromRow<'r, AnyRow> + Send + Unpin,
{
    sqlx::query_as(&sql).bind(tenant.clone()).bind(*start).bind(*end).fetch_all(state.pool()).await.map_err(crate::db_error)
}

/// Sales figures of the admin's tenant for orders placed from `from` to `to`.
async fn sales(
    State(state): State<QueryState>,
    Admin(admin): Admin,
    min: MinPosition,
    AppQuery(q): AppQuery<SalesQuery>,
) -> Result<Json<Sales>, ApiError> {
    let (from, to, start, end) = sales_range(&q)?;
    state.consistent(NAME, min).await?;
    let range = (admin.tenant.to_string(), start, end);
    let revenue_by_day = in_range(
        &state,
        &range,
        format!(
            "SELECT placed_day AS day, currency, COUNT(*) AS orders, CAST(SUM(total - refunded) AS BIGINT) AS revenue FROM {TABLE} \
             WHERE tenant = $1 AND placed_at_ms >= $2 AND placed_at_ms < $3 AND status IN {SOLD} \
             GROUP BY placed_day, currency ORDER BY placed_day, currency"
        ),
    )
    .await?;
    let mut orders_by_status: BTreeMap<String, i64> = STATUSES.iter().map(|s| (s.to_string(), 0)).collect();
    let counts: Vec<(String, i64)> = in_range(
        &state,
        &range,
        format!("SELECT status, COUNT(*) FROM {TABLE} WHERE tenant = $1 AND placed_at_ms >= $2 AND placed_at_ms < $3 GROUP BY status"),
    )
    .await?;
    orders_by_status.extend(counts);
    let top_products = in_range(
        &state,
        &range,
        format!(
            "SELECT l.sku, o.currency, CAST(SUM(l.quantity) AS BIGINT) AS quantity, CAST(SUM(l.amount) AS BIGINT) AS revenue \
             FROM {TABLE} o JOIN {LINES_TABLE} l ON l.order_id = o.order_id AND l.tenant = o.tenant \
             WHERE o.tenant = $1 AND o.placed_at_ms >= $2 AND o.placed_at_ms < $3 AND o.status <> 'cancelled' \
             GROUP BY l.sku, o.currency ORDER BY 3 DESC, 1 LIMIT 10"
        ),
    )
    .await?;
    state.consistent("carts", min).await?;
    state.consistent("promotions", min).await?;
    let created: Vec<(String, i64)> = in_range(
        &state,
        &range,
        "SELECT created_day, COUNT(*) FROM rm_carts WHERE tenant = $1 AND created_at_ms >= $2 AND created_at_ms < $3 GROUP BY created_day"
            .to_owned(),
    )
    .await?;
    let closed: Vec<(String, String, i64)> = in_range(
        &state,
        &range,
        "SELECT closed_day, status, COUNT(*) FROM rm_carts WHERE tenant = $1 AND closed_at_ms >= $2 AND closed_at_ms < $3 \
         AND status IN ('checked_out', 'expired') GROUP BY closed_day, status"
            .to_owned(),
    )
    .await?;
    let mut days: BTreeMap<String, DayCarts> = BTreeMap::new();
    for (day, n) in created {
        days.entry(day.clone()).or_insert_with(|| DayCarts { day, ..DayCarts::default() }).created = n;
    }
    for (day, status, n) in closed {
        let entry = days.entry(day.clone()).or_insert_with(|| DayCarts { day, ..DayCarts::default() });
        if status == "checked_out" {
            entry.checked_out = n;
        } else {
            entry.abandoned = n;
        }
    }
    let carts_by_day = days
        .into_values()
        .map(|mut d| {
            d.conversion_bp = if d.created > 0 { d.checked_out * 10_000 / d.created } else { 0 };
            d
        })
        .collect();
    let redemptions_by_code = in_range(
        &state,
        &range,
        "SELECT code, currency, COUNT(*) AS redemptions, CAST(SUM(discount) AS BIGINT) AS discount FROM rm_promotions_redemptions \
         WHERE tenant = $1 AND at_ms >= $2 AND at_ms < $3 AND released = 0 GROUP BY code, currency ORDER BY code, currency"
            .to_owned(),
    )
    .await?;
    Ok(Json(Sales {
        from: from.to_string(),
        to: to.to_string(),
        revenue_by_day,
        orders_by_status,
        top_products,
        carts_by_day,
        redemptions_by_code,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin_query(pairs: &[(&str, &str)]) -> AdminListQuery {
        let mut q = AdminListQuery::default();
        for (key, value) in pairs {
            let value = Some(value.to_string());
            match *key {
                "status" => q.status = value,
                "customer" => q.customer = value,
                "from" => q.from = value,
                "to" => q.to = value,
                other => unreachable!("no filter {other}"),
            }
        }
        q
    }

    fn field(e: &ApiError) -> &str {
        e.extra.get("field").and_then(Value::as_str).unwrap_or_default()
    }

    #[test]
    fn admin_filters_parse_statuses_customers_and_days_or_instants() {
        let customer: UserId = "00000000-0000-0000-0000-000000000005".parse().expect("a user id");
        let q = admin_query(&[("status", "shipped"), ("customer", &customer.to_string()), ("from", "2026-03-01"), ("to", "2026-03-01")]);
        let day = day_start(NaiveDate::from_ymd_opt(2026, 3, 1).expect("a day"));
        assert_eq!(
            Filters::try_from(&q).expect("valid"),
            Filters { status: Some("shipped"), customer: Some(customer), placed_from: Some(day), placed_before: Some(day + 86_400_000) }
        );
        let q = admin_query(&[("from", "2026-03-01T10:00:00Z"), ("to", "2026-03-01T11:00:00+01:00")]);
        let filters = Filters::try_from(&q).expect("valid");
        assert_eq!(filters.placed_from, Some(day + 10 * 3_600_000));
        assert_eq!(filters.placed_before, Some(day + 10 * 3_600_000 + 1), "to is inclusive");
    }

    #[test]
    fn bad_admin_filters_name_their_field() {
        for (pairs, expected) in [
            (vec![("status", "lost")], "status"),
            (vec![("customer", "ada")], "customer"),
            (vec![("from", "yesterday")], "from"),
            (vec![("to", "2026-02-30")], "to"),
            (vec![("from", "2026-03-02"), ("to", "2026-03-01")], "to"),
        ] {
            let e = Filters::try_from(&admin_query(&pairs)).expect_err("invalid");
            assert_eq!((e.code, field(&e)), (ErrorCode::InvalidValue, expected), "{pairs:?}");
        }
        let e = Filters::try_from(&admin_query(&[("status", "lost")])).expect_err("invalid");
        assert!(e.detail.contains("stock_reserved"), "{}", e.detail);
    }

    #[test]
    fn sales_ranges_need_both_days_and_at_most_a_leap_year() {
        let q = |from: Option<&str>, to: Option<&str>| SalesQuery { from: from.map(Into::into), to: to.map(Into::into) };
        let (_, _, start, end) = sales_range(&q(Some("2024-01-01"), Some("2024-12-31"))).expect("366 days");
        assert_eq!(end - start, 366 * 86_400_000);
        for (query, expected) in [
            (q(None, Some("2024-01-01")), "from"),
            (q(Some("2024-01-01"), None), "to"),
            (q(Some("2024-01-01"), Some("2025-01-01")), "to"),
            (q(Some("2024-01-02"), Some("2024-01-01")), "to"),
            (q(Some("2024-01-01T00:00:00Z"), Some("2024-01-02")), "from"),
        ] {
            let e = sales_range(&query).expect_err("invalid");
            assert_eq!(field(&e), expected, "{query:?}");
        }
    }
}
