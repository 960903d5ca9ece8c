use std::collections::BTreeMap;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{FailureReason, PaymentCommand, PaymentError, PaymentEvent};
use crate::{Money, OrderId, TenantId, UserId};

/// Where a payment is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    #[default]
    New,
    /// Asked of the gateway; its answer is not recorded yet.
    Requested,
    Authorised,
    Failed,
    Captured,
    CaptureFailed,
    Voided,
}

/// A refund and whether the gateway has paid it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub amount: i64,
    pub paid: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    pub status: PaymentStatus,
    pub tenant: TenantId,
    pub order_id: Option<OrderId>,
    pub customer: Option<UserId>,
    pub amount: Option<Money>,
    pub method: String,
    /// The gateway's reference once authorised.
    pub reference: Option<String>,
    pub failure: Option<FailureReason>,
    pub refunds: BTreeMap<String, Refund>,
}

impl Payment {
    /// Captured money not yet held by a refund.
    pub fn refundable(&self) -> i64 {
        if self.status != PaymentStatus::Captured {
            return 0;
        }
        self.amount.map_or(0, |a| a.amount) - self.refunds.values().map(|r| r.amount).sum::<i64>()
    }

    /// Refunds recorded but not yet paid by the gateway.
    pub fn pending_refunds(&self) -> impl Iterator<Item = (&String, &Refund)> {
        self.refunds.iter().filter(|(_, r)| !r.paid)
    }

    fn refunded(&self) -> i64 {
        self.refunds.values().filter(|r| r.paid).map(|r| r.amount).sum()
    }

    fn require(&self, allowed: &[PaymentStatus], action: &'static str) -> Result<(), PaymentError> {
        match self.status {
            PaymentStatus::New => Err(PaymentError::NotFound),
            s if allowed.contains(&s) => Ok(()),
            from => Err(PaymentError::IllegalTransition { from, action }),
        }
    }
}

impl Aggregate for Payment {
    const TYPE: &'static str = "payment";
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Error = PaymentError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
        use PaymentStatus::*;
        let event = match command {
            PaymentCommand::RequestAuthorisation { tenant, order_id, customer, amount, method } => {
                if self.status != New {
                    let same = self.order_id == Some(order_id) && self.amount == Some(amount) && self.method == method;
                    return if same { Ok(()) } else { Err(PaymentError::AlreadyRequested) };
                }
                if amount.amount <= 0 {
                    return Err(PaymentError::InvalidAmount);
                }
                PaymentEvent::AuthorisationRequested { tenant, order_id, customer, amount, method }
            }
            PaymentCommand::RecordAuthorised { reference } => {
                self.require(&[Requested], "recording an authorisation")?;
                PaymentEvent::Authorised { reference }
            }
            PaymentCommand::RecordFailed { reason } => {
                self.require(&[Requested], "recording a failed authorisation")?;
                PaymentEvent::Failed { reason }
            }
            PaymentCommand::RecordCaptured => {
                self.require(&[Authorised], "capturing")?;
                PaymentEvent::Captured { amount: self.amount.ok_or(PaymentError::NotFound)? }
            }
            PaymentCommand::RecordCaptureFailed => {
                self.require(&[Authorised], "recording a failed capture")?;
                PaymentEvent::CaptureFailed
            }
            PaymentCommand::RecordVoided => {
                self.require(&[Requested, Authorised, CaptureFailed, Failed], "voiding")?;
                PaymentEvent::Voided
            }
            PaymentCommand::RequestRefund { refund_id, amount } => {
                self.require(&[Captured], "refunding")?;
                if let Some(existing) = self.refunds.get(&refund_id) {
                    return if existing.amount == amount.amount { Ok(()) } else { Err(PaymentError::AlreadyRequested) };
                }
                let currency = self.amount.ok_or(PaymentError::NotFound)?.currency;
                if amount.amount <= 0 || amount.currency != currency {
                    return Err(PaymentError::InvalidAmount);
                }
                let refundable = self.refundable();
                if amount.amount > refundable {
                    return Err(PaymentError::RefundTooLarge { requested: amount.amount, refundable });
                }
                PaymentEvent::RefundRequested { refund_id, amount }
            }
            PaymentCommand::RecordRefunded { refund_id } => {
                let refund = self.refunds.get(&refund_id).ok_or(PaymentError::UnknownRefund)?;
                if refund.paid {
                    return Ok(());
                }
                let currency = self.amount.ok_or(PaymentError::NotFound)?.currency;
                let amount = Money::new(refund.amount, currency);
                let refunded_total = Money::new(self.refunded() + refund.amount, currency);
                PaymentEvent::Refunded { refund_id, amount, refunded_total }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            PaymentEvent::AuthorisationRequested { tenant, order_id, customer, amount, method } => {
                self.status = PaymentStatus::Requested;
                self.tenant = tenant;
                self.order_id = Some(order_id);
                self.customer = Some(customer);
                self.amount = Some(amount);
                self.method = method;
            }
            PaymentEvent::Authorised { reference } => {
                self.status = PaymentStatus::Authorised;
                self.reference = Some(reference);
            }
            PaymentEvent::Failed { reason } => {
                self.status = PaymentStatus::Failed;
                self.failure = Some(reason);
            }
            PaymentEvent::Captured { .. } => self.status = PaymentStatus::Captured,
            PaymentEvent::CaptureFailed => self.status = PaymentStatus::CaptureFailed,
            PaymentEvent::Voided => self.status = PaymentStatus::Voided,
            PaymentEvent::RefundRequested { refund_id, amount } => {
                self.refunds.insert(refund_id, Refund { amount: amount.amount, paid: false });
            }
            PaymentEvent::Refunded { refund_id, .. } => {
                if let Some(r) = self.refunds.get_mut(&refund_id) {
                    r.paid = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    fn eur(n: i64) -> Money {
        Money::new(n, "EUR".parse().expect("valid"))
    }

    fn order() -> OrderId {
        OrderId::from_uuid(uuid::Uuid::from_u128(7))
    }

    fn requested() -> PaymentEvent {
        PaymentEvent::AuthorisationRequested {
            tenant: TenantId::default(),
            order_id: order(),
            customer: UserId::from_uuid(uuid::Uuid::from_u128(1)),
            amount: eur(1_000),
            method: "tok_approve".into(),
        }
    }

    fn captured() -> Vec<PaymentEvent> {
        vec![requested(), PaymentEvent::Authorised { reference: "r".into() }, PaymentEvent::Captured { amount: eur(1_000) }]
    }

    fn refund(id: &str, n: i64) -> PaymentCommand {
        PaymentCommand::RequestRefund { refund_id: id.into(), amount: eur(n) }
    }

    #[test]
    fn requesting_again_with_the_same_figures_changes_nothing() {
        let PaymentEvent::AuthorisationRequested { tenant, order_id, customer, amount, method } = requested() else { unreachable!() };
        TestFramework::<Payment>::with(())
            .given(vec![requested()])
            .when(PaymentCommand::RequestAuthorisation { tenant, order_id, customer, amount, method })
            .then_expect_events(vec![]);
    }

    #[test]
    fn refunds_never_exceed_what_was_captured() {
        let mut given = captured();
        given.push(PaymentEvent::RefundRequested { refund_id: "a".into(), amount: eur(600) });
        TestFramework::<Payment>::with(())
            .given(given)
            .when(refund("b", 401))
            .then_expect_error(PaymentError::RefundTooLarge { requested: 401, refundable: 400 });
        TestFramework::<Payment>::with(())
            .given(captured())
            .when(refund("a", 1_000))
            .then_expect_events(vec![PaymentEvent::RefundRequested { refund_id: "a".into(), amount: eur(1_000) }]);
    }

    #[test]
    fn a_refund_needs_a_capture_and_a_positive_amount_in_the_currency() {
        TestFramework::<Payment>::with(())
            .given(vec![requested(), PaymentEvent::Authorised { reference: "r".into() }])
            .when(refund("a", 10))
            .then_expect_error(PaymentError::IllegalTransition { from: PaymentStatus::Authorised, action: "refunding" });
        TestFramework::<Payment>::with(()).given(captured()).when(refund("a", 0)).then_expect_error(PaymentError::InvalidAmount);
        TestFramework::<Payment>::with(())
            .given(captured())
            .when(PaymentCommand::RequestRefund { refund_id: "a".into(), amount: Money::new(5, "USD".parse().expect("valid")) })
            .then_expect_error(PaymentError::InvalidAmount);
    }

    #[test]
    fn a_paid_refund_is_recorded_once() {
        let mut given = captured();
        given.push(PaymentEvent::RefundRequested { refund_id: "a".into(), amount: eur(300) });
        let paid = PaymentEvent::Refunded { refund_id: "a".into(), amount: eur(300), refunded_total: eur(300) };
        TestFramework::<Payment>::with(())
            .given(given.clone())
            .when(PaymentCommand::RecordRefunded { refund_id: "a".into() })
            .then_expect_events(vec![paid.clone()]);
        given.push(paid);
        TestFramework::<Payment>::with(())
            .given(given)
            .when(PaymentCommand::RecordRefunded { refund_id: "a".into() })
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_captured_payment_cannot_be_voided() {
        TestFramework::<Payment>::with(())
            .given(captured())
            .when(PaymentCommand::RecordVoided)
            .then_expect_error(PaymentError::IllegalTransition { from: PaymentStatus::Captured, action: "voiding" });
    }
}
