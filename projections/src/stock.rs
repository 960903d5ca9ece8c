use async_trait::async_trait;
use domain::stock::StockEvent;
use sqlx::{Any, Transaction};
use store::LogEvent;

use crate::{split_stream_id, Projection, ProjectionError};

/// Availability per SKU: on hand, reserved, available. Stock events carry the resulting
/// figures, so this view only copies them.
pub struct StockLevels;

#[async_trait]
impl Projection for StockLevels {
    fn name(&self) -> &'static str {
        "stock"
    }

    fn handles(&self, aggregate_type: &str) -> bool {
        aggregate_type == "stock"
    }

    fn table(&self) -> &'static str {
        "rm_stock"
    }

    fn schema(&self, table: &str, _suffix: &str) -> Vec<String> {
        vec![format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                tenant TEXT NOT NULL,
                sku TEXT NOT NULL,
                on_hand BIGINT NOT NULL,
                reserved BIGINT NOT NULL,
                available BIGINT NOT NULL,
                version BIGINT NOT NULL,
                PRIMARY KEY (tenant, sku)
            )"
        )]
    }

    async fn apply(&self, tx: &mut Transaction<'static, Any>, table: &str, e: &LogEvent) -> Result<(), ProjectionError> {
        let (tenant, sku) = split_stream_id(&e.aggregate_id)?;
        let event: StockEvent = serde_json::from_value(e.payload.clone())?;
        match event {
            StockEvent::Received { on_hand, available, .. }
            | StockEvent::Adjusted { on_hand, available, .. }
            | StockEvent::Committed { on_hand, available, .. } => {
                sqlx::query(&format!(
                    "INSERT INTO {table} (tenant, sku, on_hand, reserved, available, version) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (tenant, sku) DO UPDATE SET on_hand = excluded.on_hand, reserved = excluded.reserved, \
                     available = excluded.available, version = excluded.version"
                ))
                .bind(tenant)
                .bind(sku)
                .bind(on_hand)
                .bind(on_hand - available)
                .bind(available)
                .bind(e.sequence)
                .execute(&mut **tx)
                .await?;
            }
            StockEvent::Reserved { available, .. } | StockEvent::Released { available, .. } => {
                sqlx::query(&format!(
                    "UPDATE {table} SET available = $1, reserved = on_hand - $1, version = $2 WHERE tenant = $3 AND sku = $4"
                ))
                .bind(available)
                .bind(e.sequence)
                .bind(tenant)
                .bind(sku)
                .execute(&mut **tx)
                .await?;
            }
        }
        Ok(())
    }
}
