use super::ClaimKind;
use crate::TenantId;

#[derive(Debug, Clone, PartialEq)]
pub enum ClaimCommand<K: ClaimKind> {
    /// Take the key for `owner`; fails if anybody (including `owner`) already holds it.
    Claim { tenant: TenantId, key: K::Key, owner: K::Owner },
    /// Give the key up (an erased user's e-mail address); only its owner holds it to give.
    Release { owner: K::Owner },
}
