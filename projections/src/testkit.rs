//! Test support shared by the projection tests and the Kafka-source tests: a small shop's
//! worth of real events, and every read-model row as text.
#![doc(hidden)]

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

use crate::ReadDb;

pub use store::testkit::{fresh_store, Backend, TestStore};

/// `both_backends!(name, |t: TestStore| async move { … })` declares module `name` with a test
/// on a fresh SQLite store and one on a fresh PostgreSQL database (skipped, saying why, when
/// the server is not reachable outside CI), each running the body on its store.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Some(t) = $crate::testkit::fresh_store($crate::testkit::Backend::Sqlite).await {
                    $body(t).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(t) = $crate::testkit::fresh_store($crate::testkit::Backend::Postgres).await {
                    $body(t).await;
                }
            }
        }
    };
}

/// A shipping address for test orders.
pub fn address() -> domain::order::ShippingAddress {
    domain::order::ShippingAddress {
        name: "Ada".parse().expect("valid"),
        line1: "1 Main St".parse().expect("valid"),
        city: "Berlin".parse().expect("valid"),
        postal_code: "10115".parse().expect("valid"),
        country: "DE".into(),
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
