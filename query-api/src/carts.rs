//! Carts and discount codes as admins see them, from the `carts` and `promotions` read models.
//! (A shopper's own cart is read from the command side, which prices it again when its
//! pricing is older than the lifetime: a read that may write.)

use aide::axum::routing::get_with;
use aide::axum::ApiRouter;
use axum::extract::State;
use axum::Json;
use http_kit::{Admin, ApiError, AppQuery, ErrorCode, Problems};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row as _;

use crate::{bound, page_size, MinPosition, Money, Param, QueryState};

pub fn router() -> ApiRouter<QueryState> {
    ApiRouter::new()
        .api_route(
            "/admin/carts",
            get_with(admin_list, |op| {
                op.describe(
                    "list_carts",
                    "carts",
                    "The tenant's carts, newest first, by status and customer (open, checked out, merged, expired).",
                )
            }),
        )
        .api_route(
            "/promotions",
            get_with(promotions, |op| {
                op.describe("list_promotions", "promotions", "The tenant's discount codes with their terms and uses.")
            }),
        )
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct CartsQuery {
    /// `open`, `checked_out`, `merged` or `expired`.
    status: Option<String>,
    /// A customer's user id.
    customer: Option<String>,
    /// 1 to 100, default 20.
    limit: Option<i64>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
struct CartRow {
    id: String,
    /// Absent for a guest's cart.
    customer: Option<String>,
    status: String,
    lines: i64,
    units: i64,
    /// The lines' sum, once the cart has a line.
    subtotal: Option<Money>,
    discount_code: Option<String>,
    order_id: Option<String>,
    created_at_ms: i64,
    touched_at_ms: i64,
    closed_at_ms: Option<i64>,
}

const STATUSES: &[&str] = &["open", "checked_out", "merged", "expired"];

fn invalid(field: &str, detail: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidValue, detail).with("field", field)
}

async fn admin_list(
    State(state): State<QueryState>,
    Admin(admin): Admin,
    min: MinPosition,
    AppQuery(q): AppQuery<CartsQuery>,
) -> Result<Json<Vec<CartRow>>, ApiError> {
    let limit = page_size(q.limit)?;
    let mut params = vec![Param::Text(admin.tenant.to_string())];
    let mut filter = String::new();
    if let Some(status) = &q.status {
        if !STATUSES.contains(&status.as_str()) {
            return Err(invalid("status", "status is one of open, checked_out, merged, expired"));
        }
        params.push(Param::Text(status.clone()));
        filter.push_str(&format!(" AND c.status = ${}", params.len()));
    }
    if let Some(customer) = &q.customer {
        let customer: domain::UserId = customer.parse().map_err(|_| invalid("customer", "customer is a user id"))?;
        params.push(Param::Text(customer.to_string()));
        filter.push_str(&format!(" AND c.customer = ${}", params.len()));
    }
    state.consistent("carts", min).await?;
    let sql = format!(
        "SELECT c.cart_id, c.customer, c.status, c.currency, c.discount_code, c.order_id, c.created_at_ms, c.touched_at_ms, c.closed_at_ms, \
         (SELECT COUNT(*) FROM rm_carts_lines l WHERE l.tenant = c.tenant AND l.cart_id = c.cart_id), \
         (SELECT CAST(COALESCE(SUM(l.quantity), 0) AS BIGINT) FROM rm_carts_lines l WHERE l.tenant = c.tenant AND l.cart_id = c.cart_id), \
         (SELECT CAST(COALESCE(SUM(l.quantity * l.unit_amount), 0) AS BIGINT) FROM rm_carts_lines l WHERE l.tenant = c.tenant AND l.cart_id = c.cart_id) \
         FROM rm_carts c WHERE c.tenant = $1{filter} ORDER BY c.created_at_ms DESC, c.cart_id LIMIT {limit}"
    );
    let rows: Vec<AnyRow> = bound(&sql, params).fetch_all(state.pool()).await.map_err(crate::db_error)?;
    rows.iter()
        .map(|r| -> Result<CartRow, sqlx::Error> {
            let currency: Option<String> = r.try_get(3)?;
            let lines: i64 = r.try_get(9)?;
            Ok(CartRow {
                id: r.try_get(0)?,
                customer: r.try_get(1)?,
                status: r.try_get(2)?,
                discount_code: r.try_get(4)?,
                order_id: r.try_get(5)?,
                created_at_ms: r.try_get(6)?,
                touched_at_ms: r.try_get(7)?,
                closed_at_ms: r.try_get(8)?,
                lines,
                units: r.try_get(10)?,
                subtotal: currency
                    .filter(|_| lines > 0)
                    .map(|currency| r.try_get(11).map(|amount| Money { amount, currency }))
                    .transpose()?,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Json)
        .map_err(crate::db_error)
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
struct PromotionRow {
    code: String,
    /// `percentage` or `fixed`.
    kind: String,
    percentage_bp: Option<i64>,
    amount: Option<Money>,
    min_subtotal: Option<Money>,
    starts_at: Option<String>,
    ends_at: Option<String>,
    usage_limit: Option<i64>,
    per_customer_limit: Option<i64>,
    active: bool,
    /// Orders holding a redemption now.
    uses: i64,
}

async fn promotions(State(state): State<QueryState>, Admin(admin): Admin, min: MinPosition) -> Result<Json<Vec<PromotionRow>>, ApiError> {
    state.consistent("promotions", min).await?;
    let rows: Vec<AnyRow> = sqlx::query(
        "SELECT code, kind, percentage_bp, amount, currency, min_subtotal, min_currency, starts_at, ends_at, usage_limit, \
         per_customer_limit, active, uses FROM rm_promotions WHERE tenant = $1 ORDER BY code",
    )
    .bind(admin.tenant.to_string())
    .fetch_all(state.pool())
    .await
    .map_err(crate::db_error)?;
    let money = |amount: Option<i64>, currency: Option<String>| amount.zip(currency).map(|(amount, currency)| Money { amount, currency });
    rows.iter()
        .map(|r| -> Result<PromotionRow, sqlx::Error> {
            Ok(PromotionRow {
                code: r.try_get(0)?,
                kind: r.try_get(1)?,
                percentage_bp: r.try_get(2)?,
                amount: money(r.try_get(3)?, r.try_get(4)?),
                min_subtotal: money(r.try_get(5)?, r.try_get(6)?),
                starts_at: r.try_get(7)?,
                ends_at: r.try_get(8)?,
                usage_limit: r.try_get(9)?,
                per_customer_limit: r.try_get(10)?,
                active: r.try_get::<i64, _>(11)? == 1,
                uses: r.try_get(12)?,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Json)
        .map_err(crate::db_error)
}
