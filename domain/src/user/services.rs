use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::InvalidValue;

/// A plaintext password as the user typed it. Never printed, never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

impl FromStr for Password {
    type Err = InvalidValue;

    /// 8 to 128 characters (OWASP ASVS: at least 8; an upper bound keeps hashing cheap to refuse).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let n = s.chars().count();
        if (8..=128).contains(&n) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidValue::new("password", "must be 8 to 128 characters"))
        }
    }
}

/// Declares a `#[serde(transparent)]` string newtype with a JSON Schema of its own: a string
/// named and described (by its doc comment) as the type. A derived one would be `String`'s,
/// unnamed and undescribed, since serde writes the bare string.
macro_rules! transparent_string {
    ($(#[doc = $doc:literal])* #[derive($($derive:path),*)] pub struct $name:ident(pub String);) => {
        $(#[doc = $doc])*
        #[derive($($derive),*)]
        #[serde(transparent)]
        pub struct $name(pub String);

        string_schema!($name, [$($doc),*]);
    };
}

transparent_string! {
    /// A PHC-format password hash (`$argon2id$v=19$...`).
    #[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct PasswordHash(pub String);
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(***)")
    }
}

transparent_string! {
    /// The SHA-256 (hex) of a single-use secret such as a password-reset token. Only hashes are
    /// kept in events, so the log never holds a usable secret.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct TokenHash(pub String);
}

/// Why a password could not be hashed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("password hashing is unavailable")]
pub struct HashingUnavailable;

/// Hashes and checks passwords. The real one (argon2id, off the async runtime) lives in the
/// command API; tests use a cheap fake.
#[async_trait]
pub trait PasswordHasher: Send + Sync {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashingUnavailable>;
    async fn verify(&self, password: &Password, hash: &PasswordHash) -> bool;
}

/// What the `User` aggregate calls out to.
#[derive(Clone)]
pub struct UserServices {
    pub hasher: std::sync::Arc<dyn PasswordHasher>,
}
