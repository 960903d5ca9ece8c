//! Stock management (admin): receipts and adjustments of a SKU's units on hand.

use aide::axum::routing::post_with;
use aide::axum::ApiRouter;
use axum::extract::State;
use axum::Json;
use domain::stock::StockCommand;
use domain::{stream_id, Name, Quantity, QuantityDelta, Sku, TenantId};
use serde::Deserialize;

use crate::{AppState, CommandAccepted};
use http_kit::ApiError;
use http_kit::{Admin, AppJson, ErrorCode, Id, IfMatch, Problems, RequestMeta};
use schemars::JsonSchema;

pub fn router() -> ApiRouter<AppState> {
    use ErrorCode::*;
    ApiRouter::new()
        .api_route(
            "/stock/{sku}/receipts",
            post_with(receive, |op| {
                op.describe("receive_stock", "stock", "Add received units to a SKU's stock on hand.").problems(&[VersionConflict])
            }),
        )
        .api_route(
            "/stock/{sku}/adjustments",
            post_with(adjust, |op| {
                op.describe("adjust_stock", "stock", "Correct a SKU's stock on hand by a signed quantity, with a reason.")
                    .problems(&[AdjustmentBelowReserved, VersionConflict])
            }),
        )
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReceiptRequest {
    quantity: i64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AdjustmentRequest {
    quantity_delta: i64,
    reason: String,
}

/// Stock exists only for SKUs of this tenant's catalogue. A claimed SKU stays claimed, so a
/// cached claim answers without a round trip; only an unclaimed one is checked again.
async fn known_sku(state: &AppState, tenant: &TenantId, sku: Sku) -> Result<Sku, ApiError> {
    let stream = stream_id(tenant, &sku);
    if state.skus.peek(&stream).await?.0.owner.is_some() {
        return Ok(sku);
    }
    let (claim, _) = state.skus.read(&stream).await?;
    claim.owner.map(|_| sku).ok_or_else(|| ApiError::not_found("sku"))
}

async fn receive(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Id(sku): Id<Sku>,
    meta: RequestMeta,
    IfMatch(if_match): IfMatch,
    AppJson(req): AppJson<ReceiptRequest>,
) -> Result<Json<CommandAccepted>, ApiError> {
    let quantity = Quantity::try_from(req.quantity)?;
    run(&state, &admin, sku, if_match, &meta, |tenant, sku| StockCommand::Receive { tenant, sku, quantity }).await
}

async fn adjust(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Id(sku): Id<Sku>,
    meta: RequestMeta,
    IfMatch(if_match): IfMatch,
    AppJson(req): AppJson<AdjustmentRequest>,
) -> Result<Json<CommandAccepted>, ApiError> {
    let delta = QuantityDelta::try_from(req.quantity_delta)?;
    let reason: Name = req.reason.parse().map_err(|_| domain::InvalidValue::new("reason", "must be 1-200 characters of text"))?;
    run(&state, &admin, sku, if_match, &meta, |tenant, sku| StockCommand::Adjust { tenant, sku, delta, reason }).await
}

/// Runs the command `build` makes for a known SKU of the admin's tenant.
async fn run(
    state: &AppState,
    admin: &http_kit::AuthUser,
    sku: Sku,
    if_match: Option<u64>,
    meta: &RequestMeta,
    build: impl FnOnce(TenantId, Sku) -> StockCommand,
) -> Result<Json<CommandAccepted>, ApiError> {
    let sku = known_sku(state, &admin.tenant, sku).await?;
    let command = build(admin.tenant.clone(), sku.clone());
    let metadata = meta.metadata(&admin.tenant, Some(admin.user_id));
    let done = state.stock.execute(&stream_id(&admin.tenant, &sku), command, if_match, &metadata).await?;
    Ok(Json(CommandAccepted::new(sku, &done)))
}
