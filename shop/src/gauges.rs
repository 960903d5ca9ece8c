//! What `/metrics` reads at each scrape beside the counters: the pools' use, and on nodes that
//! serve queries every reader's progress and the dead letters (gauges that keep moving while a
//! reader is stuck, which the lag histograms of its batches cannot).

use std::sync::Arc;

use http_kit::Readiness;
use projections::ReadModels;
use store::EventStore;
use worker_kit::{Consumer as _, ReadDb};

/// `shop_db_pool_connections{pool, state}` and `shop_db_pool_max_connections{pool}` for the
/// event store (`events`) and the read-model database (`read`).
pub fn pools(readiness: &Readiness, store: &EventStore, db: &ReadDb) {
    let (store, db) = (store.clone(), db.clone());
    readiness.on_scrape(move || {
        let events = store.pool_usage();
        let read = (db.pool.size(), db.pool.num_idle() as u32, db.pool.options().get_max_connections());
        for (pool, (open, idle, max)) in [("events", events), ("read", read)] {
            metrics::gauge!("shop_db_pool_connections", "pool" => pool, "state" => "idle").set(idle);
            metrics::gauge!("shop_db_pool_connections", "pool" => pool, "state" => "busy").set(open.saturating_sub(idle));
            metrics::gauge!("shop_db_pool_max_connections", "pool" => pool).set(max);
        }
        Box::pin(async {})
    });
}

/// Per reader (projections, documents, index, relay, saga, notifier): `shop_reader_position`,
/// `shop_reader_lag_events`, `shop_reader_pending_age_seconds` (the age of the oldest event it
/// has not processed; 0 when caught up), `shop_dead_letters` per projection, and
/// `shop_store_head_position`.
pub fn readers(readiness: &Readiness, read: &ReadModels) {
    let read = Arc::new(read.clone());
    readiness.on_scrape(move || {
        let read = Arc::clone(&read);
        Box::pin(async move {
            match read.sql.store().head_position().await {
                Ok(head) => metrics::gauge!("shop_store_head_position").set(head as f64),
                Err(e) => tracing::warn!(error = %e, "metrics: the log's head not read"),
            }
            let statuses = match read.status().await {
                Ok(s) => s,
                Err(e) => return tracing::warn!(error = %e, "metrics: the readers' progress not read"),
            };
            for s in &statuses {
                metrics::gauge!("shop_reader_position", "name" => s.name).set(s.position as f64);
                if let Some(events) = s.lag_events {
                    metrics::gauge!("shop_reader_lag_events", "name" => s.name).set(events as f64);
                }
                if let Some(ms) = s.lag_ms {
                    metrics::gauge!("shop_reader_pending_age_seconds", "name" => s.name).set(ms as f64 / 1000.0);
                }
            }
            let parked = match worker_kit::parked_counts(read.sql.db()).await {
                Ok(p) => p,
                Err(e) => return tracing::warn!(error = %e, "metrics: dead letters not counted"),
            };
            // Every projection's gauge exists (0 without dead letters), so an alert sees it rise.
            for member in read.sql.driver().members() {
                metrics::gauge!("shop_dead_letters", "name" => member.name()).set(0.0);
            }
            for (name, n) in parked {
                metrics::gauge!("shop_dead_letters", "name" => name).set(n as f64);
            }
        })
    });
}
