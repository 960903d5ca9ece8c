use std::collections::BTreeSet;
use std::time::Instant;

use aide::axum::routing::post_with;
use aide::axum::ApiRouter;
use axum::extract::State;
use axum::Json;
use domain::session::{RevocationReason, SessionCommand};
use domain::user::{Password, Role, User, UserCommand, UserError};
use domain::{stream_id, Email, Name, SessionId, TenantId, UserId};
use serde::{Deserialize, Serialize};

use super::OpaqueToken;
use crate::users::register_user;
use crate::{AppState, CommandAccepted};
use http_kit::{ApiError, AppJson, Created, Done, ErrorCode, IfMatch, Problems, Queued, RequestMeta, Tenant};
use mailer::Mail;
use schemars::JsonSchema;

/// Registration: its answer is stored for `Idempotency-Key` like any command's.
pub fn registration() -> ApiRouter<AppState> {
    ApiRouter::new().api_route(
        "/auth/register",
        post_with(register, |op| {
            crate::carts::cart_op(op.describe("register", "auth", "Register a customer account with an e-mail address and a password; a guest cart named by `X-Cart-Token` becomes the customer's."))
                .problems(&[ErrorCode::EmailTaken])
        }),
    )
}

/// The token routes: their answers are secrets, never stored for replay.
pub fn tokens() -> ApiRouter<AppState> {
    use ErrorCode::*;
    ApiRouter::new()
        .api_route(
            "/auth/login",
            post_with(login, |op| {
                crate::carts::cart_op(op.describe("login", "auth", "Log in: an access token and a refresh token; a guest cart named by `X-Cart-Token` is merged into the customer's cart."))
                    .problems(&[InvalidCredentials, RateLimited])
            }),
        )
        .api_route(
            "/auth/refresh",
            post_with(refresh, |op| {
                op.describe("refresh_tokens", "auth", "Trade a refresh token for a new access token and a new refresh token.").problems(&[
                    InvalidRefreshToken,
                    RefreshTokenReused,
                    VersionConflict,
                ])
            }),
        )
        .api_route(
            "/auth/logout",
            post_with(logout, |op| {
                op.describe("logout", "auth", "Revoke the session of a refresh token.").problems(&[InvalidRefreshToken, VersionConflict])
            }),
        )
        .api_route(
            "/users/me/password",
            post_with(crate::users::change_password, |op| {
                op.describe(
                    "change_password",
                    "users",
                    "Change the caller's password, given the current one: every session of the account ends, and the answer is a fresh token pair.",
                )
                .problems(&[NotFound, UserDeactivated, UserErased, WrongPassword, VersionConflict, Unavailable])
            }),
        )
        .api_route(
            "/auth/password-reset",
            post_with(request_password_reset, |op| {
                op.describe("request_password_reset", "auth", "Mail a password-reset token to the address, if it has an account.")
            }),
        )
        .api_route(
            "/auth/password-reset/confirm",
            post_with(confirm_password_reset, |op| {
                op.describe("confirm_password_reset", "auth", "Set a new password with a password-reset token.").problems(&[
                    InvalidResetToken,
                    VersionConflict,
                    UserDeactivated, UserErased,
                ])
            }),
        )
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub email: String,
    pub password: String,
    pub name: String,
}

/// A registration that passed parsing.
pub struct Registration {
    pub email: Email,
    pub password: Password,
    pub name: Name,
}

impl TryFrom<RegisterRequest> for Registration {
    type Error = ApiError;

    fn try_from(r: RegisterRequest) -> Result<Self, Self::Error> {
        Ok(Self { email: r.email.parse()?, password: r.password.parse()?, name: r.name.parse()? })
    }
}

async fn register(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    headers: axum::http::HeaderMap,
    meta: RequestMeta,
    AppJson(req): AppJson<RegisterRequest>,
) -> Result<Created<CommandAccepted>, ApiError> {
    let registration = Registration::try_from(req)?;
    let roles = BTreeSet::from([Role::Customer]);
    let done = register_user(&state, &tenant, registration, roles, &meta.metadata(&tenant, None)).await?;
    if let Ok(user_id) = done.id.parse::<UserId>() {
        take_guest_cart(&state, &tenant, user_id, &headers, &meta.metadata(&tenant, Some(user_id))).await;
    }
    Ok(Created(done))
}

/// A guest who signs in or registers with `X-Cart-Token` keeps what the guest cart held: it is
/// merged into the customer's cart. The sign-in itself never fails for it (the merge is
/// logged if it cannot be made; the guest cart stays open to try again).
async fn take_guest_cart(
    state: &AppState,
    tenant: &TenantId,
    user_id: UserId,
    headers: &axum::http::HeaderMap,
    metadata: &store::Metadata,
) {
    let Some(token) = crate::carts::cart_token(headers) else { return };
    if let Err(e) = crate::carts::merge_guest_cart(state, tenant, user_id, &token, metadata).await {
        tracing::warn!(tenant = %tenant, user_id = %user_id, code = e.code.as_str(), cause = e.cause.as_deref().unwrap_or(""), "guest cart not merged at sign-in");
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    email: String,
    password: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct TokenResponse {
    pub(crate) access_token: String,
    pub(crate) refresh_token: String,
    pub(crate) token_type: &'static str,
    /// Seconds until the access token expires.
    pub(crate) expires_in: u64,
}

fn invalid_credentials() -> ApiError {
    ApiError::new(ErrorCode::InvalidCredentials, "the e-mail address or the password is wrong")
}

/// The active user owning `email` in `tenant`, if any.
async fn user_by_email(state: &AppState, tenant: &TenantId, email: &Email) -> Result<Option<(UserId, User)>, ApiError> {
    let (claim, _) = state.emails.read(&crate::users::email_claim_stream(state, tenant, email).await?).await?;
    // Claims made before they were keyed by a hash of the address.
    let owner = match claim.owner {
        Some(owner) => Some(owner),
        None => state.emails.read(&stream_id(tenant, email)).await?.0.owner,
    };
    let Some(user_id) = owner else {
        return Ok(None);
    };
    let (user, _) = state.users.read(&stream_id(tenant, user_id)).await?;
    Ok(Some((user_id, user)).filter(|(_, u)| u.active))
}

async fn login(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    headers: axum::http::HeaderMap,
    meta: RequestMeta,
    AppJson(req): AppJson<LoginRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    sign_in(&state, &tenant, &headers, &meta, req).await
}

/// Checks the password (each attempt counted before hashing), starts a session and takes the
/// guest cart named by `X-Cart-Token`.
pub(crate) async fn sign_in(
    state: &AppState,
    tenant: &TenantId,
    headers: &axum::http::HeaderMap,
    meta: &RequestMeta,
    req: LoginRequest,
) -> Result<Json<TokenResponse>, ApiError> {
    // Input that cannot belong to any account is a failed login like any other.
    let (Ok(email), Ok(password)) = (req.email.parse::<Email>(), req.password.parse::<Password>()) else {
        return Err(invalid_credentials());
    };
    let key = format!("{tenant}:{email}");
    // The attempt counts as a failure before its password is hashed: parallel guesses cannot
    // all pass the check before any of them is counted.
    state.limiter.begin(&key, Instant::now()).map_err(|secs| {
        ApiError::new(ErrorCode::RateLimited, "too many failed logins for this account; wait and retry").retry_after(secs)
    })?;
    let found = match user_by_email(state, tenant, &email).await {
        Ok(found) => found,
        Err(e) => {
            state.limiter.not_checked(&key);
            return Err(e);
        }
    };
    let hash = found.as_ref().and_then(|(_, user)| user.password_hash.as_ref());
    let verified = match state.hasher.check(&password, hash).await {
        Ok(verified) => verified,
        Err(unavailable) => {
            state.limiter.not_checked(&key);
            return Err(UserError::from(unavailable).into());
        }
    };
    let Some((user_id, user)) = found.filter(|_| verified) else {
        tracing::info!(tenant = %tenant, "failed login");
        return Err(invalid_credentials());
    };
    state.limiter.succeeded(&key);
    let metadata = meta.metadata(&tenant, Some(user_id));
    let answer = start_session(state, tenant, user_id, &user, &metadata).await?;
    take_guest_cart(state, tenant, user_id, headers, &metadata).await;
    Ok(answer)
}

/// Starts a session for `user` (of the user's current epoch, ending at the latest after the
/// maximum session age) and answers its first token pair.
pub(crate) async fn start_session(
    state: &AppState,
    tenant: &TenantId,
    user_id: UserId,
    user: &User,
    metadata: &store::Metadata,
) -> Result<Json<TokenResponse>, ApiError> {
    let session_id = SessionId::new();
    let refresh = OpaqueToken::generate(session_id);
    let now = state.clock.now();
    let start = SessionCommand::Start {
        tenant: tenant.clone(),
        session_id,
        user_id,
        token_hash: refresh.hash(),
        expires_at: now + state.config.refresh_token_ttl,
        epoch: user.session_epoch,
        ends_at: now + state.config.session_max_age,
    };
    state.sessions.execute(&stream_id(tenant, session_id), start, None, metadata).await?;
    token_response(state, user_id, tenant, user, refresh)
}

fn token_response(
    state: &AppState,
    user_id: UserId,
    tenant: &TenantId,
    user: &User,
    refresh: OpaqueToken<SessionId>,
) -> Result<Json<TokenResponse>, ApiError> {
    let access_token = state.jwt.issue(user_id, tenant, &user.roles, user.session_epoch, state.clock.now()).map_err(ApiError::internal)?;
    Ok(Json(TokenResponse { access_token, refresh_token: refresh.to_string(), token_type: "Bearer", expires_in: state.jwt.ttl.as_secs() }))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: String,
}

fn parse_refresh(token: &str) -> Result<OpaqueToken<SessionId>, ApiError> {
    token.parse().map_err(|_| ApiError::new(ErrorCode::InvalidRefreshToken, "the refresh token is malformed"))
}

async fn refresh(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    meta: RequestMeta,
    AppJson(req): AppJson<RefreshRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    rotate(&state, &tenant, &meta, &req.refresh_token).await
}

/// Trades refresh token `token` for a new pair (a reused one revokes its whole login).
pub(crate) async fn rotate(state: &AppState, tenant: &TenantId, meta: &RequestMeta, token: &str) -> Result<Json<TokenResponse>, ApiError> {
    let presented = parse_refresh(token)?;
    let unknown = || ApiError::new(ErrorCode::InvalidRefreshToken, "unknown session");
    let session_stream = stream_id(tenant, presented.id);
    let (session, _) = state.sessions.read(&session_stream).await?;
    let user_id = session.user_id.ok_or_else(unknown)?;
    let (user, _) = state.users.read(&stream_id(tenant, user_id)).await?;
    if !user.active {
        return Err(ApiError::new(ErrorCode::InvalidRefreshToken, "the account is deactivated"));
    }
    let next = OpaqueToken::generate(presented.id);
    let now = state.clock.now();
    // The user's epoch goes into the command: a session of an earlier epoch ends there, even
    // if the password changed between the read above and this write (the token issued below
    // then fails its first request, whose check sees the new epoch).
    let rotate = SessionCommand::Rotate {
        presented: presented.hash(),
        next: next.hash(),
        now,
        expires_at: now + state.config.refresh_token_ttl,
        ends_at: now + state.config.session_max_age,
        user_epoch: user.session_epoch,
    };
    let done = state.sessions.execute(&session_stream, rotate, None, &meta.metadata(tenant, Some(user_id))).await?;
    match done.state.revoked {
        Some(RevocationReason::ReuseDetected) => {
            tracing::warn!(tenant = %tenant, session_id = %presented.id, "refresh token reuse; session family revoked");
            Err(ApiError::new(
                ErrorCode::RefreshTokenReused,
                "this refresh token was already used; every token of its login is now revoked",
            ))
        }
        Some(_) => Err(ApiError::new(
            ErrorCode::InvalidRefreshToken,
            "the session ended: the account's password, roles or status changed; log in again",
        )),
        None => token_response(state, user_id, tenant, &user, next),
    }
}

async fn logout(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    meta: RequestMeta,
    AppJson(req): AppJson<RefreshRequest>,
) -> Result<Done, ApiError> {
    revoke(&state, &tenant, &meta, &req.refresh_token).await?;
    Ok(Done)
}

/// Ends the session of refresh token `token`.
pub(crate) async fn revoke(state: &AppState, tenant: &TenantId, meta: &RequestMeta, token: &str) -> Result<(), ApiError> {
    let presented = parse_refresh(token)?;
    let revoke = SessionCommand::Revoke { presented: presented.hash() };
    state.sessions.execute(&stream_id(tenant, presented.id), revoke, None, &meta.metadata(tenant, None)).await?;
    Ok(())
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ResetRequest {
    email: String,
}

/// Always 202: whether the address has an account is not revealed, by the answer or by its
/// timing (the work happens after the answer).
async fn request_password_reset(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    meta: RequestMeta,
    AppJson(req): AppJson<ResetRequest>,
) -> Result<Queued, ApiError> {
    let email: Email = req.email.parse()?;
    tokio::spawn(async move {
        if let Err(e) = send_reset(&state, &tenant, &email, &meta).await {
            tracing::warn!(tenant = %tenant, code = e.code.as_str(), "password reset not sent");
        }
    });
    Ok(Queued)
}

async fn send_reset(state: &AppState, tenant: &TenantId, email: &Email, meta: &RequestMeta) -> Result<(), ApiError> {
    let Some((user_id, _)) = user_by_email(state, tenant, email).await? else {
        return Ok(());
    };
    let token = OpaqueToken::generate(user_id);
    let now = state.clock.now();
    let expires_at = now + state.config.reset_token_ttl;
    let request = UserCommand::RequestPasswordReset { token_hash: token.hash(), expires_at, now };
    // Beyond the hourly limit nothing is sent; the tokens mailed before stay valid.
    state.users.execute(&stream_id(tenant, user_id), request, None, &meta.metadata(tenant, Some(user_id))).await?;
    let context = serde_json::json!({"user": {"email": email.to_string()}, "token": token.to_string(), "expires_at": expires_at.to_rfc3339(),
                           "link": format!("{}/reset?token={}", state.config.public_url, token)});
    let (subject, body) = state.templates.render(tenant.as_str(), "password_reset", &context).map_err(ApiError::internal)?;
    let mail = Mail { to: email.to_string(), subject, body, message_id: None };
    state.mailer.send(mail).await.map_err(ApiError::internal)
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ConfirmResetRequest {
    token: String,
    new_password: String,
}

async fn confirm_password_reset(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    meta: RequestMeta,
    IfMatch(if_match): IfMatch,
    AppJson(req): AppJson<ConfirmResetRequest>,
) -> Result<Json<CommandAccepted>, ApiError> {
    let invalid = || ApiError::new(ErrorCode::InvalidResetToken, "the reset token is invalid, used or expired");
    let token: OpaqueToken<UserId> = req.token.parse().map_err(|_| invalid())?;
    let new: Password = req.new_password.parse()?;
    let confirm = UserCommand::ConfirmPasswordReset { token_hash: token.hash(), new, now: state.clock.now() };
    let done =
        state.users.execute(&stream_id(&tenant, token.id), confirm, if_match, &meta.metadata(&tenant, Some(token.id))).await.map_err(
            |e| match e {
                store::ExecError::Domain(UserError::NotFound | UserError::Deactivated | UserError::Erased) => invalid(),
                other => other.into(),
            },
        )?;
    Ok(Json(CommandAccepted::new(token.id, &done)))
}
