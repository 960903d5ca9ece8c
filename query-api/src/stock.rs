use aide::axum::routing::get_with;
use aide::axum::ApiRouter;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use http_kit::{Admin, ApiError, AppQuery, ErrorCode, Problems, Versioned};
use serde::{Deserialize, Serialize};
use sqlx::Row as _;

use crate::{MinPosition, QueryState, Viewer};

pub fn router() -> ApiRouter<QueryState> {
    ApiRouter::new()
        .api_route(
            "/stock/{sku}",
            get_with(availability, |op| {
                op.describe("get_stock", "stock", "A SKU's available units (admins also see on hand and reserved).")
                    .problems(&[ErrorCode::NotFound])
            }),
        )
        .api_route(
            "/admin/stock/low",
            get_with(low, |op| {
                op.describe("list_low_stock", "stock", "SKUs with at most `below` units available (default 5), fewest first.")
                    .problems(&[ErrorCode::InvalidValue])
            }),
        )
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct LowQuery {
    /// At most this many available (0 to 1,000,000; default 5).
    below: Option<i64>,
    /// 1 to 100, default 20.
    limit: Option<i64>,
}

/// The tenant's SKUs running low, for restocking.
async fn low(
    State(state): State<QueryState>,
    Admin(admin): Admin,
    min: MinPosition,
    AppQuery(q): AppQuery<LowQuery>,
) -> Result<Json<Vec<StockView>>, ApiError> {
    state.consistent("stock", min).await?;
    let below = q.below.unwrap_or(5);
    if !(0..=1_000_000).contains(&below) {
        return Err(ApiError::new(ErrorCode::InvalidValue, "below must be 0 to 1000000").with("field", "below"));
    }
    let limit = crate::page_size(q.limit)?;
    let rows = sqlx::query(&format!(
        "SELECT sku, on_hand, reserved, available FROM rm_stock WHERE tenant = $1 AND available <= $2 ORDER BY available, sku LIMIT {limit}"
    ))
    .bind(admin.tenant.to_string())
    .bind(below)
    .fetch_all(state.pool())
    .await
    .map_err(crate::db_error)?;
    rows.iter()
        .map(|r| {
            Ok(StockView {
                sku: r.try_get("sku")?,
                available: r.try_get("available")?,
                on_hand: Some(r.try_get("on_hand")?),
                reserved: Some(r.try_get("reserved")?),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map(Json)
        .map_err(crate::db_error)
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
