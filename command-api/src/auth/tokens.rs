use std::fmt;
use std::str::FromStr;

use domain::user::TokenHash;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A bearer secret in the form `<id>.<secret>`: the id names the stream that holds the
/// secret's hash (a session or a user), the secret is 32 random bytes in hex.
#[derive(Clone, PartialEq, Eq)]
pub struct OpaqueToken<Id> {
    pub id: Id,
    secret: String,
}

impl<Id: Copy> OpaqueToken<Id> {
    pub fn generate(id: Id) -> Self {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        Self { id, secret: hex::encode(bytes) }
    }

    /// What the event store keeps instead of the secret.
    pub fn hash(&self) -> TokenHash {
        TokenHash(hex::encode(Sha256::digest(self.secret.as_bytes())))
    }
}

impl<Id: fmt::Display> fmt::Display for OpaqueToken<Id> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

impl<Id> fmt::Debug for OpaqueToken<Id> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OpaqueToken(***)")
    }
}

impl<Id: FromStr> FromStr for OpaqueToken<Id> {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (id, secret) = s.split_once('.').ok_or(())?;
        if secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(());
        }
        Ok(Self { id: id.parse().map_err(|_| ())?, secret: secret.to_ascii_lowercase() })
    }
}

#[cfg(test)]
mod tests {
    use domain::SessionId;

    use super::*;

    #[test]
    fn tokens_parse_back_with_the_same_hash() {
        let t = OpaqueToken::generate(SessionId::new());
        let parsed: OpaqueToken<SessionId> = t.to_string().parse().expect("parses");
        assert_eq!(parsed.hash(), t.hash());
        assert_ne!(OpaqueToken::generate(t.id).hash(), t.hash());
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        assert!("nope".parse::<OpaqueToken<SessionId>>().is_err());
        assert!(format!("{}.short", SessionId::new()).parse::<OpaqueToken<SessionId>>().is_err());
    }
}
