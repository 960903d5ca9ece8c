//! Fresh stores for tests. PostgreSQL tests get a database of their own on the server at
//! `SHOP_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`). When that
//! server is missing, a test fails under `CI=true` and is skipped, with the reason printed,
//! anywhere else.

use std::path::PathBuf;

use store::EventStore;
use worker_kit::ReadDb;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A migrated, empty store and the URL that reaches it (for spawning a server on it).
pub struct TestStore {
    pub backend: Backend,
    pub store: EventStore,
    pub url: String,
    /// Where SQLite files and other per-test data live; removed on drop.
    pub dir: PathBuf,
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn admin_url() -> String {
    std::env::var("SHOP_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A unique scratch directory under the system temp dir.
pub fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shop-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir is writable");
    dir
}

/// A fresh database URL for `backend`, or `None` (after printing why) if PostgreSQL is not
/// reachable outside CI.
pub async fn fresh_url(backend: Backend, dir: &std::path::Path) -> Option<String> {
    match backend {
        Backend::Sqlite => Some(format!("sqlite://{}", dir.join("shop.db").display())),
        Backend::Postgres => fresh_database(&admin_url()).await,
    }
}

/// A fresh, empty database on the PostgreSQL server `admin` reaches, or `None` (after saying
/// why) when it is not reachable outside CI.
pub async fn fresh_database(admin: &str) -> Option<String> {
    {
        {
            let name = format!("shop_test_{}", uuid::Uuid::new_v4().simple());
            let created: Result<(), sqlx::Error> = async {
                let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(admin).await?;
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&pool).await?;
                pool.close().await;
                Ok(())
            }
            .await;
            match created {
                Ok(()) => {
                    let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
                    Some(format!("{base}/{name}"))
                }
                Err(e) if in_ci() => panic!("PostgreSQL at {admin} is required in CI: {e}"),
                Err(e) => {
                    eprintln!("skipping: PostgreSQL at {admin} is not reachable ({e})");
                    None
                }
            }
        }
    }
}

/// A fresh, migrated store, or `None` when the test should be skipped (see the module docs).
pub async fn fresh_store(backend: Backend) -> Option<TestStore> {
    let dir = scratch_dir();
    let url = fresh_url(backend, &dir).await?;
    let store = EventStore::connect(&url, 16).await.expect("test database accepts connections");
    store.migrate().await.expect("migrations apply to a fresh database");
    Some(TestStore { backend, store, url, dir })
}

impl TestStore {
    /// The read-side database on the same database, migrated.
    pub async fn read_db(&self) -> ReadDb {
        let db = ReadDb::connect(&self.url, 4).await.expect("read-side database");
        db.migrate().await.expect("read-side migrations apply");
        db
    }
}
