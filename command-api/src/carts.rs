//! Carts: guests and customers fill a cart, apply a discount code and check out into an order.
//!
//! A guest's cart is opened by its token (`X-Cart-Token`, `<cart id>.<secret>`; the cart keeps
//! only the secret's hash); a customer's by the customer's access token. Anyone else gets the
//! same 404 as for a cart that does not exist.
//!
//! Every change prices the cart from the catalogue and stock as they are now (a [`Pricing`]),
//! and so does a read later than the pricing's lifetime (`SHOP_CART_PRICE_TTL_SECS`). Checkout
//! is one atomic append of the cart's `checked_out`, the code's redemption and the order's
//! `placed`: the cart lock and the streams' versions make sure a cart yields one order and a
//! code is never redeemed beyond its limits.

use std::collections::BTreeMap;

use aide::axum::routing::{get_with, post_with, put_with};
use aide::axum::ApiRouter;
use aide::transform::TransformOperation;
use aide::OperationInput;
use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use domain::cart::{Cart, CartCommand, CartError, CartStatus, CustomerCartsCommand, Offer, Pricing};
use domain::order::{OrderCommand, OrderDiscount, PricedLine, ShippingAddress, Totals};
use domain::promotion::{PromotionCommand, PromotionEvent};
use domain::{stream_id, CartId, InvalidValue, Money, Name, OrderId, Price, PromotionCode, Quantity, Sku, TenantId, UserId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use store::{commit, retry_on_conflict, ExecError, Metadata};

use crate::auth::OpaqueToken;
use crate::orders::{catalogue_entry, order_terms, payment_method, AddressRequest};
use crate::{AppState, CommandAccepted};
use http_kit::{Accepted, ApiError, AppJson, AuthUser, Created, ErrorCode, Id, IfMatch, JwtKeys, Problems, RequestMeta, Versioned, Viewer};

/// The header a guest sends on every cart call.
pub const CART_TOKEN: &str = "x-cart-token";

pub fn router() -> ApiRouter<AppState> {
    use ErrorCode::*;
    let change = [CartClosed, InsufficientStock, ProductUnavailable, MixedCurrencies, PreconditionFailed, VersionConflict];
    ApiRouter::new()
        .api_route(
            "/carts/mine",
            get_with(mine, |op| cart_op(op).describe("get_my_cart", "carts", "The signed-in customer's current cart, priced again when its pricing is older than the lifetime.")),
        )
        .api_route(
            "/carts/{id}",
            get_with(show, |op| {
                cart_op(op).describe("get_cart", "carts", "A cart with its totals and problems, priced again when its pricing is older than the lifetime.")
            }),
        )
        .api_route(
            "/carts/{id}/lines",
            post_with(add_line, |op| {
                cart_op(op).describe("add_cart_line", "carts", "Add units of a SKU (to its line, if the cart has one); refused beyond the units available.").problems(&change)
            }),
        )
        .api_route(
            "/carts/{id}/lines/{sku}",
            put_with(set_quantity, |op| {
                cart_op(op).describe("set_cart_line", "carts", "Set a line's quantity; 0 removes the line.").problems(&change)
            }),
        )
        .api_route(
            "/carts/{id}/discount",
            post_with(apply_discount, |op| {
                cart_op(op)
                    .describe("apply_discount", "carts", "Apply a discount code to the cart (one at a time; a new one replaces the old).")
                    .problems(&[CartClosed, CartEmpty, PromotionExhausted, PromotionNotApplicable, VersionConflict])
            })
            .delete_with(remove_discount, |op| {
                cart_op(op).describe("remove_discount", "carts", "Remove the cart's discount code.").problems(&[CartClosed, VersionConflict])
            }),
        )
        .api_route(
            "/carts/{id}/checkout",
            post_with(checkout, |op| {
                op.describe(
                    "checkout_cart",
                    "carts",
                    "Place the order the cart shows (lines, prices, discount) and close the cart, in one write. With `If-Match: <cart version>`, a cart that changed since is answered with 409 `cart_changed` and the fresh cart instead.",
                )
                .problems(&[
                    CartClosed,
                    CartEmpty,
                    CartChanged,
                    ProductUnavailable,
                    PromotionExhausted,
                    PromotionNotApplicable,
                    MixedCurrencies,
                    VersionConflict,
                ])
            }),
        )
}

/// `POST /carts`, apart from the other routes: a guest's answer holds the cart's token, a
/// secret that is never stored for `Idempotency-Key` replay.
pub fn creation() -> ApiRouter<AppState> {
    ApiRouter::new().api_route(
        "/carts",
        post_with(create, |op| {
            op.describe(
                "create_cart",
                "carts",
                "Open a cart: for a guest (the answer's `token` opens it; send it as `X-Cart-Token`) or for the signed-in customer (whose current open cart is answered if there is one).",
            )
        }),
    )
}

pub(crate) fn cart_op(op: TransformOperation<'_>) -> TransformOperation<'_> {
    let description = "A guest's cart token (`<cart id>.<secret>`), as `POST /carts` answered it.";
    op.header("X-Cart-Token", description, json!({ "type": "string" }))
}

/// Who is shopping: a signed-in user (a bad token is a 401), and/or the holder of a guest
/// cart's token, in the tenant of the one or the `X-Tenant` of the other.
pub struct Shopper {
    pub tenant: TenantId,
    pub user: Option<AuthUser>,
    pub token: Option<OpaqueToken<CartId>>,
}

impl<S: Send + Sync> FromRequestParts<S> for Shopper
where
    JwtKeys: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let viewer = Viewer::from_request_parts(parts, state).await?;
        // A malformed token opens nothing: the cart it would name answers 404.
        let token = cart_token(&parts.headers);
        Ok(match viewer {
            Viewer::User(user) => Shopper { tenant: user.tenant.clone(), user: Some(user), token },
            Viewer::Anonymous(tenant) => Shopper { tenant, user: None, token },
        })
    }
}

impl OperationInput for Shopper {
    fn operation_input(ctx: &mut aide::generate::GenContext, operation: &mut aide::openapi::Operation) {
        Viewer::operation_input(ctx, operation);
    }

    fn inferred_early_responses(
        ctx: &mut aide::generate::GenContext,
        operation: &mut aide::openapi::Operation,
    ) -> Vec<(Option<u16>, aide::openapi::Response)> {
        Viewer::inferred_early_responses(ctx, operation)
    }
}

/// The guest cart token of a request, if it has a well-formed one.
pub fn cart_token(headers: &HeaderMap) -> Option<OpaqueToken<CartId>> {
    headers.get(CART_TOKEN)?.to_str().ok()?.trim().parse().ok()
}

impl Shopper {
    fn customer(&self) -> Option<UserId> {
        self.user.as_ref().map(|u| u.user_id)
    }

    /// True when this shopper may open `cart`: its customer, or the holder of its token.
    fn opens(&self, id: CartId, cart: &Cart) -> bool {
        match (&cart.customer, &cart.token_hash) {
            (Some(customer), _) => self.customer() == Some(*customer),
            (None, Some(hash)) => self.token.as_ref().is_some_and(|t| t.id == id && t.hash() == *hash),
            (None, None) => false,
        }
    }
}

/// `{id, version, position, token}`: `token` only for a guest's new cart.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CartCreated {
    pub id: String,
    pub version: u64,
    pub position: i64,
    /// Send it as `X-Cart-Token` on every call for this cart; it is shown only once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `{amount, currency}` in minor units.
#[derive(Debug, Serialize, JsonSchema)]
pub struct MoneyView {
    pub amount: i64,
    pub currency: String,
}

impl From<Money> for MoneyView {
    fn from(m: Money) -> Self {
        Self { amount: m.amount, currency: m.currency.as_str().to_owned() }
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct LineView {
    pub sku: String,
    /// The product's name in the catalogue now (absent once it is no longer for sale).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub quantity: i64,
    pub unit_price: MoneyView,
    /// The price shown before the catalogue's price moved; absent once the line is changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_unit_price: Option<MoneyView>,
    /// Where the unit price came from (`catalogue`).
    pub source: String,
    pub line_total: MoneyView,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DiscountView {
    pub code: String,
    pub amount: MoneyView,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TotalsView {
    pub subtotal: MoneyView,
    pub discount: MoneyView,
    pub tax: MoneyView,
    pub shipping: MoneyView,
    pub total: MoneyView,
}

/// Something the shopper should hear of before checkout.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CartProblem {
    /// The line's price moved from `previous_unit_price` to `unit_price`.
    PriceChanged { sku: String, previous_unit_price: MoneyView, unit_price: MoneyView },
    /// Fewer units are available than the line holds (checkout would be refused for stock).
    OutOfStock { sku: String, available: i64 },
    /// The product is no longer for sale; remove the line to check out.
    ProductUnavailable { sku: String },
    /// The discount code was dropped at a repricing (`reason` as in `promotion_not_applicable`).
    DiscountRemoved { code: String, reason: String },
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CartStatusView {
    Open,
    CheckedOut,
    Merged,
    Expired,
}

/// A cart as the shopper sees it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CartView {
    pub id: String,
    /// Send it back as `If-Match` on checkout.
    pub version: u64,
    pub status: CartStatusView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    pub lines: Vec<LineView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discount: Option<DiscountView>,
    /// Absent while the cart is empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub totals: Option<TotalsView>,
    pub problems: Vec<CartProblem>,
    /// When the cart was last priced from the catalogue (RFC 3339).
    pub priced_at: Option<String>,
    /// The order it became, once checked out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AddLineRequest {
    sku: String,
    quantity: i64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SetQuantityRequest {
    quantity: i64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct DiscountRequest {
    code: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CheckoutRequest {
    shipping_address: AddressRequest,
    payment_method: String,
}

/// The cart's totals as its order would have them (none while it is empty).
async fn totals(state: &AppState, cart: &Cart) -> Result<Option<Totals>, ApiError> {
    let Some(subtotal) = cart.subtotal() else { return Ok(None) };
    let off = cart.discount.as_ref().map_or(0, |d| d.amount.amount);
    let goods = Money::new(subtotal.amount - off.clamp(0, subtotal.amount), subtotal.currency);
    let (tax_rate_bp, shipping) = order_terms(state, &cart.tenant, goods).await?;
    Ok(Totals::of(&cart.order_lines(), off, tax_rate_bp, shipping).ok())
}

/// A cart's pricing, with the names of the products offered (read in the same catalogue
/// lookups): shown on the cart's lines and kept on the order a checkout places.
struct Quote {
    pricing: Pricing,
    names: BTreeMap<Sku, Name>,
}

/// The catalogue's offer (and name) for each of `skus` and the terms of `code` for
/// `customer`, now.
async fn quote(
    state: &AppState,
    tenant: &TenantId,
    skus: &[Sku],
    code: Option<&PromotionCode>,
    customer: Option<UserId>,
) -> Result<Quote, ApiError> {
    let mut offers = BTreeMap::new();
    let mut names = BTreeMap::new();
    for sku in skus {
        let offer = match catalogue_entry(state, tenant, sku).await? {
            Some((unit_price, name)) => {
                if let Some(name) = name {
                    names.insert(sku.clone(), name);
                }
                let (stock, _) = state.stock.read(&stream_id(tenant, sku)).await?;
                Offer::Priced { unit_price, available: stock.available().max(0) }
            }
            None => Offer::Unavailable,
        };
        offers.insert(sku.clone(), offer);
    }
    let promotion = match code {
        Some(code) => Some(state.promotions.read(&stream_id(tenant, code)).await?.0.terms_for(customer)),
        None => None,
    };
    Ok(Quote { pricing: Pricing { offers, promotion, at: state.clock.now() }, names })
}

/// The pricing of everything `cart` holds.
async fn quote_of(state: &AppState, cart: &Cart) -> Result<Quote, ApiError> {
    let code = cart.discount.as_ref().map(|d| &d.code);
    let skus: Vec<Sku> = cart.lines.keys().cloned().collect();
    quote(state, &cart.tenant, &skus, code, cart.customer).await
}

async fn view(state: &AppState, id: CartId, cart: &Cart, version: u64, quote: &Quote) -> Result<CartView, ApiError> {
    let mut problems = Vec::new();
    let lines = cart
        .lines
        .iter()
        .map(|(sku, l)| {
            if let Some(previous) = l.previous_unit_price {
                problems.push(CartProblem::PriceChanged {
                    sku: sku.to_string(),
                    previous_unit_price: previous.into(),
                    unit_price: l.unit_price.into(),
                });
            }
            if !l.orderable {
                problems.push(CartProblem::ProductUnavailable { sku: sku.to_string() });
            } else if let Offer::Priced { available, .. } = quote.pricing.offer(sku) {
                if available < l.quantity {
                    problems.push(CartProblem::OutOfStock { sku: sku.to_string(), available });
                }
            }
            LineView {
                sku: sku.to_string(),
                name: quote.names.get(sku).map(ToString::to_string),
                quantity: l.quantity,
                unit_price: l.unit_price.into(),
                previous_unit_price: l.previous_unit_price.map(Into::into),
                source: "catalogue".to_owned(),
                line_total: Money::new(l.unit_price.amount.saturating_mul(l.quantity), l.unit_price.currency).into(),
            }
        })
        .collect();
    if let Some((code, reason)) = &cart.discount_problem {
        problems.push(CartProblem::DiscountRemoved { code: code.to_string(), reason: reason.clone() });
    }
    let status = match cart.status {
        CartStatus::CheckedOut => CartStatusView::CheckedOut,
        CartStatus::Merged => CartStatusView::Merged,
        CartStatus::Expired => CartStatusView::Expired,
        CartStatus::New | CartStatus::Open => CartStatusView::Open,
    };
    Ok(CartView {
        id: id.to_string(),
        version,
        status,
        customer: cart.customer.map(|c| c.to_string()),
        lines,
        discount: cart.discount.as_ref().map(|d| DiscountView { code: d.code.to_string(), amount: d.amount.into() }),
        totals: totals(state, cart).await?.map(|t| TotalsView {
            subtotal: t.subtotal.into(),
            discount: t.discount.into(),
            tax: t.tax.into(),
            shipping: t.shipping.into(),
            total: t.total.into(),
        }),
        problems,
        priced_at: cart.priced_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        order_id: cart.order_id.map(|o| o.to_string()),
    })
}

/// The cart `id` if the shopper may open it (404 otherwise, as for a missing cart).
async fn visible(state: &AppState, shopper: &Shopper, id: CartId) -> Result<(String, Cart, u64), ApiError> {
    let stream = stream_id(&shopper.tenant, id);
    let (cart, version) = state.carts.read(&stream).await?;
    if cart.status == CartStatus::New || !shopper.opens(id, &cart) {
        return Err(ApiError::not_found("cart"));
    }
    Ok((stream, cart, version))
}

fn metadata(meta: &RequestMeta, shopper: &Shopper) -> Metadata {
    meta.metadata(&shopper.tenant, shopper.customer())
}

/// Runs `command(pricing)` on the cart with a fresh pricing (of its lines and `extra`), and
/// answers with the cart as it is then.
async fn change(
    state: &AppState,
    shopper: &Shopper,
    id: CartId,
    meta: &RequestMeta,
    extra: Option<&Sku>,
    code: Option<&PromotionCode>,
    command: impl Fn(Pricing) -> CartCommand,
) -> Result<Versioned<CartView>, ApiError> {
    let (stream, cart, _) = visible(state, shopper, id).await?;
    let code = code.or(cart.discount.as_ref().map(|d| &d.code));
    let skus: Vec<Sku> = cart.lines.keys().chain(extra).cloned().collect();
    let quote = quote(state, &shopper.tenant, &skus, code, cart.customer).await?;
    let done = state.carts.execute(&stream, command(quote.pricing.clone()), None, &metadata(meta, shopper)).await?;
    let view = view(state, id, &done.state, done.version, &quote).await?;
    Ok(Versioned { version: done.version as i64, body: view, if_none_match: None })
}

/// Opens `customer`'s cart: the current one while it is open, else a new one (recorded as the
/// current one in the same write, so concurrent requests agree on one cart).
pub(crate) async fn customer_cart(
    state: &AppState,
    tenant: &TenantId,
    customer: UserId,
    metadata: &Metadata,
) -> Result<CartCreated, ApiError> {
    let pointer = stream_id(tenant, customer);
    let done = retry_on_conflict("cart", || async {
        let (carts, _) = state.customer_carts.read(&pointer).await?;
        if let Some(current) = carts.current {
            let (cart, version, position) = state.carts.read_at(&stream_id(tenant, current)).await?;
            if cart.status == CartStatus::Open {
                return Ok(CartCreated { id: current.to_string(), version, position, token: None });
            }
        }
        let cart_id = CartId::new();
        let mut opened = state
            .customer_carts
            .prepare(&pointer, CustomerCartsCommand::Open { cart_id }, None)
            .await
            .map_err(|e| e.map_domain(ApiError::from))?;
        let create =
            CartCommand::Create { tenant: tenant.clone(), cart_id, customer: Some(customer), token_hash: None, at: state.clock.now() };
        let mut created = state.carts.prepare(&stream_id(tenant, cart_id), create, None).await.map_err(|e| e.map_domain(ApiError::from))?;
        commit(&state.store, metadata, &mut [&mut opened, &mut created]).await?;
        opened.finish().await;
        let done = created.finish().await;
        Ok(CartCreated { id: cart_id.to_string(), version: done.version, position: done.position, token: None })
    })
    .await;
    done.map_err(ApiError::from)
}

/// `POST /carts`.
async fn create(State(state): State<AppState>, shopper: Shopper, meta: RequestMeta) -> Result<Created<CartCreated>, ApiError> {
    let metadata = metadata(&meta, &shopper);
    if let Some(user) = &shopper.user {
        return Ok(Created(customer_cart(&state, &shopper.tenant, user.user_id, &metadata).await?));
    }
    let cart_id = CartId::new();
    let token = OpaqueToken::generate(cart_id);
    let command = CartCommand::Create {
        tenant: shopper.tenant.clone(),
        cart_id,
        customer: None,
        token_hash: Some(token.hash()),
        at: state.clock.now(),
    };
    let done = state.carts.execute(&stream_id(&shopper.tenant, cart_id), command, None, &metadata).await?;
    Ok(Created(CartCreated { id: cart_id.to_string(), version: done.version, position: done.position, token: Some(token.to_string()) }))
}

/// Shows the cart; a cart priced longer ago than the lifetime is priced again first.
async fn answer(
    state: &AppState,
    shopper: &Shopper,
    id: CartId,
    headers: &HeaderMap,
    meta: &RequestMeta,
) -> Result<Versioned<CartView>, ApiError> {
    let (stream, cart, version) = visible(state, shopper, id).await?;
    let quote = quote_of(state, &cart).await?;
    let stale = cart.priced_at.is_none_or(|at| quote.pricing.at - at > state.config.cart_price_ttl);
    if cart.status == CartStatus::Open && stale {
        let reprice = CartCommand::Reprice { pricing: quote.pricing.clone() };
        let done = state.carts.execute(&stream, reprice, None, &metadata(meta, shopper)).await?;
        return Ok(Versioned::new(headers, done.version as i64, view(state, id, &done.state, done.version, &quote).await?));
    }
    Ok(Versioned::new(headers, version as i64, view(state, id, &cart, version, &quote).await?))
}

/// `GET /carts/{id}`.
async fn show(
    State(state): State<AppState>,
    shopper: Shopper,
    Id(id): Id<CartId>,
    headers: HeaderMap,
    meta: RequestMeta,
) -> Result<Versioned<CartView>, ApiError> {
    answer(&state, &shopper, id, &headers, &meta).await
}

/// `GET /carts/mine`: 404 while the customer has no open cart.
async fn mine(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    meta: RequestMeta,
) -> Result<Versioned<CartView>, ApiError> {
    let (carts, _) = state.customer_carts.read(&stream_id(&user.tenant, user.user_id)).await?;
    let id = carts.current.ok_or_else(|| ApiError::not_found("cart"))?;
    let shopper = Shopper { tenant: user.tenant.clone(), user: Some(user), token: None };
    let shown = answer(&state, &shopper, id, &headers, &meta).await?;
    if !matches!(shown.body.status, CartStatusView::Open) {
        return Err(ApiError::not_found("cart"));
    }
    Ok(shown)
}

fn sku_of(raw: &str) -> Result<Sku, ApiError> {
    raw.parse::<Sku>().map_err(ApiError::from)
}

/// `POST /carts/{id}/lines`.
async fn add_line(
    State(state): State<AppState>,
    shopper: Shopper,
    Id(id): Id<CartId>,
    meta: RequestMeta,
    AppJson(req): AppJson<AddLineRequest>,
) -> Result<Versioned<CartView>, ApiError> {
    let sku = sku_of(&req.sku)?;
    let quantity = Quantity::try_from(req.quantity)
        .ok()
        .filter(|q| q.get() <= domain::cart::MAX_QUANTITY)
        .ok_or_else(|| InvalidValue::new("quantity", "a line has 1 to 1000 units"))?;
    change(&state, &shopper, id, &meta, Some(&sku), None, |pricing| CartCommand::AddLine { sku: sku.clone(), quantity, pricing }).await
}

/// `PUT /carts/{id}/lines/{sku}`.
async fn set_quantity(
    State(state): State<AppState>,
    shopper: Shopper,
    axum::extract::Path((id, sku)): axum::extract::Path<(String, String)>,
    meta: RequestMeta,
    AppJson(req): AppJson<SetQuantityRequest>,
) -> Result<Versioned<CartView>, ApiError> {
    let id: CartId = id.parse().map_err(|_| ApiError::not_found("cart"))?;
    let sku: Sku = sku.parse().map_err(|_| ApiError::not_found("cart line"))?;
    if !(0..=domain::cart::MAX_QUANTITY).contains(&req.quantity) {
        return Err(InvalidValue::new("quantity", "a line has 0 (remove) to 1000 units").into());
    }
    change(&state, &shopper, id, &meta, None, None, |pricing| CartCommand::SetQuantity {
        sku: sku.clone(),
        quantity: req.quantity,
        pricing,
    })
    .await
}

/// `POST /carts/{id}/discount`.
async fn apply_discount(
    State(state): State<AppState>,
    shopper: Shopper,
    Id(id): Id<CartId>,
    meta: RequestMeta,
    AppJson(req): AppJson<DiscountRequest>,
) -> Result<Versioned<CartView>, ApiError> {
    // A code that cannot exist is not found, like one that does not.
    let code: PromotionCode = req.code.parse().map_err(|_| ApiError::not_found("discount code"))?;
    change(&state, &shopper, id, &meta, None, Some(&code), |pricing| CartCommand::ApplyDiscount { code: code.clone(), pricing }).await
}

/// `DELETE /carts/{id}/discount`.
async fn remove_discount(
    State(state): State<AppState>,
    shopper: Shopper,
    Id(id): Id<CartId>,
    meta: RequestMeta,
) -> Result<Versioned<CartView>, ApiError> {
    change(&state, &shopper, id, &meta, None, None, |pricing| CartCommand::RemoveDiscount { pricing }).await
}

/// 409 `cart_changed` with the cart as it is now.
async fn changed(state: &AppState, id: CartId, cart: &Cart, version: u64, quote: &Quote) -> ApiError {
    let fresh = match view(state, id, cart, version, quote).await {
        Ok(view) => serde_json::to_value(view).unwrap_or_default(),
        Err(e) => return e,
    };
    ApiError::new(ErrorCode::CartChanged, "the cart changed since the version shown; check the fresh cart and retry").with("cart", fresh)
}

/// `POST /carts/{id}/checkout`: the order, the cart's `checked_out` and the code's redemption
/// in one write (the order last: it is what the answer and `Idempotency-Key` name).
async fn checkout(
    State(state): State<AppState>,
    user: AuthUser,
    Id(id): Id<CartId>,
    IfMatch(expected): IfMatch,
    meta: RequestMeta,
    AppJson(req): AppJson<CheckoutRequest>,
) -> Result<Accepted<CommandAccepted>, ApiError> {
    let shipping_address = ShippingAddress::try_from(req.shipping_address)?;
    let payment_method = payment_method(&req.payment_method)?;
    let customer = user.user_id;
    let shopper = Shopper { tenant: user.tenant.clone(), user: Some(user), token: None };
    let (stream, cart, version) = visible(&state, &shopper, id).await?;
    // Product names for the invoice come with the pricing, read before any lock is taken.
    let skus: Vec<Sku> = cart.lines.keys().cloned().collect();
    let quoted = quote(&state, &shopper.tenant, &skus, cart.discount.as_ref().map(|d| &d.code), cart.customer).await?;
    let (pricing, names) = (&quoted.pricing, &quoted.names);
    if expected.is_some_and(|v| v != version) {
        return Err(changed(&state, id, &cart, version, &quoted).await);
    }
    let tenant = &shopper.tenant;
    let metadata = metadata(&meta, &shopper);
    let order_id = OrderId::new();
    let order_stream = stream_id(tenant, order_id);
    let refused = |e: ExecError<CartError>| e.map_domain(ApiError::from);
    let placed = retry_on_conflict("cart", || async {
        let checkout = CartCommand::CheckOut { order_id, pricing: pricing.clone() };
        let mut closing = state.carts.prepare(&stream, checkout, expected).await.map_err(refused)?;
        let cart = closing.state().clone();
        let subtotal = cart.subtotal().ok_or_else(|| ExecError::Domain(CartError::Empty.into()))?;
        let mut redeeming = match &cart.discount {
            Some(d) => {
                let redeem = PromotionCommand::Redeem { order_id, customer, subtotal, at: pricing.at };
                let prepared =
                    state.promotions.prepare(&stream_id(tenant, &d.code), redeem, None).await.map_err(|e| e.map_domain(ApiError::from))?;
                let redeemed = prepared.events().iter().find_map(|e| match e {
                    PromotionEvent::Redeemed { discount, .. } => Some(*discount),
                    _ => None,
                });
                // The code takes off what the cart showed, or the shopper did not see this order.
                if redeemed != Some(d.amount) {
                    return Err(ExecError::Domain(CartError::Changed.into()));
                }
                Some((prepared, OrderDiscount { code: d.code.clone(), amount: d.amount }))
            }
            None => None,
        };
        let mut lines = Vec::with_capacity(cart.lines.len());
        for (sku, l) in &cart.lines {
            let refused = |e: CartError| ExecError::Domain(ApiError::from(e));
            let quantity = Quantity::try_from(l.quantity).map_err(|_| refused(CartError::InvalidQuantity))?;
            let unit_price = Price::try_from(l.unit_price).map_err(|_| refused(CartError::ProductUnavailable(sku.clone())))?;
            let name = names.get(sku).cloned();
            lines.push(PricedLine { sku: sku.clone(), quantity, unit_price, name });
        }
        let off = redeeming.as_ref().map_or(0, |(_, d)| d.amount.amount);
        let goods = Money::new(subtotal.amount - off.clamp(0, subtotal.amount), subtotal.currency);
        let (tax_rate_bp, shipping) = order_terms(&state, tenant, goods).await.map_err(ExecError::Domain)?;
        let place = OrderCommand::Place {
            tenant: tenant.clone(),
            order_id,
            customer,
            lines,
            discount: redeeming.as_ref().map(|(_, d)| d.clone()),
            tax_rate_bp,
            shipping,
            shipping_address: shipping_address.clone(),
            payment_method: payment_method.clone(),
        };
        let mut order = state.orders.prepare(&order_stream, place, None).await.map_err(|e| e.map_domain(ApiError::from))?;
        match redeeming.as_mut() {
            Some((promotion, _)) => commit(&state.store, &metadata, &mut [&mut closing, promotion, &mut order]).await?,
            None => commit(&state.store, &metadata, &mut [&mut closing, &mut order]).await?,
        }
        closing.finish().await;
        if let Some((promotion, _)) = redeeming {
            promotion.finish().await;
        }
        Ok(order.finish().await)
    })
    .await;
    match placed {
        Ok(done) => Ok(Accepted(CommandAccepted::new(order_id, &done))),
        Err(ExecError::Domain(e)) if e.code == ErrorCode::CartChanged => {
            // Record what moved, and show it: the shopper decides again.
            let done = state.carts.execute(&stream, CartCommand::Reprice { pricing: pricing.clone() }, None, &metadata).await?;
            Err(changed(&state, id, &done.state, done.version, &quoted).await)
        }
        Err(ExecError::VersionMismatch { .. }) => {
            let (cart, version) = state.carts.read(&stream).await?;
            Err(changed(&state, id, &cart, version, &quoted).await)
        }
        Err(e) => Err(e.into()),
    }
}

/// Signing in (or registering) with a guest cart's token: the guest cart's lines go into the
/// customer's current cart (opened if need be), priced again, and the guest cart closes;
/// `carts_merged` on both, in one write. A token that opens nothing is ignored.
pub(crate) async fn merge_guest_cart(
    state: &AppState,
    tenant: &TenantId,
    customer: UserId,
    token: &OpaqueToken<CartId>,
    metadata: &Metadata,
) -> Result<Option<CartId>, ApiError> {
    let guest_stream = stream_id(tenant, token.id);
    let (guest, _) = state.carts.read(&guest_stream).await?;
    let shopper = Shopper { tenant: tenant.clone(), user: None, token: Some(token.clone()) };
    if guest.status != CartStatus::Open || guest.customer.is_some() || !shopper.opens(token.id, &guest) {
        return Ok(None);
    }
    let into: CartId = customer_cart(state, tenant, customer, metadata).await?.id.parse().map_err(|_| ApiError::internal("cart id"))?;
    let into_stream = stream_id(tenant, into);
    let merged = retry_on_conflict("cart", || async {
        let (target, _) = state.carts.read(&into_stream).await?;
        let lines: Vec<(Sku, i64)> = guest.lines.iter().map(|(sku, l)| (sku.clone(), l.quantity)).collect();
        let skus: Vec<Sku> = target.lines.keys().chain(guest.lines.keys()).cloned().collect();
        let code = target.discount.as_ref().map(|d| &d.code);
        let pricing = quote(state, tenant, &skus, code, Some(customer)).await.map_err(ExecError::Domain)?.pricing;
        let mut closing = state
            .carts
            .prepare(&guest_stream, CartCommand::CloseMerged { into, at: pricing.at }, None)
            .await
            .map_err(|e| e.map_domain(ApiError::from))?;
        let mut absorbing = state
            .carts
            .prepare(&into_stream, CartCommand::Absorb { from: token.id, lines, pricing }, None)
            .await
            .map_err(|e| e.map_domain(ApiError::from))?;
        commit(&state.store, metadata, &mut [&mut closing, &mut absorbing]).await?;
        closing.finish().await;
        absorbing.finish().await;
        Ok(into)
    })
    .await;
    merged.map(Some).map_err(ApiError::from)
}
