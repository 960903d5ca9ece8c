use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq)]
pub enum OrderCommand {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderEvent {}

impl DomainEvent for OrderEvent {
    fn event_type(&self) -> String {
        match *self {}
    }

    fn event_version(&self) -> String {
        match *self {}
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OrderError {}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Order {}

impl Aggregate for Order {
    const TYPE: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &Self::Services, _: &EventSink<Self>) -> Result<(), Self::Error> {
        match command {}
    }

    fn apply(&mut self, event: Self::Event) {
        match event {}
    }
}
