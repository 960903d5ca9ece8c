//! Product search on a real tantivy index on disk, fed from both event stores: relevance
//! (BM25, typos, prefixes), facets, filters, tenant isolation and visibility; the same index
//! after a crash between adding documents and committing them; a restart that resumes from
//! the commit payload; documents that wait for the timed commit (invisible until then, folded
//! onto by later batches, lost and re-applied on a crash); and a rebuild under live writes that
//! loses nothing.

use std::sync::Arc;
use std::time::Duration;

use domain::product::ProductCommand;
use domain::{Money, Price};
use projections::search::{ProductSearch, SearchRequest, SearchResults};
use store::{EventStore, Metadata};
use testkit::{both_backends, scratch_dir, write_product, TestProduct, TestStore};
use worker_kit::{Consumer, Driver, Outcome};

struct Item {
    tenant: &'static str,
    name: &'static str,
    description: &'static str,
    sku: &'static str,
    category: &'static str,
    price: i64,
    published: bool,
}

const ITEMS: &[Item] = &[
    Item {
        tenant: "default",
        name: "Apple iPhone 15",
        description: "A phone with a good camera",
        sku: "IP-15",
        category: "electronics/phones",
        price: 99_900,
        published: true,
    },
    Item {
        tenant: "default",
        name: "Phone case for iPhone",
        description: "Silicone; fits the Galaxy too",
        sku: "CASE-1",
        category: "accessories/cases",
        price: 1_999,
        published: true,
    },
    Item {
        tenant: "default",
        name: "Samsung Galaxy S24",
        description: "An android phone",
        sku: "SG-24",
        category: "electronics/phones",
        price: 79_900,
        published: true,
    },
    Item {
        tenant: "default",
        name: "Coffee mug",
        description: "Stoneware, 300 ml",
        sku: "MUG-7",
        category: "kitchen",
        price: 899,
        published: true,
    },
    Item {
        tenant: "default",
        name: "iPhone prototype",
        description: "Not for sale",
        sku: "PROTO-1",
        category: "electronics/phones",
        price: 500,
        published: false,
    },
    Item {
        tenant: "other",
        name: "Other shop iPhone",
        description: "Somebody else's",
        sku: "IP-15",
        category: "electronics/phones",
        price: 99_900,
        published: true,
    },
];

fn eur(amount: i64) -> Price {
    Price::try_from(Money::new(amount, "EUR".parse().expect("valid"))).expect("valid")
}

/// Creates (and publishes) product number `n` from `item`; returns the last position.
async fn create(store: &EventStore, n: u128, item: &Item) -> i64 {
    let p = TestProduct {
        tenant: item.tenant,
        n,
        sku: item.sku,
        name: item.name,
        description: item.description,
        category: item.category,
        price: item.price + 1,
        featured: false,
    };
    let mut then = vec![ProductCommand::ChangePrice { price: eur(item.price) }];
    if item.published {
        then.push(ProductCommand::Publish);
    }
    write_product(store, &p, then, &Metadata::default()).await
}

async fn write_items(store: &EventStore) -> i64 {
    let mut last = 0;
    for (n, item) in ITEMS.iter().enumerate() {
        last = create(store, n as u128 + 1, item).await;
    }
    last
}

/// Whether searches see the event at `position`.
async fn reached(search: &ProductSearch, store: &EventStore, position: i64) -> bool {
    worker_kit::reached(store, search.visible().await.expect("visible"), position).await.expect("reached")
}

/// Whether `search` has processed the event at `position` (committed or not).
async fn processed(search: &ProductSearch, store: &EventStore, position: i64) -> bool {
    worker_kit::reached(store, search.checkpoint().await.expect("checkpoint"), position).await.expect("reached")
}

/// Steps `driver` until the log has nothing more for it.
async fn drain(driver: &Driver<ProductSearch>) {
    for _ in 0..1000 {
        if driver.try_process_next().await.expect("batch") == Outcome::Idle {
            return;
        }
    }
    panic!("the log never ran dry");
}

/// Steps `driver` until `search` has processed `position`: a transaction open anywhere in the
/// cluster can hold the log back for a moment (the snapshot horizon is cluster-wide), so one
/// dry log is not yet proof.
async fn drain_to(driver: &Driver<ProductSearch>, search: &ProductSearch, store: &EventStore, position: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !processed(search, store, position).await {
        drain(driver).await;
        assert!(std::time::Instant::now() < deadline, "position {position} was never processed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Steps the index's worker until it has processed `position`.
async fn caught_up(search: &Arc<ProductSearch>, store: &EventStore, position: i64) {
    let driver = Driver::single("projection", store.clone(), Arc::clone(search));
    for _ in 0..1000 {
        let idle = driver.try_process_next().await.expect("batch") == Outcome::Idle;
        if idle && reached(search, store, position).await {
            return;
        }
    }
    panic!("search never reached {position}");
}

fn query(text: &str) -> SearchRequest {
    SearchRequest { tenant: "default".into(), text: text.into(), limit: 20, ..SearchRequest::default() }
}

fn names(r: &SearchResults) -> Vec<String> {
    r.items.iter().map(|h| h.product["name"].as_str().unwrap_or_default().to_owned()).collect()
}

async fn relevance(t: TestStore) {
    let last = write_items(&t.store).await;
    let dir = scratch_dir();
    let search = Arc::new(ProductSearch::open(t.store.clone(), &dir).expect("open"));
    caught_up(&search, &t.store, last).await;
    let find = |q: SearchRequest| {
        let search = &search;
        async move { search.search(q).await.expect("search") }
    };

    // A transposition ("iphnoe") finds the iPhones; the unpublished one and the other
    // tenant's stay hidden.
    let typo = find(query("iphnoe")).await;
    assert_eq!(typo.total, 2, "{:?}", names(&typo));
    assert!(names(&typo).contains(&"Apple iPhone 15".to_owned()));
    // Search as you type: a prefix of the last word.
    let prefix = find(query("samsu")).await;
    assert_eq!(names(&prefix), ["Samsung Galaxy S24"]);
    let prefix2 = find(query("iph")).await;
    assert_eq!(prefix2.total, 2);
    // BM25 with field weights: a name match ranks above a description match.
    let galaxy = find(query("galaxy")).await;
    assert_eq!(names(&galaxy), ["Samsung Galaxy S24", "Phone case for iPhone"]);
    assert!(galaxy.items[0].score > galaxy.items[1].score);
    // Every word must match somewhere (name, SKU, category or description).
    assert_eq!(names(&find(query("coffee stoneware")).await), ["Coffee mug"]);
    assert_eq!(find(query("coffee galaxy")).await.total, 0);
    // SKU and category words.
    assert_eq!(names(&find(query("mug-7")).await), ["Coffee mug"]);
    assert_eq!(find(query("electronics")).await.total, 2);
    // Short words get no typo tolerance ("cup" is not "mug").
    assert_eq!(find(query("cup ")).await.total, 0);

    // Facets over everything visible, and the filters.
    let all = find(query("")).await;
    assert_eq!(all.total, 4);
    let categories: Vec<(String, u64)> = all.facets.categories.iter().map(|c| (c.category.clone(), c.count)).collect();
    assert_eq!(categories, [("accessories".to_owned(), 1), ("electronics".to_owned(), 2), ("kitchen".to_owned(), 1)]);
    let buckets: Vec<u64> = all.facets.price.iter().map(|b| b.count).collect();
    assert_eq!(buckets, [1, 1, 0, 0, 2]);
    let electronics = find(SearchRequest { category: Some("electronics".into()), ..query("") }).await;
    assert_eq!(electronics.total, 2);
    assert_eq!(
        electronics.facets.categories.iter().map(|c| (c.category.as_str(), c.count)).collect::<Vec<_>>(),
        [("electronics/phones", 2)]
    );
    let cheap = find(SearchRequest { max_price: Some(2_000), ..query("") }).await;
    assert_eq!(cheap.total, 2);
    let mid = find(SearchRequest { min_price: Some(1_000), max_price: Some(80_000), ..query("phone") }).await;
    let mut mid_names = names(&mid);
    mid_names.sort();
    assert_eq!(mid_names, ["Phone case for iPhone", "Samsung Galaxy S24"]);
    assert_eq!(mid.total, 2);
    // Pages.
    let page = find(SearchRequest { limit: 1, offset: 1, ..query("") }).await;
    assert_eq!((page.total, page.items.len()), (4, 1));

    // Admins see unpublished products and can filter on publication.
    // "iphone" is one edit from "phone", so the Galaxy ("an android phone") matches too, but
    // below every exact match.
    let admin = find(SearchRequest { admin: true, ..query("iphone") }).await;
    assert_eq!(admin.total, 4, "{:?}", names(&admin));
    assert!(names(&admin)[..3].iter().all(|n| n.contains("iPhone")), "{:?}", names(&admin));
    assert_eq!(names(&admin)[3], "Samsung Galaxy S24");
    let drafts = find(SearchRequest { admin: true, published: Some(false), ..query("") }).await;
    assert_eq!(names(&drafts), ["iPhone prototype"]);
    // The other tenant sees only its own.
    let other = find(SearchRequest { tenant: "other".into(), ..query("iphone") }).await;
    assert_eq!(names(&other), ["Other shop iPhone"]);
}

/// Everything the index answers for a few queries, as one comparable value.
async fn snapshot(search: &ProductSearch) -> Vec<String> {
    let mut out = Vec::new();
    for (tenant, text) in [("default", ""), ("default", "iphone"), ("other", ""), ("default", "product")] {
        let r = search
            .search(SearchRequest { tenant: tenant.into(), text: text.into(), admin: true, limit: 100, ..SearchRequest::default() })
            .await
            .expect("search");
        let mut rows: Vec<String> = r.items.iter().map(|h| h.product.to_string()).collect();
        rows.sort();
        out.push(format!("{tenant}/{text}: {} {}", r.total, rows.join("|")));
    }
    out
}

async fn crash_mid_batch_and_restart(t: TestStore) {
    let last = write_items(&t.store).await;
    let dir = scratch_dir();
    let reference_dir = scratch_dir();
    let reference = Arc::new(ProductSearch::open(t.store.clone(), &reference_dir).expect("open"));
    caught_up(&reference, &t.store, last).await;

    // Small batches, each committed at once, and the second fails after adding its documents,
    // before its commit.
    let search = Arc::new(ProductSearch::open(t.store.clone(), &dir).expect("open").with_commit_interval(Duration::ZERO));
    let driver = Driver::single("projection", t.store.clone(), Arc::clone(&search)).with_batch_size(4);
    assert_eq!(driver.try_process_next().await.expect("first batch"), Outcome::Worked(4));
    let before = search.checkpoint().await.expect("checkpoint");
    search.inject_fault();
    assert!(matches!(driver.try_process_next().await, Err(projections::ProjectionError::Injected)));
    assert_eq!(search.checkpoint().await.expect("checkpoint"), before, "a failed batch must not move the checkpoint");
    drop(driver);
    drop(search);

    // A restart resumes from the commit payload and reaches the reference state.
    let restarted = Arc::new(ProductSearch::open(t.store.clone(), &dir).expect("reopen"));
    assert_eq!(restarted.checkpoint().await.expect("checkpoint"), before);
    caught_up(&restarted, &t.store, last).await;
    assert_eq!(snapshot(&restarted).await, snapshot(&reference).await);
    drop(restarted);
    let again = ProductSearch::open(t.store.clone(), &dir).expect("reopen");
    assert!(reached(&again, &t.store, last).await, "the checkpoint survives a restart");
    assert_eq!(snapshot(&again).await, snapshot(&reference).await);

    // Replaying twice gives the same index.
    again.rebuild(|_, _| {}).await.expect("rebuild");
    assert_eq!(snapshot(&again).await, snapshot(&reference).await);
    std::fs::write(dir.join("REBUILDING"), "index-in-progress").expect("marker");
    assert!(again.rebuilding(), "what a rebuild in progress shows");
    again.rebuild(|_, _| {}).await.expect("rebuild again");
    assert!(!again.rebuilding());
    assert_eq!(snapshot(&again).await, snapshot(&reference).await);
    let indexes = std::fs::read_dir(&dir).expect("dir").filter(|e| e.as_ref().is_ok_and(|e| e.path().is_dir())).count();
    assert_eq!(indexes, 1, "old index directories are removed after a swap");
}

async fn rebuild_under_live_writes(t: TestStore) {
    let dir = scratch_dir();
    let item = |n: u128| Item {
        tenant: "default",
        name: "Bulk product",
        description: "one of many",
        sku: Box::leak(format!("BULK-{n}").into_boxed_str()),
        category: "bulk",
        price: 100,
        published: true,
    };
    for n in 1..=200 {
        create(&t.store, n, &item(n)).await;
    }
    let live = Arc::new(ProductSearch::open(t.store.clone(), &dir).expect("open"));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(Arc::new(Driver::single("projection", t.store.clone(), Arc::clone(&live))).run(stopped));
    let store = t.store.clone();
    let writer = tokio::spawn(async move {
        let mut last = 0;
        for n in 201..=400 {
            last = create(&store, n, &item(n)).await;
        }
        last
    });
    // A second process rebuilds the same directory while the first keeps indexing.
    let rebuilder = ProductSearch::open(t.store.clone(), &dir).expect("open");
    rebuilder.rebuild(|_, _| {}).await.expect("rebuild");
    let last = writer.await.expect("writer");
    // The worker switches to the rebuilt index and catches up.
    assert!(
        worker_kit::wait_for(live.as_ref(), &t.store, last, std::time::Duration::from_secs(20)).await.expect("wait"),
        "search never caught up"
    );
    let all = live.search(SearchRequest { limit: 1, ..query("bulk") }).await.expect("search");
    assert_eq!(all.total, 400, "a rebuild under live writes loses nothing");
    let _ = stop.send(true);
    worker.await.expect("worker");
}

/// One stock receipt (an event the index has no use for); its position.
async fn receive_stock(store: &EventStore) -> i64 {
    use domain::stock::{Stock, StockCommand};
    let tenant = domain::TenantId::default();
    let sku: domain::Sku = "FOREIGN-1".parse().expect("valid");
    let receive =
        StockCommand::Receive { tenant: tenant.clone(), sku: sku.clone(), quantity: domain::Quantity::try_from(1).expect("valid") };
    let stock = store::Repository::<Stock>::new(store.clone(), ());
    stock.execute(&domain::stream_id(&tenant, &sku), receive, None, &Metadata::default()).await.expect("receive").position
}

/// The timed commit: documents wait in the writer, invisible to searches and to read-your-
/// writes; batches that split a product's events fold onto the waiting document; a crash
/// loses what waited and the restart applies it again; a commit shows it all at once.
async fn documents_wait_for_the_timed_commit(t: TestStore) {
    let last = write_items(&t.store).await;
    let reference = Arc::new(ProductSearch::open(t.store.clone(), &scratch_dir()).expect("open"));
    caught_up(&reference, &t.store, last).await;
    let everything = |tenant: &str| SearchRequest { tenant: tenant.into(), admin: true, limit: 100, ..SearchRequest::default() };

    // Two events a batch: each product's three events are split over two batches.
    let dir = scratch_dir();
    let open = || ProductSearch::open(t.store.clone(), &dir).expect("open").with_commit_interval(Duration::from_secs(3600));
    let search = Arc::new(open());
    let driver = Driver::single("projection", t.store.clone(), Arc::clone(&search)).with_batch_size(2);
    drain_to(&driver, &search, &t.store, last).await;
    assert!(!reached(&search, &t.store, last).await, "nothing is visible before the commit");
    assert_eq!(search.search(everything("default")).await.expect("search").total, 0);
    assert!(
        !worker_kit::wait_for(search.as_ref(), &t.store, last, Duration::from_millis(100)).await.expect("wait"),
        "read-your-writes waits for the commit"
    );

    // A crash before the commit: the restart starts from the last commit (none) and applies it
    // all again.
    drop(driver);
    drop(search);
    let search = Arc::new(open());
    assert_eq!(search.checkpoint().await.expect("checkpoint"), None);
    let driver = Driver::single("projection", t.store.clone(), Arc::clone(&search)).with_batch_size(2);
    drain_to(&driver, &search, &t.store, last).await;
    assert!(!reached(&search, &t.store, last).await);
    search.flush().await.expect("flush");
    assert!(reached(&search, &t.store, last).await, "the commit makes it visible");
    assert_eq!(snapshot(&search).await, snapshot(&reference).await, "documents folded across batches");

    // A batch without product events moves the visible position at once while nothing waits.
    let later = receive_stock(&t.store).await;
    drain_to(&driver, &search, &t.store, later).await;
    assert!(reached(&search, &t.store, later).await);

    // With a short interval the worker's timed work commits by itself.
    let timed =
        Arc::new(ProductSearch::open(t.store.clone(), &scratch_dir()).expect("open").with_commit_interval(Duration::from_millis(20)));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(Arc::new(Driver::single("projection", t.store.clone(), Arc::clone(&timed))).run(stopped));
    assert!(worker_kit::wait_for(timed.as_ref(), &t.store, later, Duration::from_secs(20)).await.expect("wait"), "never committed");
    assert_eq!(snapshot(&timed).await, snapshot(&reference).await);
    let _ = stop.send(true);
    worker.await.expect("worker");
}

both_backends!(fn relevance, fn crash_mid_batch_and_restart, fn documents_wait_for_the_timed_commit, fn rebuild_under_live_writes);

async fn checkpoint_moves_through_batches_without_product_events(t: TestStore) {
    let search = ProductSearch::open(t.store.clone(), &scratch_dir()).expect("open");
    testkit::moves_past_foreign_events(&t, Arc::new(search), 300).await;
}

both_backends!(fn checkpoint_moves_through_batches_without_product_events);
