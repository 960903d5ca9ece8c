use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{RevocationReason, SessionCommand, SessionError, SessionEvent};
use crate::user::TokenHash;
use crate::{TenantId, UserId};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub user_id: Option<UserId>,
    pub tenant: TenantId,
    /// The only token that may be exchanged next.
    pub current: Option<TokenHash>,
    /// Tokens rotated away; presenting one of them is reuse.
    pub previous: Vec<TokenHash>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked: Option<RevocationReason>,
    /// The user's session epoch when the session started.
    #[serde(default)]
    pub epoch: u64,
    /// The absolute end of the session; rotation does not move it.
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
}

impl Aggregate for Session {
    const TYPE: &'static str = "session";
    type Command = SessionCommand;
    type Event = SessionEvent;
    type Error = SessionError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _services: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
        match command {
            SessionCommand::Start { tenant, session_id, user_id, token_hash, expires_at, epoch, ends_at } => {
                if self.user_id.is_some() {
                    return Err(SessionError::AlreadyStarted);
                }
                let expires_at = expires_at.min(ends_at);
                let ends_at = Some(ends_at);
                sink.write(SessionEvent::Started { tenant, session_id, user_id, token_hash, expires_at, epoch, ends_at }, self).await;
            }
            SessionCommand::Rotate { presented, next, now, expires_at, ends_at, user_epoch } => {
                if self.user_id.is_none() {
                    return Err(SessionError::InvalidToken);
                }
                if self.revoked.is_some() {
                    return Err(SessionError::Revoked);
                }
                if self.previous.contains(&presented) {
                    let reason = RevocationReason::ReuseDetected;
                    sink.write(SessionEvent::Revoked { reason }, self).await;
                    return Ok(());
                }
                if self.current.as_ref() != Some(&presented) {
                    return Err(SessionError::InvalidToken);
                }
                if self.epoch != user_epoch {
                    sink.write(SessionEvent::Revoked { reason: RevocationReason::Ended }, self).await;
                    return Ok(());
                }
                let end = self.ends_at.unwrap_or(ends_at);
                if self.expires_at.is_some_and(|t| t <= now) || end <= now {
                    return Err(SessionError::Expired);
                }
                let new_end = self.ends_at.is_none().then_some(end);
                sink.write(SessionEvent::Rotated { token_hash: next, expires_at: expires_at.min(end), ends_at: new_end }, self).await;
            }
            SessionCommand::Revoke { presented } => {
                if self.user_id.is_none() || self.current.as_ref() != Some(&presented) {
                    return Err(SessionError::InvalidToken);
                }
                if self.revoked.is_some() {
                    return Err(SessionError::Revoked);
                }
                sink.write(SessionEvent::Revoked { reason: RevocationReason::Logout }, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            SessionEvent::Started { tenant, user_id, token_hash, expires_at, epoch, ends_at, .. } => {
                self.tenant = tenant;
                self.user_id = Some(user_id);
                self.current = Some(token_hash);
                self.expires_at = Some(expires_at);
                self.epoch = epoch;
                self.ends_at = ends_at;
            }
            SessionEvent::Rotated { token_hash, expires_at, ends_at } => {
                if let Some(old) = self.current.replace(token_hash) {
                    self.previous.push(old);
                }
                self.expires_at = Some(expires_at);
                if ends_at.is_some() {
                    self.ends_at = ends_at;
                }
            }
            SessionEvent::Revoked { reason } => self.revoked = Some(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::SessionId;

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, h, 0, 0).single().expect("valid time")
    }

    fn h(s: &str) -> TokenHash {
        TokenHash(s.into())
    }

    fn started() -> SessionEvent {
        started_ending(Some(at(12)))
    }

    fn started_ending(ends_at: Option<DateTime<Utc>>) -> SessionEvent {
        SessionEvent::Started {
            tenant: TenantId::default(),
            session_id: SessionId::from_uuid(uuid::Uuid::from_u128(1)),
            user_id: UserId::from_uuid(uuid::Uuid::from_u128(2)),
            token_hash: h("a"),
            expires_at: at(10),
            epoch: 0,
            ends_at,
        }
    }

    fn rotate(presented: &str, next: &str, now: u32) -> SessionCommand {
        SessionCommand::Rotate { presented: h(presented), next: h(next), now: at(now), expires_at: at(20), ends_at: at(23), user_epoch: 0 }
    }

    fn framework() -> TestFramework<Session> {
        TestFramework::with(())
    }

    #[test]
    fn a_session_starts_once() {
        let SessionEvent::Started { tenant, session_id, user_id, token_hash, expires_at, epoch, ends_at } = started() else {
            unreachable!("started() builds a Started event")
        };
        let ends_at = ends_at.expect("started() has an end");
        let start = SessionCommand::Start { tenant, session_id, user_id, token_hash, expires_at, epoch, ends_at };
        framework().given_no_previous_events().when(start.clone()).then_expect_events(vec![started()]);
        framework().given(vec![started()]).when(start).then_expect_error(SessionError::AlreadyStarted);
    }

    #[test]
    fn the_current_token_rotates() {
        framework().given(vec![started()]).when(rotate("a", "b", 1)).then_expect_events(vec![SessionEvent::Rotated {
            token_hash: h("b"),
            expires_at: at(12),
            ends_at: None,
        }]);
    }

    #[test]
    fn rotation_never_moves_the_absolute_end() {
        let rotated = SessionEvent::Rotated { token_hash: h("b"), expires_at: at(12), ends_at: None };
        framework().given(vec![started(), rotated]).when(rotate("b", "c", 12)).then_expect_error(SessionError::Expired);
    }

    #[test]
    fn a_session_without_an_absolute_end_gets_one_at_its_first_rotation() {
        let legacy = started_ending(None);
        framework().given(vec![legacy]).when(rotate("a", "b", 1)).then_expect_events(vec![SessionEvent::Rotated {
            token_hash: h("b"),
            expires_at: at(20),
            ends_at: Some(at(23)),
        }]);
    }

    #[test]
    fn a_session_of_an_earlier_user_epoch_ends_at_its_next_rotation() {
        let command =
            SessionCommand::Rotate { presented: h("a"), next: h("b"), now: at(1), expires_at: at(20), ends_at: at(23), user_epoch: 1 };
        framework()
            .given(vec![started()])
            .when(command)
            .then_expect_events(vec![SessionEvent::Revoked { reason: RevocationReason::Ended }]);
    }

    #[test]
    fn presenting_a_rotated_token_revokes_the_family() {
        framework()
            .given(vec![started(), SessionEvent::Rotated { token_hash: h("b"), expires_at: at(12), ends_at: None }])
            .when(rotate("a", "c", 1))
            .then_expect_events(vec![SessionEvent::Revoked { reason: RevocationReason::ReuseDetected }]);
    }

    #[test]
    fn a_revoked_family_cannot_rotate() {
        framework()
            .given(vec![started(), SessionEvent::Revoked { reason: RevocationReason::Logout }])
            .when(rotate("a", "c", 1))
            .then_expect_error(SessionError::Revoked);
    }

    #[test]
    fn an_unknown_token_is_invalid() {
        framework().given(vec![started()]).when(rotate("zzz", "c", 1)).then_expect_error(SessionError::InvalidToken);
        framework().given_no_previous_events().when(rotate("a", "c", 1)).then_expect_error(SessionError::InvalidToken);
    }

    #[test]
    fn an_expired_token_cannot_rotate() {
        framework().given(vec![started()]).when(rotate("a", "b", 10)).then_expect_error(SessionError::Expired);
    }

    #[test]
    fn logout_revokes_the_current_token_once() {
        framework()
            .given(vec![started()])
            .when(SessionCommand::Revoke { presented: h("a") })
            .then_expect_events(vec![SessionEvent::Revoked { reason: RevocationReason::Logout }]);
        framework()
            .given(vec![started(), SessionEvent::Revoked { reason: RevocationReason::Logout }])
            .when(SessionCommand::Revoke { presented: h("a") })
            .then_expect_error(SessionError::Revoked);
        framework().given(vec![started()]).when(SessionCommand::Revoke { presented: h("x") }).then_expect_error(SessionError::InvalidToken);
    }
}
