//! The caller's own account, and role management for admins.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::routing::{patch, post, put};
use axum::{Json, Router};
use domain::claim::{ClaimCommand, EmailKind};
use domain::user::{Password, Role, UserCommand};
use domain::{stream_id, Name, TenantId, UserId};
use serde::Deserialize;
use store::{commit, retry_on_conflict, Metadata};

use crate::auth::Registration;
use crate::{AppState, CommandAccepted};
use http_kit::error::email_taken;
use http_kit::ApiError;
use http_kit::{Admin, AppJson, AuthUser, Id, IfMatch, RequestMeta};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users/me", patch(change_profile))
        .route("/users/me/password", post(change_password))
        .route("/users/me/preferences", put(set_preferences))
        .route("/users/{id}/roles", put(set_roles))
        .route("/users/{id}/deactivate", post(deactivate))
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

#[derive(Debug, Deserialize)]
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

#[derive(Debug, Deserialize)]
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

#[derive(Debug, Deserialize)]
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

#[derive(Debug, Deserialize)]
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
