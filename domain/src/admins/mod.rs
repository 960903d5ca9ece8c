//! The admins of a tenant, as one stream: a demotion or deactivation of an admin commits
//! together with this roster, so two admins demoting each other at the same moment cannot leave
//! a tenant with none (the second commit conflicts, runs again and is refused).

use std::collections::BTreeSet;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::UserId;

/// The stream id of a tenant's roster, within the tenant (`stream_id(tenant, ROSTER)`).
pub const ROSTER: &str = "admins";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AdminRoster {
    /// Active admins the roster knows of.
    pub members: BTreeSet<UserId>,
    /// Users whose admin role the roster took away; they cannot act as admins.
    pub removed: BTreeSet<UserId>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AdminRosterCommand {
    /// `user` became an admin (registered as one, or granted the role).
    Enroll { user: UserId },
    /// `actor`, an admin, takes the admin role from `user` (a demotion or a deactivation).
    /// Admins from before the roster existed join it when they act or are acted on.
    Remove { user: UserId, actor: UserId },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AdminRosterEvent {
    Enrolled { user: UserId },
    Removed { user: UserId },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdminRosterError {
    #[error("the last active admin of a tenant cannot be demoted or deactivated")]
    LastAdmin,
    #[error("the acting user is no longer an admin")]
    ActorNotAdmin,
}

impl DomainEvent for AdminRosterEvent {
    fn event_type(&self) -> String {
        match self {
            AdminRosterEvent::Enrolled { .. } => "enrolled",
            AdminRosterEvent::Removed { .. } => "removed",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl Aggregate for AdminRoster {
    const TYPE: &'static str = "admin_roster";
    type Command = AdminRosterCommand;
    type Event = AdminRosterEvent;
    type Error = AdminRosterError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &(), sink: &EventSink<Self>) -> Result<(), Self::Error> {
        match command {
            AdminRosterCommand::Enroll { user } => {
                if !self.members.contains(&user) {
                    sink.write(AdminRosterEvent::Enrolled { user }, self).await;
                }
            }
            AdminRosterCommand::Remove { user, actor } => {
                if self.removed.contains(&actor) && !self.members.contains(&actor) {
                    return Err(AdminRosterError::ActorNotAdmin);
                }
                let mut after = self.members.clone();
                after.insert(actor);
                let known = self.members.contains(&user) || !self.removed.contains(&user);
                after.remove(&user);
                if after.is_empty() {
                    return Err(AdminRosterError::LastAdmin);
                }
                if !self.members.contains(&actor) {
                    sink.write(AdminRosterEvent::Enrolled { user: actor }, self).await;
                }
                if known {
                    sink.write(AdminRosterEvent::Removed { user }, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            AdminRosterEvent::Enrolled { user } => {
                self.removed.remove(&user);
                self.members.insert(user);
            }
            AdminRosterEvent::Removed { user } => {
                self.members.remove(&user);
                self.removed.insert(user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    fn u(n: u128) -> UserId {
        UserId::from_uuid(uuid::Uuid::from_u128(n))
    }

    fn framework() -> TestFramework<AdminRoster> {
        TestFramework::with(())
    }

    #[test]
    fn an_admin_removes_another() {
        framework()
            .given(vec![AdminRosterEvent::Enrolled { user: u(1) }, AdminRosterEvent::Enrolled { user: u(2) }])
            .when(AdminRosterCommand::Remove { user: u(2), actor: u(1) })
            .then_expect_events(vec![AdminRosterEvent::Removed { user: u(2) }]);
    }

    #[test]
    fn the_last_admin_stays() {
        framework()
            .given(vec![AdminRosterEvent::Enrolled { user: u(1) }])
            .when(AdminRosterCommand::Remove { user: u(1), actor: u(1) })
            .then_expect_error(AdminRosterError::LastAdmin);
    }

    #[test]
    fn a_removed_admin_cannot_remove_the_other() {
        // Two admins demoting each other: whichever commits second acts as a removed admin.
        framework()
            .given(vec![
                AdminRosterEvent::Enrolled { user: u(1) },
                AdminRosterEvent::Enrolled { user: u(2) },
                AdminRosterEvent::Removed { user: u(2) },
            ])
            .when(AdminRosterCommand::Remove { user: u(1), actor: u(2) })
            .then_expect_error(AdminRosterError::ActorNotAdmin);
    }

    #[test]
    fn admins_from_before_the_roster_join_it_when_they_act() {
        framework()
            .given_no_previous_events()
            .when(AdminRosterCommand::Remove { user: u(2), actor: u(1) })
            .then_expect_events(vec![AdminRosterEvent::Enrolled { user: u(1) }, AdminRosterEvent::Removed { user: u(2) }]);
    }

    #[test]
    fn enrolling_twice_records_once() {
        framework()
            .given(vec![AdminRosterEvent::Enrolled { user: u(1) }])
            .when(AdminRosterCommand::Enroll { user: u(1) })
            .then_expect_events(vec![]);
    }
}
