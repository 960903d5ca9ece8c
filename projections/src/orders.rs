//! Orders and their payments: one row per order (status, totals, payment status, invoice,
//! shipment), its lines for sales figures, and its timeline of events.
//!
//! The order and payment streams of an order may arrive in any order relative to each other
//! (a Kafka source has a topic per aggregate type); each stream's own order is kept. So:
//! - a payment event of an order not placed yet waits in `{table}_pending` and is folded, with
//!   the rest of the order's events in log order, in the batch that brings the placement;
//! - an event folded after a later one of the other stream (the row keeps each stream's state
//!   apart, so only the timeline notices) has the payment entries of its order restated with
//!   the order status of their moment;
//! - an event a stored row has folded before (published twice) is skipped.
//!
//! The log always has an order's placement before its payment, so fed from the log none of
//! this happens.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use async_trait::async_trait;
use chrono::{TimeZone as _, Utc};
use domain::order::{CancelReason, OrderEvent, OrderLine};
use domain::payment::PaymentEvent;
use domain::Money;
use serde_json::json;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Row as _, Transaction};
use store::{LogCursor, LogEvent};

use crate::projection::{rows_per_statement, values};
use crate::{split_stream_id, Projection, ProjectionError};

/// The projection's name: its checkpoint, and what read-your-writes waits on.
pub const NAME: &str = "orders";
/// The live table of orders.
pub const TABLE: &str = "rm_orders";
/// The live table of order lines (named after [`TABLE`]).
pub const LINES_TABLE: &str = "rm_orders_lines";
/// The live table of order timelines (named after [`TABLE`]).
pub const TIMELINE_TABLE: &str = "rm_orders_timeline";
/// PostgreSQL channel on which the live orders table signals the orders whose timeline
/// changed (`tenant/order_id`, one per line), in the writing transaction.
pub const TIMELINE_CHANNEL: &str = "shop_order_timeline";
/// The live table of payment events waiting for their order's placement (named after
/// [`TABLE`]).
pub const PENDING_TABLE: &str = "rm_orders_pending";

/// Orders with their payment, lines and timeline. Order and payment streams share a stream id
/// (the payment id is the order id), so both fold into the same row.
pub struct Orders;

fn lines_table(table: &str) -> String {
    format!("{table}_lines")
}

pub fn timeline_table(table: &str) -> String {
    format!("{table}_timeline")
}

fn pending_table(table: &str) -> String {
    format!("{table}_pending")
}

/// The order status an event leaves, `None` when it leaves the status as it was.
fn order_status(event: &OrderEvent) -> Option<&'static str> {
    Some(match event {
        OrderEvent::Placed { .. } => "placed",
        OrderEvent::StockReserved { .. } => "stock_reserved",
        OrderEvent::PaymentAuthorised { .. } => "payment_authorised",
        OrderEvent::Confirmed => "confirmed",
        OrderEvent::Shipped { .. } => "shipped",
        OrderEvent::Delivered => "delivered",
        OrderEvent::StockRejected { .. } | OrderEvent::PaymentFailed { .. } | OrderEvent::Cancelled { .. } => "cancelled",
        OrderEvent::Refunded { .. } | OrderEvent::Invoiced { .. } | OrderEvent::Restocked | OrderEvent::StockReleased => return None,
    })
}

/// The payment status an event leaves, `None` when it leaves the status as it was.
fn payment_status(event: &PaymentEvent) -> Option<&'static str> {
    Some(match event {
        PaymentEvent::AuthorisationRequested { .. } => "requested",
        PaymentEvent::Authorised { .. } => "authorised",
        PaymentEvent::Failed { .. } => "failed",
        PaymentEvent::Captured { .. } => "captured",
        PaymentEvent::CaptureFailed => "capture_failed",
        PaymentEvent::Voided => "voided",
        PaymentEvent::RefundRequested { .. } | PaymentEvent::Refunded { .. } => return None,
    })
}

/// A value's serde name (`out_of_stock`), as stored.
fn code(value: &impl serde::Serialize) -> Result<String, ProjectionError> {
    match serde_json::to_value(value)? {
        serde_json::Value::String(s) => Ok(s),
        other => Err(ProjectionError::Malformed(format!("expected a code, found {other}"))),
    }
}

/// The stored JSON of a money amount, as the API shows it.
fn money(m: &Money) -> serde_json::Value {
    json!({ "amount": m.amount, "currency": m.currency.as_str() })
}

/// One order row, whole: a batch loads the rows it changes that were placed before it, folds
/// its events into them and writes each once.
#[derive(Debug, Clone)]
struct OrderRow {
    customer: String,
    status: String,
    cancel_reason: Option<String>,
    currency: String,
    subtotal: i64,
    tax: i64,
    shipping: i64,
    total: i64,
    /// Given back so far, from the order's `refunded` events.
    refunded: i64,
    payment_method: String,
    payment_status: Option<String>,
    /// The amount the payment asked to authorise.
    payment_amount: Option<i64>,
    /// Refunds the gateway paid, from the payment's `refunded` events.
    payment_refunded: i64,
    invoice_number: Option<i64>,
    invoiced_at_ms: Option<i64>,
    carrier: Option<String>,
    tracking_number: Option<String>,
    /// JSON: `{name, line1, line2, city, region, postal_code, country}` (`line2`, `region` may be null).
    shipping_address: String,
    /// JSON: `[{sku, quantity, unit_price: {amount, currency}, name?}]`.
    lines: String,
    /// The discount code redeemed for the order, and what it took off.
    discount_code: Option<String>,
    discount: i64,
    /// The tax rate applied (basis points), when the order recorded it.
    tax_rate_bp: Option<i64>,
    placed_at_ms: i64,
    /// `YYYY-MM-DD` (UTC) of `placed_at_ms`: the same day buckets in both backends.
    placed_day: String,
    updated_at_ms: i64,
    /// Sequence of the last order event (payment events leave it).
    version: i64,
    /// Global position of the last event applied, order or payment.
    position: i64,
}

const COLUMNS: [&str; 29] = [
    "tenant",
    "order_id",
    "customer",
    "status",
    "cancel_reason",
    "currency",
    "subtotal",
    "tax",
    "shipping",
    "total",
    "refunded",
    "payment_method",
    "payment_status",
    "payment_amount",
    "payment_refunded",
    "invoice_number",
    "invoiced_at_ms",
    "carrier",
    "tracking_number",
    "shipping_address",
    "lines",
    "discount_code",
    "discount",
    "tax_rate_bp",
    "placed_at_ms",
    "placed_day",
    "updated_at_ms",
    "version",
    "position",
];

impl OrderRow {
    fn placed(e: &LogEvent, event: &OrderEvent) -> Result<Self, ProjectionError> {
        let OrderEvent::Placed {
            customer,
            lines,
            subtotal,
            tax,
            shipping,
            total,
            shipping_address,
            payment_method,
            discount,
            tax_rate_bp,
            ..
        } = event
        else {
            return Err(ProjectionError::Malformed("an order row starts with placed".into()));
        };
        Ok(Self {
            customer: customer.to_string(),
            status: "placed".into(),
            cancel_reason: None,
            currency: total.currency.to_string(),
            subtotal: subtotal.amount,
            tax: tax.amount,
            shipping: shipping.amount,
            total: total.amount,
            refunded: 0,
            // The token never leaves the payment context; the read model keeps what may be shown.
            payment_method: domain::payment::masked_method(payment_method),
            payment_status: None,
            payment_amount: None,
            payment_refunded: 0,
            invoice_number: None,
            invoiced_at_ms: None,
            carrier: None,
            tracking_number: None,
            shipping_address: serde_json::to_string(shipping_address)?,
            lines: serde_json::to_string(lines)?,
            discount_code: discount.as_ref().map(|d| d.code.to_string()),
            discount: discount.as_ref().map_or(0, |d| d.amount.amount),
            tax_rate_bp: tax_rate_bp.map(i64::from),
            placed_at_ms: e.recorded_at.timestamp_millis(),
            placed_day: e.recorded_at.format("%Y-%m-%d").to_string(),
            updated_at_ms: e.recorded_at.timestamp_millis(),
            version: e.sequence,
            position: e.cursor.position,
        })
    }

    fn from_row(r: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            customer: r.try_get("customer")?,
            status: r.try_get("status")?,
            cancel_reason: r.try_get("cancel_reason")?,
            currency: r.try_get("currency")?,
            subtotal: r.try_get("subtotal")?,
            tax: r.try_get("tax")?,
            shipping: r.try_get("shipping")?,
            total: r.try_get("total")?,
            refunded: r.try_get("refunded")?,
            payment_method: r.try_get("payment_method")?,
            payment_status: r.try_get("payment_status")?,
            payment_amount: r.try_get("payment_amount")?,
            payment_refunded: r.try_get("payment_refunded")?,
            invoice_number: r.try_get("invoice_number")?,
            invoiced_at_ms: r.try_get("invoiced_at_ms")?,
            carrier: r.try_get("carrier")?,
            tracking_number: r.try_get("tracking_number")?,
            shipping_address: r.try_get("shipping_address")?,
            lines: r.try_get("lines")?,
            discount_code: r.try_get("discount_code")?,
            discount: r.try_get("discount")?,
            tax_rate_bp: r.try_get("tax_rate_bp")?,
            placed_at_ms: r.try_get("placed_at_ms")?,
            placed_day: r.try_get("placed_day")?,
            updated_at_ms: r.try_get("updated_at_ms")?,
            version: r.try_get("version")?,
            position: r.try_get("position")?,
        })
    }

    /// Binds the row's values in [`COLUMNS`] order.
    fn bind<'q>(&self, query: Query<'q, Any, AnyArguments<'q>>, tenant: &str, order_id: &str) -> Query<'q, Any, AnyArguments<'q>> {
        query
            .bind(tenant.to_owned())
            .bind(order_id.to_owned())
            .bind(self.customer.clone())
            .bind(self.status.clone())
            .bind(self.cancel_reason.clone())
            .bind(self.currency.clone())
            .bind(self.subtotal)
            .bind(self.tax)
            .bind(self.shipping)
            .bind(self.total)
            .bind(self.refunded)
            .bind(self.payment_method.clone())
            .bind(self.payment_status.clone())
            .bind(self.payment_amount)
            .bind(self.payment_refunded)
            .bind(self.invoice_number)
            .bind(self.invoiced_at_ms)
            .bind(self.carrier.clone())
            .bind(self.tracking_number.clone())
            .bind(self.shipping_address.clone())
            .bind(self.lines.clone())
            .bind(self.discount_code.clone())
            .bind(self.discount)
            .bind(self.tax_rate_bp)
            .bind(self.placed_at_ms)
            .bind(self.placed_day.clone())
            .bind(self.updated_at_ms)
            .bind(self.version)
            .bind(self.position)
    }

    /// Folds an order event; returns the timeline entry's name and detail.
    fn apply_order(&mut self, e: &LogEvent, event: &OrderEvent) -> Result<serde_json::Value, ProjectionError> {
        let detail = match event {
            OrderEvent::Placed { total, .. } => json!({ "total": money(total) }),
            OrderEvent::StockRejected { sku } => {
                self.cancel_reason = Some(code(&CancelReason::OutOfStock)?);
                json!({ "reason": code(&CancelReason::OutOfStock)?, "sku": sku.to_string() })
            }
            OrderEvent::PaymentFailed { reason } | OrderEvent::Cancelled { reason } => {
                self.cancel_reason = Some(code(reason)?);
                json!({ "reason": code(reason)? })
            }
            OrderEvent::PaymentAuthorised { payment_id } => {
                json!({ "payment_id": payment_id.to_string() })
            }
            OrderEvent::Shipped { carrier, tracking_number } => {
                self.carrier = Some(carrier.to_string());
                self.tracking_number = Some(tracking_number.to_string());
                json!({ "carrier": carrier.to_string(), "tracking_number": tracking_number.to_string() })
            }
            OrderEvent::Refunded { amount, refunded_total } => {
                self.refunded = refunded_total.amount;
                json!({ "amount": money(amount), "refunded_total": money(refunded_total) })
            }
            OrderEvent::Invoiced { number } => {
                let number =
                    i64::try_from(*number).map_err(|_| ProjectionError::Malformed(format!("invoice number {number} too large")))?;
                self.invoice_number = Some(number);
                self.invoiced_at_ms = Some(e.recorded_at.timestamp_millis());
                json!({ "number": number })
            }
            OrderEvent::StockReserved { expires_at } => {
                json!({ "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true) })
            }
            OrderEvent::Confirmed | OrderEvent::Delivered | OrderEvent::Restocked | OrderEvent::StockReleased => json!({}),
        };
        if let Some(status) = order_status(event) {
            self.status = status.to_owned();
        }
        self.version = e.sequence;
        Ok(detail)
    }

    /// Folds a payment event; returns the timeline entry's detail.
    fn apply_payment(&mut self, event: &PaymentEvent) -> Result<serde_json::Value, ProjectionError> {
        let detail = match event {
            PaymentEvent::AuthorisationRequested { amount, method, .. } => {
                self.payment_amount = Some(amount.amount);
                json!({ "amount": money(amount), "method": domain::payment::masked_method(method) })
            }
            PaymentEvent::Authorised { reference } => json!({ "reference": reference }),
            PaymentEvent::Failed { reason } => json!({ "reason": code(reason)? }),
            PaymentEvent::Captured { amount } => json!({ "amount": money(amount) }),
            PaymentEvent::RefundRequested { refund_id, amount } => {
                json!({ "refund_id": refund_id, "amount": money(amount) })
            }
            PaymentEvent::Refunded { refund_id, amount, refunded_total } => {
                self.payment_refunded = refunded_total.amount;
                json!({ "refund_id": refund_id, "amount": money(amount), "refunded_total": money(refunded_total) })
            }
            PaymentEvent::CaptureFailed | PaymentEvent::Voided => json!({}),
        };
        if let Some(status) = payment_status(event) {
            self.payment_status = Some(status.to_owned());
        }
        Ok(detail)
    }
}

/// An event of either stream of an order.
enum Fact {
    Order(OrderEvent),
    Payment(PaymentEvent),
}

impl Fact {
    fn of(e: &LogEvent) -> Result<Self, ProjectionError> {
        Ok(if e.aggregate_type == "order" {
            Fact::Order(crate::projection::payload(e)?)
        } else {
            Fact::Payment(crate::projection::payload(e)?)
        })
    }

    fn is_placement(&self) -> bool {
        matches!(self, Fact::Order(OrderEvent::Placed { .. }))
    }
}

/// One timeline entry, as stored.
struct Step<'a> {
    tenant: &'a str,
    order_id: &'a str,
    position: i64,
    /// `order` or `payment`: the stream the event is from.
    source: &'static str,
    /// The event type, payment events prefixed `payment_`.
    event: String,
    /// The order status after the event.
    status: String,
    detail: String,
    at_ms: i64,
}

#[async_trait]
impl Projection for Orders {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Users too, for `user.erased`: the customer's orders lose their name and address.
    fn handles(&self, aggregate_type: &str) -> bool {
        aggregate_type == "order" || aggregate_type == "payment" || aggregate_type == "user"
    }

    fn table(&self) -> &'static str {
        TABLE
    }

    fn tables(&self, table: &str) -> Vec<String> {
        vec![table.to_owned(), lines_table(table), timeline_table(table), pending_table(table)]
    }

    async fn apply(&self, tx: &mut Transaction<'static, Any>, table: &str, events: &[&LogEvent]) -> Result<(), ProjectionError> {
        // Ordered keys: concurrent writers touch rows in the same order and cannot deadlock.
        let mut by_order: BTreeMap<(&str, &str), Vec<(&LogEvent, Fact)>> = BTreeMap::new();
        let mut erased = Vec::new();
        for e in events {
            if e.aggregate_type == "user" {
                if e.event_type == "erased" {
                    erased.push(split_stream_id(&e.aggregate_id)?);
                }
                continue;
            }
            by_order.entry(split_stream_id(&e.aggregate_id)?).or_default().push((*e, Fact::of(e)?));
        }
        let ids: Vec<&str> = by_order.keys().map(|(_, id)| *id).collect();
        let changed: Vec<String> = by_order.keys().map(|(tenant, id)| format!("{tenant}/{id}")).collect();
        let mut loaded = load(tx, table, &ids).await?;
        let mut stored: HashMap<(&str, &str), Stored> =
            by_order.keys().filter_map(|&(tenant, id)| Some(((tenant, id), loaded.remove(&(tenant.to_owned(), id.to_owned()))?))).collect();
        // Payment events that came before their order's placement, in earlier batches, fold
        // now that it is here.
        let placed_here: Vec<&str> = by_order
            .iter()
            .filter(|(key, facts)| !stored.contains_key(*key) && facts.iter().any(|(_, fact)| fact.is_placement()))
            .map(|((_, id), _)| *id)
            .collect();
        let waiting = load_pending(tx, table, &placed_here).await?;
        let mut drained = BTreeSet::new();
        for e in &waiting {
            let key = split_stream_id(&e.aggregate_id)?;
            drained.insert(key.1);
            by_order.entry(key).or_default().push((e, Fact::of(e)?));
        }
        // A payment event at or before the newest event a stored row has folded may be one of
        // them, published twice: the timeline tells. (An order event tells by its sequence.)
        let mut maybe_seen = Vec::new();
        for (key, facts) in &by_order {
            if let Some(Stored { newest, .. }) = stored.get(key) {
                let payments = facts.iter().filter(|(e, fact)| matches!(fact, Fact::Payment(_)) && e.cursor.position <= *newest);
                maybe_seen.extend(payments.map(|(e, _)| (key.1, e.cursor.position)));
            }
        }
        let seen = folded(tx, table, &maybe_seen).await?;

        let mut rows: Vec<((&str, &str), OrderRow)> = Vec::with_capacity(by_order.len());
        let mut steps = Vec::with_capacity(events.len());
        let mut lines = Vec::new();
        let mut pending = Vec::new();
        let mut reordered = Vec::new();
        for (key @ (tenant, order_id), mut facts) in by_order {
            // The placement first, then log order (the order of each stream is kept by every
            // source; between an order and its payment only the log order counts).
            facts.sort_by_key(|(e, fact)| (!fact.is_placement(), e.cursor));
            let mut positions = HashSet::new();
            facts.retain(|(e, _)| positions.insert(e.cursor.position));
            let (mut row, stored_version, mut newest) = match stored.remove(&key) {
                Some(Stored { row, newest }) => {
                    let version = row.version;
                    (row, Some(version), newest)
                }
                None => match facts.first() {
                    Some((e, Fact::Order(event @ OrderEvent::Placed { .. }))) => (OrderRow::placed(e, event)?, None, i64::MIN),
                    _ => {
                        // Not placed yet: payment events wait for their order, which no source
                        // can deliver after its own later events.
                        for (e, fact) in facts {
                            if let Fact::Order(_) = fact {
                                return Err(ProjectionError::Malformed(format!(
                                    "order event of order {order_id} before the order was placed"
                                )));
                            }
                            pending.push(e);
                        }
                        continue;
                    }
                },
            };
            for (e, fact) in &facts {
                let folded_before = match (fact, stored_version) {
                    (_, None) => false,
                    (Fact::Order(_), Some(version)) => e.sequence <= version,
                    (Fact::Payment(_), Some(_)) => seen.contains(&e.cursor.position),
                };
                if folded_before {
                    continue;
                }
                if e.cursor.position < newest && !reordered.contains(&order_id) {
                    reordered.push(order_id);
                }
                newest = newest.max(e.cursor.position);
                let (source, event, detail) = match fact {
                    Fact::Order(event) => ("order", e.event_type.clone(), row.apply_order(e, event)?),
                    Fact::Payment(event) => ("payment", format!("payment_{}", e.event_type), row.apply_payment(event)?),
                };
                if let Fact::Order(OrderEvent::Placed { lines: placed, .. }) = fact {
                    lines.extend(line_rows(key, placed)?);
                }
                row.position = e.cursor.position;
                row.updated_at_ms = e.recorded_at.timestamp_millis();
                steps.push(Step {
                    tenant,
                    order_id,
                    position: e.cursor.position,
                    source,
                    event,
                    status: row.status.clone(),
                    detail: detail.to_string(),
                    at_ms: e.recorded_at.timestamp_millis(),
                });
            }
            rows.push((key, row));
        }
        for chunk in rows.chunks(rows_per_statement(COLUMNS.len())) {
            let updates: Vec<String> = COLUMNS[2..].iter().map(|c| format!("{c} = excluded.{c}")).collect();
            let sql = format!(
                "INSERT INTO {table} ({}) VALUES {} ON CONFLICT (tenant, order_id) DO UPDATE SET {}",
                COLUMNS.join(", "),
                values(chunk.len(), COLUMNS.len()),
                updates.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for ((tenant, id), row) in chunk {
                query = row.bind(query, tenant, id);
            }
            query.execute(&mut **tx).await?;
        }
        write_lines(tx, &lines_table(table), &lines).await?;
        write_steps(tx, &timeline_table(table), &steps).await?;
        restate_payments(tx, &timeline_table(table), &reordered).await?;
        write_pending(tx, &pending_table(table), &pending).await?;
        drain_pending(tx, &pending_table(table), &drained.into_iter().collect::<Vec<_>>()).await?;
        erase_addresses(tx, table, &erased).await?;
        if table == TABLE {
            signal_timelines(tx, changed.into_iter()).await?;
        }
        Ok(())
    }
}

/// The shipping address of every order of these (erased) customers, as their events read now
/// the key is gone: the personal fields erased, the country kept (as a rebuild writes it).
async fn erase_addresses(tx: &mut Transaction<'static, Any>, table: &str, customers: &[(&str, &str)]) -> Result<(), ProjectionError> {
    let Some(personal) = domain::personal::of("order", "placed") else { return Ok(()) };
    for (tenant, customer) in customers {
        let rows = sqlx::query(&format!("SELECT order_id, shipping_address FROM {table} WHERE tenant = $1 AND customer = $2"))
            .bind(*tenant)
            .bind(*customer)
            .fetch_all(&mut **tx)
            .await?;
        for r in rows {
            let (order_id, address): (String, String) = (r.try_get(0)?, r.try_get(1)?);
            let mut address: serde_json::Value = serde_json::from_str(&address)?;
            if let serde_json::Value::Object(fields) = &mut address {
                for (name, value) in fields.iter_mut() {
                    if let Some(field) = personal.field_in_data(&format!("/shipping_address/{name}")) {
                        *value = (field.erased)();
                    }
                }
            }
            sqlx::query(&format!("UPDATE {table} SET shipping_address = $1 WHERE tenant = $2 AND order_id = $3"))
                .bind(address.to_string())
                .bind(*tenant)
                .bind(order_id)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

/// Tells the live order streams of every process which orders changed: `NOTIFY` on PostgreSQL,
/// delivered when the transaction commits (SQLite has one process, whose feed polls instead).
async fn signal_timelines(tx: &mut Transaction<'static, Any>, keys: impl Iterator<Item = String>) -> Result<(), ProjectionError> {
    if (**tx).backend_name() != "PostgreSQL" {
        return Ok(());
    }
    // A notification's payload holds less than 8,000 bytes.
    let mut payload = String::new();
    for key in keys.chain(std::iter::once(String::new())) {
        if !payload.is_empty() && (key.is_empty() || payload.len() + key.len() > 7_000) {
            sqlx::query("SELECT pg_notify($1, $2)::text").bind(TIMELINE_CHANNEL).bind(&payload).execute(&mut **tx).await?;
            payload.clear();
        }
        payload.push_str(&key);
        payload.push('\n');
    }
    Ok(())
}

/// `($from, $from+1, …)`: `n` placeholders numbered from `from`, for an `IN` list.
fn placeholders(from: usize, n: usize) -> String {
    format!("({})", (from..from + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", "))
}

/// A stored order row and the newest position it has folded (its row keeps the position of
/// the last event folded, which is older when a source delivered it late).
struct Stored {
    row: OrderRow,
    newest: i64,
}

/// The stored rows of orders `ids`, by tenant and order id.
async fn load(tx: &mut Transaction<'static, Any>, table: &str, ids: &[&str]) -> Result<HashMap<(String, String), Stored>, ProjectionError> {
    let mut out = HashMap::new();
    let timeline = timeline_table(table);
    for chunk in ids.chunks(rows_per_statement(1)) {
        let sql = format!(
            "SELECT {}, (SELECT MAX(t.position) FROM {timeline} t WHERE t.order_id = {table}.order_id) AS newest \
             FROM {table} WHERE order_id IN {}",
            COLUMNS.join(", "),
            values(1, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        for r in query.fetch_all(&mut **tx).await? {
            let row = OrderRow::from_row(&r)?;
            let newest = r.try_get::<Option<i64>, _>("newest")?.unwrap_or(row.position).max(row.position);
            out.insert((r.try_get("tenant")?, r.try_get("order_id")?), Stored { row, newest });
        }
    }
    Ok(out)
}

/// The positions of `events` (order id, position) that the timeline already holds: folded
/// before. A position is one event of one stream, so it stands for the pair.
async fn folded(tx: &mut Transaction<'static, Any>, table: &str, events: &[(&str, i64)]) -> Result<HashSet<i64>, ProjectionError> {
    let mut out = HashSet::new();
    for chunk in events.chunks(rows_per_statement(2)) {
        let ids: BTreeSet<&str> = chunk.iter().map(|(id, _)| *id).collect();
        let sql = format!(
            "SELECT position FROM {} WHERE order_id IN {} AND position IN {}",
            timeline_table(table),
            placeholders(1, ids.len()),
            placeholders(ids.len() + 1, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for id in &ids {
            query = query.bind(*id);
        }
        for (_, position) in chunk {
            query = query.bind(*position);
        }
        for r in query.fetch_all(&mut **tx).await? {
            out.insert(r.try_get(0)?);
        }
    }
    Ok(out)
}

/// The payment events of orders `ids` waiting for their placement, as the log holds them
/// (without their metadata, which no row shows), oldest first.
async fn load_pending(tx: &mut Transaction<'static, Any>, table: &str, ids: &[&str]) -> Result<Vec<LogEvent>, ProjectionError> {
    let mut out = Vec::new();
    for chunk in ids.chunks(rows_per_statement(1)) {
        let sql = format!(
            "SELECT tenant, order_id, position, tx, sequence, event_type, event_version, payload, recorded_at_ms FROM {} \
             WHERE order_id IN {} ORDER BY position",
            pending_table(table),
            values(1, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        for r in query.fetch_all(&mut **tx).await? {
            let (tenant, order_id): (String, String) = (r.try_get("tenant")?, r.try_get("order_id")?);
            let at: i64 = r.try_get("recorded_at_ms")?;
            out.push(LogEvent {
                cursor: LogCursor { transaction_id: r.try_get("tx")?, position: r.try_get("position")? },
                aggregate_type: "payment".into(),
                aggregate_id: format!("{tenant}:{order_id}"),
                sequence: r.try_get("sequence")?,
                event_type: r.try_get("event_type")?,
                event_version: r.try_get("event_version")?,
                payload: serde_json::from_str(&r.try_get::<String, _>("payload")?)?,
                metadata: serde_json::Value::Null,
                recorded_at: Utc
                    .timestamp_millis_opt(at)
                    .single()
                    .ok_or_else(|| ProjectionError::Malformed(format!("pending event of order {order_id} recorded at {at} ms")))?,
            });
        }
    }
    Ok(out)
}

/// Forgets the waiting payment events of orders `ids`, folded in this batch.
async fn drain_pending(tx: &mut Transaction<'static, Any>, table: &str, ids: &[&str]) -> Result<(), ProjectionError> {
    for chunk in ids.chunks(rows_per_statement(1)) {
        let sql = format!("DELETE FROM {table} WHERE order_id IN {}", values(1, chunk.len()));
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Keeps payment events whose order is not placed yet; a message delivered twice is kept once.
async fn write_pending(tx: &mut Transaction<'static, Any>, table: &str, events: &[&LogEvent]) -> Result<(), ProjectionError> {
    for chunk in events.chunks(rows_per_statement(9)) {
        let sql = format!(
            "INSERT INTO {table} (tenant, order_id, position, tx, sequence, event_type, event_version, payload, recorded_at_ms) \
             VALUES {} ON CONFLICT (order_id, position) DO NOTHING",
            values(chunk.len(), 9)
        );
        let mut query = sqlx::query(&sql);
        for e in chunk {
            let (tenant, order_id) = split_stream_id(&e.aggregate_id)?;
            query = query
                .bind(tenant.to_owned())
                .bind(order_id.to_owned())
                .bind(e.cursor.position)
                .bind(e.cursor.transaction_id)
                .bind(e.sequence)
                .bind(e.event_type.clone())
                .bind(e.event_version.clone())
                .bind(e.payload.to_string())
                .bind(e.recorded_at.timestamp_millis());
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// The lines of a placement, numbered from 1.
fn line_rows<'a>(key: (&'a str, &'a str), placed: &[OrderLine]) -> Result<Vec<Line<'a>>, ProjectionError> {
    placed
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let amount = line.unit_price.amount.checked_mul(line.quantity);
            let amount = amount.ok_or_else(|| ProjectionError::Malformed(format!("line amount of order {} overflows", key.1)))?;
            Ok((key, i as i64 + 1, line.sku.to_string(), line.quantity, line.unit_price.amount, amount))
        })
        .collect()
}

/// One order line as stored: order, line number, SKU, quantity, unit amount, amount.
type Line<'a> = ((&'a str, &'a str), i64, String, i64, i64, i64);

/// Writes the lines of the orders placed in this batch.
async fn write_lines(tx: &mut Transaction<'static, Any>, table: &str, lines: &[Line<'_>]) -> Result<(), ProjectionError> {
    for chunk in lines.chunks(rows_per_statement(7)) {
        let sql = format!(
            "INSERT INTO {table} (tenant, order_id, line_no, sku, quantity, unit_amount, amount) VALUES {} \
             ON CONFLICT (order_id, line_no) DO NOTHING",
            values(chunk.len(), 7)
        );
        let mut query = sqlx::query(&sql);
        for ((tenant, id), line_no, sku, quantity, unit, amount) in chunk {
            query = query
                .bind(tenant.to_owned())
                .bind(id.to_owned())
                .bind(*line_no)
                .bind(sku.clone())
                .bind(*quantity)
                .bind(*unit)
                .bind(*amount);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

async fn write_steps(tx: &mut Transaction<'static, Any>, table: &str, steps: &[Step<'_>]) -> Result<(), ProjectionError> {
    for chunk in steps.chunks(rows_per_statement(8)) {
        let sql = format!(
            "INSERT INTO {table} (tenant, order_id, position, source, event, status, detail, at_ms) VALUES {} \
             ON CONFLICT (order_id, position) DO NOTHING",
            values(chunk.len(), 8)
        );
        let mut query = sqlx::query(&sql);
        for s in chunk {
            query = query
                .bind(s.tenant.to_owned())
                .bind(s.order_id.to_owned())
                .bind(s.position)
                .bind(s.source)
                .bind(s.event.clone())
                .bind(s.status.clone())
                .bind(s.detail.clone())
                .bind(s.at_ms);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Gives each payment entry of orders `ids` the order status of the order event before it in
/// the log. Needed only where an event was folded after a later one (a source that delivers
/// the order and payment streams apart): the entry then holds the status of the wrong moment.
async fn restate_payments(tx: &mut Transaction<'static, Any>, table: &str, ids: &[&str]) -> Result<(), ProjectionError> {
    for chunk in ids.chunks(rows_per_statement(1)) {
        let sql = format!(
            "UPDATE {table} SET status = COALESCE((SELECT o.status FROM {table} o WHERE o.order_id = {table}.order_id \
             AND o.source = 'order' AND o.position < {table}.position ORDER BY o.position DESC LIMIT 1), status) \
             WHERE source = 'payment' AND order_id IN {}",
            values(1, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extra_tables_are_named_after_the_live_one() {
        assert_eq!(Orders.tables(TABLE), [TABLE, LINES_TABLE, TIMELINE_TABLE, PENDING_TABLE]);
    }
}
