//! `GET /api/v1/ws`: live updates over one WebSocket, for storefronts and admin consoles.
//!
//! # The protocol (JSON text frames)
//! 1. Within [`AUTH_WITHIN`] of connecting, the client sends `{"type": "auth", "token": "<access
//!    token>"}` (a token in a first message, not in the URL, which proxies log). The server
//!    answers `{"type": "ready", "user_id", "admin", "expires_at"}`; a missing or bad token
//!    closes the socket with code 4401.
//! 2. `{"type": "subscribe", "topics": [...], "since": N}` (or `"since": {"<topic>": N}`): every
//!    entry after log position `N` (none: from the start), then each new one as it happens.
//!    Topics: `orders` (the caller's orders: the same entries as `GET /orders/{id}/events`),
//!    and for admins of the tenant `admin.orders` (orders placed), `admin.low_stock` (a SKU's
//!    stock changed while fewer than `below`, default [`LOW_STOCK_BELOW`], are available) and
//!    `admin.dead_letters` (events a projection parked). A topic the caller may not read is
//!    an `{"type": "error", "code": "forbidden"}` and is not subscribed.
//! 3. Each entry is `{"type": "event", "topic", "position", "data"}`. Within a topic positions
//!    rise; a client that reconnects with the last position it saw per topic gets what it
//!    missed, and nothing twice.
//!
//! The server pings every `SHOP_LIVE_PING_SECS` (20) and closes a socket it has not heard
//! from for three of them (ping, pong or anything else). The socket closes (4401) when the access token expires, unless the client
//! sends a fresh token of the same user first (`{"type": "auth", ...}` again; its roles then
//! apply). Sockets count toward the same per-user and per-process limits as the order event
//! streams ([`crate::live`]); beyond them the server answers `rate_limited` and closes (1013).
//! `orders` entries are signalled by the live order feed; the admin topics are looked at every
//! [`ADMIN_POLL`], the orders again every [`crate::live::SAFETY_POLL`].

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use http_kit::AuthUser;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::Row as _;
use tokio::time::Instant;

use crate::QueryState;

/// How long a new socket has to authenticate.
pub const AUTH_WITHIN: Duration = Duration::from_secs(5);
pub const ADMIN_POLL: Duration = Duration::from_secs(1);
/// `admin.low_stock` without `below`: the same default as `GET /admin/stock/low`.
pub const LOW_STOCK_BELOW: i64 = 5;
/// Entries per topic and look; more follow at once.
const PAGE: i64 = 200;
/// How long a closing socket waits for the client's close frame.
const CLOSING: Duration = Duration::from_secs(2);
/// Largest message a client may send.
const MAX_MESSAGE: usize = 16 * 1024;

const UNAUTHENTICATED: u16 = 4401;
const TRY_AGAIN_LATER: u16 = 1013;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
enum Topic {
    #[serde(rename = "orders")]
    Orders,
    #[serde(rename = "admin.orders")]
    AdminOrders,
    #[serde(rename = "admin.low_stock")]
    LowStock,
    #[serde(rename = "admin.dead_letters")]
    DeadLetters,
}

impl Topic {
    const fn name(self) -> &'static str {
        match self {
            Topic::Orders => "orders",
            Topic::AdminOrders => "admin.orders",
            Topic::LowStock => "admin.low_stock",
            Topic::DeadLetters => "admin.dead_letters",
        }
    }

    const fn admin(self) -> bool {
        !matches!(self, Topic::Orders)
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Since {
    All(i64),
    PerTopic(BTreeMap<Topic, i64>),
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMessage {
    Auth {
        token: String,
    },
    Subscribe {
        topics: Vec<Topic>,
        #[serde(default)]
        since: Option<Since>,
        #[serde(default)]
        below: Option<i64>,
    },
}

/// The upgrade: authentication happens inside the socket.
pub async fn upgrade(State(state): State<QueryState>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(MAX_MESSAGE).max_frame_size(MAX_MESSAGE).on_upgrade(move |socket| session(state, socket))
}

fn text(value: Value) -> Message {
    Message::Text(value.to_string().into())
}

/// `{"type": "ready", …}`: who the socket now serves, and until when.
fn ready(user: &AuthUser) -> Message {
    text(json!({"type": "ready", "user_id": user.user_id.to_string(), "admin": user.is_admin(), "expires_at": user.expires_at}))
}

fn error(code: &str, detail: &str) -> Message {
    text(json!({"type": "error", "code": code, "detail": detail}))
}

/// Sends a close frame and waits (briefly) for the client's, reading what it still sends: a
/// connection dropped with unread data would be reset, and the client could lose the close
/// frame and the message before it.
async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    if socket.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSING, async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// When `user`'s token expires, as an instant of this process.
fn expiry(user: &AuthUser) -> Instant {
    let left = (user.expires_at - chrono::Utc::now().timestamp()).max(0) as u64;
    Instant::now() + Duration::from_secs(left)
}

/// The first message, which must authenticate.
async fn authenticate(state: &QueryState, socket: &mut WebSocket) -> Result<AuthUser, &'static str> {
    let first = tokio::time::timeout(AUTH_WITHIN, socket.recv()).await.map_err(|_| "no authentication in time")?;
    let Some(Ok(Message::Text(first))) = first else { return Err("the first message must authenticate") };
    match serde_json::from_str(first.as_str()) {
        Ok(ClientMessage::Auth { token }) => state.jwt.authenticate(&token).await.map_err(|_| "invalid or expired token"),
        _ => Err("the first message must authenticate"),
    }
}

/// One socket, from authentication to close.
async fn session(state: QueryState, mut socket: WebSocket) {
    let mut user = match authenticate(&state, &mut socket).await {
        Ok(user) => user,
        Err(why) => {
            let _ = socket.send(error("unauthenticated", why)).await;
            close(&mut socket, UNAUTHENTICATED, "unauthenticated").await;
            return;
        }
    };
    let Some(_permit) = state.live.open(user.user_id) else {
        let _ = socket.send(error("rate_limited", "too many open streams; close one or wait")).await;
        close(&mut socket, TRY_AGAIN_LATER, "too many streams").await;
        return;
    };
    // Subscribed before the first read: nothing written after it goes unsignalled.
    let mut changes = state.live.subscribe();
    let mut expires = expiry(&user);
    if socket.send(ready(&user)).await.is_err() {
        return;
    }
    let tenant_prefix = format!("{}/", user.tenant);
    // Each subscribed topic with the last position sent.
    let mut topics: BTreeMap<Topic, i64> = BTreeMap::new();
    let mut below = LOW_STOCK_BELOW;
    let mut heard = Instant::now();
    let ping_every = state.live.limits().ping_every;
    let silent_limit = ping_every * 3;
    let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    let mut admin_poll = tokio::time::interval(ADMIN_POLL);
    let mut orders_poll = tokio::time::interval(crate::live::SAFETY_POLL);
    // Which topics to look at now.
    let (mut look_orders, mut look_admin) = (false, false);
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                heard = Instant::now();
                let message = match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Binary(_))) => {
                        let _ = socket.send(error("malformed_body", "text frames only")).await;
                        continue;
                    }
                    Some(Ok(_)) => continue, // ping and pong
                };
                match serde_json::from_str::<ClientMessage>(message.as_str()) {
                    Ok(ClientMessage::Auth { token }) => match state.jwt.authenticate(&token).await {
                        Ok(fresh) if fresh.user_id == user.user_id && fresh.tenant == user.tenant => {
                            user = fresh;
                            expires = expiry(&user);
                            if !user.is_admin() {
                                topics.retain(|t, _| !t.admin());
                            }
                            if socket.send(ready(&user)).await.is_err() {
                                return;
                            }
                        }
                        _ => {
                            let _ = socket.send(error("unauthenticated", "a fresh token of the same user is needed")).await;
                            close(&mut socket, UNAUTHENTICATED, "unauthenticated").await;
                            return;
                        }
                    },
                    Ok(ClientMessage::Subscribe { topics: wanted, since, below: asked }) => {
                        if let Some(b) = asked {
                            below = b.clamp(1, 1_000_000);
                        }
                        let mut granted = Vec::new();
                        for topic in wanted {
                            if topic.admin() && !user.is_admin() {
                                let _ = socket.send(error("forbidden", &format!("{} is for admins", topic.name()))).await;
                                continue;
                            }
                            let from = match &since {
                                Some(Since::All(n)) => *n,
                                Some(Since::PerTopic(map)) => map.get(&topic).copied().unwrap_or(0),
                                None => 0,
                            };
                            topics.insert(topic, from);
                            granted.push(topic.name());
                        }
                        if socket.send(text(json!({"type": "subscribed", "topics": granted}))).await.is_err() {
                            return;
                        }
                        (look_orders, look_admin) = (true, true);
                    }
                    Err(e) => {
                        let _ = socket.send(error("malformed_body", &e.to_string())).await;
                    }
                }
            }
            _ = tokio::time::sleep_until(expires) => {
                close(&mut socket, UNAUTHENTICATED, "token expired").await;
                return;
            }
            _ = ping.tick() => {
                if heard.elapsed() > silent_limit {
                    close(&mut socket, 1001, "no answer to pings").await;
                    return;
                }
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
            change = changes.recv() => match change {
                Ok(key) => look_orders |= key.starts_with(&tenant_prefix),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => look_orders = true,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {}
            },
            _ = admin_poll.tick() => look_admin = true,
            _ = orders_poll.tick() => look_orders = true,
        }
        let due: Vec<(Topic, i64)> =
            topics.iter().filter(|(t, _)| if t.admin() { look_admin } else { look_orders }).map(|(t, at)| (*t, *at)).collect();
        (look_orders, look_admin) = (false, false);
        for (topic, after) in due {
            let entries = match entries(&state, &user, topic, after, below).await {
                Ok(entries) => entries,
                Err(e) => {
                    tracing::warn!(error = %e, topic = topic.name(), "live socket could not read its topic; looking again later");
                    continue;
                }
            };
            // A full page: look again at once.
            if entries.len() as i64 == PAGE {
                look_orders |= !topic.admin();
                look_admin |= topic.admin();
            }
            for (position, data) in entries {
                let event = json!({"type": "event", "topic": topic.name(), "position": position, "data": data});
                if socket.send(text(event)).await.is_err() {
                    return;
                }
                topics.insert(topic, position);
            }
        }
    }
}

/// The entries of `topic` after `after` that `user` may read, oldest first.
async fn entries(state: &QueryState, user: &AuthUser, topic: Topic, after: i64, below: i64) -> Result<Vec<(i64, Value)>, sqlx::Error> {
    let tenant = user.tenant.to_string();
    let timeline = projections::orders::timeline_table(projections::orders::TABLE);
    let orders = projections::orders::TABLE;
    let mine = format!(
        "SELECT t.order_id, t.position, t.source, t.event, t.status, t.detail, t.at_ms FROM {timeline} t \
         JOIN {orders} o ON o.tenant = t.tenant AND o.order_id = t.order_id \
         WHERE t.tenant = $1 AND o.customer = $2 AND t.position > $3 ORDER BY t.position LIMIT $4"
    );
    let placed = format!(
        "SELECT t.order_id, t.position, t.source, t.event, t.status, t.detail, t.at_ms FROM {timeline} t \
         WHERE t.tenant = $1 AND t.event = 'placed' AND t.position > $2 ORDER BY t.position LIMIT $3"
    );
    let rows = match topic {
        Topic::Orders => sqlx::query(&mine).bind(&tenant).bind(user.user_id.to_string()).bind(after).bind(PAGE),
        Topic::AdminOrders => sqlx::query(&placed).bind(&tenant).bind(after).bind(PAGE),
        Topic::LowStock => sqlx::query(
            "SELECT sku, on_hand, available, position FROM rm_stock \
             WHERE tenant = $1 AND available < $2 AND position > $3 ORDER BY position LIMIT $4",
        )
        .bind(&tenant)
        .bind(below)
        .bind(after)
        .bind(PAGE),
        // Stream ids are `<tenant>:<key>`.
        Topic::DeadLetters => sqlx::query(
            "SELECT id, projection, aggregate_id, position, error, parked_at_ms FROM projection_dead_letters \
             WHERE substr(aggregate_id, 1, length($1)) = $1 AND position > $2 ORDER BY position LIMIT $3",
        )
        .bind(format!("{tenant}:"))
        .bind(after)
        .bind(PAGE),
    }
    .fetch_all(state.pool())
    .await?;
    rows.iter()
        .map(|r| match topic {
            Topic::Orders | Topic::AdminOrders => {
                let (position, entry) = crate::orders::timeline_entry(r)?;
                let mut data = serde_json::to_value(entry).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                data["order_id"] = json!(r.try_get::<String, _>("order_id")?);
                Ok((position, data))
            }
            Topic::LowStock => Ok((
                r.try_get("position")?,
                json!({"sku": r.try_get::<String, _>("sku")?, "available": r.try_get::<i64, _>("available")?, "on_hand": r.try_get::<i64, _>("on_hand")?, "below": below}),
            )),
            Topic::DeadLetters => Ok((
                r.try_get("position")?,
                json!({
                    "id": r.try_get::<String, _>("id")?,
                    "projection": r.try_get::<String, _>("projection")?,
                    "aggregate_id": r.try_get::<String, _>("aggregate_id")?,
                    "error": r.try_get::<String, _>("error")?,
                    "parked_at_ms": r.try_get::<i64, _>("parked_at_ms")?,
                }),
            )),
        })
        .collect()
}
