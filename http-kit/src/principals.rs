//! Who the bearer of an access token is *now*: whether the user exists and is active, which
//! roles it holds and its session epoch (which moves on with every password change or reset,
//! deactivation and role change). A per-process cache answers without a database round trip;
//! a poller reads which users' streams changed (a cheap indexed query every 250 ms) and marks
//! their entries stale, so a demotion or deactivation takes effect in every process within
//! about a second. While the poller cannot reach the store, nothing is answered from the cache.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cqrs_es::Aggregate;
use domain::user::{Role, User};
use domain::{stream_id, TenantId, UserId};
use store::{EventStore, StoreError};

/// What a token's user is allowed now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub active: bool,
    pub roles: BTreeSet<Role>,
    pub epoch: u64,
}

/// How often the poller asks which users changed.
const POLL_EVERY: Duration = Duration::from_millis(250);

/// Cached entries are trusted only while the poller succeeded this recently.
const FRESH_FOR: Duration = Duration::from_secs(2);

/// Entries kept at most; the cache starts over beyond this.
const CAPACITY: usize = 200_000;

#[derive(Default)]
struct Cache {
    /// Stream id → the principal and the stream version it was read at.
    entries: HashMap<String, (Principal, u64)>,
    /// Stream id → the highest sequence the poller has seen written.
    written: HashMap<String, u64>,
    /// When the poller last read the changes (None before its first read).
    polled_at: Option<Instant>,
}

impl Cache {
    fn fresh(&self) -> bool {
        self.polled_at.is_some_and(|t| t.elapsed() < FRESH_FOR)
    }
}

/// The per-process cache of principals; share one per process.
pub struct Principals {
    store: EventStore,
    cache: Mutex<Cache>,
}

impl Principals {
    /// A cache over `store`, with its poller running as long as the cache is in use.
    pub fn start(store: EventStore) -> Arc<Self> {
        let principals = Arc::new(Self { store, cache: Mutex::new(Cache::default()) });
        let weak = Arc::downgrade(&principals);
        tokio::spawn(async move {
            let mut horizon = None;
            let mut failing = false;
            while let Some(poller) = weak.upgrade() {
                match poller.poll(horizon).await {
                    Ok(next) => {
                        horizon = Some(next);
                        failing = false;
                    }
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "principal cache: cannot read user changes; asking the store on every request");
                    }
                    Err(_) => {}
                }
                drop(poller);
                tokio::time::sleep(POLL_EVERY).await;
            }
        });
        principals
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn poll(&self, horizon: Option<i64>) -> Result<i64, StoreError> {
        let Some(since) = horizon else {
            let start = self.store.change_horizon().await?;
            // Nothing cached before the first horizon: every entry is read after it.
            let mut cache = self.lock();
            cache.entries.clear();
            cache.polled_at = Some(Instant::now());
            return Ok(start);
        };
        let (changed, next) = self.store.changed_streams(User::TYPE, since).await?;
        let mut cache = self.lock();
        for (stream, sequence) in changed {
            let sequence = sequence.max(0) as u64;
            if cache.entries.get(&stream).is_some_and(|(_, version)| *version < sequence) {
                cache.entries.remove(&stream);
            }
            let written = cache.written.entry(stream).or_default();
            *written = (*written).max(sequence);
        }
        if cache.written.len() > CAPACITY {
            cache.written.clear();
            cache.entries.clear();
        }
        cache.polled_at = Some(Instant::now());
        Ok(next)
    }

    /// The user's principal now; `None` if there is no such user in the tenant. A cached entry
    /// older than `seen_epoch` (the epoch of a token this process issued a moment ago, before
    /// the poller saw the change) is read again.
    pub async fn current(&self, tenant: &TenantId, user: UserId, seen_epoch: u64) -> Result<Option<Principal>, StoreError> {
        let stream = stream_id(tenant, user);
        {
            let cache = self.lock();
            if cache.fresh() {
                if let Some((principal, version)) = cache.entries.get(&stream) {
                    if *version >= cache.written.get(&stream).copied().unwrap_or(0) && principal.epoch >= seen_epoch {
                        return Ok(Some(principal.clone()));
                    }
                }
            }
        }
        let mut state = User::default();
        let mut version = 0;
        for event in self.store.load_stream(User::TYPE, &stream, 0).await? {
            state.apply(serde_json::from_value(event.payload)?);
            version = event.sequence;
        }
        if !state.is_registered() {
            return Ok(None);
        }
        let principal = Principal { active: state.active, roles: state.roles, epoch: state.session_epoch };
        let mut cache = self.lock();
        if cache.fresh() {
            if cache.entries.len() >= CAPACITY {
                cache.entries.clear();
            }
            cache.entries.insert(stream, (principal.clone(), version));
        }
        Ok(Some(principal))
    }
}
