use cqrs_es::DomainEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ClaimKind;
use crate::TenantId;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(bound = "", rename_all = "snake_case")]
#[schemars(rename = "{K}Event")]
pub enum ClaimEvent<K: ClaimKind> {
    Claimed {
        tenant: TenantId,
        key: K::Key,
        owner: K::Owner,
    },
    /// Given up by its owner: the key may be claimed again.
    Released {
        owner: K::Owner,
    },
}

impl<K: ClaimKind> DomainEvent for ClaimEvent<K> {
    fn event_type(&self) -> String {
        match self {
            ClaimEvent::Claimed { .. } => "claimed".to_owned(),
            ClaimEvent::Released { .. } => "released".to_owned(),
        }
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
