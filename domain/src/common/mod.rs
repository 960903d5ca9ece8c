//! Value types shared by every aggregate. Each is parsed once at the edge (parse, don't
//! validate): holding one means it is valid.

mod clock;
mod ids;
mod money;
mod quantity;
mod text;

pub use clock::*;
pub use ids::*;
pub use money::*;
pub use quantity::*;
pub use text::*;

/// Why a raw value could not become a domain value; the API maps it to a 422.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct InvalidValue {
    /// The field as the client named it, e.g. `email` or `price.currency`.
    pub field: &'static str,
    /// A short, lowercase explanation safe to show to the client.
    pub reason: &'static str,
}

impl InvalidValue {
    pub fn new(field: &'static str, reason: &'static str) -> Self {
        Self { field, reason }
    }
}
