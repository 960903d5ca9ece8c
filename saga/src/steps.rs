//! Reconciling one order: read the order and its payment as they are now and issue the next
//! command, until the order waits for something or is settled. Every step is safe to repeat.

use std::fmt::Display;

use cqrs_es::Aggregate;
use domain::order::{CancelReason, Order, OrderCommand, OrderError, Status};
use domain::payment::{FailureReason, GatewayError, Payment, PaymentCommand, PaymentStatus};
use domain::promotion::PromotionCommand;
use domain::stock::{StockCommand, StockError};
use domain::{stream_id, Money, OrderId, PaymentId, QuantityDelta, TenantId};
use store::{commit, retry_on_conflict, ExecError, Metadata, Repository};

use crate::{OrderSaga, Outcome, SagaError, SagaStep};

/// Steps one reconciliation may take; far more than any path needs.
const MAX_STEPS: usize = 32;

/// The id of a refund the saga makes itself when a paid order is cancelled.
pub const CANCELLATION_REFUND: &str = "cancellation";

/// A gateway answer for an order that had to wait (unreachable provider): retried later.
fn unavailable(e: GatewayError) -> SagaError {
    SagaError::Gateway(e.to_string())
}

pub(crate) fn refused<E: Display>(aggregate: &'static str, action: &'static str, e: ExecError<E>) -> SagaError {
    match e {
        ExecError::Store(e) => SagaError::Store(e),
        ExecError::Conflict { .. } | ExecError::VersionMismatch { .. } => SagaError::Conflict(action),
        ExecError::Domain(e) => SagaError::Refused { aggregate, action, reason: e.to_string() },
    }
}

/// The order's tenant and id from its stream id `<tenant>:<uuid>`.
fn parse(id: &str) -> Result<(TenantId, OrderId), SagaError> {
    let malformed = || SagaError::Malformed(id.to_owned());
    let stream = domain::StreamId::parse(id).map_err(|_| malformed())?;
    Ok((stream.tenant_id().map_err(|_| malformed())?, stream.key.parse().map_err(|_| malformed())?))
}

impl OrderSaga {
    fn meta(&self, tenant: &TenantId, order: &OrderId, step: &str) -> Metadata {
        Metadata {
            tenant: Some(tenant.to_string()),
            correlation_id: Some(order.to_string()),
            causation_id: Some(crate::NAME.to_owned()),
            idempotency_key: Some(format!("saga:{order}:{step}")),
            traceparent: store::trace::traceparent_of(&tracing::Span::current()),
            ..Metadata::default()
        }
    }

    /// Runs one command on the order's own stream `id` (the order, or its payment) as saga
    /// step `step`.
    async fn exec<A>(&self, repo: &Repository<A>, id: &str, command: A::Command, step: &'static str) -> Result<(), SagaError>
    where
        A: Aggregate + Clone,
        A::Command: Clone,
        A::Error: Display,
    {
        self.exec_on(repo, id, id, command, step).await
    }

    /// Runs one command on stream `target` for order `id`.
    async fn exec_on<A>(
        &self,
        repo: &Repository<A>,
        target: &str,
        id: &str,
        command: A::Command,
        step: &'static str,
    ) -> Result<(), SagaError>
    where
        A: Aggregate + Clone,
        A::Command: Clone,
        A::Error: Display,
    {
        self.tick()?;
        let (tenant, order) = parse(id)?;
        repo.execute(target, command, None, &self.meta(&tenant, &order, step)).await.map(|_| ()).map_err(|e| refused(A::TYPE, step, e))
    }

    /// A gateway call bounded by the configured timeout.
    async fn call<T>(&self, call: impl std::future::Future<Output = Result<T, GatewayError>>) -> Result<T, GatewayError> {
        tokio::time::timeout(self.config.gateway_timeout, call).await.unwrap_or(Err(GatewayError::Timeout))
    }

    /// Moves the order as far as it can go now.
    pub(crate) async fn reconcile(&self, id: &str) -> Result<Outcome, SagaError> {
        parse(id)?;
        for _ in 0..MAX_STEPS {
            let (order, _) = self.repos.orders.read(id).await?;
            let outcome = match order.status {
                // A payment event whose order is not visible here: nothing to do.
                Status::New => Some(Outcome { step: SagaStep::UnknownOrder, due: None }),
                Status::Placed => {
                    self.reserve(id, &order).await?;
                    None
                }
                Status::StockReserved => self.pay(id, &order).await?,
                Status::PaymentAuthorised => {
                    self.exec(&self.repos.orders, id, OrderCommand::Confirm, "confirm").await?;
                    None
                }
                Status::Confirmed => self.settle(id, &order).await?,
                Status::Cancelled => {
                    self.compensate(id, &order).await?;
                    self.pay_refunds(id).await?.then_some(Outcome { step: SagaStep::Compensated, due: None })
                }
                Status::Shipped | Status::Delivered => {
                    self.pay_refunds(id).await?.then_some(Outcome { step: SagaStep::Completed, due: None })
                }
            };
            if let Some(outcome) = outcome {
                return Ok(outcome);
            }
        }
        Err(SagaError::Refused { aggregate: Order::TYPE, action: "reconcile", reason: "no settled state after many steps".into() })
    }

    /// Reserves every line and marks the order reserved in one atomic write, or rejects the
    /// order naming the first SKU short of stock; with whatever else the tenant has waiting
    /// for stock, in one append. Lines of one SKU are reserved as their sum.
    async fn reserve(&self, id: &str, order: &Order) -> Result<(), SagaError> {
        let (tenant, order_id) = parse(id)?;
        let expires_at = self.clock.now() + self.config.reservation_ttl;
        let (reserved, rejected) = (self.meta(&tenant, &order_id, "reserve"), self.meta(&tenant, &order_id, "reject_stock"));
        self.tick()?;
        let (request, answer) = crate::reserving::Reservation::request(id, order_id, order.reservations(), expires_at, reserved, rejected);
        self.reserve_together(&tenant, request, answer).await
    }

    /// Stock is held: authorise the payment, unless the reservation lapsed first.
    async fn pay(&self, id: &str, order: &Order) -> Result<Option<Outcome>, SagaError> {
        let (payment, _) = self.repos.payments.read(id).await?;
        let expired = order.reserved_until.is_some_and(|until| self.clock.now() >= until);
        if expired && payment.status != PaymentStatus::Authorised {
            self.cancel(id, CancelReason::ReservationExpired).await?;
            return Ok(None);
        }
        let (tenant, order_id) = parse(id)?;
        match payment.status {
            PaymentStatus::New => {
                let (Some(customer), Some(amount)) = (order.customer, order.total) else {
                    return Err(SagaError::Malformed(id.to_owned()));
                };
                let method = order.payment_method.clone();
                let command = PaymentCommand::RequestAuthorisation { tenant, order_id, customer, amount, method };
                self.exec(&self.repos.payments, id, command, "request_authorisation").await?;
            }
            PaymentStatus::Requested => {
                let amount = payment.amount.ok_or_else(|| SagaError::Malformed(id.to_owned()))?;
                self.tick()?;
                let key = format!("{id}:authorise");
                let command = match self.call(self.gateway.authorise(&key, amount, &payment.method)).await {
                    Ok(reference) => PaymentCommand::RecordAuthorised { reference },
                    Err(GatewayError::Declined(_)) => PaymentCommand::RecordFailed { reason: FailureReason::Declined },
                    Err(GatewayError::Timeout) => PaymentCommand::RecordFailed { reason: FailureReason::Timeout },
                    Err(e @ GatewayError::Unavailable(_)) => return Err(unavailable(e)),
                };
                if matches!(command, PaymentCommand::RecordAuthorised { .. }) {
                    // The gateway's yes and the order's confirmation: one append.
                    self.confirm_paid(id, Some(command)).await?;
                } else {
                    self.exec(&self.repos.payments, id, command, "record_authorisation").await?;
                }
            }
            // Recorded by an earlier saga version (which confirmed in two more appends).
            PaymentStatus::Authorised => self.confirm_paid(id, None).await?,
            PaymentStatus::Failed => {
                let reason = match payment.failure {
                    Some(FailureReason::Timeout) => CancelReason::PaymentTimeout,
                    _ => CancelReason::PaymentDeclined,
                };
                self.exec(&self.repos.orders, id, OrderCommand::FailPayment { reason }, "fail_payment").await?;
            }
            other => {
                return Err(SagaError::Refused { aggregate: Payment::TYPE, action: "pay", reason: format!("payment is {other:?}") });
            }
        }
        Ok(None)
    }

    async fn cancel(&self, id: &str, reason: CancelReason) -> Result<(), SagaError> {
        match self.exec(&self.repos.orders, id, OrderCommand::Cancel { reason }, "cancel").await {
            // It moved on meanwhile; the next look decides again.
            Err(SagaError::Refused { .. }) => Ok(()),
            other => other,
        }
    }

    /// The order is confirmed: capture, then commit the stock and invoice in one write.
    async fn settle(&self, id: &str, order: &Order) -> Result<Option<Outcome>, SagaError> {
        let (payment, _) = self.repos.payments.read(id).await?;
        match payment.status {
            PaymentStatus::Authorised => {
                let amount = payment.amount.ok_or_else(|| SagaError::Malformed(id.to_owned()))?;
                let reference = payment.reference.clone().unwrap_or_default();
                self.tick()?;
                let key = format!("{id}:capture");
                match self.call(self.gateway.capture(&key, &reference, amount)).await {
                    // The capture, the stock leaving and the invoice: one append.
                    Ok(()) => {
                        if let Err(e) = self.invoice(id, order, true).await {
                            self.record_capture_alone(id, e).await?;
                        }
                    }
                    Err(GatewayError::Declined(_)) => {
                        self.exec(&self.repos.payments, id, PaymentCommand::RecordCaptureFailed, "record_capture").await?
                    }
                    Err(e) => return Err(unavailable(e)),
                }
                Ok(None)
            }
            PaymentStatus::Captured if order.invoice_number.is_none() => {
                self.invoice(id, order, false).await?;
                Ok(None)
            }
            PaymentStatus::Captured => Ok(self.pay_refunds(id).await?.then_some(Outcome { step: SagaStep::Completed, due: None })),
            PaymentStatus::CaptureFailed => {
                self.cancel(id, CancelReason::PaymentDeclined).await?;
                Ok(None)
            }
            other => Err(SagaError::Refused { aggregate: Payment::TYPE, action: "settle", reason: format!("payment is {other:?}") }),
        }
    }

    /// The invoice after a capture failed with `e` (its book kept changing under writers in
    /// other processes, the store went away): the capture goes on record alone, so the
    /// provider's answer is kept and the invoice is retried later without asking it again;
    /// `e` is returned for that retry. A capture already on record changes nothing.
    async fn record_capture_alone(&self, id: &str, e: SagaError) -> Result<(), SagaError> {
        #[cfg(feature = "faults")]
        if matches!(e, SagaError::Injected) {
            return Err(e);
        }
        match self.exec(&self.repos.payments, id, PaymentCommand::RecordCaptured, "record_capture").await {
            Ok(()) | Err(SagaError::Refused { .. }) => Err(e),
            Err(other) => Err(other),
        }
    }

    /// The payment is authorised: record it (when `record` is given, the gateway's answer)
    /// and confirm the order, in one append. An order that moved on meanwhile (cancelled) keeps
    /// only the payment's record, which its compensation then voids.
    async fn confirm_paid(&self, id: &str, record: Option<PaymentCommand>) -> Result<(), SagaError> {
        let (tenant, order_id) = parse(id)?;
        let meta = self.meta(&tenant, &order_id, "confirm_paid");
        let payment_id = PaymentId::from_uuid(order_id.as_uuid());
        self.tick()?;
        retry_on_conflict("order", || async {
            // The payment, then the order: the saga's one lock order for the two.
            let mut paid = match &record {
                Some(command) => {
                    Some(self.repos.payments.prepare(id, command.clone(), None).await.map_err(|e| e.map_domain(|e| e.to_string()))?)
                }
                None => None,
            };
            let mut confirmed = match self.repos.orders.prepare(id, OrderCommand::ConfirmPaid { payment_id }, None).await {
                Ok(p) => Some(p),
                Err(ExecError::Domain(OrderError::IllegalTransition { .. })) => None,
                Err(e) => return Err(e.map_domain(|e| e.to_string())),
            };
            let mut stages: Vec<&mut dyn store::Stage> = Vec::new();
            if let Some(p) = paid.as_mut() {
                stages.push(p);
            }
            if let Some(c) = confirmed.as_mut() {
                stages.push(c);
            }
            if stages.is_empty() {
                return Ok(());
            }
            commit(self.repos.orders.store(), &meta, &mut stages).await?;
            if let Some(p) = paid {
                p.finish().await;
            }
            if let Some(c) = confirmed {
                c.finish().await;
            }
            Ok(())
        })
        .await
        .map_err(|e| refused(Order::TYPE, "confirm_paid", e))
    }

    /// The paid units leave the warehouse, the tenant's invoice book gives the next number and
    /// the order records it: one atomic write, so an order is invoiced exactly when its stock
    /// is committed, and invoice numbers have no gaps. With `captured`, the gateway's capture is
    /// recorded on the payment in the same write (alone if the order moved on meanwhile).
    async fn invoice(&self, id: &str, order: &Order, captured: bool) -> Result<(), SagaError> {
        let (tenant, order_id) = parse(id)?;
        let meta = self.meta(&tenant, &order_id, "invoice");
        self.tick()?;
        if self.invoice_lost() {
            return Err(SagaError::Conflict("invoice"));
        }
        // With whatever else the tenant's book has waiting: one append for them all.
        let (request, answer) = crate::invoicing::Invoice::request(id, order_id, order, captured, meta);
        match self.invoice_together(&tenant, request, answer).await? {
            crate::invoicing::Invoiced::Done => Ok(()),
            // Invoiced already, or cancelled meanwhile: the next look decides, after the
            // capture is on record.
            crate::invoicing::Invoiced::MovedOn if captured => {
                match self.exec(&self.repos.payments, id, PaymentCommand::RecordCaptured, "invoice").await {
                    Err(SagaError::Refused { .. }) => Ok(()), // on record already
                    other => other,
                }
            }
            crate::invoicing::Invoiced::MovedOn => Ok(()),
        }
    }

    /// The order is cancelled: give back its stock, its money and its discount code's use.
    async fn compensate(&self, id: &str, order: &Order) -> Result<(), SagaError> {
        if let Some(discount) = &order.discount {
            // Giving back a use the order does not hold changes nothing, so this repeats safely.
            let (tenant, order_id) = parse(id)?;
            let release = PromotionCommand::Release { order_id };
            self.exec_on(&self.repos.promotions, &stream_id(&tenant, &discount.code), id, release, "release_promotion").await?;
        }
        // Stock is held only by an order that recorded `StockReserved` (they are one write).
        if order.invoice_number.is_none() {
            if order.reserved_until.is_some() && !order.released {
                self.give_back(id, order, OrderCommand::MarkReleased, "release_stock").await?;
            }
        } else if !order.restocked {
            self.give_back(id, order, OrderCommand::MarkRestocked, "restock").await?;
        }
        let (payment, _) = self.repos.payments.read(id).await?;
        let void = match payment.status {
            PaymentStatus::Requested | PaymentStatus::Authorised | PaymentStatus::CaptureFailed => true,
            // A timed-out authorisation may have gone through at the provider.
            PaymentStatus::Failed => payment.failure == Some(FailureReason::Timeout),
            _ => false,
        };
        if void {
            self.tick()?;
            let reference = payment.reference.clone().unwrap_or_default();
            let key = format!("{id}:void");
            match self.call(self.gateway.void(&key, &reference)).await {
                // Declined: there was nothing to release.
                Ok(()) | Err(GatewayError::Declined(_)) => {}
                Err(e) => return Err(unavailable(e)),
            }
            self.exec(&self.repos.payments, id, PaymentCommand::RecordVoided, "record_void").await?;
        } else if payment.status == PaymentStatus::Captured && payment.refundable() > 0 {
            let Some(total) = payment.amount else {
                return Err(SagaError::Malformed(id.to_owned()));
            };
            let amount = Money::new(payment.refundable(), total.currency);
            let command = PaymentCommand::RequestRefund { refund_id: CANCELLATION_REFUND.to_owned(), amount };
            self.exec(&self.repos.payments, id, command, "request_refund").await?;
        }
        Ok(())
    }

    /// Gives a cancelled order's units back in one write with the order's `marker`, so they are
    /// never given back twice: held units are released (`MarkReleased`), units of an invoiced
    /// order are put back on the shelf (`MarkRestocked`). A SKU that holds nothing for the
    /// order is skipped.
    async fn give_back(&self, id: &str, order: &Order, marker: OrderCommand, step: &'static str) -> Result<(), SagaError> {
        let (tenant, order_id) = parse(id)?;
        let meta = self.meta(&tenant, &order_id, step);
        let reason: domain::Name = format!("order {order_id} cancelled").parse().map_err(|_| SagaError::Malformed(id.to_owned()))?;
        let restock = marker == OrderCommand::MarkRestocked;
        self.tick()?;
        retry_on_conflict("order", || async {
            let mut back = Vec::new();
            for (sku, quantity) in order.reservations() {
                let sku: domain::Sku = sku.parse().map_err(|_| ExecError::Domain(format!("bad sku {sku}")))?;
                let command = if restock {
                    let delta = QuantityDelta::try_from(quantity).map_err(|e| ExecError::Domain(e.to_string()))?;
                    StockCommand::Adjust { tenant: tenant.clone(), sku: sku.clone(), delta, reason: reason.clone() }
                } else {
                    StockCommand::Release { order_id }
                };
                match self.repos.stock.prepare(&stream_id(&tenant, &sku), command, None).await {
                    Ok(p) => back.push(p),
                    Err(ExecError::Domain(StockError::ReservationNotFound)) => {}
                    Err(e) => return Err(e.map_domain(|e| e.to_string())),
                }
            }
            let mut marked = match self.repos.orders.prepare(id, marker.clone(), None).await {
                Ok(p) => p,
                Err(ExecError::Domain(OrderError::IllegalTransition { .. })) => return Ok(()),
                Err(e) => return Err(e.map_domain(|e| e.to_string())),
            };
            let mut stages: Vec<&mut dyn store::Stage> = back.iter_mut().map(|p| p as &mut dyn store::Stage).collect();
            stages.push(&mut marked);
            commit(self.repos.stock.store(), &meta, &mut stages).await?;
            for p in back {
                p.finish().await;
            }
            marked.finish().await;
            Ok(())
        })
        .await
        .map_err(|e| refused(Order::TYPE, step, e))
    }

    /// Pays every refund the payment holds but the gateway has not paid yet, recording it on
    /// the payment and the order in one write. True when none is left.
    async fn pay_refunds(&self, id: &str) -> Result<bool, SagaError> {
        let (payment, _) = self.repos.payments.read(id).await?;
        let pending: Vec<(String, i64)> = payment.pending_refunds().map(|(k, r)| (k.clone(), r.amount)).collect();
        let Some(currency) = payment.amount.map(|a| a.currency) else {
            return Ok(true);
        };
        let (tenant, order_id) = parse(id)?;
        for (refund_id, amount) in pending {
            let amount = Money::new(amount, currency);
            self.tick()?;
            let reference = payment.reference.clone().unwrap_or_default();
            let key = format!("{id}:refund:{refund_id}");
            self.call(self.gateway.refund(&key, &reference, amount)).await.map_err(unavailable)?;
            let meta = self.meta(&tenant, &order_id, "record_refund");
            self.tick()?;
            retry_on_conflict("payment", || async {
                let mut paid = self
                    .repos
                    .payments
                    .prepare(id, PaymentCommand::RecordRefunded { refund_id: refund_id.clone() }, None)
                    .await
                    .map_err(|e| e.map_domain(|e| e.to_string()))?;
                if paid.events().is_empty() {
                    return Ok(());
                }
                let mut refunded = self
                    .repos
                    .orders
                    .prepare(id, OrderCommand::Refund { amount }, None)
                    .await
                    .map_err(|e| e.map_domain(|e| e.to_string()))?;
                commit(self.repos.orders.store(), &meta, &mut [&mut paid, &mut refunded]).await?;
                paid.finish().await;
                refunded.finish().await;
                Ok(())
            })
            .await
            .map_err(|e| refused(Payment::TYPE, "record_refund", e))?;
        }
        Ok(true)
    }
}
