use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::user::TokenHash;
use crate::{SessionId, TenantId, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RevocationReason {
    Logout,
    ReuseDetected,
    /// The user's password, roles or status changed after the session started.
    Ended,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionEvent {
    Started {
        tenant: TenantId,
        session_id: SessionId,
        user_id: UserId,
        token_hash: TokenHash,
        expires_at: DateTime<Utc>,
        /// The user's session epoch at login: a later password change, reset, deactivation or
        /// role change moves the user's epoch on and so ends this session.
        #[serde(default)]
        epoch: u64,
        /// The absolute end of the session, which rotation never moves (`None` in sessions
        /// started before there was one: their first rotation sets it).
        #[serde(default)]
        ends_at: Option<DateTime<Utc>>,
    },
    Rotated {
        token_hash: TokenHash,
        expires_at: DateTime<Utc>,
        /// Set only on the first rotation of a session that had no absolute end.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ends_at: Option<DateTime<Utc>>,
    },
    Revoked {
        reason: RevocationReason,
    },
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
