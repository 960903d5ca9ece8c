use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{ClaimCommand, ClaimError, ClaimEvent, ClaimKind};
use crate::TenantId;

/// A natural key and, once claimed, its owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Claim<K: ClaimKind> {
    /// The owner: set by `Claimed`, cleared by `Released`.
    pub owner: Option<K::Owner>,
    pub tenant: Option<TenantId>,
}

impl<K: ClaimKind> Default for Claim<K> {
    fn default() -> Self {
        Self { owner: None, tenant: None }
    }
}

impl<K: ClaimKind> Aggregate for Claim<K> {
    const TYPE: &'static str = K::TYPE;
    type Command = ClaimCommand<K>;
    type Event = ClaimEvent<K>;
    type Error = ClaimError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _services: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
        match command {
            ClaimCommand::Claim { tenant, key, owner } => {
                if self.owner.is_some() {
                    return Err(ClaimError::AlreadyClaimed);
                }
                sink.write(ClaimEvent::Claimed { tenant, key, owner }, self).await;
                Ok(())
            }
            ClaimCommand::Release { owner } => {
                if self.owner != Some(owner) {
                    return Err(ClaimError::NotHeld);
                }
                sink.write(ClaimEvent::Released { owner }, self).await;
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ClaimEvent::Claimed { tenant, owner, .. } => {
                self.owner = Some(owner);
                self.tenant = Some(tenant);
            }
            ClaimEvent::Released { .. } => self.owner = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::claim::{EmailClaim, SkuClaim};
    use crate::{ProductId, UserId};

    fn claimed_email(owner: UserId) -> ClaimEvent<crate::claim::EmailKind> {
        ClaimEvent::Claimed { tenant: TenantId::default(), key: "ada@example.com".parse().expect("valid"), owner }
    }

    #[test]
    fn an_unclaimed_email_can_be_claimed() {
        let owner = UserId::new();
        TestFramework::<EmailClaim>::with(())
            .given_no_previous_events()
            .when(ClaimCommand::Claim { tenant: TenantId::default(), key: "ada@example.com".parse().expect("valid"), owner })
            .then_expect_events(vec![claimed_email(owner)]);
    }

    #[test]
    fn a_claimed_email_cannot_be_claimed_again() {
        TestFramework::<EmailClaim>::with(())
            .given(vec![claimed_email(UserId::new())])
            .when(ClaimCommand::Claim { tenant: TenantId::default(), key: "ada@example.com".parse().expect("valid"), owner: UserId::new() })
            .then_expect_error(ClaimError::AlreadyClaimed);
    }

    #[test]
    fn only_its_owner_releases_a_claim_and_then_it_can_be_claimed_again() {
        let (ada, bob) = (UserId::new(), UserId::new());
        TestFramework::<EmailClaim>::with(())
            .given(vec![claimed_email(ada)])
            .when(ClaimCommand::Release { owner: bob })
            .then_expect_error(ClaimError::NotHeld);
        TestFramework::<EmailClaim>::with(())
            .given(vec![claimed_email(ada)])
            .when(ClaimCommand::Release { owner: ada })
            .then_expect_events(vec![ClaimEvent::Released { owner: ada }]);
        TestFramework::<EmailClaim>::with(())
            .given(vec![claimed_email(ada), ClaimEvent::Released { owner: ada }])
            .when(ClaimCommand::Claim { tenant: TenantId::default(), key: "ada@example.com".parse().expect("valid"), owner: bob })
            .then_expect_events(vec![claimed_email(bob)]);
    }

    #[test]
    fn a_claimed_sku_cannot_be_claimed_again() {
        let sku: crate::Sku = "SKU-1".parse().expect("valid");
        TestFramework::<SkuClaim>::with(())
            .given(vec![ClaimEvent::Claimed { tenant: TenantId::default(), key: sku.clone(), owner: ProductId::new() }])
            .when(ClaimCommand::Claim { tenant: TenantId::default(), key: sku, owner: ProductId::new() })
            .then_expect_error(ClaimError::AlreadyClaimed);
    }
}
