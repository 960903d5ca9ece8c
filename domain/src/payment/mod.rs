//! A payment for one order: authorisation, capture, void and refunds. The gateway is called
//! by the saga between commands (`services.rs`), never while this aggregate is held; the
//! aggregate records what was asked and what the gateway answered.

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
