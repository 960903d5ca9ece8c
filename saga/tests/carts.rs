//! Carts' deadlines against real stores with an injected clock: an untouched guest cart
//! expires after its lifetime, a customer's is reminded once first and expires later, a cart
//! touched again moves its deadline, and the deadlines survive a saga that crashes and one
//! that starts afresh.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::cart::{Cart, CartCommand, CartStatus, Offer, Pricing};
use domain::payment::SimulatedGateway;
use domain::user::TokenHash;
use domain::{stream_id, CartId, Clock, ManualClock, Price, Quantity, TenantId, UserId};
use saga::{OrderSaga, Repos, SagaConfig, SagaError};
use store::{Metadata, Repository};
use testkit::both_backends;
use testkit::TestStore;
use worker_kit::{Driver, ReadDb};

fn tenant() -> TenantId {
    "acme".parse().expect("valid")
}

struct Carts {
    t: TestStore,
    db: ReadDb,
    clock: Arc<ManualClock>,
}

impl Carts {
    async fn new(t: TestStore) -> Self {
        let db = ReadDb::connect(&t.url, 8).await.expect("read db");
        db.migrate().await.expect("schema");
        Self { t, db, clock: Arc::new(ManualClock::new(chrono::Utc::now())) }
    }

    /// A saga process with its own caches (as after a restart): guest carts last 7 days,
    /// customers' 90 with a reminder after 24 hours.
    fn saga(&self) -> Driver<OrderSaga> {
        let config = SagaConfig { cart_reminder: Some(chrono::Duration::hours(24)), ..SagaConfig::default() };
        let gateway = Arc::new(SimulatedGateway::new());
        let saga = OrderSaga::new(
            self.t.store.clone(),
            self.db.clone(),
            Repos::new(&self.t.store),
            gateway,
            self.clock.clone() as Arc<dyn Clock>,
            config,
        );
        Arc::new(saga).driver()
    }

    fn repo(&self) -> Repository<Cart> {
        Repository::new(self.t.store.clone(), ())
    }

    fn pricing(&self) -> Pricing {
        let offer = Offer::Priced {
            unit_price: Price::try_from(domain::Money::new(1_000, "EUR".parse().expect("valid"))).expect("valid"),
            available: 10,
        };
        Pricing { offers: BTreeMap::from([("MUG".parse().expect("valid"), offer)]), promotion: None, at: self.clock.now() }
    }

    /// A cart (a customer's when `customer` is given) with one line, created now.
    async fn cart(&self, customer: Option<UserId>) -> String {
        let cart_id = CartId::new();
        let id = stream_id(&tenant(), cart_id);
        let token_hash = customer.is_none().then(|| TokenHash("hash".into()));
        let create = CartCommand::Create { tenant: tenant(), cart_id, customer, token_hash, at: self.clock.now() };
        self.repo().execute(&id, create, None, &Metadata::default()).await.expect("create");
        self.touch(&id).await;
        id
    }

    async fn touch(&self, id: &str) {
        let add = CartCommand::AddLine {
            sku: "MUG".parse().expect("valid"),
            quantity: Quantity::try_from(1).expect("valid"),
            pricing: self.pricing(),
        };
        self.repo().execute(id, add, None, &Metadata::default()).await.expect("add");
    }

    async fn state(&self, id: &str) -> Cart {
        self.repo().read(id).await.expect("read").0
    }

    async fn deadlines(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM cart_deadlines").fetch_one(&self.db.pool).await.expect("count")
    }

    /// Saga rounds until the saga has passed the whole log (deadlines written) and swept.
    async fn rounds(&self, saga: &Driver<OrderSaga>) -> Result<(), SagaError> {
        let head = self.t.store.head_position().await.expect("head");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            saga.try_process_next().await?;
            let mut conn = self.db.pool.acquire().await.expect("conn");
            let at = worker_kit::read_checkpoint(&mut conn, saga::NAME).await.expect("checkpoint").map_or(0, |(c, _)| c.position);
            if at >= head {
                saga.try_process_next().await?;
                return Ok(());
            }
            assert!(Instant::now() < deadline, "the saga did not pass the log");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn advance(&self, hours: i64) {
        self.clock.advance(chrono::Duration::hours(hours));
    }
}

fn reminded(cart: &Cart) -> bool {
    cart.reminded
}

both_backends!(untouched_carts_expire_and_customers_are_reminded_once, |t: TestStore| async move {
    let c = Carts::new(t).await;
    let guest = c.cart(None).await;
    let ada = c.cart(Some(UserId::new())).await;
    let busy = c.cart(None).await;
    let saga = c.saga();
    c.rounds(&saga).await.expect("saga");
    assert_eq!(c.deadlines().await, 3, "each open cart has its deadline");

    // A day later: Ada is reminded, nobody expires.
    c.advance(25);
    c.rounds(&saga).await.expect("saga");
    assert!(reminded(&c.state(&ada).await));
    assert!(!reminded(&c.state(&guest).await), "guests are never reminded");
    assert_eq!(c.state(&guest).await.status, CartStatus::Open);

    // Six days on, one guest touches the cart again; at seven days the other expires.
    c.advance(24 * 5);
    c.touch(&busy).await;
    c.advance(24);
    c.rounds(&saga).await.expect("saga");
    assert_eq!(c.state(&guest).await.status, CartStatus::Expired);
    assert_eq!(c.state(&busy).await.status, CartStatus::Open, "touched carts get a new deadline");
    assert_eq!(c.state(&ada).await.status, CartStatus::Open, "customers' carts last longer");

    // A saga that crashes before its first step, then a fresh one: Ada's cart expires at 90
    // days, once, and is reminded no second time.
    c.advance(24 * 90);
    let crashing = c.saga();
    crashing.members()[0].crash_after(0);
    assert!(matches!(c.rounds(&crashing).await, Err(SagaError::Injected)));
    drop(crashing);
    let fresh = c.saga();
    c.rounds(&fresh).await.expect("saga");
    for id in [&ada, &busy] {
        assert_eq!(c.state(id).await.status, CartStatus::Expired);
    }
    let events = c.t.store.load_stream("cart", &ada, 0).await.expect("stream");
    // Stored payloads are tagged by event type: `{"expired": {...}}`.
    let kinds: Vec<String> = events.iter().filter_map(|e| e.payload.as_object().and_then(|m| m.keys().next().cloned())).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "reminder_due").count(), 1, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "expired").count(), 1, "{kinds:?}");
    c.rounds(&fresh).await.expect("saga");
    assert_eq!(c.deadlines().await, 0, "closed carts have no deadline");
});
