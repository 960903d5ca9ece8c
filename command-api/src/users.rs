//! The caller's own account, and role management for admins.

use std::collections::BTreeSet;

use aide::axum::routing::{delete_with, patch_with, post_with, put_with};
use aide::axum::ApiRouter;
use axum::extract::State;
use axum::Json;
use domain::admins::{AdminRoster, AdminRosterCommand, ROSTER};
use domain::claim::{ClaimCommand, ClaimError, EmailClaim, EmailKind};
use domain::user::{Password, Role, UserCommand, UserEvent};
use domain::{stream_id, Name, Phone, TenantId, UserId};
use serde::Deserialize;
use store::{commit, retry_on_conflict, ExecError, Metadata, Prepared, Stage};

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
                op.describe(
                    "change_profile",
                    "users",
                    "Change the caller's name or phone number (E.164; null removes it). A new number clears the SMS opt-in.",
                )
                .problems(&[InvalidValue, NotFound, UserDeactivated, UserErased, VersionConflict])
            }),
        )
        .api_route(
            "/users/me",
            delete_with(erase_me, |op| {
                op.describe(
                    "erase_me",
                    "users",
                    "Erase the caller's personal data (with the current password): the data key is deleted, so every copy of it in \
                     the log, on Kafka and in backups reads as erased; read models blank it; every session ends. Orders keep their \
                     amounts, tax and invoice numbers.",
                )
                .problems(&[WrongPassword, NotFound, UserErased, LastAdmin, VersionConflict])
            }),
        )
        .api_route(
            "/admin/users/{id}/erase",
            post_with(erase_user, |op| {
                op.describe("erase_user", "users", "Erase a user's personal data, as `DELETE /users/me` does, on an admin's word.")
                    .problems(&[NotFound, UserErased, LastAdmin, VersionConflict])
            }),
        )
        .api_route(
            "/users/me/preferences",
            put_with(set_preferences, |op| {
                op.describe("set_preferences", "users", "Turn marketing e-mail or order news by SMS on or off for the caller.").problems(&[
                    InvalidValue,
                    NoPhone,
                    NotFound,
                    UserDeactivated,
                    UserErased,
                    VersionConflict,
                ])
            }),
        )
        .api_route(
            "/users/{id}/roles",
            put_with(set_roles, |op| {
                op.describe(
                    "set_user_roles",
                    "users",
                    "Replace the roles of another user of the tenant; the last active admin keeps the role.",
                )
                .problems(&[NoRoles, UserDeactivated, UserErased, VersionConflict, LastAdmin, Forbidden])
            }),
        )
        .api_route(
            "/users/{id}/deactivate",
            post_with(deactivate, |op| {
                op.describe("deactivate_user", "users", "Deactivate a user of the tenant; the last active admin stays active.").problems(&[
                    UserDeactivated,
                    UserErased,
                    VersionConflict,
                    LastAdmin,
                ])
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
    let claim_stream = email_claim_stream(state, tenant, &email).await?;
    // An address claimed before claims were keyed by its hash is still taken (those claims
    // are never written again, so reading one first is not a race).
    if state.emails.read(&stream_id(tenant, &email)).await?.0.owner.is_some() {
        return Err(ApiError::new(ErrorCode::EmailTaken, "this e-mail address is already registered"));
    }
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
        let enroll = roles.contains(&Role::Admin).then_some(AdminRosterCommand::Enroll { user: user_id });
        let mut roster = roster_change(state, tenant, enroll).await?;
        let mut stages: Vec<&mut dyn Stage> = roster.iter_mut().map(|r| r as &mut dyn Stage).collect();
        stages.extend([&mut claim as &mut dyn Stage, &mut user]);
        commit(&state.store, metadata, &mut stages).await?;
        if let Some(roster) = roster {
            roster.finish().await;
        }
        claim.finish().await;
        Ok(user.finish().await)
    })
    .await
    .map_err(ApiError::from)?;
    tracing::info!(tenant = %tenant, user_id = %user_id, "user registered");
    Ok(CommandAccepted::new(user_id, &done))
}

/// The stream of `email`'s claim in `tenant`: keyed by a keyed hash of the address
/// ([`store::personal::Personal::blind_index`]), so no stream id holds an address in clear.
pub(crate) async fn email_claim_stream(state: &AppState, tenant: &TenantId, email: &domain::Email) -> Result<String, ApiError> {
    let hash = state.store.personal().blind_index(tenant.as_str(), email.as_str()).await.map_err(ApiError::failure)?;
    Ok(stream_id(tenant, format!("email-{hash}")))
}

/// `null` and absent differ for `phone`: absent leaves it, `null` removes it.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ProfileRequest {
    #[serde(default)]
    name: Option<String>,
    /// E.164 (`+4915112345678`); `null` removes the number.
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<String>")]
    phone: Option<Option<String>>,
}

async fn change_profile(
    State(state): State<AppState>,
    user: AuthUser,
    meta: RequestMeta,
    IfMatch(if_match): IfMatch,
    AppJson(req): AppJson<ProfileRequest>,
) -> Result<Json<CommandAccepted>, ApiError> {
    if req.name.is_none() && req.phone.is_none() {
        return Err(ApiError::new(ErrorCode::InvalidValue, "give name, phone or both").with("field", "name"));
    }
    let name: Option<Name> = req.name.map(|n| n.parse()).transpose()?;
    let phone: Option<Option<Phone>> = req.phone.map(|p| p.map(|p| p.parse()).transpose()).transpose()?;
    run_on(&state, &user, user.user_id, UserCommand::ChangeProfile { name, phone }, if_match, &meta).await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PreferencesRequest {
    #[serde(default)]
    marketing_emails: Option<bool>,
    /// Order news (shipped, cancelled) by SMS; needs a phone number on the profile.
    #[serde(default)]
    sms: Option<bool>,
}

/// `PUT /users/me/preferences`: marketing mail and order news by SMS on or off (account, order
/// and password-reset mail always go); a choice not given stays as it is.
async fn set_preferences(
    State(state): State<AppState>,
    user: AuthUser,
    meta: RequestMeta,
    AppJson(req): AppJson<PreferencesRequest>,
) -> Result<Json<CommandAccepted>, ApiError> {
    if req.marketing_emails.is_none() && req.sms.is_none() {
        return Err(ApiError::new(ErrorCode::InvalidValue, "give marketing_emails, sms or both").with("field", "marketing_emails"));
    }
    let command = UserCommand::SetPreferences { marketing_emails: req.marketing_emails, sms: req.sms };
    run_on(&state, &user, user.user_id, command, None, &meta).await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordRequest {
    current_password: String,
    new_password: String,
}

/// `POST /users/me/password`: every session of the user ends (the user's epoch moves on) and
/// the caller gets a fresh token pair of a new session, so only the session that made the
/// change goes on. Its answer holds secrets, so it is never stored for `Idempotency-Key` replay.
pub(crate) async fn change_password(
    State(state): State<AppState>,
    user: AuthUser,
    meta: RequestMeta,
    IfMatch(if_match): IfMatch,
    AppJson(req): AppJson<PasswordRequest>,
) -> Result<Json<crate::auth::TokenResponse>, ApiError> {
    let current = given_password(&req.current_password)?;
    let new: Password = req.new_password.parse()?;
    let metadata = meta.metadata(&user.tenant, Some(user.user_id));
    let stream = stream_id(&user.tenant, user.user_id);
    let done = state.users.execute(&stream, UserCommand::ChangePassword { current, new }, if_match, &metadata).await?;
    crate::auth::start_session(&state, &user.tenant, user.user_id, &done.state, &metadata).await
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
    if target == admin.user_id {
        return Err(ApiError::new(ErrorCode::Forbidden, "nobody changes their own roles"));
    }
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

/// The user's current password as given: one that could never be valid is simply wrong.
fn given_password(given: &str) -> Result<Password, ApiError> {
    given.parse().map_err(|_| ApiError::from(domain::user::UserError::WrongPassword))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct EraseRequest {
    password: String,
}

/// `DELETE /users/me`: the right to erasure, asked by the user (with the password, so a stolen
/// access token alone cannot erase an account).
async fn erase_me(
    State(state): State<AppState>,
    user: AuthUser,
    meta: RequestMeta,
    AppJson(req): AppJson<EraseRequest>,
) -> Result<Json<CommandAccepted>, ApiError> {
    let password = given_password(&req.password)?;
    run_on(&state, &user, user.user_id, UserCommand::Erase { password: Some(password) }, None, &meta).await
}

/// `POST /admin/users/{id}/erase`. The store deletes the user's data key as `user.erased`
/// commits (and every log reader again as it reads it, should the process stop in between).
async fn erase_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Id(target): Id<UserId>,
    meta: RequestMeta,
) -> Result<Json<CommandAccepted>, ApiError> {
    run_on(&state, &admin, target, UserCommand::Erase { password: None }, None, &meta).await
}

/// The release of `user`'s e-mail claim, to commit with their erasure; `None` when they hold
/// none (the claim under the address's hash, or one made before claims were hashed).
async fn release_email(state: &AppState, tenant: &TenantId, user: UserId) -> Result<Option<Prepared<EmailClaim>>, ExecError<ApiError>> {
    let (found, _) = state.users.read(&stream_id(tenant, user)).await.map_err(ExecError::Store)?;
    let Some(email) = found.email else { return Ok(None) };
    let hashed = email_claim_stream(state, tenant, &email).await.map_err(ExecError::Domain)?;
    for stream in [hashed, stream_id(tenant, &email)] {
        match state.emails.prepare(&stream, ClaimCommand::Release { owner: user }, None).await {
            Ok(release) => return Ok(Some(release)),
            Err(ExecError::Domain(ClaimError::NotHeld)) => continue,
            Err(e) => return Err(e.map_domain(|_| ApiError::new(ErrorCode::EmailTaken, "the e-mail address is not this user's"))),
        }
    }
    Ok(None)
}

/// The tenant's admin roster with `change` handled, to commit with the user's change. The
/// roster goes before the user in the commit: a keyed request's effect is the last stream it
/// appends, and the answer names the user.
async fn roster_change(
    state: &AppState,
    tenant: &TenantId,
    change: Option<AdminRosterCommand>,
) -> Result<Option<Prepared<AdminRoster>>, ExecError<ApiError>> {
    match change {
        Some(change) => {
            Ok(Some(state.admins.prepare(&stream_id(tenant, ROSTER), change, None).await.map_err(|e| e.map_domain(ApiError::from))?))
        }
        None => Ok(None),
    }
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
    let user_stream = stream_id(&caller.tenant, target);
    // A change that gives or takes the admin role commits with the tenant's admin roster, so
    // two admins demoting each other at once cannot leave the tenant without one.
    let erasing = matches!(command, UserCommand::Erase { .. });
    let done = retry_on_conflict("user", || async {
        // An erased user's e-mail address is given up in the same write: it may register again.
        let mut release = if erasing { release_email(state, &caller.tenant, target).await? } else { None };
        let mut user = state.users.prepare(&user_stream, command.clone(), if_match).await.map_err(|e| e.map_domain(ApiError::from))?;
        let change = user.events().iter().find_map(|e| match e {
            UserEvent::RoleGranted { role: Role::Admin } => Some(AdminRosterCommand::Enroll { user: target }),
            UserEvent::RoleRevoked { role: Role::Admin } => Some(AdminRosterCommand::Remove { user: target, actor: caller.user_id }),
            UserEvent::Deactivated | UserEvent::Erased if user.state().is_admin() => {
                Some(AdminRosterCommand::Remove { user: target, actor: caller.user_id })
            }
            _ => None,
        });
        let mut roster = roster_change(state, &caller.tenant, change).await?;
        let mut stages: Vec<&mut dyn Stage> = roster.iter_mut().map(|r| r as &mut dyn Stage).collect();
        stages.extend(release.iter_mut().map(|r| r as &mut dyn Stage));
        stages.push(&mut user);
        commit(&state.store, &metadata, &mut stages).await?;
        if let Some(roster) = roster {
            roster.finish().await;
        }
        if let Some(release) = release {
            release.finish().await;
        }
        Ok(user.finish().await)
    })
    .await
    .map_err(ApiError::from)?;
    Ok(Json(CommandAccepted::new(target, &done)))
}
