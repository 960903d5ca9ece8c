use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{OrderCommand, OrderError, OrderEvent, OrderLine};
use crate::{Money, PaymentId, TenantId, UserId};

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not placed yet (the aggregate before its first event).
    #[default]
    New,
    /// Placed; the saga is reserving stock.
    Placed,
    /// Every line reserved; the saga is authorising payment.
    StockReserved,
    /// Payment authorised; the saga confirms.
    PaymentAuthorised,
    Confirmed,
    Shipped,
    Delivered,
    Cancelled,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub status: Status,
    pub tenant: TenantId,
    pub customer: Option<UserId>,
    pub lines: Vec<OrderLine>,
    pub total: Option<Money>,
    /// The customer's payment method token, as given at placement.
    pub payment_method: String,
    pub payment_id: Option<PaymentId>,
    /// Given back so far (minor units, the order's currency).
    pub refunded: i64,
    /// Set when the payment was captured (and the stock committed).
    pub invoice_number: Option<u64>,
    /// A cancelled, invoiced order's units were put back.
    pub restocked: bool,
    /// A cancelled order's held units were given back.
    pub released: bool,
    /// When its stock reservations lapse unless paid.
    pub reserved_until: Option<chrono::DateTime<chrono::Utc>>,
    /// Why it was cancelled, if it was.
    pub cancel_reason: Option<super::CancelReason>,
    /// The discount code it was placed with; its redemption is given back if it is cancelled.
    pub discount: Option<super::OrderDiscount>,
}

impl Order {
    /// Units to reserve per SKU: lines of the same SKU add up.
    pub fn reservations(&self) -> std::collections::BTreeMap<String, i64> {
        let mut out = std::collections::BTreeMap::new();
        for line in &self.lines {
            *out.entry(line.sku.to_string()).or_default() += line.quantity;
        }
        out
    }

    fn require(&self, allowed: &[Status], action: &'static str) -> Result<(), OrderError> {
        match self.status {
            Status::New => Err(OrderError::NotFound),
            s if allowed.contains(&s) => Ok(()),
            from => Err(OrderError::IllegalTransition { from, action }),
        }
    }
}

/// What an order (or a cart about to become one) costs: the lines' subtotal, less the
/// discount, plus tax on what is left (half up), plus shipping; all in `shipping`'s currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub subtotal: Money,
    pub discount: Money,
    pub tax: Money,
    pub shipping: Money,
    pub total: Money,
}

impl Totals {
    /// The one way orders and carts are summed up. `discount` never exceeds the subtotal.
    pub fn of(lines: &[OrderLine], discount: i64, tax_rate_bp: u32, shipping: Money) -> Result<Totals, OrderError> {
        let currency = shipping.currency;
        let mut subtotal: i64 = 0;
        for line in lines {
            if line.unit_price.currency != currency {
                return Err(OrderError::MixedCurrencies { expected: currency, found: line.unit_price.currency });
            }
            let amount = line.unit_price.amount.checked_mul(line.quantity).ok_or(OrderError::TooLarge)?;
            subtotal = subtotal.checked_add(amount).ok_or(OrderError::TooLarge)?;
        }
        let discount = discount.clamp(0, subtotal);
        let taxable = subtotal - discount;
        let tax = i128::from(taxable) * i128::from(tax_rate_bp);
        let tax = i64::try_from((tax + 5_000) / 10_000).map_err(|_| OrderError::TooLarge)?;
        let total = taxable.checked_add(tax).and_then(|t| t.checked_add(shipping.amount)).ok_or(OrderError::TooLarge)?;
        let m = |amount| Money::new(amount, currency);
        Ok(Totals { subtotal: m(subtotal), discount: m(discount), tax: m(tax), shipping, total: m(total) })
    }
}

impl Aggregate for Order {
    const TYPE: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
        use Status::*;
        let event = match command {
            OrderCommand::Place {
                tenant,
                order_id,
                customer,
                lines,
                discount,
                tax_rate_bp,
                shipping,
                shipping_address,
                payment_method,
            } => {
                if self.status != New {
                    return Err(OrderError::AlreadyPlaced);
                }
                if lines.is_empty() {
                    return Err(OrderError::NoLines);
                }
                let lines: Vec<OrderLine> = lines
                    .into_iter()
                    .map(|l| OrderLine { sku: l.sku, quantity: l.quantity.get(), unit_price: l.unit_price.money(), name: l.name })
                    .collect();
                let off = discount.as_ref().map_or(0, |d| d.amount.amount);
                let Totals { subtotal, discount: discounted, tax, shipping, total } = Totals::of(&lines, off, tax_rate_bp, shipping)?;
                if let Some(d) = &discount {
                    if d.amount.amount <= 0 || d.amount != discounted {
                        return Err(OrderError::InvalidDiscount);
                    }
                }
                OrderEvent::Placed {
                    tenant,
                    order_id,
                    customer,
                    lines,
                    subtotal,
                    tax,
                    shipping,
                    total,
                    shipping_address,
                    payment_method,
                    discount,
                    tax_rate_bp: Some(tax_rate_bp),
                }
            }
            OrderCommand::MarkStockReserved { expires_at } => {
                self.require(&[Placed], "marking stock reserved")?;
                OrderEvent::StockReserved { expires_at }
            }
            OrderCommand::RejectStock { sku } => {
                self.require(&[Placed], "rejecting stock")?;
                OrderEvent::StockRejected { sku }
            }
            OrderCommand::MarkPaymentAuthorised { payment_id } => {
                self.require(&[StockReserved], "authorising payment")?;
                OrderEvent::PaymentAuthorised { payment_id }
            }
            OrderCommand::ConfirmPaid { payment_id } => {
                self.require(&[StockReserved], "authorising payment")?;
                sink.write(OrderEvent::PaymentAuthorised { payment_id }, self).await;
                OrderEvent::Confirmed
            }
            OrderCommand::FailPayment { reason } => {
                self.require(&[StockReserved], "failing payment")?;
                OrderEvent::PaymentFailed { reason }
            }
            OrderCommand::Confirm => {
                self.require(&[PaymentAuthorised], "confirming")?;
                OrderEvent::Confirmed
            }
            OrderCommand::Cancel { reason } => {
                self.require(&[Placed, StockReserved, PaymentAuthorised, Confirmed], "cancelling")?;
                OrderEvent::Cancelled { reason }
            }
            OrderCommand::Ship { carrier, tracking_number } => {
                self.require(&[Confirmed], "shipping")?;
                OrderEvent::Shipped { carrier, tracking_number }
            }
            OrderCommand::Deliver => {
                self.require(&[Shipped], "delivering")?;
                OrderEvent::Delivered
            }
            OrderCommand::Refund { amount } => {
                // A cancelled order is refunded only if money may have been taken: its payment
                // was authorised (then captured, and the order invoiced or cancelled before it
                // could be; the payment holds what was really taken).
                let after_cancel = if self.payment_id.is_some() { Cancelled } else { Confirmed };
                self.require(&[Confirmed, Shipped, Delivered, after_cancel], "refunding")?;
                let total = self.total.ok_or(OrderError::NotFound)?;
                if amount.amount <= 0 || amount.currency != total.currency {
                    return Err(OrderError::InvalidRefund);
                }
                let refundable = total.amount - self.refunded;
                if amount.amount > refundable {
                    return Err(OrderError::RefundTooLarge { requested: amount.amount, refundable });
                }
                OrderEvent::Refunded { amount, refunded_total: Money::new(self.refunded + amount.amount, total.currency) }
            }
            OrderCommand::AssignInvoice { number } => {
                self.require(&[Confirmed], "invoicing")?;
                if let Some(n) = self.invoice_number {
                    return Err(OrderError::AlreadyInvoiced(n));
                }
                OrderEvent::Invoiced { number }
            }
            OrderCommand::MarkReleased => {
                self.require(&[Cancelled], "releasing stock")?;
                if self.reserved_until.is_none() || self.invoice_number.is_some() || self.released {
                    return Err(OrderError::IllegalTransition { from: self.status, action: "releasing stock" });
                }
                OrderEvent::StockReleased
            }
            OrderCommand::MarkRestocked => {
                self.require(&[Cancelled], "restocking")?;
                if self.invoice_number.is_none() || self.restocked {
                    return Err(OrderError::IllegalTransition { from: self.status, action: "restocking" });
                }
                OrderEvent::Restocked
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            OrderEvent::Placed { tenant, customer, lines, total, payment_method, discount, .. } => {
                self.payment_method = payment_method;
                self.discount = discount;
                self.status = Status::Placed;
                self.tenant = tenant;
                self.customer = Some(customer);
                self.lines = lines;
                self.total = Some(total);
            }
            OrderEvent::StockReserved { expires_at } => {
                self.status = Status::StockReserved;
                self.reserved_until = Some(expires_at);
            }
            OrderEvent::Invoiced { number } => self.invoice_number = Some(number),
            OrderEvent::Restocked => self.restocked = true,
            OrderEvent::StockReleased => self.released = true,
            OrderEvent::PaymentAuthorised { payment_id } => {
                self.status = Status::PaymentAuthorised;
                self.payment_id = Some(payment_id);
            }
            OrderEvent::Confirmed => self.status = Status::Confirmed,
            OrderEvent::StockRejected { .. } => {
                self.status = Status::Cancelled;
                self.cancel_reason = Some(super::CancelReason::OutOfStock);
            }
            OrderEvent::PaymentFailed { reason } | OrderEvent::Cancelled { reason } => {
                self.status = Status::Cancelled;
                self.cancel_reason = Some(reason);
            }
            OrderEvent::Shipped { .. } => self.status = Status::Shipped,
            OrderEvent::Delivered => self.status = Status::Delivered,
            OrderEvent::Refunded { refunded_total, .. } => self.refunded = refunded_total.amount,
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::order::{CancelReason, PricedLine, ShippingAddress};
    use crate::{OrderId, Price, Quantity};

    fn until() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("valid")
    }

    fn eur(amount: i64) -> Money {
        Money::new(amount, "EUR".parse().expect("valid"))
    }

    fn line(sku: &str, quantity: i64, unit: i64) -> PricedLine {
        PricedLine {
            sku: sku.parse().expect("valid"),
            quantity: Quantity::try_from(quantity).expect("valid"),
            unit_price: Price::try_from(eur(unit)).expect("valid"),
            name: None,
        }
    }

    fn address(country: &str) -> ShippingAddress {
        ShippingAddress {
            name: "Ada".parse().expect("valid"),
            line1: "1 Main St".parse().expect("valid"),
            line2: None,
            city: "Berlin".parse().expect("valid"),
            region: None,
            postal_code: "10115".parse().expect("valid"),
            country: country.parse().expect("valid country"),
        }
    }

    fn order_id() -> OrderId {
        OrderId::from_uuid(uuid::Uuid::from_u128(7))
    }

    fn customer() -> UserId {
        UserId::from_uuid(uuid::Uuid::from_u128(8))
    }

    fn place(lines: Vec<PricedLine>) -> OrderCommand {
        OrderCommand::Place {
            tenant: TenantId::default(),
            order_id: order_id(),
            customer: customer(),
            lines,
            discount: None,
            tax_rate_bp: 1_900,
            shipping: eur(499),
            shipping_address: address("DE"),
            payment_method: "tok_approve".into(),
        }
    }

    /// Two lines of A (2 × 10.00 and 1 × 10.00) and one of B (3 × 3.33): subtotal 39.99,
    /// 19% tax 7.5981 → 7.60, shipping 4.99, total 52.58.
    fn placed() -> OrderEvent {
        let lines = vec![line("A", 2, 1_000), line("B", 3, 333), line("A", 1, 1_000)];
        OrderEvent::Placed {
            tenant: TenantId::default(),
            order_id: order_id(),
            customer: customer(),
            lines: lines
                .into_iter()
                .map(|l| OrderLine { sku: l.sku, quantity: l.quantity.get(), unit_price: l.unit_price.money(), name: l.name })
                .collect(),
            subtotal: eur(3_999),
            tax: eur(760),
            shipping: eur(499),
            total: eur(5_258),
            shipping_address: address("DE"),
            payment_method: "tok_approve".into(),
            discount: None,
            tax_rate_bp: Some(1_900),
        }
    }

    fn confirmed() -> Vec<OrderEvent> {
        vec![
            placed(),
            OrderEvent::StockReserved { expires_at: until() },
            OrderEvent::PaymentAuthorised { payment_id: PaymentId::from_uuid(uuid::Uuid::from_u128(9)) },
            OrderEvent::Confirmed,
        ]
    }

    fn framework() -> TestFramework<Order> {
        TestFramework::with(())
    }

    #[test]
    fn placing_prices_the_lines_with_tax_rounded_half_up() {
        let lines = vec![line("A", 2, 1_000), line("B", 3, 333), line("A", 1, 1_000)];
        framework().given_no_previous_events().when(place(lines)).then_expect_events(vec![placed()]);
    }

    #[test]
    fn lines_of_one_sku_are_reserved_together() {
        let mut order = Order::default();
        order.apply(placed());
        assert_eq!(order.reservations(), [("A".to_owned(), 3), ("B".to_owned(), 3)].into_iter().collect());
    }

    #[test]
    fn placing_refuses_bad_orders() {
        framework().given(vec![placed()]).when(place(vec![line("A", 1, 1)])).then_expect_error(OrderError::AlreadyPlaced);
        framework().given_no_previous_events().when(place(vec![])).then_expect_error(OrderError::NoLines);
        let mut dollars = line("A", 1, 100);
        dollars.unit_price = Price::try_from(Money::new(100, "USD".parse().expect("valid"))).expect("valid");
        framework().given_no_previous_events().when(place(vec![dollars])).then_expect_error(OrderError::MixedCurrencies {
            expected: "EUR".parse().expect("valid"),
            found: "USD".parse().expect("valid"),
        });
        framework()
            .given_no_previous_events()
            .when(place(vec![line("A", 1_000_000, i64::MAX / 1_000)]))
            .then_expect_error(OrderError::TooLarge);
    }

    #[test]
    fn the_saga_path_moves_step_by_step() {
        let payment_id = PaymentId::from_uuid(uuid::Uuid::from_u128(9));
        framework()
            .given(vec![placed()])
            .when(OrderCommand::MarkStockReserved { expires_at: until() })
            .then_expect_events(vec![OrderEvent::StockReserved { expires_at: until() }]);
        framework()
            .given(vec![placed(), OrderEvent::StockReserved { expires_at: until() }])
            .when(OrderCommand::MarkPaymentAuthorised { payment_id })
            .then_expect_events(vec![OrderEvent::PaymentAuthorised { payment_id }]);
        framework()
            .given(vec![placed(), OrderEvent::StockReserved { expires_at: until() }, OrderEvent::PaymentAuthorised { payment_id }])
            .when(OrderCommand::Confirm)
            .then_expect_events(vec![OrderEvent::Confirmed]);
        framework()
            .given(vec![placed(), OrderEvent::StockReserved { expires_at: until() }])
            .when(OrderCommand::ConfirmPaid { payment_id })
            .then_expect_events(vec![OrderEvent::PaymentAuthorised { payment_id }, OrderEvent::Confirmed]);
        let sku: crate::Sku = "A".parse().expect("valid");
        framework()
            .given(vec![placed()])
            .when(OrderCommand::RejectStock { sku: sku.clone() })
            .then_expect_events(vec![OrderEvent::StockRejected { sku }]);
        framework()
            .given(vec![placed(), OrderEvent::StockReserved { expires_at: until() }])
            .when(OrderCommand::FailPayment { reason: CancelReason::PaymentDeclined })
            .then_expect_events(vec![OrderEvent::PaymentFailed { reason: CancelReason::PaymentDeclined }]);
    }

    #[test]
    fn people_cancel_before_shipment_then_ship_deliver_and_refund() {
        let cancel = || OrderCommand::Cancel { reason: CancelReason::CancelledByCustomer };
        framework()
            .given(confirmed())
            .when(cancel())
            .then_expect_events(vec![OrderEvent::Cancelled { reason: CancelReason::CancelledByCustomer }]);
        let ship = || OrderCommand::Ship { carrier: "DHL".parse().expect("valid"), tracking_number: "00340434".parse().expect("valid") };
        let shipped = OrderEvent::Shipped { carrier: "DHL".parse().expect("valid"), tracking_number: "00340434".parse().expect("valid") };
        framework().given(confirmed()).when(ship()).then_expect_events(vec![shipped.clone()]);
        let mut after_ship = confirmed();
        after_ship.push(shipped);
        framework()
            .given(after_ship.clone())
            .when(cancel())
            .then_expect_error(OrderError::IllegalTransition { from: Status::Shipped, action: "cancelling" });
        framework().given(after_ship.clone()).when(OrderCommand::Deliver).then_expect_events(vec![OrderEvent::Delivered]);
        framework()
            .given(after_ship)
            .when(OrderCommand::Refund { amount: eur(1_000) })
            .then_expect_events(vec![OrderEvent::Refunded { amount: eur(1_000), refunded_total: eur(1_000) }]);
    }

    #[test]
    fn a_cancelled_order_is_refunded_only_if_its_payment_was_authorised() {
        let refund = || OrderCommand::Refund { amount: eur(1_000) };
        let cancelled = OrderEvent::Cancelled { reason: CancelReason::CancelledByCustomer };
        // Cancelled between the capture and the invoice: the captured money goes back.
        let mut paid = confirmed();
        paid.push(cancelled.clone());
        framework()
            .given(paid)
            .when(refund())
            .then_expect_events(vec![OrderEvent::Refunded { amount: eur(1_000), refunded_total: eur(1_000) }]);
        // Cancelled before any payment: nothing was taken.
        framework()
            .given(vec![placed(), OrderEvent::StockReserved { expires_at: until() }, cancelled])
            .when(refund())
            .then_expect_error(OrderError::IllegalTransition { from: Status::Cancelled, action: "refunding" });
    }

    #[test]
    fn refunds_never_exceed_the_total() {
        let mut partly = confirmed();
        partly.push(OrderEvent::Refunded { amount: eur(5_000), refunded_total: eur(5_000) });
        framework()
            .given(partly.clone())
            .when(OrderCommand::Refund { amount: eur(259) })
            .then_expect_error(OrderError::RefundTooLarge { requested: 259, refundable: 258 });
        framework()
            .given(partly.clone())
            .when(OrderCommand::Refund { amount: eur(258) })
            .then_expect_events(vec![OrderEvent::Refunded { amount: eur(258), refunded_total: eur(5_258) }]);
        framework().given(partly.clone()).when(OrderCommand::Refund { amount: eur(0) }).then_expect_error(OrderError::InvalidRefund);
        let dollars = Money::new(1, "USD".parse().expect("valid"));
        framework().given(partly).when(OrderCommand::Refund { amount: dollars }).then_expect_error(OrderError::InvalidRefund);
        framework()
            .given(vec![placed()])
            .when(OrderCommand::Refund { amount: eur(1) })
            .then_expect_error(OrderError::IllegalTransition { from: Status::Placed, action: "refunding" });
    }

    #[test]
    fn every_illegal_transition_is_refused() {
        use Status::*;
        let payment_id = PaymentId::from_uuid(uuid::Uuid::from_u128(9));
        let history = |status: Status| -> Vec<OrderEvent> {
            let all = confirmed();
            let mut events = match status {
                Placed => all[..1].to_vec(),
                StockReserved => all[..2].to_vec(),
                PaymentAuthorised => all[..3].to_vec(),
                Confirmed => all,
                Shipped | Delivered => {
                    let mut e = all;
                    e.push(OrderEvent::Shipped { carrier: "DHL".parse().expect("valid"), tracking_number: "1".parse().expect("valid") });
                    e
                }
                Cancelled => vec![placed(), OrderEvent::Cancelled { reason: CancelReason::OutOfStock }],
                New => vec![],
            };
            if status == Delivered {
                events.push(OrderEvent::Delivered);
            }
            events
        };
        let commands: Vec<(OrderCommand, &[Status])> = vec![
            (OrderCommand::MarkStockReserved { expires_at: until() }, &[Placed]),
            (OrderCommand::RejectStock { sku: "A".parse().expect("valid") }, &[Placed]),
            (OrderCommand::MarkPaymentAuthorised { payment_id }, &[StockReserved]),
            (OrderCommand::ConfirmPaid { payment_id }, &[StockReserved]),
            (OrderCommand::FailPayment { reason: CancelReason::PaymentTimeout }, &[StockReserved]),
            (OrderCommand::Confirm, &[PaymentAuthorised]),
            (OrderCommand::Cancel { reason: CancelReason::CancelledByCustomer }, &[Placed, StockReserved, PaymentAuthorised, Confirmed]),
            (OrderCommand::Ship { carrier: "DHL".parse().expect("valid"), tracking_number: "1".parse().expect("valid") }, &[Confirmed]),
            (OrderCommand::Deliver, &[Shipped]),
        ];
        for status in [Placed, StockReserved, PaymentAuthorised, Confirmed, Shipped, Delivered, Cancelled] {
            for (command, allowed) in &commands {
                let mut order = Order::default();
                for e in history(status) {
                    order.apply(e);
                }
                assert_eq!(order.status, status);
                if allowed.contains(&status) {
                    continue;
                }
                let result = framework().given(history(status)).when(command.clone()).inspect_result();
                assert!(
                    matches!(result, Err(OrderError::IllegalTransition { from, .. }) if from == status),
                    "{status:?} should refuse {command:?}: {result:?}"
                );
            }
        }
        framework().given_no_previous_events().when(OrderCommand::Confirm).then_expect_error(OrderError::NotFound);
    }
}
