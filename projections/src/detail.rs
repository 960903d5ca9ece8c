//! Product detail documents for `GET /products/{id}`, kept by a projection in Redis
//! (`REDIS_URL`) or, in embedded mode, in process.
//!
//! Exactly-once comes from storing the checkpoint with the data: a batch's documents and the
//! new checkpoint are written by one Lua script that first checks the checkpoint is still the
//! one the batch started from. Each document also carries the version (stream sequence) of the
//! last event applied, and an event at or below it is skipped: a per-key version guard.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use domain::product::ProductEvent;
use serde_json::{json, Value};
use store::{EventStore, LogEvent};

use worker_kit::Consumer;

use crate::own::{decode, encode, Checkpoint};
use crate::{split_stream_id, ProjectionError};

pub const NAME: &str = "product_detail";

/// Where the documents live.
enum Backend {
    Redis {
        /// Reconnects by itself after Redis restarts (the request that found it gone fails).
        conn: redis::aio::ConnectionManager,
        prefix: String,
    },
    /// Documents by `<tenant>:<id>`, and the checkpoint.
    Memory(Mutex<(HashMap<String, Value>, Checkpoint)>),
}

pub struct ProductDetails {
    store: EventStore,
    backend: Backend,
    /// Whether this worker is rebuilding the documents from the start of the log (Redis came
    /// back empty); mirrored in Redis for readers in other processes.
    rebuilding: std::sync::atomic::AtomicBool,
    /// The log's head when the rebuild started: every product written before it has its
    /// document once the worker has passed it.
    rebuild_target: std::sync::atomic::AtomicI64,
}

/// Writes the documents and moves the checkpoint, only if the checkpoint is still ARGV[1].
const WRITE: &str = r"
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then return 0 end
for i = 2, #KEYS do redis.call('SET', KEYS[i], ARGV[i + 1]) end
redis.call('SET', KEYS[1], ARGV[2])
return 1
";

fn redis_error(e: redis::RedisError) -> ProjectionError {
    ProjectionError::Redis(e)
}

/// What the documents say about one product.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Found(Value),
    /// No such product (as far as the documents have read the log).
    Absent,
    /// The documents cannot be trusted now: Redis came back empty (or this process just
    /// started) and they are being rebuilt from the log. Read the SQL catalogue instead.
    Rebuilding,
}

/// Replaces each document (KEYS[i], ARGV[2i-1]) unless the stored one is at a later version
/// than ARGV[2i] (the live worker got there first); unreadable documents are replaced.
const REPLACE: &str = r"
for i = 1, #KEYS do
  local keep = false
  local current = redis.call('GET', KEYS[i])
  if current then
    local ok, doc = pcall(cjson.decode, current)
    if ok and type(doc) == 'table' and tonumber(doc['version']) and tonumber(doc['version']) > tonumber(ARGV[2 * i]) then
      keep = true
    end
  end
  if not keep then redis.call('SET', KEYS[i], ARGV[2 * i - 1]) end
end
return #KEYS
";

/// Product events of a batch by `(tenant, product id)`, in log order.
pub(crate) fn by_product<'a>(events: &'a [LogEvent]) -> Result<BTreeMap<(String, String), Vec<&'a LogEvent>>, ProjectionError> {
    let mut changed: BTreeMap<(String, String), Vec<&LogEvent>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.aggregate_type == "product") {
        let (tenant, id) = split_stream_id(&e.aggregate_id)?;
        changed.entry((tenant.to_owned(), id.to_owned())).or_default().push(e);
    }
    Ok(changed)
}

/// Every product's document as the whole log makes it (read one batch ahead), where the log
/// was read up to, and how many log events that was. `progress(done, head)` as it goes.
pub(crate) async fn fold_log(
    store: &EventStore,
    mut progress: impl FnMut(i64, i64),
) -> Result<(HashMap<(String, String), Value>, store::LogCursor, i64), ProjectionError> {
    let head = store.head_position().await?;
    let (mut batches, reader) = worker_kit::read_ahead(store.clone(), store::LogCursor::default(), 20_000);
    let mut docs: HashMap<(String, String), Value> = HashMap::new();
    let mut cursor = store::LogCursor::default();
    let mut done = 0i64;
    while let Some(events) = batches.recv().await {
        let events = events?;
        let Some(last) = events.last().map(|e| e.cursor) else {
            break;
        };
        for (key, product_events) in by_product(&events)? {
            let doc = docs.remove(&key);
            if let Some(doc) = fold_all(doc, &key.1, &product_events)? {
                docs.insert(key, doc);
            }
        }
        cursor = last;
        done += events.len() as i64;
        progress(done, head.max(done));
    }
    reader.abort();
    Ok((docs, cursor, done))
}

/// Applies `events` (one product's, in order) to its document (`None` before creation).
pub(crate) fn fold_all(mut doc: Option<Value>, id: &str, events: &[&LogEvent]) -> Result<Option<Value>, ProjectionError> {
    for e in events {
        doc = fold(doc, crate::projection::payload(e)?, id, e.sequence)?;
    }
    Ok(doc)
}

/// Applies one product event to its document (`None` before creation).
fn fold(doc: Option<Value>, event: ProductEvent, id: &str, sequence: i64) -> Result<Option<Value>, ProjectionError> {
    if doc.as_ref().and_then(|d| d["version"].as_i64()).is_some_and(|v| v >= sequence) {
        return Ok(doc);
    }
    let mut doc = match (doc, event) {
        (_, ProductEvent::Created { sku, name, description, category, price, attributes, .. }) => json!({
            "id": id, "sku": sku, "name": name, "description": description, "category": category,
            "price": price.money(), "attributes": attributes, "published": false,
            "featured": attributes.get("featured").is_some_and(|v| v == "true"), "discontinued": false,
        }),
        (None, _) => return Ok(None),
        (Some(mut d), ProductEvent::DetailsUpdated { name, description, category, attributes }) => {
            d["featured"] = json!(attributes.get("featured").is_some_and(|v| v == "true"));
            d["name"] = json!(name);
            d["description"] = json!(description);
            d["category"] = json!(category);
            d["attributes"] = json!(attributes);
            d
        }
        (Some(mut d), ProductEvent::PriceChanged { price, .. }) => {
            d["price"] = serde_json::to_value(price.money())?;
            d
        }
        (Some(mut d), ProductEvent::Published) => {
            d["published"] = json!(true);
            d
        }
        (Some(mut d), ProductEvent::Unpublished) => {
            d["published"] = json!(false);
            d
        }
        (Some(mut d), ProductEvent::Discontinued) => {
            d["published"] = json!(false);
            d["discontinued"] = json!(true);
            d
        }
    };
    doc["version"] = json!(sequence);
    Ok(Some(doc))
}

impl ProductDetails {
    /// In Redis at `url` (keys under `prefix:`), or in process when `url` is `None`.
    pub async fn connect(store: EventStore, url: Option<&str>, prefix: &str) -> Result<Self, ProjectionError> {
        let backend = match url {
            Some(url) => {
                let client = redis::Client::open(url).map_err(redis_error)?;
                // Fail fast while Redis is away: one reconnection attempt per request, and no
                // request waits longer than 2 s (readers fall back, the worker retries).
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_number_of_retries(1)
                    .set_connection_timeout(Duration::from_secs(2))
                    .set_response_timeout(Duration::from_secs(2));
                let conn = redis::aio::ConnectionManager::new_with_config(client, config).await.map_err(redis_error)?;
                Backend::Redis { conn, prefix: prefix.to_owned() }
            }
            None => Backend::Memory(Mutex::new((HashMap::new(), None))),
        };
        Ok(Self { store, backend, rebuilding: Default::default(), rebuild_target: Default::default() })
    }

    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Redis { .. } => "redis",
            Backend::Memory(_) => "in-process",
        }
    }

    fn key(prefix: &str, tenant: &str, id: &str) -> String {
        format!("{prefix}:product:{tenant}:{id}")
    }

    fn checkpoint_key(prefix: &str) -> String {
        format!("{prefix}:checkpoint:{NAME}")
    }

    /// Set while a worker rebuilds the documents from the start of the log.
    fn rebuilding_key(prefix: &str) -> String {
        format!("{prefix}:rebuilding:{NAME}")
    }

    /// The document of product `id` in `tenant`, or why there is none: one round trip reads
    /// the document, the checkpoint and the rebuilding mark together.
    pub async fn lookup(&self, tenant: &str, id: &str) -> Result<Lookup, ProjectionError> {
        match &self.backend {
            Backend::Redis { conn, prefix } => {
                let (checkpoint, rebuilding, doc): (Option<String>, Option<String>, Option<String>) = redis::cmd("MGET")
                    .arg(Self::checkpoint_key(prefix))
                    .arg(Self::rebuilding_key(prefix))
                    .arg(Self::key(prefix, tenant, id))
                    .query_async(&mut conn.clone())
                    .await
                    .map_err(redis_error)?;
                if checkpoint.is_none() || rebuilding.is_some() {
                    return Ok(Lookup::Rebuilding);
                }
                Ok(match doc {
                    Some(doc) => Lookup::Found(serde_json::from_str(&doc)?),
                    None => Lookup::Absent,
                })
            }
            Backend::Memory(m) => {
                let m = m.lock().unwrap_or_else(|p| p.into_inner());
                if m.1.is_none() || self.rebuilding.load(std::sync::atomic::Ordering::SeqCst) {
                    return Ok(Lookup::Rebuilding);
                }
                Ok(m.0.get(&format!("{tenant}:{id}")).cloned().map_or(Lookup::Absent, Lookup::Found))
            }
        }
    }

    /// `shop replay product_detail`: folds the whole log into one document per product and
    /// writes each over the stored one, unless the stored one is already at a later version.
    /// Each replacement is atomic and never goes back in time, so reads and the live worker go
    /// on throughout; afterwards every document is what the log says (a document the log does
    /// not explain, e.g. written by hand or by a bug, is gone). In-process documents are
    /// rebuilt from the log at every start: there is nothing to replay.
    pub async fn rebuild(&self, progress: impl FnMut(i64, i64)) -> Result<crate::RebuildReport, ProjectionError> {
        let Backend::Redis { conn, prefix } = &self.backend else {
            return Ok(crate::RebuildReport { events: 0, elapsed: std::time::Duration::ZERO });
        };
        let started = std::time::Instant::now();
        let (docs, _, done) = fold_log(&self.store, progress).await?;
        let script = redis::Script::new(REPLACE);
        let docs: Vec<_> = docs.into_iter().collect();
        for chunk in docs.chunks(500) {
            let mut invocation = script.prepare_invoke();
            for ((tenant, id), doc) in chunk {
                invocation.key(Self::key(prefix, tenant, id)).arg(doc.to_string()).arg(doc["version"].as_i64().unwrap_or(0));
            }
            let _: i64 = invocation.invoke_async(&mut conn.clone()).await.map_err(redis_error)?;
        }
        Ok(crate::RebuildReport { events: done, elapsed: started.elapsed() })
    }

    /// The document of product `id` in `tenant`, if it exists.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<Option<Value>, ProjectionError> {
        match &self.backend {
            Backend::Redis { conn, prefix } => {
                let value: Option<String> =
                    redis::cmd("GET").arg(Self::key(prefix, tenant, id)).query_async(&mut conn.clone()).await.map_err(redis_error)?;
                Ok(value.map(|v| serde_json::from_str(&v)).transpose()?)
            }
            Backend::Memory(m) => Ok(m.lock().unwrap_or_else(|p| p.into_inner()).0.get(&format!("{tenant}:{id}")).cloned()),
        }
    }

    async fn load(&self, keys: &[(String, String)]) -> Result<Vec<Option<Value>>, ProjectionError> {
        match &self.backend {
            Backend::Redis { conn, prefix } => {
                let mut cmd = redis::cmd("MGET");
                for (tenant, id) in keys {
                    cmd.arg(Self::key(prefix, tenant, id));
                }
                let values: Vec<Option<String>> = cmd.query_async(&mut conn.clone()).await.map_err(redis_error)?;
                values.into_iter().map(|v| Ok(v.map(|v| serde_json::from_str(&v)).transpose()?)).collect()
            }
            Backend::Memory(m) => {
                let m = m.lock().unwrap_or_else(|p| p.into_inner());
                Ok(keys.iter().map(|(t, i)| m.0.get(&format!("{t}:{i}")).cloned()).collect())
            }
        }
    }
}

#[async_trait]
impl Consumer for ProductDetails {
    type Error = ProjectionError;

    fn name(&self) -> &'static str {
        NAME
    }

    async fn checkpoint(&self) -> Result<Checkpoint, ProjectionError> {
        match &self.backend {
            Backend::Redis { conn, prefix } => {
                let value: Option<String> =
                    redis::cmd("GET").arg(Self::checkpoint_key(prefix)).query_async(&mut conn.clone()).await.map_err(redis_error)?;
                Ok(value.as_deref().and_then(decode))
            }
            Backend::Memory(m) => Ok(m.lock().unwrap_or_else(|p| p.into_inner()).1),
        }
    }

    /// Writes the changed documents and the new checkpoint together, only if the checkpoint
    /// is still `stored`; a batch without product events writes the checkpoint alone. A batch
    /// from the start of the log (Redis came back empty, or a first start) marks the documents
    /// as rebuilding until the worker has passed the log's head as it was when the rebuild began.
    async fn consume(&self, stored: Checkpoint, events: &[LogEvent]) -> Result<(), ProjectionError> {
        use std::sync::atomic::Ordering;
        let Some(last) = events.last().map(|e| e.cursor) else {
            return Ok(());
        };
        if stored.is_none() {
            self.rebuild_target.store(self.store.head_position().await?, Ordering::SeqCst);
            self.rebuilding.store(true, Ordering::SeqCst);
        }
        let processed = stored.map_or(0, |(_, n)| n);
        let changed = by_product(events)?;
        let keys: Vec<(String, String)> = changed.keys().cloned().collect();
        let loaded = if keys.is_empty() { Vec::new() } else { self.load(&keys).await? };
        let mut docs = Vec::new();
        for ((key, events), doc) in changed.into_iter().zip(loaded) {
            if let Some(doc) = fold_all(doc, &key.1, &events)? {
                docs.push((key, doc));
            }
        }
        let next = encode(last, processed + events.len() as i64);
        match &self.backend {
            Backend::Redis { conn, prefix } => {
                let script = redis::Script::new(WRITE);
                let mut invocation = script.key(Self::checkpoint_key(prefix));
                invocation.arg(stored.map(|(c, n)| encode(c, n)).unwrap_or_default()).arg(&next);
                for ((tenant, id), doc) in &docs {
                    invocation.key(Self::key(prefix, tenant, id)).arg(doc.to_string());
                }
                if stored.is_none() {
                    // Marked before the first documents appear, so no reader trusts a half set.
                    let _: () = redis::cmd("SET")
                        .arg(Self::rebuilding_key(prefix))
                        .arg(1)
                        .query_async(&mut conn.clone())
                        .await
                        .map_err(redis_error)?;
                }
                let written: i64 = invocation.invoke_async(&mut conn.clone()).await.map_err(redis_error)?;
                if written != 1 {
                    return Err(ProjectionError::Concurrent);
                }
            }
            Backend::Memory(m) => {
                let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
                if m.1 != stored {
                    return Err(ProjectionError::Concurrent);
                }
                for ((tenant, id), doc) in docs {
                    m.0.insert(format!("{tenant}:{id}"), doc);
                }
                m.1 = decode(&next);
            }
        }
        // Trusted again once past the head of the log as the rebuild found it. ("Within a batch
        // of the head" was not enough: a batch the reader saw end early, behind a transaction
        // still open, let readers see a product's document missing: a 404.)
        if self.rebuilding.load(Ordering::SeqCst) && last.position >= self.rebuild_target.load(Ordering::SeqCst) {
            if let Backend::Redis { conn, prefix } = &self.backend {
                let _: () =
                    redis::cmd("DEL").arg(Self::rebuilding_key(prefix)).query_async(&mut conn.clone()).await.map_err(redis_error)?;
            }
            self.rebuilding.store(false, Ordering::SeqCst);
            tracing::info!(position = last.position, "product documents rebuilt from the log; served from them again");
        }
        Ok(())
    }
}
