use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::InvalidValue;

/// A positive number of units, at most one million per command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "i64", into = "i64")]
#[schemars(extend("minimum" = 1, "maximum" = Quantity::MAX))]
pub struct Quantity(#[schemars(with = "i64")] u32);

impl Quantity {
    pub const MAX: i64 = 1_000_000;

    pub fn get(&self) -> i64 {
        i64::from(self.0)
    }
}

impl TryFrom<i64> for Quantity {
    type Error = InvalidValue;

    fn try_from(n: i64) -> Result<Self, Self::Error> {
        if (1..=Self::MAX).contains(&n) {
            // In range 1..=1_000_000, so it fits.
            Ok(Self(n as u32))
        } else {
            Err(InvalidValue::new("quantity", "must be between 1 and 1000000"))
        }
    }
}

impl From<Quantity> for i64 {
    fn from(q: Quantity) -> Self {
        q.get()
    }
}

/// A non-zero change of stock on hand, at most one million either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "i64", into = "i64")]
#[schemars(extend("minimum" = -Quantity::MAX, "maximum" = Quantity::MAX, "not" = { "const": 0 }))]
pub struct QuantityDelta(i64);

impl QuantityDelta {
    pub fn get(&self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for QuantityDelta {
    type Error = InvalidValue;

    fn try_from(n: i64) -> Result<Self, Self::Error> {
        if n != 0 && n.abs() <= Quantity::MAX {
            Ok(Self(n))
        } else {
            Err(InvalidValue::new("quantity_delta", "must be non-zero and at most 1000000 either way"))
        }
    }
}

impl From<QuantityDelta> for i64 {
    fn from(q: QuantityDelta) -> Self {
        q.0
    }
}
