use cqrs_es::DomainEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Attributes;
use crate::{CategoryPath, Description, Name, Price, ProductId, Sku, TenantId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProductEvent {
    Created {
        tenant: TenantId,
        product_id: ProductId,
        sku: Sku,
        name: Name,
        description: Description,
        category: CategoryPath,
        price: Price,
        attributes: Attributes,
    },
    /// Carries the complete details after the change, so views need no earlier state.
    DetailsUpdated {
        name: Name,
        description: Description,
        category: CategoryPath,
        attributes: Attributes,
    },
    PriceChanged {
        previous: Price,
        price: Price,
    },
    Published,
    Unpublished,
    Discontinued,
}

impl DomainEvent for ProductEvent {
    fn event_type(&self) -> String {
        match self {
            ProductEvent::Created { .. } => "created",
            ProductEvent::DetailsUpdated { .. } => "details_updated",
            ProductEvent::PriceChanged { .. } => "price_changed",
            ProductEvent::Published => "published",
            ProductEvent::Unpublished => "unpublished",
            ProductEvent::Discontinued => "discontinued",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
