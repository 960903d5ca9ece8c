//! The seller's own settings (admins): `PUT /admin/settings` replaces them as a whole,
//! `GET /admin/settings` shows them. Orders and carts are priced with them from then on.

use aide::axum::routing::get_with;
use aide::axum::ApiRouter;
use axum::extract::State;
use axum::http::HeaderMap;
use domain::settings::{SellerAddress, SellerSettings, SettingsCommand, SETTINGS};
use domain::{stream_id, InvalidValue, Name};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{AppState, CommandAccepted};
use http_kit::{Admin, ApiError, AppJson, ErrorCode, IfMatch, Problems, RequestMeta, Versioned};

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new().api_route(
        "/admin/settings",
        get_with(show, |op| {
            op.describe(
                "get_settings",
                "admin",
                "The seller's settings: legal name, address, VAT id, currency, tax rate and shipping terms.",
            )
            .problems(&[ErrorCode::NotFound])
        })
        .put_with(update, |op| {
            op.describe(
                "update_settings",
                "admin",
                "Replace the seller's settings; orders and carts are priced with them from now on, invoices show the seller.",
            )
            .problems(&[ErrorCode::VersionConflict])
        }),
    )
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressBody {
    pub line1: String,
    pub city: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
}

/// The settings as they are sent and shown.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    pub legal_name: String,
    pub address: AddressBody,
    pub vat_id: Option<String>,
    /// ISO 4217, e.g. `EUR`.
    pub default_currency: String,
    /// Basis points, 0 to 10000 (1900 = 19%).
    pub tax_rate_bp: u32,
    /// Flat shipping per order, in minor units of the order's currency.
    pub shipping_amount: i64,
    /// Orders whose subtotal less discount reaches this ship free (minor units).
    pub free_shipping_threshold: Option<i64>,
}

fn name(field: &'static str, raw: &str) -> Result<Name, InvalidValue> {
    raw.parse().map_err(|_| InvalidValue::new(field, "must be 1-200 characters of text"))
}

impl TryFrom<SettingsBody> for SellerSettings {
    type Error = InvalidValue;

    fn try_from(b: SettingsBody) -> Result<Self, Self::Error> {
        if b.tax_rate_bp > 10_000 {
            return Err(InvalidValue::new("tax_rate_bp", "must be 0 to 10000 basis points"));
        }
        if b.shipping_amount < 0 || b.shipping_amount > 100_000_000 {
            return Err(InvalidValue::new("shipping_amount", "must be 0 to 100000000 minor units"));
        }
        if b.free_shipping_threshold.is_some_and(|t| t < 0) {
            return Err(InvalidValue::new("free_shipping_threshold", "must not be negative"));
        }
        Ok(SellerSettings {
            legal_name: name("legal_name", &b.legal_name)?,
            address: SellerAddress {
                line1: name("address.line1", &b.address.line1)?,
                city: name("address.city", &b.address.city)?,
                postal_code: name("address.postal_code", &b.address.postal_code)?,
                country: b
                    .address
                    .country
                    .parse()
                    .map_err(|_| InvalidValue::new("address.country", "must be an iso 3166-1 alpha-2 code such as DE"))?,
            },
            vat_id: b.vat_id.as_deref().map(|v| name("vat_id", v)).transpose()?,
            currency: b.default_currency.parse().map_err(|_| InvalidValue::new("default_currency", "not an iso 4217 currency code"))?,
            tax_rate_bp: b.tax_rate_bp,
            shipping_amount: b.shipping_amount,
            free_shipping_threshold: b.free_shipping_threshold,
        })
    }
}

impl From<&SellerSettings> for SettingsBody {
    fn from(s: &SellerSettings) -> Self {
        SettingsBody {
            legal_name: s.legal_name.to_string(),
            address: AddressBody {
                line1: s.address.line1.to_string(),
                city: s.address.city.to_string(),
                postal_code: s.address.postal_code.to_string(),
                country: s.address.country.to_string(),
            },
            vat_id: s.vat_id.as_ref().map(ToString::to_string),
            default_currency: s.currency.as_str().to_owned(),
            tax_rate_bp: s.tax_rate_bp,
            shipping_amount: s.shipping_amount,
            free_shipping_threshold: s.free_shipping_threshold,
        }
    }
}

/// `GET /admin/settings`: 404 until first set.
async fn show(State(state): State<AppState>, Admin(admin): Admin, headers: HeaderMap) -> Result<Versioned<SettingsBody>, ApiError> {
    let (settings, version) = state.settings.read(&stream_id(&admin.tenant, SETTINGS)).await?;
    let current = settings.current.ok_or_else(|| ApiError::not_found("settings"))?;
    Ok(Versioned::new(&headers, version as i64, SettingsBody::from(&current)))
}

/// `PUT /admin/settings`.
async fn update(
    State(state): State<AppState>,
    Admin(admin): Admin,
    IfMatch(expected): IfMatch,
    meta: RequestMeta,
    AppJson(body): AppJson<SettingsBody>,
) -> Result<axum::Json<CommandAccepted>, ApiError> {
    let settings = SellerSettings::try_from(body)?;
    let command = SettingsCommand::Update { tenant: admin.tenant.clone(), settings };
    let metadata = meta.metadata(&admin.tenant, Some(admin.user_id));
    let done = state.settings.execute(&stream_id(&admin.tenant, SETTINGS), command, expected, &metadata).await?;
    Ok(axum::Json(CommandAccepted::new(SETTINGS, &done)))
}
