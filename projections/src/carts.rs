//! Carts and discount codes for admins and the sales analytics: one row per cart (status,
//! discount, when created, touched and closed) with its lines, and one row per code with every
//! redemption. Carts change a few times each, so each event is one statement; the batch and
//! the checkpoint still commit together.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::cart::CartEvent;
use domain::promotion::{DiscountKind, PromotionEvent};
use sqlx::{Any, Transaction};
use store::LogEvent;

use crate::{split_stream_id, Projection, ProjectionError};

/// `rm_carts` and `rm_carts_lines`.
pub struct Carts;

/// `rm_promotions` and `rm_promotions_redemptions`.
pub struct Promotions;

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// Runs `sql` with `binds` (text, integers or nulls) in the batch's transaction.
async fn run(tx: &mut Transaction<'static, Any>, sql: &str, binds: Vec<Bind>) -> Result<(), ProjectionError> {
    let mut query = sqlx::query(sql);
    for b in binds {
        query = match b {
            Bind::Text(s) => query.bind(s),
            Bind::Int(n) => query.bind(n),
            Bind::NullText => query.bind(None::<String>),
            Bind::NullInt => query.bind(None::<i64>),
        };
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

enum Bind {
    Text(String),
    Int(i64),
    NullText,
    NullInt,
}

fn text(s: impl ToString) -> Bind {
    Bind::Text(s.to_string())
}

fn opt_text(s: Option<impl ToString>) -> Bind {
    s.map_or(Bind::NullText, text)
}

fn opt_int(n: Option<i64>) -> Bind {
    n.map_or(Bind::NullInt, Bind::Int)
}

#[async_trait]
impl Projection for Carts {
    fn name(&self) -> &'static str {
        "carts"
    }

    fn handles(&self, aggregate_type: &str) -> bool {
        aggregate_type == "cart"
    }

    fn table(&self) -> &'static str {
        "rm_carts"
    }

    fn tables(&self, table: &str) -> Vec<String> {
        vec![table.to_owned(), format!("{table}_lines")]
    }

    async fn apply(&self, tx: &mut Transaction<'static, Any>, table: &str, events: &[&LogEvent]) -> Result<(), ProjectionError> {
        let lines = format!("{table}_lines");
        for e in events {
            let (tenant, cart) = split_stream_id(&e.aggregate_id)?;
            let key = || vec![text(tenant), text(cart)];
            let version = Bind::Int(e.sequence);
            // Sets `set` (placeholders from $3) on the cart, and its version.
            let update = |set: &str, n: usize| format!("UPDATE {table} SET {set}, version = ${} WHERE tenant = $1 AND cart_id = $2", n + 3);
            let line_upsert = format!(
                "INSERT INTO {lines} (tenant, cart_id, sku, quantity, unit_amount, currency, orderable) VALUES ($1, $2, $3, $4, $5, $6, 1) \
                 ON CONFLICT (tenant, cart_id, sku) DO UPDATE SET quantity = excluded.quantity, unit_amount = excluded.unit_amount, \
                 currency = excluded.currency, orderable = 1"
            );
            match crate::projection::payload(e)? {
                CartEvent::Created { customer, at, .. } => {
                    let sql = format!(
                        "INSERT INTO {table} (tenant, cart_id, customer, status, currency, discount_code, discount, order_id, reminded, \
                         created_at_ms, created_day, touched_at_ms, closed_at_ms, closed_day, version) \
                         VALUES ($1, $2, $3, 'open', NULL, NULL, 0, NULL, 0, $4, $5, $4, NULL, NULL, $6) ON CONFLICT (tenant, cart_id) DO NOTHING"
                    );
                    let mut binds = key();
                    binds.extend([opt_text(customer), Bind::Int(ms(at)), text(day(at)), version]);
                    run(tx, &sql, binds).await?;
                }
                CartEvent::LineAdded { sku, line_quantity, unit_price, at, .. } => {
                    let mut binds = key();
                    binds.extend([text(&sku), Bind::Int(line_quantity), Bind::Int(unit_price.amount), text(unit_price.currency)]);
                    run(tx, &line_upsert, binds).await?;
                    let mut binds = key();
                    binds.extend([Bind::Int(ms(at)), text(unit_price.currency), version]);
                    run(tx, &update("touched_at_ms = $3, currency = $4", 2), binds).await?;
                }
                CartEvent::LineQuantityChanged { sku, line_quantity, at } => {
                    let sql = format!("UPDATE {lines} SET quantity = $4 WHERE tenant = $1 AND cart_id = $2 AND sku = $3");
                    let mut binds = key();
                    binds.extend([text(&sku), Bind::Int(line_quantity)]);
                    run(tx, &sql, binds).await?;
                    let mut binds = key();
                    binds.extend([Bind::Int(ms(at)), version]);
                    run(tx, &update("touched_at_ms = $3", 1), binds).await?;
                }
                CartEvent::LineRemoved { sku, at } => {
                    let sql = format!("DELETE FROM {lines} WHERE tenant = $1 AND cart_id = $2 AND sku = $3");
                    let mut binds = key();
                    binds.push(text(&sku));
                    run(tx, &sql, binds).await?;
                    let mut binds = key();
                    binds.extend([Bind::Int(ms(at)), version]);
                    run(tx, &update("touched_at_ms = $3", 1), binds).await?;
                }
                CartEvent::LineRepriced { sku, unit_price, .. } => {
                    let sql = format!("UPDATE {lines} SET unit_amount = $4, orderable = 1 WHERE tenant = $1 AND cart_id = $2 AND sku = $3");
                    let mut binds = key();
                    binds.extend([text(&sku), Bind::Int(unit_price.amount)]);
                    run(tx, &sql, binds).await?;
                    let mut binds = key();
                    binds.push(version);
                    run(tx, &format!("UPDATE {table} SET version = $3 WHERE tenant = $1 AND cart_id = $2"), binds).await?;
                }
                CartEvent::LineUnavailable { sku } => {
                    let sql = format!("UPDATE {lines} SET orderable = 0 WHERE tenant = $1 AND cart_id = $2 AND sku = $3");
                    let mut binds = key();
                    binds.push(text(&sku));
                    run(tx, &sql, binds).await?;
                    let mut binds = key();
                    binds.push(version);
                    run(tx, &format!("UPDATE {table} SET version = $3 WHERE tenant = $1 AND cart_id = $2"), binds).await?;
                }
                CartEvent::DiscountApplied { code, amount } => {
                    let mut binds = key();
                    binds.extend([text(&code), Bind::Int(amount.amount), version]);
                    run(tx, &update("discount_code = $3, discount = $4", 2), binds).await?;
                }
                CartEvent::DiscountRemoved { .. } => {
                    let mut binds = key();
                    binds.push(version);
                    run(tx, &update("discount_code = NULL, discount = 0", 0), binds).await?;
                }
                CartEvent::Priced { .. } => {
                    let mut binds = key();
                    binds.push(version);
                    run(tx, &format!("UPDATE {table} SET version = $3 WHERE tenant = $1 AND cart_id = $2"), binds).await?;
                }
                CartEvent::CheckedOut { order_id, at, .. } => {
                    let mut binds = key();
                    binds.extend([text(order_id), Bind::Int(ms(at)), text(day(at)), version]);
                    run(tx, &update("status = 'checked_out', order_id = $3, closed_at_ms = $4, closed_day = $5", 3), binds).await?;
                }
                CartEvent::Expired { at } => {
                    let mut binds = key();
                    binds.extend([Bind::Int(ms(at)), text(day(at)), version]);
                    run(tx, &update("status = 'expired', closed_at_ms = $3, closed_day = $4", 2), binds).await?;
                }
                CartEvent::ReminderDue { .. } => {
                    let mut binds = key();
                    binds.push(version);
                    run(tx, &update("reminded = 1", 0), binds).await?;
                }
                CartEvent::CartsMerged { from, lines: merged, at, .. } => {
                    if from.to_string() == cart {
                        let mut binds = key();
                        binds.extend([Bind::Int(ms(at)), text(day(at)), version]);
                        run(tx, &update("status = 'merged', closed_at_ms = $3, closed_day = $4", 2), binds).await?;
                    } else {
                        let mut currency = None;
                        for l in merged {
                            let mut binds = key();
                            binds.extend([
                                text(&l.sku),
                                Bind::Int(l.line_quantity),
                                Bind::Int(l.unit_price.amount),
                                text(l.unit_price.currency),
                            ]);
                            run(tx, &line_upsert, binds).await?;
                            currency = Some(l.unit_price.currency);
                        }
                        let mut binds = key();
                        binds.extend([Bind::Int(ms(at)), opt_text(currency), version]);
                        run(tx, &update("touched_at_ms = $3, currency = COALESCE($4, currency)", 2), binds).await?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Projection for Promotions {
    fn name(&self) -> &'static str {
        "promotions"
    }

    fn handles(&self, aggregate_type: &str) -> bool {
        aggregate_type == "promotion"
    }

    fn table(&self) -> &'static str {
        "rm_promotions"
    }

    fn tables(&self, table: &str) -> Vec<String> {
        vec![table.to_owned(), format!("{table}_redemptions")]
    }

    async fn apply(&self, tx: &mut Transaction<'static, Any>, table: &str, events: &[&LogEvent]) -> Result<(), ProjectionError> {
        let redemptions = format!("{table}_redemptions");
        for e in events {
            let (tenant, code) = split_stream_id(&e.aggregate_id)?;
            let key = || vec![text(tenant), text(code)];
            let version = Bind::Int(e.sequence);
            match crate::projection::payload(e)? {
                PromotionEvent::Created { terms, usage_limit, per_customer_limit, .. } => {
                    let (kind, percentage_bp, amount) = match terms.kind {
                        DiscountKind::Percentage { percentage_bp } => ("percentage", Some(i64::from(percentage_bp)), None),
                        DiscountKind::Fixed { amount } => ("fixed", None, Some(amount)),
                    };
                    let sql = format!(
                        "INSERT INTO {table} (tenant, code, kind, percentage_bp, amount, currency, min_subtotal, min_currency, starts_at, \
                         ends_at, usage_limit, per_customer_limit, active, uses, created_at_ms, version) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1, 0, $13, $14) ON CONFLICT (tenant, code) DO NOTHING"
                    );
                    let mut binds = key();
                    binds.extend([
                        text(kind),
                        opt_int(percentage_bp),
                        opt_int(amount.map(|a| a.amount)),
                        opt_text(amount.map(|a| a.currency)),
                        opt_int(terms.min_subtotal.map(|m| m.amount)),
                        opt_text(terms.min_subtotal.map(|m| m.currency)),
                        opt_text(terms.starts_at.map(|t| t.to_rfc3339())),
                        opt_text(terms.ends_at.map(|t| t.to_rfc3339())),
                        opt_int(usage_limit.map(i64::from)),
                        opt_int(per_customer_limit.map(i64::from)),
                        Bind::Int(ms(e.recorded_at)),
                        version,
                    ]);
                    run(tx, &sql, binds).await?;
                }
                PromotionEvent::Deactivated => {
                    let mut binds = key();
                    binds.push(version);
                    run(tx, &format!("UPDATE {table} SET active = 0, version = $3 WHERE tenant = $1 AND code = $2"), binds).await?;
                }
                PromotionEvent::Redeemed { order_id, customer, discount, uses } => {
                    let sql = format!(
                        "INSERT INTO {redemptions} (tenant, code, order_id, customer, discount, currency, at_ms, day, released) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0) ON CONFLICT (tenant, code, order_id) DO UPDATE SET released = 0"
                    );
                    let mut binds = key();
                    binds.extend([
                        text(order_id),
                        text(customer),
                        Bind::Int(discount.amount),
                        text(discount.currency),
                        Bind::Int(ms(e.recorded_at)),
                        text(day(e.recorded_at)),
                    ]);
                    run(tx, &sql, binds).await?;
                    let mut binds = key();
                    binds.extend([Bind::Int(i64::from(uses)), version]);
                    run(tx, &format!("UPDATE {table} SET uses = $3, version = $4 WHERE tenant = $1 AND code = $2"), binds).await?;
                }
                PromotionEvent::Released { order_id, uses } => {
                    let sql = format!("UPDATE {redemptions} SET released = 1 WHERE tenant = $1 AND code = $2 AND order_id = $3");
                    let mut binds = key();
                    binds.push(text(order_id));
                    run(tx, &sql, binds).await?;
                    let mut binds = key();
                    binds.extend([Bind::Int(i64::from(uses)), version]);
                    run(tx, &format!("UPDATE {table} SET uses = $3, version = $4 WHERE tenant = $1 AND code = $2"), binds).await?;
                }
            }
        }
        Ok(())
    }
}
