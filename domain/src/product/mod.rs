//! A catalogue product. Its SKU is claimed (see [`crate::claim`]) in the same write that
//! creates it, and its stock lives in the [`crate::stock`] aggregate of that SKU.

mod aggregate;
mod commands;
mod error;
mod events;

pub use aggregate::*;
pub use commands::*;
pub use error::*;
pub use events::*;
