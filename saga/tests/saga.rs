//! The order saga against real stores (PostgreSQL and SQLite): every path, every compensation,
//! a crash before each step, expiry with a moved clock, 1,000 orders racing for 100 units, and
//! orders reconciled as this process commits them, beside the log's rounds, each step once;
//! orders reserved and invoiced together, and two saga processes racing for one SKU.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use domain::order::{CancelReason, Order, OrderCommand, Status};
use domain::payment::{GatewayError, Payment, PaymentCommand, PaymentGateway, PaymentStatus, SimulatedGateway};
use domain::stock::{Stock, StockCommand};
use domain::{stream_id, Clock, ManualClock, Money, OrderId, Quantity, Sku, TenantId, UserId};
use saga::{OrderSaga, Repos, SagaConfig, SagaError, SagaStep};
use store::{Metadata, Repository};
use testkit::both_backends;
use testkit::TestStore;
use worker_kit::Driver;
use worker_kit::ReadDb;

fn tenant() -> TenantId {
    "acme".parse().expect("valid")
}

fn eur(n: i64) -> Money {
    Money::new(n, "EUR".parse().expect("valid"))
}

fn sku(s: &str) -> Sku {
    s.parse().expect("valid sku")
}

struct Shop {
    t: TestStore,
    db: ReadDb,
    gateway: Arc<dyn PaymentGateway>,
    ledger: Arc<SimulatedGateway>,
    clock: Arc<ManualClock>,
}

impl Shop {
    async fn new(t: TestStore) -> Self {
        Self::with_gateway(t, None).await
    }

    async fn with_gateway(t: TestStore, gateway: Option<Arc<dyn PaymentGateway>>) -> Self {
        let db = ReadDb::connect(&t.url, 8).await.expect("read db");
        db.migrate().await.expect("schema");
        let ledger = Arc::new(SimulatedGateway::new());
        let gateway = gateway.unwrap_or_else(|| ledger.clone() as Arc<dyn PaymentGateway>);
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        Self { t, db, gateway, ledger, clock }
    }

    /// A saga process with its own caches, as after a restart, on its driver.
    fn saga(&self) -> Driver<OrderSaga> {
        let config = SagaConfig { reservation_ttl: chrono::Duration::minutes(15), ..SagaConfig::default() };
        let saga = OrderSaga::new(
            self.t.store.clone(),
            self.db.clone(),
            Repos::new(&self.t.store),
            self.gateway.clone(),
            self.clock.clone() as Arc<dyn Clock>,
            config,
        );
        Arc::new(saga).driver()
    }

    async fn receive(&self, s: &str, n: i64) {
        let stock = Repository::<Stock>::new(self.t.store.clone(), ());
        let command = StockCommand::Receive { tenant: tenant(), sku: sku(s), quantity: Quantity::try_from(n).expect("valid") };
        stock.execute(&stream_id(&tenant(), sku(s)), command, None, &Metadata::default()).await.expect("receive");
    }

    async fn place(&self, lines: &[(&str, i64)], method: &str) -> String {
        let orders = Repository::<Order>::new(self.t.store.clone(), ());
        place_with(&orders, lines, method).await
    }

    async fn order(&self, id: &str) -> Order {
        Repository::<Order>::new(self.t.store.clone(), ()).read(id).await.expect("read").0
    }

    /// The customer cancels order `id` (through another process's repository).
    async fn cancel(&self, id: &str) {
        Repository::<Order>::new(self.t.store.clone(), ())
            .execute(id, OrderCommand::Cancel { reason: CancelReason::CancelledByCustomer }, None, &Metadata::default())
            .await
            .expect("cancel");
    }

    async fn payment(&self, id: &str) -> Payment {
        Repository::<Payment>::new(self.t.store.clone(), ()).read(id).await.expect("read").0
    }

    async fn stock(&self, s: &str) -> Stock {
        Repository::<Stock>::new(self.t.store.clone(), ()).read(&stream_id(&tenant(), sku(s))).await.expect("read").0
    }

    /// A saga process that crashes before its `budget + 1`-th step (or settles the order
    /// first), then a fresh one that finishes; true if the crash happened.
    async fn crash_then_finish(&self, id: &str, budget: u32) -> bool {
        let first = self.saga();
        first.members()[0].crash_after(budget);
        let deadline = Instant::now() + Duration::from_secs(60);
        let crashed = loop {
            match first.try_process_next().await {
                Err(SagaError::Injected) => break true,
                Err(e) => panic!("{e}"),
                Ok(_) if settled(&self.order(id).await, &self.payment(id).await) => break false,
                Ok(_) => assert!(Instant::now() < deadline, "first saga stalled"),
            }
        };
        drop(first);
        self.settle(&self.saga(), &[id.to_owned()]).await;
        crashed
    }

    /// Runs saga rounds until `done` holds for every order (the log may show new events a
    /// little late on PostgreSQL, so this polls).
    async fn settle(&self, saga: &Driver<OrderSaga>, ids: &[String]) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            saga.try_process_next().await.expect("saga round");
            let mut all = true;
            for id in ids {
                if !settled(&self.order(id).await, &self.payment(id).await) {
                    all = false;
                    break;
                }
            }
            if all {
                return;
            }
            assert!(Instant::now() < deadline, "orders not settled in time");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Saga processes reconciling each order as it is committed (`follow_commits`), until stopped.
struct Eager {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Eager {
    fn follow(sagas: &[&Driver<OrderSaga>]) -> Self {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let tasks = sagas.iter().map(|d| tokio::spawn(Arc::clone(&d.members()[0]).follow_commits(stopped.clone()))).collect();
        Self { stop, tasks }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            task.await.expect("eager task");
        }
    }
}

/// Waits until `n` orders wait in a queue of the saga (`waiting`) for `what`.
async fn until_queued(what: &str, n: usize, waiting: impl Fn() -> usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while waiting() < n {
        assert!(Instant::now() < deadline, "orders never queued for {what} ({} waiting)", waiting());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn place_with(orders: &Repository<Order>, lines: &[(&str, i64)], method: &str) -> String {
    let order_id = OrderId::new();
    let id = stream_id(&tenant(), order_id);
    let command = testkit::placement(&tenant(), order_id, UserId::from_uuid(uuid::Uuid::from_u128(1)), lines, 500, method);
    orders.execute(&id, command, None, &Metadata::default()).await.expect("place");
    id
}

/// Nothing more for the saga to do: confirmed and invoiced, or cancelled with everything given
/// back.
fn settled(order: &Order, payment: &Payment) -> bool {
    let money_back = matches!(payment.status, PaymentStatus::New | PaymentStatus::Voided)
        || (payment.status == PaymentStatus::Failed && payment.failure == Some(domain::payment::FailureReason::Declined))
        || (payment.status == PaymentStatus::Captured && payment.pending_refunds().next().is_none() && payment.refundable() == 0);
    match order.status {
        Status::Confirmed => order.invoice_number.is_some() && payment.pending_refunds().next().is_none(),
        Status::Cancelled => {
            let stock_back = match order.invoice_number {
                None => order.reserved_until.is_none() || order.released,
                Some(_) => order.restocked,
            };
            money_back && stock_back
        }
        _ => false,
    }
}

/// What each test payment method ends in.
struct Path {
    method: &'static str,
    status: Status,
    reason: Option<CancelReason>,
    payment: PaymentStatus,
    /// Gateway ledger per order: authorised, captured, voided.
    ledger: (u64, u64, u64),
}

const PATHS: [Path; 4] = [
    Path { method: "tok_approve", status: Status::Confirmed, reason: None, payment: PaymentStatus::Captured, ledger: (1, 1, 0) },
    Path {
        method: "tok_decline",
        status: Status::Cancelled,
        reason: Some(CancelReason::PaymentDeclined),
        payment: PaymentStatus::Failed,
        ledger: (0, 0, 0),
    },
    Path {
        method: "tok_timeout",
        status: Status::Cancelled,
        reason: Some(CancelReason::PaymentTimeout),
        payment: PaymentStatus::Voided,
        ledger: (0, 0, 1),
    },
    Path {
        method: "tok_capture_fail",
        status: Status::Cancelled,
        reason: Some(CancelReason::PaymentDeclined),
        payment: PaymentStatus::Voided,
        ledger: (1, 0, 1),
    },
];

both_backends!(every_payment_path_ends_settled_with_stock_accounted_for, |t: TestStore| async move {
    let shop = Shop::new(t).await;
    shop.receive("PHONE", 10).await;
    let saga = shop.saga();
    let mut sold = 0;
    for (n, path) in PATHS.iter().enumerate() {
        let before = shop.ledger.totals();
        let id = shop.place(&[("PHONE", 2)], path.method).await;
        shop.settle(&saga, std::slice::from_ref(&id)).await;
        let order = shop.order(&id).await;
        assert_eq!((order.status, order.cancel_reason), (path.status, path.reason), "{}", path.method);
        assert_eq!(shop.payment(&id).await.status, path.payment, "{}", path.method);
        let after = shop.ledger.totals();
        assert_eq!(
            (after.authorised - before.authorised, after.captured - before.captured, after.voided - before.voided),
            path.ledger,
            "{}",
            path.method
        );
        let stock = shop.stock("PHONE").await;
        assert!(stock.reservations.is_empty(), "{}: no reservation left behind", path.method);
        sold += if path.status == Status::Confirmed { 2 } else { 0 };
        assert_eq!(stock.on_hand, 10 - sold, "after path {n} ({})", path.method);
        if path.status == Status::Confirmed {
            assert_eq!(order.invoice_number, Some(1));
            // subtotal 2000, tax 20% 400, shipping 500
            assert_eq!(order.total, Some(eur(2_900)));
        }
    }
});

both_backends!(an_order_short_of_stock_is_cancelled_out_of_stock_and_reserves_nothing, |t: TestStore| async move {
    let shop = Shop::new(t).await;
    shop.receive("PHONE", 3).await;
    shop.receive("CASE", 10).await;
    let saga = shop.saga();
    // Two lines of one SKU add up: 2 + 2 > 3, although each line alone would fit.
    let id = shop.place(&[("CASE", 1), ("PHONE", 2), ("PHONE", 2)], "tok_approve").await;
    shop.settle(&saga, std::slice::from_ref(&id)).await;
    let order = shop.order(&id).await;
    assert_eq!((order.status, order.cancel_reason), (Status::Cancelled, Some(CancelReason::OutOfStock)));
    assert_eq!(shop.stock("CASE").await.available(), 10, "the line that fitted was not held");
    assert_eq!(shop.stock("PHONE").await.available(), 3);
    assert_eq!(shop.ledger.totals().calls, 0, "no payment was asked for");
    let id = shop.place(&[("PHONE", 2), ("PHONE", 1)], "tok_approve").await;
    shop.settle(&saga, std::slice::from_ref(&id)).await;
    assert_eq!(shop.order(&id).await.status, Status::Confirmed);
    let phone = shop.stock("PHONE").await;
    assert_eq!((phone.on_hand, phone.available()), (0, 0));
});

both_backends!(a_crash_before_any_step_is_finished_by_the_next_process_without_acting_twice, |t: TestStore| async move {
    let shop = Shop::new(t).await;
    shop.receive("PHONE", 1_000).await;
    for path in &PATHS {
        let mut crashes = 0;
        for budget in 0..14u32 {
            let before = shop.ledger.totals();
            let id = shop.place(&[("PHONE", 1)], path.method).await;
            crashes += usize::from(shop.crash_then_finish(&id, budget).await);
            let order = shop.order(&id).await;
            assert_eq!((order.status, order.cancel_reason), (path.status, path.reason), "{} crash after {budget}", path.method);
            assert_eq!(shop.payment(&id).await.status, path.payment, "{} crash after {budget}", path.method);
            let after = shop.ledger.totals();
            assert_eq!(
                (after.authorised - before.authorised, after.captured - before.captured, after.voided - before.voided),
                path.ledger,
                "{} crash after {budget}: the gateway moved money once",
                path.method
            );
        }
        assert!(crashes >= 4, "{}: the crash points were reached ({crashes})", path.method);
    }
    let stock = shop.stock("PHONE").await;
    assert!(stock.reservations.is_empty());
    let confirmed = 14;
    assert_eq!(stock.on_hand, 1_000 - confirmed, "each approved order took one unit, once");
});

both_backends!(a_customer_cancel_gives_back_stock_and_money_at_every_stage, |t: TestStore| async move {
    let shop = Shop::new(t).await;
    shop.receive("PHONE", 10).await;
    let saga = shop.saga();
    let orders = Repository::<Order>::new(shop.t.store.clone(), ());
    let cancel = OrderCommand::Cancel { reason: CancelReason::CancelledByCustomer };

    // Before the saga saw it: nothing was held.
    let early = place_with(&orders, &[("PHONE", 1)], "tok_approve").await;
    orders.execute(&early, cancel.clone(), None, &Metadata::default()).await.expect("cancel");
    // After it was paid and invoiced: refunded in full and put back on the shelf.
    let late = place_with(&orders, &[("PHONE", 3)], "tok_approve").await;
    shop.settle(&saga, &[early.clone(), late.clone()]).await;
    assert_eq!(shop.stock("PHONE").await.on_hand, 7);
    orders.execute(&late, cancel, None, &Metadata::default()).await.expect("cancel after payment");
    shop.settle(&saga, &[late.clone()]).await;

    let order = shop.order(&late).await;
    assert_eq!((order.status, order.cancel_reason), (Status::Cancelled, Some(CancelReason::CancelledByCustomer)));
    assert!(order.restocked);
    assert_eq!(order.refunded, 3_000 + 600 + 500);
    let payment = shop.payment(&late).await;
    assert_eq!(payment.refundable(), 0);
    let stock = shop.stock("PHONE").await;
    assert_eq!((stock.on_hand, stock.available()), (10, 10));
    assert_eq!(shop.ledger.totals().refunded, 1);
    assert_eq!(shop.order(&early).await.cancel_reason, Some(CancelReason::CancelledByCustomer));
    // A shipped order cannot be cancelled any more.
    let shipped = place_with(&orders, &[("PHONE", 1)], "tok_approve").await;
    shop.settle(&saga, std::slice::from_ref(&shipped)).await;
    let ship = OrderCommand::Ship { carrier: "DHL".parse().expect("valid"), tracking_number: "123".parse().expect("valid") };
    orders.execute(&shipped, ship, None, &Metadata::default()).await.expect("ship");
    let refused =
        orders.execute(&shipped, OrderCommand::Cancel { reason: CancelReason::CancelledByCustomer }, None, &Metadata::default()).await;
    assert!(matches!(refused, Err(store::ExecError::Domain(domain::order::OrderError::IllegalTransition { from: Status::Shipped, .. }))));
});

both_backends!(refunds_are_paid_once_and_never_exceed_the_capture, |t: TestStore| async move {
    let shop = Shop::new(t).await;
    shop.receive("PHONE", 10).await;
    let saga = shop.saga();
    let id = shop.place(&[("PHONE", 1)], "tok_approve").await;
    shop.settle(&saga, std::slice::from_ref(&id)).await;
    let payments = Repository::<Payment>::new(shop.t.store.clone(), ());
    let refund = |refund_id: &str, n: i64| PaymentCommand::RequestRefund { refund_id: refund_id.into(), amount: eur(n) };
    payments.execute(&id, refund("a", 1_000), None, &Metadata::default()).await.expect("first refund");
    payments.execute(&id, refund("a", 1_000), None, &Metadata::default()).await.expect("the same refund again changes nothing");
    // Captured: 1,000 + 20% tax + 500 shipping = 1,700; 700 are left.
    let too_much = payments.execute(&id, refund("b", 701), None, &Metadata::default()).await;
    assert!(
        matches!(
            too_much,
            Err(store::ExecError::Domain(domain::payment::PaymentError::RefundTooLarge { requested: 701, refundable: 700 }))
        ),
        "{too_much:?}"
    );
    shop.settle(&saga, std::slice::from_ref(&id)).await;
    let order = shop.order(&id).await;
    assert_eq!(order.refunded, 1_000);
    assert_eq!(order.status, Status::Confirmed);
    assert_eq!(shop.ledger.totals().refunded, 1);
});

// The invoice after a capture fails (writers in other processes won every attempt at the
// tenant's invoice book): the capture goes on record by itself, and the retry invoices the
// order without asking the provider again.
both_backends!(a_capture_whose_invoice_fails_is_kept_and_never_asked_again, |t: TestStore| async move {
    let shop = Shop::new(t).await;
    shop.receive("PHONE", 10).await;
    let saga = shop.saga();
    saga.members()[0].lose_invoices(1);
    let id = shop.place(&[("PHONE", 1)], "tok_approve").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while OrderSaga::state(&shop.db, &id).await.expect("state").is_none_or(|s| s.step != SagaStep::Retrying) {
        saga.try_process_next().await.expect("round");
        assert!(Instant::now() < deadline, "the lost invoice was not recorded as a failure");
    }
    assert_eq!(shop.payment(&id).await.status, PaymentStatus::Captured, "the capture is on record");
    assert_eq!(shop.order(&id).await.invoice_number, None, "the invoice is not");
    shop.clock.advance(chrono::Duration::seconds(5));
    shop.settle(&saga, std::slice::from_ref(&id)).await;
    assert_eq!(shop.order(&id).await.invoice_number, Some(1));
    let totals = shop.ledger.totals();
    assert_eq!((totals.authorised, totals.captured, totals.calls), (1, 1, 2), "one authorisation and one capture, each asked once");
});

both_backends!(
    an_order_failing_its_first_look_in_a_consumer_group_is_tried_again_by_the_member_holding_its_partition,
    |t: TestStore| async move {
        use worker_kit::{Sourced, SourcedConsumer};
        let shop = Shop::new(t).await;
        shop.receive("PHONE", 10).await;
        let saga = shop.saga();
        let member = Arc::clone(&saga.members()[0]);
        member.lose_invoices(1);
        let id = shop.place(&[("PHONE", 1)], "tok_approve").await;
        // The group brings the placement from partition 3 of the order topic: the order's first
        // look, which fails at its invoice after the capture.
        let deadline = Instant::now() + Duration::from_secs(60);
        let placed = loop {
            let log = shop.t.store.read_log(store::LogCursor::default(), 10_000).await.expect("log");
            if let Some(e) = log.into_iter().find(|e| e.aggregate_id == id) {
                break e;
            }
            assert!(Instant::now() < deadline, "the placement never reached the log");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let topic = "shop.order".to_owned();
        member.consume_sourced(&[Sourced { topic: topic.clone(), partition: 3, offset: 0, event: placed }]).await.expect("batch");
        let state = OrderSaga::state(&shop.db, &id).await.expect("state").expect("recorded");
        assert_eq!((state.step, state.attempts), (SagaStep::Retrying, 1), "the first look failed and is on record: {state:?}");
        assert_eq!(shop.order(&id).await.invoice_number, None);
        // Once it is due, a member holding other partitions leaves it alone; the one holding
        // partition 3 tries again.
        shop.clock.advance(chrono::Duration::seconds(5));
        member.tick_sourced(&[(topic.clone(), 2), ("shop.payment".to_owned(), 3)]).await.expect("tick");
        assert_eq!(shop.order(&id).await.invoice_number, None, "not this member's order");
        member.tick_sourced(&[(topic, 3)]).await.expect("tick");
        assert_eq!(shop.order(&id).await.invoice_number, Some(1), "the member holding its partition finished it");
        let state = OrderSaga::state(&shop.db, &id).await.expect("state").expect("recorded");
        assert_eq!((state.step, state.attempts), (SagaStep::Completed, 0), "{state:?}");
    }
);

/// A provider that cannot be reached: the order waits with its stock held.
struct Unreachable;

#[async_trait]
impl PaymentGateway for Unreachable {
    async fn authorise(&self, _: &str, _: Money, _: &str) -> Result<String, GatewayError> {
        Err(GatewayError::Unavailable("connection refused".into()))
    }
    async fn capture(&self, _: &str, _: &str, _: Money) -> Result<(), GatewayError> {
        Err(GatewayError::Unavailable("connection refused".into()))
    }
    async fn void(&self, _: &str, _: &str) -> Result<(), GatewayError> {
        Ok(())
    }
    async fn refund(&self, _: &str, _: &str, _: Money) -> Result<(), GatewayError> {
        Err(GatewayError::Unavailable("connection refused".into()))
    }
}

both_backends!(an_unpaid_reservation_expires_across_a_restart_by_the_clock, |t: TestStore| async move {
    let shop = Shop::with_gateway(t, Some(Arc::new(Unreachable))).await;
    shop.receive("PHONE", 5).await;
    let id = shop.place(&[("PHONE", 2)], "tok_approve").await;
    let saga = shop.saga();
    let deadline = Instant::now() + Duration::from_secs(60);
    while shop.order(&id).await.status != Status::StockReserved || OrderSaga::state(&shop.db, &id).await.expect("state").is_none() {
        saga.try_process_next().await.expect("round");
        assert!(Instant::now() < deadline);
    }
    assert_eq!(shop.stock("PHONE").await.available(), 3);
    let state = OrderSaga::state(&shop.db, &id).await.expect("state").expect("recorded");
    assert_eq!(state.step, SagaStep::Retrying, "{state:?}");
    assert!(state.last_error.as_deref().is_some_and(|e| e.contains("connection refused")), "{state:?}");
    drop(saga);

    // Ten minutes later it is still held (retries continue); past fifteen it lapses.
    shop.clock.advance(chrono::Duration::minutes(10));
    let saga = shop.saga();
    for _ in 0..3 {
        saga.try_process_next().await.expect("round");
    }
    assert_eq!(shop.order(&id).await.status, Status::StockReserved);
    drop(saga);
    shop.clock.advance(chrono::Duration::minutes(6));
    let saga = shop.saga();
    let deadline = Instant::now() + Duration::from_secs(60);
    while shop.order(&id).await.status != Status::Cancelled || !shop.stock("PHONE").await.reservations.is_empty() {
        saga.try_process_next().await.expect("round");
        assert!(Instant::now() < deadline, "the reservation did not lapse");
    }
    let order = shop.order(&id).await;
    assert_eq!(order.cancel_reason, Some(CancelReason::ReservationExpired));
    assert_eq!(shop.stock("PHONE").await.available(), 5);
    assert_eq!(shop.payment(&id).await.status, PaymentStatus::Voided);
    saga.try_process_next().await.expect("round");
    let state = OrderSaga::state(&shop.db, &id).await.expect("state").expect("recorded");
    assert_eq!((state.step, state.due_at_ms), (SagaStep::Compensated, None));
});

both_backends!(a_thousand_orders_for_a_hundred_units_confirm_exactly_a_hundred, |t: TestStore| async move {
    let shop = Shop::new(t).await;
    shop.receive("HOT", 100).await;
    let orders = Repository::<Order>::new(shop.t.store.clone(), ());
    let placing: Vec<_> = (0..1_000)
        .map(|_| {
            let orders = orders.clone();
            tokio::spawn(async move { place_with(&orders, &[("HOT", 1)], "tok_approve").await })
        })
        .collect();
    let saga = Arc::new(shop.saga());
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(saga.clone().run(stop));
    let mut ids = Vec::new();
    for p in placing {
        ids.push(p.await.expect("placed"));
    }
    let deadline = Instant::now() + Duration::from_secs(240);
    let (mut confirmed, mut out_of_stock) = (0, 0);
    for id in &ids {
        loop {
            let order = shop.order(id).await;
            if settled(&order, &shop.payment(id).await) {
                match (order.status, order.cancel_reason) {
                    (Status::Confirmed, _) => confirmed += 1,
                    (Status::Cancelled, Some(CancelReason::OutOfStock)) => out_of_stock += 1,
                    other => panic!("unexpected end {other:?}"),
                }
                break;
            }
            assert!(Instant::now() < deadline, "orders not settled in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    stop_tx.send(true).expect("stop");
    worker.await.expect("saga stopped");
    assert_eq!((confirmed, out_of_stock), (100, 900));
    let stock = shop.stock("HOT").await;
    assert_eq!((stock.on_hand, stock.available()), (0, 0));
    assert!(stock.reservations.is_empty(), "no reservation left dangling");
    assert_eq!(shop.ledger.totals().captured, 100);

    // The stock read model agrees.
    let runner = projections::Runner::new(shop.t.store.clone(), shop.db.clone(), projections::all());
    let reached = worker_kit::poll_until(Duration::from_secs(60), || async {
        runner.catch_up().await?;
        let row: Option<(i64, i64, i64)> = sqlx::query_as("SELECT on_hand, reserved, available FROM rm_stock WHERE sku = 'HOT'")
            .fetch_optional(&shop.db.pool)
            .await
            .map_err(projections::ProjectionError::from)?;
        Ok::<_, projections::ProjectionError>(row == Some((0, 0, 0)))
    })
    .await
    .expect("read model");
    assert!(reached, "the stock view shows 0 on hand, 0 reserved, 0 available");
    // Invoice numbers are 1..=100 without gaps.
    let mut numbers: Vec<u64> = Vec::new();
    for id in &ids {
        if let Some(n) = shop.order(id).await.invoice_number {
            numbers.push(n);
        }
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=100).collect::<Vec<u64>>());
});

both_backends!(a_crash_before_any_compensation_step_refunds_and_restocks_once, |t: TestStore| async move {
    let shop = Shop::new(t).await;
    shop.receive("PHONE", 100).await;
    let orders = Repository::<Order>::new(shop.t.store.clone(), ());
    let mut crashes = 0;
    for budget in 0..6u32 {
        let id = place_with(&orders, &[("PHONE", 2)], "tok_approve").await;
        shop.settle(&shop.saga(), std::slice::from_ref(&id)).await;
        let before = (shop.ledger.totals(), shop.stock("PHONE").await.on_hand);
        orders
            .execute(&id, OrderCommand::Cancel { reason: CancelReason::CancelledByCustomer }, None, &Metadata::default())
            .await
            .expect("cancel");
        crashes += usize::from(shop.crash_then_finish(&id, budget).await);
        let order = shop.order(&id).await;
        assert!(order.restocked, "crash after {budget}");
        assert_eq!(Some(order.refunded), order.total.map(|t| t.amount), "refunded in full once, crash after {budget}");
        assert_eq!(shop.ledger.totals().refunded, before.0.refunded + 1, "one refund at the provider, crash after {budget}");
        assert_eq!(shop.stock("PHONE").await.on_hand, before.1 + 2, "put back once, crash after {budget}");
    }
    assert!(crashes >= 3, "the crash points were reached ({crashes})");
});

both_backends!(the_saga_moves_past_batches_without_order_events, |t: TestStore| async move {
    let shop = Shop::new(t).await;
    let saga = shop.saga();
    testkit::moves_past_foreign_events(&shop.t, Arc::clone(&saga.members()[0]), 120).await;
});

both_backends!(orders_committed_here_settle_without_the_log_and_the_log_repeats_nothing, |t: TestStore| async move {
    let shop = Shop::new(t).await;
    shop.receive("EAGER", 100).await;
    let driver = shop.saga();
    let eager = Eager::follow(&[&driver]);

    // No log round runs: the commit alone moves the order through stock, payment and invoice.
    let first = shop.place(&[("EAGER", 1)], "tok_approve").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !settled(&shop.order(&first).await, &shop.payment(&first).await) {
        assert!(Instant::now() < deadline, "never reconciled without the log");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // 40 orders at once with the log's rounds running beside: each order is reconciled by one
    // task at a time, so no gateway call is made twice and the invoice book has no gaps.
    let mut ids = futures::future::join_all((0..40).map(|_| shop.place(&[("EAGER", 1)], "tok_approve"))).await;
    shop.settle(&driver, &ids).await;
    eager.stop().await;
    ids.push(first);
    let totals = shop.ledger.totals();
    assert_eq!((totals.authorised, totals.captured), (41, 41));
    assert_eq!(totals.calls, 82, "a gateway call was repeated");
    let mut numbers = Vec::new();
    for id in &ids {
        let order = shop.order(id).await;
        assert_eq!(order.status, Status::Confirmed);
        numbers.push(order.invoice_number.expect("invoiced"));
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=41).collect::<Vec<u64>>(), "one number per order, no gaps");
    let stock = shop.stock("EAGER").await;
    assert_eq!((stock.on_hand, stock.reservations.len()), (59, 0));
});

// Orders ready at the same time are invoiced in one append of the tenant's book. Twenty
// confirmed orders over three SKUs wait while the book is held; one of them is cancelled by
// its customer meanwhile. The other nineteen get numbers 1..=19 in one transaction (each
// Issued event carrying its own order's metadata), their own stock leaves exactly, and the
// cancelled one gets no number: its capture is kept, then refunded, and its stock released.
both_backends!(orders_waiting_for_the_book_are_invoiced_in_one_append_without_the_one_that_moved_on, |t: TestStore| async move {
    let shop = Shop::new(t).await;
    for s in ["BOOK-A", "BOOK-B", "BOOK-C"] {
        shop.receive(s, 100).await;
    }
    let driver = shop.saga();
    let saga = Arc::clone(&driver.members()[0]);
    let eager = Eager::follow(&[&driver]);
    let held = saga.hold_invoice_book(&tenant()).await;

    let shapes: [&[(&str, i64)]; 3] = [&[("BOOK-A", 1), ("BOOK-B", 2)], &[("BOOK-B", 1), ("BOOK-C", 1)], &[("BOOK-A", 1), ("BOOK-C", 3)]];
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(shop.place(shapes[i % 3], "tok_approve").await);
    }
    until_queued("the book", 20, || saga.invoices_waiting(&tenant())).await;
    let gone = ids[7].clone();
    assert_eq!(shop.order(&gone).await.status, Status::Confirmed);
    shop.cancel(&gone).await;
    drop(held);
    shop.settle(&driver, &ids).await;
    eager.stop().await;

    let mut numbers = Vec::new();
    let mut left = [100i64, 100, 100];
    for (i, id) in ids.iter().enumerate() {
        let order = shop.order(id).await;
        if *id == gone {
            assert_eq!((order.status, order.invoice_number), (Status::Cancelled, None));
            assert_eq!(shop.payment(id).await.status, PaymentStatus::Captured, "its capture kept, then refunded");
            continue;
        }
        assert_eq!(order.status, Status::Confirmed);
        numbers.push((order.invoice_number.expect("invoiced"), id.clone()));
        for (s, n) in shapes[i % 3] {
            left[["BOOK-A", "BOOK-B", "BOOK-C"].iter().position(|x| x == s).expect("known sku")] -= n;
        }
    }
    numbers.sort_unstable();
    assert_eq!(numbers.iter().map(|(n, _)| *n).collect::<Vec<u64>>(), (1..=19).collect::<Vec<u64>>(), "one number each, no gaps");
    for (s, left) in ["BOOK-A", "BOOK-B", "BOOK-C"].into_iter().zip(left) {
        let stock = shop.stock(s).await;
        assert_eq!((stock.on_hand, stock.reservations.len()), (left, 0), "{s}: exactly the invoiced orders' units left");
    }
    let totals = shop.ledger.totals();
    assert_eq!((totals.captured, totals.refunded), (20, 1));

    // The book's events: one per number, naming its order, in its order's metadata, and all
    // in one append (next to each other in the log).
    let log = shop.t.store.read_log(store::LogCursor::default(), 10_000).await.expect("log");
    let issued: Vec<(usize, &store::LogEvent)> = log.iter().enumerate().filter(|(_, e)| e.aggregate_type == "invoice_book").collect();
    assert_eq!(issued.len(), 19);
    for (n, (_, e)) in issued.iter().enumerate() {
        let order = e.payload["issued"]["order_id"].as_str().expect("order id").to_owned();
        let (number, id) = &numbers[n];
        assert_eq!(e.payload["issued"]["number"].as_u64(), Some(*number));
        assert!(id.ends_with(&order), "number {number} went to {order}, not {id}");
        assert_eq!(e.metadata["correlation_id"].as_str(), Some(order.as_str()));
        assert_eq!(e.metadata["idempotency_key"].as_str(), Some(format!("saga:{order}:invoice").as_str()));
    }
    assert_eq!(issued.last().map(|(i, _)| *i), issued.first().map(|(i, _)| i + 18), "the nineteen invoices were one append");
});

both_backends!(orders_waiting_for_stock_are_decided_in_one_append_each_holding_all_its_lines_or_none, |t: TestStore| async move {
    let shop = Shop::new(t).await;
    for (s, n) in [("RES-A", 7), ("RES-B", 2), ("RES-C", 4)] {
        shop.receive(s, n).await;
    }
    let driver = shop.saga();
    let saga = Arc::clone(&driver.members()[0]);
    let eager = Eager::follow(&[&driver]);
    let held = saga.hold_reservations(&tenant()).await;

    // Three orders want A and B, and B has two units: two get both, the third neither (it
    // is refused on B after its A fitted, so A is where a half-held order would show). With
    // the four orders of one A each, six of A's seven units go, whichever is decided first.
    let mut pairs = Vec::new();
    for _ in 0..3 {
        pairs.push(shop.place(&[("RES-A", 1), ("RES-B", 1)], "tok_approve").await);
    }
    let mut singles = Vec::new();
    for _ in 0..4 {
        singles.push(shop.place(&[("RES-A", 1)], "tok_approve").await);
    }
    // Five of C's four units; and an order cancelled while it waits.
    let big = shop.place(&[("RES-C", 5)], "tok_approve").await;
    let gone = shop.place(&[("RES-C", 1)], "tok_approve").await;
    let ids: Vec<String> = pairs.iter().chain(&singles).chain([&big, &gone]).cloned().collect();
    until_queued("stock", ids.len(), || saga.reservations_waiting(&tenant())).await;
    shop.cancel(&gone).await;
    drop(held);
    shop.settle(&driver, &ids).await;
    eager.stop().await;

    let mut ends = Vec::new();
    for id in &pairs {
        let order = shop.order(id).await;
        ends.push((order.status, order.cancel_reason));
    }
    ends.sort_by_key(|e| format!("{e:?}"));
    assert_eq!(ends, [(Status::Cancelled, Some(CancelReason::OutOfStock)), (Status::Confirmed, None), (Status::Confirmed, None)]);
    for id in &singles {
        assert_eq!(shop.order(id).await.status, Status::Confirmed);
    }
    let order = shop.order(&big).await;
    assert_eq!((order.status, order.cancel_reason), (Status::Cancelled, Some(CancelReason::OutOfStock)));
    let order = shop.order(&gone).await;
    assert_eq!((order.status, order.cancel_reason), (Status::Cancelled, Some(CancelReason::CancelledByCustomer)));
    for (s, left) in [("RES-A", 1), ("RES-B", 0), ("RES-C", 4)] {
        let stock = shop.stock(s).await;
        assert_eq!((stock.on_hand, stock.reservations.len()), (left, 0), "{s}: exactly the confirmed orders' units left");
    }
    assert_eq!(shop.ledger.totals().captured, 6);

    // The decisions: eight reservations of stock and eight orders' answers, each in its own
    // order's metadata, all in one append (next to each other in the log); the refused orders
    // name the SKU short of stock; nothing for the cancelled order.
    let log = shop.t.store.read_log(store::LogCursor::default(), 10_000).await.expect("log");
    let decided: Vec<(usize, &store::LogEvent)> = log
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            (e.aggregate_type == "stock" && e.event_type == "reserved")
                || (e.aggregate_type == "order" && ["stock_reserved", "stock_rejected"].contains(&e.event_type.as_str()))
        })
        .collect();
    assert_eq!(decided.len(), 16);
    assert_eq!(decided.last().map(|(i, _)| *i), decided.first().map(|(i, _)| i + 15), "the sixteen decisions were one append");
    for (_, e) in &decided {
        let (order, step) = match e.event_type.as_str() {
            "reserved" => (e.payload["reserved"]["order_id"].as_str().expect("order id").to_owned(), "reserve"),
            "stock_rejected" => (e.aggregate_id.rsplit(':').next().expect("key").to_owned(), "reject_stock"),
            _ => (e.aggregate_id.rsplit(':').next().expect("key").to_owned(), "reserve"),
        };
        assert!(!gone.ends_with(&order), "nothing was decided for the cancelled order");
        assert_eq!(e.metadata["correlation_id"].as_str(), Some(order.as_str()));
        assert_eq!(e.metadata["idempotency_key"].as_str(), Some(format!("saga:{order}:{step}").as_str()));
        if e.event_type == "stock_rejected" {
            let short = if big.ends_with(&order) { "RES-C" } else { "RES-B" };
            assert_eq!(e.payload["stock_rejected"]["sku"].as_str(), Some(short));
        }
    }
});

both_backends!(a_refusal_on_stock_another_process_changed_is_decided_again_on_fresh_stock, |t: TestStore| async move {
    let shop = Shop::new(t).await;
    shop.receive("STALE", 1).await;
    let saga = shop.saga();
    let first = shop.place(&[("STALE", 1)], "tok_approve").await;
    shop.settle(&saga, std::slice::from_ref(&first)).await;
    assert_eq!(shop.order(&first).await.status, Status::Confirmed);
    // This saga's cache says none is left; another process receives one more.
    shop.receive("STALE", 1).await;
    let second = shop.place(&[("STALE", 1)], "tok_approve").await;
    shop.settle(&saga, std::slice::from_ref(&second)).await;
    assert_eq!(shop.order(&second).await.status, Status::Confirmed, "not refused on the stock it had cached");
    let stock = shop.stock("STALE").await;
    assert_eq!((stock.on_hand, stock.reservations.len()), (0, 0));
});

both_backends!(two_saga_processes_racing_for_a_hot_sku_hold_each_unit_once, |t: TestStore| async move {
    let shop = Shop::new(t).await;
    shop.receive("RACE", 50).await;
    // Two processes, each with its own caches and locks, both reconciling every order at once.
    let (one, two) = (shop.saga(), shop.saga());
    let eager = Eager::follow(&[&one, &two]);
    let orders = Repository::<Order>::new(shop.t.store.clone(), ());
    let placing: Vec<_> = (0..200)
        .map(|_| {
            let orders = orders.clone();
            tokio::spawn(async move { place_with(&orders, &[("RACE", 1)], "tok_approve").await })
        })
        .collect();
    let mut ids = Vec::new();
    for p in placing {
        ids.push(p.await.expect("placed"));
    }
    shop.settle(&one, &ids).await;
    eager.stop().await;
    let (mut confirmed, mut out_of_stock, mut numbers) = (0, 0, Vec::new());
    for id in &ids {
        let order = shop.order(id).await;
        match (order.status, order.cancel_reason) {
            (Status::Confirmed, _) => confirmed += 1,
            (Status::Cancelled, Some(CancelReason::OutOfStock)) => out_of_stock += 1,
            other => panic!("unexpected end {other:?}"),
        }
        numbers.extend(order.invoice_number);
    }
    assert_eq!((confirmed, out_of_stock), (50, 150));
    let stock = shop.stock("RACE").await;
    assert_eq!((stock.on_hand, stock.reservations.len()), (0, 0));
    let totals = shop.ledger.totals();
    assert_eq!((totals.authorised, totals.captured), (50, 50), "one authorisation and one capture per confirmed order");
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=50).collect::<Vec<u64>>());
    // Each order's stock was decided once: one reservation or one rejection, never both.
    let log = shop.t.store.read_log(store::LogCursor::default(), 100_000).await.expect("log");
    let decisions =
        log.iter().filter(|e| e.aggregate_type == "order" && ["stock_reserved", "stock_rejected"].contains(&e.event_type.as_str()));
    assert_eq!(decisions.count(), 200);
});
