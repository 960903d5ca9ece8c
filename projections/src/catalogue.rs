use async_trait::async_trait;
use domain::product::{Attributes, ProductEvent};
use sqlx::{Any, Transaction};
use store::LogEvent;

use crate::{split_stream_id, Projection, ProjectionError};

/// The product catalogue: one row per product with everything the listing, filters and
/// detail pages need.
pub struct Catalogue;

fn featured(attributes: &Attributes) -> i64 {
    i64::from(attributes.get("featured").is_some_and(|v| v == "true"))
}

#[async_trait]
impl Projection for Catalogue {
    fn name(&self) -> &'static str {
        "catalogue"
    }

    fn handles(&self, aggregate_type: &str) -> bool {
        aggregate_type == "product"
    }

    fn table(&self) -> &'static str {
        "rm_products"
    }

    fn schema(&self, table: &str, suffix: &str) -> Vec<String> {
        vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {table} (
                    tenant TEXT NOT NULL,
                    product_id TEXT NOT NULL,
                    sku TEXT NOT NULL,
                    name TEXT NOT NULL,
                    name_key TEXT NOT NULL,
                    description TEXT NOT NULL,
                    category TEXT NOT NULL,
                    price_amount BIGINT NOT NULL,
                    price_currency TEXT NOT NULL,
                    attributes TEXT NOT NULL,
                    published BIGINT NOT NULL,
                    featured BIGINT NOT NULL,
                    discontinued BIGINT NOT NULL,
                    created_position BIGINT NOT NULL,
                    version BIGINT NOT NULL,
                    PRIMARY KEY (tenant, product_id)
                )"
            ),
            format!("CREATE INDEX IF NOT EXISTS ix_products_category{suffix} ON {table} (tenant, category)"),
            format!("CREATE INDEX IF NOT EXISTS ix_products_name{suffix} ON {table} (tenant, name_key, product_id)"),
            format!("CREATE INDEX IF NOT EXISTS ix_products_price{suffix} ON {table} (tenant, price_amount, product_id)"),
        ]
    }

    async fn apply(&self, tx: &mut Transaction<'static, Any>, table: &str, e: &LogEvent) -> Result<(), ProjectionError> {
        let (tenant, id) = split_stream_id(&e.aggregate_id)?;
        let event: ProductEvent = serde_json::from_value(e.payload.clone())?;
        let update = |set: &str| format!("UPDATE {table} SET {set}, version = $1 WHERE tenant = $2 AND product_id = $3");
        let done = match event {
            ProductEvent::Created { sku, name, description, category, price, attributes, .. } => {
                let money = price.money();
                sqlx::query(&format!(
                    "INSERT INTO {table} (tenant, product_id, sku, name, name_key, description, category, price_amount, \
                       price_currency, attributes, published, featured, discontinued, created_position, version) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11, 0, $12, $13) \
                     ON CONFLICT (tenant, product_id) DO NOTHING"
                ))
                .bind(tenant)
                .bind(id)
                .bind(sku.as_str())
                .bind(name.as_str())
                .bind(name.as_str().to_lowercase())
                .bind(description.as_str())
                .bind(category.as_str())
                .bind(money.amount)
                .bind(money.currency.as_str())
                .bind(serde_json::to_string(&attributes)?)
                .bind(featured(&attributes))
                .bind(e.cursor.position)
                .bind(e.sequence)
                .execute(&mut **tx)
                .await?
            }
            ProductEvent::DetailsUpdated { name, description, category, attributes } => {
                sqlx::query(&update("name = $4, name_key = $5, description = $6, category = $7, attributes = $8, featured = $9"))
                    .bind(e.sequence)
                    .bind(tenant)
                    .bind(id)
                    .bind(name.as_str())
                    .bind(name.as_str().to_lowercase())
                    .bind(description.as_str())
                    .bind(category.as_str())
                    .bind(serde_json::to_string(&attributes)?)
                    .bind(featured(&attributes))
                    .execute(&mut **tx)
                    .await?
            }
            ProductEvent::PriceChanged { price, .. } => {
                sqlx::query(&update("price_amount = $4, price_currency = $5"))
                    .bind(e.sequence)
                    .bind(tenant)
                    .bind(id)
                    .bind(price.money().amount)
                    .bind(price.money().currency.as_str())
                    .execute(&mut **tx)
                    .await?
            }
            ProductEvent::Published | ProductEvent::Unpublished | ProductEvent::Discontinued => {
                let set = match event {
                    ProductEvent::Published => "published = 1",
                    ProductEvent::Unpublished => "published = 0",
                    _ => "published = 0, discontinued = 1",
                };
                sqlx::query(&update(set)).bind(e.sequence).bind(tenant).bind(id).execute(&mut **tx).await?
            }
        };
        let _ = done;
        Ok(())
    }
}
