use std::collections::BTreeMap;

use crate::{CategoryPath, Description, Name, Price, ProductId, Sku, TenantId};

/// Free-form product attributes (colour, size, ...), names to string values.
pub type Attributes = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq)]
pub enum ProductCommand {
    Create {
        tenant: TenantId,
        product_id: ProductId,
        sku: Sku,
        name: Name,
        description: Description,
        category: CategoryPath,
        price: Price,
        attributes: Attributes,
    },
    /// Change any of the descriptive fields; `None` leaves a field as it is.
    UpdateDetails {
        name: Option<Name>,
        description: Option<Description>,
        category: Option<CategoryPath>,
        attributes: Option<Attributes>,
    },
    ChangePrice {
        price: Price,
    },
    Publish,
    Unpublish,
    /// Take the product off sale for good; its SKU stays claimed.
    Discontinue,
}
