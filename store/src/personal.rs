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
    store: EventStore,
}

impl SqlKeyStore {
    pub fn new(store: EventStore) -> Self {
        Self { store }
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
        let row: (String, Option<Vec<u8>>) = match self.store.db() {
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
        let row: Option<(Option<Vec<u8>>,)> = match self.store.db() {
            Db::Postgres(pool) => sqlx::query_as(select).bind(key_id).fetch_optional(pool).await?,
            Db::Sqlite { read, .. } => sqlx::query_as(select).bind(key_id).fetch_optional(read).await?,
        };
        Ok(match row {
            None => KeyState::Unknown,
            Some((None,)) => KeyState::Erased,
            Some((Some(bytes),)) => DataKey::from_slice(&bytes).map_or(KeyState::Unknown, KeyState::Live),
        })
    }

    async fn erase(&self, tenant: &str, subject: &str) -> Result<bool, StoreError> {
        let now = now_ms();
        // A subject never sealed for gets a tombstone too: nothing is sealed for it afterwards.
        let sql = "INSERT INTO personal_keys (key_id, tenant, subject, data_key, created_at_ms, erased_at_ms) \
                   VALUES ($1, $2, $3, NULL, $4, $4) \
                   ON CONFLICT (tenant, subject) DO UPDATE SET data_key = NULL, erased_at_ms = $4 \
                   WHERE personal_keys.data_key IS NOT NULL";
        let id = uuid::Uuid::now_v7().to_string();
        let erased = match self.store.db() {
            Db::Postgres(pool) => sqlx::query(sql).bind(&id).bind(tenant).bind(subject).bind(now).execute(pool).await?.rows_affected(),
            Db::Sqlite { write, .. } => {
                sqlx::query(sql).bind(&id).bind(tenant).bind(subject).bind(now).execute(write).await?.rows_affected()
            }
        };
        Ok(erased > 0)
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
