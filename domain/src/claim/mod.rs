//! Claims make a natural key (an e-mail address, a SKU) unique within a tenant.
//!
//! A claim is an aggregate whose stream id is the key itself. The first `Claimed` event is
//! sequence 1, and the event store accepts only one sequence 1 per stream: of two concurrent
//! registrations with one e-mail, exactly one append succeeds, whatever the timing. The claim is
//! appended in the same atomic write as the aggregate that owns it, so neither exists without
//! the other.

mod aggregate;
mod commands;
mod error;
mod events;

pub use aggregate::*;
pub use commands::*;
pub use error::*;
pub use events::*;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

use crate::{Email, ProductId, Sku, UserId};

/// What is being claimed and who owns it once claimed. Its `JsonSchema` only names the kind's
/// events (`EmailClaimEvent`, `SkuClaimEvent`): a kind itself is never written.
pub trait ClaimKind: Clone + Debug + Default + PartialEq + JsonSchema + Send + Sync + 'static {
    /// The aggregate type name in the event store.
    const TYPE: &'static str;
    type Key: Clone + Debug + PartialEq + Serialize + DeserializeOwned + JsonSchema + Send + Sync;
    type Owner: Clone + Copy + Debug + PartialEq + Serialize + DeserializeOwned + JsonSchema + Send + Sync;
}

/// E-mail addresses, owned by users.
#[derive(Debug, Clone, Default, PartialEq, JsonSchema)]
#[schemars(rename = "EmailClaim")]
pub struct EmailKind;

impl ClaimKind for EmailKind {
    const TYPE: &'static str = "email_claim";
    type Key = Email;
    type Owner = UserId;
}

/// SKUs, owned by products.
#[derive(Debug, Clone, Default, PartialEq, JsonSchema)]
#[schemars(rename = "SkuClaim")]
pub struct SkuKind;

impl ClaimKind for SkuKind {
    const TYPE: &'static str = "sku_claim";
    type Key = Sku;
    type Owner = ProductId;
}

pub type EmailClaim = Claim<EmailKind>;
pub type SkuClaim = Claim<SkuKind>;
