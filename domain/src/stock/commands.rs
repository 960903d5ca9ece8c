use chrono::{DateTime, Utc};

use crate::{Name, OrderId, Quantity, QuantityDelta, Sku, TenantId};

#[derive(Debug, Clone, PartialEq)]
pub enum StockCommand {
    /// Goods arrived.
    Receive { tenant: TenantId, sku: Sku, quantity: Quantity },
    /// A correction (count, damage, loss) with the reason recorded.
    Adjust { tenant: TenantId, sku: Sku, delta: QuantityDelta, reason: Name },
    /// Hold units for an order until `expires_at`. Reserving again for the same order changes
    /// nothing, so a re-delivered saga step cannot reserve twice.
    Reserve { tenant: TenantId, sku: Sku, order_id: OrderId, quantity: Quantity, expires_at: DateTime<Utc> },
    /// Give an order's held units back.
    Release { order_id: OrderId },
    /// The order was paid: its held units leave the warehouse.
    Commit { order_id: OrderId },
}
