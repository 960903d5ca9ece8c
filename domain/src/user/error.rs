#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UserError {
    #[error("user already registered")]
    AlreadyRegistered,
    #[error("user not found")]
    NotFound,
    #[error("user is deactivated")]
    Deactivated,
    #[error("user was erased")]
    Erased,
    #[error("current password is wrong")]
    WrongPassword,
    #[error("password reset token is invalid or already used")]
    ResetTokenInvalid,
    #[error("password reset token has expired")]
    ResetTokenExpired,
    #[error("a user needs at least one role")]
    NoRoles,
    #[error("too many password resets requested in the last hour")]
    TooManyResets,
    #[error("SMS needs a phone number on the profile first")]
    NoPhone,
    #[error("password hashing is unavailable")]
    HashingUnavailable,
}

impl From<super::HashingUnavailable> for UserError {
    fn from(_: super::HashingUnavailable) -> Self {
        UserError::HashingUnavailable
    }
}
