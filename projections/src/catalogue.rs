use std::collections::BTreeMap;

use async_trait::async_trait;
use domain::product::{Attributes, ProductEvent};
use sqlx::{Any, Transaction};
use store::LogEvent;

use crate::projection::{rows_per_statement, values};
use crate::{split_stream_id, Projection, ProjectionError};

/// The product catalogue: one row per product with everything the listing, filters and
/// detail pages need.
pub struct Catalogue;

fn featured(attributes: &Attributes) -> i64 {
    i64::from(attributes.get("featured").is_some_and(|v| v == "true"))
}

/// The descriptive columns, replaced together by `DetailsUpdated`.
struct Details {
    name: String,
    description: String,
    category: String,
    attributes: String,
    featured: i64,
}

impl Details {
    fn new(name: &str, description: &str, category: &str, attributes: &Attributes) -> Result<Self, ProjectionError> {
        Ok(Self {
            name: name.to_owned(),
            description: description.to_owned(),
            category: category.to_owned(),
            attributes: serde_json::to_string(attributes)?,
            featured: featured(attributes),
        })
    }
}

/// What a batch does to one product: a whole new row, or changes to a stored one.
#[derive(Default)]
struct Change {
    /// Set when the product was created in this batch (`sku`, `created_position`).
    created: Option<(String, i64)>,
    details: Option<Details>,
    price: Option<(i64, String)>,
    published: Option<i64>,
    discontinued: Option<i64>,
    version: i64,
}

const COLUMNS: &str = "tenant, product_id, sku, name, name_key, description, category, price_amount, price_currency, \
                       attributes, published, featured, discontinued, created_position, version";

#[async_trait]
impl Projection for Catalogue {
    fn name(&self) -> &'static str {
        "catalogue"
    }

    fn handles(&self, aggregate_type: &str) -> bool {
        aggregate_type == "product"
    }

    fn table(&self) -> &'static str {
        "rm_products"
    }

    async fn apply(&self, tx: &mut Transaction<'static, Any>, table: &str, events: &[&LogEvent]) -> Result<(), ProjectionError> {
        let mut changes: BTreeMap<(&str, &str), Change> = BTreeMap::new();
        for e in events {
            let change = changes.entry(split_stream_id(&e.aggregate_id)?).or_default();
            match crate::projection::payload(e)? {
                ProductEvent::Created { sku, name, description, category, price, attributes, .. } => {
                    *change = Change {
                        created: Some((sku.to_string(), e.cursor.position)),
                        details: Some(Details::new(name.as_str(), description.as_str(), category.as_str(), &attributes)?),
                        price: Some((price.money().amount, price.money().currency.to_string())),
                        published: Some(0),
                        discontinued: Some(0),
                        version: 0,
                    };
                }
                ProductEvent::DetailsUpdated { name, description, category, attributes } => {
                    change.details = Some(Details::new(name.as_str(), description.as_str(), category.as_str(), &attributes)?);
                }
                ProductEvent::PriceChanged { price, .. } => {
                    change.price = Some((price.money().amount, price.money().currency.to_string()));
                }
                ProductEvent::Published => change.published = Some(1),
                ProductEvent::Unpublished => change.published = Some(0),
                ProductEvent::Discontinued => {
                    change.published = Some(0);
                    change.discontinued = Some(1);
                }
            }
            change.version = e.sequence;
        }
        let (created, changed): (Vec<_>, Vec<_>) = changes.into_iter().partition(|(_, c)| c.created.is_some());
        for chunk in created.chunks(rows_per_statement(15)) {
            let sql = format!(
                "INSERT INTO {table} ({COLUMNS}) VALUES {} ON CONFLICT (tenant, product_id) DO UPDATE SET \
                 sku = excluded.sku, name = excluded.name, name_key = excluded.name_key, description = excluded.description, \
                 category = excluded.category, price_amount = excluded.price_amount, price_currency = excluded.price_currency, \
                 attributes = excluded.attributes, published = excluded.published, featured = excluded.featured, \
                 discontinued = excluded.discontinued, created_position = excluded.created_position, version = excluded.version",
                values(chunk.len(), 15)
            );
            let mut query = sqlx::query(&sql);
            for ((tenant, id), c) in chunk {
                let (Some((sku, created_position)), Some(d), Some((amount, currency))) = (&c.created, &c.details, &c.price) else {
                    return Err(ProjectionError::Malformed(format!("product {id} created without details")));
                };
                query = query
                    .bind(*tenant)
                    .bind(*id)
                    .bind(sku.clone())
                    .bind(d.name.clone())
                    .bind(d.name.to_lowercase())
                    .bind(d.description.clone())
                    .bind(d.category.clone())
                    .bind(*amount)
                    .bind(currency.clone())
                    .bind(d.attributes.clone())
                    .bind(c.published.unwrap_or(0))
                    .bind(d.featured)
                    .bind(c.discontinued.unwrap_or(0))
                    .bind(*created_position)
                    .bind(c.version);
            }
            query.execute(&mut **tx).await?;
        }
        // Products changed the same way (the same columns) share one UPDATE … FROM (VALUES …).
        let mut groups: BTreeMap<(bool, bool, bool, bool), Vec<((&str, &str), Change)>> = BTreeMap::new();
        for (key, c) in changed {
            let shape = (c.details.is_some(), c.price.is_some(), c.published.is_some(), c.discontinued.is_some());
            groups.entry(shape).or_default().push((key, c));
        }
        for ((details, price, published, discontinued), rows) in groups {
            let mut columns = vec!["version"];
            if details {
                columns.extend(["name", "name_key", "description", "category", "attributes", "featured"]);
            }
            if price {
                columns.extend(["price_amount", "price_currency"]);
            }
            if published {
                columns.push("published");
            }
            if discontinued {
                columns.push("discontinued");
            }
            // VALUES columns are column1, column2, … in both PostgreSQL and SQLite.
            let sets: Vec<String> = columns.iter().enumerate().map(|(i, c)| format!("{c} = v.column{}", i + 3)).collect();
            let width = columns.len() + 2;
            for chunk in rows.chunks(rows_per_statement(width)) {
                let sql = format!(
                    "UPDATE {table} AS t SET {} FROM (VALUES {}) AS v WHERE t.tenant = v.column1 AND t.product_id = v.column2",
                    sets.join(", "),
                    values(chunk.len(), width)
                );
                let mut query = sqlx::query(&sql);
                for ((tenant, id), c) in chunk {
                    query = query.bind(*tenant).bind(*id).bind(c.version);
                    if let Some(d) = &c.details {
                        query = query
                            .bind(d.name.clone())
                            .bind(d.name.to_lowercase())
                            .bind(d.description.clone())
                            .bind(d.category.clone())
                            .bind(d.attributes.clone())
                            .bind(d.featured);
                    }
                    if let Some((amount, currency)) = &c.price {
                        query = query.bind(*amount).bind(currency.clone());
                    }
                    if let Some(p) = c.published {
                        query = query.bind(p);
                    }
                    if let Some(d) = c.discontinued {
                        query = query.bind(d);
                    }
                }
                query.execute(&mut **tx).await?;
            }
        }
        Ok(())
    }
}
