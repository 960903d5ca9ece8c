//! Read models from real events, in both backends: contents, a crash in the middle of a batch,
//! and rebuilds that give the same read model every time.

use std::sync::Arc;

use async_trait::async_trait;
use domain::stock::{Stock, StockCommand};
use domain::{Quantity, TenantId};
use projections::{Projection as _, Runner};
use sqlx::Row as _;
use store::{Metadata, Repository};
use testkit::both_backends;
use testkit::{dump, write_events, TestStore};
use worker_kit::ReadDb;
use worker_kit::Sourced;

async fn runner(t: &TestStore) -> Runner {
    let db = ReadDb::connect(&t.url, 4).await.expect("read db");
    db.migrate().await.expect("schema");
    Runner::new(t.store.clone(), db, projections::all()).with_batch_size(4)
}

async fn rebuild(runner: &Runner) {
    for p in runner.projections() {
        runner.reset(p.as_ref()).await.expect("reset");
    }
    runner.catch_up().await.expect("rebuild");
}

both_backends!(read_models_reflect_the_events, |t: TestStore| async move {
    write_events(&t).await;
    let runner = runner(&t).await;
    runner.catch_up().await.expect("catch up");
    let rows = dump(runner.db()).await;
    assert!(
        rows.contains(&"acme|00000000-0000-0000-0000-000000000001|SKU-0|Product 0|electronics/phones|900|EUR|1|1|3".to_owned()),
        "{rows:#?}"
    );
    assert!(rows.contains(&"globex|00000000-0000-0000-0000-000000000003|SKU-2|Product 2|electronics/phones|900|EUR|1|1|3".to_owned()));
    assert!(rows.contains(&"acme|SKU-0|10|3|7|2".to_owned()), "{rows:#?}");
    assert!(rows.contains(&"acme|00000000-0000-0000-0000-000000000063|ada@acme.example|Ada|customer,admin|1|2".to_owned()), "{rows:#?}");
    let status = runner.status().await.expect("status");
    assert!(status.iter().all(|s| s.lag_events == Some(0) && s.state == worker_kit::ReaderState::Running), "{status:?}");
});

both_backends!(a_crash_in_the_middle_of_a_batch_applies_nothing_twice, |t: TestStore| async move {
    write_events(&t).await;
    let clean = runner(&t).await;
    clean.catch_up().await.expect("catch up");
    let expected = dump(clean.db()).await;
    rebuild(&clean).await;
    // Crash in the third event of a catalogue batch, then go on as after a restart.
    clean.inject_fault("catalogue", 2);
    rebuild_after_fault(&clean).await;
    assert_eq!(dump(clean.db()).await, expected);
    let (_, processed) = clean.checkpoint("catalogue").await.expect("checkpoint");
    let head = t.store.head_position().await.expect("head");
    assert_eq!(processed, head, "every log event counted exactly once");
});

async fn rebuild_after_fault(runner: &Runner) {
    for p in runner.projections() {
        runner.reset(p.as_ref()).await.expect("reset");
    }
    let err = runner.catch_up().await.expect_err("the injected fault fires");
    assert!(matches!(err, projections::ProjectionError::Injected));
    runner.catch_up().await.expect("the retry succeeds");
}

both_backends!(rebuilding_twice_gives_the_same_read_models, |t: TestStore| async move {
    write_events(&t).await;
    let runner = runner(&t).await;
    runner.catch_up().await.expect("catch up");
    let first = dump(runner.db()).await;
    rebuild(&runner).await;
    let second = dump(runner.db()).await;
    rebuild(&runner).await;
    assert_eq!(first, second);
    assert_eq!(second, dump(runner.db()).await);
    assert_eq!(first.len(), 5);
});

async fn catalogue_state(runner: &Runner) -> worker_kit::ReaderState {
    runner.status().await.expect("status").into_iter().find(|s| s.name == "catalogue").map(|s| s.state).expect("catalogue")
}

both_backends!(a_rebuild_in_progress_shows_in_the_status, |t: TestStore| async move {
    write_events(&t).await;
    let runner = runner(&t).await;
    runner.catch_up().await.expect("catch up");
    assert_eq!(catalogue_state(&runner).await, worker_kit::ReaderState::Running);
    // What `shop replay` leaves while it builds: the shadow's checkpoint.
    let mut conn = runner.db().pool.acquire().await.expect("conn");
    worker_kit::advance_checkpoint(&mut conn, "catalogue:rebuild", None, store::LogCursor::default(), 0).await.expect("shadow checkpoint");
    drop(conn);
    assert_eq!(catalogue_state(&runner).await, worker_kit::ReaderState::Rebuilding);
    runner.rebuild(&projections::Catalogue, |_, _| {}).await.expect("rebuild");
    assert_eq!(catalogue_state(&runner).await, worker_kit::ReaderState::Running);
});

both_backends!(read_your_writes_waits_for_the_position, |t: TestStore| async move {
    let runner = Arc::new(runner(&t).await);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(Arc::clone(runner.driver()).run(stopped));
    let stock = Repository::<Stock>::new(t.store.clone(), ());
    let receive = StockCommand::Receive {
        tenant: TenantId::default(),
        sku: "RYW-1".parse().expect("valid"),
        quantity: Quantity::try_from(5).expect("valid"),
    };
    let done = stock.execute("default:RYW-1", receive, None, &Metadata::default()).await.expect("receive");
    let seen = runner.wait_for("stock", done.position, std::time::Duration::from_secs(10)).await.expect("wait");
    assert!(seen);
    let row = sqlx::query("SELECT available FROM rm_stock WHERE tenant = 'default' AND sku = 'RYW-1'")
        .fetch_one(&runner.db().pool)
        .await
        .expect("row");
    assert_eq!(row.try_get::<i64, _>(0).expect("available"), 5);
    assert!(
        !runner.wait_for("stock", done.position + 1000, std::time::Duration::from_millis(50)).await.expect("wait"),
        "a position never written is never reached"
    );
    stop.send(true).expect("workers listen");
    tokio::time::timeout(std::time::Duration::from_secs(10), worker).await.expect("workers stop").expect("workers ran");
});

// Writers keep going while (a) two workers run the same projection, as two `shop project`
// processes would, and (b) the projection is rebuilt and swapped. Every receipt counts once.
both_backends!(a_rebuild_under_live_writes_loses_nothing_and_doubles_nothing, |t: TestStore| async move {
    let a = Arc::new(runner(&t).await);
    let b = Arc::new(runner(&t).await);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = [tokio::spawn(Arc::clone(a.driver()).run(stopped.clone())), tokio::spawn(Arc::clone(b.driver()).run(stopped))];
    let stock = Repository::<Stock>::new(t.store.clone(), ());
    let writer = {
        let stock = stock.clone();
        tokio::spawn(async move {
            let mut last = 0;
            for i in 0..150 {
                let sku = format!("LIVE-{}", i % 5);
                let receive = StockCommand::Receive {
                    tenant: TenantId::default(),
                    sku: sku.parse().expect("valid"),
                    quantity: Quantity::try_from(1).expect("valid"),
                };
                last = stock.execute(&format!("default:{sku}"), receive, None, &Metadata::default()).await.expect("receive").position;
                if i % 10 == 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            }
            last
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let mut calls = 0;
    let report = a.rebuild(&projections::StockLevels, |_, _| calls += 1).await.expect("rebuild");
    assert!(report.events > 0 && calls > 0);
    let last = writer.await.expect("writer");
    assert!(a.wait_for("stock", last, std::time::Duration::from_secs(20)).await.expect("wait"));
    stop.send(true).expect("workers listen");
    for w in workers {
        tokio::time::timeout(std::time::Duration::from_secs(10), w).await.expect("workers stop").expect("workers ran");
    }
    let rows = dump(a.db()).await;
    for s in 0..5 {
        assert!(rows.contains(&format!("default|LIVE-{s}|30|0|30|30")), "{rows:#?}");
    }
    let (_, processed) = a.checkpoint("stock").await.expect("checkpoint");
    assert_eq!(processed, t.store.head_position().await.expect("head"), "each event processed once");
});

/// Stock levels that fail on the second event of `default:BAD` while `poison` is set.
struct Poisoned {
    poison: Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait]
impl projections::Projection for Poisoned {
    fn name(&self) -> &'static str {
        "poisoned"
    }

    fn handles(&self, aggregate_type: &str) -> bool {
        aggregate_type == "stock"
    }

    fn table(&self) -> &'static str {
        "rm_poisoned"
    }

    async fn apply(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        table: &str,
        events: &[&store::LogEvent],
    ) -> Result<(), projections::ProjectionError> {
        let poisoned = self.poison.load(std::sync::atomic::Ordering::SeqCst)
            && events.iter().any(|e| e.aggregate_id == "default:BAD" && e.sequence == 2);
        if poisoned {
            return Err(projections::ProjectionError::Malformed("poison".into()));
        }
        projections::StockLevels.apply(tx, table, events).await
    }
}

/// A runner with only the poisoned projection, and six receipts alternating `BAD` and `GOOD`;
/// returns the last position.
async fn poisoned(t: &TestStore) -> (Arc<Runner>, Arc<std::sync::atomic::AtomicBool>, i64) {
    let poison = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let db = ReadDb::connect(&t.url, 4).await.expect("read db");
    let poisoned: Arc<dyn projections::Projection> = Arc::new(Poisoned { poison: Arc::clone(&poison) });
    db.migrate().await.expect("schema");
    // A projection of the test's own: its table is not in the migrations, it copies rm_stock.
    let mut conn = db.pool.acquire().await.expect("connection");
    db.create_shadow(&mut conn, "rm_stock", poisoned.table()).await.expect("poisoned table");
    drop(conn);
    let runner = Arc::new(Runner::new(t.store.clone(), db, vec![poisoned]).with_batch_size(2));
    let stock = Repository::<Stock>::new(t.store.clone(), ());
    let mut last = 0;
    for _ in 0..3 {
        for sku in ["BAD", "GOOD"] {
            let receive = StockCommand::Receive {
                tenant: TenantId::default(),
                sku: sku.parse().expect("valid"),
                quantity: Quantity::try_from(1).expect("valid"),
            };
            last = stock.execute(&format!("default:{sku}"), receive, None, &Metadata::default()).await.expect("receive").position;
        }
    }
    (runner, poison, last)
}

/// What the poison left behind, and a retry once it is gone.
async fn check_parked(runner: &Arc<Runner>, poison: &std::sync::atomic::AtomicBool) {
    let on_hand = |sku: &'static str| {
        let runner = Arc::clone(runner);
        async move {
            let row = sqlx::query(&format!("SELECT on_hand FROM rm_poisoned WHERE sku = '{sku}'"))
                .fetch_one(&runner.db().pool)
                .await
                .expect("row");
            row.try_get::<i64, _>(0).expect("on_hand")
        }
    };
    assert_eq!((on_hand("GOOD").await, on_hand("BAD").await), (3, 1), "other aggregates go on; the failing one stops before the poison");
    let parked = runner.dead_letters("default").await.expect("dead letters");
    assert_eq!(parked.len(), 2, "{parked:?}");
    assert!(parked[0].error.contains("poison"));
    assert!(parked.iter().all(|d| d.aggregate_id == "default:BAD"));
    assert!(runner.retry_dead_letter(&parked[0].id).await.is_err(), "still poisoned: nothing changes");
    assert_eq!(runner.dead_letters("default").await.expect("dead letters").len(), 2);
    poison.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(runner.retry_dead_letter(&parked[0].id).await.expect("retry"), Some(2));
    assert_eq!(on_hand("BAD").await, 3, "the parked events applied in order");
    assert!(runner.dead_letters("default").await.expect("dead letters").is_empty());
    assert_eq!(runner.retry_dead_letter("nope").await.expect("retry"), None);
}

both_backends!(an_event_that_keeps_failing_is_parked_with_the_rest_of_its_aggregate, |t: TestStore| async move {
    let (runner, poison, last) = poisoned(&t).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(Arc::clone(runner.driver()).run(stopped));
    assert!(
        runner.wait_for("poisoned", last, std::time::Duration::from_secs(20)).await.expect("wait"),
        "the projection goes on past the poison"
    );
    check_parked(&runner, &poison).await;
    stop.send(true).expect("workers listen");
    tokio::time::timeout(std::time::Duration::from_secs(10), worker).await.expect("workers stop").expect("workers ran");
});

// The same through the external-source path (what the Kafka consumer calls), fed in batches
// of two the way the consumer does: retried, then taken apart.
both_backends!(a_sourced_event_that_keeps_failing_is_parked_with_the_rest_of_its_aggregate, |t: TestStore| async move {
    let (runner, poison, last) = poisoned(&t).await;
    // An open transaction elsewhere in the PostgreSQL cluster can hide new events for a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let log = loop {
        let log = t.store.read_log(store::LogCursor::default(), 100).await.expect("log");
        if log.last().map(|e| e.cursor.position) == Some(last) {
            break log;
        }
        assert!(std::time::Instant::now() < deadline, "the log never showed position {last}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let messages: Vec<Sourced> = log
        .into_iter()
        .enumerate()
        .map(|(i, event)| Sourced { topic: "t.stock.v1".into(), partition: 0, offset: i as i64, event })
        .collect();
    let p = Arc::clone(runner.projections().next().expect("one projection"));
    for batch in messages.chunks(2) {
        let mut attempts = 0;
        while let Err(e) = runner.apply_sourced(p.as_ref(), batch).await {
            assert!(e.to_string().contains("poison"), "{e}");
            attempts += 1;
            if attempts >= worker_kit::ATTEMPTS_BEFORE_PARKING {
                runner.isolate_sourced(p.as_ref(), batch).await.expect("isolate");
                break;
            }
        }
    }
    let offsets = runner.offsets("poisoned").await.expect("offsets");
    assert_eq!(offsets.get(&("t.stock.v1".to_owned(), 0)), Some(&6), "every message is behind the offset, parked or applied");
    // Delivered again: nothing changes, nothing is parked twice.
    for batch in messages.chunks(2) {
        assert_eq!(runner.apply_sourced(p.as_ref(), batch).await.expect("redelivery"), 0);
    }
    check_parked(&runner, &poison).await;
});

/// Column name, type and nullability of every column of `table`, in order, and how many
/// indexes it has.
async fn definition(db: &ReadDb, table: &str) -> (Vec<(String, String, bool)>, i64) {
    let (columns, indexes) = if db.is_sqlite() {
        (
            "SELECT name, type, \"notnull\" FROM pragma_table_info($1) ORDER BY cid",
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = $1",
        )
    } else {
        (
            "SELECT column_name::text, data_type::text, CASE WHEN is_nullable = 'NO' THEN 1 ELSE 0 END \
             FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position",
            "SELECT COUNT(*) FROM pg_indexes WHERE tablename = $1",
        )
    };
    let rows = sqlx::query(columns).bind(table).fetch_all(&db.pool).await.expect("columns");
    let columns = rows
        .iter()
        .map(|r| {
            let not_null: i64 = r.try_get::<i64, _>(2).or_else(|_| r.try_get::<i32, _>(2).map(i64::from)).expect("notnull");
            (r.try_get::<String, _>(0).expect("name"), r.try_get::<String, _>(1).expect("type").to_lowercase(), not_null == 1)
        })
        .collect();
    let indexes: i64 = sqlx::query_scalar(indexes).bind(table).fetch_one(&db.pool).await.expect("indexes");
    (columns, indexes)
}

// Live tables come from the migrations; a rebuild copies their definition into shadows and
// swaps those in. After two rebuilds every table still has the migrated columns and indexes.
both_backends!(rebuilds_keep_the_migrated_columns_and_indexes, |t: TestStore| async move {
    write_events(&t).await;
    let runner = runner(&t).await;
    let mut migrated = Vec::new();
    for p in projections::all() {
        for table in p.tables(p.table()) {
            let found = definition(runner.db(), &table).await;
            assert!(!found.0.is_empty(), "{table} exists after the migrations");
            migrated.push((table, found));
        }
    }
    for p in projections::all() {
        runner.rebuild(p.as_ref(), |_, _| {}).await.expect("rebuild");
        runner.rebuild(p.as_ref(), |_, _| {}).await.expect("rebuild again");
    }
    for (table, found) in migrated {
        assert_eq!(definition(runner.db(), &table).await, found, "{table} after two rebuilds");
    }
});

both_backends!(every_projection_moves_past_batches_without_its_events, |t: TestStore| async move {
    let runner = runner(&t).await;
    for member in runner.driver().members() {
        testkit::moves_past_foreign_events(&t, Arc::clone(member), 120).await;
    }
});

// A projection waiting on a lock (an operator's transaction, a long migration) holds none of
// the others back: on PostgreSQL the members of the driver work at the same time, so each
// step takes as long as its slowest member rather than the sum of them all. One after another,
// every projection after the catalogue would wait here as long as the lock is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_projection_waiting_on_a_lock_holds_none_of_the_others_back() {
    let Some(t) = testkit::fresh_store(testkit::Backend::Postgres).await else {
        return;
    };
    write_events(&t).await;
    let head = t.store.head_position().await.expect("head");
    let db = ReadDb::connect(&t.url, 16).await.expect("read db");
    db.migrate().await.expect("schema");
    let runner = Arc::new(Runner::new(t.store.clone(), db, projections::all()));
    let names: Vec<&'static str> = runner.projections().map(|p| p.name()).collect();
    assert_eq!(names.first(), Some(&"catalogue"), "the blocked projection is the first member");
    let mut lock = runner.db().pool.begin().await.expect("begin");
    sqlx::query(&format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", projections::Catalogue.table()))
        .execute(&mut *lock)
        .await
        .expect("lock");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(Arc::clone(runner.driver()).run(stopped));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    for name in &names[1..] {
        while !runner.reached(name, head).await.expect("checkpoint") {
            assert!(tokio::time::Instant::now() < deadline, "{name} waited for the catalogue's lock");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    assert!(!runner.reached("catalogue", head).await.expect("checkpoint"), "the catalogue waits for its table");
    lock.rollback().await.expect("release");
    assert!(
        runner.wait_for("catalogue", head, std::time::Duration::from_secs(20)).await.expect("wait"),
        "the catalogue goes on once its table is free"
    );
    let rows = dump(runner.db()).await;
    assert!(rows.contains(&"acme|SKU-0|10|3|7|2".to_owned()), "{rows:#?}");
    stop.send(true).expect("workers listen");
    tokio::time::timeout(std::time::Duration::from_secs(10), worker).await.expect("workers stop").expect("workers ran");
}
