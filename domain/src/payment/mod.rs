//! Declared so that ids, topics and stores know the type; the ordering work gives it
//! commands, events and rules. It accepts no command yet and records no event.

mod aggregate;

pub use aggregate::*;
