//! Product detail documents for `GET /products/{id}`, kept by a projection in Redis
//! (`REDIS_URL`) or, in embedded mode, in process.
//!
//! Exactly-once comes from storing the checkpoint with the data: a batch's documents and the
//! new checkpoint are written by one Lua script that first checks the checkpoint is still the
//! one the batch started from. Each document also carries the version (stream sequence) of the
//! last event applied, and an event at or below it is skipped: a per-key version guard.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::product::ProductEvent;
use serde_json::{json, Value};
use store::{EventStore, LogCursor, LogEvent};
use tokio::sync::watch;

use crate::{split_stream_id, Outcome, ProjectionError, ProjectionStatus};

pub const NAME: &str = "product_detail";

/// A checkpoint and the number of log events processed.
type Checkpoint = Option<(LogCursor, i64)>;

/// Where the documents live.
enum Backend {
    Redis { conn: redis::aio::MultiplexedConnection, prefix: String },
    /// Documents by `<tenant>:<id>`, and the checkpoint.
    Memory(Mutex<(HashMap<String, Value>, Checkpoint)>),
}

pub struct ProductDetails {
    store: EventStore,
    backend: Backend,
    batch_size: u32,
}

/// Writes the documents and moves the checkpoint, only if the checkpoint is still ARGV[1].
const WRITE: &str = r"
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then return 0 end
for i = 2, #KEYS do redis.call('SET', KEYS[i], ARGV[i + 1]) end
redis.call('SET', KEYS[1], ARGV[2])
return 1
";

fn encode(c: LogCursor, events: i64) -> String {
    format!("{}:{}:{events}", c.transaction_id, c.position)
}

fn decode(s: &str) -> Option<(LogCursor, i64)> {
    let mut parts = s.split(':').map(|p| p.parse::<i64>().ok());
    Some((LogCursor { transaction_id: parts.next()??, position: parts.next()?? }, parts.next()??))
}

fn redis_error(e: redis::RedisError) -> ProjectionError {
    ProjectionError::Malformed(format!("redis: {e}"))
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
                let conn = client.get_multiplexed_async_connection().await.map_err(redis_error)?;
                Backend::Redis { conn, prefix: prefix.to_owned() }
            }
            None => Backend::Memory(Mutex::new((HashMap::new(), None))),
        };
        Ok(Self { store, backend, batch_size: 1000 })
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

    /// The checkpoint and the number of log events processed.
    pub async fn checkpoint(&self) -> Result<Checkpoint, ProjectionError> {
        match &self.backend {
            Backend::Redis { conn, prefix } => {
                let value: Option<String> =
                    redis::cmd("GET").arg(format!("{prefix}:checkpoint:{NAME}")).query_async(&mut conn.clone()).await.map_err(redis_error)?;
                Ok(value.as_deref().and_then(decode))
            }
            Backend::Memory(m) => Ok(m.lock().unwrap_or_else(|p| p.into_inner()).1),
        }
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

    /// Processes the next batch: documents and checkpoint are written together, or not at all.
    pub async fn try_process_next(&self) -> Result<Outcome, ProjectionError> {
        let stored = self.checkpoint().await?;
        let (cursor, processed) = stored.unwrap_or_default();
        let events: Vec<LogEvent> = self.store.read_log(cursor, self.batch_size).await?;
        let Some(last) = events.last().map(|e| e.cursor) else { return Ok(Outcome::Idle) };
        let mut changed: BTreeMap<(String, String), Vec<&LogEvent>> = BTreeMap::new();
        for e in events.iter().filter(|e| e.aggregate_type == "product") {
            let (tenant, id) = split_stream_id(&e.aggregate_id)?;
            changed.entry((tenant.to_owned(), id.to_owned())).or_default().push(e);
        }
        let keys: Vec<(String, String)> = changed.keys().cloned().collect();
        let mut docs = Vec::new();
        for ((key, events), doc) in changed.into_iter().zip(self.load(&keys).await?) {
            let mut doc = doc;
            for e in events {
                doc = fold(doc, serde_json::from_value(e.payload.clone())?, &key.1, e.sequence)?;
            }
            if let Some(doc) = doc {
                docs.push((key, doc));
            }
        }
        let next = encode(last, processed + events.len() as i64);
        match &self.backend {
            Backend::Redis { conn, prefix } => {
                let script = redis::Script::new(WRITE);
                let mut invocation = script.key(format!("{prefix}:checkpoint:{NAME}"));
                invocation.arg(stored.map(|(c, n)| encode(c, n)).unwrap_or_default()).arg(&next);
                for ((tenant, id), doc) in &docs {
                    invocation.key(Self::key(prefix, tenant, id)).arg(doc.to_string());
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
        Ok(Outcome::Applied(events.len()))
    }

    /// Whether the event at `position` has been processed.
    pub async fn reached(&self, position: i64) -> Result<bool, ProjectionError> {
        match self.store.cursor_of(position).await? {
            Some(target) => Ok(self.checkpoint().await?.is_some_and(|(c, _)| c >= target)),
            None => Ok(position == 0),
        }
    }

    /// Waits up to `timeout` until the event at `position` has been processed.
    pub async fn wait_for(&self, position: i64, timeout: Duration) -> Result<bool, ProjectionError> {
        crate::poll_until(timeout, || self.reached(position)).await
    }

    pub async fn status(&self) -> Result<ProjectionStatus, ProjectionError> {
        let (cursor, events) = self.checkpoint().await?.unwrap_or_default();
        let next = self.store.read_log(cursor, 1).await?;
        let head = self.store.head_position().await?;
        Ok(ProjectionStatus {
            name: NAME,
            position: cursor.position,
            transaction_id: cursor.transaction_id,
            events,
            lag_events: if next.is_empty() { 0 } else { (head - cursor.position).max(1) },
            lag_ms: next.first().map_or(0, |e| (chrono::Utc::now() - e.recorded_at).num_milliseconds().max(0)),
            state: "running",
            last_error: None,
        })
    }

    /// Processes the log until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let wake = self.store.appended();
        let mut backoff = Duration::from_millis(100);
        loop {
            if *stop.borrow() {
                return;
            }
            let wait = match self.try_process_next().await {
                Ok(Outcome::Applied(n)) if n >= self.batch_size as usize => continue,
                Ok(Outcome::Applied(_)) => Duration::from_millis(10),
                Ok(Outcome::Idle) => Duration::from_millis(50),
                Err(e) => {
                    tracing::warn!(projection = NAME, error = %e, "product detail batch failed");
                    let wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    wait
                }
            };
            tokio::select! {
                _ = stop.changed() => {}
                _ = wake.notified() => tokio::time::sleep(Duration::from_millis(10)).await,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
