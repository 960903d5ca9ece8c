//! The shared test kit (a dev-dependency only; no release build links it): fresh stores per
//! backend, one [`both_backends!`] and one [`both_modes!`], a small shop's worth of events, the
//! test app (a real `shop` on port 0), and probes for the servers the tests talk to.
//!
//! Crates with fault injection points (`faults` feature) turn it on for their own tests by a
//! dev-dependency on themselves with the feature.
//!
//! # Layout
//! - `stores.rs`: [`fresh_store`], [`TestStore`], [`Backend`], the PostgreSQL test databases.
//! - `data.rs`: [`write_events`], [`dump`], [`PlainHasher`], test money and addresses.
//! - `app.rs`: [`TestApp`] over HTTP, the `shop` binary for process tests.
//! - `gateway.rs`: [`GatewayServer`], a payment provider over HTTP with a journal of calls.
//! - `servers.rs`: [`broker`], [`redis`], [`until_ready`], [`free_port`].
//! - `servers_own.rs`: servers a test owns and restarts ([`own_broker`], [`own_redis`],
//!   [`RestartablePostgres`]).

mod app;
mod data;
mod gateway;
mod push;
mod servers;
mod servers_own;
mod sms;
mod stores;

pub use app::*;
pub use data::*;
pub use gateway::*;
pub use push::*;
pub use servers::*;
pub use servers_own::*;
pub use sms::*;
pub use stores::*;

/// `both_backends!(name, |t: TestStore| async move { … })` declares module `name` with a test
/// on a fresh SQLite store and one on a fresh PostgreSQL database (skipped, saying why, when
/// the server is not reachable outside CI), each running the body on its store.
/// `both_backends!(fn a, fn b)` does the same for functions `async fn a(t: TestStore)`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                if let Some(t) = $crate::fresh_store($crate::Backend::Sqlite).await {
                    $body(t).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                if let Some(t) = $crate::fresh_store($crate::Backend::Postgres).await {
                    $body(t).await;
                }
            }
        }
    };
    ($(fn $name:ident),+ $(,)?) => {
        $( $crate::both_backends!($name, super::$name); )+
    };
}

/// `both_modes!(name, |app: TestApp| async move { … })`: module `name` with the body run
/// against a whole shop on SQLite and one on PostgreSQL;
/// `both_modes!(name, configure = |c: &mut Config| …, |app| …)` changes the configuration first.
#[macro_export]
macro_rules! both_modes {
    ($name:ident, configure = $configure:expr, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Some(app) = $crate::TestApp::spawn_configured($crate::Backend::Sqlite, $configure).await {
                    $body(app).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(app) = $crate::TestApp::spawn_configured($crate::Backend::Postgres, $configure).await {
                    $body(app).await;
                }
            }
        }
    };
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Some(app) = $crate::TestApp::spawn($crate::Backend::Sqlite).await {
                    $body(app).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(app) = $crate::TestApp::spawn($crate::Backend::Postgres).await {
                    $body(app).await;
                }
            }
        }
    };
}
