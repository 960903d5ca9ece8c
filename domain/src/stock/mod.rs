//! Stock of one SKU: units on hand and reservations per order. `on_hand − reserved ≥ 0` and
//! `on_hand ≥ 0` hold after every event.

mod aggregate;
mod commands;
mod error;
mod events;

pub use aggregate::*;
pub use commands::*;
pub use error::*;
pub use events::*;
