//! Orders and payments: customers place and cancel orders; admins ship, deliver and refund.
//! The order saga (the `saga` crate) does everything in between: stock, payment, invoice.

use aide::axum::routing::post_with;
use aide::axum::ApiRouter;
use axum::extract::State;
use domain::order::{CancelReason, Order, OrderCommand, PricedLine, ShippingAddress};
use domain::payment::PaymentCommand;
use domain::{stream_id, InvalidValue, Money, Name, OrderId, Price, Quantity, Sku, TenantId};
use serde::Deserialize;

use crate::products::PriceBody;
use crate::{AppState, CommandAccepted};
use http_kit::{Accepted, ApiError, ErrorCode, Id, Problems};
use http_kit::{Admin, AppJson, AuthUser, RequestMeta};
use schemars::JsonSchema;

/// Lines per order.
const MAX_LINES: usize = 100;

pub fn router() -> ApiRouter<AppState> {
    use ErrorCode::*;
    let transitions = [IllegalTransition, VersionConflict];
    ApiRouter::new()
        .api_route(
            "/orders",
            post_with(place, |op| {
                op.describe("place_order", "orders", "Place an order; the order saga reserves stock, takes payment and confirms it.")
                    .problems(&[MixedCurrencies, VersionConflict])
            }),
        )
        .api_route(
            "/orders/{id}/cancel",
            post_with(cancel, |op| {
                op.describe("cancel_order", "orders", "Cancel one of the caller's orders (any order for an admin) until it ships.")
                    .problems(&transitions)
            }),
        )
        .api_route(
            "/orders/{id}/ship",
            post_with(ship, |op| {
                op.describe("ship_order", "orders", "Mark a confirmed order as shipped, with carrier and tracking number.")
                    .problems(&transitions)
            }),
        )
        .api_route(
            "/orders/{id}/deliver",
            post_with(deliver, |op| op.describe("deliver_order", "orders", "Mark a shipped order as delivered.").problems(&transitions)),
        )
        .api_route(
            "/payments/{id}/refunds",
            post_with(refund, |op| {
                op.describe("refund_payment", "payments", "Refund an amount of a captured payment (the payment id is the order id).")
                    .problems(&[IllegalTransition, RefundTooLarge, VersionConflict])
            }),
        )
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct LineRequest {
    sku: String,
    quantity: i64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddressRequest {
    name: String,
    line1: String,
    /// A second line (flat, floor, c/o).
    #[serde(default)]
    line2: Option<String>,
    city: String,
    /// State, province or county.
    #[serde(default)]
    region: Option<String>,
    postal_code: String,
    country: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PlaceRequest {
    lines: Vec<LineRequest>,
    shipping_address: AddressRequest,
    payment_method: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ShipRequest {
    carrier: String,
    tracking_number: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RefundRequest {
    amount: PriceBody,
}

fn text(field: &'static str, value: &str) -> Result<Name, InvalidValue> {
    value.parse().map_err(|_| InvalidValue::new(field, "must be 1-200 characters of text"))
}

/// A carrier or tracking number: short enough for an SMS ([`domain::order::SHIPMENT_TEXT_MAX`]).
fn shipment_text(field: &'static str, value: &str) -> Result<Name, InvalidValue> {
    let max = domain::order::SHIPMENT_TEXT_MAX;
    text(field, value)
        .ok()
        .filter(|t| t.as_str().chars().count() <= max)
        .ok_or_else(|| InvalidValue::new(field, "must be 1-64 characters of text"))
}

impl TryFrom<AddressRequest> for ShippingAddress {
    type Error = InvalidValue;

    fn try_from(a: AddressRequest) -> Result<Self, Self::Error> {
        let country = a
            .country
            .parse()
            .map_err(|_| InvalidValue::new("shipping_address.country", "must be an iso 3166-1 alpha-2 code such as DE"))?;
        Ok(ShippingAddress {
            name: text("shipping_address.name", &a.name)?,
            line1: text("shipping_address.line1", &a.line1)?,
            line2: a.line2.as_deref().map(|l| text("shipping_address.line2", l)).transpose()?,
            city: text("shipping_address.city", &a.city)?,
            region: a.region.as_deref().map(|r| text("shipping_address.region", r)).transpose()?,
            postal_code: text("shipping_address.postal_code", &a.postal_code)?,
            country,
        })
    }
}

/// A payment method token: 1-100 visible ASCII characters (never a card number in clear).
pub(crate) fn payment_method(raw: &str) -> Result<String, InvalidValue> {
    let ok = !raw.is_empty() && raw.len() <= 100 && raw.bytes().all(|b| b.is_ascii_graphic());
    let digits = raw.bytes().filter(u8::is_ascii_digit).count();
    if ok && digits < 12 {
        Ok(raw.to_owned())
    } else {
        Err(InvalidValue::new("payment_method", "must be a payment method token such as tok_approve, not a card number"))
    }
}

/// The catalogue price and name of `sku` if it belongs to a published, live product; `None` if
/// nothing with this SKU can be ordered.
pub(crate) async fn catalogue_entry(state: &AppState, tenant: &TenantId, sku: &Sku) -> Result<Option<(Price, Option<Name>)>, ApiError> {
    let claim_stream = stream_id(tenant, sku);
    let owner = match state.skus.peek(&claim_stream).await?.0.owner {
        Some(owner) => owner,
        None => match state.skus.read(&claim_stream).await?.0.owner {
            Some(owner) => owner,
            None => return Ok(None),
        },
    };
    let (product, _) = state.products.read(&stream_id(tenant, owner)).await?;
    let name = product.details.map(|d| d.name);
    Ok(product.price.filter(|_| product.published && !product.discontinued).map(|price| (price, name)))
}

/// Prices a line from the catalogue: the SKU must belong to a published, live product.
async fn price_line(state: &AppState, tenant: &TenantId, line: &LineRequest) -> Result<PricedLine, ApiError> {
    let unknown = || ApiError::from(InvalidValue::new("lines.sku", "no product with this sku can be ordered"));
    let sku: Sku = line.sku.parse().map_err(|_| unknown())?;
    let quantity = Quantity::try_from(line.quantity).map_err(|_| InvalidValue::new("lines.quantity", "must be at least 1"))?;
    match catalogue_entry(state, tenant, &sku).await? {
        Some((unit_price, name)) => Ok(PricedLine { sku, quantity, unit_price, name }),
        None => Err(unknown().with("sku", sku.to_string())),
    }
}

/// The tax rate and shipping of an order of `tenant` worth `goods` (its subtotal less its
/// discount): the tenant's settings, or the installation's defaults without them.
pub(crate) async fn order_terms(state: &AppState, tenant: &TenantId, goods: Money) -> Result<(u32, Money), ApiError> {
    let (settings, _) = state.settings.read(&stream_id(tenant, domain::settings::SETTINGS)).await?;
    Ok(match settings.current {
        Some(s) => (s.tax_rate_bp, s.shipping_for(goods)),
        None => (state.config.orders.tax_rate_bp(tenant), Money::new(state.config.orders.shipping_amount, goods.currency)),
    })
}

/// `POST /orders`: 202 with the order id; the saga takes it from there.
async fn place(
    State(state): State<AppState>,
    user: AuthUser,
    meta: RequestMeta,
    AppJson(req): AppJson<PlaceRequest>,
) -> Result<Accepted<CommandAccepted>, ApiError> {
    if req.lines.is_empty() || req.lines.len() > MAX_LINES {
        return Err(InvalidValue::new("lines", "an order has 1 to 100 lines").into());
    }
    let shipping_address = ShippingAddress::try_from(req.shipping_address)?;
    let payment_method = payment_method(&req.payment_method)?;
    let mut lines = Vec::with_capacity(req.lines.len());
    for line in &req.lines {
        lines.push(price_line(&state, &user.tenant, line).await?);
    }
    let goods = lines.iter().try_fold(Money::new(0, lines[0].unit_price.money().currency), |sum, l| {
        l.unit_price
            .money()
            .amount
            .checked_mul(l.quantity.get())
            .and_then(|a| a.checked_add(sum.amount))
            .map(|a| Money::new(a, sum.currency))
    });
    let goods = goods.ok_or_else(|| InvalidValue::new("lines", "the order total does not fit in the money range"))?;
    let (tax_rate_bp, shipping) = order_terms(&state, &user.tenant, goods).await?;
    let order_id = OrderId::new();
    let command = OrderCommand::Place {
        tenant: user.tenant.clone(),
        order_id,
        customer: user.user_id,
        lines,
        discount: None,
        tax_rate_bp,
        shipping,
        shipping_address,
        payment_method,
    };
    let done =
        state.orders.execute(&stream_id(&user.tenant, order_id), command, None, &meta.metadata(&user.tenant, Some(user.user_id))).await?;
    Ok(Accepted(CommandAccepted::new(order_id, &done)))
}

/// The order `id` of the caller's tenant, if the caller may act on it: its customer, or an
/// admin. Anyone else gets the same 404 as for a missing order.
async fn visible_order(state: &AppState, user: &AuthUser, order_id: OrderId) -> Result<(String, Order), ApiError> {
    let stream = stream_id(&user.tenant, order_id);
    let (order, _) = state.orders.read(&stream).await?;
    match order.customer {
        Some(customer) if customer == user.user_id || user.is_admin() => Ok((stream, order)),
        _ => Err(ApiError::not_found("order")),
    }
}

async fn order_command(
    state: &AppState,
    user: &AuthUser,
    id: OrderId,
    meta: &RequestMeta,
    command: OrderCommand,
) -> Result<Accepted<CommandAccepted>, ApiError> {
    let (stream, _) = visible_order(state, user, id).await?;
    let done = state.orders.execute(&stream, command, None, &meta.metadata(&user.tenant, Some(user.user_id))).await?;
    Ok(Accepted(CommandAccepted::new(id, &done)))
}

/// `POST /orders/{id}/cancel`: until the order ships. The saga gives back stock and money.
async fn cancel(
    State(state): State<AppState>,
    user: AuthUser,
    Id(id): Id<OrderId>,
    meta: RequestMeta,
) -> Result<Accepted<CommandAccepted>, ApiError> {
    order_command(&state, &user, id, &meta, OrderCommand::Cancel { reason: CancelReason::CancelledByCustomer }).await
}

async fn ship(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Id(id): Id<OrderId>,
    meta: RequestMeta,
    AppJson(req): AppJson<ShipRequest>,
) -> Result<Accepted<CommandAccepted>, ApiError> {
    let carrier = shipment_text("carrier", &req.carrier)?;
    let tracking_number = shipment_text("tracking_number", &req.tracking_number)?;
    order_command(&state, &admin, id, &meta, OrderCommand::Ship { carrier, tracking_number }).await
}

async fn deliver(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Id(id): Id<OrderId>,
    meta: RequestMeta,
) -> Result<Accepted<CommandAccepted>, ApiError> {
    order_command(&state, &admin, id, &meta, OrderCommand::Deliver).await
}

/// `POST /payments/{id}/refunds`: holds the amount on the payment (never more than was
/// captured and not yet refunded); the saga pays it through the gateway and records it on the
/// order. The payment id is the order id.
async fn refund(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Id(id): Id<OrderId>,
    meta: RequestMeta,
    AppJson(req): AppJson<RefundRequest>,
) -> Result<Accepted<CommandAccepted>, ApiError> {
    // The payment has the order's id; a missing order is a missing payment (anything else,
    // such as the store being away, keeps its own answer).
    let (stream, _) = visible_order(&state, &admin, id).await.map_err(|e| match e.code {
        ErrorCode::NotFound => ApiError::not_found("payment"),
        _ => e,
    })?;
    let currency = req.amount.currency.parse().map_err(|_| InvalidValue::new("amount.currency", "not an iso 4217 currency code"))?;
    let amount = Money::new(req.amount.amount, currency);
    // One refund per request; a retried request is answered from its `Idempotency-Key`.
    let refund_id = uuid::Uuid::now_v7().to_string();
    let command = PaymentCommand::RequestRefund { refund_id, amount };
    let done = state.payments.execute(&stream, command, None, &meta.metadata(&admin.tenant, Some(admin.user_id))).await?;
    Ok(Accepted(CommandAccepted::new(id, &done)))
}
