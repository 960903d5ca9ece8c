//! The tenant's invoice book: one stream per tenant whose version is the last invoice number.
//! An invoice is issued in the same atomic write as the order's `Invoiced` event, so numbers
//! are sequential with no gaps and no number is given twice (a concurrent issuer conflicts on
//! the stream's next sequence and retries with the next number).

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::OrderId;

#[derive(Debug, Clone, PartialEq)]
pub enum InvoiceCommand {
    Issue { order_id: OrderId },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceEvent {
    Issued { number: u64, order_id: OrderId },
}

impl DomainEvent for InvoiceEvent {
    fn event_type(&self) -> String {
        "issued".to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvoiceError {}

/// The stream key of a tenant's invoice book (under [`crate::stream_id`]).
pub const INVOICE_BOOK: &str = "invoices";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InvoiceBook {
    pub last: u64,
}

impl InvoiceBook {
    pub fn next(&self) -> u64 {
        self.last + 1
    }
}

impl Aggregate for InvoiceBook {
    const TYPE: &'static str = "invoice_book";
    type Command = InvoiceCommand;
    type Event = InvoiceEvent;
    type Error = InvoiceError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
        let InvoiceCommand::Issue { order_id } = command;
        sink.write(InvoiceEvent::Issued { number: self.next(), order_id }, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        let InvoiceEvent::Issued { number, .. } = event;
        self.last = number;
    }
}
