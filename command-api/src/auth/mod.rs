//! Authentication: argon2id passwords, short-lived JWT access tokens, rotating refresh tokens
//! with reuse detection, password resets, and a limit on failed logins.

pub mod browser;
mod limiter;
mod password;
mod routes;
mod tokens;

pub use http_kit::{Claims, JwtKeys, Secret};
pub use limiter::*;
pub use password::*;
pub use routes::{registration, tokens, RegisterRequest, Registration};
pub(crate) use routes::{start_session, TokenResponse};
pub use tokens::*;
