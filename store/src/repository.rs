use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use tokio::sync::OwnedMutexGuard;

use crate::{EventStore, Metadata, NewEvent, StoreError, StoredSnapshot, StreamAppend};

/// How many times a command is re-run against fresh state after losing a race: with the
/// backoff below, a command waits at most about 0.5 s in all before it answers a conflict.
/// (Eight attempts, about 100 ms, let one of 200 reservations from four processes on SQLite
/// run out under a loaded test run.)
pub const MAX_ATTEMPTS: u32 = 16;

/// Why a command did not commit.
#[derive(Debug, thiserror::Error)]
pub enum ExecError<E> {
    /// A business rule refused it.
    #[error(transparent)]
    Domain(E),
    /// The caller expected another version (`If-Match`).
    #[error("expected version {expected}, aggregate is at {current}")]
    VersionMismatch { expected: u64, current: u64 },
    /// Concurrent writers won every attempt.
    #[error("concurrent modification, aggregate is at {current}")]
    Conflict { current: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<E> ExecError<E> {
    /// Re-types the domain error, e.g. to combine two aggregates' errors in one flow.
    pub fn map_domain<F>(self, f: impl FnOnce(E) -> F) -> ExecError<F> {
        match self {
            ExecError::Domain(e) => ExecError::Domain(f(e)),
            ExecError::VersionMismatch { expected, current } => ExecError::VersionMismatch { expected, current },
            ExecError::Conflict { current } => ExecError::Conflict { current },
            ExecError::Store(e) => ExecError::Store(e),
        }
    }
}

/// The aggregate state a repository holds for one stream.
struct Loaded<A> {
    state: A,
    version: u64,
    /// Global position of the stream's last event (0 for an empty stream).
    position: i64,
}

/// One stream's cache entry. Its async mutex also serialises commands on that aggregate within
/// this process, so hot aggregates queue instead of failing on conflicts.
struct Slot<A> {
    loaded: Option<Loaded<A>>,
    /// Another writer appended after `loaded` (an append conflicted, or its outcome is
    /// unknown): the next command reads only the events after it, not the whole stream. The
    /// cached state is always a true prefix of the stream, so catching up is enough.
    stale: bool,
}

struct Inner<A: Aggregate> {
    store: EventStore,
    services: A::Services,
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot<A>>>>>,
    capacity: usize,
    snapshot_every: Option<u64>,
    /// Told of every committed command (see [`Repository::with_observer`]).
    observe: Option<fn(&A, &[A::Event])>,
}

/// Runs commands of one aggregate type against the event store.
///
/// State is cached per stream and trusted optimistically: if another process appended in the
/// meantime, the append conflicts on the (type, id, sequence) key, the entry reads the events
/// that beat it and the command runs again on the state they make.
pub struct Repository<A: Aggregate> {
    inner: Arc<Inner<A>>,
}

impl<A: Aggregate> Clone for Repository<A> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

/// What a committed command produced.
#[derive(Debug, Clone)]
pub struct Committed<A: Aggregate> {
    pub version: u64,
    /// Global position of the stream's last event; 0 if the stream is still empty.
    pub position: i64,
    pub events: Vec<A::Event>,
    pub state: A,
}

/// A command handled but not yet appended; holds its aggregate's lock until dropped.
pub struct Prepared<A: Aggregate> {
    inner: Arc<Inner<A>>,
    guard: OwnedMutexGuard<Slot<A>>,
    aggregate_id: String,
    version_before: u64,
    position_before: i64,
    state: A,
    events: Vec<A::Event>,
    /// Metadata stored with each event instead of the commit's, where one was given
    /// ([`Prepared::label`]): one write may carry several requests' events on one stream.
    labels: Vec<Option<serde_json::Value>>,
    positions: Vec<i64>,
}

/// A command handled on a [`Prepared`] write's state, not yet part of it ([`Prepared::trial`]).
pub struct Trial<A: Aggregate> {
    state: A,
    events: Vec<A::Event>,
}

/// The part of a [`Prepared`] command that [`commit`] needs, whatever its aggregate type.
pub trait Stage: Send {
    fn to_append(&self, metadata: &serde_json::Value) -> Result<StreamAppend, StoreError>;
    fn committed(&mut self, positions: Vec<i64>);
    fn conflicted(&mut self);
}

impl<A: Aggregate + Clone> Repository<A>
where
    A::Command: Clone,
{
    pub fn new(store: EventStore, services: A::Services) -> Self {
        // The conflict counter exists from the start, so that the first conflict is an increase.
        metrics::counter!("shop_append_conflicts_total", "aggregate" => A::TYPE).increment(0);
        Self {
            inner: Arc::new(Inner {
                store,
                services,
                slots: Mutex::new(HashMap::new()),
                capacity: 50_000,
                snapshot_every: None,
                observe: None,
            }),
        }
    }

    /// Saves a snapshot every `n` events, so long streams (hot SKUs) load quickly.
    pub fn with_snapshots(self, n: u64) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|_| panic!("configure before sharing"));
        inner.snapshot_every = Some(n.max(1));
        Self { inner: Arc::new(inner) }
    }

    /// At most `n` streams are cached; idle ones are dropped beyond that.
    /// Calls `observe` with the state and the new events of every command once its events
    /// are committed (metrics of what happened: orders placed, revenue confirmed).
    pub fn with_observer(self, observe: fn(&A, &[A::Event])) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|_| panic!("configure before sharing"));
        inner.observe = Some(observe);
        Self { inner: Arc::new(inner) }
    }

    pub fn with_capacity(self, n: usize) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|_| panic!("configure before sharing"));
        inner.capacity = n.max(1);
        Self { inner: Arc::new(inner) }
    }

    pub fn store(&self) -> &EventStore {
        &self.inner.store
    }

    fn slot(&self, aggregate_id: &str) -> Arc<tokio::sync::Mutex<Slot<A>>> {
        // The map lock is held only for this lookup, never across an await.
        let mut slots = self.inner.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(slot) = slots.get(aggregate_id) {
            return Arc::clone(slot);
        }
        if slots.len() >= self.inner.capacity {
            let keep = self.inner.capacity / 2;
            let idle: Vec<String> = slots
                .iter()
                .filter(|(_, s)| Arc::strong_count(s) == 1)
                .map(|(k, _)| k.clone())
                .take(slots.len().saturating_sub(keep))
                .collect();
            for k in idle {
                slots.remove(&k);
            }
        }
        let slot = Arc::new(tokio::sync::Mutex::new(Slot { loaded: None, stale: false }));
        slots.insert(aggregate_id.to_owned(), Arc::clone(&slot));
        slot
    }

    async fn load(&self, aggregate_id: &str) -> Result<Loaded<A>, StoreError> {
        let mut loaded = self.from_snapshot(aggregate_id).await?;
        self.catch_up(aggregate_id, &mut loaded).await?;
        Ok(loaded)
    }

    /// The stream's latest snapshot when snapshots are kept, else the empty state.
    async fn from_snapshot(&self, aggregate_id: &str) -> Result<Loaded<A>, StoreError> {
        if self.inner.snapshot_every.is_some() {
            if let Some(s) = self.inner.store.load_snapshot(A::TYPE, aggregate_id).await? {
                return Ok(Loaded { state: serde_json::from_value(s.payload)?, version: s.last_sequence, position: s.last_position });
            }
        }
        Ok(Loaded { state: A::default(), version: 0, position: 0 })
    }

    /// Loads the entry when it is absent, and with `catch_up` reads the events after it; a
    /// failed read forgets the entry. Either leaves it current.
    async fn refresh(&self, aggregate_id: &str, slot: &mut Slot<A>, catch_up: bool) -> Result<(), StoreError> {
        match slot.loaded.as_mut() {
            None => slot.loaded = Some(self.load(aggregate_id).await?),
            Some(loaded) if catch_up => {
                if let Err(e) = self.catch_up(aggregate_id, loaded).await {
                    slot.loaded = None;
                    return Err(e);
                }
            }
            Some(_) => return Ok(()),
        }
        slot.stale = false;
        Ok(())
    }

    async fn catch_up(&self, aggregate_id: &str, loaded: &mut Loaded<A>) -> Result<(), StoreError> {
        apply(loaded, self.inner.store.load_stream(A::TYPE, aggregate_id, loaded.version).await?)
    }

    /// The aggregate's current state and version, read through to the store (so a write by
    /// another process is seen), for decisions outside a command such as a login.
    pub async fn read(&self, aggregate_id: &str) -> Result<(A, u64), StoreError> {
        self.read_at(aggregate_id).await.map(|(state, version, _)| (state, version))
    }

    /// [`Repository::read`], with the global position of the stream's last event (0 for an
    /// empty stream).
    pub async fn read_at(&self, aggregate_id: &str) -> Result<(A, u64, i64), StoreError> {
        let slot = self.slot(aggregate_id);
        let mut guard = slot.lock().await;
        self.refresh(aggregate_id, &mut guard, true).await?;
        let loaded = guard.loaded.as_ref().expect("loaded just above");
        Ok((loaded.state.clone(), loaded.version, loaded.position))
    }

    /// The cached state (loaded if absent) without asking the store for newer events: only for
    /// facts that never change once true, such as a claim having an owner. Anything else must
    /// use [`Repository::read`].
    pub async fn peek(&self, aggregate_id: &str) -> Result<(A, u64), StoreError> {
        let slot = self.slot(aggregate_id);
        let mut guard = slot.lock().await;
        if guard.loaded.is_none() {
            guard.loaded = Some(self.load(aggregate_id).await?);
        }
        let loaded = guard.loaded.as_ref().expect("loaded just above");
        Ok((loaded.state.clone(), loaded.version))
    }

    /// Handles `command` on the aggregate's current state without appending; the aggregate
    /// stays locked until the returned value is committed or dropped.
    pub async fn prepare(
        &self,
        aggregate_id: &str,
        command: A::Command,
        expected_version: Option<u64>,
    ) -> Result<Prepared<A>, ExecError<A::Error>> {
        let mut guard = self.slot(aggregate_id).lock_owned().await;
        let cached = guard.loaded.is_some() && !guard.stale;
        // A stale entry reads only the events that beat the last attempt.
        let stale = guard.stale;
        self.refresh(aggregate_id, &mut guard, stale).await?;
        let (state, events) = loop {
            let loaded = guard.loaded.as_ref().expect("loaded just above");
            if let Some(expected) = expected_version {
                if expected != loaded.version {
                    return Err(ExecError::VersionMismatch { expected, current: loaded.version });
                }
            }
            let mut state = loaded.state.clone();
            let sink = EventSink::default();
            match state.handle(command.clone(), &self.inner.services, &sink).await {
                Ok(()) => break (state, sink.collect().await),
                // A refusal on cached state may be stale: another process may have moved the
                // aggregate on. Refusals are rare, so look once more before answering.
                Err(e) => {
                    let before = loaded.version;
                    if !cached {
                        return Err(ExecError::Domain(e));
                    }
                    let loaded = guard.loaded.as_mut().expect("loaded just above");
                    if let Err(store_error) = self.catch_up(aggregate_id, loaded).await {
                        guard.loaded = None;
                        return Err(store_error.into());
                    }
                    if loaded.version == before {
                        return Err(ExecError::Domain(e));
                    }
                }
            }
        };
        Ok(self.held(aggregate_id, guard, state, events))
    }

    /// Takes the aggregate's lock and its state as this process knows it, with nothing handled
    /// yet: commands join with [`Prepared::and`], or with [`Prepared::trial`] and
    /// [`Prepared::accept`]. A write that leaves it empty appends nothing on the stream.
    pub async fn hold(&self, aggregate_id: &str) -> Result<Prepared<A>, StoreError> {
        let mut held = self.hold_all(&[aggregate_id]).await?;
        Ok(held.pop().expect("one stream held"))
    }

    /// [`Repository::hold`] for several streams (distinct, in the caller's lock order): each
    /// lock is taken in turn, then every stream not yet cached, or stale after a conflict, is
    /// read in one query, so a write over many streams tried again after a conflict reads
    /// what beat it in one round trip rather than one per stream.
    pub async fn hold_all(&self, aggregate_ids: &[impl AsRef<str>]) -> Result<Vec<Prepared<A>>, StoreError> {
        let ids: Vec<&str> = aggregate_ids.iter().map(AsRef::as_ref).collect();
        let mut guards = Vec::with_capacity(ids.len());
        for id in &ids {
            guards.push(self.slot(id).lock_owned().await);
        }
        // A stream cached for the first time starts from its snapshot, if it has one.
        for (id, guard) in ids.iter().zip(guards.iter_mut()) {
            if guard.loaded.is_none() {
                guard.loaded = Some(self.from_snapshot(id).await?);
                guard.stale = true;
            }
        }
        let version = |guard: &Slot<A>| guard.loaded.as_ref().expect("loaded above").version;
        let reading: Vec<usize> = (0..guards.len()).filter(|&i| guards[i].stale).collect();
        let after: Vec<(&str, u64)> = reading.iter().map(|&i| (ids[i], version(&guards[i]))).collect();
        let read = match self.inner.store.load_streams(A::TYPE, &after).await {
            Ok(read) => read,
            Err(e) => {
                for &i in &reading {
                    guards[i].loaded = None;
                }
                return Err(e);
            }
        };
        for (&i, events) in reading.iter().zip(read) {
            let guard = &mut guards[i];
            if let Err(e) = apply(guard.loaded.as_mut().expect("loaded above"), events) {
                guard.loaded = None;
                return Err(e);
            }
            guard.stale = false;
        }
        Ok(ids
            .into_iter()
            .zip(guards)
            .map(|(id, guard)| {
                let state = guard.loaded.as_ref().expect("loaded above").state.clone();
                self.held(id, guard, state, Vec::new())
            })
            .collect())
    }

    /// A write of `events`, which leave the loaded state in `guard` as `state`.
    fn held(&self, aggregate_id: &str, guard: OwnedMutexGuard<Slot<A>>, state: A, events: Vec<A::Event>) -> Prepared<A> {
        let loaded = guard.loaded.as_ref().expect("loaded before the write is prepared");
        let (version_before, position_before) = (loaded.version, loaded.position);
        Prepared {
            inner: Arc::clone(&self.inner),
            guard,
            aggregate_id: aggregate_id.to_owned(),
            version_before,
            position_before,
            state,
            events,
            labels: Vec::new(),
            positions: Vec::new(),
        }
    }

    /// Handles and appends one command, re-running it on fresh state when a concurrent writer
    /// got there first (up to [`MAX_ATTEMPTS`]). With `expected_version`, a changed aggregate
    /// is reported as [`ExecError::VersionMismatch`] instead.
    pub async fn execute(
        &self,
        aggregate_id: &str,
        command: A::Command,
        expected_version: Option<u64>,
        metadata: &Metadata,
    ) -> Result<Committed<A>, ExecError<A::Error>> {
        let result = retry_on_conflict(A::TYPE, || async {
            let mut prepared = self.prepare(aggregate_id, command.clone(), expected_version).await?;
            commit(&self.inner.store, metadata, &mut [&mut prepared]).await?;
            Ok(prepared.finish().await)
        })
        .await;
        match result {
            Err(ExecError::Conflict { .. }) => {
                let current = self.inner.store.stream_version(A::TYPE, aggregate_id).await?;
                Err(ExecError::Conflict { current })
            }
            other => other,
        }
    }
}

/// Brings a cached state forward by events read after it.
fn apply<A: Aggregate>(loaded: &mut Loaded<A>, events: Vec<crate::backend::StoredEvent>) -> Result<(), StoreError> {
    for e in events {
        loaded.state.apply(serde_json::from_value(e.payload)?);
        loaded.version = e.sequence;
        loaded.position = e.position;
    }
    Ok(())
}

/// Runs `attempt` again (with a little jitter) while it fails with a conflict, at most
/// [`MAX_ATTEMPTS`] times. Each attempt must prepare afresh: a conflict marks the cached state
/// stale.
/// `aggregate` is the type of the command's aggregate, for `shop_command_duration_seconds` and
/// `shop_commands_total{outcome = ok | rejected | conflict | error}`.
pub async fn retry_on_conflict<T, E, F, Fut>(aggregate: &'static str, attempt: F) -> Result<T, ExecError<E>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ExecError<E>>>,
{
    let start = std::time::Instant::now();
    let result = retry(attempt).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(ExecError::Domain(_)) => "rejected",
        Err(ExecError::Conflict { .. } | ExecError::VersionMismatch { .. }) => "conflict",
        Err(ExecError::Store(_)) => "error",
    };
    metrics::histogram!("shop_command_duration_seconds", "aggregate" => aggregate).record(start.elapsed().as_secs_f64());
    metrics::counter!("shop_commands_total", "aggregate" => aggregate, "outcome" => outcome).increment(1);
    result
}

async fn retry<T, E, F, Fut>(mut attempt: F) -> Result<T, ExecError<E>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ExecError<E>>>,
{
    let mut n = 1;
    loop {
        match attempt().await {
            Err(ExecError::Conflict { .. }) if n < MAX_ATTEMPTS => {
                // Exponential (200 µs, doubling, at most 25.6 ms) plus up to as much again at
                // random, so writers in different processes stop colliding in step: the
                // longest a command waits in all is about 0.5 s.
                let base = 200u64 << (n - 1).min(7);
                let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| u64::from(d.subsec_nanos()));
                let jitter = nanos.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                tokio::time::sleep(Duration::from_micros(base + jitter % (base + 1))).await;
                n += 1;
            }
            other => return other,
        }
    }
}

/// Appends the events of every stage in one atomic write. On a conflict every stage marks its
/// cached state stale, so the next attempt reads what the other writer wrote.
pub async fn commit<E>(store: &EventStore, metadata: &Metadata, stages: &mut [&mut dyn Stage]) -> Result<(), ExecError<E>> {
    let metadata = serde_json::to_value(metadata).map_err(StoreError::from)?;
    let appends = stages.iter().map(|s| s.to_append(&metadata)).collect::<Result<Vec<_>, _>>()?;
    match store.append(&appends).await {
        Ok(positions) => {
            for (stage, positions) in stages.iter_mut().zip(positions) {
                stage.committed(positions);
            }
            Ok(())
        }
        Err(StoreError::Conflict) => {
            for append in &appends {
                metrics::counter!("shop_append_conflicts_total", "aggregate" => append.aggregate_type.clone()).increment(1);
            }
            for stage in stages.iter_mut() {
                stage.conflicted();
            }
            Err(ExecError::Conflict { current: 0 })
        }
        Err(e) => {
            // The write may or may not have landed (e.g. a lost connection): forget the cache.
            for stage in stages.iter_mut() {
                stage.conflicted();
            }
            Err(ExecError::Store(e))
        }
    }
}

impl<A: Aggregate + Clone> Prepared<A> {
    pub fn events(&self) -> &[A::Event] {
        &self.events
    }

    /// The state after the command (not yet durable before [`commit`]).
    pub fn state(&self) -> &A {
        &self.state
    }

    /// Handles one more command on the state the earlier ones left, to be appended with them
    /// in the same write. A refused command leaves the prepared ones as they were. As with
    /// [`Repository::prepare`], a refusal on cached state may be stale: if another writer
    /// moved the stream on, this answers a conflict (and marks the cache stale), so the
    /// caller prepares the whole write again on fresh state.
    pub async fn and(&mut self, command: A::Command) -> Result<(), ExecError<A::Error>> {
        let mut state = self.state.clone();
        let sink = EventSink::default();
        match state.handle(command, &self.inner.services, &sink).await {
            Ok(()) => {
                self.events.extend(sink.collect().await);
                self.state = state;
                Ok(())
            }
            Err(e) => match self.inner.store.stream_version(A::TYPE, &self.aggregate_id).await? {
                current if current != self.version_before => {
                    self.guard.stale = true;
                    Err(ExecError::Conflict { current })
                }
                _ => Err(ExecError::Domain(e)),
            },
        }
    }

    /// Handles `command` on the state prepared so far without adding it to the write: a
    /// command that spans several streams can join all of them or none ([`Prepared::accept`]).
    /// Unlike [`Prepared::and`], a refusal is answered from the state this process holds,
    /// without asking the store. The write's append checks that state when it appends on the
    /// stream; where it appends nothing here, its caller asks [`Prepared::unchanged`] before
    /// acting on a refusal.
    pub async fn trial(&self, command: A::Command) -> Result<Trial<A>, A::Error> {
        let mut state = self.state.clone();
        let sink = EventSink::default();
        state.handle(command, &self.inner.services, &sink).await?;
        Ok(Trial { state, events: sink.collect().await })
    }

    /// Adds a command handled by [`Prepared::trial`] on the state it was tried on.
    pub fn accept(&mut self, trial: Trial<A>) {
        self.events.extend(trial.events);
        self.state = trial.state;
    }

    /// Whether the write appends nothing on this stream.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Whether the stream is still at the version this write was prepared on: another process
    /// may have appended since this one cached it. If not, the cache is marked stale, so the
    /// next attempt reads what it missed.
    pub async fn unchanged(&mut self) -> Result<bool, StoreError> {
        let current = self.inner.store.stream_version(A::TYPE, &self.aggregate_id).await?;
        if current != self.version_before {
            self.guard.stale = true;
        }
        Ok(current == self.version_before)
    }

    /// Stores `metadata` with the events handled since the last label (all of them at first)
    /// instead of the metadata given to [`commit`].
    pub fn label(&mut self, metadata: &Metadata) -> Result<(), StoreError> {
        let value = serde_json::to_value(metadata)?;
        let from = self.labels.len();
        self.labels.resize(self.events.len(), None);
        for label in &mut self.labels[from..] {
            *label = Some(value.clone());
        }
        Ok(())
    }

    /// Releases the aggregate and reports what was committed; saves a snapshot when one is due.
    pub async fn finish(self) -> Committed<A> {
        let version = self.version_before + self.events.len() as u64;
        let position = self.positions.last().copied().unwrap_or(self.position_before);
        if let Some(every) = self.inner.snapshot_every {
            if !self.events.is_empty() && version / every > self.version_before / every {
                self.save_snapshot(version, position).await;
            }
        }
        if let (Some(observe), false) = (self.inner.observe, self.events.is_empty()) {
            observe(&self.state, &self.events);
        }
        Committed { version, position, events: self.events, state: self.state }
    }

    async fn save_snapshot(&self, version: u64, position: i64) {
        let payload = match serde_json::to_value(&self.state) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(aggregate_type = A::TYPE, error = %e, "snapshot not serialisable");
                return;
            }
        };
        let snapshot = StoredSnapshot { last_sequence: version, last_position: position, payload };
        // A missed snapshot only makes the next cold load longer; it is never needed for
        // correctness, so a failure is logged and the command still succeeds.
        if let Err(e) = self.inner.store.save_snapshot(A::TYPE, &self.aggregate_id, &snapshot).await {
            tracing::warn!(aggregate_type = A::TYPE, aggregate_id = %self.aggregate_id, error = %e, "snapshot not saved");
        }
    }
}

impl<A: Aggregate + Clone> Stage for Prepared<A> {
    fn to_append(&self, metadata: &serde_json::Value) -> Result<StreamAppend, StoreError> {
        let events = self
            .events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                Ok(NewEvent {
                    event_type: e.event_type(),
                    event_version: e.event_version(),
                    payload: serde_json::to_value(e)?,
                    metadata: self.labels.get(i).and_then(Option::as_ref).unwrap_or(metadata).clone(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(StreamAppend {
            aggregate_type: A::TYPE.to_owned(),
            aggregate_id: self.aggregate_id.clone(),
            expected_version: self.version_before,
            events,
        })
    }

    fn committed(&mut self, positions: Vec<i64>) {
        let version = self.version_before + self.events.len() as u64;
        let position = positions.last().copied().unwrap_or(self.position_before);
        self.guard.loaded = Some(Loaded { state: self.state.clone(), version, position });
        self.positions = positions;
    }

    fn conflicted(&mut self) {
        self.guard.stale = true;
    }
}
