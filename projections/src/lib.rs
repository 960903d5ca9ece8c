//! The read models: projections of the global log into SQL (PostgreSQL in production, the
//! embedded SQLite file otherwise), product detail documents (Redis or in process) and product
//! search (tantivy), all run by the worker kit's one consumer driver.
//!
//! Each SQL batch and the projection's checkpoint are written in one transaction, so a crash
//! anywhere replays at most the uncommitted batch and no event takes effect twice. The
//! documents and the index keep their checkpoint with their data for the same guarantee.
//!
//! # Layout
//! - [`Projection`] (`projection.rs`): what a SQL projection is; [`ProjectionError`].
//! - [`Runner`] (`runner.rs`): the SQL projections on the driver ([`SqlProjection`]), their
//!   status, read-your-writes waits, rebuilds into shadow tables, resets, dead letters.
//! - `sourced.rs`: the same projections fed by a Kafka consumer group, offsets stored in the
//!   read-model transaction.
//! - `catalogue.rs`, `stock.rs`, `users.rs`: the SQL read models.
//! - `carts.rs`: carts and discount codes with their redemptions (admins, analytics);
//!   `settings.rs`: each tenant's own settings (the seller on invoices).
//! - [`orders`]: orders with their payment, lines and timeline, and payment events that
//!   arrived before their order (Kafka: two topics); four tables that rebuild together.
//! - [`detail`]: product detail documents in Redis (embedded: in process).
//! - [`search`]: product search in a tantivy index on disk.
//! - `own.rs`: the checkpoint form of the two read models that keep it with their data.
//! - [`ReadModels`] (this file): every read model of a query node, for waits and status.

mod carts;
mod catalogue;
pub mod detail;
pub mod orders;
mod own;
mod projection;
mod runner;
pub mod search;
mod settings;
mod sourced;
mod stock;
mod users;

use std::sync::Arc;
use std::time::Duration;

pub use carts::{Carts, Promotions};
pub use catalogue::Catalogue;
pub use orders::Orders;
pub use projection::*;
pub use runner::*;
pub use settings::Settings;
pub use stock::StockLevels;
pub use users::Users;
use worker_kit::{Consumer, Driver, ReaderState, ReaderStatus};

/// The tenant and key of a stored stream id.
pub fn split_stream_id(aggregate_id: &str) -> Result<(&str, &str), ProjectionError> {
    let id = domain::StreamId::parse(aggregate_id).map_err(|e| ProjectionError::Malformed(format!("{aggregate_id}: {e}")))?;
    Ok((id.tenant, id.key))
}

/// Every SQL projection this build knows, in the order they are run and listed.
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(Catalogue),
        Arc::new(StockLevels),
        Arc::new(Users),
        Arc::new(Orders),
        Arc::new(Carts),
        Arc::new(Promotions),
        Arc::new(Settings),
    ]
}

/// Every read model a query node serves from: the SQL projections, the product documents and
/// the search index, each on its driver.
#[derive(Clone)]
pub struct ReadModels {
    pub sql: Arc<Runner>,
    pub details: Arc<Driver<detail::ProductDetails>>,
    pub search: Arc<Driver<search::ProductSearch>>,
}

impl ReadModels {
    pub fn details(&self) -> &detail::ProductDetails {
        &self.details.members()[0]
    }

    pub fn search(&self) -> &search::ProductSearch {
        &self.search.members()[0]
    }

    /// Waits up to `timeout` until read model `name` has processed the event at `position`.
    pub async fn wait_for(&self, name: &str, position: i64, timeout: Duration) -> Result<bool, ProjectionError> {
        match name {
            detail::NAME => worker_kit::wait_for(self.details(), self.sql.store(), position, timeout).await,
            search::NAME => worker_kit::wait_for(self.search(), self.sql.store(), position, timeout).await,
            _ => self.sql.wait_for(name, position, timeout).await,
        }
    }

    /// Every reader's progress: the SQL projections (and the other readers that keep their
    /// checkpoint beside them), then the documents and the index.
    pub async fn status(&self) -> Result<Vec<ReaderStatus>, ProjectionError> {
        let mut all = self.sql.status().await?;
        let store = self.sql.store();
        let head = store.head_position().await?;
        let details = self.details();
        all.push(
            worker_kit::status_at(store, head, detail::NAME, details.checkpoint().await?, self.details.last_error(detail::NAME)).await?,
        );
        let search = self.search();
        let mut status =
            worker_kit::status_at(store, head, search::NAME, search.visible().await?, self.search.last_error(search::NAME)).await?;
        if search.rebuilding() {
            status.state = ReaderState::Rebuilding;
        }
        all.push(status);
        // Readers failing in other processes (the relay, a projection worker) say so there.
        let failing = worker_kit::failing_readers(self.sql.db()).await?;
        for status in &mut all {
            if let Some(error) = failing.get(status.name) {
                if status.last_error.is_none() {
                    status.last_error = Some(error.clone());
                }
                status.state = ReaderState::Retrying;
            }
        }
        Ok(all)
    }
}
