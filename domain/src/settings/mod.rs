//! The seller's own settings, one stream per tenant (`stream_id(tenant, SETTINGS)`), changed by
//! its admins: the legal name, address and VAT id invoices show, the default currency, the
//! tax rate and the shipping terms (a flat amount, free above a threshold) orders and carts
//! are priced with. A tenant without settings is priced with the installation's defaults
//! (`SHOP_TAX_RATE_BP`, `SHOP_TAX_RATES`, `SHOP_SHIPPING_AMOUNT`).

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{CountryCode, Currency, Money, Name, TenantId};

/// The stream id of a tenant's settings, within the tenant.
pub const SETTINGS: &str = "settings";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SellerAddress {
    pub line1: Name,
    pub city: Name,
    pub postal_code: Name,
    pub country: CountryCode,
}

/// Everything a tenant sets, replaced as a whole by each update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SellerSettings {
    pub legal_name: Name,
    pub address: SellerAddress,
    pub vat_id: Option<Name>,
    pub currency: Currency,
    /// Basis points (2000 = 20%), 0 to 10000.
    pub tax_rate_bp: u32,
    /// Flat shipping per order in minor units of the order's currency.
    pub shipping_amount: i64,
    /// Orders whose subtotal less discount reaches this ship free (minor units).
    pub free_shipping_threshold: Option<i64>,
}

impl SellerSettings {
    /// Shipping of an order worth `goods` (its subtotal less its discount).
    pub fn shipping_for(&self, goods: Money) -> Money {
        let free = self.free_shipping_threshold.is_some_and(|t| goods.amount >= t);
        Money::new(if free { 0 } else { self.shipping_amount }, goods.currency)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantSettings {
    pub tenant: TenantId,
    /// `None` until first set.
    pub current: Option<SellerSettings>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SettingsCommand {
    Update { tenant: TenantId, settings: SellerSettings },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SettingsEvent {
    Updated {
        tenant: TenantId,
        #[serde(flatten)]
        settings: SellerSettings,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    #[error("a tax rate is 0 to 10000 basis points and amounts are not negative")]
    Invalid,
}

impl DomainEvent for SettingsEvent {
    fn event_type(&self) -> String {
        "updated".to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl Aggregate for TenantSettings {
    const TYPE: &'static str = "tenant_settings";
    type Command = SettingsCommand;
    type Event = SettingsEvent;
    type Error = SettingsError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
        let SettingsCommand::Update { tenant, settings } = command;
        let valid =
            settings.tax_rate_bp <= 10_000 && settings.shipping_amount >= 0 && settings.free_shipping_threshold.is_none_or(|t| t >= 0);
        if !valid {
            return Err(SettingsError::Invalid);
        }
        // The same settings again record nothing.
        if self.current.as_ref() != Some(&settings) {
            sink.write(SettingsEvent::Updated { tenant, settings }, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        let SettingsEvent::Updated { tenant, settings } = event;
        self.tenant = tenant;
        self.current = Some(settings);
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    fn settings(tax_rate_bp: u32) -> SellerSettings {
        SellerSettings {
            legal_name: "Acme GmbH".parse().expect("valid"),
            address: SellerAddress {
                line1: "1 Main St".parse().expect("valid"),
                city: "Berlin".parse().expect("valid"),
                postal_code: "10115".parse().expect("valid"),
                country: "DE".parse().expect("valid"),
            },
            vat_id: Some("DE123456789".parse().expect("valid")),
            currency: "EUR".parse().expect("valid"),
            tax_rate_bp,
            shipping_amount: 495,
            free_shipping_threshold: Some(5_000),
        }
    }

    fn update(tax_rate_bp: u32) -> SettingsCommand {
        SettingsCommand::Update { tenant: TenantId::default(), settings: settings(tax_rate_bp) }
    }

    fn updated(tax_rate_bp: u32) -> SettingsEvent {
        SettingsEvent::Updated { tenant: TenantId::default(), settings: settings(tax_rate_bp) }
    }

    #[test]
    fn settings_are_replaced_as_a_whole_and_the_same_again_records_nothing() {
        TestFramework::<TenantSettings>::with(()).given_no_previous_events().when(update(1_900)).then_expect_events(vec![updated(1_900)]);
        TestFramework::<TenantSettings>::with(()).given(vec![updated(1_900)]).when(update(700)).then_expect_events(vec![updated(700)]);
        TestFramework::<TenantSettings>::with(()).given(vec![updated(1_900)]).when(update(1_900)).then_expect_events(vec![]);
        TestFramework::<TenantSettings>::with(()).given_no_previous_events().when(update(10_001)).then_expect_error(SettingsError::Invalid);
    }

    #[test]
    fn shipping_is_free_from_the_threshold() {
        let eur = |n| Money::new(n, "EUR".parse().expect("valid"));
        assert_eq!(settings(0).shipping_for(eur(4_999)), eur(495));
        assert_eq!(settings(0).shipping_for(eur(5_000)), eur(0));
    }
}
