//! The feed behind the live order streams: one source of "this order's timeline changed"
//! for every open stream of the process, instead of a database poll per stream. On PostgreSQL
//! the orders projection sends `NOTIFY shop_order_timeline` in the transaction that writes the
//! entries (so the signal arrives after the commit, in every process that listens); on SQLite
//! (one process) one poller reads the newest positions every 200 ms. Streams re-read their
//! order's timeline when signalled, and every 15 s regardless, so a signal lost while the
//! listening connection was down delays an entry but never loses it.
//!
//! Streams are bounded: at most `per_user` open streams per user and `total` per process
//! (429 beyond).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::UserId;
use tokio::sync::broadcast;
use worker_kit::ReadDb;

/// The notification channel the orders projection signals on (PostgreSQL).
pub const CHANNEL: &str = projections::orders::TIMELINE_CHANNEL;

/// How often the SQLite poller looks for new entries.
const POLL: Duration = Duration::from_millis(200);

/// How often a stream re-reads its timeline without a signal.
pub const SAFETY_POLL: Duration = Duration::from_secs(15);

/// Open-stream limits.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    pub per_user: usize,
    pub total: usize,
    /// How often the live socket pings; a socket silent for three of these is dropped.
    pub ping_every: Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self { per_user: 5, total: 2_000, ping_every: Duration::from_secs(20) }
    }
}

/// The process's feed of changed orders (`tenant/order_id`) and its stream permits.
pub struct LiveFeed {
    changes: broadcast::Sender<Arc<str>>,
    limits: StreamLimits,
    open: Mutex<(usize, HashMap<UserId, usize>)>,
}

/// An open stream's place under the limits; released when dropped.
pub struct StreamPermit {
    feed: Arc<LiveFeed>,
    user: UserId,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.feed.open.lock().unwrap_or_else(|p| p.into_inner());
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.1.remove(&self.user);
            }
        }
    }
}

impl LiveFeed {
    /// The feed over `db`, listening on `pg_url` (PostgreSQL) or polling (SQLite).
    pub fn start(db: ReadDb, pg_url: Option<String>, limits: StreamLimits) -> Arc<Self> {
        let feed = Self::manual(limits);
        let weak = Arc::downgrade(&feed);
        match pg_url {
            Some(url) => {
                tokio::spawn(listen(weak, url));
            }
            None => {
                tokio::spawn(poll(weak, db));
            }
        }
        feed
    }

    /// A feed that is only signalled by hand (tests and processes without streams).
    pub fn manual(limits: StreamLimits) -> Arc<Self> {
        let (changes, _) = broadcast::channel(4096);
        Arc::new(Self { changes, limits, open: Mutex::new((0, HashMap::new())) })
    }

    /// Signals that `tenant/order_id` changed.
    pub fn signal(&self, key: Arc<str>) {
        let _ = self.changes.send(key);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.changes.subscribe()
    }

    /// A permit for one more stream of `user`; `None` beyond the limits.
    pub fn open(self: &Arc<Self>, user: UserId) -> Option<StreamPermit> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let mine = open.1.get(&user).copied().unwrap_or(0);
        if open.0 >= self.limits.total || mine >= self.limits.per_user {
            return None;
        }
        open.0 += 1;
        open.1.insert(user, mine + 1);
        Some(StreamPermit { feed: Arc::clone(self), user })
    }

    pub fn limits(&self) -> StreamLimits {
        self.limits
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).0
    }
}

async fn listen(feed: std::sync::Weak<LiveFeed>, url: String) {
    let mut failing = false;
    loop {
        let listener = async {
            let mut listener = sqlx::postgres::PgListener::connect(&store::plain_unless_asked(&url)).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match listener.await {
            Ok(mut listener) => {
                failing = false;
                loop {
                    // `try_recv` reports a lost connection as `None` (the listener reconnects
                    // on the next call); what was sent meanwhile is caught by the safety poll.
                    match listener.try_recv().await {
                        Ok(Some(note)) => {
                            let Some(feed) = feed.upgrade() else { return };
                            for key in note.payload().lines().filter(|l| !l.is_empty()) {
                                feed.signal(Arc::from(key));
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "live order feed: listening failed; reconnecting");
                            break;
                        }
                    }
                    if feed.strong_count() == 0 {
                        return;
                    }
                }
            }
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "live order feed: cannot listen; streams fall back to their slow poll");
            }
            Err(_) => {}
        }
        if feed.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn poll(feed: std::sync::Weak<LiveFeed>, db: ReadDb) {
    let table = projections::orders::timeline_table(projections::orders::TABLE);
    let mut last: Option<i64> = None;
    loop {
        let Some(strong) = feed.upgrade() else { return };
        let result: Result<(), sqlx::Error> = async {
            match last {
                None => {
                    let max: Option<i64> = sqlx::query_scalar(&format!("SELECT MAX(position) FROM {table}")).fetch_one(&db.pool).await?;
                    last = Some(max.unwrap_or(0));
                }
                Some(after) => {
                    let rows: Vec<(String, String, i64)> = sqlx::query_as(&format!(
                        "SELECT tenant, order_id, MAX(position) FROM {table} WHERE position > $1 GROUP BY tenant, order_id"
                    ))
                    .bind(after)
                    .fetch_all(&db.pool)
                    .await?;
                    for (tenant, order, position) in rows {
                        last = Some(last.unwrap_or(0).max(position));
                        strong.signal(Arc::from(format!("{tenant}/{order}")));
                    }
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::debug!(error = %e, "live order feed: poll failed");
        }
        drop(strong);
        tokio::time::sleep(POLL).await;
    }
}
