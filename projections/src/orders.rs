//! Orders and their payments: one row per order (status, totals, payment status, invoice,
//! shipment), its lines for sales figures, and its timeline of events.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use domain::order::{CancelReason, OrderEvent};
use domain::payment::PaymentEvent;
use domain::Money;
use serde_json::json;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Row as _, Transaction};
use store::LogEvent;

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

/// Orders with their payment, lines and timeline. Order and payment streams share a stream id
/// (the payment id is the order id), so both fold into the same row.
pub struct Orders;

fn lines_table(table: &str) -> String {
    format!("{table}_lines")
}

fn timeline_table(table: &str) -> String {
    format!("{table}_timeline")
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
        OrderEvent::Refunded { .. } | OrderEvent::Invoiced { .. } | OrderEvent::Restocked => return None,
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
    /// JSON: `{name, line1, city, postal_code, country}`.
    shipping_address: String,
    /// JSON: `[{sku, quantity, unit_price: {amount, currency}}]`.
    lines: String,
    placed_at_ms: i64,
    /// `YYYY-MM-DD` (UTC) of `placed_at_ms`: the same day buckets in both backends.
    placed_day: String,
    updated_at_ms: i64,
    /// Sequence of the last order event (payment events leave it).
    version: i64,
    /// Global position of the last event applied, order or payment.
    position: i64,
}

const COLUMNS: [&str; 26] = [
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
    "placed_at_ms",
    "placed_day",
    "updated_at_ms",
    "version",
    "position",
];

impl OrderRow {
    fn placed(e: &LogEvent, event: &OrderEvent) -> Result<Self, ProjectionError> {
        let OrderEvent::Placed { customer, lines, subtotal, tax, shipping, total, shipping_address, payment_method, .. } = event else {
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
            payment_method: payment_method.clone(),
            payment_status: None,
            payment_amount: None,
            payment_refunded: 0,
            invoice_number: None,
            invoiced_at_ms: None,
            carrier: None,
            tracking_number: None,
            shipping_address: serde_json::to_string(shipping_address)?,
            lines: serde_json::to_string(lines)?,
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
            OrderEvent::PaymentAuthorised { payment_id } => json!({ "payment_id": payment_id.to_string() }),
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
            OrderEvent::Confirmed | OrderEvent::Delivered | OrderEvent::Restocked => json!({}),
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
                json!({ "amount": money(amount), "method": method })
            }
            PaymentEvent::Authorised { reference } => json!({ "reference": reference }),
            PaymentEvent::Failed { reason } => json!({ "reason": code(reason)? }),
            PaymentEvent::Captured { amount } => json!({ "amount": money(amount) }),
            PaymentEvent::RefundRequested { refund_id, amount } => json!({ "refund_id": refund_id, "amount": money(amount) }),
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

    fn handles(&self, aggregate_type: &str) -> bool {
        aggregate_type == "order" || aggregate_type == "payment"
    }

    fn table(&self) -> &'static str {
        TABLE
    }

    fn tables(&self, table: &str) -> Vec<String> {
        vec![table.to_owned(), lines_table(table), timeline_table(table)]
    }

    fn schema(&self, table: &str, suffix: &str) -> Vec<String> {
        let lines = lines_table(table);
        let timeline = timeline_table(table);
        vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {table} (
                    tenant TEXT NOT NULL,
                    order_id TEXT NOT NULL,
                    customer TEXT NOT NULL,
                    status TEXT NOT NULL,
                    cancel_reason TEXT,
                    currency TEXT NOT NULL,
                    subtotal BIGINT NOT NULL,
                    tax BIGINT NOT NULL,
                    shipping BIGINT NOT NULL,
                    total BIGINT NOT NULL,
                    refunded BIGINT NOT NULL,
                    payment_method TEXT NOT NULL,
                    payment_status TEXT,
                    payment_amount BIGINT,
                    payment_refunded BIGINT NOT NULL,
                    invoice_number BIGINT,
                    invoiced_at_ms BIGINT,
                    carrier TEXT,
                    tracking_number TEXT,
                    shipping_address TEXT NOT NULL,
                    lines TEXT NOT NULL,
                    placed_at_ms BIGINT NOT NULL,
                    placed_day TEXT NOT NULL,
                    updated_at_ms BIGINT NOT NULL,
                    version BIGINT NOT NULL,
                    position BIGINT NOT NULL,
                    PRIMARY KEY (tenant, order_id)
                )"
            ),
            format!("CREATE INDEX IF NOT EXISTS ix_orders_customer{suffix} ON {table} (tenant, customer, placed_at_ms, order_id)"),
            format!("CREATE INDEX IF NOT EXISTS ix_orders_status{suffix} ON {table} (tenant, status)"),
            format!("CREATE INDEX IF NOT EXISTS ix_orders_placed{suffix} ON {table} (tenant, placed_at_ms, order_id)"),
            format!(
                "CREATE TABLE IF NOT EXISTS {lines} (
                    tenant TEXT NOT NULL,
                    order_id TEXT NOT NULL,
                    line_no BIGINT NOT NULL,
                    sku TEXT NOT NULL,
                    quantity BIGINT NOT NULL,
                    unit_amount BIGINT NOT NULL,
                    amount BIGINT NOT NULL,
                    PRIMARY KEY (order_id, line_no)
                )"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {timeline} (
                    tenant TEXT NOT NULL,
                    order_id TEXT NOT NULL,
                    position BIGINT NOT NULL,
                    source TEXT NOT NULL,
                    event TEXT NOT NULL,
                    status TEXT NOT NULL,
                    detail TEXT NOT NULL,
                    at_ms BIGINT NOT NULL,
                    PRIMARY KEY (order_id, position)
                )"
            ),
        ]
    }

    async fn apply(&self, tx: &mut Transaction<'static, Any>, table: &str, events: &[&LogEvent]) -> Result<(), ProjectionError> {
        let mut facts = Vec::with_capacity(events.len());
        for e in events {
            let fact = if e.aggregate_type == "order" {
                Fact::Order(crate::projection::payload(e)?)
            } else {
                Fact::Payment(crate::projection::payload(e)?)
            };
            facts.push((split_stream_id(&e.aggregate_id)?, *e, fact));
        }
        // Orders whose first event here is not their placement were placed in an earlier batch.
        let mut seen = std::collections::HashSet::new();
        let earlier: Vec<&str> = facts
            .iter()
            .filter(|(key, _, fact)| seen.insert(*key) && !matches!(fact, Fact::Order(OrderEvent::Placed { .. })))
            .map(|(key, _, _)| key.1)
            .collect();
        let mut stored = load(tx, table, &earlier).await?;
        // Ordered keys: concurrent writers touch rows in the same order and cannot deadlock.
        let mut rows: BTreeMap<(&str, &str), OrderRow> = BTreeMap::new();
        let mut steps = Vec::with_capacity(facts.len());
        for ((tenant, order_id), e, fact) in &facts {
            let key = (*tenant, *order_id);
            if let Fact::Order(event @ OrderEvent::Placed { .. }) = fact {
                rows.insert(key, OrderRow::placed(e, event)?);
            }
            let row = match rows.entry(key) {
                Entry::Occupied(row) => row.into_mut(),
                Entry::Vacant(slot) => slot.insert(stored.remove(&(tenant.to_string(), order_id.to_string())).ok_or_else(|| {
                    ProjectionError::Malformed(format!("{} event of order {order_id} before the order was placed", e.aggregate_type))
                })?),
            };
            let (source, event, detail) = match fact {
                Fact::Order(event) => ("order", e.event_type.clone(), row.apply_order(e, event)?),
                Fact::Payment(event) => ("payment", format!("payment_{}", e.event_type), row.apply_payment(event)?),
            };
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
        let rows: Vec<_> = rows.into_iter().collect();
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
        write_lines(tx, &lines_table(table), &facts).await?;
        for chunk in steps.chunks(rows_per_statement(8)) {
            let sql = format!(
                "INSERT INTO {} (tenant, order_id, position, source, event, status, detail, at_ms) VALUES {} \
                 ON CONFLICT (order_id, position) DO NOTHING",
                timeline_table(table),
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
}

/// The stored rows of orders `ids`, by tenant and order id.
async fn load(
    tx: &mut Transaction<'static, Any>,
    table: &str,
    ids: &[&str],
) -> Result<HashMap<(String, String), OrderRow>, ProjectionError> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(rows_per_statement(1)) {
        let sql = format!("SELECT {} FROM {table} WHERE order_id IN {}", COLUMNS.join(", "), values(1, chunk.len()));
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        for r in query.fetch_all(&mut **tx).await? {
            out.insert((r.try_get("tenant")?, r.try_get("order_id")?), OrderRow::from_row(&r)?);
        }
    }
    Ok(out)
}

/// Writes the lines of the orders placed in this batch, numbered from 1.
async fn write_lines(
    tx: &mut Transaction<'static, Any>,
    table: &str,
    facts: &[((&str, &str), &LogEvent, Fact)],
) -> Result<(), ProjectionError> {
    let mut lines = Vec::new();
    for (key, _, fact) in facts {
        if let Fact::Order(OrderEvent::Placed { lines: placed, .. }) = fact {
            for (i, line) in placed.iter().enumerate() {
                let amount = line.unit_price.amount.checked_mul(line.quantity);
                let amount = amount.ok_or_else(|| ProjectionError::Malformed(format!("line amount of order {} overflows", key.1)))?;
                lines.push((*key, i as i64 + 1, line.sku.to_string(), line.quantity, line.unit_price.amount, amount));
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extra_tables_are_named_after_the_live_one() {
        assert_eq!(Orders.tables(TABLE), [TABLE, LINES_TABLE, TIMELINE_TABLE]);
    }
}
