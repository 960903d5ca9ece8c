use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{PasswordHash, TokenHash};
use crate::{Email, InvalidValue, Name, Phone, TenantId, UserId};

/// What a user may do. Roles are per tenant, because users are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Customer,
    Admin,
}

impl FromStr for Role {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "customer" => Ok(Role::Customer),
            "admin" => Ok(Role::Admin),
            _ => Err(InvalidValue::new("role", "must be 'customer' or 'admin'")),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Customer => "customer",
            Role::Admin => "admin",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserEvent {
    Registered {
        tenant: TenantId,
        user_id: UserId,
        email: Email,
        name: Name,
        password_hash: PasswordHash,
        roles: BTreeSet<Role>,
    },
    ProfileChanged {
        name: Name,
    },
    MarketingEmailsSet {
        allowed: bool,
    },
    /// A new phone number, or none; the SMS opt-in is cleared with it.
    PhoneChanged {
        phone: Option<Phone>,
    },
    /// Whether order news go by SMS to the user's phone number.
    SmsSet {
        allowed: bool,
    },
    PasswordChanged {
        password_hash: PasswordHash,
    },
    PasswordResetRequested {
        token_hash: TokenHash,
        expires_at: DateTime<Utc>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        requested_at: Option<DateTime<Utc>>,
    },
    PasswordResetCompleted {
        password_hash: PasswordHash,
    },
    Deactivated,
    /// The user's personal data was erased: their data key is deleted, so every field sealed
    /// with it reads as erased; read models blank what they kept of the user.
    Erased,
    RoleGranted {
        role: Role,
    },
    RoleRevoked {
        role: Role,
    },
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        match self {
            UserEvent::Registered { .. } => "registered",
            UserEvent::ProfileChanged { .. } => "profile_changed",
            UserEvent::MarketingEmailsSet { .. } => "marketing_emails_set",
            UserEvent::PhoneChanged { .. } => "phone_changed",
            UserEvent::SmsSet { .. } => "sms_set",
            UserEvent::PasswordChanged { .. } => "password_changed",
            UserEvent::PasswordResetRequested { .. } => "password_reset_requested",
            UserEvent::PasswordResetCompleted { .. } => "password_reset_completed",
            UserEvent::Deactivated => "deactivated",
            UserEvent::Erased => "erased",
            UserEvent::RoleGranted { .. } => "role_granted",
            UserEvent::RoleRevoked { .. } => "role_revoked",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
