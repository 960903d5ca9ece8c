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
