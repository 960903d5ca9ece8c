//! Web push (RFC 8030): browsers' push subscriptions, the shop's VAPID key (RFC 8292) and the
//! `aes128gcm` payload encryption (RFC 8291, RFC 8188), with one sender.
//!
//! - [`VapidKey`]: the P-256 key the shop signs with. Embedded mode generates it once into
//!   `<SHOP_DATA_DIR>/vapid-private-key` (owner-only); production reads
//!   `SHOP_VAPID_PRIVATE_KEY` (the 32-byte private scalar, base64url) and refuses to start
//!   with a malformed one.
//! - Subscriptions (`POST /users/me/push-subscriptions`) live in `push_subscriptions`: at most
//!   [`MAX_PER_USER`] per user, endpoints checked like webhook targets (public `https` only,
//!   unless the deployment allows more), at registration and again at every send.
//! - [`WebPush::send`]: encrypts for the subscription's keys, signs a VAPID token for the
//!   endpoint's origin and posts. `201`/`202` is sent; `404`/`410` means the subscription is
//!   gone (it is removed); `429` or `5xx` is tried again later; anything else is final.

use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use hkdf::Hkdf;
use p256::ecdsa::signature::Signer;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sqlx::Row as _;
use worker_kit::ReadDb;

use crate::targets::{check_target, CheckedResolver, TargetPolicy};
use crate::NotifyError;

/// Subscriptions a user may have at once (one per browser or device).
pub const MAX_PER_USER: i64 = 10;
/// How long a push service keeps a message for an offline device.
const TTL_SECONDS: u32 = 86_400;
/// The record size of the encrypted payload (one record).
const RECORD_SIZE: u32 = 4096;

/// The shop's VAPID key pair.
#[derive(Clone)]
pub struct VapidKey {
    key: p256::ecdsa::SigningKey,
    /// `mailto:` or `https:` contact for push services.
    subject: String,
}

impl std::fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidKey").field("public", &self.public_key()).field("subject", &self.subject).finish_non_exhaustive()
    }
}

impl VapidKey {
    /// From the base64url private scalar (`SHOP_VAPID_PRIVATE_KEY`) and a contact.
    pub fn from_private(encoded: &str, subject: &str) -> Result<Self, String> {
        let bytes = B64.decode(encoded.trim()).map_err(|_| "the VAPID private key is not base64url".to_owned())?;
        let key = p256::ecdsa::SigningKey::from_slice(&bytes).map_err(|_| "the VAPID private key is not a P-256 private key".to_owned())?;
        if !(subject.starts_with("mailto:") || subject.starts_with("https://")) {
            return Err("the VAPID subject must be a mailto: or https: URL".to_owned());
        }
        Ok(Self { key, subject: subject.to_owned() })
    }

    /// A new key (embedded mode, once).
    pub fn generate(subject: &str) -> Self {
        Self { key: p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng), subject: subject.to_owned() }
    }

    /// The private scalar, base64url (to store it).
    pub fn private_encoded(&self) -> String {
        B64.encode(self.key.to_bytes())
    }

    /// The public key as browsers take it (`applicationServerKey`): the uncompressed point,
    /// base64url.
    pub fn public_key(&self) -> String {
        B64.encode(self.key.verifying_key().to_encoded_point(false).as_bytes())
    }

    /// Reads the key stored at `path`, or generates one and stores it there (owner-only).
    pub fn load_or_generate(path: &std::path::Path, subject: &str) -> Result<Self, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_private(&text, subject).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate(subject);
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(path).map_err(|e| format!("{}: {e}", path.display()))?;
                std::io::Write::write_all(&mut file, key.private_encoded().as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
                Ok(key)
            }
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// `Authorization: vapid t=<ES256 JWT for the endpoint's origin>, k=<public key>`.
    pub fn authorization(&self, endpoint: &reqwest::Url, now_unix: i64) -> String {
        let audience = endpoint.origin().ascii_serialization();
        let header = B64.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::json!({"aud": audience, "exp": now_unix + 12 * 3600, "sub": self.subject});
        let input = format!("{header}.{}", B64.encode(claims.to_string()));
        let signature: p256::ecdsa::Signature = self.key.sign(input.as_bytes());
        format!("vapid t={input}.{}, k={}", B64.encode(signature.to_bytes()), self.public_key())
    }
}

/// A browser's subscription keys, as `PushSubscription.toJSON()` gives them (base64url).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionKeys {
    /// The browser's P-256 public key (65 bytes, uncompressed point).
    pub p256dh: String,
    /// The 16-byte authentication secret.
    pub auth: String,
}

impl SubscriptionKeys {
    fn decode(&self) -> Result<(p256::PublicKey, [u8; 16]), &'static str> {
        let point = B64.decode(self.p256dh.trim_end_matches('=')).map_err(|_| "keys.p256dh is not base64url")?;
        let public = p256::PublicKey::from_sec1_bytes(&point).map_err(|_| "keys.p256dh is not a P-256 public key")?;
        if point.len() != 65 {
            return Err("keys.p256dh must be an uncompressed point (65 bytes)");
        }
        let auth = B64.decode(self.auth.trim_end_matches('=')).map_err(|_| "keys.auth is not base64url")?;
        let auth: [u8; 16] = auth.try_into().map_err(|_| "keys.auth must be 16 bytes")?;
        Ok((public, auth))
    }
}

/// `payload` encrypted for `keys` (RFC 8291): one `aes128gcm` record with its header.
pub fn encrypt(payload: &[u8], keys: &SubscriptionKeys) -> Result<Vec<u8>, &'static str> {
    let (ua_public, auth) = keys.decode()?;
    if payload.len() + 17 > RECORD_SIZE as usize {
        return Err("the payload is too large for one record");
    }
    let sender = p256::ecdh::EphemeralSecret::random(&mut rand::rngs::OsRng);
    let as_public = sender.public_key().to_encoded_point(false);
    let ua_point = ua_public.to_encoded_point(false);
    let shared = sender.diffie_hellman(&ua_public);
    // IKM from the ECDH secret, keyed by the auth secret and both public keys.
    let mut info = b"WebPush: info\0".to_vec();
    info.extend_from_slice(ua_point.as_bytes());
    info.extend_from_slice(as_public.as_bytes());
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(&auth), shared.raw_secret_bytes().as_slice()).expand(&info, &mut ikm).map_err(|_| "hkdf")?;
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let prk = Hkdf::<Sha256>::new(Some(&salt), &ikm);
    let (mut cek, mut nonce) = ([0u8; 16], [0u8; 12]);
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek).map_err(|_| "hkdf")?;
    prk.expand(b"Content-Encoding: nonce\0", &mut nonce).map_err(|_| "hkdf")?;
    // The last (and only) record: the payload, then the delimiter 0x02.
    let mut plain = payload.to_vec();
    plain.push(2);
    let cipher = Aes128Gcm::new_from_slice(&cek).map_err(|_| "aes key")?;
    let sealed = cipher.encrypt(Nonce::from_slice(&nonce), plain.as_slice()).map_err(|_| "aes-gcm")?;
    let mut body = Vec::with_capacity(16 + 4 + 1 + 65 + sealed.len());
    body.extend_from_slice(&salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(65);
    body.extend_from_slice(as_public.as_bytes());
    body.extend_from_slice(&sealed);
    Ok(body)
}

/// A subscription as its owner sees it (the keys are not shown again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Subscription {
    pub id: String,
    pub endpoint: String,
    pub created_at_ms: i64,
}

/// Why a subscription is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSubscription {
    #[error("endpoint: {0}")]
    Endpoint(crate::targets::Refused),
    #[error("{0}")]
    Keys(&'static str),
    #[error("at most {0} push subscriptions per user; remove one first")]
    TooMany(i64),
}

/// Stores a subscription of `user` (the same endpoint again replaces its keys).
pub async fn subscribe(
    db: &ReadDb,
    tenant: &str,
    user: &str,
    endpoint: &str,
    keys: &SubscriptionKeys,
    policy: TargetPolicy,
) -> Result<Result<Subscription, InvalidSubscription>, NotifyError> {
    if endpoint.len() > 2048 {
        return Ok(Err(InvalidSubscription::Endpoint(crate::targets::Refused::Malformed)));
    }
    if let Err(e) = check_target(endpoint, policy).await {
        return Ok(Err(InvalidSubscription::Endpoint(e)));
    }
    if let Err(e) = keys.decode() {
        return Ok(Err(InvalidSubscription::Keys(e)));
    }
    let now = chrono::Utc::now().timestamp_millis();
    // One writer per database at a time on SQLite; on PostgreSQL a lock per user (held to the
    // commit) orders concurrent subscriptions of one user, so the limit holds.
    let mut tx = db.begin().await?;
    if !db.is_sqlite() {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("push_subscriptions:{tenant}:{user}"))
            .execute(&mut *tx)
            .await?;
    }
    let existing: Option<(String, i64)> =
        sqlx::query_as("SELECT id, created_at_ms FROM push_subscriptions WHERE tenant = $1 AND user_id = $2 AND endpoint = $3")
            .bind(tenant)
            .bind(user)
            .bind(endpoint)
            .fetch_optional(&mut *tx)
            .await?;
    let (id, created) = match existing {
        Some((id, created)) => {
            sqlx::query("UPDATE push_subscriptions SET p256dh = $1, auth = $2 WHERE id = $3")
                .bind(&keys.p256dh)
                .bind(&keys.auth)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            (id, created)
        }
        None => {
            let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM push_subscriptions WHERE tenant = $1 AND user_id = $2")
                .bind(tenant)
                .bind(user)
                .fetch_one(&mut *tx)
                .await?;
            if count >= MAX_PER_USER {
                return Ok(Err(InvalidSubscription::TooMany(MAX_PER_USER)));
            }
            let id = uuid::Uuid::now_v7().to_string();
            sqlx::query(
                "INSERT INTO push_subscriptions (id, tenant, user_id, endpoint, p256dh, auth, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&id)
            .bind(tenant)
            .bind(user)
            .bind(endpoint)
            .bind(&keys.p256dh)
            .bind(&keys.auth)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            (id, now)
        }
    };
    tx.commit().await?;
    Ok(Ok(Subscription { id, endpoint: endpoint.to_owned(), created_at_ms: created }))
}

/// The subscriptions of `user`, oldest first.
pub async fn subscriptions(db: &ReadDb, tenant: &str, user: &str) -> Result<Vec<Subscription>, NotifyError> {
    let rows = sqlx::query("SELECT id, endpoint, created_at_ms FROM push_subscriptions WHERE tenant = $1 AND user_id = $2 ORDER BY id")
        .bind(tenant)
        .bind(user)
        .fetch_all(&db.pool)
        .await?;
    rows.iter()
        .map(|r| Ok(Subscription { id: r.try_get(0)?, endpoint: r.try_get(1)?, created_at_ms: r.try_get(2)? }))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(NotifyError::from)
}

/// Removes a subscription of `user`; false if there is none with that id.
pub async fn unsubscribe(db: &ReadDb, tenant: &str, user: &str, id: &str) -> Result<bool, NotifyError> {
    let done = sqlx::query("DELETE FROM push_subscriptions WHERE id = $1 AND tenant = $2 AND user_id = $3")
        .bind(id)
        .bind(tenant)
        .bind(user)
        .execute(&db.pool)
        .await?
        .rows_affected();
    Ok(done == 1)
}

/// Where one push went.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The subscription no longer exists (404 or 410); it has been removed.
    #[error("the subscription is gone: {0}")]
    Gone(String),
    #[error("{0}")]
    Transient(String),
    #[error("refused: {0}")]
    Refused(String),
}

/// Sends pushes with the shop's VAPID key.
pub struct WebPush {
    client: reqwest::Client,
    key: VapidKey,
    policy: TargetPolicy,
}

impl WebPush {
    /// `policy`: which endpoints may be reached (the webhooks' policy).
    pub fn new(key: VapidKey, policy: TargetPolicy, timeout: Duration) -> Result<Self, String> {
        // Only checked addresses, no redirects, no proxy.
        let client = worker_kit::service::client_builder(timeout)
            .dns_resolver(CheckedResolver::arc(policy))
            .build()
            .map_err(|e| format!("push HTTP client: {e}"))?;
        Ok(Self { client, key, policy })
    }

    pub fn public_key(&self) -> String {
        self.key.public_key()
    }

    /// Sends `payload` to subscription `id`; removes it when the push service says it is gone.
    pub async fn send(&self, db: &ReadDb, id: &str, payload: &[u8]) -> Result<(), PushError> {
        let db_error = |e: sqlx::Error| PushError::Transient(format!("push subscriptions: {e}"));
        let row = sqlx::query("SELECT endpoint, p256dh, auth FROM push_subscriptions WHERE id = $1")
            .bind(id)
            .fetch_optional(&db.pool)
            .await
            .map_err(db_error)?;
        let Some(row) = row else { return Err(PushError::Gone("no such subscription any more".into())) };
        let endpoint: String = row.try_get(0).map_err(db_error)?;
        let keys = SubscriptionKeys { p256dh: row.try_get(1).map_err(db_error)?, auth: row.try_get(2).map_err(db_error)? };
        let url = check_target(&endpoint, self.policy).await.map_err(|e| PushError::Refused(format!("endpoint: {e}")))?;
        let body = encrypt(payload, &keys).map_err(|e| PushError::Refused(e.to_owned()))?;
        let answer = self
            .client
            .post(url.clone())
            .header("authorization", self.key.authorization(&url, chrono::Utc::now().timestamp()))
            .header("content-encoding", "aes128gcm")
            .header("content-type", "application/octet-stream")
            .header("ttl", TTL_SECONDS.to_string())
            .header("urgency", "normal")
            .body(body)
            .send()
            .await
            .map_err(|e| PushError::Transient(worker_kit::service::without_url(e)))?;
        let status = answer.status().as_u16();
        match status {
            200..=299 => Ok(()),
            404 | 410 => {
                sqlx::query("DELETE FROM push_subscriptions WHERE id = $1").bind(id).execute(&db.pool).await.map_err(db_error)?;
                Err(PushError::Gone(format!("the push service answered {status}")))
            }
            429 | 500..=599 => Err(PushError::Transient(format!("the push service answered {status}"))),
            _ => Err(PushError::Refused(format!("the push service answered {status}"))),
        }
    }
}
