use std::collections::BTreeMap;

use async_trait::async_trait;
use domain::stock::StockEvent;
use sqlx::{Any, Transaction};
use store::LogEvent;

use crate::projection::{rows_per_statement, values};
use crate::{split_stream_id, Projection, ProjectionError};

/// Availability per SKU: on hand, reserved, available. Stock events carry the resulting
/// figures, so a batch folds down to the last figures of each SKU.
pub struct StockLevels;

/// The figures of one SKU after a batch.
struct Level {
    /// Known when an event of the batch carried it; otherwise the stored value stands.
    on_hand: Option<i64>,
    available: i64,
    version: i64,
    /// The log position of the last event applied (live low-stock alerts follow it).
    position: i64,
}

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

    async fn apply(&self, tx: &mut Transaction<'static, Any>, table: &str, events: &[&LogEvent]) -> Result<(), ProjectionError> {
        // Ordered keys: concurrent writers touch rows in the same order and cannot deadlock.
        let mut levels: BTreeMap<(&str, &str), Level> = BTreeMap::new();
        for e in events {
            let key = split_stream_id(&e.aggregate_id)?;
            let level = levels.entry(key).or_insert(Level { on_hand: None, available: 0, version: 0, position: 0 });
            match crate::projection::payload(e)? {
                StockEvent::Received { on_hand, available, .. }
                | StockEvent::Adjusted { on_hand, available, .. }
                | StockEvent::Committed { on_hand, available, .. } => {
                    level.on_hand = Some(on_hand);
                    level.available = available;
                }
                StockEvent::Reserved { available, .. } | StockEvent::Released { available, .. } => level.available = available,
            }
            level.version = e.sequence;
            level.position = e.cursor.position;
        }
        let (full, partial): (Vec<_>, Vec<_>) = levels.into_iter().partition(|(_, l)| l.on_hand.is_some());
        for chunk in full.chunks(rows_per_statement(7)) {
            let sql = format!(
                "INSERT INTO {table} (tenant, sku, on_hand, reserved, available, version, position) VALUES {} \
                 ON CONFLICT (tenant, sku) DO UPDATE SET on_hand = excluded.on_hand, reserved = excluded.reserved, \
                 available = excluded.available, version = excluded.version, position = excluded.position",
                values(chunk.len(), 7)
            );
            let mut query = sqlx::query(&sql);
            for ((tenant, sku), l) in chunk {
                let on_hand = l.on_hand.unwrap_or_default();
                query = query
                    .bind(*tenant)
                    .bind(*sku)
                    .bind(on_hand)
                    .bind(on_hand - l.available)
                    .bind(l.available)
                    .bind(l.version)
                    .bind(l.position);
            }
            query.execute(&mut **tx).await?;
        }
        for ((tenant, sku), l) in partial {
            sqlx::query(&format!(
                "UPDATE {table} SET available = $1, reserved = on_hand - $1, version = $2, position = $5 WHERE tenant = $3 AND sku = $4"
            ))
            .bind(l.available)
            .bind(l.version)
            .bind(tenant)
            .bind(sku)
            .bind(l.position)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }
}
