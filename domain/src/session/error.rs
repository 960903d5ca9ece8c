#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SessionError {
    #[error("session already started")]
    AlreadyStarted,
    #[error("refresh token is invalid")]
    InvalidToken,
    #[error("refresh token has expired")]
    Expired,
    #[error("session is revoked")]
    Revoked,
    #[error("session ended: the password, roles or status of its user changed")]
    Ended,
}
