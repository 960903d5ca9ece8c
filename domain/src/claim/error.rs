#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClaimError {
    #[error("already claimed")]
    AlreadyClaimed,
}
