//! A discount code (one aggregate per code and tenant, keyed by the code, so a code is unique
//! through the store's key): its terms, its usage limits and every redemption.
//!
//! A cart shows what a code would take off ([`Terms::discount`]); checkout redeems it in the
//! same atomic append that places the order, so the limits hold under any concurrency: two
//! checkouts that both saw one use left cannot both commit, because both append to this
//! stream at the same version. A cancelled order gives its redemption back.

mod aggregate;
mod commands;
mod error;
mod events;

pub use aggregate::*;
pub use commands::*;
pub use error::*;
pub use events::*;
