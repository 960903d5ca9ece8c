use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq)]
pub enum PaymentCommand {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentEvent {}

impl DomainEvent for PaymentEvent {
    fn event_type(&self) -> String {
        match *self {}
    }

    fn event_version(&self) -> String {
        match *self {}
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PaymentError {}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Payment {}

impl Aggregate for Payment {
    const TYPE: &'static str = "payment";
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Error = PaymentError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &Self::Services, _: &EventSink<Self>) -> Result<(), Self::Error> {
        match command {}
    }

    fn apply(&mut self, event: Self::Event) {
        match event {}
    }
}
