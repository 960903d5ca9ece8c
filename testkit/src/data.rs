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
        city: "Berlin".parse().expect("valid"),
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

/// Writes a small shop's worth of events: products in two tenants, stock, users.
pub async fn write_events(t: &TestStore) {
    let meta = Metadata::default();
    let products = Repository::<Product>::new(t.store.clone(), ());
    for (tenant, n) in [("acme", 0u128), ("acme", 1), ("globex", 2)] {
        let tenant: TenantId = tenant.parse().expect("valid");
        let id = ProductId::from_uuid(uuid::Uuid::from_u128(n + 1));
        let stream = domain::stream_id(&tenant, id);
        let create = ProductCommand::Create {
            tenant: tenant.clone(),
            product_id: id,
            sku: format!("SKU-{n}").parse().expect("valid"),
            name: format!("Product {n}").parse().expect("valid"),
            description: "desc".parse().expect("valid"),
            category: "electronics/phones".parse().expect("valid"),
            price: eur(1000 + n as i64),
            attributes: Attributes::from([("featured".into(), "true".into())]),
        };
        products.execute(&stream, create, None, &meta).await.expect("create");
        products.execute(&stream, ProductCommand::ChangePrice { price: eur(900) }, None, &meta).await.expect("price");
        products.execute(&stream, ProductCommand::Publish, None, &meta).await.expect("publish");
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
    let products = Repository::<Product>::new(t.store.clone(), ());
    let id = ProductId::new();
    let create = ProductCommand::Create {
        tenant: tenant.clone(),
        product_id: id,
        sku: format!("F-{}", id.as_uuid().simple()).to_uppercase().parse().expect("valid"),
        name: "Foreign".parse().expect("valid"),
        description: "".parse().expect("valid"),
        category: "misc".parse().expect("valid"),
        price: eur(100),
        attributes: Attributes::new(),
    };
    products.execute(&domain::stream_id(&tenant, id), create, None, &meta).await.expect("create");
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
