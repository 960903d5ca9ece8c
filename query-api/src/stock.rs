use aide::axum::routing::get_with;
use aide::axum::ApiRouter;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use http_kit::{ApiError, ErrorCode, Problems, Versioned};
use serde::Serialize;
use sqlx::Row as _;

use crate::{MinPosition, QueryState, Viewer};

pub fn router() -> ApiRouter<QueryState> {
    ApiRouter::new().api_route(
        "/stock/{sku}",
        get_with(availability, |op| {
            op.describe("get_stock", "stock", "A SKU's available units (admins also see on hand and reserved).")
                .problems(&[ErrorCode::NotFound])
        }),
    )
}

/// What anyone may know; admins also see what is on hand and reserved.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct StockView {
    sku: String,
    available: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    on_hand: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reserved: Option<i64>,
}

async fn availability(
    State(state): State<QueryState>,
    viewer: Viewer,
    min: MinPosition,
    Path(sku): Path<String>,
    headers: HeaderMap,
) -> Result<Versioned<StockView>, ApiError> {
    state.consistent("stock", min).await?;
    let sku: domain::Sku = sku.parse().map_err(|_| ApiError::not_found("sku"))?;
    let row = sqlx::query("SELECT on_hand, reserved, available, version FROM rm_stock WHERE tenant = $1 AND sku = $2")
        .bind(viewer.tenant().to_string())
        .bind(sku.to_string())
        .fetch_optional(state.pool())
        .await
        .map_err(crate::db_error)?
        .ok_or_else(|| ApiError::not_found("stock"))?;
    let get = |i: usize| row.try_get::<i64, _>(i).map_err(crate::db_error);
    let admin = viewer.is_admin();
    let view = StockView {
        sku: sku.to_string(),
        available: get(2)?,
        on_hand: if admin { Some(get(0)?) } else { None },
        reserved: if admin { Some(get(1)?) } else { None },
    };
    Ok(Versioned::new(&headers, get(3)?, view))
}
