use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{PromotionCommand, PromotionError, PromotionEvent};
use crate::{Money, OrderId, PromotionCode, TenantId, UserId};

/// How much a code takes off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DiscountKind {
    /// A share of the subtotal in basis points (1000 = 10%), rounded half up.
    Percentage { percentage_bp: u32 },
    /// A fixed amount off, never more than the subtotal; only for carts in its currency.
    Fixed { amount: Money },
}

/// What a code promises, whoever uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Terms {
    #[serde(flatten)]
    pub kind: DiscountKind,
    pub min_subtotal: Option<Money>,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
}

impl Terms {
    fn valid(&self) -> bool {
        let kind_ok = match self.kind {
            DiscountKind::Percentage { percentage_bp } => (1..=10_000).contains(&percentage_bp),
            DiscountKind::Fixed { amount } => amount.amount > 0,
        };
        let window_ok = match (self.starts_at, self.ends_at) {
            (Some(start), Some(end)) => start < end,
            _ => true,
        };
        let minimum_ok = match (self.min_subtotal, self.kind) {
            (Some(min), DiscountKind::Fixed { amount }) => min.amount >= 0 && min.currency == amount.currency,
            (Some(min), _) => min.amount >= 0,
            (None, _) => true,
        };
        kind_ok && window_ok && minimum_ok
    }

    /// What the code takes off `subtotal` at `at`, or why it does not apply.
    pub fn discount(&self, subtotal: Money, at: DateTime<Utc>) -> Result<Money, PromotionError> {
        if self.starts_at.is_some_and(|s| at < s) {
            return Err(PromotionError::NotStarted);
        }
        if self.ends_at.is_some_and(|e| at >= e) {
            return Err(PromotionError::Ended);
        }
        if let Some(minimum) = self.min_subtotal {
            if minimum.currency != subtotal.currency {
                return Err(PromotionError::OtherCurrency);
            }
            if subtotal.amount < minimum.amount {
                return Err(PromotionError::BelowMinimum { minimum });
            }
        }
        let off = match self.kind {
            DiscountKind::Percentage { percentage_bp } => {
                let off = (i128::from(subtotal.amount) * i128::from(percentage_bp) + 5_000) / 10_000;
                i64::try_from(off).unwrap_or(subtotal.amount)
            }
            DiscountKind::Fixed { amount } => {
                if amount.currency != subtotal.currency {
                    return Err(PromotionError::OtherCurrency);
                }
                amount.amount
            }
        };
        Ok(Money::new(off.clamp(0, subtotal.amount), subtotal.currency))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Promotion {
    /// `None` until created.
    pub code: Option<PromotionCode>,
    pub tenant: TenantId,
    pub terms: Option<Terms>,
    pub usage_limit: Option<u32>,
    pub per_customer_limit: Option<u32>,
    pub active: bool,
    /// The orders holding a use, and whose.
    pub redemptions: BTreeMap<OrderId, UserId>,
}

impl Promotion {
    pub fn uses(&self) -> u32 {
        u32::try_from(self.redemptions.len()).unwrap_or(u32::MAX)
    }

    fn uses_by(&self, customer: UserId) -> u32 {
        u32::try_from(self.redemptions.values().filter(|c| **c == customer).count()).unwrap_or(u32::MAX)
    }

    /// The terms as `customer` may use them now, checking activity and both limits.
    pub fn terms_for(&self, customer: Option<UserId>) -> Result<Terms, PromotionError> {
        let terms = self.terms.ok_or(PromotionError::NotFound)?;
        if !self.active {
            return Err(PromotionError::Inactive);
        }
        if self.usage_limit.is_some_and(|limit| self.uses() >= limit) {
            return Err(PromotionError::Exhausted);
        }
        if let (Some(limit), Some(customer)) = (self.per_customer_limit, customer) {
            if self.uses_by(customer) >= limit {
                return Err(PromotionError::CustomerLimitReached);
            }
        }
        Ok(terms)
    }
}

impl Aggregate for Promotion {
    const TYPE: &'static str = "promotion";
    type Command = PromotionCommand;
    type Event = PromotionEvent;
    type Error = PromotionError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
        let event = match command {
            PromotionCommand::Create { tenant, code, terms, usage_limit, per_customer_limit } => {
                if self.code.is_some() {
                    return Err(PromotionError::AlreadyExists);
                }
                if !terms.valid() || usage_limit == Some(0) || per_customer_limit == Some(0) {
                    return Err(PromotionError::InvalidTerms);
                }
                PromotionEvent::Created { tenant, code, terms, usage_limit, per_customer_limit }
            }
            PromotionCommand::Deactivate => {
                if self.code.is_none() {
                    return Err(PromotionError::NotFound);
                }
                if !self.active {
                    return Ok(());
                }
                PromotionEvent::Deactivated
            }
            PromotionCommand::Redeem { order_id, customer, subtotal, at } => {
                if self.redemptions.contains_key(&order_id) {
                    return Ok(());
                }
                let discount = self.terms_for(Some(customer))?.discount(subtotal, at)?;
                PromotionEvent::Redeemed { order_id, customer, discount, uses: self.uses() + 1 }
            }
            PromotionCommand::Release { order_id } => {
                if !self.redemptions.contains_key(&order_id) {
                    return Ok(());
                }
                PromotionEvent::Released { order_id, uses: self.uses() - 1 }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            PromotionEvent::Created { tenant, code, terms, usage_limit, per_customer_limit } => {
                self.tenant = tenant;
                self.code = Some(code);
                self.terms = Some(terms);
                self.usage_limit = usage_limit;
                self.per_customer_limit = per_customer_limit;
                self.active = true;
            }
            PromotionEvent::Deactivated => self.active = false,
            PromotionEvent::Redeemed { order_id, customer, .. } => {
                self.redemptions.insert(order_id, customer);
            }
            PromotionEvent::Released { order_id, .. } => {
                self.redemptions.remove(&order_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use proptest::prelude::*;

    use super::*;

    type Given = TestFramework<Promotion>;

    fn eur(amount: i64) -> Money {
        Money::new(amount, "EUR".parse().expect("valid"))
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("valid")
    }

    fn order(n: u128) -> OrderId {
        OrderId::from_uuid(uuid::Uuid::from_u128(n))
    }

    fn customer(n: u128) -> UserId {
        UserId::from_uuid(uuid::Uuid::from_u128(1_000 + n))
    }

    fn ten_percent() -> Terms {
        Terms {
            kind: DiscountKind::Percentage { percentage_bp: 1_000 },
            min_subtotal: Some(eur(2_000)),
            starts_at: Some(at(0)),
            ends_at: Some(at(100)),
        }
    }

    fn created(usage_limit: Option<u32>, per_customer_limit: Option<u32>) -> PromotionEvent {
        PromotionEvent::Created {
            tenant: TenantId::default(),
            code: "SUMMER".parse().expect("valid"),
            terms: ten_percent(),
            usage_limit,
            per_customer_limit,
        }
    }

    fn redeem(n: u128, who: u128, subtotal: i64) -> PromotionCommand {
        PromotionCommand::Redeem { order_id: order(n), customer: customer(who), subtotal: eur(subtotal), at: at(10) }
    }

    fn redeemed(n: u128, who: u128, discount: i64, uses: u32) -> PromotionEvent {
        PromotionEvent::Redeemed { order_id: order(n), customer: customer(who), discount: eur(discount), uses }
    }

    #[test]
    fn a_code_is_created_once_with_valid_terms() {
        let create = |terms| PromotionCommand::Create {
            tenant: TenantId::default(),
            code: "SUMMER".parse().expect("valid"),
            terms,
            usage_limit: Some(2),
            per_customer_limit: None,
        };
        Given::with(()).given_no_previous_events().when(create(ten_percent())).then_expect_events(vec![created(Some(2), None)]);
        Given::with(()).given(vec![created(None, None)]).when(create(ten_percent())).then_expect_error(PromotionError::AlreadyExists);
        let mut bad = ten_percent();
        bad.kind = DiscountKind::Percentage { percentage_bp: 10_001 };
        Given::with(()).given_no_previous_events().when(create(bad)).then_expect_error(PromotionError::InvalidTerms);
        let mut backwards = ten_percent();
        backwards.ends_at = Some(at(-1));
        Given::with(()).given_no_previous_events().when(create(backwards)).then_expect_error(PromotionError::InvalidTerms);
    }

    #[test]
    fn a_redemption_takes_the_percentage_rounded_half_up() {
        // 10% of 25.05 is 2.505, rounded to 2.51.
        Given::with(()).given(vec![created(None, None)]).when(redeem(1, 1, 2_505)).then_expect_events(vec![redeemed(1, 1, 251, 1)]);
    }

    #[test]
    fn a_redemption_outside_the_terms_is_refused() {
        Given::with(())
            .given(vec![created(None, None)])
            .when(redeem(1, 1, 1_999))
            .then_expect_error(PromotionError::BelowMinimum { minimum: eur(2_000) });
        let late = PromotionCommand::Redeem { order_id: order(1), customer: customer(1), subtotal: eur(5_000), at: at(100) };
        Given::with(()).given(vec![created(None, None)]).when(late).then_expect_error(PromotionError::Ended);
        let early = PromotionCommand::Redeem { order_id: order(1), customer: customer(1), subtotal: eur(5_000), at: at(-1) };
        Given::with(()).given(vec![created(None, None)]).when(early).then_expect_error(PromotionError::NotStarted);
        let usd = PromotionCommand::Redeem {
            order_id: order(1),
            customer: customer(1),
            subtotal: Money::new(5_000, "USD".parse().expect("valid")),
            at: at(10),
        };
        Given::with(()).given(vec![created(None, None)]).when(usd).then_expect_error(PromotionError::OtherCurrency);
        Given::with(())
            .given(vec![created(None, None), PromotionEvent::Deactivated])
            .when(redeem(1, 1, 5_000))
            .then_expect_error(PromotionError::Inactive);
        Given::with(()).given_no_previous_events().when(redeem(1, 1, 5_000)).then_expect_error(PromotionError::NotFound);
    }

    #[test]
    fn the_usage_limit_and_the_per_customer_limit_hold() {
        Given::with(())
            .given(vec![created(Some(1), None), redeemed(1, 1, 500, 1)])
            .when(redeem(2, 2, 5_000))
            .then_expect_error(PromotionError::Exhausted);
        Given::with(())
            .given(vec![created(None, Some(1)), redeemed(1, 1, 500, 1)])
            .when(redeem(2, 1, 5_000))
            .then_expect_error(PromotionError::CustomerLimitReached);
        Given::with(())
            .given(vec![created(None, Some(1)), redeemed(1, 1, 500, 1)])
            .when(redeem(2, 2, 5_000))
            .then_expect_events(vec![redeemed(2, 2, 500, 2)]);
    }

    #[test]
    fn redeeming_for_the_same_order_again_changes_nothing() {
        Given::with(()).given(vec![created(Some(1), None), redeemed(1, 1, 500, 1)]).when(redeem(1, 1, 5_000)).then_expect_events(vec![]);
    }

    #[test]
    fn a_released_use_can_be_taken_again() {
        let given = vec![created(Some(1), None), redeemed(1, 1, 500, 1), PromotionEvent::Released { order_id: order(1), uses: 0 }];
        Given::with(()).given(given).when(redeem(2, 2, 5_000)).then_expect_events(vec![redeemed(2, 2, 500, 1)]);
        Given::with(())
            .given(vec![created(Some(1), None)])
            .when(PromotionCommand::Release { order_id: order(9) })
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![created(Some(1), None), redeemed(1, 1, 500, 1)])
            .when(PromotionCommand::Release { order_id: order(1) })
            .then_expect_events(vec![PromotionEvent::Released { order_id: order(1), uses: 0 }]);
    }

    #[test]
    fn deactivating_is_idempotent_and_needs_a_code() {
        Given::with(())
            .given(vec![created(None, None)])
            .when(PromotionCommand::Deactivate)
            .then_expect_events(vec![PromotionEvent::Deactivated]);
        Given::with(())
            .given(vec![created(None, None), PromotionEvent::Deactivated])
            .when(PromotionCommand::Deactivate)
            .then_expect_events(vec![]);
        Given::with(()).given_no_previous_events().when(PromotionCommand::Deactivate).then_expect_error(PromotionError::NotFound);
    }

    #[test]
    fn a_fixed_amount_never_exceeds_the_subtotal() {
        let terms = Terms { kind: DiscountKind::Fixed { amount: eur(1_000) }, min_subtotal: None, starts_at: None, ends_at: None };
        assert_eq!(terms.discount(eur(600), at(0)), Ok(eur(600)));
        assert_eq!(terms.discount(eur(6_000), at(0)), Ok(eur(1_000)));
    }

    proptest! {
        /// Whatever the order of redemptions and releases, uses never pass the limit and the
        /// count in each event is the number of orders holding one.
        #[test]
        fn uses_never_pass_the_limit(limit in 1u32..5, steps in proptest::collection::vec((0u128..8, any::<bool>()), 0..40)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let mut p = Promotion::default();
            p.apply(created(Some(limit), None));
            for (n, release) in steps {
                let command = if release { PromotionCommand::Release { order_id: order(n) } } else { redeem(n, n, 5_000) };
                let sink: EventSink<Promotion> = EventSink::default();
                let mut next = p.clone();
                if rt.block_on(next.handle(command, &(), &sink)).is_ok() {
                    p = next;
                }
                prop_assert!(p.uses() <= limit);
            }
        }
    }
}
