//! Personal data in events, encrypted with a data key of the person it belongs to, so that
//! deleting the key erases the data everywhere the events went (crypto-shredding): the log,
//! its copies on Kafka, backups. A sealed field is `{"$personal": {"kid", "n", "ct"}}`:
//! AES-256-GCM with a random 96-bit nonce, the key id as associated data (a ciphertext moved
//! to another key's id does not open). Keys live outside the event tables, behind [`KeyStore`]:
//! [`SqlKeyStore`] keeps them in the store's database (`personal_keys`); a KMS or a separate
//! database can implement the same trait.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine as _;
use rand::RngCore as _;
use serde_json::{json, Value};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::Mac as _;

use crate::{Db, EventStore, StoreError};

/// The key of a sealed field.
pub const SEALED: &str = "$personal";

/// One person's 256-bit data key. `{:?}` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey([u8; 32]);

impl DataKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        Self(key)
    }

    fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// What a key id stands for now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    Live(DataKey),
    /// Deleted on purpose: the person was erased.
    Erased,
    /// Never known here.
    Unknown,
}

/// Where data keys live.
#[async_trait::async_trait]
pub trait KeyStore: Send + Sync {
    /// The key of `subject` (a user id) in `tenant` and its id, made on first use (once, even
    /// when asked concurrently); `None` once the subject was erased (nothing new is sealed for
    /// an erased person).
    async fn key_for(&self, tenant: &str, subject: &str) -> Result<Option<(String, DataKey)>, StoreError>;
    /// The key of `key_id`.
    async fn key(&self, key_id: &str) -> Result<KeyState, StoreError>;
    /// Deletes the key of `subject` (and keeps a tombstone, so nothing is sealed for it again);
    /// `false` when it was erased already.
    async fn erase(&self, tenant: &str, subject: &str) -> Result<bool, StoreError>;
    /// The keys of `key_ids`, each [`KeyState::Unknown`] when not found (one round trip where
    /// the store can).
    async fn keys(&self, key_ids: &[String]) -> Result<HashMap<String, KeyState>, StoreError> {
        let mut found = HashMap::with_capacity(key_ids.len());
        for id in key_ids {
            found.insert(id.clone(), self.key(id).await?);
        }
        Ok(found)
    }
}

/// Seals `value` with `key` under `key_id`.
pub fn seal(key_id: &str, key: &DataKey, value: &Value) -> Value {
    let mut nonce = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut nonce);
    let cipher = Aes256Gcm::new_from_slice(&key.0).expect("a 32-byte key");
    let plaintext = value.to_string();
    let ct = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext.as_bytes(), aad: key_id.as_bytes() })
        .expect("AES-GCM encrypts any message of this size");
    json!({ SEALED: { "kid": key_id, "n": B64.encode(nonce), "ct": B64.encode(ct) } })
}

/// The key id of a sealed field; `None` for a value in clear.
pub fn sealed_key_id(value: &Value) -> Option<&str> {
    value.get(SEALED)?.get("kid")?.as_str()
}

/// Opens a sealed field with its key; `Err` when the key is not this field's or the field was
/// altered.
pub fn open(sealed: &Value, key: &DataKey) -> Result<Value, String> {
    let inner = sealed.get(SEALED).ok_or("not a sealed field")?;
    let text = |k: &str| inner.get(k).and_then(Value::as_str).ok_or_else(|| format!("sealed field without {k}"));
    let key_id = text("kid")?;
    let nonce = B64.decode(text("n")?).map_err(|e| format!("nonce: {e}"))?;
    let ct = B64.decode(text("ct")?).map_err(|e| format!("ciphertext: {e}"))?;
    if nonce.len() != 12 {
        return Err("nonce: not 96 bits".into());
    }
    let cipher = Aes256Gcm::new_from_slice(&key.0).map_err(|e| e.to_string())?;
    let plaintext = cipher
        .decrypt(Nonce::from_slice(&nonce), Payload { msg: &ct, aad: key_id.as_bytes() })
        .map_err(|_| "the field does not open with this key (altered, or another key's)".to_owned())?;
    serde_json::from_slice(&plaintext).map_err(|e| format!("opened field: {e}"))
}

/// Data keys in the store's own database (`personal_keys`): the embedded default, and
/// production until a KMS-backed store replaces it.
#[derive(Clone)]
pub struct SqlKeyStore {
    db: Db,
}

impl SqlKeyStore {
    pub fn new(store: &EventStore) -> Self {
        Self { db: store.db().clone() }
    }

    pub(crate) fn of(db: Db) -> Self {
        Self { db }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[async_trait::async_trait]
impl KeyStore for SqlKeyStore {
    async fn key_for(&self, tenant: &str, subject: &str) -> Result<Option<(String, DataKey)>, StoreError> {
        let fresh = DataKey::generate();
        let fresh_id = uuid::Uuid::now_v7().to_string();
        // The first writer's key wins; everyone reads that one back.
        let insert = "INSERT INTO personal_keys (key_id, tenant, subject, data_key, created_at_ms) VALUES ($1, $2, $3, $4, $5) \
                      ON CONFLICT (tenant, subject) DO NOTHING";
        let select = "SELECT key_id, data_key FROM personal_keys WHERE tenant = $1 AND subject = $2";
        let row: (String, Option<Vec<u8>>) = match &self.db {
            Db::Postgres(pool) => {
                sqlx::query(insert).bind(&fresh_id).bind(tenant).bind(subject).bind(&fresh.0[..]).bind(now_ms()).execute(pool).await?;
                sqlx::query_as(select).bind(tenant).bind(subject).fetch_one(pool).await?
            }
            Db::Sqlite { write, .. } => {
                sqlx::query(insert).bind(&fresh_id).bind(tenant).bind(subject).bind(&fresh.0[..]).bind(now_ms()).execute(write).await?;
                sqlx::query_as(select).bind(tenant).bind(subject).fetch_one(write).await?
            }
        };
        Ok(row.1.as_deref().and_then(DataKey::from_slice).map(|key| (row.0, key)))
    }

    async fn key(&self, key_id: &str) -> Result<KeyState, StoreError> {
        let select = "SELECT data_key FROM personal_keys WHERE key_id = $1";
        let row: Option<(Option<Vec<u8>>,)> = match &self.db {
            Db::Postgres(pool) => sqlx::query_as(select).bind(key_id).fetch_optional(pool).await?,
            Db::Sqlite { read, .. } => sqlx::query_as(select).bind(key_id).fetch_optional(read).await?,
        };
        Ok(match row {
            None => KeyState::Unknown,
            Some((None,)) => KeyState::Erased,
            Some((Some(bytes),)) => DataKey::from_slice(&bytes).map_or(KeyState::Unknown, KeyState::Live),
        })
    }

    async fn keys(&self, key_ids: &[String]) -> Result<HashMap<String, KeyState>, StoreError> {
        let ids = serde_json::to_string(key_ids)?;
        let rows: Vec<(String, Option<Vec<u8>>)> = match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT key_id, data_key FROM personal_keys WHERE key_id IN (SELECT jsonb_array_elements_text($1::text::jsonb))",
                )
                .bind(&ids)
                .fetch_all(pool)
                .await?
            }
            Db::Sqlite { read, .. } => {
                sqlx::query_as("SELECT key_id, data_key FROM personal_keys WHERE key_id IN (SELECT value FROM json_each(?))")
                    .bind(&ids)
                    .fetch_all(read)
                    .await?
            }
        };
        let mut found: HashMap<String, KeyState> = key_ids.iter().map(|id| (id.clone(), KeyState::Unknown)).collect();
        for (id, key) in rows {
            let state = match key {
                None => KeyState::Erased,
                Some(bytes) => DataKey::from_slice(&bytes).map_or(KeyState::Unknown, KeyState::Live),
            };
            found.insert(id, state);
        }
        Ok(found)
    }

    async fn erase(&self, tenant: &str, subject: &str) -> Result<bool, StoreError> {
        let now = now_ms();
        // A subject never sealed for gets a tombstone too: nothing is sealed for it afterwards.
        let sql = "INSERT INTO personal_keys (key_id, tenant, subject, data_key, created_at_ms, erased_at_ms) \
                   VALUES ($1, $2, $3, NULL, $4, $4) \
                   ON CONFLICT (tenant, subject) DO UPDATE SET data_key = NULL, erased_at_ms = $4 \
                   WHERE personal_keys.data_key IS NOT NULL";
        let id = uuid::Uuid::now_v7().to_string();
        let erased = match &self.db {
            Db::Postgres(pool) => sqlx::query(sql).bind(&id).bind(tenant).bind(subject).bind(now).execute(pool).await?.rows_affected(),
            Db::Sqlite { write, .. } => {
                sqlx::query(sql).bind(&id).bind(tenant).bind(subject).bind(now).execute(write).await?.rows_affected()
            }
        };
        Ok(erased > 0)
    }
}

/// The key-store subject whose key makes blind indexes (never erased).
const INDEX_SUBJECT: &str = "$index";
/// How long a live key read for opening is trusted: another process's erasure shows here at
/// most this late (this process's own at once; a `user.erased` read from the log also clears).
const LIVE_FOR: Duration = Duration::from_secs(5);
/// Keys cached at most; beyond it the cache starts again.
const CACHE_MAX: usize = 50_000;

#[derive(Default)]
struct Cache {
    /// For opening: key id → state (erased and unknown for good, live for [`LIVE_FOR`]).
    by_id: HashMap<String, (KeyState, Instant)>,
    /// For sealing: (tenant, subject) → its key, `None` once erased.
    by_subject: HashMap<(String, String), Option<(String, DataKey)>>,
    /// Moves on with every erasure: a key read before one is not cached after it.
    generation: u64,
}

/// Seals and opens the personal fields of events ([`domain::personal`]) with their owners'
/// keys, through a [`KeyStore`] and a cache in front of it. One per [`EventStore`] and its clones.
pub struct Personal {
    keys: Arc<dyn KeyStore>,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for Personal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Personal(..)")
    }
}

/// Every sealed value in `value`, with its JSON pointer.
fn sealed_fields(value: &Value, at: &mut String, found: &mut Vec<String>) {
    match value {
        Value::Object(map) if map.contains_key(SEALED) => found.push(at.clone()),
        Value::Object(map) => {
            for (k, v) in map {
                let len = at.len();
                at.push('/');
                at.push_str(&k.replace('~', "~0").replace('/', "~1"));
                sealed_fields(v, at, found);
                at.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let len = at.len();
                at.push_str(&format!("/{i}"));
                sealed_fields(v, at, found);
                at.truncate(len);
            }
        }
        _ => {}
    }
}

impl Personal {
    pub fn new(keys: Arc<dyn KeyStore>) -> Self {
        Self { keys, cache: Mutex::default() }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The sealing key of `subject`; `None` once erased.
    async fn key_for(&self, tenant: &str, subject: &str) -> Result<Option<(String, DataKey)>, StoreError> {
        let at = (tenant.to_owned(), subject.to_owned());
        let generation = {
            let cache = self.cache();
            if let Some(known) = cache.by_subject.get(&at) {
                return Ok(known.clone());
            }
            cache.generation
        };
        let key = self.keys.key_for(tenant, subject).await?;
        let mut cache = self.cache();
        if cache.by_subject.len() >= CACHE_MAX {
            cache.by_subject.clear();
        }
        if cache.generation == generation {
            cache.by_subject.insert(at, key.clone());
        }
        Ok(key)
    }

    /// Seals the personal fields of one event in place, with its owner's key; an erased owner's
    /// fields are stored as erased (nothing new is kept of an erased person).
    pub async fn seal(&self, aggregate_type: &str, aggregate_id: &str, event_type: &str, payload: &mut Value) -> Result<(), StoreError> {
        let Some(personal) = domain::personal::of(aggregate_type, event_type) else { return Ok(()) };
        let (tenant, key) = match domain::StreamId::parse(aggregate_id) {
            Ok(id) => (id.tenant, id.key),
            Err(_) => ("", aggregate_id),
        };
        let Some(owner) = personal.owner_of(key, payload).map(str::to_owned) else {
            return Err(StoreError::Personal(format!("{aggregate_type}.{event_type}: the owner of its personal data is missing")));
        };
        let key = self.key_for(tenant, &owner).await?;
        for field in personal.fields {
            let Some(value) = payload.pointer_mut(field.pointer) else { continue };
            if value.is_null() || sealed_key_id(value).is_some() {
                continue;
            }
            *value = match &key {
                Some((key_id, key)) => seal(key_id, key, value),
                None => (field.erased)(),
            };
        }
        Ok(())
    }

    /// Seals the client address a write's metadata records (personal data too) with the key
    /// of the user who caused it; without one (an anonymous request) or for an erased user it
    /// is not kept. Nothing reads it back but an audit with the key.
    pub async fn seal_metadata(&self, aggregate_id: &str, metadata: &mut Value) -> Result<(), StoreError> {
        let Some(fields) = metadata.as_object_mut() else { return Ok(()) };
        let Some(addr) = fields.get("client_addr").filter(|a| a.is_string()).cloned() else { return Ok(()) };
        let tenant = domain::StreamId::parse(aggregate_id).map(|id| id.tenant.to_owned()).unwrap_or_default();
        let key = match fields.get("user_id").and_then(Value::as_str) {
            Some(user) => self.key_for(&tenant, user).await?,
            None => None,
        };
        match key {
            Some((key_id, key)) => {
                fields.insert("client_addr".into(), seal(&key_id, &key, &addr));
            }
            None => {
                fields.remove("client_addr");
            }
        }
        Ok(())
    }

    /// Opens every sealed field of these events (type, stream id, event type, payload) in
    /// place; a field whose key is erased reads as its erased value. A key the key store does
    /// not know, or a field that does not open with its key, is an error (the reader stops and
    /// retries, loudly) rather than data quietly read as erased. A `user.erased` among them
    /// deletes the user's key (again: the writer did as it committed, unless it stopped in
    /// between) and clears the cache, so nothing read after it opens with a key cached before.
    pub async fn open(&self, events: &mut [(&str, &str, &str, &mut Value)]) -> Result<(), StoreError> {
        let mut wanted: Vec<(usize, String, String)> = Vec::new();
        for (i, (aggregate_type, aggregate_id, event_type, payload)) in events.iter().enumerate() {
            if *aggregate_type == "user" && *event_type == "erased" {
                if let Ok(id) = domain::StreamId::parse(aggregate_id) {
                    let known = self.cache().by_subject.get(&(id.tenant.to_owned(), id.key.to_owned())).is_some_and(Option::is_none);
                    if !known {
                        self.erase(id.tenant, id.key).await?;
                    }
                }
            }
            if domain::personal::of(aggregate_type, event_type).is_none() {
                continue;
            }
            let mut found = Vec::new();
            sealed_fields(payload, &mut String::new(), &mut found);
            for pointer in found {
                let kid = payload.pointer(&pointer).and_then(sealed_key_id).unwrap_or_default().to_owned();
                wanted.push((i, pointer, kid));
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let keys = self.keys_of(wanted.iter().map(|(_, _, kid)| kid.as_str())).await?;
        for (i, pointer, kid) in wanted {
            let (aggregate_type, _, event_type, payload) = &mut events[i];
            let erased = || {
                domain::personal::of(aggregate_type, event_type)
                    .and_then(|p| p.fields.iter().find(|f| f.pointer == pointer))
                    .map_or(Value::Null, |f| (f.erased)())
            };
            let opened = match keys.get(&kid) {
                Some(KeyState::Live(key)) => match payload.pointer(&pointer).map(|v| open(v, key)) {
                    Some(Ok(value)) => value,
                    Some(Err(reason)) => {
                        return Err(StoreError::Personal(format!("{aggregate_type}.{event_type} {pointer}: {reason}")));
                    }
                    None => continue,
                },
                Some(KeyState::Unknown) | None => {
                    return Err(StoreError::Personal(format!(
                        "{aggregate_type}.{event_type} {pointer}: sealed with key {kid}, which the key store does not know"
                    )));
                }
                Some(KeyState::Erased) => erased(),
            };
            if let Some(slot) = payload.pointer_mut(&pointer) {
                *slot = opened;
            }
        }
        Ok(())
    }

    /// The state of each key id, from the cache where it is fresh, the rest in one read.
    async fn keys_of<'a>(&self, ids: impl Iterator<Item = &'a str>) -> Result<HashMap<String, KeyState>, StoreError> {
        let mut known = HashMap::new();
        let mut missing = Vec::new();
        let mut asked = std::collections::HashSet::new();
        let generation;
        {
            let cache = self.cache();
            generation = cache.generation;
            for id in ids {
                if !asked.insert(id) {
                    continue;
                }
                match cache.by_id.get(id) {
                    Some((KeyState::Live(k), at)) if at.elapsed() < LIVE_FOR => {
                        known.insert(id.to_owned(), KeyState::Live(k.clone()));
                    }
                    Some((state @ KeyState::Erased, _)) => {
                        known.insert(id.to_owned(), state.clone());
                    }
                    _ => missing.push(id.to_owned()),
                }
            }
        }
        if !missing.is_empty() {
            let read = self.keys.keys(&missing).await?;
            let mut cache = self.cache();
            if cache.by_id.len() >= CACHE_MAX {
                cache.by_id.clear();
            }
            let now = Instant::now();
            for (id, state) in read {
                // Erased meanwhile: the read may be from before the erasure.
                if !matches!(state, KeyState::Unknown) && cache.generation == generation {
                    cache.by_id.insert(id.clone(), (state.clone(), now));
                }
                known.insert(id, state);
            }
        }
        Ok(known)
    }

    /// Deletes `subject`'s key: everything sealed with it reads as erased from now on (in this
    /// process at once, elsewhere within [`LIVE_FOR`]). `false` when it was erased already.
    pub async fn erase(&self, tenant: &str, subject: &str) -> Result<bool, StoreError> {
        let erased = self.keys.erase(tenant, subject).await?;
        let mut cache = self.cache();
        let generation = cache.generation + 1;
        *cache = Cache { generation, ..Cache::default() };
        cache.by_subject.insert((tenant.to_owned(), subject.to_owned()), None);
        Ok(erased)
    }

    /// A keyed hash (HMAC-SHA-256, hex) of `value` in `tenant` under the index key: what
    /// stands for a personal value where a key must find it (an e-mail claim's stream id)
    /// without holding it in clear. The same value gives the same hash in one tenant, another
    /// in another. One index key for all tenants (made once), so asking about a tenant that
    /// does not exist writes nothing.
    pub async fn blind_index(&self, tenant: &str, value: &str) -> Result<String, StoreError> {
        let Some((_, key)) = self.key_for("", INDEX_SUBJECT).await? else {
            return Err(StoreError::Personal("the index key was erased".into()));
        };
        let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&key.0).expect("HMAC takes any key length");
        mac.update(tenant.as_bytes());
        mac.update(b"\0");
        mac.update(value.as_bytes());
        Ok(mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_field_opens_with_its_key_only_and_not_once_altered() {
        let (key, other) = (DataKey::generate(), DataKey::generate());
        let value = json!({"name": "Ada Lovelace", "line1": "Friedrichstraße 123"});
        let sealed = seal("k-1", &key, &value);
        let text = sealed.to_string();
        assert!(!text.contains("Ada") && !text.contains("Friedrich"), "{text}");
        assert_eq!(sealed_key_id(&sealed), Some("k-1"));
        assert_eq!(open(&sealed, &key), Ok(value.clone()));
        assert!(open(&sealed, &other).is_err(), "another key does not open it");
        let mut moved = sealed.clone();
        moved[SEALED]["kid"] = json!("k-2");
        assert!(open(&moved, &key).is_err(), "the key id is bound to the ciphertext");
        let mut altered = sealed.clone();
        let ct = altered[SEALED]["ct"].as_str().expect("ct").to_owned();
        let flipped = if ct.starts_with('A') { format!("B{}", &ct[1..]) } else { format!("A{}", &ct[1..]) };
        altered[SEALED]["ct"] = json!(flipped);
        assert!(open(&altered, &key).is_err(), "an altered ciphertext does not open");
        assert_ne!(seal("k-1", &key, &value), sealed, "a fresh nonce each time");
        assert_eq!(sealed_key_id(&value), None);
        assert_eq!(format!("{key:?}"), "DataKey(..)");
    }
}
