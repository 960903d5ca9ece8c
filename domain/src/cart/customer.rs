use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::CartId;

/// Which cart is a customer's current one (stream keyed by the user id). Opening a cart
/// appends here in the same write as the cart's creation, so two concurrent requests cannot
/// both give one customer a new cart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CustomerCarts {
    pub current: Option<CartId>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CustomerCartsCommand {
    Open { cart_id: CartId },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CustomerCartsEvent {
    Opened { cart_id: CartId },
}

impl DomainEvent for CustomerCartsEvent {
    fn event_type(&self) -> String {
        "opened".to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

/// Never refused: whether the current cart is still open is the caller's check, made under
/// this stream's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("never")]
pub enum Never {}

impl Aggregate for CustomerCarts {
    const TYPE: &'static str = "customer_carts";
    type Command = CustomerCartsCommand;
    type Event = CustomerCartsEvent;
    type Error = Never;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
        let CustomerCartsCommand::Open { cart_id } = command;
        sink.write(CustomerCartsEvent::Opened { cart_id }, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        let CustomerCartsEvent::Opened { cart_id } = event;
        self.current = Some(cart_id);
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    #[test]
    fn opening_a_cart_makes_it_the_current_one() {
        let (a, b) = (CartId::from_uuid(uuid::Uuid::from_u128(1)), CartId::from_uuid(uuid::Uuid::from_u128(2)));
        TestFramework::<CustomerCarts>::with(())
            .given(vec![CustomerCartsEvent::Opened { cart_id: a }])
            .when(CustomerCartsCommand::Open { cart_id: b })
            .then_expect_events(vec![CustomerCartsEvent::Opened { cart_id: b }]);
    }
}
