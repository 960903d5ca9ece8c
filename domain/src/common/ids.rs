use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::InvalidValue;

/// Declares a UUIDv7 id newtype with `Display`, `FromStr` and serde as a string.
///
/// Its JSON Schema is written here rather than derived: serde writes the bare uuid
/// (`transparent`), and a derived schema would be `Uuid`'s, named after it and without this
/// type's doc comment; this one is a `uuid`-format string named and described as the id.
macro_rules! typed_id {
    ($(#[doc = $doc:literal])* $name:ident, $field:literal) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self(Uuid::nil())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = InvalidValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s)
                    .map(Self)
                    .map_err(|_| InvalidValue::new($field, "not a uuid"))
            }
        }

        string_schema!($name, [$($doc),*], "format": "uuid");
    };
}

typed_id!(
    /// Identifies a user within the whole installation (ids never repeat across tenants).
    UserId, "user_id"
);
typed_id!(
    /// Identifies a catalogue product.
    ProductId, "product_id"
);
typed_id!(
    /// Identifies an order.
    OrderId, "order_id"
);
typed_id!(
    /// Identifies a payment.
    PaymentId, "payment_id"
);
typed_id!(
    /// Identifies a shopping cart.
    CartId, "cart_id"
);
typed_id!(
    /// Identifies a refresh-token family (one login and all its rotations).
    SessionId, "session_id"
);

/// A tenant: every aggregate and read-model row belongs to exactly one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
#[schemars(extend("pattern" = "^[a-z0-9][a-z0-9-]{0,62}$"))]
pub struct TenantId(String);

impl TenantId {
    pub fn default_tenant() -> Self {
        Self("default".to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for TenantId {
    fn default() -> Self {
        Self::default_tenant()
    }
}

impl FromStr for TenantId {
    type Err = InvalidValue;

    /// Lowercase letters, digits and `-`, 1 to 63 characters, starting with a letter or digit.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= 63
            && !s.starts_with('-')
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidValue::new("tenant", "must be 1-63 lowercase letters, digits or '-'"))
        }
    }
}

impl TryFrom<String> for TenantId {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> Self {
        t.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The event-store stream id of an aggregate: `<tenant>:<key>`. Scoping every stream by its
/// tenant means a command in one tenant can never load or append to another tenant's aggregate.
pub fn stream_id(tenant: &TenantId, key: impl fmt::Display) -> String {
    format!("{tenant}:{key}")
}

/// A stream id as the store keeps it (`<tenant>:<key>`, made by [`stream_id`]), read in place:
/// the tenant that scopes the stream and the aggregate's own key (a uuid, a SKU, an e-mail
/// address). Every reader of stored ids parses them here and nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId<'a> {
    pub tenant: &'a str,
    pub key: &'a str,
}

impl<'a> StreamId<'a> {
    /// `Err` for an id without a tenant (not one the store wrote through [`stream_id`]).
    pub fn parse(id: &'a str) -> Result<Self, InvalidValue> {
        match id.split_once(':') {
            Some((tenant, key)) if !tenant.is_empty() && !key.is_empty() => Ok(Self { tenant, key }),
            _ => Err(InvalidValue::new("stream_id", "must be <tenant>:<key>")),
        }
    }

    /// The tenant, checked.
    pub fn tenant_id(&self) -> Result<TenantId, InvalidValue> {
        self.tenant.parse()
    }
}

impl fmt::Display for StreamId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.tenant, self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_display_and_serde() {
        let id = ProductId::new();
        assert_eq!(id.to_string().parse::<ProductId>(), Ok(id));
        let json = serde_json::to_string(&id).expect("ids serialise");
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<ProductId>(&json).expect("ids deserialise"), id);
    }

    #[test]
    fn a_malformed_id_is_rejected() {
        assert_eq!("nope".parse::<UserId>(), Err(InvalidValue::new("user_id", "not a uuid")));
    }

    #[test]
    fn tenants_are_lowercase_slugs() {
        assert!("acme-1".parse::<TenantId>().is_ok());
        assert!("Acme".parse::<TenantId>().is_err());
        assert!("".parse::<TenantId>().is_err());
        assert!("-x".parse::<TenantId>().is_err());
        assert!("a:b".parse::<TenantId>().is_err());
    }

    #[test]
    fn stream_ids_are_scoped_by_tenant() {
        let t = TenantId::default_tenant();
        assert_eq!(stream_id(&t, "SKU-1"), "default:SKU-1");
    }

    #[test]
    fn stream_ids_read_back_as_tenant_and_key() {
        let id = stream_id(&"acme".parse().expect("valid"), "ada@example.com");
        let parsed = StreamId::parse(&id).expect("a stored id");
        assert_eq!((parsed.tenant, parsed.key), ("acme", "ada@example.com"));
        assert_eq!(parsed.to_string(), id);
        assert_eq!(parsed.tenant_id().map(String::from), Ok("acme".to_owned()));
        assert!(StreamId::parse("no-tenant").is_err());
        assert!(StreamId::parse(":key").is_err());
    }
}
