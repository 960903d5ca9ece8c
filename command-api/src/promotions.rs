//! Discount codes (admins): create, look at, deactivate. A code is its promotion's id, unique
//! per tenant through the store's key; carts apply it and checkout redeems it.

use aide::axum::routing::{get_with, post_with};
use aide::axum::ApiRouter;
use axum::extract::State;
use chrono::{DateTime, Utc};
use domain::promotion::{DiscountKind, Promotion, PromotionCommand, Terms};
use domain::{stream_id, InvalidValue, Money, PromotionCode};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::carts::MoneyView;
use crate::products::PriceBody;
use crate::{AppState, CommandAccepted};
use http_kit::{Admin, ApiError, AppJson, Created, ErrorCode, Id, Problems, RequestMeta, Versioned};

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/promotions",
            post_with(create, |op| {
                op.describe("create_promotion", "promotions", "Create a discount code: a percentage or a fixed amount, with an optional minimum subtotal, validity window and usage limits.")
                    .problems(&[ErrorCode::AlreadyExists])
            }),
        )
        .api_route(
            "/promotions/{id}",
            get_with(show, |op| op.describe("get_promotion", "promotions", "A discount code with its terms and how often it is redeemed.")),
        )
        .api_route(
            "/promotions/{id}/deactivate",
            post_with(deactivate, |op| op.describe("deactivate_promotion", "promotions", "Stop a discount code from applying (carts holding it lose it at their next pricing).")),
        )
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum KindRequest {
    Percentage,
    Fixed,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    code: String,
    kind: KindRequest,
    /// For `percentage`: 1 to 10000 basis points (1000 = 10%).
    percentage_bp: Option<u32>,
    /// For `fixed`: the amount off, in minor units.
    amount: Option<PriceBody>,
    min_subtotal: Option<PriceBody>,
    /// RFC 3339; valid from then on.
    starts_at: Option<String>,
    /// RFC 3339; valid until then (exclusive).
    ends_at: Option<String>,
    usage_limit: Option<u32>,
    per_customer_limit: Option<u32>,
}

fn instant(field: &'static str, raw: Option<String>) -> Result<Option<DateTime<Utc>>, InvalidValue> {
    raw.map(|t| {
        DateTime::parse_from_rfc3339(&t).map(|t| t.with_timezone(&Utc)).map_err(|_| InvalidValue::new(field, "must be an rfc 3339 time"))
    })
    .transpose()
}

fn money(field: &'static str, body: PriceBody) -> Result<Money, InvalidValue> {
    let currency = body.currency.parse().map_err(|_| InvalidValue::new(field, "not an iso 4217 currency code"))?;
    Ok(Money::new(body.amount, currency))
}

impl TryFrom<CreateRequest> for (PromotionCode, Terms) {
    type Error = InvalidValue;

    fn try_from(r: CreateRequest) -> Result<Self, Self::Error> {
        let code: PromotionCode = r.code.parse()?;
        let kind = match (r.kind, r.percentage_bp, r.amount) {
            (KindRequest::Percentage, Some(percentage_bp), None) => DiscountKind::Percentage { percentage_bp },
            (KindRequest::Fixed, None, Some(amount)) => DiscountKind::Fixed { amount: money("amount", amount)? },
            (KindRequest::Percentage, _, _) => {
                return Err(InvalidValue::new("percentage_bp", "a percentage code has percentage_bp and no amount"))
            }
            (KindRequest::Fixed, _, _) => return Err(InvalidValue::new("amount", "a fixed code has an amount and no percentage_bp")),
        };
        let min_subtotal = r.min_subtotal.map(|m| money("min_subtotal", m)).transpose()?;
        let (starts_at, ends_at) = (instant("starts_at", r.starts_at)?, instant("ends_at", r.ends_at)?);
        Ok((code, Terms { kind, min_subtotal, starts_at, ends_at }))
    }
}

/// `POST /promotions`: 201 with the code as the id.
async fn create(
    State(state): State<AppState>,
    Admin(admin): Admin,
    meta: RequestMeta,
    AppJson(req): AppJson<CreateRequest>,
) -> Result<Created<CommandAccepted>, ApiError> {
    let (usage_limit, per_customer_limit) = (req.usage_limit, req.per_customer_limit);
    let (code, terms) = <(PromotionCode, Terms)>::try_from(req)?;
    let command = PromotionCommand::Create { tenant: admin.tenant.clone(), code: code.clone(), terms, usage_limit, per_customer_limit };
    let done = state
        .promotions
        .execute(&stream_id(&admin.tenant, &code), command, None, &meta.metadata(&admin.tenant, Some(admin.user_id)))
        .await?;
    Ok(Created(CommandAccepted::new(code, &done)))
}

/// A discount code as admins see it.
#[derive(Debug, Serialize, JsonSchema)]
struct PromotionView {
    code: String,
    /// `percentage` or `fixed`.
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    percentage_bp: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    amount: Option<MoneyView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_subtotal: Option<MoneyView>,
    starts_at: Option<String>,
    ends_at: Option<String>,
    usage_limit: Option<u32>,
    per_customer_limit: Option<u32>,
    active: bool,
    /// Orders holding a redemption now (a cancelled order gives its use back).
    uses: u32,
    version: u64,
}

async fn visible(state: &AppState, admin: &http_kit::AuthUser, code: &PromotionCode) -> Result<(String, Promotion, u64), ApiError> {
    let stream = stream_id(&admin.tenant, code);
    let (promotion, version) = state.promotions.read(&stream).await?;
    if promotion.code.is_none() {
        return Err(ApiError::not_found("discount code"));
    }
    Ok((stream, promotion, version))
}

/// `GET /promotions/{id}`.
async fn show(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Id(code): Id<PromotionCode>,
    headers: axum::http::HeaderMap,
) -> Result<Versioned<PromotionView>, ApiError> {
    let (_, p, version) = visible(&state, &admin, &code).await?;
    let terms = p.terms.ok_or_else(|| ApiError::not_found("discount code"))?;
    let (kind, percentage_bp, amount) = match terms.kind {
        DiscountKind::Percentage { percentage_bp } => ("percentage", Some(percentage_bp), None),
        DiscountKind::Fixed { amount } => ("fixed", None, Some(amount.into())),
    };
    let view = PromotionView {
        code: code.to_string(),
        kind,
        percentage_bp,
        amount,
        min_subtotal: terms.min_subtotal.map(Into::into),
        starts_at: terms.starts_at.map(|t| t.to_rfc3339()),
        ends_at: terms.ends_at.map(|t| t.to_rfc3339()),
        usage_limit: p.usage_limit,
        per_customer_limit: p.per_customer_limit,
        active: p.active,
        uses: p.uses(),
        version,
    };
    Ok(Versioned::new(&headers, version as i64, view))
}

/// `POST /promotions/{id}/deactivate`.
async fn deactivate(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Id(code): Id<PromotionCode>,
    meta: RequestMeta,
) -> Result<http_kit::Accepted<CommandAccepted>, ApiError> {
    let (stream, _, _) = visible(&state, &admin, &code).await?;
    let done =
        state.promotions.execute(&stream, PromotionCommand::Deactivate, None, &meta.metadata(&admin.tenant, Some(admin.user_id))).await?;
    Ok(http_kit::Accepted(CommandAccepted::new(code, &done)))
}
