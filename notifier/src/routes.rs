//! Webhook administration under `/api/v1/admin/webhooks`, and every channel's deliveries
//! under `/api/v1/admin/deliveries` (admins of the tenant only); each user's web push
//! subscriptions under `/api/v1/users/me/push-subscriptions`.

use aide::axum::routing::{delete_with, get_with, post_with};
use aide::axum::ApiRouter;
use axum::extract::{FromRef, Path, State};
use axum::Json;
use http_kit::{Admin, ApiError, AppJson, AppQuery, AuthUser, Created, Done, ErrorCode, JwtKeys, Problems, Queued};
use serde::Deserialize;
use worker_kit::ReadDb;

use crate::webhooks::{self, Endpoint, InvalidEndpoint, WebhookDelivery};
use crate::NotifyError;

#[derive(Clone)]
pub struct WebhookApi {
    pub db: ReadDb,
    pub jwt: JwtKeys,
    /// Which targets and how many endpoints registration allows.
    pub rules: webhooks::RegistrationRules,
    /// The VAPID public key when web push is on.
    pub push_key: Option<String>,
}

impl FromRef<WebhookApi> for JwtKeys {
    fn from_ref(state: &WebhookApi) -> JwtKeys {
        state.jwt.clone()
    }
}

/// The webhook and mail routes and their documentation, to nest under `/api/v1`.
pub fn router(state: WebhookApi) -> ApiRouter {
    use ErrorCode::NotFound;
    ApiRouter::new()
        .api_route(
            "/admin/webhooks",
            post_with(register, |op| {
                op.describe("register_webhook", "webhooks", "Register a public https endpoint for some event types.")
                    .problems(&[ErrorCode::InvalidValue, ErrorCode::LimitReached])
            })
            .get_with(list, |op| op.describe("list_webhooks", "webhooks", "The tenant's webhook endpoints.")),
        )
        .api_route(
            "/admin/webhooks/{id}",
            delete_with(delete, |op| op.describe("delete_webhook", "webhooks", "Delete a webhook endpoint.").problems(&[NotFound])),
        )
        .api_route(
            "/admin/webhooks/{id}/rotate-secret",
            post_with(rotate, |op| {
                op.describe("rotate_webhook_secret", "webhooks", "Give a webhook endpoint a new signing secret.").problems(&[NotFound])
            }),
        )
        .api_route(
            "/admin/webhooks/{id}/deliveries",
            get_with(deliveries, |op| {
                op.describe("list_webhook_deliveries", "webhooks", "The last deliveries to a webhook endpoint, newest first.")
                    .problems(&[NotFound])
            }),
        )
        .api_route(
            "/admin/webhooks/{id}/deliveries/{delivery}/redeliver",
            post_with(redeliver, |op| op.describe("redeliver_webhook", "webhooks", "Send a webhook delivery again.").problems(&[NotFound])),
        )
        .api_route("/admin/mail", get_with(mail, |op| op.describe("list_mail", "admin", "The tenant's last 100 e-mail deliveries.")))
        .api_route(
            "/admin/deliveries",
            get_with(all_deliveries, |op| {
                op.describe(
                    "list_deliveries",
                    "admin",
                    "The tenant's deliveries of every channel (e-mail, SMS, push, webhook), newest first; phone numbers and devices masked.",
                )
                .problems(&[ErrorCode::InvalidValue])
            }),
        )
        .api_route(
            "/admin/deliveries/{id}/redeliver",
            post_with(redeliver_any, |op| {
                op.describe("redeliver", "admin", "Send a failed or dead delivery of any channel again, with its attempts counted afresh.")
                    .problems(&[NotFound])
            }),
        )
        .api_route(
            "/push/vapid-public-key",
            get_with(vapid_key, |op| {
                op.describe("vapid_public_key", "push", "The shop's VAPID public key, for PushManager.subscribe (applicationServerKey).")
                    .problems(&[NotFound])
            }),
        )
        .api_route(
            "/users/me/push-subscriptions",
            post_with(push_subscribe, |op| {
                op.describe(
                    "subscribe_push",
                    "push",
                    "Register this browser's push subscription (endpoint and keys); the same endpoint again replaces its keys.",
                )
                .problems(&[ErrorCode::InvalidValue, ErrorCode::LimitReached, NotFound])
            })
            .get_with(push_list, |op| op.describe("list_push_subscriptions", "push", "The caller's push subscriptions.")),
        )
        .api_route(
            "/users/me/push-subscriptions/{id}",
            delete_with(push_unsubscribe, |op| {
                op.describe("unsubscribe_push", "push", "Remove one of the caller's push subscriptions.").problems(&[NotFound])
            }),
        )
        .with_state(state)
}

fn push_off() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "web push is not configured here")
}

/// The public key as `{public_key}` (base64url, uncompressed point).
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
struct VapidKeyView {
    public_key: String,
}

async fn vapid_key(State(state): State<WebhookApi>) -> Result<Json<VapidKeyView>, ApiError> {
    let key = state.push_key.ok_or_else(push_off)?;
    Ok(Json(VapidKeyView { public_key: key }))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "PushSubscriptionRequest")]
struct PushSubscribeRequest {
    endpoint: String,
    keys: crate::push::SubscriptionKeys,
    /// `PushSubscription.toJSON()` sends it (mostly `null`); not used.
    #[serde(default, rename = "expirationTime")]
    #[allow(dead_code)]
    expiration_time: Option<i64>,
}

/// `POST /users/me/push-subscriptions`: 201 with the subscription.
async fn push_subscribe(
    State(state): State<WebhookApi>,
    user: AuthUser,
    AppJson(req): AppJson<PushSubscribeRequest>,
) -> Result<Created<crate::push::Subscription>, ApiError> {
    if state.push_key.is_none() {
        return Err(push_off());
    }
    let (tenant, id) = (user.tenant.to_string(), user.user_id.to_string());
    let policy = state.rules.policy;
    match crate::push::subscribe(&state.db, &tenant, &id, &req.endpoint, &req.keys, policy).await.map_err(internal)? {
        Ok(subscription) => Ok(Created(subscription)),
        Err(e @ crate::push::InvalidSubscription::TooMany(_)) => Err(ApiError::new(ErrorCode::LimitReached, e.to_string())),
        Err(e @ crate::push::InvalidSubscription::Endpoint(_)) => {
            Err(ApiError::new(ErrorCode::InvalidValue, e.to_string()).with("field", "endpoint"))
        }
        Err(e) => Err(ApiError::new(ErrorCode::InvalidValue, e.to_string()).with("field", "keys")),
    }
}

async fn push_list(State(state): State<WebhookApi>, user: AuthUser) -> Result<Json<Vec<crate::push::Subscription>>, ApiError> {
    let list = crate::push::subscriptions(&state.db, user.tenant.as_str(), &user.user_id.to_string()).await.map_err(internal)?;
    Ok(Json(list))
}

async fn push_unsubscribe(State(state): State<WebhookApi>, user: AuthUser, Path(id): Path<String>) -> Result<Done, ApiError> {
    match crate::push::unsubscribe(&state.db, user.tenant.as_str(), &user.user_id.to_string(), &id).await.map_err(internal)? {
        true => Ok(Done),
        false => Err(ApiError::not_found("push subscription")),
    }
}

/// `GET /admin/mail`: the tenant's last 100 e-mail deliveries (`sending` after a crash means
/// the message may not have gone out; it is not sent again by itself).
async fn mail(State(state): State<WebhookApi>, Admin(admin): Admin) -> Result<Json<Vec<crate::Delivery>>, ApiError> {
    let email = crate::DeliveryFilter { channel: Some(crate::Channel::Email), status: None };
    Ok(Json(crate::deliveries(&state.db, &admin.tenant, email, 100).await.map_err(internal)?))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct DeliveriesQuery {
    channel: Option<crate::Channel>,
    status: Option<crate::DeliveryStatus>,
    /// 1 to 500; 100 when not given.
    limit: Option<i64>,
}

/// `GET /admin/deliveries?channel=&status=&limit=`.
async fn all_deliveries(
    State(state): State<WebhookApi>,
    Admin(admin): Admin,
    AppQuery(q): AppQuery<DeliveriesQuery>,
) -> Result<Json<Vec<crate::Delivery>>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::new(ErrorCode::InvalidValue, "limit must be 1-500").with("field", "limit"));
    }
    let filter = crate::DeliveryFilter { channel: q.channel, status: q.status };
    Ok(Json(crate::deliveries(&state.db, &admin.tenant, filter, limit).await.map_err(internal)?))
}

/// `POST /admin/deliveries/{id}/redeliver`: 202; 404 unless the delivery is failed or dead.
async fn redeliver_any(State(state): State<WebhookApi>, Admin(admin): Admin, Path(id): Path<String>) -> Result<Queued, ApiError> {
    match crate::redeliver(&state.db, &admin.tenant, &id).await.map_err(internal)? {
        true => Ok(Queued),
        false => Err(ApiError::not_found("delivery")),
    }
}

fn internal(e: NotifyError) -> ApiError {
    ApiError::failure(e)
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "WebhookRegistration")]
struct RegisterRequest {
    url: String,
    event_types: Vec<String>,
}

/// `POST /admin/webhooks`: 201 with the endpoint and its signing secret (shown only here and
/// at rotation).
async fn register(
    State(state): State<WebhookApi>,
    Admin(admin): Admin,
    AppJson(req): AppJson<RegisterRequest>,
) -> Result<Created<Endpoint>, ApiError> {
    match webhooks::register(&state.db, admin.tenant.as_str(), &req.url, req.event_types, state.rules).await.map_err(internal)? {
        Ok(endpoint) => Ok(Created(endpoint)),
        Err(e @ InvalidEndpoint::TooMany(_)) => Err(ApiError::new(ErrorCode::LimitReached, e.to_string())),
        Err(e) => {
            let field = if e == InvalidEndpoint::EventTypes { "event_types" } else { "url" };
            Err(ApiError::new(ErrorCode::InvalidValue, e.to_string()).with("field", field))
        }
    }
}

async fn list(State(state): State<WebhookApi>, Admin(admin): Admin) -> Result<Json<Vec<Endpoint>>, ApiError> {
    Ok(Json(webhooks::list(&state.db, admin.tenant.as_str()).await.map_err(internal)?))
}

async fn delete(State(state): State<WebhookApi>, Admin(admin): Admin, Path(id): Path<String>) -> Result<Done, ApiError> {
    match webhooks::delete(&state.db, admin.tenant.as_str(), &id).await.map_err(internal)? {
        true => Ok(Done),
        false => Err(ApiError::not_found("webhook")),
    }
}

/// A webhook endpoint's new signing secret (shown only here and at registration).
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
struct Rotated {
    id: String,
    secret: String,
}

async fn rotate(State(state): State<WebhookApi>, Admin(admin): Admin, Path(id): Path<String>) -> Result<Json<Rotated>, ApiError> {
    let secret = webhooks::rotate_secret(&state.db, admin.tenant.as_str(), &id).await.map_err(internal)?;
    secret.map(|secret| Json(Rotated { id, secret })).ok_or_else(|| ApiError::not_found("webhook"))
}

async fn deliveries(
    State(state): State<WebhookApi>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<Json<Vec<WebhookDelivery>>, ApiError> {
    let found = webhooks::deliveries(&state.db, admin.tenant.as_str(), &id, 100).await.map_err(internal)?;
    found.map(Json).ok_or_else(|| ApiError::not_found("webhook"))
}

async fn redeliver(
    State(state): State<WebhookApi>,
    Admin(admin): Admin,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<Queued, ApiError> {
    match webhooks::redeliver(&state.db, admin.tenant.as_str(), &id, &delivery).await.map_err(internal)? {
        true => Ok(Queued),
        false => Err(ApiError::not_found("delivery")),
    }
}
