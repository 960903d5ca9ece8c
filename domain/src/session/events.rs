use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::user::TokenHash;
use crate::{SessionId, TenantId, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationReason {
    Logout,
    ReuseDetected,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEvent {
    Started { tenant: TenantId, session_id: SessionId, user_id: UserId, token_hash: TokenHash, expires_at: DateTime<Utc> },
    Rotated { token_hash: TokenHash, expires_at: DateTime<Utc> },
    Revoked { reason: RevocationReason },
}

impl DomainEvent for SessionEvent {
    fn event_type(&self) -> String {
        match self {
            SessionEvent::Started { .. } => "started",
            SessionEvent::Rotated { .. } => "rotated",
            SessionEvent::Revoked { .. } => "revoked",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
