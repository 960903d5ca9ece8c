use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Name, OrderId, Sku, TenantId};

/// Every event carries the resulting figures, so a view never recomputes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StockEvent {
    Received { tenant: TenantId, sku: Sku, quantity: i64, on_hand: i64, available: i64 },
    Adjusted { tenant: TenantId, sku: Sku, delta: i64, reason: Name, on_hand: i64, available: i64 },
    Reserved { order_id: OrderId, quantity: i64, expires_at: DateTime<Utc>, available: i64 },
    Released { order_id: OrderId, quantity: i64, available: i64 },
    Committed { order_id: OrderId, quantity: i64, on_hand: i64, available: i64 },
}

impl DomainEvent for StockEvent {
    fn event_type(&self) -> String {
        match self {
            StockEvent::Received { .. } => "received",
            StockEvent::Adjusted { .. } => "adjusted",
            StockEvent::Reserved { .. } => "reserved",
            StockEvent::Released { .. } => "released",
            StockEvent::Committed { .. } => "committed",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
