//! A customer or an administrator of one tenant.

mod aggregate;
mod commands;
mod error;
mod events;
mod services;

pub use aggregate::*;
pub use commands::*;
pub use error::*;
pub use events::*;
pub use services::*;
