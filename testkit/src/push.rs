//! A push service for tests (RFC 8030), written apart from the shop's sender so that each
//! checks the other: it hands out subscriptions (an endpoint on 127.0.0.1 with a fresh P-256
//! key pair and auth secret, as a browser would make), checks every request's VAPID token
//! (RFC 8292: ES256 over `aud` = the endpoint's origin, a near `exp`, a `sub`, signed by the
//! key in `k=`), decrypts the `aes128gcm` body with the subscription's private key (RFC 8291)
//! and keeps what it read. A subscription told [`PushService::gone`] answers `410`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use hkdf::Hkdf;
use p256::ecdsa::signature::Verifier;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand::RngCore;
use sha2::Sha256;

/// A subscription as a browser hands it to the shop.
#[derive(Debug, Clone)]
pub struct PushSubscription {
    pub endpoint: String,
    /// Base64url of the uncompressed public key.
    pub p256dh: String,
    /// Base64url of the 16-byte auth secret.
    pub auth: String,
    /// The last path segment of the endpoint.
    pub token: String,
}

impl PushSubscription {
    /// The body of `POST /users/me/push-subscriptions`, as `PushSubscription.toJSON()` gives it.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"endpoint": self.endpoint, "expirationTime": null, "keys": {"p256dh": self.p256dh, "auth": self.auth}})
    }
}

/// One push the service took and decrypted.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub token: String,
    pub payload: serde_json::Value,
    /// The VAPID public key that signed it.
    pub vapid_key: String,
    pub ttl: Option<u32>,
}

struct Device {
    secret: p256::SecretKey,
    auth: [u8; 16],
}

#[derive(Default)]
struct Inner {
    devices: HashMap<String, Device>,
    gone: HashSet<String>,
    pushed: Vec<Pushed>,
    /// Requests refused, with why.
    refused: Vec<String>,
}

#[derive(Clone)]
struct Service {
    origin: String,
    inner: Arc<Mutex<Inner>>,
}

/// The service, on 127.0.0.1 until dropped.
pub struct PushService {
    /// `http://127.0.0.1:<port>`.
    pub origin: String,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl PushService {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the push service");
        let origin = format!("http://{}", listener.local_addr().expect("addr"));
        let inner = Arc::new(Mutex::new(Inner::default()));
        let service = Service { origin: origin.clone(), inner: Arc::clone(&inner) };
        let app = axum::Router::new().route("/push/{token}", axum::routing::post(take)).with_state(service);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { origin, inner, task }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new subscription, as a browser makes one.
    pub fn subscribe(&self) -> PushSubscription {
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let mut auth = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut auth);
        let token = uuid::Uuid::new_v4().simple().to_string();
        let subscription = PushSubscription {
            endpoint: format!("{}/push/{token}", self.origin),
            p256dh: B64.encode(secret.public_key().to_encoded_point(false).as_bytes()),
            auth: B64.encode(auth),
            token: token.clone(),
        };
        self.inner().devices.insert(token, Device { secret, auth });
        subscription
    }

    /// From now on the subscription answers `410 Gone`.
    pub fn gone(&self, token: &str) {
        self.inner().gone.insert(token.to_owned());
    }

    pub fn pushed(&self) -> Vec<Pushed> {
        self.inner().pushed.clone()
    }

    /// Requests it refused (a bad VAPID token, a body it could not decrypt), with why.
    pub fn refused(&self) -> Vec<String> {
        self.inner().refused.clone()
    }
}

impl Drop for PushService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn take(State(service): State<Service>, Path(token): Path<String>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let mut inner = service.inner.lock().unwrap_or_else(|p| p.into_inner());
    if inner.gone.contains(&token) {
        return StatusCode::GONE;
    }
    let Some(device) = inner.devices.get(&token) else { return StatusCode::NOT_FOUND };
    let read = verify_vapid(&header("authorization"), &service.origin).and_then(|key| {
        if header("content-encoding") != "aes128gcm" {
            return Err("content-encoding is not aes128gcm".to_owned());
        }
        let plain = decrypt(&body, device)?;
        let payload = serde_json::from_slice(&plain).map_err(|e| format!("payload is not JSON: {e}"))?;
        Ok((key, payload))
    });
    match read {
        Ok((vapid_key, payload)) => {
            let ttl = header("ttl").parse().ok();
            inner.pushed.push(Pushed { token, payload, vapid_key, ttl });
            StatusCode::CREATED
        }
        Err(why) => {
            inner.refused.push(why);
            StatusCode::BAD_REQUEST
        }
    }
}

/// Checks `vapid t=<jwt>, k=<key>`; the key on success.
fn verify_vapid(authorization: &str, origin: &str) -> Result<String, String> {
    let rest = authorization.strip_prefix("vapid ").ok_or("no vapid authorization")?;
    let mut token = None;
    let mut key = None;
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => token = Some(v.to_owned()),
            Some(("k", v)) => key = Some(v.to_owned()),
            _ => {}
        }
    }
    let (token, key) = (token.ok_or("no t=")?, key.ok_or("no k=")?);
    let point = B64.decode(&key).map_err(|_| "k is not base64url")?;
    let verifying = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).map_err(|_| "k is not a P-256 key")?;
    let (input, signature) = token.rsplit_once('.').ok_or("the token has no signature")?;
    let signature = p256::ecdsa::Signature::from_slice(&B64.decode(signature).map_err(|_| "signature is not base64url")?)
        .map_err(|_| "signature is not ES256")?;
    verifying.verify(input.as_bytes(), &signature).map_err(|_| "the VAPID signature does not verify")?;
    let (header, claims) = input.split_once('.').ok_or("the token has no claims")?;
    let header: serde_json::Value = serde_json::from_slice(&B64.decode(header).map_err(|_| "bad header")?).map_err(|_| "bad header")?;
    if header["alg"] != "ES256" {
        return Err(format!("alg {}", header["alg"]));
    }
    let claims: serde_json::Value = serde_json::from_slice(&B64.decode(claims).map_err(|_| "bad claims")?).map_err(|_| "bad claims")?;
    if claims["aud"] != origin {
        return Err(format!("aud {} is not {origin}", claims["aud"]));
    }
    let now = chrono::Utc::now().timestamp();
    let exp = claims["exp"].as_i64().ok_or("no exp")?;
    if exp <= now || exp > now + 24 * 3600 {
        return Err(format!("exp {exp} is not within 24 h"));
    }
    if !claims["sub"].as_str().is_some_and(|s| s.starts_with("mailto:") || s.starts_with("https:")) {
        return Err("no sub".to_owned());
    }
    Ok(key)
}

/// RFC 8291 as a browser does it.
fn decrypt(body: &[u8], device: &Device) -> Result<Vec<u8>, String> {
    if body.len() < 21 {
        return Err("the body is shorter than its header".to_owned());
    }
    let (salt, rest) = body.split_at(16);
    let key_len = rest[4] as usize;
    let (as_public, sealed) = rest[5..].split_at(key_len.min(rest.len() - 5));
    let as_public = p256::PublicKey::from_sec1_bytes(as_public).map_err(|_| "the key id is not a P-256 key")?;
    let shared = p256::ecdh::diffie_hellman(device.secret.to_nonzero_scalar(), as_public.as_affine());
    let mut info = b"WebPush: info\0".to_vec();
    info.extend_from_slice(device.secret.public_key().to_encoded_point(false).as_bytes());
    info.extend_from_slice(as_public.to_encoded_point(false).as_bytes());
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(&device.auth), shared.raw_secret_bytes().as_slice()).expand(&info, &mut ikm).map_err(|_| "hkdf")?;
    let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let (mut cek, mut nonce) = ([0u8; 16], [0u8; 12]);
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek).map_err(|_| "hkdf")?;
    prk.expand(b"Content-Encoding: nonce\0", &mut nonce).map_err(|_| "hkdf")?;
    let cipher = Aes128Gcm::new_from_slice(&cek).map_err(|_| "aes key")?;
    let mut plain = cipher.decrypt(Nonce::from_slice(&nonce), sealed).map_err(|_| "the body does not decrypt")?;
    // Padding: zeros after the last record's delimiter 0x02.
    while plain.last() == Some(&0) {
        plain.pop();
    }
    if plain.pop() != Some(2) {
        return Err("no last-record delimiter".to_owned());
    }
    Ok(plain)
}
