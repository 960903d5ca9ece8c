use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{Attributes, ProductCommand, ProductError, ProductEvent};
use crate::{CategoryPath, Description, Name, Price, ProductId, Sku, TenantId};

/// The descriptive part of a product, replaced as a whole by `DetailsUpdated`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductDetails {
    pub name: Name,
    pub description: Description,
    pub category: CategoryPath,
    pub attributes: Attributes,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// `None` until created.
    pub id: Option<ProductId>,
    pub tenant: TenantId,
    pub sku: Option<Sku>,
    pub details: Option<ProductDetails>,
    pub price: Option<Price>,
    pub published: bool,
    pub discontinued: bool,
}

impl Product {
    /// Only existing, not discontinued products may change.
    fn ensure_live(&self) -> Result<(), ProductError> {
        if self.id.is_none() {
            Err(ProductError::NotFound)
        } else if self.discontinued {
            Err(ProductError::Discontinued)
        } else {
            Ok(())
        }
    }
}

impl Aggregate for Product {
    const TYPE: &'static str = "product";
    type Command = ProductCommand;
    type Event = ProductEvent;
    type Error = ProductError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _services: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
        match command {
            ProductCommand::Create { tenant, product_id, sku, name, description, category, price, attributes } => {
                if self.id.is_some() {
                    return Err(ProductError::AlreadyExists);
                }
                let event = ProductEvent::Created { tenant, product_id, sku, name, description, category, price, attributes };
                sink.write(event, self).await;
            }
            ProductCommand::UpdateDetails { name, description, category, attributes } => {
                self.ensure_live()?;
                let current = self.details.clone().ok_or(ProductError::NotFound)?;
                let next = ProductDetails {
                    name: name.unwrap_or(current.name.clone()),
                    description: description.unwrap_or(current.description.clone()),
                    category: category.unwrap_or(current.category.clone()),
                    attributes: attributes.unwrap_or(current.attributes.clone()),
                };
                if next != current {
                    let ProductDetails { name, description, category, attributes } = next;
                    sink.write(ProductEvent::DetailsUpdated { name, description, category, attributes }, self).await;
                }
            }
            ProductCommand::ChangePrice { price } => {
                self.ensure_live()?;
                let previous = self.price.ok_or(ProductError::NotFound)?;
                if previous != price {
                    sink.write(ProductEvent::PriceChanged { previous, price }, self).await;
                }
            }
            ProductCommand::Publish => {
                self.ensure_live()?;
                if self.published {
                    return Err(ProductError::AlreadyPublished);
                }
                sink.write(ProductEvent::Published, self).await;
            }
            ProductCommand::Unpublish => {
                self.ensure_live()?;
                if !self.published {
                    return Err(ProductError::NotPublished);
                }
                sink.write(ProductEvent::Unpublished, self).await;
            }
            ProductCommand::Discontinue => {
                self.ensure_live()?;
                sink.write(ProductEvent::Discontinued, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ProductEvent::Created { tenant, product_id, sku, name, description, category, price, attributes } => {
                self.id = Some(product_id);
                self.tenant = tenant;
                self.sku = Some(sku);
                self.details = Some(ProductDetails { name, description, category, attributes });
                self.price = Some(price);
            }
            ProductEvent::DetailsUpdated { name, description, category, attributes } => {
                self.details = Some(ProductDetails { name, description, category, attributes });
            }
            ProductEvent::PriceChanged { price, .. } => self.price = Some(price),
            ProductEvent::Published => self.published = true,
            ProductEvent::Unpublished => self.published = false,
            ProductEvent::Discontinued => {
                self.discontinued = true;
                self.published = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::Money;

    fn price(amount: i64) -> Price {
        Price::try_from(Money::new(amount, "EUR".parse().expect("valid"))).expect("valid")
    }

    fn id() -> ProductId {
        ProductId::from_uuid(uuid::Uuid::from_u128(1))
    }

    fn create() -> ProductCommand {
        ProductCommand::Create {
            tenant: TenantId::default(),
            product_id: id(),
            sku: "PHONE-1".parse().expect("valid"),
            name: "Phone".parse().expect("valid"),
            description: "A phone".parse().expect("valid"),
            category: "electronics/phones".parse().expect("valid"),
            price: price(19_900),
            attributes: Attributes::from([("colour".into(), "black".into())]),
        }
    }

    fn created() -> ProductEvent {
        ProductEvent::Created {
            tenant: TenantId::default(),
            product_id: id(),
            sku: "PHONE-1".parse().expect("valid"),
            name: "Phone".parse().expect("valid"),
            description: "A phone".parse().expect("valid"),
            category: "electronics/phones".parse().expect("valid"),
            price: price(19_900),
            attributes: Attributes::from([("colour".into(), "black".into())]),
        }
    }

    fn framework() -> TestFramework<Product> {
        TestFramework::with(())
    }

    #[test]
    fn a_product_is_created_unpublished() {
        framework().given_no_previous_events().when(create()).then_expect_events(vec![created()]);
    }

    #[test]
    fn creating_a_product_twice_is_rejected() {
        framework().given(vec![created()]).when(create()).then_expect_error(ProductError::AlreadyExists);
    }

    #[test]
    fn updating_details_records_the_complete_details() {
        framework()
            .given(vec![created()])
            .when(ProductCommand::UpdateDetails {
                name: Some("Phone 2".parse().expect("valid")),
                description: None,
                category: None,
                attributes: None,
            })
            .then_expect_events(vec![ProductEvent::DetailsUpdated {
                name: "Phone 2".parse().expect("valid"),
                description: "A phone".parse().expect("valid"),
                category: "electronics/phones".parse().expect("valid"),
                attributes: Attributes::from([("colour".into(), "black".into())]),
            }]);
    }

    #[test]
    fn an_update_that_changes_nothing_records_nothing() {
        framework()
            .given(vec![created()])
            .when(ProductCommand::UpdateDetails { name: None, description: None, category: None, attributes: None })
            .then_expect_events(vec![]);
    }

    #[test]
    fn updating_an_unknown_product_is_rejected() {
        framework()
            .given_no_previous_events()
            .when(ProductCommand::UpdateDetails { name: None, description: None, category: None, attributes: None })
            .then_expect_error(ProductError::NotFound);
    }

    #[test]
    fn a_price_change_records_old_and_new_price() {
        framework()
            .given(vec![created()])
            .when(ProductCommand::ChangePrice { price: price(17_900) })
            .then_expect_events(vec![ProductEvent::PriceChanged { previous: price(19_900), price: price(17_900) }]);
    }

    #[test]
    fn setting_the_same_price_records_nothing() {
        framework().given(vec![created()]).when(ProductCommand::ChangePrice { price: price(19_900) }).then_expect_events(vec![]);
    }

    #[test]
    fn publishing_and_unpublishing_follow_each_other() {
        framework().given(vec![created()]).when(ProductCommand::Publish).then_expect_events(vec![ProductEvent::Published]);
        framework()
            .given(vec![created(), ProductEvent::Published])
            .when(ProductCommand::Unpublish)
            .then_expect_events(vec![ProductEvent::Unpublished]);
    }

    #[test]
    fn publishing_twice_is_rejected() {
        framework()
            .given(vec![created(), ProductEvent::Published])
            .when(ProductCommand::Publish)
            .then_expect_error(ProductError::AlreadyPublished);
    }

    #[test]
    fn unpublishing_an_unpublished_product_is_rejected() {
        framework().given(vec![created()]).when(ProductCommand::Unpublish).then_expect_error(ProductError::NotPublished);
    }

    #[test]
    fn a_discontinued_product_cannot_change() {
        framework().given(vec![created()]).when(ProductCommand::Discontinue).then_expect_events(vec![ProductEvent::Discontinued]);
        framework()
            .given(vec![created(), ProductEvent::Discontinued])
            .when(ProductCommand::ChangePrice { price: price(1) })
            .then_expect_error(ProductError::Discontinued);
        framework()
            .given(vec![created(), ProductEvent::Discontinued])
            .when(ProductCommand::Publish)
            .then_expect_error(ProductError::Discontinued);
    }
}
