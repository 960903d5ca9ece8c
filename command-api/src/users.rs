//! The caller's own account, and role management for admins.

use std::collections::BTreeSet;

use aide::axum::routing::{patch_with, post_with, put_with};
use aide::axum::ApiRouter;
use axum::extract::State;
use axum::Json;
use domain::claim::{ClaimCommand, EmailKind};
use domain::user::{Password, Role, UserCommand};
use domain::{stream_id, Name, TenantId, UserId};
use serde::Deserialize;
use store::{commit, retry_on_conflict, Metadata};

use crate::auth::Registration;
use crate::{AppState, CommandAccepted};
use http_kit::error::email_taken;
use http_kit::ApiError;
use http_kit::{Admin, AppJson, AuthUser, ErrorCode, Id, IfMatch, Problems, RequestMeta};
use schemars::JsonSchema;

pub fn router() -> ApiRouter<AppState> {
    use ErrorCode::*;
    ApiRouter::new()
        .api_route(
            "/users/me",
            patch_with(change_profile, |op| {
                op.describe("change_profile", "users", "Change the caller's name.").problems(&[NotFound, UserDeactivated, VersionConflict])
            }),
        )
        .api_route(
            "/users/me/password",
            post_with(change_password, |op| {
                op.describe("change_password", "users", "Change the caller's password, given the current one.").problems(&[
                    NotFound,
                    UserDeactivated,
                    WrongPassword,
                    VersionConflict,
                    Unavailable,
                ])
            }),
        )
        .api_route(
            "/users/me/preferences",
            put_with(set_preferences, |op| {
                op.describe("set_preferences", "users", "Turn marketing e-mail on or off for the caller.").problems(&[
                    NotFound,
                    UserDeactivated,
                    VersionConflict,
                ])
            }),
        )
        .api_route(
            "/users/{id}/roles",
            put_with(set_roles, |op| {
                op.describe("set_user_roles", "users", "Replace the roles of a user of the tenant.").problems(&[
                    NoRoles,
                    UserDeactivated,
                    VersionConflict,
                ])
            }),
        )
        .api_route(
            "/users/{id}/deactivate",
            post_with(deactivate, |op| {
                op.describe("deactivate_user", "users", "Deactivate a user of the tenant.").problems(&[UserDeactivated, VersionConflict])
            }),
        )
}

/// Claims the e-mail address and registers the user in one atomic append: two concurrent
/// registrations with one address cannot both succeed, and neither half exists without the
/// other. Used by `POST /auth/register` and by `shop user create`.
pub async fn register_user(
    state: &AppState,
    tenant: &TenantId,
    registration: Registration,
    roles: BTreeSet<Role>,
    metadata: &Metadata,
) -> Result<CommandAccepted, ApiError> {
    let user_id = UserId::new();
    let Registration { email, password, name } = registration;
    let user_stream = stream_id(tenant, user_id);
    let claim_stream = stream_id(tenant, &email);
    let done = retry_on_conflict("user", || async {
        let claim = ClaimCommand::<EmailKind>::Claim { tenant: tenant.clone(), key: email.clone(), owner: user_id };
        let mut claim = state.emails.prepare(&claim_stream, claim, None).await.map_err(|e| e.map_domain(email_taken))?;
        let register = UserCommand::Register {
            tenant: tenant.clone(),
            user_id,
            email: email.clone(),
            name: name.clone(),
            password: password.clone(),
            roles: roles.clone(),
        };
        let mut user = state.users.prepare(&user_stream, register, None).await.map_err(|e| e.map_domain(ApiError::from))?;
        commit(&state.store, metadata, &mut [&mut claim, &mut user]).await?;
        claim.finish().await;
        Ok(user.finish().await)
    })
    .await
    .map_err(ApiError::from)?;
    tracing::info!(tenant = %tenant, user_id = %user_id, "user registered");
    Ok(CommandAccepted::new(user_id, &done))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ProfileRequest {
    name: String,
}

async fn change_profile(
    State(state): State<AppState>,
    user: AuthUser,
    meta: RequestMeta,
    IfMatch(if_match): IfMatch,
    AppJson(req): AppJson<ProfileRequest>,
) -> Result<Json<CommandAccepted>, ApiError> {
    let name: Name = req.name.parse()?;
    run_on(&state, &user, user.user_id, UserCommand::ChangeProfile { name }, if_match, &meta).await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PreferencesRequest {
    marketing_emails: bool,
}

/// `PUT /users/me/preferences`: marketing mail on or off (account, order and password-reset
/// mail always go).
async fn set_preferences(
    State(state): State<AppState>,
    user: AuthUser,
    meta: RequestMeta,
    AppJson(req): AppJson<PreferencesRequest>,
) -> Result<Json<CommandAccepted>, ApiError> {
    run_on(&state, &user, user.user_id, UserCommand::SetMarketingEmails { allowed: req.marketing_emails }, None, &meta).await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PasswordRequest {
    current_password: String,
    new_password: String,
}

async fn change_password(
    State(state): State<AppState>,
    user: AuthUser,
    meta: RequestMeta,
    IfMatch(if_match): IfMatch,
    AppJson(req): AppJson<PasswordRequest>,
) -> Result<Json<CommandAccepted>, ApiError> {
    // A current password that could never be valid is simply wrong.
    let current: Password = req.current_password.parse().map_err(|_| ApiError::from(domain::user::UserError::WrongPassword))?;
    let new: Password = req.new_password.parse()?;
    run_on(&state, &user, user.user_id, UserCommand::ChangePassword { current, new }, if_match, &meta).await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RolesRequest {
    roles: Vec<String>,
}

async fn set_roles(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Id(target): Id<UserId>,
    meta: RequestMeta,
    IfMatch(if_match): IfMatch,
    AppJson(req): AppJson<RolesRequest>,
) -> Result<Json<CommandAccepted>, ApiError> {
    let roles = req.roles.iter().map(|r| r.parse()).collect::<Result<BTreeSet<Role>, _>>()?;
    run_on(&state, &admin, target, UserCommand::SetRoles { roles }, if_match, &meta).await
}

async fn deactivate(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Id(target): Id<UserId>,
    meta: RequestMeta,
    IfMatch(if_match): IfMatch,
) -> Result<Json<CommandAccepted>, ApiError> {
    run_on(&state, &admin, target, UserCommand::Deactivate, if_match, &meta).await
}

/// Runs a user command on `target` within the caller's tenant.
async fn run_on(
    state: &AppState,
    caller: &AuthUser,
    target: UserId,
    command: UserCommand,
    if_match: Option<u64>,
    meta: &RequestMeta,
) -> Result<Json<CommandAccepted>, ApiError> {
    let metadata = meta.metadata(&caller.tenant, Some(caller.user_id));
    let done = state.users.execute(&stream_id(&caller.tenant, target), command, if_match, &metadata).await?;
    Ok(Json(CommandAccepted::new(target, &done)))
}
