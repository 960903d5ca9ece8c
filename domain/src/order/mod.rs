//! An order: placed with its lines priced from the catalogue, then moved through its life by
//! the order saga (stock, payment, confirmation) and by people (cancel, ship, deliver, refund).
//! `Status` is a state machine: every command is legal from some statuses only, and any other
//! is refused with [`OrderError::IllegalTransition`], recording nothing.

mod aggregate;
mod commands;
mod error;
mod events;
mod invoice;

pub use aggregate::*;
pub use commands::*;
pub use error::*;
pub use events::*;
pub use invoice::*;

/// The longest carrier name or tracking number a shipment takes (characters), so that the
/// shipped SMS fits its 320 characters (the API's message says 64 too).
pub const SHIPMENT_TEXT_MAX: usize = 64;
