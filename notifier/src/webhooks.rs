//! Webhooks: tenants register endpoints for event types; each matching event is POSTed to each
//! endpoint as its public envelope, signed, retried with backoff and jitter, dead-lettered
//! after `max_attempts`, listed, and redeliverable by hand.
//!
//! - Planning (in the notifier's log round) only inserts a `pending` delivery row per
//!   (event, endpoint); the [`Dispatcher`] sends them. Each endpoint is worked by its own task,
//!   in log order, so a slow or failing endpoint never delays another.
//! - `Shop-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the secret>`
//!   and `Shop-Event-Id: <envelope id>` on every request. Delivery is at least once; receivers
//!   de-duplicate by `Shop-Event-Id`, which makes it once in effect. A delivery claimed by a
//!   dispatcher that died is taken over after [`DispatchConfig::stale_after`]; if the endpoint
//!   had already answered, it gets the same request (same `Shop-Event-Id`) a second time.
//! - `https://` endpoints are verified against the Mozilla roots (webpki-roots), plus any
//!   private CA given in [`DispatchConfig::extra_roots_pem`] (`SHOP_WEBHOOK_CA_FILE`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use sqlx::Row as _;
use worker_kit::ReadDb;

use crate::targets::{check_target, check_url, CheckedResolver, InternalAddress, Refused, TargetPolicy};
use crate::{DeliveryStatus, NotifyError};

/// A registered endpoint (its secret only at registration and rotation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Endpoint {
    pub id: String,
    pub url: String,
    pub event_types: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// Why an endpoint could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEndpoint {
    #[error("url must be an https:// address of at most 2000 characters")]
    Url,
    #[error("url: {0}")]
    Target(Refused),
    #[error("event_types must list 1 to 50 types such as order.confirmed, order.* or *")]
    EventTypes,
    #[error("a tenant has at most {0} webhook endpoints")]
    TooMany(i64),
}

/// What registration allows: which targets, and how many endpoints per tenant
/// (`SHOP_WEBHOOK_MAX_ENDPOINTS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrationRules {
    pub policy: TargetPolicy,
    pub max_endpoints: i64,
}

impl Default for RegistrationRules {
    fn default() -> Self {
        Self { policy: TargetPolicy::default(), max_endpoints: 20 }
    }
}

/// Whether envelope type `event_type` (`order.confirmed`) matches `pattern` (`order.confirmed`,
/// `order.*`, `*`).
pub fn matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix(".*") {
        _ if pattern == "*" => true,
        Some(prefix) => event_type.split_once('.').is_some_and(|(aggregate, _)| aggregate == prefix),
        None => pattern == event_type,
    }
}

fn valid_pattern(p: &str) -> bool {
    let word = |w: &str| !w.is_empty() && w.len() <= 60 && w.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    p == "*" || p.split_once('.').is_some_and(|(a, e)| word(a) && (e == "*" || word(e)))
}

fn new_secret() -> String {
    format!("whsec_{}", uuid::Uuid::new_v4().simple())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Registers an endpoint of `tenant`; the answer carries its signing secret. The URL must be
/// a public https target ([`check_target`], resolved now and again at every delivery), and a
/// tenant has at most `rules.max_endpoints`.
pub async fn register(
    db: &ReadDb,
    tenant: &str,
    url: &str,
    event_types: Vec<String>,
    rules: RegistrationRules,
) -> Result<Result<Endpoint, InvalidEndpoint>, NotifyError> {
    if url.len() > 2000 || url.contains(char::is_whitespace) {
        return Ok(Err(InvalidEndpoint::Url));
    }
    if let Err(refused) = check_target(url, rules.policy).await {
        return Ok(Err(InvalidEndpoint::Target(refused)));
    }
    if event_types.is_empty() || event_types.len() > 50 || !event_types.iter().all(|t| valid_pattern(t)) {
        return Ok(Err(InvalidEndpoint::EventTypes));
    }
    let endpoint = Endpoint { id: uuid::Uuid::now_v7().to_string(), url: url.to_owned(), event_types, secret: Some(new_secret()) };
    // Count and insert in one transaction, serialised per tenant, so parallel registrations
    // cannot pass the limit together.
    let mut tx = db.begin().await?;
    if !db.is_sqlite() {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('webhook_endpoints:' || $1))::text").bind(tenant).execute(&mut *tx).await?;
    }
    let live: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_endpoints WHERE tenant = $1 AND deleted = 0")
        .bind(tenant)
        .fetch_one(&mut *tx)
        .await?;
    if live >= rules.max_endpoints {
        return Ok(Err(InvalidEndpoint::TooMany(rules.max_endpoints)));
    }
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, tenant, url, event_types, secret, created_at_ms, deleted) VALUES ($1, $2, $3, $4, $5, $6, 0)",
    )
    .bind(&endpoint.id)
    .bind(tenant)
    .bind(&endpoint.url)
    .bind(endpoint.event_types.join(","))
    .bind(endpoint.secret.as_deref())
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Ok(endpoint))
}

/// The tenant's live endpoints, without secrets.
pub async fn list(db: &ReadDb, tenant: &str) -> Result<Vec<Endpoint>, NotifyError> {
    Ok(live_endpoints(db, Some(tenant)).await?.into_iter().map(|(_, endpoint)| endpoint).collect())
}

/// The live endpoints of `tenant` (of every tenant with `None`), with their tenant, by id.
async fn live_endpoints(db: &ReadDb, tenant: Option<&str>) -> Result<Vec<(String, Endpoint)>, NotifyError> {
    let rows = sqlx::query(
        "SELECT tenant, id, url, event_types FROM webhook_endpoints WHERE ($1 IS NULL OR tenant = $1) AND deleted = 0 ORDER BY id",
    )
    .bind(tenant)
    .fetch_all(&db.pool)
    .await?;
    let endpoints = rows
        .iter()
        .map(|r| {
            let types: String = r.try_get(3)?;
            let endpoint = Endpoint {
                id: r.try_get(1)?,
                url: r.try_get(2)?,
                event_types: types.split(',').map(str::to_owned).collect(),
                secret: None,
            };
            Ok::<_, sqlx::Error>((r.try_get(0)?, endpoint))
        })
        .collect::<Result<_, _>>()?;
    Ok(endpoints)
}

/// Deletes an endpoint of `tenant`; false if there was none. Pending deliveries to it stop.
pub async fn delete(db: &ReadDb, tenant: &str, id: &str) -> Result<bool, NotifyError> {
    let done = sqlx::query("UPDATE webhook_endpoints SET deleted = 1 WHERE id = $1 AND tenant = $2 AND deleted = 0")
        .bind(id)
        .bind(tenant)
        .execute(&db.pool)
        .await?
        .rows_affected();
    Ok(done == 1)
}

/// Gives an endpoint of `tenant` a new secret (from the next request on); `None` if there is
/// no such endpoint.
pub async fn rotate_secret(db: &ReadDb, tenant: &str, id: &str) -> Result<Option<String>, NotifyError> {
    let secret = new_secret();
    let done = sqlx::query("UPDATE webhook_endpoints SET secret = $1 WHERE id = $2 AND tenant = $3 AND deleted = 0")
        .bind(&secret)
        .bind(id)
        .bind(tenant)
        .execute(&db.pool)
        .await?
        .rows_affected();
    Ok((done == 1).then_some(secret))
}

/// One delivery to an endpoint, for operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct WebhookDelivery {
    pub id: String,
    pub event_id: String,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub next_attempt_ms: Option<i64>,
}

/// The deliveries to endpoint `id` of `tenant`, newest first; `None` if no such endpoint.
pub async fn deliveries(db: &ReadDb, tenant: &str, id: &str, limit: i64) -> Result<Option<Vec<WebhookDelivery>>, NotifyError> {
    let known: Option<String> = sqlx::query_scalar("SELECT id FROM webhook_endpoints WHERE id = $1 AND tenant = $2")
        .bind(id)
        .bind(tenant)
        .fetch_optional(&db.pool)
        .await?;
    if known.is_none() {
        return Ok(None);
    }
    let rows = sqlx::query(
        "SELECT id, subject, template, status, attempts, last_error, next_attempt_ms FROM notifier_deliveries \
         WHERE channel = 'webhook' AND recipient = $1 ORDER BY event_position DESC LIMIT $2",
    )
    .bind(id)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    let list = rows
        .iter()
        .map(|r| {
            Ok(WebhookDelivery {
                id: r.try_get(0)?,
                event_id: r.try_get(1)?,
                event_type: r.try_get(2)?,
                status: r.try_get::<String, _>(3)?.parse()?,
                attempts: r.try_get(4)?,
                last_error: r.try_get(5)?,
                next_attempt_ms: r.try_get(6)?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Some(list))
}

/// Sends a delivery of endpoint `endpoint` of `tenant` again now (also a dead one); false if
/// there is no such delivery.
pub async fn redeliver(db: &ReadDb, tenant: &str, endpoint: &str, delivery: &str) -> Result<bool, NotifyError> {
    let done = sqlx::query(
        "UPDATE notifier_deliveries SET status = 'pending', attempts = 0, next_attempt_ms = $1, updated_at_ms = $1 \
         WHERE id = $2 AND recipient = $3 AND tenant = $4 AND channel = 'webhook' AND status <> 'sending'",
    )
    .bind(now_ms())
    .bind(delivery)
    .bind(endpoint)
    .bind(tenant)
    .execute(&db.pool)
    .await?
    .rows_affected();
    Ok(done == 1)
}

/// The live endpoints of every tenant, for matching events in a round.
pub(crate) async fn all_endpoints(db: &ReadDb) -> Result<Vec<(String, Endpoint)>, NotifyError> {
    live_endpoints(db, None).await
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub fn signature(secret: &str, unix_seconds: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("{unix_seconds}.{body}").as_bytes());
    format!("t={unix_seconds},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Settings of the dispatcher.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Attempts of one delivery before it is `dead` (`SHOP_WEBHOOK_MAX_ATTEMPTS`).
    pub max_attempts: i64,
    /// Longest wait for an endpoint's answer.
    pub timeout: Duration,
    /// First retry delay; doubled per attempt, with up to 50% jitter, capped at an hour.
    pub base_backoff: Duration,
    /// A delivery claimed (`sending`) this long ago belongs to a dispatcher that died, and is
    /// taken over. Longer than `timeout`, so a live request is never sent twice.
    pub stale_after: Duration,
    /// PEM certificates trusted besides the public roots, for endpoints behind a private CA
    /// (`SHOP_WEBHOOK_CA_FILE`).
    pub extra_roots_pem: Option<Vec<u8>>,
    /// Which targets deliveries may reach (checked again at every delivery).
    pub policy: TargetPolicy,
    /// Deliveries fetched per endpoint and round; every endpoint with due work gets its share.
    pub per_endpoint: i64,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            timeout: Duration::from_secs(10),
            base_backoff: Duration::from_secs(1),
            stale_after: Duration::from_secs(60),
            extra_roots_pem: None,
            policy: TargetPolicy::default(),
            per_endpoint: 100,
        }
    }
}

/// Sends due webhook deliveries, one task per endpoint.
pub struct Dispatcher {
    db: ReadDb,
    client: reqwest::Client,
    config: DispatchConfig,
    /// Endpoints with a task in flight.
    busy: Arc<Mutex<HashSet<String>>>,
    /// Steps left before an injected crash (tests): one before each request, one after each
    /// answer before it is recorded.
    #[cfg(feature = "faults")]
    budget: Arc<worker_kit::CrashBudget>,
}

struct Due {
    id: String,
    event_id: String,
    body: String,
    attempts: i64,
}

impl Dispatcher {
    /// Fails when `extra_roots_pem` holds no readable certificate.
    pub fn new(db: ReadDb, config: DispatchConfig) -> Result<Self, NotifyError> {
        // Only checked addresses, no redirects (a public endpoint could send us inside), no proxy
        // from the environment.
        let mut client = worker_kit::service::client_builder(config.timeout).dns_resolver(CheckedResolver::arc(config.policy));
        if let Some(pem) = &config.extra_roots_pem {
            let roots = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| NotifyError::Config(format!("webhook CA file: {e}")))?;
            if roots.is_empty() {
                return Err(NotifyError::Config("webhook CA file: no PEM certificate in it".into()));
            }
            for root in roots {
                client = client.add_root_certificate(root);
            }
        }
        let client = client.build().map_err(|e| NotifyError::Config(format!("webhook HTTP client: {e}")))?;
        Ok(Self {
            db,
            client,
            config,
            busy: Arc::default(),
            #[cfg(feature = "faults")]
            budget: Arc::default(),
        })
    }

    /// Tests: take `steps` more steps (requests, and recordings of answers), then stop as if
    /// the process had died there, leaving the delivery claimed.
    #[cfg(feature = "faults")]
    pub fn crash_after(&self, steps: u32) {
        self.budget.set(steps);
    }

    /// Endpoints with a task in flight.
    pub fn in_flight(&self) -> usize {
        self.busy.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Starts endpoint tasks every `every` until `stop` turns true. A round only starts tasks,
    /// so there is never "more work at once": every round is followed by the pause.
    pub async fn run(self: Arc<Self>, every: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut failures = 0u32;
        loop {
            if *stop.borrow() {
                return;
            }
            let wait = match self.round().await {
                Ok(_) => {
                    failures = 0;
                    every
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, failures, "webhook round failed");
                    every * failures.min(50)
                }
            };
            tokio::select! {
                _ = stop.changed() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Starts a task for every endpoint with due deliveries and none in flight; returns how
    /// many it started. An endpoint gets its deliveries in log order: while its oldest open
    /// delivery waits for a retry, the later ones wait behind it (a dead one no longer holds
    /// them back). Each endpoint's oldest open deliveries are read separately (at most
    /// `per_endpoint`), so one endpoint's backlog never hides another's work.
    pub async fn round(&self) -> Result<usize, NotifyError> {
        let now = now_ms();
        let stale_ms = self.config.stale_after.as_millis() as i64;
        let rows = sqlx::query(
            "SELECT recipient, url, secret, id, subject, body, attempts, status, next_attempt_ms, updated_at_ms FROM ( \
               SELECT d.recipient, e.url, e.secret, d.id, d.subject, d.body, d.attempts, d.status, d.next_attempt_ms, \
                      d.updated_at_ms, d.event_position, \
                      ROW_NUMBER() OVER (PARTITION BY d.recipient ORDER BY d.event_position) AS n \
               FROM notifier_deliveries d JOIN webhook_endpoints e ON e.id = d.recipient AND e.deleted = 0 \
               WHERE d.channel = 'webhook' AND d.status IN ('pending', 'failed', 'sending')) open \
             WHERE n <= $1 ORDER BY event_position",
        )
        .bind(self.config.per_endpoint)
        .fetch_all(&self.db.pool)
        .await?;
        let mut work: HashMap<String, (String, String, Vec<Due>)> = HashMap::new();
        let mut held: HashSet<String> = HashSet::new();
        for r in rows {
            let endpoint: String = r.try_get(0)?;
            if held.contains(&endpoint) {
                continue;
            }
            let (status, next, updated): (String, Option<i64>, i64) = (r.try_get(7)?, r.try_get(8)?, r.try_get(9)?);
            let due = match status.parse()? {
                DeliveryStatus::Sending => updated < now - stale_ms,
                _ => next.is_none_or(|n| n <= now),
            };
            if !due {
                held.insert(endpoint);
                continue;
            }
            let entry = work.entry(endpoint).or_insert_with(|| (String::new(), String::new(), Vec::new()));
            entry.0 = r.try_get(1)?;
            entry.1 = r.try_get(2)?;
            entry.2.push(Due { id: r.try_get(3)?, event_id: r.try_get(4)?, body: r.try_get(5)?, attempts: r.try_get(6)? });
        }
        let mut started = 0;
        for (endpoint, (url, secret, due)) in work {
            if !self.busy.lock().unwrap_or_else(|p| p.into_inner()).insert(endpoint.clone()) {
                continue;
            }
            started += 1;
            let (db, client, config, busy) = (self.db.clone(), self.client.clone(), self.config.clone(), Arc::clone(&self.busy));
            #[cfg(feature = "faults")]
            let budget = Arc::clone(&self.budget);
            tokio::spawn(async move {
                let sender = Sender {
                    db: &db,
                    client: &client,
                    config: &config,
                    #[cfg(feature = "faults")]
                    budget: &budget,
                };
                if let Err(e) = sender.send_all(&url, &secret, due).await {
                    tracing::warn!(endpoint = %endpoint, error = %e, "webhook deliveries interrupted");
                }
                busy.lock().unwrap_or_else(|p| p.into_inner()).remove(&endpoint);
            });
        }
        Ok(started)
    }
}

/// What an endpoint's task sends with.
struct Sender<'a> {
    db: &'a ReadDb,
    client: &'a reqwest::Client,
    config: &'a DispatchConfig,
    #[cfg(feature = "faults")]
    budget: &'a worker_kit::CrashBudget,
}

impl Sender<'_> {
    /// Counts one step against the crash budget (tests); free otherwise.
    fn tick(&self) -> Result<(), NotifyError> {
        #[cfg(feature = "faults")]
        if !self.budget.tick() {
            return Err(NotifyError::Injected);
        }
        Ok(())
    }

    /// Sends one endpoint's due deliveries in order; stops at the first failure (the rest keep
    /// their order and wait for the retry).
    async fn send_all(&self, url: &str, secret: &str, due: Vec<Due>) -> Result<(), NotifyError> {
        let (db, client, config) = (self.db, self.client, self.config);
        for d in due {
            let claimed = sqlx::query("UPDATE notifier_deliveries SET status = 'sending', updated_at_ms = $1 WHERE id = $2 AND status IN ('pending', 'failed', 'sending')")
            .bind(now_ms())
            .bind(&d.id)
            .execute(&db.pool)
            .await?
            .rows_affected();
            if claimed == 0 {
                continue;
            }
            self.tick()?;
            let t = chrono::Utc::now().timestamp();
            // The target is checked again at each delivery: a literal address here, a name by
            // the client's resolver when it connects.
            let error = match check_url(url, config.policy) {
                Err(refused) => {
                    tracing::warn!(delivery = %d.id, reason = %refused, "webhook target refused");
                    Some("forbidden_target".to_owned())
                }
                Ok(_) => {
                    let answer = client
                        .post(url)
                        .header("content-type", "application/json")
                        .header("shop-event-id", &d.event_id)
                        .header("shop-signature", signature(secret, t, &d.body))
                        .body(d.body.clone())
                        .send()
                        .await;
                    match answer {
                        Ok(r) if r.status().is_success() => None,
                        Ok(r) => Some(format!("http_status {}", r.status().as_u16())),
                        Err(e) => {
                            // The details stay in the log: shown to the tenant they would make
                            // the API a scanner of whatever the shop can reach.
                            tracing::info!(delivery = %d.id, error = %error_chain(&e), "webhook delivery failed");
                            Some(category(&e).to_owned())
                        }
                    }
                }
            };
            self.tick()?;
            let attempts = d.attempts + 1;
            let (status, next) = match &error {
                None => (DeliveryStatus::Sent, None),
                Some(_) if attempts >= config.max_attempts => (DeliveryStatus::Dead, None),
                Some(_) => {
                    let base = config.base_backoff.as_millis() as i64 * (1i64 << (attempts - 1).clamp(0, 20));
                    let jitter = (uuid::Uuid::new_v4().as_u128() % 1_000) as i64 * base / 2_000;
                    (DeliveryStatus::Failed, Some(now_ms() + (base + jitter).min(3_600_000)))
                }
            };
            sqlx::query(
            "UPDATE notifier_deliveries SET status = $1, attempts = $2, last_error = $3, next_attempt_ms = $4, updated_at_ms = $5 WHERE id = $6",
        )
        .bind(status.as_str())
        .bind(attempts)
        .bind(&error)
        .bind(next)
        .bind(now_ms())
        .bind(&d.id)
        .execute(&db.pool)
        .await?;
            crate::delivered("webhook", status);
            if error.is_some() {
                break;
            }
        }
        Ok(())
    }
}

/// What a tenant may learn of a failed request: `timeout`, `tls`, `forbidden_target` or
/// `connection_failed`, never the error's text.
fn category(e: &reqwest::Error) -> &'static str {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(cause) = source {
        if cause.is::<InternalAddress>() {
            return "forbidden_target";
        }
        source = cause.source();
    }
    let text = error_chain(e).to_ascii_lowercase();
    if e.is_timeout() {
        "timeout"
    } else if ["certificate", "tls", "handshake"].iter().any(|w| text.contains(w)) {
        "tls"
    } else {
        "connection_failed"
    }
}

/// An error with its causes ("error sending request: … : invalid peer certificate: UnknownIssuer").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_types_and_wildcards() {
        assert!(matches("order.confirmed", "order.confirmed"));
        assert!(!matches("order.confirmed", "order.shipped"));
        assert!(matches("order.*", "order.shipped"));
        assert!(!matches("order.*", "payment.captured"));
        assert!(matches("*", "stock.reserved"));
        assert!(valid_pattern("order.*") && valid_pattern("payment.refund_requested") && valid_pattern("*"));
        assert!(!valid_pattern("order") && !valid_pattern("Order.x") && !valid_pattern("order.") && !valid_pattern("a.b.c"));
    }

    #[test]
    fn the_signature_is_an_hmac_of_time_and_body() {
        // The expected value was computed independently with Python's hmac module.
        let s = signature("whsec_test", 1_700_000_000, "{\"a\":1}");
        assert_eq!(s, "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789");
        assert_ne!(s, signature("whsec_other", 1_700_000_000, "{\"a\":1}"));
    }
}
