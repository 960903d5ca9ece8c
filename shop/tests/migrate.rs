//! `shop migrate` creates every durable table from versioned migrations, on both backends, and
//! running it again changes nothing: no role creates a table at run time.

use testkit::{both_backends, Backend, TestStore};

/// Every durable table: the event store's and the read side's.
const TABLES: [&str; 21] = [
    "events",
    "snapshots",
    "idempotency_keys",
    "projection_checkpoints",
    "projection_offsets",
    "projection_dead_letters",
    "rm_products",
    "rm_stock",
    "rm_users",
    "rm_orders",
    "rm_orders_lines",
    "order_sagas",
    "notifier_deliveries",
    "notifier_preferences",
    "webhook_endpoints",
    "rm_carts",
    "rm_carts_lines",
    "rm_promotions",
    "rm_promotions_redemptions",
    "rm_settings",
    "cart_deadlines",
];

async fn tables(db: &sqlx::AnyPool, sqlite: bool) -> Vec<String> {
    let sql = if sqlite {
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
    } else {
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name"
    };
    sqlx::query_scalar(sql).fetch_all(db).await.expect("tables")
}

async fn migrate_creates_every_table_once(t: TestStore) {
    // An empty database: the test store's own migration is undone by using a fresh directory
    // and database for the binary.
    let dir = testkit::scratch_dir();
    let Some(url) = testkit::fresh_url(t.backend, &dir).await else { return };
    let run = || {
        let mut cmd = testkit::binary(&dir, 0);
        if t.backend == Backend::Postgres {
            cmd.env("DATABASE_URL", &url).env("SHOP_JWT_SECRET", testkit::JWT_SECRET);
        }
        let status = cmd.arg("migrate").status().expect("shop migrate runs");
        assert!(status.success(), "shop migrate exits 0");
    };
    run();
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(&url).await.expect("database");
    let sqlite = t.backend == Backend::Sqlite;
    let found = tables(&db, sqlite).await;
    for table in TABLES {
        assert!(found.iter().any(|t| t == table), "{table} missing after shop migrate: {found:?}");
    }
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version").fetch_all(&db).await.expect("versions");
    assert_eq!(
        versions,
        vec![1, 2, 3, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009],
        "the event store's and the read side's migrations, each recorded"
    );
    run();
    assert_eq!(tables(&db, sqlite).await, found, "a second run changes nothing");
    db.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

both_backends!(fn migrate_creates_every_table_once);
