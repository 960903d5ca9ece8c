use chrono::{DateTime, Utc};

use crate::user::TokenHash;
use crate::{SessionId, TenantId, UserId};

#[derive(Debug, Clone, PartialEq)]
pub enum SessionCommand {
    Start {
        tenant: TenantId,
        session_id: SessionId,
        user_id: UserId,
        token_hash: TokenHash,
        expires_at: DateTime<Utc>,
    },
    /// Exchange the presented token for a new one. A presented token that was already rotated
    /// away revokes the family (recorded, not an error, so the revocation is kept).
    Rotate {
        presented: TokenHash,
        next: TokenHash,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    },
    /// Log out: the family's current token stops working.
    Revoke {
        presented: TokenHash,
    },
}
