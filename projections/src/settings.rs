//! Each tenant's own settings, for invoices (the seller's name, address and VAT id).

use async_trait::async_trait;
use domain::settings::SettingsEvent;
use serde_json::json;
use sqlx::{Any, Transaction};
use store::LogEvent;

use crate::{split_stream_id, Projection, ProjectionError};

/// `rm_settings`: one row per tenant with settings.
pub struct Settings;

#[async_trait]
impl Projection for Settings {
    fn name(&self) -> &'static str {
        "settings"
    }

    fn handles(&self, aggregate_type: &str) -> bool {
        aggregate_type == "tenant_settings"
    }

    fn table(&self) -> &'static str {
        "rm_settings"
    }

    async fn apply(&self, tx: &mut Transaction<'static, Any>, table: &str, events: &[&LogEvent]) -> Result<(), ProjectionError> {
        for e in events {
            let (tenant, _) = split_stream_id(&e.aggregate_id)?;
            let SettingsEvent::Updated { settings: s, .. } = crate::projection::payload(e)?;
            let address = json!({
                "line1": s.address.line1.as_str(),
                "city": s.address.city.as_str(),
                "postal_code": s.address.postal_code.as_str(),
                "country": s.address.country.as_str(),
            });
            sqlx::query(&format!(
                "INSERT INTO {table} (tenant, legal_name, address, vat_id, currency, tax_rate_bp, shipping_amount, free_shipping_threshold, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (tenant) DO UPDATE SET legal_name = excluded.legal_name, \
                 address = excluded.address, vat_id = excluded.vat_id, currency = excluded.currency, tax_rate_bp = excluded.tax_rate_bp, \
                 shipping_amount = excluded.shipping_amount, free_shipping_threshold = excluded.free_shipping_threshold, version = excluded.version"
            ))
            .bind(tenant.to_owned())
            .bind(s.legal_name.to_string())
            .bind(address.to_string())
            .bind(s.vat_id.map(|v| v.to_string()))
            .bind(s.currency.as_str().to_owned())
            .bind(i64::from(s.tax_rate_bp))
            .bind(s.shipping_amount)
            .bind(s.free_shipping_threshold)
            .bind(e.sequence)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }
}
