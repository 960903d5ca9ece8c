//! A small shop's worth of real events, and every read-model row as text (the projection
//! tests and the Kafka-source tests).

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use domain::product::{Attributes, Product, ProductCommand};
use domain::stock::{Stock, StockCommand};
use domain::user::{HashingUnavailable, Password, PasswordHash, PasswordHasher, Role, User, UserCommand, UserServices};
use domain::{Money, OrderId, Price, ProductId, Quantity, TenantId, UserId};
use sqlx::Row as _;
use store::{Metadata, Repository};

use worker_kit::ReadDb;

use crate::TestStore;

/// A shipping address for test orders.
pub fn address() -> domain::order::ShippingAddress {
    domain::order::ShippingAddress {
        name: "Ada".parse().expect("valid"),
        line1: "1 Main St".parse().expect("valid"),
        line2: None,
        city: "Berlin".parse().expect("valid"),
        region: None,
        postal_code: "10115".parse().expect("valid"),
        country: "DE".parse().expect("valid"),
    }
}

/// Stores the password as its own "hash": tests only.
pub struct PlainHasher;

#[async_trait]
impl PasswordHasher for PlainHasher {
    async fn hash(&self, p: &Password) -> Result<PasswordHash, HashingUnavailable> {
        Ok(PasswordHash(p.expose().to_owned()))
    }
    async fn verify(&self, p: &Password, h: &PasswordHash) -> bool {
        p.expose() == h.0
    }
}

pub fn eur(amount: i64) -> Price {
    Price::try_from(Money::new(amount, "EUR".parse().expect("valid"))).expect("valid")
}

/// A product for a test to write: what `ProductCommand::Create` takes, as text.
#[derive(Debug, Clone)]
pub struct TestProduct<'a> {
    pub tenant: &'a str,
    /// The product id is the uuid of this number.
    pub n: u128,
    pub sku: &'a str,
    pub name: &'a str,
    pub description: &'a str,
    pub category: &'a str,
    /// Euro cents.
    pub price: i64,
    pub featured: bool,
}

impl Default for TestProduct<'_> {
    fn default() -> Self {
        Self { tenant: "default", n: 1, sku: "SKU-1", name: "Product", description: "", category: "misc", price: 1000, featured: false }
    }
}

/// Creates `p` and then runs `then` on it (price changes, publication…), all with `meta`;
/// the position of the last write.
pub async fn write_product(store: &store::EventStore, p: &TestProduct<'_>, then: Vec<ProductCommand>, meta: &Metadata) -> i64 {
    let repo = Repository::<Product>::new(store.clone(), ());
    let tenant: TenantId = p.tenant.parse().expect("valid tenant");
    let id = ProductId::from_uuid(uuid::Uuid::from_u128(p.n));
    let stream = domain::stream_id(&tenant, id);
    let attributes = if p.featured { Attributes::from([("featured".into(), "true".into())]) } else { Attributes::new() };
    let create = ProductCommand::Create {
        tenant,
        product_id: id,
        sku: p.sku.parse().expect("valid sku"),
        name: p.name.parse().expect("valid name"),
        description: p.description.parse().expect("valid description"),
        category: p.category.parse().expect("valid category"),
        price: eur(p.price),
        attributes,
    };
    let mut last = repo.execute(&stream, create, None, meta).await.expect("create").position;
    for command in then {
        last = repo.execute(&stream, command, None, meta).await.expect("product command").position;
    }
    last
}

/// Writes a small shop's worth of events: products in two tenants, stock, users.
pub async fn write_events(t: &TestStore) {
    let meta = Metadata::default();
    for (tenant, n) in [("acme", 0u128), ("acme", 1), ("globex", 2)] {
        let (sku, name) = (format!("SKU-{n}"), format!("Product {n}"));
        let p = TestProduct {
            tenant,
            n: n + 1,
            sku: &sku,
            name: &name,
            description: "desc",
            category: "electronics/phones",
            price: 1000 + n as i64,
            featured: true,
        };
        write_product(&t.store, &p, vec![ProductCommand::ChangePrice { price: eur(900) }, ProductCommand::Publish], &meta).await;
    }
    let stock = Repository::<Stock>::new(t.store.clone(), ());
    let acme: TenantId = "acme".parse().expect("valid");
    let receive = StockCommand::Receive {
        tenant: acme.clone(),
        sku: "SKU-0".parse().expect("valid"),
        quantity: Quantity::try_from(10).expect("valid"),
    };
    stock.execute("acme:SKU-0", receive, None, &meta).await.expect("receive");
    let reserve = StockCommand::Reserve {
        tenant: acme.clone(),
        sku: "SKU-0".parse().expect("valid"),
        order_id: OrderId::new(),
        quantity: Quantity::try_from(3).expect("valid"),
        expires_at: Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).single().expect("valid"),
    };
    stock.execute("acme:SKU-0", reserve, None, &meta).await.expect("reserve");
    let users = Repository::<User>::new(t.store.clone(), UserServices { hasher: Arc::new(PlainHasher) });
    let user_id = UserId::from_uuid(uuid::Uuid::from_u128(99));
    let register = UserCommand::Register {
        tenant: acme.clone(),
        user_id,
        email: "ada@acme.example".parse().expect("valid"),
        name: "Ada".parse().expect("valid"),
        password: "correct horse".parse().expect("valid"),
        roles: BTreeSet::from([Role::Customer]),
    };
    let stream = domain::stream_id(&acme, user_id);
    users.execute(&stream, register, None, &meta).await.expect("register");
    users.execute(&stream, UserCommand::GrantRole { role: Role::Admin }, None, &meta).await.expect("grant");
}

/// Every read-model row as text, in a fixed order.
pub async fn dump(db: &ReadDb) -> Vec<String> {
    let mut out = Vec::new();
    for (sql, cols) in [
        ("SELECT tenant, product_id, sku, name, category, price_amount, price_currency, published, featured, version FROM rm_products ORDER BY tenant, product_id", 10),
        ("SELECT tenant, sku, on_hand, reserved, available, version FROM rm_stock ORDER BY tenant, sku", 6),
        ("SELECT tenant, user_id, email, name, roles, active, version FROM rm_users ORDER BY tenant, user_id", 7),
    ] {
        for row in sqlx::query(sql).fetch_all(&db.pool).await.expect("dump") {
            let fields: Vec<String> = (0..cols)
                .map(|i| row.try_get::<String, _>(i).or_else(|_| row.try_get::<i64, _>(i).map(|n| n.to_string())).expect("text or number"))
                .collect();
            out.push(fields.join("|"));
        }
    }
    out
}

/// Writes one product and then `n` stock receipts, steps `consumer` alone on a driver (batches
/// of 50) and checks that its checkpoint reaches the last receipt: a reader's checkpoint moves
/// through batches that hold none of its events (or only events it passes over).
pub async fn moves_past_foreign_events<C: worker_kit::Consumer>(t: &TestStore, consumer: Arc<C>, n: usize) {
    let meta = Metadata::default();
    let tenant = TenantId::default();
    let id = uuid::Uuid::now_v7().as_u128();
    let sku = format!("F-{id:032X}");
    write_product(&t.store, &TestProduct { n: id, sku: &sku, name: "Foreign", ..TestProduct::default() }, Vec::new(), &meta).await;
    let stock = Repository::<Stock>::new(t.store.clone(), ());
    let sku: domain::Sku = "FOREIGN-1".parse().expect("valid");
    let mut last = 0;
    for _ in 0..n {
        let receive = StockCommand::Receive { tenant: tenant.clone(), sku: sku.clone(), quantity: Quantity::try_from(1).expect("valid") };
        last = stock.execute(&domain::stream_id(&tenant, &sku), receive, None, &meta).await.expect("receive").position;
    }
    let driver = worker_kit::Driver::single("test", t.store.clone(), Arc::clone(&consumer)).with_batch_size(50);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        driver.try_process_next().await.expect("a batch of foreign events is no failure");
        let checkpoint = consumer.checkpoint().await.expect("checkpoint");
        if worker_kit::reached(&t.store, checkpoint, last).await.expect("reached") {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{} never reached position {last}: checkpoint {checkpoint:?}", consumer.name());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// An order of `lines` (SKU, units) at 10.00 EUR a unit, 20% tax, `shipping_minor` EUR cents of
/// shipping, to [`address`], paid with `method` (`tok_approve`, `tok_decline`, …).
pub fn placement(
    tenant: &domain::TenantId,
    order_id: domain::OrderId,
    customer: domain::UserId,
    lines: &[(&str, i64)],
    shipping_minor: i64,
    method: &str,
) -> domain::order::OrderCommand {
    let eur = |minor| domain::Money::new(minor, "EUR".parse().expect("valid"));
    domain::order::OrderCommand::Place {
        tenant: tenant.clone(),
        order_id,
        customer,
        lines: lines
            .iter()
            .map(|(sku, units)| domain::order::PricedLine {
                sku: sku.parse().expect("valid"),
                quantity: domain::Quantity::try_from(*units).expect("valid"),
                unit_price: domain::Price::try_from(eur(1_000)).expect("valid"),
                name: None,
            })
            .collect(),
        discount: None,
        tax_rate_bp: 2000,
        shipping: eur(shipping_minor),
        shipping_address: address(),
        payment_method: method.into(),
    }
}
