use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{StockCommand, StockError, StockEvent};
use crate::{OrderId, Sku, TenantId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    pub quantity: i64,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stock {
    /// Set by the first receipt or adjustment.
    pub sku: Option<Sku>,
    pub tenant: TenantId,
    pub on_hand: i64,
    /// Held units per order.
    pub reservations: BTreeMap<OrderId, Reservation>,
}

impl Stock {
    pub fn reserved(&self) -> i64 {
        self.reservations.values().map(|r| r.quantity).sum()
    }

    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved()
    }
}

impl Aggregate for Stock {
    const TYPE: &'static str = "stock";
    type Command = StockCommand;
    type Event = StockEvent;
    type Error = StockError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _services: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
        match command {
            StockCommand::Receive { tenant, sku, quantity } => {
                let on_hand = self.on_hand + quantity.get();
                let available = on_hand - self.reserved();
                let event = StockEvent::Received { tenant, sku, quantity: quantity.get(), on_hand, available };
                sink.write(event, self).await;
            }
            StockCommand::Adjust { tenant, sku, delta, reason } => {
                let on_hand = self.on_hand + delta.get();
                let reserved = self.reserved();
                if on_hand < reserved || on_hand < 0 {
                    return Err(StockError::AdjustmentBelowReserved { on_hand, reserved });
                }
                let available = on_hand - reserved;
                let event = StockEvent::Adjusted { tenant, sku, delta: delta.get(), reason, on_hand, available };
                sink.write(event, self).await;
            }
            StockCommand::Reserve { order_id, quantity, expires_at, .. } => {
                if self.reservations.contains_key(&order_id) {
                    return Ok(());
                }
                let available = self.available();
                if quantity.get() > available {
                    return Err(StockError::InsufficientStock { available, requested: quantity.get() });
                }
                let event = StockEvent::Reserved { order_id, quantity: quantity.get(), expires_at, available: available - quantity.get() };
                sink.write(event, self).await;
            }
            StockCommand::Release { order_id } => {
                let held = self.reservations.get(&order_id).ok_or(StockError::ReservationNotFound)?;
                let quantity = held.quantity;
                let available = self.available() + quantity;
                sink.write(StockEvent::Released { order_id, quantity, available }, self).await;
            }
            StockCommand::Commit { order_id } => {
                let held = self.reservations.get(&order_id).ok_or(StockError::ReservationNotFound)?;
                let quantity = held.quantity;
                let on_hand = self.on_hand - quantity;
                let available = self.available();
                sink.write(StockEvent::Committed { order_id, quantity, on_hand, available }, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            StockEvent::Received { tenant, sku, on_hand, .. } | StockEvent::Adjusted { tenant, sku, on_hand, .. } => {
                self.tenant = tenant;
                self.sku = Some(sku);
                self.on_hand = on_hand;
            }
            StockEvent::Reserved { order_id, quantity, expires_at, .. } => {
                self.reservations.insert(order_id, Reservation { quantity, expires_at });
            }
            StockEvent::Released { order_id, .. } => {
                self.reservations.remove(&order_id);
            }
            StockEvent::Committed { order_id, on_hand, .. } => {
                self.reservations.remove(&order_id);
                self.on_hand = on_hand;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;
    use proptest::prelude::*;

    use super::*;
    use crate::{Quantity, QuantityDelta};

    fn sku() -> Sku {
        "PHONE-1".parse().expect("valid")
    }

    fn q(n: i64) -> Quantity {
        Quantity::try_from(n).expect("valid quantity")
    }

    fn order(n: u128) -> OrderId {
        OrderId::from_uuid(uuid::Uuid::from_u128(n))
    }

    fn until() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 15, 0).single().expect("valid time")
    }

    fn received(n: i64) -> StockEvent {
        StockEvent::Received { tenant: TenantId::default(), sku: sku(), quantity: n, on_hand: n, available: n }
    }

    fn reserve(o: u128, n: i64) -> StockCommand {
        StockCommand::Reserve { tenant: TenantId::default(), sku: sku(), order_id: order(o), quantity: q(n), expires_at: until() }
    }

    fn reserved(o: u128, n: i64, available: i64) -> StockEvent {
        StockEvent::Reserved { order_id: order(o), quantity: n, expires_at: until(), available }
    }

    fn framework() -> TestFramework<Stock> {
        TestFramework::with(())
    }

    #[test]
    fn receiving_adds_to_on_hand() {
        framework()
            .given(vec![received(5)])
            .when(StockCommand::Receive { tenant: TenantId::default(), sku: sku(), quantity: q(3) })
            .then_expect_events(vec![StockEvent::Received {
                tenant: TenantId::default(),
                sku: sku(),
                quantity: 3,
                on_hand: 8,
                available: 8,
            }]);
    }

    #[test]
    fn an_adjustment_records_its_reason() {
        let reason: crate::Name = "damaged".parse().expect("valid");
        framework()
            .given(vec![received(5)])
            .when(StockCommand::Adjust {
                tenant: TenantId::default(),
                sku: sku(),
                delta: QuantityDelta::try_from(-2).expect("valid"),
                reason: reason.clone(),
            })
            .then_expect_events(vec![StockEvent::Adjusted {
                tenant: TenantId::default(),
                sku: sku(),
                delta: -2,
                reason,
                on_hand: 3,
                available: 3,
            }]);
    }

    #[test]
    fn an_adjustment_below_reserved_units_is_rejected() {
        framework()
            .given(vec![received(5), reserved(1, 4, 1)])
            .when(StockCommand::Adjust {
                tenant: TenantId::default(),
                sku: sku(),
                delta: QuantityDelta::try_from(-2).expect("valid"),
                reason: "count".parse().expect("valid"),
            })
            .then_expect_error(StockError::AdjustmentBelowReserved { on_hand: 3, reserved: 4 });
    }

    #[test]
    fn a_reservation_within_available_stock_is_recorded() {
        framework().given(vec![received(5)]).when(reserve(1, 2)).then_expect_events(vec![reserved(1, 2, 3)]);
    }

    #[test]
    fn a_reservation_beyond_available_stock_is_rejected() {
        framework()
            .given(vec![received(5), reserved(1, 4, 1)])
            .when(reserve(2, 2))
            .then_expect_error(StockError::InsufficientStock { available: 1, requested: 2 });
    }

    #[test]
    fn reserving_again_for_the_same_order_changes_nothing() {
        framework().given(vec![received(5), reserved(1, 2, 3)]).when(reserve(1, 2)).then_expect_events(vec![]);
    }

    #[test]
    fn releasing_gives_the_units_back() {
        framework()
            .given(vec![received(5), reserved(1, 2, 3)])
            .when(StockCommand::Release { order_id: order(1) })
            .then_expect_events(vec![StockEvent::Released { order_id: order(1), quantity: 2, available: 5 }]);
    }

    #[test]
    fn committing_takes_the_units_off_hand() {
        framework()
            .given(vec![received(5), reserved(1, 2, 3)])
            .when(StockCommand::Commit { order_id: order(1) })
            .then_expect_events(vec![StockEvent::Committed { order_id: order(1), quantity: 2, on_hand: 3, available: 3 }]);
    }

    #[test]
    fn releasing_or_committing_an_unknown_reservation_is_rejected() {
        framework()
            .given(vec![received(5)])
            .when(StockCommand::Release { order_id: order(9) })
            .then_expect_error(StockError::ReservationNotFound);
        framework()
            .given(vec![received(5)])
            .when(StockCommand::Commit { order_id: order(9) })
            .then_expect_error(StockError::ReservationNotFound);
    }

    fn any_command() -> impl Strategy<Value = StockCommand> {
        prop_oneof![
            (1i64..50).prop_map(|n| StockCommand::Receive { tenant: TenantId::default(), sku: sku(), quantity: q(n) }),
            (-50i64..50).prop_filter("non-zero", |d| *d != 0).prop_map(|d| StockCommand::Adjust {
                tenant: TenantId::default(),
                sku: sku(),
                delta: QuantityDelta::try_from(d).expect("non-zero"),
                reason: "count".parse().expect("valid"),
            }),
            (0u128..8, 1i64..30).prop_map(|(o, n)| reserve(o, n)),
            (0u128..8).prop_map(|o| StockCommand::Release { order_id: order(o) }),
            (0u128..8).prop_map(|o| StockCommand::Commit { order_id: order(o) }),
        ]
    }

    proptest! {
        /// Whatever commands arrive, in whatever order, stock is never negative and never
        /// over-reserved, and replaying the recorded events rebuilds the same state.
        #[test]
        fn stock_is_never_negative_nor_over_reserved(commands in prop::collection::vec(any_command(), 1..60)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let mut stock = Stock::default();
            let mut log = Vec::new();
            for command in commands {
                let sink = EventSink::default();
                let mut next = stock.clone();
                if rt.block_on(next.handle(command, &(), &sink)).is_ok() {
                    stock = next;
                    log.extend(rt.block_on(sink.collect()));
                }
                prop_assert!(stock.on_hand >= 0);
                prop_assert!(stock.available() >= 0);
            }
            let mut replayed = Stock::default();
            for event in log {
                replayed.apply(event);
            }
            prop_assert_eq!(replayed, stock);
        }
    }
}
