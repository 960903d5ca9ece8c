use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{CartCommand, CartError, CartEvent, MergedLine, Offer, Pricing, MAX_LINES, MAX_QUANTITY};
use crate::order::OrderLine;
use crate::user::TokenHash;
use crate::{CartId, Currency, Money, OrderId, PromotionCode, Sku, TenantId, UserId};

/// Where a cart is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CartStatus {
    /// Not created yet (the aggregate before its first event).
    #[default]
    New,
    Open,
    CheckedOut,
    /// A guest cart merged into a customer's at sign-in.
    Merged,
    /// Untouched for the cart lifetime.
    Expired,
}

/// Where a line's unit price came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PriceSource {
    #[default]
    Catalogue,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartLine {
    pub quantity: i64,
    pub unit_price: Money,
    pub source: PriceSource,
    /// The price the shopper saw before the last repricing moved it; cleared when the shopper
    /// changes the line.
    pub previous_unit_price: Option<Money>,
    /// False while the product is not for sale.
    pub orderable: bool,
}

/// The cart's code and what it takes off, as of the last pricing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartDiscount {
    pub code: PromotionCode,
    pub amount: Money,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cart {
    pub id: Option<CartId>,
    pub tenant: TenantId,
    pub customer: Option<UserId>,
    /// Guests only: the hash of the token that opens the cart.
    pub token_hash: Option<TokenHash>,
    pub status: CartStatus,
    pub lines: BTreeMap<Sku, CartLine>,
    pub discount: Option<CartDiscount>,
    /// Why the last code was dropped at a repricing, until the shopper acts on the discount.
    pub discount_problem: Option<(PromotionCode, String)>,
    /// When the cart was last priced and last changed by its shopper.
    pub priced_at: Option<DateTime<Utc>>,
    pub touched_at: Option<DateTime<Utc>>,
    pub order_id: Option<OrderId>,
    pub merged_into: Option<CartId>,
    /// The customer was reminded of it (at most once).
    pub reminded: bool,
}

impl Cart {
    pub fn currency(&self) -> Option<Currency> {
        self.lines.values().next().map(|l| l.unit_price.currency)
    }

    /// The lines as an order records them.
    pub fn order_lines(&self) -> Vec<OrderLine> {
        self.lines
            .iter()
            .map(|(sku, l)| OrderLine { sku: sku.clone(), quantity: l.quantity, unit_price: l.unit_price, name: None })
            .collect()
    }

    /// The lines' sum (saturating: a cart's lines are bounded far below the money range).
    pub fn subtotal(&self) -> Option<Money> {
        let currency = self.currency()?;
        let amount = self.lines.values().fold(0i64, |sum, l| sum.saturating_add(l.unit_price.amount.saturating_mul(l.quantity)));
        Some(Money::new(amount, currency))
    }

    fn require_open(&self) -> Result<(), CartError> {
        match self.status {
            CartStatus::New => Err(CartError::NotFound),
            CartStatus::Open => Ok(()),
            _ => Err(CartError::Closed),
        }
    }

    /// What `pricing` changes: each line whose price moved or that is no longer (or again)
    /// for sale, and the code's amount or its removal.
    fn repricing(&self, pricing: &Pricing) -> Vec<CartEvent> {
        let mut events = Vec::new();
        let mut after = self.clone();
        for (sku, line) in &self.lines {
            let event = match pricing.offer(sku) {
                Offer::Unavailable if line.orderable => CartEvent::LineUnavailable { sku: sku.clone() },
                Offer::Priced { unit_price, .. } if unit_price.money() != line.unit_price || !line.orderable => CartEvent::LineRepriced {
                    sku: sku.clone(),
                    previous_unit_price: line.unit_price,
                    unit_price: unit_price.money(),
                    source: PriceSource::Catalogue,
                },
                _ => continue,
            };
            after.apply(event.clone());
            events.push(event);
        }
        if let Some(discount) = &self.discount {
            let quote = match (&pricing.promotion, after.subtotal()) {
                (Some(Ok(terms)), Some(subtotal)) => terms.discount(subtotal, pricing.at).map_err(|e| e.reason().to_owned()),
                (Some(Ok(_)), None) => Err("empty_cart".to_owned()),
                (Some(Err(e)), _) => Err(e.reason().to_owned()),
                (None, _) => Err("not_found".to_owned()),
            };
            match quote {
                Ok(amount) if amount != discount.amount => events.push(CartEvent::DiscountApplied { code: discount.code.clone(), amount }),
                Ok(_) => {}
                Err(reason) => events.push(CartEvent::DiscountRemoved { code: discount.code.clone(), reason }),
            }
        }
        events
    }

    async fn write_all(&mut self, events: Vec<CartEvent>, sink: &EventSink<Self>) {
        for event in events {
            sink.write(event, self).await;
        }
    }

    /// Units available for `sku` now, or why it cannot be added at all.
    fn offered(pricing: &Pricing, sku: &Sku) -> Result<(Money, i64), CartError> {
        match pricing.offer(sku) {
            Offer::Priced { unit_price, available } => Ok((unit_price.money(), available)),
            Offer::Unavailable => Err(CartError::ProductUnavailable(sku.clone())),
        }
    }

    fn check_currency(&self, price: Money) -> Result<(), CartError> {
        match self.currency() {
            Some(expected) if expected != price.currency => Err(CartError::MixedCurrencies { expected, found: price.currency }),
            _ => Ok(()),
        }
    }
}

impl Aggregate for Cart {
    const TYPE: &'static str = "cart";
    type Command = CartCommand;
    type Event = CartEvent;
    type Error = CartError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &Self::Services, sink: &EventSink<Self>) -> Result<(), Self::Error> {
        match command {
            CartCommand::Create { tenant, cart_id, customer, token_hash, at } => {
                if self.status != CartStatus::New {
                    return Err(CartError::AlreadyExists);
                }
                sink.write(CartEvent::Created { tenant, cart_id, customer, token_hash, at }, self).await;
            }
            CartCommand::AddLine { sku, quantity, pricing } => {
                self.require_open()?;
                let (unit_price, available) = Self::offered(&pricing, &sku)?;
                let existing = self.lines.get(&sku);
                if existing.is_none() && self.lines.len() >= MAX_LINES {
                    return Err(CartError::TooManyLines);
                }
                let line_quantity = existing.map_or(0, |l| l.quantity) + quantity.get();
                if line_quantity > MAX_QUANTITY {
                    return Err(CartError::InvalidQuantity);
                }
                if line_quantity > available {
                    return Err(CartError::InsufficientStock { sku, available });
                }
                // A line already in the cart keeps its price here; the repricing below moves it.
                let unit_price = existing.map_or(unit_price, |l| l.unit_price);
                self.check_currency(unit_price)?;
                let added = CartEvent::LineAdded {
                    sku,
                    quantity: quantity.get(),
                    line_quantity,
                    unit_price,
                    source: PriceSource::Catalogue,
                    at: pricing.at,
                };
                sink.write(added, self).await;
                let repriced = self.repricing(&pricing);
                self.write_all(repriced, sink).await;
            }
            CartCommand::SetQuantity { sku, quantity, pricing } => {
                self.require_open()?;
                let line = self.lines.get(&sku).ok_or_else(|| CartError::NoSuchLine(sku.clone()))?;
                if !(0..=MAX_QUANTITY).contains(&quantity) {
                    return Err(CartError::InvalidQuantity);
                }
                let event = if quantity == 0 {
                    CartEvent::LineRemoved { sku, at: pricing.at }
                } else {
                    if quantity > line.quantity {
                        let (_, available) = Self::offered(&pricing, &sku)?;
                        if quantity > available {
                            return Err(CartError::InsufficientStock { sku, available });
                        }
                    }
                    CartEvent::LineQuantityChanged { sku, line_quantity: quantity, at: pricing.at }
                };
                sink.write(event, self).await;
                let repriced = self.repricing(&pricing);
                self.write_all(repriced, sink).await;
            }
            CartCommand::Reprice { pricing } => {
                self.require_open()?;
                let mut events = self.repricing(&pricing);
                events.push(CartEvent::Priced { at: pricing.at });
                self.write_all(events, sink).await;
            }
            CartCommand::ApplyDiscount { code, pricing } => {
                self.require_open()?;
                let subtotal = self.subtotal().ok_or(CartError::Empty)?;
                let terms = match &pricing.promotion {
                    Some(Ok(terms)) => *terms,
                    Some(Err(e)) => return Err(CartError::Promotion(e.clone())),
                    None => return Err(CartError::Promotion(crate::promotion::PromotionError::NotFound)),
                };
                let amount = terms.discount(subtotal, pricing.at).map_err(CartError::Promotion)?;
                sink.write(CartEvent::DiscountApplied { code, amount }, self).await;
                let repriced = self.repricing(&pricing);
                self.write_all(repriced, sink).await;
            }
            CartCommand::RemoveDiscount { pricing } => {
                self.require_open()?;
                let discount = self.discount.clone().ok_or(CartError::NoDiscount)?;
                sink.write(CartEvent::DiscountRemoved { code: discount.code, reason: "removed".to_owned() }, self).await;
                let repriced = self.repricing(&pricing);
                self.write_all(repriced, sink).await;
            }
            CartCommand::CheckOut { order_id, pricing } => {
                self.require_open()?;
                if self.lines.is_empty() {
                    return Err(CartError::Empty);
                }
                if let Some((sku, _)) = self.lines.iter().find(|(_, l)| !l.orderable) {
                    return Err(CartError::ProductUnavailable(sku.clone()));
                }
                // A code that can no longer be used says why itself (exhausted, ended, ...).
                if let (Some(_), Some(Err(e))) = (&self.discount, &pricing.promotion) {
                    return Err(CartError::Promotion(e.clone()));
                }
                if !self.repricing(&pricing).is_empty() {
                    return Err(CartError::Changed);
                }
                let subtotal = self.subtotal().ok_or(CartError::Empty)?;
                let off = self.discount.as_ref().map_or(0, |d| d.amount.amount);
                let total = Money::new(subtotal.amount - off, subtotal.currency);
                sink.write(CartEvent::CheckedOut { order_id, total, at: pricing.at }, self).await;
            }
            CartCommand::Absorb { from, lines, pricing } => {
                self.require_open()?;
                let into = self.id.ok_or(CartError::NotFound)?;
                let mut merged = Vec::new();
                for (sku, quantity) in lines {
                    let existing = self.lines.get(&sku);
                    // Lines beyond the cart's bounds are dropped, not refused: a sign-in never fails
                    // because of what a guest cart held.
                    if existing.is_none() && self.lines.len() + merged.len() >= MAX_LINES {
                        continue;
                    }
                    let Offer::Priced { unit_price, .. } = pricing.offer(&sku) else { continue };
                    let unit_price = existing.map_or(unit_price.money(), |l| l.unit_price);
                    if self.check_currency(unit_price).is_err() {
                        continue;
                    }
                    let line_quantity = (existing.map_or(0, |l| l.quantity) + quantity).min(MAX_QUANTITY);
                    let added = line_quantity - existing.map_or(0, |l| l.quantity);
                    if added > 0 {
                        merged.push(MergedLine { sku, quantity: added, line_quantity, unit_price });
                    }
                }
                sink.write(CartEvent::CartsMerged { from, into, lines: merged, at: pricing.at }, self).await;
                let repriced = self.repricing(&pricing);
                self.write_all(repriced, sink).await;
            }
            CartCommand::Expire { cutoff, at } => {
                self.require_open()?;
                if self.touched_at.is_some_and(|t| t > cutoff) {
                    return Err(CartError::NotDue);
                }
                sink.write(CartEvent::Expired { at }, self).await;
            }
            CartCommand::Remind { cutoff, at } => {
                self.require_open()?;
                let customer = self.customer.ok_or(CartError::NotDue)?;
                if self.reminded || self.lines.is_empty() || self.touched_at.is_some_and(|t| t > cutoff) {
                    return Err(CartError::NotDue);
                }
                sink.write(CartEvent::ReminderDue { customer, at }, self).await;
            }
            CartCommand::CloseMerged { into, at } => {
                self.require_open()?;
                let from = self.id.ok_or(CartError::NotFound)?;
                sink.write(CartEvent::CartsMerged { from, into, lines: Vec::new(), at }, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            CartEvent::Created { tenant, cart_id, customer, token_hash, at } => {
                self.id = Some(cart_id);
                self.tenant = tenant;
                self.customer = customer;
                self.token_hash = token_hash;
                self.status = CartStatus::Open;
                self.priced_at = Some(at);
                self.touched_at = Some(at);
            }
            CartEvent::LineAdded { sku, line_quantity, unit_price, source, at, .. } => {
                self.lines
                    .insert(sku, CartLine { quantity: line_quantity, unit_price, source, previous_unit_price: None, orderable: true });
                self.priced_at = Some(at);
                self.touched_at = Some(at);
            }
            CartEvent::LineQuantityChanged { sku, line_quantity, at } => {
                if let Some(line) = self.lines.get_mut(&sku) {
                    line.quantity = line_quantity;
                    line.previous_unit_price = None;
                }
                self.priced_at = Some(at);
                self.touched_at = Some(at);
            }
            CartEvent::LineRemoved { sku, at } => {
                self.lines.remove(&sku);
                self.priced_at = Some(at);
                self.touched_at = Some(at);
            }
            CartEvent::LineRepriced { sku, previous_unit_price, unit_price, source } => {
                if let Some(line) = self.lines.get_mut(&sku) {
                    line.previous_unit_price = Some(previous_unit_price);
                    line.unit_price = unit_price;
                    line.source = source;
                    line.orderable = true;
                }
            }
            CartEvent::LineUnavailable { sku } => {
                if let Some(line) = self.lines.get_mut(&sku) {
                    line.orderable = false;
                }
            }
            CartEvent::DiscountApplied { code, amount } => {
                self.discount = Some(CartDiscount { code, amount });
                self.discount_problem = None;
            }
            CartEvent::DiscountRemoved { code, reason } => {
                self.discount = None;
                self.discount_problem = (reason != "removed").then_some((code, reason));
            }
            CartEvent::Priced { at } => self.priced_at = Some(at),
            CartEvent::CheckedOut { order_id, .. } => {
                self.status = CartStatus::CheckedOut;
                self.order_id = Some(order_id);
            }
            CartEvent::Expired { .. } => self.status = CartStatus::Expired,
            CartEvent::ReminderDue { .. } => self.reminded = true,
            CartEvent::CartsMerged { from, into, lines, at } => {
                if self.id == Some(from) {
                    self.status = CartStatus::Merged;
                    self.merged_into = Some(into);
                } else {
                    for l in lines {
                        let line = self.lines.entry(l.sku).or_insert(CartLine {
                            quantity: 0,
                            unit_price: l.unit_price,
                            source: PriceSource::Catalogue,
                            previous_unit_price: None,
                            orderable: true,
                        });
                        line.quantity = l.line_quantity;
                    }
                    self.priced_at = Some(at);
                    self.touched_at = Some(at);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::promotion::{DiscountKind, PromotionError, Terms};
    use crate::{Price, Quantity};

    type Given = TestFramework<Cart>;

    fn eur(amount: i64) -> Money {
        Money::new(amount, "EUR".parse().expect("valid"))
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("valid")
    }

    fn sku(s: &str) -> Sku {
        s.parse().expect("valid")
    }

    fn cart_id() -> CartId {
        CartId::from_uuid(uuid::Uuid::from_u128(1))
    }

    fn guest_cart() -> CartId {
        CartId::from_uuid(uuid::Uuid::from_u128(2))
    }

    fn created() -> CartEvent {
        CartEvent::Created {
            tenant: TenantId::default(),
            cart_id: cart_id(),
            customer: Some(UserId::from_uuid(uuid::Uuid::from_u128(3))),
            token_hash: None,
            at: at(0),
        }
    }

    fn code() -> PromotionCode {
        "TEN".parse().expect("valid")
    }

    fn ten_percent() -> Terms {
        Terms { kind: DiscountKind::Percentage { percentage_bp: 1_000 }, min_subtotal: None, starts_at: None, ends_at: None }
    }

    /// The catalogue: each SKU at its price with 10 units available.
    fn pricing(offers: &[(&str, i64)], promotion: Option<Result<Terms, PromotionError>>) -> Pricing {
        let offers = offers
            .iter()
            .map(|(s, price)| (sku(s), Offer::Priced { unit_price: Price::try_from(eur(*price)).expect("valid"), available: 10 }))
            .collect();
        Pricing { offers, promotion, at: at(5) }
    }

    fn added(s: &str, quantity: i64, line_quantity: i64, price: i64) -> CartEvent {
        CartEvent::LineAdded { sku: sku(s), quantity, line_quantity, unit_price: eur(price), source: PriceSource::Catalogue, at: at(5) }
    }

    fn add(s: &str, quantity: i64, pricing: Pricing) -> CartCommand {
        CartCommand::AddLine { sku: sku(s), quantity: Quantity::try_from(quantity).expect("valid"), pricing }
    }

    fn repriced(s: &str, from: i64, to: i64) -> CartEvent {
        CartEvent::LineRepriced { sku: sku(s), previous_unit_price: eur(from), unit_price: eur(to), source: PriceSource::Catalogue }
    }

    #[test]
    fn adding_a_sku_twice_adds_to_its_line() {
        Given::with(())
            .given(vec![created(), added("A", 2, 2, 1_000)])
            .when(add("A", 3, pricing(&[("A", 1_000)], None)))
            .then_expect_events(vec![added("A", 3, 5, 1_000)]);
    }

    #[test]
    fn adding_more_than_is_available_is_refused() {
        Given::with(())
            .given(vec![created(), added("A", 8, 8, 1_000)])
            .when(add("A", 3, pricing(&[("A", 1_000)], None)))
            .then_expect_error(CartError::InsufficientStock { sku: sku("A"), available: 10 });
    }

    #[test]
    fn a_product_not_for_sale_cannot_be_added() {
        Given::with(())
            .given(vec![created()])
            .when(add("A", 1, pricing(&[], None)))
            .then_expect_error(CartError::ProductUnavailable(sku("A")));
    }

    #[test]
    fn a_line_has_at_most_1000_units_and_a_cart_100_lines() {
        let mut catalogue = pricing(&[("A", 1)], None);
        for (_, offer) in catalogue.offers.iter_mut() {
            *offer = Offer::Priced { unit_price: Price::try_from(eur(1)).expect("valid"), available: 5_000 };
        }
        Given::with(()).given(vec![created()]).when(add("A", 1_001, catalogue)).then_expect_error(CartError::InvalidQuantity);
        let mut full = vec![created()];
        full.extend((0..100).map(|n| added(&format!("S{n}"), 1, 1, 100)));
        Given::with(()).given(full).when(add("A", 1, pricing(&[("A", 1)], None))).then_expect_error(CartError::TooManyLines);
    }

    #[test]
    fn every_change_reprices_the_other_lines() {
        Given::with(())
            .given(vec![created(), added("A", 1, 1, 1_000)])
            .when(add("B", 1, pricing(&[("A", 1_200), ("B", 500)], None)))
            .then_expect_events(vec![added("B", 1, 1, 500), repriced("A", 1_000, 1_200)]);
    }

    #[test]
    fn a_line_whose_product_left_the_catalogue_is_marked_and_blocks_checkout() {
        Given::with(())
            .given(vec![created(), added("A", 1, 1, 1_000)])
            .when(CartCommand::Reprice { pricing: pricing(&[], None) })
            .then_expect_events(vec![CartEvent::LineUnavailable { sku: sku("A") }, CartEvent::Priced { at: at(5) }]);
        Given::with(())
            .given(vec![created(), added("A", 1, 1, 1_000), CartEvent::LineUnavailable { sku: sku("A") }])
            .when(CartCommand::CheckOut { order_id: OrderId::from_uuid(uuid::Uuid::from_u128(9)), pricing: pricing(&[], None) })
            .then_expect_error(CartError::ProductUnavailable(sku("A")));
    }

    #[test]
    fn setting_a_quantity_changes_or_removes_the_line() {
        let given = vec![created(), added("A", 1, 1, 1_000)];
        Given::with(())
            .given(given.clone())
            .when(CartCommand::SetQuantity { sku: sku("A"), quantity: 4, pricing: pricing(&[("A", 1_000)], None) })
            .then_expect_events(vec![CartEvent::LineQuantityChanged { sku: sku("A"), line_quantity: 4, at: at(5) }]);
        Given::with(())
            .given(given.clone())
            .when(CartCommand::SetQuantity { sku: sku("A"), quantity: 0, pricing: pricing(&[("A", 1_000)], None) })
            .then_expect_events(vec![CartEvent::LineRemoved { sku: sku("A"), at: at(5) }]);
        Given::with(())
            .given(given.clone())
            .when(CartCommand::SetQuantity { sku: sku("A"), quantity: 11, pricing: pricing(&[("A", 1_000)], None) })
            .then_expect_error(CartError::InsufficientStock { sku: sku("A"), available: 10 });
        Given::with(())
            .given(given)
            .when(CartCommand::SetQuantity { sku: sku("B"), quantity: 1, pricing: pricing(&[("A", 1_000)], None) })
            .then_expect_error(CartError::NoSuchLine(sku("B")));
    }

    #[test]
    fn a_code_applies_to_the_subtotal_and_follows_it() {
        let given = vec![created(), added("A", 2, 2, 1_000)];
        Given::with(())
            .given(given.clone())
            .when(CartCommand::ApplyDiscount { code: code(), pricing: pricing(&[("A", 1_000)], Some(Ok(ten_percent()))) })
            .then_expect_events(vec![CartEvent::DiscountApplied { code: code(), amount: eur(200) }]);
        let mut with_code = given.clone();
        with_code.push(CartEvent::DiscountApplied { code: code(), amount: eur(200) });
        Given::with(())
            .given(with_code.clone())
            .when(add("A", 1, pricing(&[("A", 1_000)], Some(Ok(ten_percent())))))
            .then_expect_events(vec![added("A", 1, 3, 1_000), CartEvent::DiscountApplied { code: code(), amount: eur(300) }]);
        Given::with(())
            .given(with_code)
            .when(CartCommand::Reprice { pricing: pricing(&[("A", 1_000)], Some(Err(PromotionError::Exhausted))) })
            .then_expect_events(vec![
                CartEvent::DiscountRemoved { code: code(), reason: "exhausted".into() },
                CartEvent::Priced { at: at(5) },
            ]);
        Given::with(())
            .given(given)
            .when(CartCommand::ApplyDiscount { code: code(), pricing: pricing(&[("A", 1_000)], Some(Err(PromotionError::Ended))) })
            .then_expect_error(CartError::Promotion(PromotionError::Ended));
    }

    #[test]
    fn checkout_is_refused_when_prices_moved_since_they_were_shown() {
        let order_id = OrderId::from_uuid(uuid::Uuid::from_u128(9));
        let given = vec![created(), added("A", 2, 2, 1_000)];
        Given::with(())
            .given(given.clone())
            .when(CartCommand::CheckOut { order_id, pricing: pricing(&[("A", 1_100)], None) })
            .then_expect_error(CartError::Changed);
        Given::with(())
            .given(given.clone())
            .when(CartCommand::CheckOut { order_id, pricing: pricing(&[("A", 1_000)], None) })
            .then_expect_events(vec![CartEvent::CheckedOut { order_id, total: eur(2_000), at: at(5) }]);
        let mut done = given;
        done.push(CartEvent::CheckedOut { order_id, total: eur(2_000), at: at(5) });
        Given::with(())
            .given(done)
            .when(CartCommand::CheckOut { order_id, pricing: pricing(&[("A", 1_000)], None) })
            .then_expect_error(CartError::Closed);
        Given::with(())
            .given(vec![created()])
            .when(CartCommand::CheckOut { order_id, pricing: pricing(&[], None) })
            .then_expect_error(CartError::Empty);
    }

    #[test]
    fn an_untouched_cart_expires_and_its_customer_is_reminded_once() {
        let given = vec![created(), added("A", 1, 1, 1_000)];
        Given::with(())
            .given(given.clone())
            .when(CartCommand::Expire { cutoff: at(5), at: at(99) })
            .then_expect_events(vec![CartEvent::Expired { at: at(99) }]);
        Given::with(()).given(given.clone()).when(CartCommand::Expire { cutoff: at(4), at: at(99) }).then_expect_error(CartError::NotDue);
        let customer = UserId::from_uuid(uuid::Uuid::from_u128(3));
        Given::with(())
            .given(given.clone())
            .when(CartCommand::Remind { cutoff: at(5), at: at(50) })
            .then_expect_events(vec![CartEvent::ReminderDue { customer, at: at(50) }]);
        let mut reminded = given.clone();
        reminded.push(CartEvent::ReminderDue { customer, at: at(50) });
        Given::with(()).given(reminded).when(CartCommand::Remind { cutoff: at(60), at: at(70) }).then_expect_error(CartError::NotDue);
        let mut expired = given;
        expired.push(CartEvent::Expired { at: at(99) });
        Given::with(()).given(expired).when(add("A", 1, pricing(&[("A", 1_000)], None))).then_expect_error(CartError::Closed);
    }

    #[test]
    fn a_guest_cart_merges_into_the_customers_and_closes() {
        let merged = |lines| CartEvent::CartsMerged { from: guest_cart(), into: cart_id(), lines, at: at(5) };
        Given::with(())
            .given(vec![created(), added("A", 2, 2, 1_000)])
            .when(CartCommand::Absorb {
                from: guest_cart(),
                lines: vec![(sku("A"), 3), (sku("B"), 1)],
                pricing: pricing(&[("A", 1_000), ("B", 500)], None),
            })
            .then_expect_events(vec![merged(vec![
                MergedLine { sku: sku("A"), quantity: 3, line_quantity: 5, unit_price: eur(1_000) },
                MergedLine { sku: sku("B"), quantity: 1, line_quantity: 1, unit_price: eur(500) },
            ])]);
        let guest = CartEvent::Created {
            tenant: TenantId::default(),
            cart_id: guest_cart(),
            customer: None,
            token_hash: Some(TokenHash("h".into())),
            at: at(0),
        };
        Given::with(())
            .given(vec![guest.clone()])
            .when(CartCommand::CloseMerged { into: cart_id(), at: at(5) })
            .then_expect_events(vec![merged(vec![])]);
        let mut closed = Cart::default();
        closed.apply(guest);
        closed.apply(merged(vec![]));
        assert_eq!(closed.status, CartStatus::Merged);
    }
}
