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
        /// The user's session epoch now.
        epoch: u64,
        /// The absolute end of the session (login time plus the maximum session age).
        ends_at: DateTime<Utc>,
    },
    /// Exchange the presented token for a new one. A presented token that was already rotated
    /// away revokes the family (recorded, not an error, so the revocation is kept).
    Rotate {
        presented: TokenHash,
        next: TokenHash,
        now: DateTime<Utc>,
        /// The refresh token's own expiry; never later than the session's absolute end.
        expires_at: DateTime<Utc>,
        /// The absolute end for a session that has none yet (started before there was one).
        ends_at: DateTime<Utc>,
        /// The user's session epoch now: a session of an earlier epoch has ended.
        user_epoch: u64,
    },
    /// Log out: the family's current token stops working.
    Revoke { presented: TokenHash },
}
