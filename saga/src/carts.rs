//! Carts' durable deadlines: an open cart expires when untouched for its lifetime (7 days for
//! a guest's, 90 for a customer's by default) and, when reminders are on, its customer is
//! reminded once after some hours. `cart_deadlines` holds when each open cart next needs a
//! look; it is written from the cart as it is whenever one of its events passes the saga (in
//! the batch's transaction), and swept with the injected clock. A command refused because the
//! cart moved on (touched again, closed, reminded) changes nothing, so sweeps repeat safely.

use chrono::{DateTime, Utc};
use domain::cart::{Cart, CartCommand, CartError, CartStatus};
use sqlx::Row as _;
use store::{ExecError, Metadata};

use crate::{OrderSaga, SagaError};

/// A cart's deadlines as they are now (`None` once it is closed).
pub(crate) struct Deadline {
    cart: String,
    tenant: String,
    at: Option<(DateTime<Utc>, Option<DateTime<Utc>>)>,
}

/// Carts swept per round.
const SWEEP: i64 = 500;

/// When `cart` next needs a look: (expire at, remind at), or `None` once it is closed.
pub(crate) fn deadlines(cart: &Cart, config: &crate::SagaConfig) -> Option<(DateTime<Utc>, Option<DateTime<Utc>>)> {
    if cart.status != CartStatus::Open {
        return None;
    }
    let touched = cart.touched_at?;
    let ttl = if cart.customer.is_some() { config.customer_cart_ttl } else { config.guest_cart_ttl };
    let remind = match config.cart_reminder {
        Some(after) if cart.customer.is_some() && !cart.reminded && !cart.lines.is_empty() => Some(touched + after),
        _ => None,
    };
    Some((touched + ttl, remind))
}

impl OrderSaga {
    fn cart_meta(&self, id: &str, step: &str) -> Metadata {
        let tenant = domain::StreamId::parse(id).ok().map(|s| s.tenant.to_owned());
        Metadata {
            tenant,
            correlation_id: Some(id.to_owned()),
            causation_id: Some(format!("{}:{step}", crate::NAME)),
            ..Metadata::default()
        }
    }

    /// The deadlines of the carts `ids` as they are now. Read before the transaction that
    /// writes them: a cart's read waits for its lock, which a command may hold while it waits
    /// to write (one SQLite writer), so reading inside the transaction could deadlock.
    pub(crate) async fn cart_deadlines(&self, ids: &[String]) -> Result<Vec<Deadline>, SagaError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let (cart, _) = self.repos.carts.read(id).await?;
            let tenant = domain::StreamId::parse(id).map(|s| s.tenant.to_owned()).map_err(|_| SagaError::Malformed(id.clone()))?;
            out.push(Deadline { cart: id.clone(), tenant, at: deadlines(&cart, &self.config) });
        }
        Ok(out)
    }

    /// Writes (or clears) `deadlines` in `tx`.
    pub(crate) async fn schedule_carts(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        deadlines: &[Deadline],
    ) -> Result<(), SagaError> {
        for d in deadlines {
            match d.at {
                None => {
                    sqlx::query("DELETE FROM cart_deadlines WHERE cart_id = $1").bind(&d.cart).execute(&mut **tx).await?;
                }
                Some((expire, remind)) => {
                    let due = remind.map_or(expire, |r| r.min(expire));
                    sqlx::query(
                        "INSERT INTO cart_deadlines (cart_id, tenant, expire_at_ms, remind_at_ms, due_at_ms) VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (cart_id) DO UPDATE SET expire_at_ms = excluded.expire_at_ms, remind_at_ms = excluded.remind_at_ms, \
                         due_at_ms = excluded.due_at_ms",
                    )
                    .bind(&d.cart)
                    .bind(&d.tenant)
                    .bind(expire.timestamp_millis())
                    .bind(remind.map(|r| r.timestamp_millis()))
                    .bind(due.timestamp_millis())
                    .execute(&mut **tx)
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// Expires or reminds the carts whose deadline has come by the injected clock; true when
    /// there were some.
    pub(crate) async fn sweep_carts(&self) -> Result<bool, SagaError> {
        let now = self.clock.now();
        let rows = sqlx::query("SELECT cart_id FROM cart_deadlines WHERE due_at_ms <= $1 ORDER BY due_at_ms LIMIT $2")
            .bind(now.timestamp_millis())
            .bind(SWEEP)
            .fetch_all(&self.db.pool)
            .await?;
        let ids: Vec<String> = rows.iter().map(|r| r.try_get::<String, _>(0)).collect::<Result<_, _>>()?;
        for id in &ids {
            let (cart, _) = self.repos.carts.read(id).await?;
            let Some((expire, remind)) = deadlines(&cart, &self.config) else { continue };
            let (command, step) = if expire <= now {
                let ttl = expire - cart.touched_at.unwrap_or(now);
                (CartCommand::Expire { cutoff: now - ttl, at: now }, "expire_cart")
            } else if let (Some(remind), Some(after)) = (remind, self.config.cart_reminder) {
                if remind > now {
                    continue;
                }
                (CartCommand::Remind { cutoff: now - after, at: now }, "remind_cart")
            } else {
                continue;
            };
            self.tick()?;
            match self.repos.carts.execute(id, command, None, &self.cart_meta(id, step)).await {
                Ok(_) | Err(ExecError::Domain(CartError::NotDue | CartError::Closed)) => {}
                Err(e) => return Err(SagaError::Refused { aggregate: "cart", action: step, reason: e.to_string() }),
            }
        }
        let deadlines = self.cart_deadlines(&ids).await?;
        let mut tx = self.db.begin().await?;
        self.schedule_carts(&mut tx, &deadlines).await?;
        tx.commit().await?;
        Ok(!ids.is_empty())
    }
}
