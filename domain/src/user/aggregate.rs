use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{PasswordHash, Role, TokenHash, UserCommand, UserError, UserEvent, UserServices};
use crate::{Email, Name, Phone, TenantId, UserId};

/// A pending password reset: only its hash and deadline are known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingReset {
    pub token_hash: TokenHash,
    pub expires_at: DateTime<Utc>,
    /// `None` for requests recorded before the time was kept.
    #[serde(default)]
    pub requested_at: Option<DateTime<Utc>>,
}

/// At most this many password-reset mails per address per hour.
pub const MAX_RESETS_PER_HOUR: usize = 3;

/// Tokens kept pending at once; older ones are dropped beyond this.
const MAX_PENDING_RESETS: usize = 5;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// `None` until registered.
    pub id: Option<UserId>,
    pub tenant: TenantId,
    pub email: Option<Email>,
    pub name: Option<Name>,
    pub password_hash: Option<PasswordHash>,
    pub roles: BTreeSet<Role>,
    pub active: bool,
    /// Resets requested and not yet used; each stays valid until it expires, so a flood of
    /// requests cannot keep the owner from resetting.
    #[serde(default)]
    pub pending_resets: Vec<PendingReset>,
    /// The user said no to marketing mail.
    #[serde(default)]
    pub marketing_opt_out: bool,
    /// For order news by SMS, once opted in (`sms`).
    #[serde(default)]
    pub phone: Option<Phone>,
    /// Order news go by SMS to `phone`: given explicitly, cleared when the number changes.
    #[serde(default)]
    pub sms: bool,
    /// Moves on with every password change or reset, deactivation and role change: sessions
    /// and access tokens of an earlier epoch are no longer honoured.
    #[serde(default)]
    pub session_epoch: u64,
    /// The user's personal data was erased; nothing more is done with the user.
    #[serde(default)]
    pub erased: bool,
}

impl User {
    pub fn is_registered(&self) -> bool {
        self.id.is_some()
    }

    pub fn is_admin(&self) -> bool {
        self.roles.contains(&Role::Admin)
    }

    /// Only registered, active users may be changed.
    fn ensure_active(&self) -> Result<(), UserError> {
        if !self.is_registered() {
            Err(UserError::NotFound)
        } else if self.erased {
            Err(UserError::Erased)
        } else if !self.active {
            Err(UserError::Deactivated)
        } else {
            Ok(())
        }
    }

    async fn write_role_changes(&mut self, roles: &BTreeSet<Role>, sink: &EventSink<Self>) {
        let granted: Vec<Role> = roles.difference(&self.roles).copied().collect();
        let revoked: Vec<Role> = self.roles.difference(roles).copied().collect();
        for role in granted {
            sink.write(UserEvent::RoleGranted { role }, self).await;
        }
        for role in revoked {
            sink.write(UserEvent::RoleRevoked { role }, self).await;
        }
    }
}

impl Aggregate for User {
    const TYPE: &'static str = "user";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    type Services = UserServices;

    async fn handle(&mut self, command: Self::Command, services: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
        match command {
            UserCommand::Register { tenant, user_id, email, name, password, roles } => {
                if self.is_registered() {
                    return Err(UserError::AlreadyRegistered);
                }
                if roles.is_empty() {
                    return Err(UserError::NoRoles);
                }
                let password_hash = services.hasher.hash(&password).await?;
                let event = UserEvent::Registered { tenant, user_id, email, name, password_hash, roles };
                sink.write(event, self).await;
            }
            UserCommand::ChangeProfile { name, phone } => {
                self.ensure_active()?;
                if let Some(name) = name.filter(|n| self.name.as_ref() != Some(n)) {
                    sink.write(UserEvent::ProfileChanged { name }, self).await;
                }
                if let Some(phone) = phone.filter(|p| *p != self.phone) {
                    sink.write(UserEvent::PhoneChanged { phone }, self).await;
                }
            }
            UserCommand::SetPreferences { marketing_emails, sms } => {
                self.ensure_active()?;
                if sms == Some(true) && self.phone.is_none() {
                    return Err(UserError::NoPhone);
                }
                if let Some(allowed) = marketing_emails.filter(|allowed| self.marketing_opt_out == *allowed) {
                    sink.write(UserEvent::MarketingEmailsSet { allowed }, self).await;
                }
                if let Some(allowed) = sms.filter(|allowed| self.sms != *allowed) {
                    sink.write(UserEvent::SmsSet { allowed }, self).await;
                }
            }
            UserCommand::ChangePassword { current, new } => {
                self.ensure_active()?;
                let hash = self.password_hash.clone().ok_or(UserError::NotFound)?;
                if !services.hasher.verify(&current, &hash).await {
                    return Err(UserError::WrongPassword);
                }
                let password_hash = services.hasher.hash(&new).await?;
                sink.write(UserEvent::PasswordChanged { password_hash }, self).await;
            }
            UserCommand::RequestPasswordReset { token_hash, expires_at, now } => {
                self.ensure_active()?;
                let hour_ago = now - chrono::Duration::hours(1);
                let recent = self.pending_resets.iter().filter(|p| p.requested_at.is_some_and(|t| t > hour_ago)).count();
                if recent >= MAX_RESETS_PER_HOUR {
                    return Err(UserError::TooManyResets);
                }
                sink.write(UserEvent::PasswordResetRequested { token_hash, expires_at, requested_at: Some(now) }, self).await;
            }
            UserCommand::ConfirmPasswordReset { token_hash, new, now } => {
                self.ensure_active()?;
                let Some(pending) = self.pending_resets.iter().find(|p| p.token_hash == token_hash) else {
                    return Err(UserError::ResetTokenInvalid);
                };
                if pending.expires_at <= now {
                    return Err(UserError::ResetTokenExpired);
                }
                let password_hash = services.hasher.hash(&new).await?;
                sink.write(UserEvent::PasswordResetCompleted { password_hash }, self).await;
            }
            UserCommand::Deactivate => {
                self.ensure_active()?;
                sink.write(UserEvent::Deactivated, self).await;
            }
            UserCommand::Erase { password } => {
                if !self.is_registered() {
                    return Err(UserError::NotFound);
                }
                if self.erased {
                    return Err(UserError::Erased);
                }
                if let Some(password) = password {
                    let hash = self.password_hash.clone().ok_or(UserError::NotFound)?;
                    if !services.hasher.verify(&password, &hash).await {
                        return Err(UserError::WrongPassword);
                    }
                }
                sink.write(UserEvent::Erased, self).await;
            }
            UserCommand::GrantRole { role } => {
                self.ensure_active()?;
                let mut roles = self.roles.clone();
                roles.insert(role);
                self.write_role_changes(&roles, sink).await;
            }
            UserCommand::RevokeRole { role } => {
                self.ensure_active()?;
                let mut roles = self.roles.clone();
                roles.remove(&role);
                if roles.is_empty() {
                    return Err(UserError::NoRoles);
                }
                self.write_role_changes(&roles, sink).await;
            }
            UserCommand::SetRoles { roles } => {
                self.ensure_active()?;
                if roles.is_empty() {
                    return Err(UserError::NoRoles);
                }
                self.write_role_changes(&roles, sink).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            UserEvent::Registered { tenant, user_id, email, name, password_hash, roles } => {
                self.id = Some(user_id);
                self.tenant = tenant;
                self.email = Some(email);
                self.name = Some(name);
                self.password_hash = Some(password_hash);
                self.roles = roles;
                self.active = true;
            }
            UserEvent::ProfileChanged { name } => self.name = Some(name),
            UserEvent::MarketingEmailsSet { allowed } => self.marketing_opt_out = !allowed,
            UserEvent::PhoneChanged { phone } => {
                self.phone = phone;
                self.sms = false;
            }
            UserEvent::SmsSet { allowed } => self.sms = allowed,
            UserEvent::PasswordChanged { password_hash } => {
                self.password_hash = Some(password_hash);
                // A reset token mailed before the change must not undo it.
                self.pending_resets.clear();
                self.session_epoch += 1;
            }
            UserEvent::PasswordResetRequested { token_hash, expires_at, requested_at } => {
                self.pending_resets.push(PendingReset { token_hash, expires_at, requested_at });
                if self.pending_resets.len() > MAX_PENDING_RESETS {
                    self.pending_resets.remove(0);
                }
            }
            UserEvent::PasswordResetCompleted { password_hash } => {
                self.password_hash = Some(password_hash);
                self.pending_resets.clear();
                self.session_epoch += 1;
            }
            UserEvent::Deactivated => {
                self.active = false;
                self.pending_resets.clear();
                self.session_epoch += 1;
            }
            UserEvent::Erased => {
                self.erased = true;
                self.active = false;
                self.email = None;
                self.name = None;
                self.phone = None;
                self.sms = false;
                self.password_hash = None;
                self.pending_resets.clear();
                self.session_epoch += 1;
            }
            UserEvent::RoleGranted { role } => {
                self.roles.insert(role);
                self.session_epoch += 1;
            }
            UserEvent::RoleRevoked { role } => {
                self.roles.remove(&role);
                self.session_epoch += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::user::{HashingUnavailable, Password, PasswordHasher};

    /// Prefixes instead of hashing: the aggregate only needs hash and verify to agree.
    struct FakeHasher;

    #[async_trait]
    impl PasswordHasher for FakeHasher {
        async fn hash(&self, password: &Password) -> Result<PasswordHash, HashingUnavailable> {
            Ok(PasswordHash(format!("hashed:{}", password.expose())))
        }
        async fn verify(&self, password: &Password, hash: &PasswordHash) -> bool {
            hash.0 == format!("hashed:{}", password.expose())
        }
    }

    struct BrokenHasher;

    #[async_trait]
    impl PasswordHasher for BrokenHasher {
        async fn hash(&self, _: &Password) -> Result<PasswordHash, HashingUnavailable> {
            Err(HashingUnavailable)
        }
        async fn verify(&self, _: &Password, _: &PasswordHash) -> bool {
            false
        }
    }

    fn framework() -> TestFramework<User> {
        TestFramework::with(UserServices { hasher: Arc::new(FakeHasher) })
    }

    fn pw(s: &str) -> Password {
        s.parse().expect("valid password")
    }

    fn id() -> UserId {
        UserId::from_uuid(uuid::Uuid::from_u128(7))
    }

    fn customer() -> BTreeSet<Role> {
        BTreeSet::from([Role::Customer])
    }

    fn registered() -> UserEvent {
        UserEvent::Registered {
            tenant: TenantId::default(),
            user_id: id(),
            email: "ada@example.com".parse().expect("valid"),
            name: "Ada".parse().expect("valid"),
            password_hash: PasswordHash("hashed:correct horse".into()),
            roles: customer(),
        }
    }

    fn register() -> UserCommand {
        UserCommand::Register {
            tenant: TenantId::default(),
            user_id: id(),
            email: "ada@example.com".parse().expect("valid"),
            name: "Ada".parse().expect("valid"),
            password: pw("correct horse"),
            roles: customer(),
        }
    }

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, h, 0, 0).single().expect("valid time")
    }

    fn reset_requested() -> UserEvent {
        UserEvent::PasswordResetRequested { token_hash: TokenHash("t1".into()), expires_at: at(2), requested_at: Some(at(1)) }
    }

    fn request(token: &str, now: u32) -> UserCommand {
        UserCommand::RequestPasswordReset { token_hash: TokenHash(token.into()), expires_at: at(now + 1), now: at(now) }
    }

    fn requested(token: &str, now: u32) -> UserEvent {
        UserEvent::PasswordResetRequested { token_hash: TokenHash(token.into()), expires_at: at(now + 1), requested_at: Some(at(now)) }
    }

    #[test]
    fn at_most_three_resets_an_hour_and_earlier_tokens_stay_valid() {
        let three = vec![registered(), requested("t1", 1), requested("t2", 1), requested("t3", 1)];
        framework().given(three.clone()).when(request("t4", 1)).then_expect_error(UserError::TooManyResets);
        framework().given(three.clone()).when(request("t4", 3)).then_expect_events(vec![requested("t4", 3)]);
        framework()
            .given(three)
            .when(UserCommand::ConfirmPasswordReset { token_hash: TokenHash("t1".into()), new: pw("battery staple"), now: at(1) })
            .then_expect_events(vec![UserEvent::PasswordResetCompleted { password_hash: PasswordHash("hashed:battery staple".into()) }]);
    }

    #[test]
    fn a_password_change_kills_a_pending_reset() {
        framework()
            .given(vec![
                registered(),
                reset_requested(),
                UserEvent::PasswordChanged { password_hash: PasswordHash("hashed:new one".into()) },
            ])
            .when(UserCommand::ConfirmPasswordReset { token_hash: TokenHash("t1".into()), new: pw("battery staple"), now: at(1) })
            .then_expect_error(UserError::ResetTokenInvalid);
    }

    #[test]
    fn credential_and_role_changes_move_the_session_epoch_on() {
        let mut user = User::default();
        for e in [
            registered(),
            UserEvent::ProfileChanged { name: "Ada L".parse().expect("valid") },
            UserEvent::PasswordChanged { password_hash: PasswordHash("x".into()) },
            UserEvent::PasswordResetCompleted { password_hash: PasswordHash("y".into()) },
            UserEvent::RoleGranted { role: Role::Admin },
            UserEvent::RoleRevoked { role: Role::Admin },
            UserEvent::Deactivated,
        ] {
            user.apply(e);
        }
        assert_eq!(user.session_epoch, 5);
    }

    #[test]
    fn a_new_user_registers_with_a_hashed_password() {
        framework().given_no_previous_events().when(register()).then_expect_events(vec![registered()]);
    }

    #[test]
    fn registering_twice_is_rejected() {
        framework().given(vec![registered()]).when(register()).then_expect_error(UserError::AlreadyRegistered);
    }

    #[test]
    fn registering_without_roles_is_rejected() {
        let mut cmd = register();
        if let UserCommand::Register { roles, .. } = &mut cmd {
            roles.clear();
        }
        framework().given_no_previous_events().when(cmd).then_expect_error(UserError::NoRoles);
    }

    #[test]
    fn registration_fails_when_hashing_is_unavailable() {
        TestFramework::<User>::with(UserServices { hasher: Arc::new(BrokenHasher) })
            .given_no_previous_events()
            .when(register())
            .then_expect_error(UserError::HashingUnavailable);
    }

    #[test]
    fn a_profile_change_records_the_new_name() {
        let name: Name = "Ada Lovelace".parse().expect("valid");
        framework()
            .given(vec![registered()])
            .when(UserCommand::ChangeProfile { name: Some(name.clone()), phone: None })
            .then_expect_events(vec![UserEvent::ProfileChanged { name }]);
    }

    fn phone(p: &str) -> Phone {
        p.parse().expect("valid")
    }

    #[test]
    fn sms_needs_a_phone_and_a_new_number_clears_the_opt_in() {
        let sms_on = || UserCommand::SetPreferences { marketing_emails: None, sms: Some(true) };
        framework().given(vec![registered()]).when(sms_on()).then_expect_error(UserError::NoPhone);
        let with_phone = vec![registered(), UserEvent::PhoneChanged { phone: Some(phone("+4915112345678")) }];
        framework().given(with_phone.clone()).when(sms_on()).then_expect_events(vec![UserEvent::SmsSet { allowed: true }]);
        let mut opted_in = with_phone;
        opted_in.push(UserEvent::SmsSet { allowed: true });
        framework().given(opted_in.clone()).when(sms_on()).then_expect_events(vec![]);
        framework()
            .given(opted_in.clone())
            .when(UserCommand::ChangeProfile { name: None, phone: Some(Some(phone("+4915112345678"))) })
            .then_expect_events(vec![]);
        framework()
            .given(opted_in.clone())
            .when(UserCommand::ChangeProfile { name: None, phone: Some(Some(phone("+4915199999999"))) })
            .then_expect_events(vec![UserEvent::PhoneChanged { phone: Some(phone("+4915199999999")) }]);
        let mut user = User::default();
        for e in opted_in.into_iter().chain([UserEvent::PhoneChanged { phone: None }]) {
            user.apply(e);
        }
        assert_eq!((user.phone, user.sms), (None, false), "a removed number takes the opt-in with it");
    }

    #[test]
    fn an_unchanged_profile_records_nothing() {
        framework()
            .given(vec![registered()])
            .when(UserCommand::ChangeProfile { name: Some("Ada".parse().expect("valid")), phone: None })
            .then_expect_events(vec![]);
    }

    #[test]
    fn changing_an_unknown_users_profile_is_rejected() {
        framework()
            .given_no_previous_events()
            .when(UserCommand::ChangeProfile { name: Some("Ada".parse().expect("valid")), phone: None })
            .then_expect_error(UserError::NotFound);
    }

    #[test]
    fn a_password_change_with_the_current_password_succeeds() {
        framework()
            .given(vec![registered()])
            .when(UserCommand::ChangePassword { current: pw("correct horse"), new: pw("battery staple") })
            .then_expect_events(vec![UserEvent::PasswordChanged { password_hash: PasswordHash("hashed:battery staple".into()) }]);
    }

    #[test]
    fn a_password_change_with_a_wrong_current_password_is_rejected() {
        framework()
            .given(vec![registered()])
            .when(UserCommand::ChangePassword { current: pw("wrong horse"), new: pw("battery staple") })
            .then_expect_error(UserError::WrongPassword);
    }

    #[test]
    fn a_reset_request_is_recorded_hashed() {
        framework()
            .given(vec![registered()])
            .when(UserCommand::RequestPasswordReset { token_hash: TokenHash("t1".into()), expires_at: at(2), now: at(1) })
            .then_expect_events(vec![reset_requested()]);
    }

    #[test]
    fn a_valid_reset_token_sets_the_new_password() {
        framework()
            .given(vec![registered(), reset_requested()])
            .when(UserCommand::ConfirmPasswordReset { token_hash: TokenHash("t1".into()), new: pw("battery staple"), now: at(1) })
            .then_expect_events(vec![UserEvent::PasswordResetCompleted { password_hash: PasswordHash("hashed:battery staple".into()) }]);
    }

    #[test]
    fn a_reset_token_works_only_once() {
        framework()
            .given(vec![
                registered(),
                reset_requested(),
                UserEvent::PasswordResetCompleted { password_hash: PasswordHash("hashed:x".into()) },
            ])
            .when(UserCommand::ConfirmPasswordReset { token_hash: TokenHash("t1".into()), new: pw("battery staple"), now: at(1) })
            .then_expect_error(UserError::ResetTokenInvalid);
    }

    #[test]
    fn a_wrong_reset_token_is_rejected() {
        framework()
            .given(vec![registered(), reset_requested()])
            .when(UserCommand::ConfirmPasswordReset { token_hash: TokenHash("other".into()), new: pw("battery staple"), now: at(1) })
            .then_expect_error(UserError::ResetTokenInvalid);
    }

    #[test]
    fn an_expired_reset_token_is_rejected() {
        framework()
            .given(vec![registered(), reset_requested()])
            .when(UserCommand::ConfirmPasswordReset { token_hash: TokenHash("t1".into()), new: pw("battery staple"), now: at(2) })
            .then_expect_error(UserError::ResetTokenExpired);
    }

    #[test]
    fn a_user_is_erased_once_with_the_right_password_or_by_an_admin() {
        let erase = |password: Option<&str>| UserCommand::Erase { password: password.map(|p| p.parse().expect("password")) };
        framework().given(vec![registered()]).when(erase(Some("wrong-password"))).then_expect_error(UserError::WrongPassword);
        framework().given(vec![registered(), UserEvent::Deactivated]).when(erase(None)).then_expect_events(vec![UserEvent::Erased]);
        framework().given(vec![registered(), UserEvent::Erased]).when(erase(None)).then_expect_error(UserError::Erased);
        framework()
            .given(vec![registered(), UserEvent::Erased])
            .when(UserCommand::ChangeProfile { name: Some("Ada".parse().expect("name")), phone: None })
            .then_expect_error(UserError::Erased);
        let mut user = User::default();
        user.apply(registered());
        user.apply(UserEvent::Erased);
        assert!(user.erased && !user.active && user.email.is_none() && user.name.is_none() && user.password_hash.is_none());
    }

    #[test]
    fn a_user_can_be_deactivated_once() {
        framework().given(vec![registered()]).when(UserCommand::Deactivate).then_expect_events(vec![UserEvent::Deactivated]);
        framework()
            .given(vec![registered(), UserEvent::Deactivated])
            .when(UserCommand::Deactivate)
            .then_expect_error(UserError::Deactivated);
    }

    #[test]
    fn a_deactivated_user_cannot_reset_a_password() {
        framework()
            .given(vec![registered(), reset_requested(), UserEvent::Deactivated])
            .when(UserCommand::ConfirmPasswordReset { token_hash: TokenHash("t1".into()), new: pw("battery staple"), now: at(1) })
            .then_expect_error(UserError::Deactivated);
    }

    #[test]
    fn granting_a_role_records_it_and_granting_it_again_records_nothing() {
        framework()
            .given(vec![registered()])
            .when(UserCommand::GrantRole { role: Role::Admin })
            .then_expect_events(vec![UserEvent::RoleGranted { role: Role::Admin }]);
        framework().given(vec![registered()]).when(UserCommand::GrantRole { role: Role::Customer }).then_expect_events(vec![]);
    }

    #[test]
    fn revoking_a_role_records_it() {
        framework()
            .given(vec![registered(), UserEvent::RoleGranted { role: Role::Admin }])
            .when(UserCommand::RevokeRole { role: Role::Admin })
            .then_expect_events(vec![UserEvent::RoleRevoked { role: Role::Admin }]);
    }

    #[test]
    fn revoking_the_last_role_is_rejected() {
        framework().given(vec![registered()]).when(UserCommand::RevokeRole { role: Role::Customer }).then_expect_error(UserError::NoRoles);
    }

    #[test]
    fn setting_roles_grants_and_revokes_the_difference() {
        framework()
            .given(vec![registered()])
            .when(UserCommand::SetRoles { roles: BTreeSet::from([Role::Admin]) })
            .then_expect_events(vec![UserEvent::RoleGranted { role: Role::Admin }, UserEvent::RoleRevoked { role: Role::Customer }]);
    }

    #[test]
    fn setting_no_roles_is_rejected() {
        framework().given(vec![registered()]).when(UserCommand::SetRoles { roles: BTreeSet::new() }).then_expect_error(UserError::NoRoles);
    }
}
