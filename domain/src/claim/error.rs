#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClaimError {
    #[error("already claimed")]
    AlreadyClaimed,
    #[error("not held by that owner")]
    NotHeld,
}
