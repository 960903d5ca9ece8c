use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::user::Role;
use domain::{TenantId, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::{ApiError, AuthUser, ErrorCode, Principals};

/// A secret that never prints.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// What an access token says about its bearer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: UserId,
    pub tenant: TenantId,
    pub roles: BTreeSet<Role>,
    /// The user's session epoch when the token was issued: a later password change, reset,
    /// deactivation or role change makes the token worthless (checked per request against
    /// [`crate::Principals`]).
    #[serde(default)]
    pub ep: u64,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
}

const ISSUER: &str = "shop";

/// Signs and checks access tokens (HS256).
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Lifetime of an access token; at most 15 minutes.
    pub ttl: Duration,
    /// The users as they are now; every authenticated request is checked against them.
    principals: Option<Arc<Principals>>,
}

impl JwtKeys {
    pub fn new(secret: &Secret, ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
            ttl: ttl.min(Duration::from_secs(15 * 60)),
            principals: None,
        }
    }

    /// Checks every authenticated request against the users' current state, not only the
    /// token's signature.
    pub fn with_principals(mut self, principals: Arc<Principals>) -> Self {
        self.principals = Some(principals);
        self
    }

    /// The caller a bearer token names, if the token is valid *and* its user still exists, is
    /// active, holds the roles the token claims and has not changed password, roles or status
    /// since it was issued.
    pub async fn authenticate(&self, token: &str) -> Result<AuthUser, ApiError> {
        let unauthenticated = |detail: &str| ApiError::new(ErrorCode::Unauthenticated, detail.to_owned());
        let claims = self.verify(token).map_err(|_| unauthenticated("the access token is invalid or expired"))?;
        if let Some(principals) = &self.principals {
            let Some(now) = principals.current(&claims.tenant, claims.sub, claims.ep).await? else {
                return Err(unauthenticated("the access token names no user"));
            };
            if !now.active {
                return Err(unauthenticated("the account is deactivated"));
            }
            if now.epoch != claims.ep || !claims.roles.is_subset(&now.roles) {
                return Err(unauthenticated("the account's password, roles or status changed; log in again"));
            }
        }
        Ok(AuthUser { user_id: claims.sub, tenant: claims.tenant, roles: claims.roles, expires_at: claims.exp })
    }

    pub fn issue(
        &self,
        user: UserId,
        tenant: &TenantId,
        roles: &BTreeSet<Role>,
        epoch: u64,
        now: DateTime<Utc>,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let claims = Claims {
            sub: user,
            tenant: tenant.clone(),
            roles: roles.clone(),
            ep: epoch,
            iat: now.timestamp(),
            exp: now.timestamp() + self.ttl.as_secs() as i64,
            iss: ISSUER.to_owned(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map(|d| d.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> JwtKeys {
        JwtKeys::new(&Secret::new(secret), Duration::from_secs(3600))
    }

    #[test]
    fn tokens_round_trip_and_last_at_most_fifteen_minutes() {
        let k = keys("s1");
        let roles = BTreeSet::from([Role::Admin]);
        let token = k.issue(UserId::new(), &TenantId::default(), &roles, 0, Utc::now()).expect("signs");
        let claims = k.verify(&token).expect("verifies");
        assert_eq!(claims.roles, roles);
        assert_eq!(claims.exp - claims.iat, 900);
    }

    #[test]
    fn tokens_signed_with_another_key_or_expired_are_rejected() {
        let token = keys("s1").issue(UserId::new(), &TenantId::default(), &BTreeSet::new(), 0, Utc::now()).expect("signs");
        assert!(keys("s2").verify(&token).is_err());
        let old = Utc::now() - chrono::Duration::hours(1);
        let expired = keys("s1").issue(UserId::new(), &TenantId::default(), &BTreeSet::new(), 0, old).expect("signs");
        assert!(keys("s1").verify(&expired).is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }
}
