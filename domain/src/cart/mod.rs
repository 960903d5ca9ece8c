//! A shopping cart: lines keyed by SKU, priced from the catalogue, with at most one discount
//! code, for a guest (who holds an unguessable token whose hash the cart keeps) or for a
//! signed-in customer (who has one active cart, found through [`CustomerCarts`]).
//!
//! Prices never go stale silently: every change carries a [`Pricing`] (the catalogue's offer
//! for each SKU and the code's current terms) and the cart records what moved
//! (`line_repriced`, `line_unavailable`, `discount_applied` / `discount_removed`). Checkout
//! refuses a cart whose prices moved since they were shown ([`CartError::Changed`]) and is one
//! atomic append with the order it places and the code's redemption, so a cart yields at most
//! one order.

mod aggregate;
mod commands;
mod customer;
mod error;
mod events;

pub use aggregate::*;
pub use commands::*;
pub use customer::*;
pub use error::*;
pub use events::*;

/// Lines per cart.
pub const MAX_LINES: usize = 100;
/// Units per line.
pub const MAX_QUANTITY: i64 = 1_000;
