//! Invoicing orders together: a tenant's invoice book is one stream, so orders invoiced one
//! append at a time queue on it. Orders ready at the same time are instead invoiced in one
//! atomic append: each order's stock leaving, one number each from the book (in turn, still no
//! gaps), each capture and each order's `Invoiced`.
//!
//! Orders wait for their book together (`together.rs`): whoever holds the book's turn takes
//! everything waiting (at most [`MOST`] orders) and appends it. An order that cannot be
//! invoiced now (cancelled meanwhile, its stock refusing) is answered alone and the rest are
//! prepared again without it, so its number is never given out.
//!
//! Lock order, the saga's one: every SKU of the batch (sorted), the book, the payments, the
//! orders (each sorted by id). An order's other steps take one order's payment, then its
//! order, so nothing waits in a circle.

use std::collections::BTreeMap;
use std::fmt::Display;

use cqrs_es::Aggregate;
use domain::order::{InvoiceBook, InvoiceCommand, Order, OrderCommand, OrderError, INVOICE_BOOK};
use domain::payment::{Payment, PaymentCommand};
use domain::stock::{Stock, StockCommand};
use domain::{stream_id, OrderId, TenantId};
use store::{commit, retry_on_conflict, ExecError, Metadata, Prepared, Stage};

use crate::together::{self, excluding, Excluded};
use crate::{OrderSaga, SagaError};

/// Orders invoiced in one append at most.
const MOST: usize = 64;

/// What became of an order's invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Invoiced {
    /// Its stock left, it has its number, and its capture (if asked) is on record.
    Done,
    /// It was invoiced or cancelled meanwhile: nothing was written for it (its capture is
    /// still to be recorded by the caller).
    MovedOn,
}

/// What invoicing needs to know of an order waiting for its invoice.
pub(crate) struct Invoice {
    /// Its SKUs (sorted).
    skus: Vec<String>,
    /// Record the gateway's capture on the payment in the same append.
    captured: bool,
}

pub(crate) type Request = together::Request<Invoice, Invoiced>;
type Answer = together::Answer<Invoiced>;

/// The tenants' invoice books, where orders wait to be invoiced together.
pub(crate) type Books = together::Queues<Invoice, Invoiced>;

pub(crate) fn books() -> Books {
    Books::new("invoice", MOST)
}

impl Invoice {
    pub(crate) fn request(id: &str, order_id: OrderId, order: &Order, captured: bool, meta: Metadata) -> (Request, Answer) {
        let skus = order.reservations().into_keys().collect();
        Request::new(id, order_id, meta, Invoice { skus, captured })
    }
}

#[cfg(feature = "faults")]
impl OrderSaga {
    /// Holds the tenant's invoice book as a batch being appended does: orders that ask for
    /// their invoice meanwhile wait, and are invoiced together once the guard is dropped.
    pub async fn hold_invoice_book(&self, tenant: &TenantId) -> tokio::sync::OwnedMutexGuard<()> {
        self.books.hold(tenant).await
    }

    /// Orders waiting for the tenant's invoice book.
    pub fn invoices_waiting(&self, tenant: &TenantId) -> usize {
        self.books.waiting(tenant)
    }
}

/// The prepared writes of one batch, in lock order.
struct Writes {
    stock: Vec<Prepared<Stock>>,
    book: Prepared<InvoiceBook>,
    payments: Vec<Prepared<Payment>>,
    orders: Vec<Prepared<Order>>,
}

impl OrderSaga {
    /// Invoices the order in `request` together with whatever else its tenant's book has
    /// waiting.
    pub(crate) async fn invoice_together(&self, tenant: &TenantId, request: Request, answer: Answer) -> Result<Invoiced, SagaError> {
        self.books.join(tenant, request, answer, |batch| self.invoice_batch(tenant, batch)).await
    }

    /// Appends the invoices of `batch`, answering every request.
    async fn invoice_batch(&self, tenant: &TenantId, mut batch: Vec<Request>) {
        metrics::histogram!("shop_saga_invoices_per_append").record(batch.len() as f64);
        loop {
            let attempt = retry_on_conflict(Order::TYPE, || self.append_invoices(tenant, &batch)).await;
            if together::answer(&mut batch, attempt, "invoice", Invoiced::Done, Invoiced::MovedOn) {
                return;
            }
        }
    }

    /// One attempt at the whole batch: prepare every write in lock order, then one append.
    async fn append_invoices(&self, tenant: &TenantId, batch: &[Request]) -> Result<(), ExecError<(usize, Excluded)>> {
        let mut writes = self.prepare_invoices(tenant, batch).await?;
        let mut stages: Vec<&mut dyn Stage> = Vec::new();
        stages.extend(writes.stock.iter_mut().map(|p| p as &mut dyn Stage));
        stages.push(&mut writes.book);
        stages.extend(writes.payments.iter_mut().map(|p| p as &mut dyn Stage));
        stages.extend(writes.orders.iter_mut().map(|p| p as &mut dyn Stage));
        // Every event carries its own order's metadata (labels); this is only the fallback.
        commit(self.repos.orders.store(), &batch[0].meta, &mut stages).await?;
        for p in writes.stock {
            p.finish().await;
        }
        writes.book.finish().await;
        for p in writes.payments {
            p.finish().await;
        }
        for p in writes.orders {
            p.finish().await;
        }
        Ok(())
    }

    /// Every write of the batch, each stream held in lock order (each kind read in one query).
    async fn prepare_invoices(&self, tenant: &TenantId, batch: &[Request]) -> Result<Writes, ExecError<(usize, Excluded)>> {
        // Each SKU's stream once, with every order's commit on it.
        let mut skus: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, request) in batch.iter().enumerate() {
            for sku in &request.work.skus {
                skus.entry(sku.as_str()).or_default().push(i);
            }
        }
        let streams: Vec<String> = skus.keys().map(|sku| stream_id(tenant, sku)).collect();
        let mut stock = self.repos.stock.hold_all(&streams).await?;
        for (p, orders) in stock.iter_mut().zip(skus.values()) {
            for &i in orders {
                add(p, StockCommand::Commit { order_id: batch[i].order_id }, i, &batch[i].meta).await?;
            }
        }
        let mut book = self.repos.invoices.hold(&stream_id(tenant, INVOICE_BOOK)).await?;
        let mut numbers = Vec::with_capacity(batch.len());
        for (i, request) in batch.iter().enumerate() {
            add(&mut book, InvoiceCommand::Issue { order_id: request.order_id }, i, &request.meta).await?;
            numbers.push(book.state().last);
        }
        let captured: Vec<usize> = (0..batch.len()).filter(|&i| batch[i].work.captured).collect();
        let ids: Vec<&str> = captured.iter().map(|&i| batch[i].id.as_str()).collect();
        let mut payments = self.repos.payments.hold_all(&ids).await?;
        for (p, &i) in payments.iter_mut().zip(&captured) {
            add(p, PaymentCommand::RecordCaptured, i, &batch[i].meta).await?;
        }
        let mut orders = self.repos.orders.hold_all(&batch.iter().map(|r| &r.id).collect::<Vec<_>>()).await?;
        for (i, ((request, number), p)) in batch.iter().zip(numbers).zip(orders.iter_mut()).enumerate() {
            match p.and(OrderCommand::AssignInvoice { number }).await {
                Ok(()) => p.label(&request.meta)?,
                // Invoiced already, or cancelled meanwhile: its caller decides (after the
                // capture is on record), the others go without it.
                Err(ExecError::Domain(OrderError::AlreadyInvoiced(_) | OrderError::IllegalTransition { .. })) => {
                    return Err(ExecError::Domain((i, Excluded::MovedOn)));
                }
                Err(e) => return Err(excluding(e, i)),
            }
        }
        Ok(Writes { stock, book, payments, orders })
    }
}

/// Adds `command`, for the batch's `i`-th order and stored with its metadata, to the write `p`.
async fn add<A>(p: &mut Prepared<A>, command: A::Command, i: usize, meta: &Metadata) -> Result<(), ExecError<(usize, Excluded)>>
where
    A: Aggregate + Clone,
    A::Command: Clone,
    A::Error: Display,
{
    p.and(command).await.map_err(|e| excluding(e, i))?;
    p.label(meta)?;
    Ok(())
}
