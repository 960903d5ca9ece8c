use aide::axum::routing::{get_with, post_with};
use aide::axum::ApiRouter;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use http_kit::{Admin, ApiError, AppQuery, AuthUser, ErrorCode, Problems, Versioned};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row as _;
use worker_kit::{DeadLetter, ReaderStatus};

use crate::{decode_cursor, encode_cursor, page_size, MinPosition, QueryState};

pub fn router() -> ApiRouter<QueryState> {
    use ErrorCode::*;
    ApiRouter::new()
        .api_route("/users/me", get_with(me, |op| op.describe("get_me", "users", "The caller's account.").problems(&[NotFound])))
        .api_route(
            "/admin/users",
            get_with(list, |op| op.describe("list_users", "users", "The tenant's users, oldest first, a page at a time.")),
        )
        .api_route(
            "/admin/projections",
            get_with(projections, |op| op.describe("list_projections", "admin", "Every projection's progress and lag.")),
        )
        .api_route(
            "/admin/dead-letters",
            get_with(dead_letters, |op| {
                op.describe("list_dead_letters", "admin", "Events the projections could not apply, for the tenant.")
            }),
        )
        .api_route(
            "/admin/dead-letters/{id}/retry",
            post_with(retry_dead_letter, |op| {
                op.describe("retry_dead_letter", "admin", "Apply the parked events of a dead letter's aggregate again.")
                    .problems(&[NotFound, RetryFailed])
            }),
        )
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
struct UserView {
    id: String,
    email: String,
    name: String,
    roles: Vec<String>,
    active: bool,
    /// Whether the user takes marketing mail (new products); `PUT /users/me/preferences`.
    marketing_emails: bool,
    /// E.164; `PATCH /users/me {phone}`.
    phone: Option<String>,
    /// Whether order news (shipped, cancelled) go by SMS to `phone`.
    sms: bool,
    registered_at: String,
    version: i64,
}

impl TryFrom<AnyRow> for UserView {
    type Error = sqlx::Error;

    fn try_from(r: AnyRow) -> Result<Self, Self::Error> {
        let roles: String = r.try_get("roles")?;
        Ok(Self {
            id: r.try_get("user_id")?,
            email: r.try_get("email")?,
            name: r.try_get("name")?,
            roles: roles.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
            active: r.try_get::<i64, _>("active")? == 1,
            marketing_emails: r.try_get::<i64, _>("marketing_emails")? == 1,
            phone: r.try_get("phone")?,
            sms: r.try_get::<i64, _>("sms")? == 1,
            registered_at: r.try_get("registered_at")?,
            version: r.try_get("version")?,
        })
    }
}

const COLUMNS: &str = "user_id, email, name, roles, active, marketing_emails, phone, sms, registered_at, version";

async fn me(
    State(state): State<QueryState>,
    user: AuthUser,
    min: MinPosition,
    headers: HeaderMap,
) -> Result<Versioned<UserView>, ApiError> {
    state.consistent("users", min).await?;
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM rm_users WHERE tenant = $1 AND user_id = $2"))
        .bind(user.tenant.to_string())
        .bind(user.user_id.to_string())
        .fetch_optional(state.pool())
        .await
        .map_err(crate::db_error)?;
    let view = row.map(UserView::try_from).transpose().map_err(crate::db_error)?.ok_or_else(|| ApiError::not_found("user"))?;
    Ok(Versioned::new(&headers, view.version, view))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "UserListQuery")]
struct ListQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
#[schemars(rename = "UserPage")]
struct Page {
    items: Vec<UserView>,
    next_cursor: Option<String>,
}

/// The tenant's users, by id (time-ordered ids, so oldest first).
async fn list(
    State(state): State<QueryState>,
    Admin(admin): Admin,
    min: MinPosition,
    AppQuery(q): AppQuery<ListQuery>,
) -> Result<Json<Page>, ApiError> {
    state.consistent("users", min).await?;
    let limit = page_size(q.limit)?;
    let after = match &q.cursor {
        Some(c) => decode_cursor(c)?.1,
        None => String::new(),
    };
    let rows =
        sqlx::query(&format!("SELECT {COLUMNS} FROM rm_users WHERE tenant = $1 AND user_id > $2 ORDER BY user_id LIMIT {}", limit + 1))
            .bind(admin.tenant.to_string())
            .bind(after)
            .fetch_all(state.pool())
            .await
            .map_err(crate::db_error)?;
    let mut items = rows.into_iter().map(UserView::try_from).collect::<Result<Vec<_>, _>>().map_err(crate::db_error)?;
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|u| encode_cursor("", &u.id))
    } else {
        None
    };
    Ok(Json(Page { items, next_cursor }))
}

async fn projections(State(state): State<QueryState>, _: Admin) -> Result<Json<Vec<ReaderStatus>>, ApiError> {
    Ok(Json(state.read.status().await.map_err(ApiError::failure)?))
}

/// Events the projections parked, for the admin's tenant.
async fn dead_letters(State(state): State<QueryState>, Admin(admin): Admin) -> Result<Json<Vec<DeadLetter>>, ApiError> {
    state.read.sql.dead_letters(admin.tenant.as_str()).await.map(Json).map_err(ApiError::failure)
}

/// Applies the parked events of that dead letter's aggregate again, in order; they stay
/// parked (409 `retry_failed`) if they still fail.
async fn retry_dead_letter(
    State(state): State<QueryState>,
    Admin(admin): Admin,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<Retried>, ApiError> {
    let own = state.read.sql.dead_letters(admin.tenant.as_str()).await.map_err(ApiError::failure)?;
    if !own.iter().any(|d| d.id == id) {
        return Err(ApiError::not_found("dead letter"));
    }
    match state.read.sql.retry_dead_letter(&id).await {
        Ok(Some(applied)) => Ok(Json(Retried { applied })),
        Ok(None) => Err(ApiError::not_found("dead letter")),
        Err(e) => Err(ApiError::new(http_kit::ErrorCode::RetryFailed, format!("the events still fail: {e}"))),
    }
}

/// What a retried dead letter did.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct Retried {
    /// Parked events of the aggregate applied, in order.
    applied: usize,
}
