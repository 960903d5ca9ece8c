//! An example consumer of the shop's topic contract (worker-kit/contract): mirrors each SKU's
//! stock level (on hand, available) into a warehouse system over HTTP, as an integrator would.
//!
//! The rules every consumer of the contract follows:
//! - each message is validated against its type's schema from the AsyncAPI document; one that
//!   does not match stops the consumer (better stopped than wrong);
//! - messages are de-duplicated by the envelope's `id` (delivery is at least once), and an
//!   aggregate's events are applied in `sequence` order (Kafka keeps them in order per key);
//! - the offset of a message is committed only after the consumer's own writes: the warehouse
//!   has the level (`PUT <warehouse>/levels/<tenant>/<sku>`, retried until it answers 2xx) and
//!   the state file (seen ids, sequences, levels) is replaced. Killed at any point, it resumes
//!   from its last commit and skips what it had already done.
//!
//! Usage: `stock-mirror --brokers HOST:PORT --contract asyncapi.json --warehouse http://HOST:PORT
//! --state state.json [--prefix shop] [--group stock-mirror] [--pace-ms N]`

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::ClientConfig;
use serde_json::{json, Value};

struct Args {
    brokers: String,
    contract: PathBuf,
    warehouse: String,
    state: PathBuf,
    prefix: String,
    group: String,
    pace: Duration,
}

fn args() -> anyhow::Result<Args> {
    let mut given: HashMap<String, String> = HashMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let name = flag.strip_prefix("--").with_context(|| format!("unexpected argument {flag}"))?.to_owned();
        let value = it.next().with_context(|| format!("--{name} needs a value"))?;
        given.insert(name, value);
    }
    let mut take = |name: &str| given.remove(name);
    let required = |v: Option<String>, name: &str| v.with_context(|| format!("--{name} is required"));
    Ok(Args {
        brokers: required(take("brokers"), "brokers")?,
        contract: required(take("contract"), "contract")?.into(),
        warehouse: required(take("warehouse"), "warehouse")?.trim_end_matches('/').to_owned(),
        state: required(take("state"), "state")?.into(),
        prefix: take("prefix").unwrap_or_else(|| "shop".into()),
        group: take("group").unwrap_or_else(|| "stock-mirror".into()),
        pace: Duration::from_millis(take("pace-ms").map(|v| v.parse()).transpose()?.unwrap_or(0)),
    })
}

/// What the mirror has done, kept across restarts.
#[derive(Default)]
struct State {
    seen: BTreeSet<String>,
    /// The last sequence applied per `<tenant>/<sku>`.
    sequences: BTreeMap<String, i64>,
    /// (on hand, available) per `<tenant>/<sku>`.
    levels: BTreeMap<String, (i64, i64)>,
}

impl State {
    fn load(path: &Path) -> anyhow::Result<Self> {
        let Ok(text) = std::fs::read_to_string(path) else { return Ok(Self::default()) };
        let v: Value = serde_json::from_str(&text).context("state file")?;
        let seen = v["seen"].as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_owned)).collect();
        let sequences = v["sequences"].as_object().into_iter().flatten().map(|(k, s)| (k.clone(), s.as_i64().unwrap_or(0))).collect();
        let levels = v["levels"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, l)| (k.clone(), (l[0].as_i64().unwrap_or(0), l[1].as_i64().unwrap_or(0))))
            .collect();
        Ok(Self { seen, sequences, levels })
    }

    /// Replaces the state file atomically (a temporary file, synced, renamed over it).
    fn save(&self, path: &Path) -> anyhow::Result<()> {
        let levels: serde_json::Map<String, Value> = self.levels.iter().map(|(k, (h, a))| (k.clone(), json!([h, a]))).collect();
        let text = json!({"seen": self.seen, "sequences": self.sequences, "levels": levels}).to_string();
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

/// A validator per message type, from the AsyncAPI document's message payloads.
fn validators(contract: &Path) -> anyhow::Result<HashMap<String, jsonschema::Validator>> {
    let document: Value = serde_json::from_str(&std::fs::read_to_string(contract).context("the contract")?)?;
    let mut out = HashMap::new();
    for (name, message) in document["components"]["messages"].as_object().context("messages")? {
        let mut schema = message["payload"].clone();
        schema["components"] = json!({"schemas": document["components"]["schemas"].clone()});
        let validator = jsonschema::validator_for(&schema).map_err(|e| anyhow::anyhow!("schema of {name}: {e}"))?;
        out.insert(name.clone(), validator);
    }
    Ok(out)
}

/// PUTs the level until the warehouse takes it.
async fn put_level(http: &reqwest::Client, url: &str, on_hand: i64, available: i64) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match http.put(url).json(&json!({"on_hand": on_hand, "available": available})).send().await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => eprintln!("stock-mirror: the warehouse answered {} for {url}; trying again", r.status()),
            Err(e) => eprintln!("stock-mirror: the warehouse is unreachable ({e}); trying again"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let checks = validators(&args.contract)?;
    let mut state = State::load(&args.state)?;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("group.id", &args.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        // Small fetches: some brokers (tansu) answer large ones too slowly for the client.
        .set("max.partition.fetch.bytes", "262144")
        // A member that died (kill -9) is given up after 6 s, so its partitions move on.
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "2000")
        .create()?;
    consumer.subscribe(&[&format!("{}.stock.v1", args.prefix)])?;
    let http = reqwest::Client::new();
    loop {
        let m = consumer.recv().await?;
        let envelope: Value = serde_json::from_slice(m.payload().unwrap_or_default()).context("a message that is not JSON")?;
        let id = envelope["id"].as_str().unwrap_or_default().to_owned();
        let kind = envelope["type"].as_str().unwrap_or_default();
        let Some(check) = checks.get(kind) else { bail!("message {id}: type {kind:?} is not in the contract") };
        if let Some(error) = check.iter_errors(&envelope).next() {
            bail!("message {id} ({kind}) breaks the contract: {error}");
        }
        let key = format!("{}/{}", envelope["tenant"].as_str().unwrap_or_default(), envelope["aggregate_id"].as_str().unwrap_or_default());
        let sequence = envelope["sequence"].as_i64().unwrap_or(0);
        let fresh = !state.seen.contains(&id) && sequence > state.sequences.get(&key).copied().unwrap_or(0);
        if fresh {
            let data = &envelope["data"];
            let (on_hand, _) = state.levels.get(&key).copied().unwrap_or((0, 0));
            let on_hand = data["on_hand"].as_i64().unwrap_or(on_hand);
            let available = data["available"].as_i64().context("every stock event carries available")?;
            put_level(&http, &format!("{}/levels/{key}", args.warehouse), on_hand, available).await;
            state.levels.insert(key.clone(), (on_hand, available));
            state.sequences.insert(key, sequence);
        }
        state.seen.insert(id);
        state.save(&args.state)?;
        consumer.commit_message(&m, CommitMode::Sync)?;
        if !args.pace.is_zero() {
            tokio::time::sleep(args.pace).await;
        }
    }
}
