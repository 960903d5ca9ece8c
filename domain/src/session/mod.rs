//! A refresh-token family: one login and every rotation of its refresh token. Presenting a
//! token that was already rotated away means it leaked, so the whole family is revoked
//! (OAuth 2.0 Security BCP, refresh-token rotation).

mod aggregate;
mod commands;
mod error;
mod events;

pub use aggregate::*;
pub use commands::*;
pub use error::*;
pub use events::*;
