//! One suite, both backends: every test runs against SQLite and PostgreSQL.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use domain::stock::{Stock, StockCommand, StockError};
use domain::{OrderId, Quantity, Sku, TenantId};
use store::{Db, EventStore, ExecError, LogCursor, Metadata, NewEvent, Repository, StoreError, StreamAppend};
use testkit::{both_backends, fresh_store, Backend, TestStore};

fn event(n: i64) -> NewEvent {
    NewEvent {
        event_type: "happened".into(),
        event_version: "1".into(),
        payload: serde_json::json!({ "n": n }),
        metadata: serde_json::json!({}),
    }
}

fn append(id: &str, expected: u64, events: Vec<NewEvent>) -> StreamAppend {
    StreamAppend { aggregate_type: "thing".into(), aggregate_id: id.into(), expected_version: expected, events }
}

/// The log once it holds `n` events. On PostgreSQL an open transaction anywhere in the cluster
/// (another test's database too) hides later events for a moment, so poll rather than expect
/// them at once.
async fn log_of(store: &EventStore, n: usize) -> Vec<store::LogEvent> {
    let mut log = Vec::new();
    for _ in 0..400 {
        log = whole_log(store).await;
        if log.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    log
}

async fn whole_log(store: &EventStore) -> Vec<store::LogEvent> {
    let mut out = Vec::new();
    let mut cursor = LogCursor::default();
    loop {
        let batch = store.read_log(cursor, 100).await.expect("log reads");
        let Some(last) = batch.last() else { return out };
        cursor = last.cursor;
        out.extend(batch);
    }
}

both_backends!(appends_land_in_sequence_and_load_back, |t: TestStore| async move {
    let store = t.store.clone();
    let positions = store.append(&[append("a", 0, vec![event(1), event(2)])]).await.expect("append");
    assert_eq!(positions[0].len(), 2);
    assert!(positions[0][0] < positions[0][1]);
    store.append(&[append("a", 2, vec![event(3)])]).await.expect("append at version 2");
    let loaded = store.load_stream("thing", "a", 0).await.expect("load");
    assert_eq!(loaded.iter().map(|e| e.sequence).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(loaded[2].payload["n"], 3);
    assert_eq!(store.load_stream("thing", "a", 2).await.expect("load").len(), 1);
    assert_eq!(store.stream_version("thing", "a").await.expect("version"), 3);
    assert_eq!(store.stream_version("thing", "none").await.expect("version"), 0);
});

// Many streams read in one call, each after its own sequence, over more streams than one
// query takes: every stream gets exactly its own events, in order; an empty one gets none.
both_backends!(streams_read_together_each_start_after_their_own_sequence, |t: TestStore| async move {
    let store = t.store.clone();
    let n = store::STREAMS_PER_READ + 50;
    let ids: Vec<String> = (0..n).map(|i| format!("s-{i:03}")).collect();
    let appends: Vec<StreamAppend> =
        ids.iter().enumerate().map(|(i, id)| append(id, 0, (0..3).map(|k| event((i * 10 + k) as i64)).collect())).collect();
    store.append(&appends).await.expect("append");
    // Backwards, so the answer's order is the request's, not the table's.
    let mut asked: Vec<(&str, u64)> = ids.iter().enumerate().rev().map(|(i, id)| (id.as_str(), (i % 4) as u64)).collect();
    asked.insert(7, ("none", 0));
    let read = store.load_streams("thing", &asked).await.expect("load");
    assert_eq!(read.len(), asked.len());
    for ((id, after), events) in asked.iter().zip(&read) {
        let Some(i) = id.strip_prefix("s-").map(|i| i.parse::<usize>().expect("index")) else {
            assert!(events.is_empty(), "{id}: {} events", events.len());
            continue;
        };
        let want: Vec<(u64, i64)> = (*after + 1..=3).map(|s| (s, (i * 10) as i64 + s as i64 - 1)).collect();
        let got: Vec<(u64, i64)> = events.iter().map(|e| (e.sequence, e.payload["n"].as_i64().expect("n"))).collect();
        assert_eq!(got, want, "{id} after {after}");
    }
});

both_backends!(an_append_at_a_stale_version_conflicts, |t: TestStore| async move {
    let store = t.store.clone();
    store.append(&[append("a", 0, vec![event(1)])]).await.expect("first append");
    let err = store.append(&[append("a", 0, vec![event(2)])]).await.expect_err("stale append");
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    assert_eq!(store.load_stream("thing", "a", 0).await.expect("load").len(), 1);
});

both_backends!(concurrent_appends_at_one_version_let_exactly_one_win, |t: TestStore| async move {
    let store = t.store.clone();
    let tries = (0..20).map(|i| {
        let store = store.clone();
        tokio::spawn(async move { store.append(&[append("hot", 0, vec![event(i)])]).await })
    });
    let results = futures::future::join_all(tries).await;
    let won = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
    let conflicted = results.iter().filter(|r| matches!(r, Ok(Err(StoreError::Conflict)))).count();
    assert_eq!((won, conflicted), (1, 19));
});

both_backends!(two_processes_batching_the_same_streams_in_opposite_orders_only_ever_conflict, |t: TestStore| async move {
    // Two stores on one database stand for two processes, each with its own group commit. Each
    // round both append version `round` of the same 16 streams, one in order and one in
    // reverse, all at once: each key has one winner, and every loser sees a conflict (never a
    // deadlock or any other error).
    let other = EventStore::connect(&t.url, 8).await.expect("second process");
    let streams: Vec<String> = (0..16).map(|i| format!("s{i}")).collect();
    for round in 0..20u64 {
        let mut tries = Vec::new();
        for (store, reverse) in [(t.store.clone(), false), (other.clone(), true)] {
            let mut order = streams.clone();
            if reverse {
                order.reverse();
            }
            for id in order {
                let store = store.clone();
                tries.push(tokio::spawn(async move { store.append(&[append(&id, round, vec![event(round as i64)])]).await }));
            }
        }
        let mut won = 0;
        for r in futures::future::join_all(tries).await {
            match r.expect("task ran") {
                Ok(_) => won += 1,
                Err(StoreError::Conflict) => {}
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert_eq!(won, 16, "round {round}: one winner per stream");
    }
    for id in &streams {
        assert_eq!(t.store.stream_version("thing", id).await.expect("version"), 20);
    }
});

both_backends!(a_multi_stream_append_is_all_or_nothing, |t: TestStore| async move {
    let store = t.store.clone();
    store.append(&[append("taken", 0, vec![event(1)])]).await.expect("setup");
    let err =
        store.append(&[append("fresh", 0, vec![event(1)]), append("taken", 0, vec![event(2)])]).await.expect_err("one stream is stale");
    assert!(matches!(err, StoreError::Conflict));
    assert!(store.load_stream("thing", "fresh", 0).await.expect("load").is_empty(), "nothing half-written");
});

both_backends!(the_global_log_keeps_every_stream_in_order, |t: TestStore| async move {
    let store = t.store.clone();
    for round in 0..5u64 {
        for id in ["a", "b", "c"] {
            store.append(&[append(id, round * 2, vec![event(1), event(2)])]).await.expect("append");
        }
    }
    let log = log_of(&store, 30).await;
    assert_eq!(log.len(), 30);
    let cursors: Vec<_> = log.iter().map(|e| e.cursor).collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "cursors strictly increase");
    for id in ["a", "b", "c"] {
        let seqs: Vec<i64> = log.iter().filter(|e| e.aggregate_id == id).map(|e| e.sequence).collect();
        assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    }
    assert_eq!(log[0].payload["n"], 1);
});

// Writers race, some holding their transaction open for a while after inserting, while a
// reader tails the log. The reader must end with every committed event exactly once.
both_backends!(the_reader_never_skips_a_slow_commit, |t: TestStore| async move {
    let store = t.store.clone();
    let backend = t.backend;
    let writers = futures::future::join_all(racing_writers(&store, backend, 8, 15, 5));
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut cursor = LogCursor::default();
            while seen.len() < 120 {
                let batch = store.read_log(cursor, 7).await.expect("log reads");
                if let Some(last) = batch.last() {
                    assert!(last.cursor > cursor);
                    cursor = last.cursor;
                }
                seen.extend(batch.into_iter().map(|e| (e.aggregate_id, e.sequence)));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            seen
        })
    };
    for w in writers.await {
        w.expect("writer finished");
    }
    let seen = tokio::time::timeout(Duration::from_secs(60), reader).await.expect("reader caught up").expect("reader ok");
    assert_eq!(seen.len(), 120);
    let distinct: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(distinct.len(), 120, "no event twice");
    let mut per_stream: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (id, seq) in seen {
        per_stream.entry(id).or_default().push(seq);
    }
    for seqs in per_stream.values() {
        assert_eq!(*seqs, (1..=15).collect::<Vec<_>>(), "per-stream order kept");
    }
});

// Readers of one store share its window of the log (`log_cache`): one reads the database, the
// others are served from memory. Writers race (some holding their transaction open) while
// readers at different paces and batch sizes tail the log through one store, and one starts
// late from the beginning. Each must see exactly what a store of its own (another window)
// reads from the database: every event once, in the same order.
both_backends!(readers_sharing_the_log_window_read_exactly_the_log, |t: TestStore| async move {
    let store = t.store.clone();
    let backend = t.backend;
    const WRITERS: u64 = 6;
    const EACH: u64 = 30;
    let total = (WRITERS * EACH) as usize;
    let writers = futures::future::join_all(racing_writers(&store, backend, WRITERS, EACH, 7));
    let tail = |limit: u32, pause: u64, store: EventStore| {
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut cursor = LogCursor::default();
            while seen.len() < total {
                let batch = store.read_log(cursor, limit).await.expect("log reads");
                if let Some(last) = batch.last() {
                    assert!(last.cursor > cursor, "the log moves forward");
                    cursor = last.cursor;
                }
                seen.extend(batch.into_iter().map(|e| (e.cursor, e.aggregate_id, e.sequence, e.payload)));
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            seen
        })
    };
    let readers: Vec<_> =
        [(1, 0), (3, 1), (7, 2), (50, 5), (500, 3)].into_iter().map(|(limit, pause)| tail(limit, pause, store.clone())).collect();
    for w in writers.await {
        w.expect("writer finished");
    }
    let late = tail(11, 0, store.clone());
    let own = EventStore::connect(&t.url, 2).await.expect("a store with a window of its own");
    let truth: Vec<_> = log_of(&own, total).await.into_iter().map(|e| (e.cursor, e.aggregate_id, e.sequence, e.payload)).collect();
    assert_eq!(truth.len(), total);
    for reader in readers.into_iter().chain([late]) {
        let seen = tokio::time::timeout(Duration::from_secs(60), reader).await.expect("reader caught up").expect("reader ok");
        assert_eq!(seen, truth, "a reader of the shared window read the log as the database has it");
    }
});

// A read from a cursor inside the window returns what the database has, not the window's
// stretch alone: another process's commit is seen by a reader that reads again from where it
// stood (a reader held back by a failing neighbour, a test polling from the start).
both_backends!(a_read_inside_the_window_sees_what_another_process_appended, |t: TestStore| async move {
    t.store.append(&[append("mine", 0, vec![event(1)])]).await.expect("append");
    assert_eq!(log_of(&t.store, 1).await.len(), 1);
    let other = EventStore::connect(&t.url, 2).await.expect("another process's store");
    other.append(&[append("theirs", 0, vec![event(2)])]).await.expect("append elsewhere");
    // Read again and again from the start, as one call each (an open transaction elsewhere in
    // the cluster may hide the commit for a moment).
    let mut ids = Vec::new();
    for _ in 0..400 {
        ids = t.store.read_log(LogCursor::default(), 100).await.expect("log reads").into_iter().map(|e| e.aggregate_id).collect::<Vec<_>>();
        if ids.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(ids, ["mine", "theirs"]);
});

/// `writers` tasks, each appending `each` events to a stream of its own (`w<n>`), every
/// `slow_every`th of them in a transaction held open for a while ([`slow_append`]).
fn racing_writers(store: &EventStore, backend: Backend, writers: u64, each: u64, slow_every: u64) -> Vec<tokio::task::JoinHandle<()>> {
    (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = format!("w{w}");
                for i in 0..each {
                    if i % slow_every == 2 {
                        slow_append(&store, backend, &id, i).await;
                    } else {
                        store.append(&[append(&id, i, vec![event(i as i64)])]).await.expect("append");
                    }
                }
            })
        })
        .collect()
}

/// Inserts one event in a transaction that stays open for 150 ms before it commits.
async fn slow_append(store: &EventStore, backend: Backend, id: &str, version: u64) {
    match (store.db(), backend) {
        (Db::Postgres(pool), _) => {
            let mut tx = pool.begin().await.expect("begin");
            sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
                 VALUES ('thing', $1, $2, 'happened', '1', '{}', '{}')",
            )
            .bind(id)
            .bind(version as i64 + 1)
            .execute(&mut *tx)
            .await
            .expect("insert");
            tokio::time::sleep(Duration::from_millis(150)).await;
            tx.commit().await.expect("commit");
        }
        (Db::Sqlite { write, .. }, _) => {
            let mut tx = write.begin().await.expect("begin");
            sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
                 VALUES ('thing', ?, ?, 'happened', '1', '{}', '{}')",
            )
            .bind(id)
            .bind(version as i64 + 1)
            .execute(&mut *tx)
            .await
            .expect("insert");
            tokio::time::sleep(Duration::from_millis(150)).await;
            tx.commit().await.expect("commit");
        }
    }
}

/// PostgreSQL only: an open transaction that inserted an earlier position holds the reader back
/// even after a later position has committed, and both are read once it commits.
#[tokio::test]
async fn postgres_reader_waits_for_an_open_transaction_with_an_earlier_position() {
    let Some(t) = fresh_store(Backend::Postgres).await else {
        return;
    };
    let Db::Postgres(pool) = t.store.db() else { unreachable!("postgres backend") };
    let mut slow = pool.begin().await.expect("begin");
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('thing', 'slow', 1, 'happened', '1', '{}', '{}')",
    )
    .execute(&mut *slow)
    .await
    .expect("insert in open transaction");
    t.store.append(&[append("fast", 0, vec![event(1)])]).await.expect("later append commits");
    assert!(whole_log(&t.store).await.is_empty(), "nothing passes the open transaction");
    slow.commit().await.expect("commit");
    let log = log_of(&t.store, 2).await;
    let ids: Vec<_> = log.iter().map(|e| e.aggregate_id.as_str()).collect();
    assert_eq!(ids, ["slow", "fast"]);
    assert!(log[0].cursor.position < log[1].cursor.position);
}

fn sku() -> Sku {
    "HOT-1".parse().expect("valid")
}

fn tenant() -> TenantId {
    TenantId::default()
}

fn receive(n: i64) -> StockCommand {
    StockCommand::Receive { tenant: tenant(), sku: sku(), quantity: Quantity::try_from(n).expect("valid") }
}

fn reserve_one() -> StockCommand {
    StockCommand::Reserve {
        tenant: tenant(),
        sku: sku(),
        order_id: OrderId::new(),
        quantity: Quantity::try_from(1).expect("valid"),
        expires_at: Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).single().expect("valid"),
    }
}

/// Runs 200 one-unit reservations against a stock of 100 across `repos` (each stands for one
/// process) and returns the number that succeeded.
async fn reserve_200(repos: &[Repository<Stock>]) -> usize {
    let meta = Metadata::default();
    repos[0].execute("default:HOT-1", receive(100), None, &meta).await.expect("receive");
    let tries = (0..200).map(|i| {
        let repo = repos[i % repos.len()].clone();
        tokio::spawn(async move { repo.execute("default:HOT-1", reserve_one(), None, &Metadata::default()).await })
    });
    let mut ok = 0;
    for r in futures::future::join_all(tries).await {
        match r.expect("task ran") {
            Ok(_) => ok += 1,
            Err(ExecError::Domain(StockError::InsufficientStock { available: 0, requested: 1 })) => {}
            Err(e) => panic!("unexpected failure: {e:?}"),
        }
    }
    ok
}

both_backends!(two_hundred_reservations_against_a_hundred_units_let_exactly_a_hundred_through, |t: TestStore| async move {
    let store = t.store.clone();
    let repo = Repository::<Stock>::new(store.clone(), ());
    assert_eq!(reserve_200(&[repo]).await, 100);
    let (fresh, version) = Repository::<Stock>::new(store, ()).read("default:HOT-1").await.expect("read");
    assert_eq!((fresh.on_hand, fresh.reserved(), fresh.available(), version), (100, 100, 0, 101));
});

both_backends!(reservations_from_two_processes_never_oversell, |t: TestStore| async move {
    let store = t.store.clone();
    let repos = [Repository::<Stock>::new(store.clone(), ()), Repository::<Stock>::new(store.clone(), ())];
    let ok = reserve_200(&repos).await;
    assert_eq!(ok, 100);
    let (fresh, _) = Repository::<Stock>::new(store, ()).read("default:HOT-1").await.expect("read");
    assert_eq!((fresh.on_hand, fresh.reserved(), fresh.available()), (100, 100, 0));
});

both_backends!(reservations_from_four_processes_catching_up_on_conflicts_never_oversell, |t: TestStore| async move {
    // Each conflict makes the loser read only the events that beat it and run again on them.
    let store = t.store.clone();
    let repos: Vec<Repository<Stock>> = (0..4).map(|_| Repository::<Stock>::new(store.clone(), ())).collect();
    assert_eq!(reserve_200(&repos).await, 100);
    for repo in &repos {
        let (seen, version) = repo.read("default:HOT-1").await.expect("read");
        assert_eq!((seen.reserved(), seen.available(), version), (100, 0, 101), "every process's cache agrees with the log");
    }
});

both_backends!(a_stale_cache_is_detected_and_the_command_rerun, |t: TestStore| async move {
    let store = t.store.clone();
    let a = Repository::<Stock>::new(store.clone(), ());
    let b = Repository::<Stock>::new(store.clone(), ());
    let meta = Metadata::default();
    a.execute("default:HOT-1", receive(5), None, &meta).await.expect("a receives");
    b.execute("default:HOT-1", receive(5), None, &meta).await.expect("b receives");
    // `a` still caches version 1; its next command conflicts once, reloads and succeeds.
    let done = a.execute("default:HOT-1", receive(1), None, &meta).await.expect("a receives again");
    assert_eq!((done.version, done.state.on_hand), (3, 11));
});

// Several commands on one stream in one write (`Prepared::and`), each with its own metadata
// (`Prepared::label`). A command refused on cached state that another process has moved on
// answers a conflict, so the write is prepared again on fresh state instead of refusing.
both_backends!(commands_joined_in_one_write_keep_their_metadata_and_recheck_a_stale_refusal, |t: TestStore| async move {
    let store = t.store.clone();
    let a = Repository::<Stock>::new(store.clone(), ());
    let b = Repository::<Stock>::new(store.clone(), ());
    let meta = |n: &str| Metadata { correlation_id: Some(n.to_owned()), ..Metadata::default() };
    a.execute("default:HOT-1", receive(1), None, &meta("first")).await.expect("a receives");
    // `b` receives five more; `a` still caches one unit on hand.
    b.execute("default:HOT-1", receive(5), None, &meta("elsewhere")).await.expect("b receives");
    let mut write = a.prepare("default:HOT-1", reserve_one(), None).await.expect("one unit is cached");
    write.label(&meta("one")).expect("label");
    let stale = write.and(reserve_one()).await.expect_err("the cache has no second unit");
    assert!(matches!(stale, ExecError::Conflict { .. }), "a stale refusal is a conflict, not a refusal: {stale:?}");
    drop(write);
    // Prepared again: the cache catches up, both reservations fit, one append, two labels.
    let mut write = a.prepare("default:HOT-1", reserve_one(), None).await.expect("fresh");
    write.label(&meta("one")).expect("label");
    write.and(reserve_one()).await.expect("six on hand now");
    write.label(&meta("two")).expect("label");
    store::commit::<StockError>(&store, &meta("fallback"), &mut [&mut write]).await.expect("one append");
    let done = write.finish().await;
    assert_eq!((done.version, done.state.available()), (4, 4));
    let log = log_of(&store, 4).await;
    let labels: Vec<_> = log.iter().map(|e| e.metadata["correlation_id"].as_str().map(str::to_owned)).collect();
    assert_eq!(labels, ["first", "elsewhere", "one", "two"].map(|n| Some(n.to_owned())));
    // A real refusal stays a refusal: seven reservations of six units.
    let mut write = a.prepare("default:HOT-1", reserve_one(), None).await.expect("fresh");
    for _ in 0..3 {
        write.and(reserve_one()).await.expect("fits");
    }
    let refused = write.and(reserve_one()).await.expect_err("none left");
    assert!(matches!(refused, ExecError::Domain(StockError::InsufficientStock { .. })), "{refused:?}");
});

// Streams held together (`Repository::hold_all`) start each from what this process knows of
// it: cached ones are trusted until an append conflicts, then each stream catches up from
// where it was, streams never seen are read whole, and one write over all of them lands.
both_backends!(streams_held_together_catch_up_after_a_conflict_and_append_as_one, |t: TestStore| async move {
    let store = t.store.clone();
    let a = Repository::<Stock>::new(store.clone(), ());
    let b = Repository::<Stock>::new(store.clone(), ());
    let meta = Metadata::default();
    a.execute("default:HOT-1", receive(1), None, &meta).await.expect("a receives");
    a.execute("default:HOT-3", receive(2), None, &meta).await.expect("a receives");
    // Unknown to `a`: five more of HOT-1, and HOT-4 from nothing.
    b.execute("default:HOT-1", receive(5), None, &meta).await.expect("b receives");
    b.execute("default:HOT-4", receive(4), None, &meta).await.expect("b receives");
    let ids = ["default:HOT-1", "default:HOT-2", "default:HOT-3", "default:HOT-4"];
    let on_hand = |held: &[store::Prepared<Stock>]| held.iter().map(|p| p.state().on_hand).collect::<Vec<_>>();
    let mut held = a.hold_all(&ids).await.expect("held");
    assert_eq!(on_hand(&held), [1, 0, 2, 4], "HOT-1 as cached, the others as stored");
    for p in held.iter_mut() {
        p.and(receive(1)).await.expect("receive");
    }
    let mut stages: Vec<&mut dyn store::Stage> = held.iter_mut().map(|p| p as &mut dyn store::Stage).collect();
    let lost = store::commit::<StockError>(&store, &meta, &mut stages).await.expect_err("HOT-1 moved on");
    assert!(matches!(lost, ExecError::Conflict { .. }), "{lost:?}");
    drop(held);
    let mut held = a.hold_all(&ids).await.expect("held again");
    assert_eq!(on_hand(&held), [6, 0, 2, 4], "HOT-1 caught up");
    for p in held.iter_mut() {
        p.and(receive(1)).await.expect("receive");
    }
    let mut stages: Vec<&mut dyn store::Stage> = held.iter_mut().map(|p| p as &mut dyn store::Stage).collect();
    store::commit::<StockError>(&store, &meta, &mut stages).await.expect("one append");
    let mut done = Vec::new();
    for p in held {
        let c = p.finish().await;
        done.push((c.version, c.state.on_hand));
    }
    assert_eq!(done, [(3, 7), (1, 1), (2, 3), (2, 5)]);
    for (id, (version, on_hand)) in ids.iter().zip(done) {
        let (state, stored) = Repository::<Stock>::new(store.clone(), ()).read(id).await.expect("read");
        assert_eq!((stored, state.on_hand), (version, on_hand), "{id} as stored");
    }
});

both_backends!(an_expected_version_that_moved_is_reported, |t: TestStore| async move {
    let store = t.store.clone();
    let repo = Repository::<Stock>::new(store, ());
    let meta = Metadata::default();
    repo.execute("default:HOT-1", receive(5), None, &meta).await.expect("receive");
    let err = repo.execute("default:HOT-1", receive(5), Some(0), &meta).await.expect_err("stale If-Match");
    assert!(matches!(err, ExecError::VersionMismatch { expected: 0, current: 1 }), "{err:?}");
    repo.execute("default:HOT-1", receive(5), Some(1), &meta).await.expect("current If-Match");
});

both_backends!(snapshots_are_saved_and_used_on_load, |t: TestStore| async move {
    let store = t.store.clone();
    let backend = t.backend;
    let repo = Repository::<Stock>::new(store.clone(), ()).with_snapshots(3);
    let meta = Metadata::default();
    for _ in 0..7 {
        repo.execute("default:HOT-1", receive(1), None, &meta).await.expect("receive");
    }
    let snap = store.load_snapshot("stock", "default:HOT-1").await.expect("load").expect("snapshot saved");
    assert_eq!(snap.last_sequence, 6);
    // Tamper with the snapshot: a fresh repository that reflects it must have read it.
    let mut payload = snap.payload.clone();
    payload["on_hand"] = serde_json::json!(1000);
    let tampered = store::StoredSnapshot { last_sequence: 7, last_position: snap.last_position, payload };
    let _ = backend;
    sqlx_reset_snapshot(&store).await;
    store.save_snapshot("stock", "default:HOT-1", &tampered).await.expect("save");
    let (fresh, version) = Repository::<Stock>::new(store.clone(), ()).with_snapshots(3).read("default:HOT-1").await.expect("read");
    assert_eq!((fresh.on_hand, version), (1000, 7));
    // Without snapshots the full stream is replayed.
    let (replayed, _) = Repository::<Stock>::new(store, ()).read("default:HOT-1").await.expect("read");
    assert_eq!(replayed.on_hand, 7);
});

async fn sqlx_reset_snapshot(store: &EventStore) {
    match store.db() {
        Db::Postgres(pool) => {
            sqlx::query("DELETE FROM snapshots").execute(pool).await.expect("delete");
        }
        Db::Sqlite { write, .. } => {
            sqlx::query("DELETE FROM snapshots").execute(write).await.expect("delete");
        }
    }
}

both_backends!(idempotency_keys_replay_the_first_answer, |t: TestStore| async move {
    let store = t.store.clone();
    use store::Idempotency;
    let fresh = |i: Idempotency| matches!(i, Idempotency::Fresh { .. });
    assert!(fresh(store.idempotency_begin("t:u", "k1", "h1").await.expect("begin")));
    assert_eq!(store.idempotency_begin("t:u", "k1", "h1").await.expect("begin"), Idempotency::InProgress);
    assert_eq!(store.idempotency_begin("t:u", "k1", "h2").await.expect("begin"), Idempotency::Mismatch);
    store.idempotency_complete("t:u", "k1", 201, "{\"id\":1}").await.expect("complete");
    assert_eq!(
        store.idempotency_begin("t:u", "k1", "h1").await.expect("begin"),
        Idempotency::Replay { status: 201, body: "{\"id\":1}".into() }
    );
    assert!(fresh(store.idempotency_begin("t:other", "k1", "h1").await.expect("begin")));
    store.idempotency_abandon("t:other", "k1").await.expect("abandon");
    assert!(fresh(store.idempotency_begin("t:other", "k1", "h9").await.expect("begin")));
});

both_backends!(a_keys_effect_commits_with_its_events, |t: TestStore| async move {
    let store = t.store.clone();
    use store::Idempotency;
    let repo = Repository::<Stock>::new(store.clone(), ());
    let meta = Metadata { tenant: Some("default".into()), ..Metadata::default() };
    let Idempotency::Fresh { claim } = store.idempotency_begin("t:u", "key", "h").await.expect("begin") else {
        panic!("a new key is fresh")
    };
    // The request commits two appends; the key records the first and only the first.
    store::with_key(claim, async {
        repo.execute("default:KEY-1", receive(3), None, &meta).await.expect("receive");
        repo.execute("default:KEY-1", receive(4), None, &meta).await.expect("receive");
    })
    .await;
    // The answer was never stored (a crash): the retry finds the effect, not a fresh claim.
    let Idempotency::Committed(effect) = store.idempotency_begin("t:u", "key", "h").await.expect("begin") else {
        panic!("the effect is found")
    };
    assert_eq!((effect.aggregate_type.as_str(), effect.aggregate_id.as_str(), effect.sequence), ("stock", "default:KEY-1", 1));
    assert!(effect.position > 0);
    // A committed key is never abandoned.
    store.idempotency_abandon("t:u", "key").await.expect("abandon");
    assert!(matches!(store.idempotency_begin("t:u", "key", "h").await.expect("begin"), Idempotency::Committed(_)));
});

both_backends!(a_request_whose_claim_was_taken_over_writes_nothing, |t: TestStore| async move {
    let store = t.store.clone();
    use store::Idempotency;
    let repo = Repository::<Stock>::new(store.clone(), ());
    let meta = Metadata { tenant: Some("default".into()), ..Metadata::default() };
    let Idempotency::Fresh { claim } = store.idempotency_begin("t:u", "slow", "h").await.expect("begin") else {
        panic!("a new key is fresh")
    };
    // A retry took the claim over (as after the stale bound) before the slow request committed.
    let sql = "UPDATE idempotency_keys SET claim = 'someone else' WHERE key = 'slow'";
    match store.db() {
        Db::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
        Db::Sqlite { write, .. } => sqlx::query(sql).execute(write).await.map(|_| ()),
    }
    .expect("take over");
    for (id, events) in [("default:SLOW-1", 1), ("default:SLOW-2", 2)] {
        let result = store::with_key(claim.clone(), async {
            if events == 1 {
                repo.execute(id, receive(3), None, &meta).await.map(|_| ())
            } else {
                // Two events of one stream: not the batched single-event path.
                let appends = [append(id, 0, vec![event(1), event(2)])];
                store.append(&appends).await.map(|_| ()).map_err(ExecError::<StockError>::Store)
            }
        })
        .await;
        assert!(matches!(result, Err(ExecError::Store(StoreError::ClaimLost))), "{id}: {result:?}");
        let kind = if events == 1 { "stock" } else { "thing" };
        assert_eq!(store.stream_version(kind, id).await.expect("version"), 0, "{id}: nothing written");
    }
});

/// The events table keeps postgres-es's columns: its repository reads what ours wrote.
#[tokio::test]
async fn postgres_es_reads_the_log_we_write() {
    use cqrs_es::persist::PersistedEventRepository;
    let Some(t) = fresh_store(Backend::Postgres).await else {
        return;
    };
    let Db::Postgres(pool) = t.store.db() else { unreachable!("postgres backend") };
    let repo = Repository::<Stock>::new(t.store.clone(), ());
    let meta = Metadata { tenant: Some("default".into()), ..Metadata::default() };
    repo.execute("default:HOT-1", receive(3), None, &meta).await.expect("receive");
    repo.execute("default:HOT-1", receive(4), None, &meta).await.expect("receive");
    let theirs = postgres_es::PostgresEventRepository::new(pool.clone()).with_tables("events", "snapshots");
    let events = theirs.get_events::<Stock>("default:HOT-1").await.expect("postgres-es reads our events");
    assert_eq!(events.iter().map(|e| e.sequence).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(events[1].event_type, "received");
    let second: domain::stock::StockEvent = serde_json::from_value(events[1].payload.clone()).expect("payload is the event");
    assert!(matches!(second, domain::stock::StockEvent::Received { quantity: 4, on_hand: 7, .. }));
    assert_eq!(events[0].metadata["tenant"], "default");
}

both_backends!(batched_appends_succeed_or_conflict_each_on_their_own, |t: TestStore| async move {
    let store = t.store.clone();
    // 100 single-event appends at once, two per stream at version 0: whatever batches they
    // share, exactly one per stream lands and the other conflicts.
    let tries = (0..100).map(|i| {
        let store = store.clone();
        tokio::spawn(async move { store.append(&[append(&format!("s{}", i % 50), 0, vec![event(i)])]).await })
    });
    let results = futures::future::join_all(tries).await;
    let won = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
    let conflicted = results.iter().filter(|r| matches!(r, Ok(Err(StoreError::Conflict)))).count();
    assert_eq!((won, conflicted), (50, 50));
    for s in 0..50 {
        assert_eq!(store.load_stream("thing", &format!("s{s}"), 0).await.expect("load").len(), 1);
    }
    assert_eq!(log_of(&store, 50).await.len(), 50);
});
