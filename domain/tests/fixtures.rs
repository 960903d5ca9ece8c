//! Stored events stay readable: `domain/fixtures/events/<aggregate_type>/<event_type>.v<version>.json`
//! holds one payload per event type and version as the code of its day wrote it, and these
//! tests read every one of them through the upcasters (`domain::upcast`) and today's code.
//!
//! The samples below are today's events, built as Rust values: each must equal the fixture of
//! its current version, so a change to how an event is written fails here unless it comes with
//! a new version and a step. `SHOP_WRITE_FIXTURES=1` writes the fixtures that do not exist yet
//! (never one that does: a fixture is the record of what was stored).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Once;

use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::DomainEvent;
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use domain::admins::AdminRosterEvent;
use domain::cart::{CartEvent, CustomerCartsEvent, MergedLine, PriceSource};
use domain::claim::{ClaimEvent, EmailKind, SkuKind};
use domain::order::{CancelReason, InvoiceEvent, OrderDiscount, OrderEvent, OrderLine, ShippingAddress};
use domain::payment::{FailureReason, PaymentEvent};
use domain::product::ProductEvent;
use domain::promotion::{DiscountKind, PromotionEvent, Terms};
use domain::session::{RevocationReason, SessionEvent};
use domain::settings::{SellerAddress, SellerSettings, SettingsEvent};
use domain::stock::StockEvent;
use domain::upcast::{current_version, reread, upcast};
use domain::user::{PasswordHash, Role, TokenHash, UserEvent};
use domain::{CartId, Money, OrderId, PaymentId, Price, ProductId, SessionId, TenantId, UserId};

/// `(aggregate_type, payload, event_type, event_version)`, as the store would keep it.
type Sample = (&'static str, Value, String, String);

const WRITE_VAR: &str = "SHOP_WRITE_FIXTURES";

// ---------------------------------------------------------------------------------------------
// Fixed values

fn parse<T: FromStr>(s: &str) -> T
where
    T::Err: Debug,
{
    s.parse().unwrap_or_else(|e| panic!("{s:?} is a valid value: {e:?}"))
}

/// A UUIDv7-shaped id; `n` tells the entities apart.
fn uuid(n: u128) -> Uuid {
    Uuid::from_u128(0x0192_4a7e_3c00_7000_8000_0000_0000_0000 | n)
}

fn tenant() -> TenantId {
    parse("acme")
}
fn user() -> UserId {
    UserId::from_uuid(uuid(0x01))
}
fn other_user() -> UserId {
    UserId::from_uuid(uuid(0x02))
}
fn product() -> ProductId {
    ProductId::from_uuid(uuid(0x11))
}
fn order() -> OrderId {
    OrderId::from_uuid(uuid(0x21))
}
fn payment() -> PaymentId {
    PaymentId::from_uuid(uuid(0x31))
}
fn cart() -> CartId {
    CartId::from_uuid(uuid(0x41))
}
fn guest_cart() -> CartId {
    CartId::from_uuid(uuid(0x42))
}
fn session() -> SessionId {
    SessionId::from_uuid(uuid(0x51))
}

/// 2024-10-`day` at `h:m` UTC.
fn at(day: u32, h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 10, day, h, m, 0).single().expect("a valid instant")
}

fn eur(minor: i64) -> Money {
    Money::new(minor, parse("EUR"))
}
fn price(minor: i64) -> Price {
    Price::try_from(eur(minor)).expect("a price is not negative")
}

fn password_hash() -> PasswordHash {
    PasswordHash("$argon2id$v=19$m=19456,t=2,p=1$q83vEjRWeJCrze8SNFZ4kA$0yZ4Qd1tLQ7b2N8Vr9Z3k9H1mY3uXo6pE5cF2aBwJgM".to_owned())
}
/// SHA-256 (hex) of a token: what events keep instead of the token.
fn token_hash(n: u8) -> TokenHash {
    TokenHash(format!("{:02x}", n).repeat(32))
}

fn tshirt() -> domain::Sku {
    parse("TSHIRT-BLK-M")
}
fn mug() -> domain::Sku {
    parse("MUG-WHT")
}
fn code() -> domain::PromotionCode {
    parse("SUMMER-10")
}

// ---------------------------------------------------------------------------------------------
// A sample of every variant of every event enum: the enums' own schemas list their variants
// (`domain::schema::variants`), so `the_samples_cover_every_variant_of_every_event_enum` asks
// for a sample of a new one.

fn user_events() -> Vec<UserEvent> {
    vec![
        UserEvent::Registered {
            tenant: tenant(),
            user_id: user(),
            email: parse("ada.lovelace@example.com"),
            name: parse("Ada Lovelace"),
            password_hash: password_hash(),
            roles: BTreeSet::from([Role::Customer]),
        },
        UserEvent::ProfileChanged { name: parse("Ada King") },
        UserEvent::MarketingEmailsSet { allowed: true },
        UserEvent::PhoneChanged { phone: Some(parse("+4915112345678")) },
        UserEvent::SmsSet { allowed: true },
        UserEvent::PasswordChanged { password_hash: password_hash() },
        UserEvent::PasswordResetRequested { token_hash: token_hash(0xa1), expires_at: at(2, 10, 30), requested_at: Some(at(2, 10, 0)) },
        UserEvent::PasswordResetCompleted { password_hash: password_hash() },
        UserEvent::Deactivated,
        UserEvent::Erased,
        UserEvent::RoleGranted { role: Role::Admin },
        UserEvent::RoleRevoked { role: Role::Admin },
    ]
}

fn admin_roster_events() -> Vec<AdminRosterEvent> {
    vec![AdminRosterEvent::Enrolled { user: user() }, AdminRosterEvent::Removed { user: other_user() }]
}

fn invoice_events() -> Vec<InvoiceEvent> {
    vec![InvoiceEvent::Issued { number: 1042, order_id: order() }]
}

fn order_events() -> Vec<OrderEvent> {
    // 2 × 19.99 + 12.50 = 52.48, less 10% (5.25) = 47.23, 19% tax 8.97, shipping 4.95: 61.15.
    vec![
        OrderEvent::Placed {
            tenant: tenant(),
            order_id: order(),
            customer: user(),
            lines: vec![
                OrderLine { sku: tshirt(), quantity: 2, unit_price: eur(1999), name: Some(parse("T-shirt, black, M")) },
                OrderLine { sku: mug(), quantity: 1, unit_price: eur(1250), name: Some(parse("Mug, white")) },
            ],
            subtotal: eur(5248),
            tax: eur(897),
            shipping: eur(495),
            total: eur(6115),
            shipping_address: ShippingAddress {
                name: parse("Ada Lovelace"),
                line1: parse("Friedrichstraße 123"),
                line2: Some(parse("Hinterhaus, 3. OG")),
                city: parse("Berlin"),
                region: Some(parse("Berlin")),
                postal_code: parse("10117"),
                country: parse("DE"),
            },
            payment_method: "visa_4242".to_owned(),
            discount: Some(OrderDiscount { code: code(), amount: eur(525) }),
            tax_rate_bp: Some(1900),
        },
        OrderEvent::StockReserved { expires_at: at(1, 9, 45) },
        OrderEvent::StockRejected { sku: mug() },
        OrderEvent::PaymentAuthorised { payment_id: payment() },
        OrderEvent::PaymentFailed { reason: CancelReason::PaymentDeclined },
        OrderEvent::Confirmed,
        OrderEvent::Cancelled { reason: CancelReason::CancelledByCustomer },
        OrderEvent::Shipped { carrier: parse("DHL"), tracking_number: parse("00340434161094042557") },
        OrderEvent::Delivered,
        OrderEvent::Refunded { amount: eur(1250), refunded_total: eur(2500) },
        OrderEvent::Invoiced { number: 1042 },
        OrderEvent::Restocked,
        OrderEvent::StockReleased,
    ]
}

fn email_claim_events() -> Vec<ClaimEvent<EmailKind>> {
    vec![
        ClaimEvent::Claimed { tenant: tenant(), key: parse("ada.lovelace@example.com"), owner: user() },
        ClaimEvent::Released { owner: user() },
    ]
}

fn sku_claim_events() -> Vec<ClaimEvent<SkuKind>> {
    vec![ClaimEvent::Claimed { tenant: tenant(), key: tshirt(), owner: product() }, ClaimEvent::Released { owner: product() }]
}

fn payment_events() -> Vec<PaymentEvent> {
    let refund_id = || uuid(0x61).to_string();
    vec![
        PaymentEvent::AuthorisationRequested {
            tenant: tenant(),
            order_id: order(),
            customer: user(),
            amount: eur(6115),
            method: "visa_4242".to_owned(),
        },
        PaymentEvent::Authorised { reference: "sim_auth_7Qx2LmN9".to_owned() },
        PaymentEvent::Failed { reason: FailureReason::Declined },
        PaymentEvent::Captured { amount: eur(6115) },
        PaymentEvent::CaptureFailed,
        PaymentEvent::Voided,
        PaymentEvent::RefundRequested { refund_id: refund_id(), amount: eur(1250) },
        PaymentEvent::Refunded { refund_id: refund_id(), amount: eur(1250), refunded_total: eur(2500) },
    ]
}

fn settings_events() -> Vec<SettingsEvent> {
    vec![SettingsEvent::Updated {
        tenant: tenant(),
        settings: SellerSettings {
            legal_name: parse("Acme Handels GmbH"),
            address: SellerAddress {
                line1: parse("Torstraße 1"),
                city: parse("Berlin"),
                postal_code: parse("10119"),
                country: parse("DE"),
            },
            vat_id: Some(parse("DE123456789")),
            currency: parse("EUR"),
            tax_rate_bp: 1900,
            shipping_amount: 495,
            free_shipping_threshold: Some(5000),
        },
    }]
}

fn session_events() -> Vec<SessionEvent> {
    vec![
        SessionEvent::Started {
            tenant: tenant(),
            session_id: session(),
            user_id: user(),
            token_hash: token_hash(0xb1),
            expires_at: at(1, 10, 0),
            epoch: 3,
            ends_at: Some(at(31, 9, 30)),
        },
        SessionEvent::Rotated { token_hash: token_hash(0xb2), expires_at: at(1, 10, 45), ends_at: Some(at(31, 9, 30)) },
        SessionEvent::Revoked { reason: RevocationReason::ReuseDetected },
    ]
}

fn cart_events() -> Vec<CartEvent> {
    vec![
        // Both optional fields set to show them (a customer's cart has no token hash).
        CartEvent::Created {
            tenant: tenant(),
            cart_id: cart(),
            customer: Some(user()),
            token_hash: Some(token_hash(0xc1)),
            at: at(1, 8, 0),
        },
        CartEvent::LineAdded {
            sku: tshirt(),
            quantity: 2,
            line_quantity: 2,
            unit_price: eur(1999),
            source: PriceSource::Catalogue,
            at: at(1, 8, 5),
        },
        CartEvent::LineQuantityChanged { sku: tshirt(), line_quantity: 3, at: at(1, 8, 10) },
        CartEvent::LineRemoved { sku: mug(), at: at(1, 8, 15) },
        CartEvent::LineRepriced { sku: tshirt(), previous_unit_price: eur(1999), unit_price: eur(1799), source: PriceSource::Catalogue },
        CartEvent::LineUnavailable { sku: mug() },
        CartEvent::DiscountApplied { code: code(), amount: eur(525) },
        CartEvent::DiscountRemoved { code: code(), reason: "removed".to_owned() },
        CartEvent::Priced { at: at(1, 8, 20) },
        CartEvent::CheckedOut { order_id: order(), total: eur(6115), at: at(1, 9, 30) },
        CartEvent::CartsMerged {
            from: guest_cart(),
            into: cart(),
            lines: vec![MergedLine { sku: mug(), quantity: 1, line_quantity: 1, unit_price: eur(1250) }],
            at: at(1, 8, 2),
        },
        CartEvent::Expired { at: at(8, 8, 0) },
        CartEvent::ReminderDue { customer: user(), at: at(2, 8, 0) },
    ]
}

fn customer_carts_events() -> Vec<CustomerCartsEvent> {
    vec![CustomerCartsEvent::Opened { cart_id: cart() }]
}

fn product_events() -> Vec<ProductEvent> {
    let attributes = |size: &str| BTreeMap::from([("colour".to_owned(), "black".to_owned()), ("size".to_owned(), size.to_owned())]);
    vec![
        ProductEvent::Created {
            tenant: tenant(),
            product_id: product(),
            sku: tshirt(),
            name: parse("T-shirt, black, M"),
            description: parse("Organic cotton, 180 g/m², made in Portugal."),
            category: parse("apparel/t-shirts"),
            price: price(1999),
            attributes: attributes("M"),
        },
        ProductEvent::DetailsUpdated {
            name: parse("T-shirt, black, M (unisex)"),
            description: parse("Organic cotton, 180 g/m², made in Portugal. Unisex fit."),
            category: parse("apparel/t-shirts/unisex"),
            attributes: attributes("M"),
        },
        ProductEvent::PriceChanged { previous: price(1999), price: price(1799) },
        ProductEvent::Published,
        ProductEvent::Unpublished,
        ProductEvent::Discontinued,
    ]
}

fn stock_events() -> Vec<StockEvent> {
    vec![
        StockEvent::Received { tenant: tenant(), sku: tshirt(), quantity: 50, on_hand: 50, available: 50 },
        StockEvent::Adjusted {
            tenant: tenant(),
            sku: tshirt(),
            delta: -2,
            reason: parse("Damaged in the warehouse"),
            on_hand: 48,
            available: 48,
        },
        StockEvent::Reserved { order_id: order(), quantity: 2, expires_at: at(1, 9, 45), available: 46 },
        StockEvent::Released { order_id: order(), quantity: 2, available: 48 },
        StockEvent::Committed { order_id: order(), quantity: 2, on_hand: 46, available: 46 },
    ]
}

fn promotion_events() -> Vec<PromotionEvent> {
    vec![
        // One fixture per event type: a percentage code (a fixed one is `"kind": "fixed"` with
        // an `amount` instead of `percentage_bp`).
        PromotionEvent::Created {
            tenant: tenant(),
            code: code(),
            terms: Terms {
                kind: DiscountKind::Percentage { percentage_bp: 1000 },
                min_subtotal: Some(eur(2000)),
                starts_at: Some(at(1, 0, 0)),
                ends_at: Some(at(31, 23, 59)),
            },
            usage_limit: Some(500),
            per_customer_limit: Some(1),
        },
        PromotionEvent::Deactivated,
        PromotionEvent::Redeemed { order_id: order(), customer: user(), discount: eur(525), uses: 17 },
        PromotionEvent::Released { order_id: order(), uses: 16 },
    ]
}

fn stored<E: Serialize + DomainEvent>(aggregate_type: &'static str, events: Vec<E>) -> impl Iterator<Item = Sample> {
    events.into_iter().map(move |e| {
        let payload = serde_json::to_value(&e).expect("an event serialises");
        (aggregate_type, payload, e.event_type(), e.event_version())
    })
}

/// One sample of every variant of every event enum, as today's code stores it.
fn samples() -> Vec<Sample> {
    let mut all = Vec::new();
    all.extend(stored("user", user_events()));
    all.extend(stored("admin_roster", admin_roster_events()));
    all.extend(stored("invoice_book", invoice_events()));
    all.extend(stored("order", order_events()));
    all.extend(stored("email_claim", email_claim_events()));
    all.extend(stored("sku_claim", sku_claim_events()));
    all.extend(stored("payment", payment_events()));
    all.extend(stored("tenant_settings", settings_events()));
    all.extend(stored("session", session_events()));
    all.extend(stored("cart", cart_events()));
    all.extend(stored("customer_carts", customer_carts_events()));
    all.extend(stored("product", product_events()));
    all.extend(stored("stock", stock_events()));
    all.extend(stored("promotion", promotion_events()));
    all
}

// ---------------------------------------------------------------------------------------------
// Fixture files

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join("events")
}

fn fixture_path(aggregate_type: &str, event_type: &str, version: &str) -> PathBuf {
    fixtures_dir().join(aggregate_type).join(format!("{event_type}.v{version}.json"))
}

fn fixture_text(aggregate_type: &str, event_type: &str, version: &str, payload: &Value) -> String {
    let file = json!({
        "aggregate_type": aggregate_type,
        "event_type": event_type,
        "event_version": version,
        "payload": payload,
    });
    let mut text = serde_json::to_string_pretty(&file).expect("json serialises");
    text.push('\n');
    text
}

/// With `SHOP_WRITE_FIXTURES=1`, writes every sample's fixture that does not exist yet (once
/// per test run, before any test reads the directory). An existing fixture is never touched.
fn write_missing_fixtures() {
    static WRITE: Once = Once::new();
    WRITE.call_once(|| {
        if std::env::var(WRITE_VAR).as_deref() != Ok("1") {
            return;
        }
        for (aggregate_type, payload, event_type, version) in samples() {
            let path = fixture_path(aggregate_type, &event_type, &version);
            let dir = path.parent().expect("a fixture has a directory");
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
            let created = std::fs::OpenOptions::new().write(true).create_new(true).open(&path);
            match created {
                Ok(mut file) => {
                    use std::io::Write;
                    file.write_all(fixture_text(aggregate_type, &event_type, &version, &payload).as_bytes())
                        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
                    eprintln!("wrote {}", path.display());
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => panic!("cannot create {}: {e}", path.display()),
            }
        }
    });
}

/// A fixture file as read, with where it was found.
struct Fixture {
    path: PathBuf,
    /// The directory it is in and its file name.
    dir_name: String,
    file_name: String,
    aggregate_type: String,
    event_type: String,
    event_version: String,
    payload: Value,
}

fn text_field(file: &Value, field: &str, path: &Path) -> String {
    file.get(field).and_then(Value::as_str).unwrap_or_else(|| panic!("{}: no string {field:?}", path.display())).to_owned()
}

/// Every fixture file under `domain/fixtures/events/<aggregate_type>/`.
fn fixtures() -> Vec<Fixture> {
    write_missing_fixtures();
    let root = fixtures_dir();
    let mut found = Vec::new();
    let dirs = std::fs::read_dir(&root).unwrap_or_else(|e| panic!("cannot read {}: {e}", root.display()));
    for dir in dirs {
        let dir = dir.expect("a directory entry").path();
        if !dir.is_dir() {
            continue; // README.md
        }
        let dir_name = dir.file_name().and_then(|n| n.to_str()).expect("a utf-8 name").to_owned();
        for file in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display())) {
            let path = file.expect("a directory entry").path();
            let file_name = path.file_name().and_then(|n| n.to_str()).expect("a utf-8 name").to_owned();
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let file: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not json: {e}", path.display()));
            let payload = file.get("payload").cloned().unwrap_or_else(|| panic!("{}: no \"payload\"", path.display()));
            found.push(Fixture {
                aggregate_type: text_field(&file, "aggregate_type", &path),
                event_type: text_field(&file, "event_type", &path),
                event_version: text_field(&file, "event_version", &path),
                payload,
                dir_name: dir_name.clone(),
                file_name,
                path,
            });
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    assert!(!found.is_empty(), "no fixtures under {}", root.display());
    found
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn every_fixture_brought_to_the_current_version_reads_with_todays_code() {
    for f in fixtures() {
        let (mut version, mut payload) = (f.event_version.clone(), f.payload.clone());
        upcast(&f.aggregate_type, &f.event_type, &mut version, &mut payload);
        let current = current_version(&f.aggregate_type, &f.event_type);
        assert_eq!(
            version,
            current,
            "{}: upcasting stops at version {version}, but the current version is {current}: a Step in domain/src/upcast.rs is missing",
            f.path.display()
        );
        let reread = reread(&f.aggregate_type, &payload)
            .unwrap_or_else(|e| panic!("{}: today's code cannot read it after upcasting: {e}\npayload: {payload:#}", f.path.display()));
        assert_eq!(
            reread,
            payload,
            "{}: after upcasting, today's code writes it back differently (a field the steps leave that the event does not have, \
             or one they misname)",
            f.path.display()
        );
    }
}

#[test]
fn a_fixture_of_the_current_version_reads_back_to_exactly_the_same_json() {
    let mut current = 0;
    for f in fixtures() {
        if f.event_version != current_version(&f.aggregate_type, &f.event_type) {
            continue;
        }
        current += 1;
        let back =
            reread(&f.aggregate_type, &f.payload).unwrap_or_else(|e| panic!("{}: today's code cannot read it: {e}", f.path.display()));
        assert_eq!(
            back,
            f.payload,
            "{}: today's code reads this payload of the current version and writes something else (a renamed, retyped or dropped \
             field): bump the version, add a Step in domain/src/upcast.rs, and run with {WRITE_VAR}=1",
            f.path.display()
        );
    }
    assert!(current > 0, "no fixture is of the current version");
}

#[test]
fn every_sample_has_a_fixture_at_its_current_version_equal_to_what_todays_code_writes() {
    write_missing_fixtures();
    let mut missing = Vec::new();
    for (aggregate_type, payload, event_type, version) in samples() {
        let current = current_version(aggregate_type, &event_type);
        assert_eq!(
            version, current,
            "{aggregate_type}/{event_type}: event_version() says {version} but domain/src/upcast.rs's current version is {current}: \
             add a Step from {current} to {version} in domain/src/upcast.rs"
        );
        let path = fixture_path(aggregate_type, &event_type, &version);
        let Ok(text) = std::fs::read_to_string(&path) else {
            missing.push(path.display().to_string());
            continue;
        };
        let fixture: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not json: {e}", path.display()));
        assert_eq!(
            fixture.get("payload"),
            Some(&payload),
            "{}: today's code writes {aggregate_type}/{event_type} differently from its fixture of version {version}; a stored \
             event's shape never changes under one version: bump the version in event_version(), add a Step in \
             domain/src/upcast.rs, and run with {WRITE_VAR}=1 cargo test -p domain --test fixtures",
            path.display()
        );
    }
    assert!(
        missing.is_empty(),
        "no fixture for today's version of these events; run `{WRITE_VAR}=1 cargo test -p domain --test fixtures` and check them in:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_samples_cover_every_variant_of_every_event_enum() {
    let samples = samples();
    for aggregate_type in domain::history::AGGREGATE_TYPES {
        let schema = domain::schema::event_schema(aggregate_type).expect("a schema").to_value();
        let sampled: BTreeSet<&str> = samples.iter().filter(|(a, ..)| a == aggregate_type).map(|(_, _, t, _)| t.as_str()).collect();
        let variants: BTreeSet<String> = domain::schema::variants(&schema).into_iter().map(|(name, _)| name).collect();
        let unsampled: Vec<_> = variants.iter().filter(|v| !sampled.contains(v.as_str())).collect();
        assert!(unsampled.is_empty(), "{aggregate_type}: no sample of {unsampled:?}; add one in tests/fixtures.rs");
    }
    for (aggregate_type, payload, event_type, _) in &samples {
        let tag = payload.as_object().and_then(|m| m.keys().next()).map(String::as_str).or(payload.as_str());
        assert_eq!(tag, Some(event_type.as_str()), "{aggregate_type}: the name of a variant is its event type");
    }

    // One sample per event type and aggregate: each is the one fixture of its type and version.
    let keys: BTreeSet<(&str, &str)> = samples.iter().map(|(a, _, t, _)| (*a, t.as_str())).collect();
    assert_eq!(keys.len(), samples.len(), "two samples of one event type would share one fixture file");
}

#[test]
fn no_fixture_disagrees_with_its_file_name() {
    for f in fixtures() {
        assert_eq!(f.aggregate_type, f.dir_name, "{}: its aggregate_type is not its directory", f.path.display());
        let expected = format!("{}.v{}.json", f.event_type, f.event_version);
        assert_eq!(f.file_name, expected, "{}: its event type and version are not its file name", f.path.display());
        let text = std::fs::read_to_string(&f.path).expect("read before");
        assert_eq!(
            text,
            fixture_text(&f.aggregate_type, &f.event_type, &f.event_version, &f.payload),
            "{}: not in the written form (pretty json, sorted keys, a trailing newline)",
            f.path.display()
        );
        let known = !matches!(reread(&f.aggregate_type, &Value::Null), Err(e) if e.starts_with("no aggregate type"));
        assert!(known, "{}: domain::upcast::reread knows no aggregate type {:?}", f.path.display(), f.aggregate_type);
    }
}
