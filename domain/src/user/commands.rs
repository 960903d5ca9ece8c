use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use super::{Password, Role, TokenHash};
use crate::{Email, Name, Phone, TenantId, UserId};

#[derive(Debug, Clone, PartialEq)]
pub enum UserCommand {
    /// Create the user; the e-mail address must already be claimed in the same write.
    Register {
        tenant: TenantId,
        user_id: UserId,
        email: Email,
        name: Name,
        password: Password,
        roles: BTreeSet<Role>,
    },
    /// Change what is given (`None` leaves it); `phone: Some(None)` removes the number. A new
    /// or removed number clears the SMS opt-in until it is given again.
    ChangeProfile {
        name: Option<Name>,
        phone: Option<Option<Phone>>,
    },
    /// Whether the user takes marketing mail (new products; account and order mail always go)
    /// and order news by SMS (only with a phone number); `None` leaves a choice as it is.
    SetPreferences {
        marketing_emails: Option<bool>,
        sms: Option<bool>,
    },
    /// Requires the current password, so a stolen access token alone cannot take the account.
    ChangePassword {
        current: Password,
        new: Password,
    },
    /// Record a reset token (hashed) that is valid until `expires_at`; at most
    /// [`super::MAX_RESETS_PER_HOUR`] an hour.
    RequestPasswordReset {
        token_hash: TokenHash,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    /// Use a reset token once, before it expires, to set a new password.
    ConfirmPasswordReset {
        token_hash: TokenHash,
        new: Password,
        now: DateTime<Utc>,
    },
    Deactivate,
    /// Erase the user's personal data (the right to erasure): with the current password when
    /// the user asks, without when an admin does. Once erased, nothing more can be done with
    /// the user; an erased user cannot be erased again.
    Erase {
        password: Option<Password>,
    },
    GrantRole {
        role: Role,
    },
    RevokeRole {
        role: Role,
    },
    /// Make the user's roles exactly `roles` (grants and revokes the difference).
    SetRoles {
        roles: BTreeSet<Role>,
    },
}
