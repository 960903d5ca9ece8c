//! Time travel and the audit trail, for admins: an aggregate's events with who caused each,
//! why (correlation and causation, the saga step) and when, a page at a time; and its state as
//! it was at any log position or time, folded from the log by the same `apply` the aggregate
//! runs. Only the published aggregate types are shown (claims and sessions are bookkeeping),
//! only the admin's tenant, and with the topic contract's redactions (no secret even hashed,
//! payment methods masked), in the state too.

use aide::axum::routing::get_with;
use aide::axum::ApiRouter;
use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use http_kit::{Admin, ApiError, AppQuery, ErrorCode, Problems};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use store::LogEvent;
use worker_kit::envelope::{hide_everywhere, public_data, PUBLIC_TYPES};

use crate::{page_size, QueryState};

pub fn router() -> ApiRouter<QueryState> {
    use ErrorCode::*;
    ApiRouter::new()
        .api_route(
            "/admin/history/{aggregate_type}/{id}",
            get_with(events, |op| {
                op.describe("get_history", "admin", "An aggregate's events with who, why and when, oldest first, a page at a time.")
                    .problems(&[NotFound, InvalidValue])
            }),
        )
        .api_route(
            "/admin/history/{aggregate_type}/{id}/state",
            get_with(state_at, |op| {
                op.describe("get_state_at", "admin", "An aggregate's state as it was at a log position or a time (now without either).")
                    .problems(&[NotFound, InvalidValue])
            }),
        )
}

/// Which aggregate: one of the published types, and its id within the caller's tenant.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct Target {
    /// `user`, `product`, `stock`, `order`, `payment`, `cart`, `promotion`, `tenant_settings`.
    aggregate_type: String,
    /// The aggregate's id (a uuid, or the SKU of a stock item).
    id: String,
}

impl Target {
    /// The stored aggregate type and stream id; 404 for a type that is not published, 422 for
    /// an id that cannot be one.
    fn stream(&self, admin: &http_kit::AuthUser) -> Result<(&'static str, String), ApiError> {
        let kind = PUBLIC_TYPES.iter().find(|t| **t == self.aggregate_type).ok_or_else(|| ApiError::not_found("aggregate type"))?;
        let id_ok = !self.id.is_empty() && self.id.len() <= 200 && !self.id.chars().any(char::is_control);
        if !id_ok {
            return Err(ApiError::new(ErrorCode::InvalidValue, "id must be 1-200 characters").with("field", "id"));
        }
        Ok((kind, domain::stream_id(&admin.tenant, &self.id)))
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// Events after this sequence number (the `next_after` of the previous page).
    after: Option<i64>,
    /// Events per page, 1-100 (default 20).
    limit: Option<i64>,
}

/// One page of an aggregate's history.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct History {
    aggregate_type: &'static str,
    id: String,
    events: Vec<Entry>,
    /// Ask again with `after` set to this for the next page; `null` on the last.
    next_after: Option<i64>,
}

/// One event: what, who, why and when.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct Entry {
    /// Its place in the aggregate's stream, from 1.
    sequence: i64,
    /// Its place in the global log.
    position: i64,
    /// `<aggregate type>.<event>`, as on the topics.
    #[serde(rename = "type")]
    event_type: String,
    /// The version of its shape (always the current one: older ones are brought up to date).
    version: String,
    occurred_at: String,
    /// Its fields, as the topic contract shows them.
    data: Value,
    who: Who,
    why: Why,
}

/// Who caused an event.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct Who {
    /// The signed-in user whose request it was; `null` for the shop's own work (the saga).
    user_id: Option<String>,
}

/// Why an event happened.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct Why {
    /// Shared by everything one request led to (the order id for the saga's steps).
    correlation_id: Option<String>,
    /// The request or process that caused it directly (`order_saga` for the saga).
    causation_id: Option<String>,
    /// The saga step that wrote it (`reserve`, `confirm_paid`, `invoice`, …), when the saga did.
    saga_step: Option<String>,
}

impl From<&LogEvent> for Entry {
    fn from(e: &LogEvent) -> Self {
        let meta = |k: &str| e.metadata.get(k).and_then(Value::as_str).map(str::to_owned);
        // The saga's writes carry `saga:<order>:<step>` as their idempotency key.
        let saga_step = meta("idempotency_key").and_then(|k| k.strip_prefix("saga:").and_then(|r| r.rsplit(':').next()).map(str::to_owned));
        Entry {
            sequence: e.sequence,
            position: e.cursor.position,
            event_type: format!("{}.{}", e.aggregate_type, e.event_type),
            version: e.event_version.clone(),
            occurred_at: time(e.recorded_at),
            data: public_data(&e.payload),
            who: Who { user_id: meta("user_id") },
            why: Why { correlation_id: meta("correlation_id"), causation_id: meta("causation_id"), saga_step },
        }
    }
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The aggregate's events, oldest first; 404 when it has none.
async fn events(
    State(state): State<QueryState>,
    Admin(admin): Admin,
    Path(target): Path<Target>,
    AppQuery(q): AppQuery<EventsQuery>,
) -> Result<Json<History>, ApiError> {
    let (kind, stream) = target.stream(&admin)?;
    let limit = page_size(q.limit)?;
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::new(ErrorCode::InvalidValue, "after must be 0 or more").with("field", "after"));
    }
    let store = state.read.sql.store();
    let mut page = store.stream_log(kind, &stream, after, limit as u32 + 1).await.map_err(ApiError::failure)?;
    if page.is_empty() && (after == 0 || store.stream_version(kind, &stream).await.map_err(ApiError::failure)? == 0) {
        return Err(ApiError::not_found(kind));
    }
    let next_after = if page.len() as i64 > limit {
        page.truncate(limit as usize);
        page.last().map(|e| e.sequence)
    } else {
        None
    };
    Ok(Json(History { aggregate_type: kind, id: target.id, events: page.iter().map(Entry::from).collect(), next_after }))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct StateQuery {
    /// The state after the last event of the aggregate at or before this log position.
    at_position: Option<i64>,
    /// The state after the last event of the aggregate recorded at or before this time (RFC 3339).
    at: Option<String>,
}

/// An aggregate's state at a point of its history.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct StateAt {
    aggregate_type: &'static str,
    id: String,
    /// The last event folded in: its sequence, position and time.
    sequence: i64,
    position: i64,
    occurred_at: String,
    /// Whether a snapshot was the starting point (then fewer events were read).
    from_snapshot: bool,
    /// The aggregate's state then, as the aggregate keeps it (secrets removed, payment
    /// methods masked).
    state: Value,
}

/// Events read per round while folding.
const FOLD_PAGE: u32 = 1000;

/// The state after the last event at or before the point asked for; 404 when the aggregate
/// did not exist then (or at all).
async fn state_at(
    State(state): State<QueryState>,
    Admin(admin): Admin,
    Path(target): Path<Target>,
    AppQuery(q): AppQuery<StateQuery>,
) -> Result<Json<StateAt>, ApiError> {
    let (kind, stream) = target.stream(&admin)?;
    let until: Box<dyn Fn(&LogEvent) -> bool + Send + Sync> = match (q.at_position, q.at.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(ErrorCode::InvalidValue, "give at_position or at, not both").with("field", "at"));
        }
        (Some(n), None) if n < 1 => {
            return Err(ApiError::new(ErrorCode::InvalidValue, "at_position must be 1 or more").with("field", "at_position"));
        }
        (Some(n), None) => Box::new(move |e| e.cursor.position <= n),
        (None, Some(at)) => {
            let at = DateTime::parse_from_rfc3339(at)
                .map_err(|_| ApiError::new(ErrorCode::InvalidValue, "at must be an RFC 3339 time").with("field", "at"))?
                .with_timezone(&Utc);
            // At the millisecond, as times are shown: the time of an event includes it.
            let at = at.timestamp_millis();
            Box::new(move |e| e.recorded_at.timestamp_millis() <= at)
        }
        (None, None) => Box::new(|_| true),
    };
    let store = state.read.sql.store();
    // A snapshot helps when it is not past the point asked for (known only for a position).
    let snapshot = match q.at {
        None => store.load_snapshot(kind, &stream).await.map_err(ApiError::failure)?,
        Some(_) => None,
    }
    .filter(|s| q.at_position.is_none_or(|n| s.last_position <= n));
    let mut after = snapshot.as_ref().map_or(0, |s| s.last_sequence as i64);
    let mut payloads = Vec::new();
    let mut last: Option<LogEvent> = None;
    'read: loop {
        let page = store.stream_log(kind, &stream, after, FOLD_PAGE).await.map_err(ApiError::failure)?;
        let full = page.len() == FOLD_PAGE as usize;
        for e in page {
            if !until(&e) {
                break 'read;
            }
            after = e.sequence;
            payloads.push(e.payload.clone());
            last = Some(e);
        }
        if !full {
            break;
        }
    }
    if let (None, Some(s)) = (&last, &snapshot) {
        // Nothing after the snapshot: the snapshot is the state, as of its last event.
        last = store.stream_log(kind, &stream, s.last_sequence as i64 - 1, 1).await.map_err(ApiError::failure)?.pop();
    }
    let Some(last) = last else { return Err(ApiError::not_found(&format!("{kind} at that point"))) };
    let mut folded = domain::history::fold(kind, snapshot.as_ref().map(|s| &s.payload), &payloads)
        .map_err(|e| ApiError::failure(std::io::Error::other(format!("{kind} {stream} does not fold: {e}"))))?;
    hide_everywhere(&mut folded);
    Ok(Json(StateAt {
        aggregate_type: kind,
        id: target.id,
        sequence: last.sequence,
        position: last.cursor.position,
        occurred_at: time(last.recorded_at),
        from_snapshot: snapshot.is_some(),
        state: folded,
    }))
}
