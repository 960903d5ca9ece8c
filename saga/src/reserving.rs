//! Reserving stock for orders together: a SKU's stock is one stream, so orders reserved one
//! append at a time queue on a popular SKU, and so do the orders it refuses, which wait for
//! the same lock only to learn that nothing is left. Orders waiting for their stock at the
//! same time are instead decided in one atomic append: every line of every order that fits,
//! each order's `StockReserved`, and each order that does not fit its `StockRejected`, naming
//! the first of its SKUs short of stock.
//!
//! Orders wait for their tenant's turn together (`together.rs`), at most [`MOST`] per append.
//! Within a batch, orders are decided one after the other (by stream id), each on the stock
//! the ones before it left: all of an order's lines are held, or none.
//!
//! A refusal is decided on the stock this process holds, which another process may have
//! changed since. Where the append adds to that SKU's stream, it lands only if the stream is
//! still where this process read it; where it adds nothing there, the stream's version is
//! read once more before the append, and a changed stream makes the whole batch try again on
//! fresh stock.
//!
//! Lock order, the saga's one: every SKU of the batch (sorted), then the orders (sorted by id).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use domain::order::Order;
use domain::order::{OrderCommand, OrderError};
use domain::stock::{Stock, StockCommand, StockError};
use domain::{stream_id, Quantity, Sku, TenantId};
use store::{commit, retry_on_conflict, ExecError, Metadata, Prepared, Stage};

use crate::together::{self, excluding, Excluded};
use crate::{OrderSaga, SagaError};

/// Orders reserved in one append at most.
const MOST: usize = 64;

/// What reserving needs to know of an order waiting for its stock.
pub(crate) struct Reservation {
    /// Units per SKU (sorted; lines of one SKU summed).
    lines: BTreeMap<String, i64>,
    /// When the held units lapse unless paid for.
    expires_at: DateTime<Utc>,
    /// The metadata of its `StockRejected`, if it gets one (the request's is its reservation's).
    rejected: Metadata,
}

pub(crate) type Request = together::Request<Reservation, ()>;
type Answer = together::Answer<()>;

/// The tenants' stock queues, where orders wait to be reserved together.
pub(crate) type Queues = together::Queues<Reservation, ()>;

pub(crate) fn queues() -> Queues {
    Queues::new("reserve", MOST)
}

impl Reservation {
    pub(crate) fn request(
        id: &str,
        order_id: domain::OrderId,
        lines: BTreeMap<String, i64>,
        expires_at: DateTime<Utc>,
        reserved: Metadata,
        rejected: Metadata,
    ) -> (Request, Answer) {
        Request::new(id, order_id, reserved, Reservation { lines, expires_at, rejected })
    }
}

#[cfg(feature = "faults")]
impl OrderSaga {
    /// Holds the tenant's stock queue as a batch being appended does: orders that ask for
    /// their stock meanwhile wait, and are reserved together once the guard is dropped.
    pub async fn hold_reservations(&self, tenant: &TenantId) -> tokio::sync::OwnedMutexGuard<()> {
        self.reservations.hold(tenant).await
    }

    /// Orders waiting for the tenant's stock queue.
    pub fn reservations_waiting(&self, tenant: &TenantId) -> usize {
        self.reservations.waiting(tenant)
    }
}

impl OrderSaga {
    /// Reserves (or rejects) the order in `request` together with whatever else its tenant
    /// has waiting for stock. An order that moved on meanwhile (cancelled, or reserved by
    /// another process) gets nothing written.
    pub(crate) async fn reserve_together(&self, tenant: &TenantId, request: Request, answer: Answer) -> Result<(), SagaError> {
        self.reservations.join(tenant, request, answer, |batch| self.reserve_batch(tenant, batch)).await
    }

    async fn reserve_batch(&self, tenant: &TenantId, mut batch: Vec<Request>) {
        metrics::histogram!("shop_saga_reservations_per_append").record(batch.len() as f64);
        loop {
            let attempt = retry_on_conflict(Order::TYPE, || self.append_reservations(tenant, &batch)).await;
            if together::answer(&mut batch, attempt, "reserve", (), ()) {
                return;
            }
        }
    }

    /// One attempt at the whole batch: hold every SKU, decide each order, then one append.
    async fn append_reservations(&self, tenant: &TenantId, batch: &[Request]) -> Result<(), ExecError<(usize, Excluded)>> {
        let skus: BTreeSet<&str> = batch.iter().flat_map(|r| r.work.lines.keys().map(String::as_str)).collect();
        let streams: Vec<String> = skus.iter().map(|sku| stream_id(tenant, sku)).collect();
        let held = self.repos.stock.hold_all(&streams).await?;
        let mut stock: BTreeMap<&str, Prepared<Stock>> = skus.into_iter().zip(held).collect();
        let mut refused_on = BTreeSet::new();
        let mut decisions = Vec::with_capacity(batch.len());
        for (i, request) in batch.iter().enumerate() {
            let short = self.decide(tenant, i, request, &mut stock).await?;
            refused_on.extend(short.as_ref().map(|(sku, _)| *sku));
            decisions.push(short.map(|(_, sku)| sku));
        }
        // The batch is sorted by order, the orders' lock order.
        let mut orders = self.repos.orders.hold_all(&batch.iter().map(|r| &r.id).collect::<Vec<_>>()).await?;
        for (i, ((request, short), p)) in batch.iter().zip(decisions).zip(orders.iter_mut()).enumerate() {
            let (command, meta) = match short {
                None => (OrderCommand::MarkStockReserved { expires_at: request.work.expires_at }, &request.meta),
                Some(sku) => (OrderCommand::RejectStock { sku }, &request.work.rejected),
            };
            match p.and(command).await {
                Ok(()) => p.label(meta)?,
                // Cancelled meanwhile, or reserved by another process: the others go without it.
                Err(ExecError::Domain(OrderError::IllegalTransition { .. })) => return Err(ExecError::Domain((i, Excluded::MovedOn))),
                Err(e) => return Err(excluding(e, i)),
            }
        }
        // A refusal on a stream this append leaves alone is checked against the store here.
        for sku in refused_on {
            if let Some(p) = stock.get_mut(sku).filter(|p| p.is_empty()) {
                if !p.unchanged().await? {
                    return Err(ExecError::Conflict { current: 0 });
                }
            }
        }
        let mut stock: Vec<Prepared<Stock>> = stock.into_values().filter(|p| !p.is_empty()).collect();
        let mut stages: Vec<&mut dyn Stage> = stock.iter_mut().map(|p| p as &mut dyn Stage).collect();
        stages.extend(orders.iter_mut().map(|p| p as &mut dyn Stage));
        // Every event carries its own order's metadata (labels); this is only the fallback.
        commit(self.repos.orders.store(), &batch[0].meta, &mut stages).await?;
        for p in stock {
            p.finish().await;
        }
        for p in orders {
            p.finish().await;
        }
        Ok(())
    }

    /// Holds every line of the batch's `i`-th order on the stock the orders before it left, or
    /// none of them: then the first of its SKUs short of stock.
    async fn decide<'s>(
        &self,
        tenant: &TenantId,
        i: usize,
        request: &Request,
        stock: &mut BTreeMap<&'s str, Prepared<Stock>>,
    ) -> Result<Option<(&'s str, Sku)>, ExecError<(usize, Excluded)>> {
        let refused = |reason: String| ExecError::Domain((i, Excluded::Refused(reason)));
        let mut trials = Vec::with_capacity(request.work.lines.len());
        for (sku, quantity) in &request.work.lines {
            let (key, held) = stock.get_key_value(sku.as_str()).ok_or_else(|| refused(format!("sku {sku} not held")))?;
            let parsed: Sku = sku.parse().map_err(|_| refused(format!("bad sku {sku}")))?;
            let quantity = Quantity::try_from(*quantity).map_err(|e| refused(e.to_string()))?;
            let command = StockCommand::Reserve {
                tenant: tenant.clone(),
                sku: parsed.clone(),
                order_id: request.order_id,
                quantity,
                expires_at: request.work.expires_at,
            };
            match held.trial(command).await {
                Ok(trial) => trials.push((*key, trial)),
                Err(StockError::InsufficientStock { .. }) => return Ok(Some((*key, parsed))),
                Err(e) => return Err(refused(e.to_string())),
            }
        }
        for (sku, trial) in trials {
            if let Some(held) = stock.get_mut(sku) {
                held.accept(trial);
                held.label(&request.meta)?;
            }
        }
        Ok(None)
    }
}
