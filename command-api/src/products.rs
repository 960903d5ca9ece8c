//! Catalogue management (admin): create, edit, price, publish, discontinue.

use std::collections::BTreeMap;

use aide::axum::routing::{patch_with, post_with, put_with};
use aide::axum::ApiRouter;
use axum::extract::State;
use axum::Json;
use domain::claim::{ClaimCommand, SkuKind};
use domain::product::{Attributes, ProductCommand};
use domain::{stream_id, CategoryPath, Description, InvalidValue, Money, Name, Price, ProductId, Sku};
use serde::Deserialize;
use store::{commit, retry_on_conflict};

use crate::{AppState, CommandAccepted};
use http_kit::error::sku_taken;
use http_kit::ApiError;
use http_kit::{Admin, AppJson, Created, ErrorCode, Id, IfMatch, Problems, RequestMeta};
use schemars::JsonSchema;

pub fn router() -> ApiRouter<AppState> {
    use ErrorCode::*;
    let rules = [ProductDiscontinued, VersionConflict];
    ApiRouter::new()
        .api_route(
            "/products",
            post_with(create, |op| {
                op.describe("create_product", "products", "Create a product under a new SKU.").problems(&[SkuTaken, VersionConflict])
            }),
        )
        .api_route(
            "/products/{id}",
            patch_with(update, |op| {
                op.describe("update_product", "products", "Change a product's name, description, category or attributes.").problems(&rules)
            })
            .delete_with(discontinue, |op| op.describe("discontinue_product", "products", "Discontinue a product.").problems(&rules)),
        )
        .api_route(
            "/products/{id}/price",
            put_with(change_price, |op| op.describe("change_product_price", "products", "Change a product's price.").problems(&rules)),
        )
        .api_route(
            "/products/{id}/publish",
            post_with(publish, |op| {
                op.describe("publish_product", "products", "Publish a product: it shows in the catalogue and can be ordered.").problems(&[
                    AlreadyPublished,
                    ProductDiscontinued,
                    VersionConflict,
                ])
            }),
        )
        .api_route(
            "/products/{id}/unpublish",
            post_with(unpublish, |op| {
                op.describe("unpublish_product", "products", "Take a product out of the catalogue.").problems(&[
                    NotPublished,
                    ProductDiscontinued,
                    VersionConflict,
                ])
            }),
        )
}

/// `{amount, currency}` with `amount` in minor units.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceBody {
    pub amount: i64,
    pub currency: String,
}

impl TryFrom<PriceBody> for Price {
    type Error = InvalidValue;

    fn try_from(p: PriceBody) -> Result<Self, Self::Error> {
        let currency = p.currency.parse().map_err(|_| InvalidValue::new("price.currency", "not an iso 4217 currency code"))?;
        Price::try_from(Money::new(p.amount, currency))
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    sku: String,
    name: String,
    #[serde(default)]
    description: String,
    category: String,
    price: PriceBody,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

struct NewProduct {
    sku: Sku,
    name: Name,
    description: Description,
    category: CategoryPath,
    price: Price,
    attributes: Attributes,
}

fn parse_attributes(attributes: BTreeMap<String, String>) -> Result<Attributes, InvalidValue> {
    let ok = attributes.len() <= 100 && attributes.iter().all(|(k, v)| !k.trim().is_empty() && k.len() <= 100 && v.len() <= 1000);
    if ok {
        Ok(attributes)
    } else {
        Err(InvalidValue::new("attributes", "at most 100 attributes with non-empty names"))
    }
}

impl TryFrom<CreateRequest> for NewProduct {
    type Error = InvalidValue;

    fn try_from(r: CreateRequest) -> Result<Self, Self::Error> {
        Ok(Self {
            sku: r.sku.parse()?,
            name: r.name.parse()?,
            description: r.description.parse()?,
            category: r.category.parse()?,
            price: r.price.try_into()?,
            attributes: parse_attributes(r.attributes)?,
        })
    }
}

/// Claims the SKU and creates the product in one atomic append.
async fn create(
    State(state): State<AppState>,
    Admin(admin): Admin,
    meta: RequestMeta,
    AppJson(req): AppJson<CreateRequest>,
) -> Result<Created<CommandAccepted>, ApiError> {
    let p = NewProduct::try_from(req)?;
    let tenant = &admin.tenant;
    let product_id = ProductId::new();
    let metadata = meta.metadata(tenant, Some(admin.user_id));
    let (claim_stream, product_stream) = (stream_id(tenant, &p.sku), stream_id(tenant, product_id));
    let done = retry_on_conflict("product", || async {
        let claim = ClaimCommand::<SkuKind>::Claim { tenant: tenant.clone(), key: p.sku.clone(), owner: product_id };
        let mut claim = state.skus.prepare(&claim_stream, claim, None).await.map_err(|e| e.map_domain(sku_taken))?;
        let create = ProductCommand::Create {
            tenant: tenant.clone(),
            product_id,
            sku: p.sku.clone(),
            name: p.name.clone(),
            description: p.description.clone(),
            category: p.category.clone(),
            price: p.price,
            attributes: p.attributes.clone(),
        };
        let mut product = state.products.prepare(&product_stream, create, None).await.map_err(|e| e.map_domain(ApiError::from))?;
        commit(&state.store, &metadata, &mut [&mut claim, &mut product]).await?;
        claim.finish().await;
        Ok(product.finish().await)
    })
    .await
    .map_err(ApiError::from)?;
    Ok(Created(CommandAccepted::new(product_id, &done)))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct UpdateRequest {
    name: Option<String>,
    description: Option<String>,
    category: Option<String>,
    attributes: Option<BTreeMap<String, String>>,
}

impl TryFrom<UpdateRequest> for ProductCommand {
    type Error = InvalidValue;

    fn try_from(r: UpdateRequest) -> Result<Self, Self::Error> {
        Ok(ProductCommand::UpdateDetails {
            name: r.name.map(|s| s.parse()).transpose()?,
            description: r.description.map(|s| s.parse()).transpose()?,
            category: r.category.map(|s| s.parse()).transpose()?,
            attributes: r.attributes.map(parse_attributes).transpose()?,
        })
    }
}

async fn update(
    State(state): State<AppState>,
    admin: Admin,
    Id(id): Id<ProductId>,
    meta: RequestMeta,
    if_match: IfMatch,
    AppJson(req): AppJson<UpdateRequest>,
) -> Result<Json<CommandAccepted>, ApiError> {
    run(&state, &admin, id, req.try_into()?, if_match, &meta).await
}

async fn change_price(
    State(state): State<AppState>,
    admin: Admin,
    Id(id): Id<ProductId>,
    meta: RequestMeta,
    if_match: IfMatch,
    AppJson(req): AppJson<PriceBody>,
) -> Result<Json<CommandAccepted>, ApiError> {
    let price = Price::try_from(req)?;
    run(&state, &admin, id, ProductCommand::ChangePrice { price }, if_match, &meta).await
}

/// Handlers of the commands without a body.
macro_rules! transitions {
    ($($(#[$doc:meta])* $name:ident => $command:expr;)*) => {
        $(
            $(#[$doc])*
            async fn $name(
                State(state): State<AppState>,
                admin: Admin,
                Id(id): Id<ProductId>,
                meta: RequestMeta,
                if_match: IfMatch,
            ) -> Result<Json<CommandAccepted>, ApiError> {
                run(&state, &admin, id, $command, if_match, &meta).await
            }
        )*
    };
}

transitions! {
    publish => ProductCommand::Publish;
    unpublish => ProductCommand::Unpublish;
    /// `DELETE /products/{id}`.
    discontinue => ProductCommand::Discontinue;
}

/// Runs a command on product `id` of the admin's tenant.
async fn run(
    state: &AppState,
    Admin(admin): &Admin,
    id: ProductId,
    command: ProductCommand,
    IfMatch(if_match): IfMatch,
    meta: &RequestMeta,
) -> Result<Json<CommandAccepted>, ApiError> {
    let metadata = meta.metadata(&admin.tenant, Some(admin.user_id));
    let done = state.products.execute(&stream_id(&admin.tenant, id), command, if_match, &metadata).await?;
    Ok(Json(CommandAccepted::new(id, &done)))
}
