//! The orders read model from real order and payment events, in both backends: rows, lines and
//! timelines; the same rows whatever the batch size, after a crash in a batch, and after
//! rebuilds; the same rows again when a source with a topic per aggregate type delivers the
//! payment events before their order's, or after its later events, or twice; a payment before
//! its order waiting for it; an order event without its placement parked instead of stopping
//! the projection.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use domain::order::{CancelReason, Order, OrderCommand, PricedLine};
use domain::payment::{FailureReason, Payment, PaymentCommand};
use domain::{Money, OrderId, PaymentId, Price, Quantity, UserId};
use projections::{Orders, Projection, Runner};
use sqlx::Row as _;
use store::{LogEvent, Metadata, Repository};
use testkit::both_backends;
use testkit::TestStore;
use worker_kit::ReadDb;
use worker_kit::Sourced;

async fn runner(t: &TestStore, batch: u32) -> Runner {
    let db = ReadDb::connect(&t.url, 4).await.expect("read db");
    let all: Vec<Arc<dyn Projection>> = vec![Arc::new(Orders)];
    db.migrate().await.expect("schema");
    Runner::new(t.store.clone(), db, all).with_batch_size(batch)
}

fn eur(amount: i64) -> Money {
    Money::new(amount, "EUR".parse().expect("valid"))
}

fn id(n: u128) -> OrderId {
    OrderId::from_uuid(uuid::Uuid::from_u128(n))
}

fn customer() -> UserId {
    UserId::from_uuid(uuid::Uuid::from_u128(99))
}

fn line(sku: &str, quantity: i64, unit: i64) -> PricedLine {
    PricedLine {
        sku: sku.parse().expect("valid"),
        quantity: Quantity::try_from(quantity).expect("valid"),
        unit_price: Price::try_from(eur(unit)).expect("valid"),
        name: None,
    }
}

/// Writes an order's and its payment's commands in the order given.
struct Shop {
    orders: Repository<Order>,
    payments: Repository<Payment>,
}

enum Step {
    Order(OrderCommand),
    Payment(PaymentCommand),
}

impl Shop {
    fn new(t: &TestStore) -> Self {
        Self { orders: Repository::new(t.store.clone(), ()), payments: Repository::new(t.store.clone(), ()) }
    }

    /// Runs `steps` against order `n` of `tenant`; returns the last position written.
    async fn run(&self, tenant: &str, n: u128, steps: Vec<Step>) -> i64 {
        let stream = domain::stream_id(&tenant.parse().expect("valid"), id(n));
        let meta = Metadata::default();
        let mut last = 0;
        for step in steps {
            last = match step {
                Step::Order(c) => self.orders.execute(&stream, c, None, &meta).await.expect("order command").position,
                Step::Payment(c) => self.payments.execute(&stream, c, None, &meta).await.expect("payment command").position,
            };
        }
        last
    }
}

/// 2 × 10.00 of A and 3 × 3.33 of B: subtotal 29.99, 20% tax 6.00, shipping 4.99, total 40.98.
fn place(tenant: &str, n: u128) -> Step {
    Step::Order(OrderCommand::Place {
        tenant: tenant.parse().expect("valid"),
        order_id: id(n),
        customer: customer(),
        lines: vec![line("A", 2, 1_000), line("B", 3, 333)],
        discount: None,
        tax_rate_bp: 2_000,
        shipping: eur(499),
        shipping_address: testkit::address(),
        payment_method: "tok_approve".into(),
    })
}

fn reserve() -> Step {
    Step::Order(OrderCommand::MarkStockReserved { expires_at: Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).single().expect("valid") })
}

fn request(tenant: &str, n: u128) -> Step {
    Step::Payment(PaymentCommand::RequestAuthorisation {
        tenant: tenant.parse().expect("valid"),
        order_id: id(n),
        customer: customer(),
        amount: eur(4_098),
        method: "tok_approve".into(),
    })
}

/// Order 1 goes the whole way (refunded in part), 2 runs out of stock, 3 is declined; 4, in
/// another tenant, is only placed.
async fn write_orders(t: &TestStore) -> i64 {
    let shop = Shop::new(t);
    shop.run(
        "acme",
        1,
        vec![
            place("acme", 1),
            reserve(),
            request("acme", 1),
            Step::Payment(PaymentCommand::RecordAuthorised { reference: "ref-1".into() }),
            Step::Order(OrderCommand::MarkPaymentAuthorised { payment_id: PaymentId::from_uuid(id(1).as_uuid()) }),
            Step::Order(OrderCommand::Confirm),
            Step::Payment(PaymentCommand::RecordCaptured),
            Step::Order(OrderCommand::AssignInvoice { number: 7 }),
            Step::Order(OrderCommand::Ship { carrier: "DHL".parse().expect("valid"), tracking_number: "00340434".parse().expect("valid") }),
            Step::Order(OrderCommand::Deliver),
            Step::Payment(PaymentCommand::RequestRefund { refund_id: "r1".into(), amount: eur(500) }),
            Step::Payment(PaymentCommand::RecordRefunded { refund_id: "r1".into() }),
            Step::Order(OrderCommand::Refund { amount: eur(500) }),
        ],
    )
    .await;
    shop.run("acme", 2, vec![place("acme", 2), Step::Order(OrderCommand::RejectStock { sku: "B".parse().expect("valid") })]).await;
    shop.run(
        "acme",
        3,
        vec![
            place("acme", 3),
            reserve(),
            request("acme", 3),
            Step::Payment(PaymentCommand::RecordFailed { reason: FailureReason::Declined }),
            Step::Order(OrderCommand::FailPayment { reason: CancelReason::PaymentDeclined }),
            Step::Payment(PaymentCommand::RecordVoided),
        ],
    )
    .await;
    shop.run("globex", 4, vec![place("globex", 4)]).await
}

/// Each value of a row as text (`-` for NULL), joined by `|`.
fn text(row: &sqlx::any::AnyRow) -> String {
    (0..row.len())
        .map(|i| {
            row.try_get::<Option<String>, _>(i)
                .map(|s| s.unwrap_or_else(|| "-".into()))
                .or_else(|_| row.try_get::<Option<i64>, _>(i).map(|n| n.map_or("-".into(), |n| n.to_string())))
                .expect("text or number")
        })
        .collect::<Vec<_>>()
        .join("|")
}

const ORDER_COLUMNS: &str = "tenant, order_id, customer, status, cancel_reason, currency, subtotal, tax, shipping, total, refunded, \
     payment_method, payment_status, payment_amount, payment_refunded, invoice_number, carrier, tracking_number, version";

/// Every row of the three tables as text.
async fn dump(db: &ReadDb) -> Vec<String> {
    rows(db, "updated_at_ms, position").await
}

/// Every row of the three tables as text but the position and time of the last event folded
/// into each order: a source that delivers the payment stream apart from the order stream may
/// fold an older event last (and the `ETag` must change when it does).
async fn dump_as_delivered(db: &ReadDb) -> Vec<String> {
    rows(db, "1").await
}

async fn rows(db: &ReadDb, last_event_columns: &str) -> Vec<String> {
    let mut out = Vec::new();
    for sql in [
        format!(
            "SELECT {ORDER_COLUMNS}, shipping_address, lines, placed_at_ms, placed_day, invoiced_at_ms, {last_event_columns} \
             FROM rm_orders ORDER BY tenant, order_id"
        ),
        "SELECT tenant, order_id, line_no, sku, quantity, unit_amount, amount FROM rm_orders_lines ORDER BY order_id, line_no".into(),
        "SELECT order_id, position, source, event, status, detail, at_ms FROM rm_orders_timeline ORDER BY order_id, position".into(),
    ] {
        for row in sqlx::query(&sql).fetch_all(&db.pool).await.expect("dump") {
            out.push(text(&row));
        }
    }
    out
}

/// The row of order `n` (the columns of `ORDER_COLUMNS`).
async fn order(db: &ReadDb, n: u128) -> String {
    let row = sqlx::query(&format!("SELECT {ORDER_COLUMNS} FROM rm_orders WHERE order_id = $1"))
        .bind(id(n).to_string())
        .fetch_one(&db.pool)
        .await
        .expect("order row");
    text(&row)
}

/// `event:status` of each timeline entry of order `n`, in log order.
async fn timeline(db: &ReadDb, n: u128) -> Vec<String> {
    sqlx::query("SELECT event, status FROM rm_orders_timeline WHERE order_id = $1 ORDER BY position")
        .bind(id(n).to_string())
        .fetch_all(&db.pool)
        .await
        .expect("timeline")
        .iter()
        .map(|r| format!("{}:{}", r.get::<String, _>(0), r.get::<String, _>(1)))
        .collect()
}

both_backends!(orders_show_their_status_totals_payment_and_timeline, |t: TestStore| async move {
    write_orders(&t).await;
    // Batches of three: payment events land in other batches than their order's placement.
    let runner = runner(&t, 3).await;
    runner.catch_up().await.expect("catch up");
    let db = runner.db();
    let customer = customer();
    assert_eq!(
        order(db, 1).await,
        format!("acme|{}|{customer}|delivered|-|EUR|2999|600|499|4098|500|tok|captured|4098|500|7|DHL|00340434|8", id(1))
    );
    assert_eq!(order(db, 2).await, format!("acme|{}|{customer}|cancelled|out_of_stock|EUR|2999|600|499|4098|0|tok|-|-|0|-|-|-|2", id(2)));
    assert_eq!(
        order(db, 3).await,
        format!("acme|{}|{customer}|cancelled|payment_declined|EUR|2999|600|499|4098|0|tok|voided|4098|0|-|-|-|3", id(3))
    );
    assert_eq!(order(db, 4).await, format!("globex|{}|{customer}|placed|-|EUR|2999|600|499|4098|0|tok|-|-|0|-|-|-|1", id(4)));
    assert_eq!(
        timeline(db, 1).await,
        [
            "placed:placed",
            "stock_reserved:stock_reserved",
            "payment_authorisation_requested:stock_reserved",
            "payment_authorised:stock_reserved",
            "payment_authorised:payment_authorised",
            "confirmed:confirmed",
            "payment_captured:confirmed",
            "invoiced:confirmed",
            "shipped:shipped",
            "delivered:delivered",
            "payment_refund_requested:delivered",
            "payment_refunded:delivered",
            "refunded:delivered",
        ]
    );
    assert_eq!(timeline(db, 2).await, ["placed:placed", "stock_rejected:cancelled"]);
    let details: Vec<String> = sqlx::query("SELECT detail FROM rm_orders_timeline WHERE order_id = $1 ORDER BY position")
        .bind(id(1).to_string())
        .fetch_all(&db.pool)
        .await
        .expect("details")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let detail = |i: usize| serde_json::from_str::<serde_json::Value>(&details[i]).expect("json");
    assert_eq!(detail(8), serde_json::json!({ "carrier": "DHL", "tracking_number": "00340434" }));
    assert_eq!(detail(7), serde_json::json!({ "number": 7 }));
    assert_eq!(detail(12)["refunded_total"], serde_json::json!({ "amount": 500, "currency": "EUR" }));
    let lines: Vec<String> =
        sqlx::query("SELECT sku, quantity, unit_amount, amount FROM rm_orders_lines WHERE order_id = $1 ORDER BY line_no")
            .bind(id(1).to_string())
            .fetch_all(&db.pool)
            .await
            .expect("lines")
            .iter()
            .map(text)
            .collect();
    assert_eq!(lines, ["A|2|1000|2000", "B|3|333|999"]);
    let row = sqlx::query("SELECT placed_at_ms, placed_day, invoiced_at_ms FROM rm_orders WHERE order_id = $1")
        .bind(id(1).to_string())
        .fetch_one(&db.pool)
        .await
        .expect("row");
    let placed_at = Utc.timestamp_millis_opt(row.get(0)).single().expect("a time");
    assert_eq!(row.get::<String, _>(1), placed_at.format("%Y-%m-%d").to_string());
    assert!(row.get::<Option<i64>, _>(2).is_some_and(|at| at >= placed_at.timestamp_millis()));
});

both_backends!(batch_sizes_crashes_and_rebuilds_give_the_same_rows, |t: TestStore| async move {
    write_orders(&t).await;
    let small = runner(&t, 3).await;
    small.catch_up().await.expect("catch up");
    let expected = dump(small.db()).await;
    assert_eq!(expected.len(), 4 + 8 + 22, "{expected:#?}");
    // Everything in one batch: each order folded from placement to its end in memory.
    let large = runner(&t, 500).await;
    large.reset(&Orders).await.expect("reset");
    large.catch_up().await.expect("catch up");
    assert_eq!(dump(large.db()).await, expected);
    // A crash in the middle of a batch keeps nothing of it.
    large.reset(&Orders).await.expect("reset");
    large.inject_fault("orders", 5);
    assert!(matches!(large.catch_up().await, Err(projections::ProjectionError::Injected)));
    large.catch_up().await.expect("the retry succeeds");
    assert_eq!(dump(large.db()).await, expected);
    // `shop replay`: shadows of all four tables built, then swapped in; twice, so that the
    // names the first swap leaves behind do not get in the way of the second.
    for _ in 0..2 {
        large.rebuild(&Orders, |_, _| {}).await.expect("rebuild");
        assert_eq!(dump(large.db()).await, expected);
    }
    for table in ["rm_orders_shadow", "rm_orders_shadow_lines", "rm_orders_shadow_timeline", "rm_orders_shadow_pending"] {
        assert!(sqlx::query(&format!("SELECT 1 FROM {table}")).fetch_all(&large.db().pool).await.is_err(), "{table} is left over");
    }
    // Still live: what comes after a rebuild lands in the swapped-in tables.
    let last = Shop::new(&t).run("globex", 4, vec![Step::Order(OrderCommand::Cancel { reason: CancelReason::CancelledByCustomer })]).await;
    large.catch_up().await.expect("catch up");
    assert!(large.reached("orders", last).await.expect("reached"));
    assert!(order(large.db(), 4).await.contains("|cancelled|cancelled_by_customer|"));
    assert_eq!(timeline(large.db(), 4).await, ["placed:placed", "cancelled:cancelled"]);
});

/// Payment events waiting for their order's placement.
async fn pending(db: &ReadDb) -> i64 {
    sqlx::query("SELECT COUNT(*) FROM rm_orders_pending").fetch_one(&db.pool).await.expect("pending").get(0)
}

// Fed from the log a payment comes after its order, but nothing in the store makes it so.
both_backends!(a_payment_before_its_order_waits_for_it_and_the_rest_goes_on, |t: TestStore| async move {
    let shop = Shop::new(&t);
    shop.run("acme", 5, vec![request("acme", 5)]).await;
    let last = shop.run("acme", 6, vec![place("acme", 6)]).await;
    let runner = Arc::new(runner(&t, 10).await);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(Arc::clone(runner.driver()).run(stopped));
    assert!(runner.wait_for("orders", last, std::time::Duration::from_secs(20)).await.expect("wait"), "the projection goes on");
    assert!(order(runner.db(), 6).await.contains("|placed|"));
    assert_eq!(pending(runner.db()).await, 1);
    let last = shop.run("acme", 5, vec![place("acme", 5)]).await;
    assert!(runner.wait_for("orders", last, std::time::Duration::from_secs(20)).await.expect("wait"));
    stop.send(true).expect("workers listen");
    tokio::time::timeout(std::time::Duration::from_secs(10), worker).await.expect("workers stop").expect("workers ran");
    assert_eq!(parked_anywhere(&runner).await, 0, "no dead letter in any tenant");
    assert_eq!(pending(runner.db()).await, 0);
    assert_eq!(
        order(runner.db(), 5).await,
        format!("acme|{}|{}|placed|-|EUR|2999|600|499|4098|0|tok|requested|4098|0|-|-|-|1", id(5), customer())
    );
    // In log order, with no order event before it to take a status from.
    assert_eq!(timeline(runner.db(), 5).await, ["payment_authorisation_requested:placed", "placed:placed"]);
});

/// The orders of [`write_orders`] as the log holds them, a runner whose read model holds what
/// they give in log order (in batches of three), and that read model.
async fn log_ordered(t: &TestStore) -> (Runner, Vec<LogEvent>, Vec<String>) {
    let last = write_orders(t).await;
    // An open transaction elsewhere in the PostgreSQL cluster can hide new events for a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let log = loop {
        let log = t.store.read_log(store::LogCursor::default(), 1_000).await.expect("log");
        if log.last().map(|e| e.cursor.position) == Some(last) {
            break log;
        }
        assert!(std::time::Instant::now() < deadline, "the log never showed position {last}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let runner = runner(t, 3).await;
    runner.catch_up().await.expect("catch up");
    let expected = dump_as_delivered(runner.db()).await;
    (runner, log, expected)
}

/// `log` as a source with a topic per aggregate type delivers it: `{run}.order` and
/// `{run}.payment`, each in log order, offsets from 0 (a fresh run name, fresh offsets).
fn topics(log: &[LogEvent], run: &str) -> (Vec<Sourced>, Vec<Sourced>) {
    let topic = |kind: &str| -> Vec<Sourced> {
        log.iter()
            .filter(|e| e.aggregate_type == kind)
            .enumerate()
            .map(|(i, e)| Sourced { topic: format!("{run}.{kind}"), partition: 0, offset: i as i64, event: e.clone() })
            .collect()
    };
    (topic("order"), topic("payment"))
}

/// Applies `messages` in batches of `size`, as the consumer does; returns the events applied.
async fn deliver(runner: &Runner, messages: &[Sourced], size: usize) -> usize {
    let mut applied = 0;
    for batch in messages.chunks(size) {
        applied += runner.apply_sourced(&Orders, batch).await.expect("the batch applies");
    }
    applied
}

/// `messages` published again after them on their topics, as a relay that crashed before its
/// checkpoint does.
fn republished(messages: &[Sourced]) -> Vec<Sourced> {
    let shift = messages.len() as i64;
    messages.iter().map(|m| Sourced { offset: m.offset + shift, ..m.clone() }).collect()
}

/// Nothing parked, nothing left waiting, and the rows of the log-ordered run.
async fn assert_settled(runner: &Runner, expected: &[String]) {
    assert_eq!(parked_anywhere(&runner).await, 0, "no dead letter in any tenant");
    assert_eq!(pending(runner.db()).await, 0);
    assert_eq!(dump_as_delivered(runner.db()).await, expected);
}

both_backends!(payments_delivered_before_their_orders_wait_for_them, |t: TestStore| async move {
    let (runner, log, expected) = log_ordered(&t).await;
    let db = runner.db();
    // Every payment event in batches of their own before any order event.
    runner.reset(&Orders).await.expect("reset");
    let (orders, payments) = topics(&log, "first");
    assert_eq!((orders.len(), payments.len()), (14, 8));
    assert_eq!(deliver(&runner, &payments, 3).await, 8);
    assert_eq!(pending(db).await, 8);
    assert!(dump_as_delivered(db).await.is_empty(), "no row before a placement");
    // Delivered again (a rebalance) and published again (a relay crash): still waiting once.
    assert_eq!(deliver(&runner, &payments, 3).await, 0);
    assert_eq!(deliver(&runner, &republished(&payments), 3).await, 8);
    assert_eq!(pending(db).await, 8);
    // Batches of three: order 1 is placed with its payment before its later order events.
    assert_eq!(deliver(&runner, &orders, 3).await, 14);
    assert_settled(&runner, &expected).await;
    // Both streams in one batch, the payment's first.
    runner.reset(&Orders).await.expect("reset");
    let (orders, payments) = topics(&log, "together");
    let batch: Vec<Sourced> = payments.into_iter().chain(orders).collect();
    assert_eq!(deliver(&runner, &batch, batch.len()).await, 22);
    assert_settled(&runner, &expected).await;
    // Order 1's payment alone, then its placement alone, then the rest.
    runner.reset(&Orders).await.expect("reset");
    let (orders, payments) = topics(&log, "one");
    let (first, rest) = payments.split_at(5);
    assert!(first.iter().all(|m| m.event.aggregate_id == format!("acme:{}", id(1))));
    deliver(&runner, first, 5).await;
    deliver(&runner, &orders[..1], 1).await;
    assert_eq!(pending(db).await, 0, "the placement takes its payment along");
    assert!(order(db, 1).await.contains("|placed|-|EUR|2999|600|499|4098|0|tok|captured|4098|500|"));
    deliver(&runner, rest, 2).await;
    deliver(&runner, &orders[1..], 4).await;
    assert_settled(&runner, &expected).await;
});

both_backends!(payments_delivered_behind_or_ahead_of_order_events_give_the_same_timeline, |t: TestStore| async move {
    let (runner, log, expected) = log_ordered(&t).await;
    runner.reset(&Orders).await.expect("reset");
    let (orders, payments) = topics(&log, "late");
    deliver(&runner, &orders, 3).await;
    // Each payment entry takes the order status of its moment, not the one it was folded at.
    deliver(&runner, &payments, 2).await;
    assert_settled(&runner, &expected).await;
    assert_eq!(
        timeline(runner.db(), 1).await[2..5],
        ["payment_authorisation_requested:stock_reserved", "payment_authorised:stock_reserved", "payment_authorised:payment_authorised"]
    );
    // The other way round: order events delivered after later payment events.
    runner.reset(&Orders).await.expect("reset");
    let (orders, payments) = topics(&log, "early");
    // Order 1's placement and stock reservation, then every payment event (order 1's ahead of
    // its later order events, order 3's ahead of its placement), then the rest of the orders.
    deliver(&runner, &orders[..2], 2).await;
    deliver(&runner, &payments, 3).await;
    deliver(&runner, &orders[2..], 3).await;
    assert_settled(&runner, &expected).await;
});

both_backends!(events_published_twice_change_nothing, |t: TestStore| async move {
    let (runner, log, expected) = log_ordered(&t).await;
    runner.reset(&Orders).await.expect("reset");
    let (orders, payments) = topics(&log, "twice");
    deliver(&runner, &payments, 2).await;
    deliver(&runner, &orders, 3).await;
    let delivered = dump(runner.db()).await;
    assert_eq!(deliver(&runner, &payments, 2).await, 0, "behind the stored offsets");
    assert_eq!(deliver(&runner, &republished(&payments), 2).await, 8);
    assert_eq!(deliver(&runner, &republished(&orders), 5).await, 14);
    let all: Vec<Sourced> = republished(&republished(&payments)).into_iter().chain(republished(&republished(&orders))).collect();
    assert_eq!(deliver(&runner, &all, all.len()).await, 22);
    assert_eq!(dump(runner.db()).await, delivered, "not even the last event folded moved");
    assert_settled(&runner, &expected).await;
});

both_backends!(an_order_event_without_its_placement_is_parked_and_the_rest_goes_on, |t: TestStore| async move {
    let (runner, log, _) = log_ordered(&t).await;
    runner.reset(&Orders).await.expect("reset");
    let (orders, _) = topics(&log, "lost");
    // Order 1's placement never comes; its stock reservation and order 2 do.
    let batch = [orders[1].clone(), orders[8].clone()];
    assert_eq!(batch[1].event.event_type, "placed");
    for _ in 0..worker_kit::ATTEMPTS_BEFORE_PARKING {
        assert!(runner.apply_sourced(&Orders, &batch).await.is_err());
    }
    runner.isolate_sourced(&Orders, &batch).await.expect("isolate");
    let tenant = batch[0].event.aggregate_id.split(':').next().expect("a tenant");
    let parked = runner.dead_letters(tenant).await.expect("dead letters");
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(
        (parked[0].aggregate_id.as_str(), parked[0].position),
        (batch[0].event.aggregate_id.as_str(), batch[0].event.cursor.position)
    );
    assert!(order(runner.db(), 2).await.contains("|placed|"));
});

/// Dead letters of every tenant.
async fn parked_anywhere(runner: &Runner) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM projection_dead_letters").fetch_one(&runner.db().pool).await.expect("count")
}
