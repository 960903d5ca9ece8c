//! Command benchmark: N concurrent HTTP clients drive a realistic catalogue-management mix
//! against a real `shop` on PostgreSQL, and pgbench measures the one-event append rate of the
//! same database at the same concurrency in the same run, as the baseline.
//!
//! `cargo build --release -p shop -p bench && target/release/bench --clients 32 --seconds 20`
//!
//! Orders: each client is a customer who places an order and waits until the query API shows
//! it confirmed and invoiced (orders/s, p50/p99 from POST to visible confirmation); then 1,000
//! orders race for one SKU with 100 units (time until all are settled; exactly 100 confirmed).
//! Clients follow each order's live event stream, as a storefront does (`--await-orders poll`
//! asks for the order every 5 ms instead).
//!
//! Shopping: each client opens a cart, adds three lines, applies a discount code and checks
//! out, again and again (flows/s; the checkout's own p50/p99).
//!
//! With `--kafka 127.0.0.1:9092` (and a `shop` built with `--features kafka`) the shop also
//! runs its relay, and the relay's lag is reported beside the projections'.
//!
//! With `--outage` (see `bench/outages.sh`) it measures recovery from outages instead.

mod outages;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};

#[derive(Debug, Parser)]
#[command(about = "shop command throughput against pgbench's one-event append rate")]
struct Args {
    /// Concurrent clients (and pgbench clients).
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds per measured phase.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Products (and stock SKUs) the mix spreads over.
    #[arg(long, default_value_t = 500)]
    products: usize,
    /// SKUs of the hot-aggregate phase.
    #[arg(long, default_value_t = 4)]
    hot: usize,
    /// PostgreSQL server; a fresh database is created on it.
    #[arg(long, default_value = "postgres://postgres:postgres@127.0.0.1:5432/postgres")]
    admin_url: String,
    /// Kafka brokers: also run the relay and report its lag (needs a shop built with the
    /// `kafka` feature).
    #[arg(long)]
    kafka: Option<String>,
    /// Run the relay against librdkafka's mock cluster, started inside the bench (its topics
    /// created beforehand): the relay's own cost, without a broker's (needs a shop built with
    /// the `kafka` feature).
    #[arg(long, conflicts_with = "kafka")]
    kafka_mock: bool,
    /// Redis for the shop (`REDIS_URL`): product documents are kept there.
    #[arg(long)]
    redis: Option<String>,
    /// Outage mode, repeatable: `NAME::SECONDS::STOP-COMMAND::START-COMMAND` (run by `bash -c`).
    /// Instead of the throughput phases, each dependency is stopped under load for SECONDS and
    /// started again; the time to the first acknowledged command and to a caught-up pipeline
    /// is printed (see `bench/outages.sh`).
    #[arg(long)]
    outage: Vec<outages::Outage>,
    /// The shop binary to start.
    #[arg(long, default_value = "target/release/shop")]
    shop_bin: PathBuf,
    /// After the orders phase, open this many live order streams (`GET /orders/{id}/events`)
    /// and measure `GET /products/{id}` again while they stay open.
    #[arg(long, default_value_t = 0)]
    idle_streams: usize,
    /// How the orders phases learn that an order settled: `live` follows the order's event
    /// stream (`GET /orders/{id}/events`), as a storefront does; `poll` asks for the order every
    /// 5 ms (the bench's way until session 15: the polls themselves then load the shop).
    #[arg(long, value_enum, default_value_t = AwaitOrders::Live)]
    await_orders: AwaitOrders,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AwaitOrders {
    Live,
    Poll,
}

/// Live order streams the hot-SKU phase keeps open at once.
const HOT_STREAMS: usize = 64;

/// For each order followed live: from its `invoiced` event's time (when the invoicing
/// transaction began) until the client read the entry.
static INVOICE_SEEN_AFTER: std::sync::Mutex<Vec<Duration>> = std::sync::Mutex::new(Vec::new());

struct Shop {
    child: Child,
    base: String,
}

impl Drop for Shop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn psql(admin_url: &str, sql: &str) -> anyhow::Result<()> {
    let status = Command::new("psql").arg(admin_url).args(["-qAt", "-v", "ON_ERROR_STOP=1", "-c", sql]).status()?;
    if !status.success() {
        bail!("psql failed: {sql}");
    }
    Ok(())
}

fn db_url(admin_url: &str, db: &str) -> String {
    let base = admin_url.rsplit_once('/').map_or(admin_url, |(b, _)| b);
    format!("{base}/{db}")
}

/// Where the shop's warnings go: the terminal, or in outage mode (where they are expected by
/// the hundred) a file beside its data.
fn shop_log(args: &Args, dir: &std::path::Path) -> anyhow::Result<Stdio> {
    if args.outage.is_empty() {
        return Ok(Stdio::inherit());
    }
    std::fs::create_dir_all(dir)?;
    let path = dir.join("shop.log");
    println!("shop log: {}", path.display());
    Ok(std::fs::File::create(path)?.into())
}

async fn start_shop(args: &Args, database_url: &str) -> anyhow::Result<Shop> {
    start_role(args, database_url, "serve").await
}

/// Starts `shop <role>` on the database and waits until it is ready.
async fn start_role(args: &Args, database_url: &str, role: &str) -> anyhow::Result<Shop> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let dir = std::env::temp_dir().join(format!("shop-bench-{port}"));
    let mut command = Command::new(&args.shop_bin);
    if let Some(redis) = &args.redis {
        command.env("REDIS_URL", redis);
    }
    if let Some(brokers) = &args.kafka {
        command.env("KAFKA_BROKERS", brokers).env("SHOP_KAFKA_TOPIC_PREFIX", format!("bench{}", std::process::id()));
    }
    let child = command
        .arg(role)
        .env("DATABASE_URL", database_url)
        .env("SHOP_JWT_SECRET", "bench-secret-bench-secret-bench-secret!")
        .env("SHOP_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("SHOP_DATA_DIR", &dir)
        .env("SHOP_DB_POOL_SIZE", args.clients.to_string())
        // The bench logs many customers in from one address; the limits are not what it measures.
        .env("SHOP_AUTH_RATE_PER_CLIENT", "1000000")
        .env("SHOP_LIVE_STREAMS_PER_USER", "1000")
        .env("SHOP_LIVE_STREAMS_MAX", (args.idle_streams + args.clients + HOT_STREAMS + 100).to_string())
        .env("SHOP_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(shop_log(args, &dir)?)
        .spawn()
        .with_context(|| format!("failed to start {}", args.shop_bin.display()))?;
    let shop = Shop { child, base: format!("http://127.0.0.1:{port}") };
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client.get(format!("{}/ready", shop.base)).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(shop);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("shop did not become ready")
}

async fn admin_token(args: &Args, database_url: &str, shop: &Shop) -> anyhow::Result<String> {
    use std::io::Write;
    let mut create = Command::new(&args.shop_bin)
        .args(["user", "create", "--email", "bench@example.com", "--role", "admin"])
        .env("DATABASE_URL", database_url)
        .env("SHOP_JWT_SECRET", "bench-secret-bench-secret-bench-secret!")
        .env("SHOP_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    create.stdin.take().context("stdin")?.write_all(b"bench password\n")?;
    if !create.wait()?.success() {
        bail!("shop user create failed");
    }
    let login: Value = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", shop.base))
        .json(&json!({"email": "bench@example.com", "password": "bench password"}))
        .send()
        .await?
        .json()
        .await?;
    login["access_token"].as_str().map(str::to_owned).context("no access token")
}

/// One command of the mix: method, path, body.
fn pick(n: u64, products: &[String], skus: &[String], i: usize) -> (reqwest::Method, String, Value) {
    let p = &products[i % products.len()];
    let s = &skus[i % skus.len()];
    match n % 20 {
        0..=9 => (reqwest::Method::POST, format!("/api/v1/stock/{s}/receipts"), json!({"quantity": 1 + n % 5})),
        10..=12 => (reqwest::Method::POST, format!("/api/v1/stock/{s}/adjustments"), json!({"quantity_delta": 1, "reason": "cycle count"})),
        13..=16 => (reqwest::Method::PUT, format!("/api/v1/products/{p}/price"), json!({"amount": 1000 + n % 9000, "currency": "EUR"})),
        17..=18 => (reqwest::Method::PATCH, format!("/api/v1/products/{p}"), json!({"description": format!("revision {n}")})),
        _ => (
            reqwest::Method::POST,
            "/api/v1/products".to_owned(),
            json!({"sku": format!("NEW-{}", uuid::Uuid::new_v4().simple()), "name": "New", "category": "bench/new", "price": {"amount": 100, "currency": "EUR"}}),
        ),
    }
}

struct PhaseResult {
    ok: u64,
    failed: u64,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

/// Runs `clients` workers for `seconds`; worker `w` runs `op(client, w, n)` for its `n`-th
/// operation. Operations that answer true are timed; the others count as failed.
async fn run_workers<F, Fut>(clients: usize, seconds: u64, op: F) -> PhaseResult
where
    F: Fn(reqwest::Client, usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let client = reqwest::Client::builder().pool_max_idle_per_host(clients).build().unwrap_or_default();
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|w| {
            let (client, stop, counter, op) = (client.clone(), Arc::clone(&stop), Arc::clone(&counter), Arc::clone(&op));
            tokio::spawn(async move {
                let (mut ok, mut failed, mut latencies) = (0u64, 0u64, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    if op(client.clone(), w, n).await {
                        ok += 1;
                        latencies.push(t.elapsed());
                    } else {
                        failed += 1;
                    }
                }
                (ok, failed, latencies)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut result = PhaseResult { ok: 0, failed: 0, latencies: Vec::new(), elapsed: Duration::ZERO };
    for w in workers {
        if let Ok((ok, failed, lat)) = w.await {
            result.ok += ok;
            result.failed += failed;
            result.latencies.extend(lat);
        }
    }
    result.elapsed = start.elapsed();
    result.latencies.sort();
    result
}

/// [`run_workers`] with one HTTP request per operation; a 2xx answer is a success.
async fn run_clients<F>(clients: usize, seconds: u64, request: F) -> PhaseResult
where
    F: Fn(&reqwest::Client, usize, u64) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    run_workers(clients, seconds, move |client, w, n| {
        let sent = request(&client, w, n).send();
        async move {
            match sent.await {
                Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                _ => false,
            }
        }
    })
    .await
}

/// The command mix (see [`pick`]) as the admin.
async fn drive(base: &str, token: &str, clients: usize, seconds: u64, products: Arc<Vec<String>>, skus: Arc<Vec<String>>) -> PhaseResult {
    let (base, token) = (base.to_owned(), token.to_owned());
    run_clients(clients, seconds, move |client, w, n| {
        let i = (w * 7919).wrapping_add(n as usize * 31 + 17);
        let (method, path, body) = pick(n, &products, &skus, i);
        client.request(method, format!("{base}{path}")).bearer_auth(&token).json(&body)
    })
    .await
}

/// Anonymous reads of published product details.
async fn read_products(base: &str, clients: usize, seconds: u64, products: Arc<Vec<String>>) -> PhaseResult {
    let base = base.to_owned();
    run_clients(clients, seconds, move |client, w, n| {
        let id = &products[(w + n as usize * 7) % products.len()];
        client.get(format!("{base}/api/v1/products/{id}"))
    })
    .await
}

/// Samples `/admin/projections` every 20 ms for `duration`: each reader's `lag_ms` (age of the
/// oldest event it has not yet processed) at each instant, by name.
async fn sample_lag(base: String, token: String, duration: Duration) -> HashMap<String, Vec<Duration>> {
    let client = reqwest::Client::new();
    let end = Instant::now() + duration;
    let mut lags: HashMap<String, Vec<Duration>> = HashMap::new();
    while Instant::now() < end {
        let status = client.get(format!("{base}/api/v1/admin/projections")).bearer_auth(&token).send().await;
        if let Ok(r) = status {
            if let Ok(Value::Array(readers)) = r.json::<Value>().await {
                for p in readers {
                    if let (Some(name), Some(lag)) = (p["name"].as_str(), p["lag_ms"].as_u64()) {
                        lags.entry(name.to_owned()).or_default().push(Duration::from_millis(lag));
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lags
}

/// Waits (up to `limit`) until every reader on `/admin/projections` shows a lag of 0; how long
/// that took.
async fn caught_up(base: &str, token: &str, limit: Duration) -> Duration {
    let client = reqwest::Client::new();
    let start = Instant::now();
    while start.elapsed() < limit {
        let status = client.get(format!("{base}/api/v1/admin/projections")).bearer_auth(token).send().await;
        if let Ok(Value::Array(readers)) = match status {
            Ok(r) => r.json::<Value>().await.map_err(|_| ()),
            Err(_) => Err(()),
        } {
            if !readers.is_empty() && readers.iter().all(|p| p["lag_ms"].as_i64() == Some(0)) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// Full-text searches: whole words, a typo, and a prefix, over the products' names.
async fn search_products(base: &str, clients: usize, seconds: u64, products: usize) -> PhaseResult {
    let base = base.to_owned();
    run_clients(clients, seconds, move |client, w, n| {
        let i = (w * 7919 + n as usize * 31) % products.max(1);
        let q = match n % 3 {
            0 => format!("product {i}"),
            1 => format!("prodcut {i}"),
            _ => "prod".to_owned(),
        };
        client.get(format!("{base}/api/v1/products/search")).query(&[("q", q.as_str()), ("limit", "10")]).header("x-tenant", "default")
    })
    .await
}

/// Requests sent at a fixed `rate` for `seconds` whatever the answers (open loop): each
/// latency runs from the request's scheduled send time, so time spent queueing counts.
async fn open_loop<F>(rate: u64, seconds: u64, request: F) -> PhaseResult
where
    F: Fn(&reqwest::Client, u64) -> reqwest::RequestBuilder,
{
    let client = reqwest::Client::builder().pool_max_idle_per_host(512).build().unwrap_or_default();
    let start = Instant::now();
    let total = rate.max(1) * seconds;
    let mut answers = Vec::with_capacity(total as usize);
    for n in 0..total {
        let due = start + Duration::from_secs_f64(n as f64 / rate.max(1) as f64);
        tokio::time::sleep_until(due.into()).await;
        let sent = request(&client, n).send();
        answers.push(tokio::spawn(async move {
            match sent.await {
                Ok(r) if r.status().is_success() => r.bytes().await.ok().map(|_| due.elapsed()),
                _ => None,
            }
        }));
    }
    let mut result = PhaseResult { ok: 0, failed: 0, latencies: Vec::with_capacity(answers.len()), elapsed: Duration::ZERO };
    for a in answers {
        match a.await {
            Ok(Some(latency)) => {
                result.ok += 1;
                result.latencies.push(latency);
            }
            _ => result.failed += 1,
        }
    }
    result.elapsed = start.elapsed();
    result.latencies.sort();
    result
}

/// The sum of one counter over every series in `base`'s `/metrics`.
async fn counter(client: &reqwest::Client, base: &str, name: &str) -> f64 {
    let Ok(text) = client.get(format!("{base}/metrics")).send().await.and_then(|r| r.error_for_status()) else { return 0.0 };
    let Ok(text) = text.text().await else { return 0.0 };
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// Two `shop command-api` processes on the one database, half the clients each, the mix on
/// `hot` products: the conflicts between processes are real here.
async fn two_command_apis(
    args: &Args,
    database_url: &str,
    token: &str,
    products: &[String],
    skus: &[String],
    hot: usize,
) -> anyhow::Result<()> {
    let apis = [start_role(args, database_url, "command-api").await?, start_role(args, database_url, "command-api").await?];
    let bases: Arc<Vec<String>> = Arc::new(apis.iter().map(|a| a.base.clone()).collect());
    let client = reqwest::Client::new();
    let conflicts = |bases: Arc<Vec<String>>| {
        let client = client.clone();
        async move {
            let mut sum = 0.0;
            for b in bases.iter() {
                sum += counter(&client, b, "shop_append_conflicts_total").await;
            }
            sum
        }
    };
    let before = conflicts(Arc::clone(&bases)).await;
    let (hot_products, hot_skus) = (Arc::new(products[..hot].to_vec()), Arc::new(skus[..hot].to_vec()));
    let (b, token) = (Arc::clone(&bases), token.to_owned());
    let clients = args.clients * 2;
    let r = run_clients(clients, args.seconds, move |client, w, n| {
        let i = (w * 7919).wrapping_add(n as usize * 31 + 17);
        let (method, path, body) = pick(n, &hot_products, &hot_skus, i);
        client.request(method, format!("{}{path}", b[w % b.len()])).bearer_auth(&token).json(&body)
    })
    .await;
    let after = conflicts(bases).await;
    report(&format!("2 command APIs, {hot} hot"), &r);
    println!(
        "{:<22} {:>9.0} conflicts/s between processes; slowest success {:.0} ms; {clients} clients",
        "",
        (after - before) / r.elapsed.as_secs_f64(),
        r.latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    );
    Ok(())
}

/// Registers and logs in customer `i`; returns the access token.
async fn customer_token(base: &str, i: usize) -> anyhow::Result<String> {
    let client = reqwest::Client::new();
    let email = format!("customer{i}@example.com");
    let body = json!({"email": email, "password": "customer password", "name": "Customer"});
    client.post(format!("{base}/api/v1/auth/register")).json(&body).send().await?;
    let login: Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": "customer password"}))
        .send()
        .await?
        .json()
        .await?;
    login["access_token"].as_str().map(str::to_owned).context("no customer access token")
}

/// Opens `args.idle_streams` live order streams (spread over the customers, one order each)
/// and measures `GET /products/{id}` while they are open; the streams are dropped after.
async fn idle_streams(base: &str, tokens: &[String], skus: &[String], products: &[String], args: &Args) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let mut orders = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let (id, _) = place_order(&client, base, token, &skus[i % skus.len()]).await?;
        orders.push((token.clone(), id));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut streams = Vec::with_capacity(args.idle_streams);
    for i in 0..args.idle_streams {
        let (token, id) = &orders[i % orders.len()];
        let stream = client.get(format!("{base}/api/v1/orders/{id}/events")).bearer_auth(token).send().await?;
        anyhow::ensure!(stream.status().is_success(), "stream {i}: {}", stream.status());
        streams.push(stream);
    }
    println!("{} live order streams open", streams.len());
    let reads = read_products(base, args.clients, args.seconds, Arc::new(products.to_vec())).await;
    report(&format!("GET /products/{{id}} + {} streams", streams.len()), &reads);
    drop(streams);
    Ok(())
}

/// Places an order of one unit of `sku`; returns its id and position.
async fn place_order(client: &reqwest::Client, base: &str, token: &str, sku: &str) -> anyhow::Result<(String, i64)> {
    let body = json!({
        "lines": [{"sku": sku, "quantity": 1}],
        "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"},
        "payment_method": "tok_approve"
    });
    let r = client.post(format!("{base}/api/v1/orders")).bearer_auth(token).json(&body).send().await?;
    if r.status() != reqwest::StatusCode::ACCEPTED {
        bail!("order not accepted: {}", r.status());
    }
    let v: Value = r.json().await?;
    Ok((v["id"].as_str().context("order id")?.to_owned(), v["position"].as_i64().unwrap_or(0)))
}

/// Waits until the query API shows the order settled (`confirmed` with an invoice, or
/// `cancelled`) the way `how` says; returns its final status. `position` is the placing
/// command's, so the stream is opened once the order is in the read model.
async fn await_order(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    (id, position): (&str, i64),
    how: AwaitOrders,
) -> anyhow::Result<String> {
    match how {
        AwaitOrders::Live => follow_order(client, base, token, id, position).await,
        AwaitOrders::Poll => poll_order(client, base, token, id).await,
    }
}

/// Follows the order's live event stream until an entry settles it.
async fn follow_order(client: &reqwest::Client, base: &str, token: &str, id: &str, position: i64) -> anyhow::Result<String> {
    let mut r = client
        .get(format!("{base}/api/v1/orders/{id}/events"))
        .bearer_auth(token)
        .header("X-Min-Position", position.to_string())
        .timeout(Duration::from_secs(120))
        .send()
        .await?
        .error_for_status()?;
    let mut pending = String::new();
    while let Some(chunk) = r.chunk().await? {
        pending.push_str(std::str::from_utf8(&chunk).context("event stream text")?);
        while let Some(end) = pending.find("\n\n") {
            let message: String = pending.drain(..end + 2).collect();
            for data in message.lines().filter_map(|l| l.strip_prefix("data:")) {
                let entry: Value = serde_json::from_str(data.trim())?;
                match (entry["source"].as_str(), entry["event"].as_str(), entry["status"].as_str()) {
                    (Some("order"), Some("invoiced"), Some("confirmed")) => {
                        let at = entry["at"].as_str().and_then(|a| chrono::DateTime::parse_from_rfc3339(a).ok());
                        if let Some(after) = at.and_then(|at| (chrono::Utc::now() - at.with_timezone(&chrono::Utc)).to_std().ok()) {
                            INVOICE_SEEN_AFTER.lock().unwrap_or_else(|p| p.into_inner()).push(after);
                        }
                        return Ok("confirmed".into());
                    }
                    (_, event, Some("cancelled")) => {
                        let reason = entry["detail"]["reason"].as_str().or(event).unwrap_or("?");
                        return Ok(format!("cancelled:{reason}"));
                    }
                    _ => {}
                }
            }
        }
    }
    bail!("the event stream of order {id} ended before it settled")
}

/// Polls the query API until the order is settled.
async fn poll_order(client: &reqwest::Client, base: &str, token: &str, id: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let r = client.get(format!("{base}/api/v1/orders/{id}")).bearer_auth(token).send().await?;
        if r.status().is_success() {
            let v: Value = r.json().await?;
            match v["status"].as_str() {
                Some("confirmed") if !v["invoice_number"].is_null() => return Ok("confirmed".into()),
                Some("cancelled") => return Ok(format!("cancelled:{}", v["cancel_reason"].as_str().unwrap_or("?"))),
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bail!("order {id} not settled within 120 s")
}

/// Orders end to end: each client places an order and waits until the query API shows it
/// confirmed and invoiced, then places the next. Latency is POST to visible confirmation.
async fn orders_end_to_end(base: &str, tokens: Arc<Vec<String>>, skus: Arc<Vec<String>>, seconds: u64, how: AwaitOrders) -> PhaseResult {
    let base = base.to_owned();
    run_workers(tokens.len(), seconds, move |client, w, n| {
        let (base, token, sku) = (base.clone(), tokens[w].clone(), skus[(w * 7919 + n as usize * 31) % skus.len()].clone());
        async move {
            match place_order(&client, &base, &token, &sku).await {
                Ok((id, position)) => await_order(&client, &base, &token, (&id, position), how).await.is_ok_and(|s| s == "confirmed"),
                Err(_) => false,
            }
        }
    })
    .await
}

/// One shopping flow of a customer: open a cart (the current one, or a new one after a
/// checkout), add three lines, apply the code, check out. The checkout's own latency is kept
/// in `checkouts`.
async fn shopping_flow(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    skus: [&str; 3],
    checkouts: &std::sync::Mutex<Vec<Duration>>,
) -> anyhow::Result<()> {
    let cart: Value =
        client.post(format!("{base}/api/v1/carts")).bearer_auth(token).json(&json!({})).send().await?.error_for_status()?.json().await?;
    let id = cart["id"].as_str().context("cart id")?.to_owned();
    for sku in skus {
        client
            .post(format!("{base}/api/v1/carts/{id}/lines"))
            .bearer_auth(token)
            .json(&json!({"sku": sku, "quantity": 1}))
            .send()
            .await?
            .error_for_status()?;
    }
    client
        .post(format!("{base}/api/v1/carts/{id}/discount"))
        .bearer_auth(token)
        .json(&json!({"code": "BENCH"}))
        .send()
        .await?
        .error_for_status()?;
    let body = json!({
        "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"},
        "payment_method": "tok_approve"
    });
    let t = Instant::now();
    let placed = client
        .post(format!("{base}/api/v1/carts/{id}/checkout"))
        .bearer_auth(token)
        .header("idempotency-key", uuid::Uuid::new_v4().to_string())
        .json(&body)
        .send()
        .await?;
    let took = t.elapsed();
    if placed.status() != reqwest::StatusCode::ACCEPTED {
        bail!("checkout not accepted: {}", placed.status());
    }
    checkouts.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push(took);
    Ok(())
}

/// Shopping flows: each client runs [`shopping_flow`] again and again; flows/s, and the
/// checkout's p50/p99 on its own.
async fn shopping(base: &str, admin: &str, tokens: Arc<Vec<String>>, skus: Arc<Vec<String>>, seconds: u64) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    client
        .post(format!("{base}/api/v1/promotions"))
        .bearer_auth(admin)
        .json(&json!({"code": "BENCH", "kind": "percentage", "percentage_bp": 1000}))
        .send()
        .await?
        .error_for_status()?;
    let checkouts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = Arc::clone(&checkouts);
    let base = base.to_owned();
    let flows = run_workers(tokens.len(), seconds, move |client, w, n| {
        let pick = |k: usize| skus[(w * 7919 + n as usize * 31 + k * 101) % skus.len()].clone();
        let (base, token, lines, kept) = (base.clone(), tokens[w].clone(), [pick(0), pick(1), pick(2)], Arc::clone(&kept));
        async move {
            let lines = [lines[0].as_str(), lines[1].as_str(), lines[2].as_str()];
            shopping_flow(&client, &base, &token, lines, &kept).await.is_ok()
        }
    })
    .await;
    report("shopping flows", &flows);
    let mut checkouts = checkouts.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    checkouts.sort();
    println!(
        "{:<22} {:>9} checkouts    p50 {:>7.2} ms   p99 {:>7.2} ms",
        "  checkout",
        checkouts.len(),
        percentile(&checkouts, 0.50).as_secs_f64() * 1000.0,
        percentile(&checkouts, 0.99).as_secs_f64() * 1000.0
    );
    Ok(())
}

/// Creates a product priced 10.00 EUR and publishes it; its id.
async fn published_product(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    sku: &str,
    name: &str,
    category: &str,
) -> anyhow::Result<String> {
    let created: Value = client
        .post(format!("{base}/api/v1/products"))
        .bearer_auth(token)
        .json(&json!({"sku": sku, "name": name, "category": category, "price": {"amount": 1000, "currency": "EUR"}}))
        .send()
        .await?
        .json()
        .await?;
    let id = created["id"].as_str().context("product id")?.to_owned();
    client.post(format!("{base}/api/v1/products/{id}/publish")).bearer_auth(token).send().await?;
    Ok(id)
}

/// 1,000 orders of one unit each race for a SKU with 100 units: how long until every order
/// is settled, and whether exactly 100 were confirmed.
async fn hot_sku(base: &str, admin: &str, tokens: Arc<Vec<String>>, orders: usize, units: usize, how: AwaitOrders) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let sku = format!("HOT-{}", std::process::id());
    published_product(&client, base, admin, &sku, "Hot item", "bench/hot").await?;
    client.post(format!("{base}/api/v1/stock/{sku}/receipts")).bearer_auth(admin).json(&json!({"quantity": units})).send().await?;
    let start = Instant::now();
    let placing: Vec<_> = (0..orders)
        .map(|i| {
            let (client, base, token, sku) = (client.clone(), base.to_owned(), tokens[i % tokens.len()].clone(), sku.clone());
            tokio::spawn(async move { place_order(&client, &base, &token, &sku).await.map(|placed| (placed, token)) })
        })
        .collect();
    let mut placed = Vec::new();
    for p in placing {
        placed.push(p.await??);
    }
    let all_placed = start.elapsed();
    // At most HOT_STREAMS orders are followed at once; one whose turn comes after it settled
    // shows its whole timeline at once.
    let streams = Arc::new(tokio::sync::Semaphore::new(HOT_STREAMS));
    let settling: Vec<_> = placed
        .into_iter()
        .map(|((id, position), token)| {
            let (client, base, streams) = (client.clone(), base.to_owned(), Arc::clone(&streams));
            tokio::spawn(async move {
                let _turn = streams.acquire().await?;
                await_order(&client, &base, &token, (&id, position), how).await
            })
        })
        .collect();
    let mut ends: HashMap<String, usize> = HashMap::new();
    for s in settling {
        *ends.entry(s.await??).or_default() += 1;
    }
    let settled = start.elapsed();
    println!(
        "{:<22} {orders} orders for {units} units: all placed in {:.2} s, all settled in {:.2} s ({:.0} reservation attempts/s); ends {ends:?}",
        "hot SKU",
        all_placed.as_secs_f64(),
        settled.as_secs_f64(),
        orders as f64 / settled.as_secs_f64()
    );
    if ends.get("confirmed").copied() != Some(units) {
        bail!("expected exactly {units} confirmed orders, got {ends:?}");
    }
    Ok(())
}

fn print_lag(name: &str, lags: &mut [Duration]) {
    lags.sort();
    println!(
        "{name:<22} p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms   ({} samples, every 20 ms)",
        percentile(lags, 0.50).as_secs_f64() * 1000.0,
        percentile(lags, 0.99).as_secs_f64() * 1000.0,
        lags.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
        lags.len()
    );
}

/// The highest resident memory of a process since the last [`PeakRss::report`], sampled every
/// 50 ms on a thread of its own (a peak between two phases' ends would be missed otherwise).
struct PeakRss {
    pid: u32,
    peak_kib: Arc<AtomicU64>,
}

impl PeakRss {
    fn start(pid: u32) -> Self {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let peak = Arc::clone(&peak_kib);
        std::thread::spawn(move || {
            while let Some(mib) = rss_mib(pid) {
                peak.fetch_max((mib * 1024.0) as u64, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Self { pid, peak_kib }
    }

    /// Prints the peak since the last report (and the RSS now), and starts a new one.
    fn report(&self, phase: &str) {
        let peak = self.peak_kib.swap(0, Ordering::Relaxed) as f64 / 1024.0;
        let now = rss_mib(self.pid).unwrap_or(0.0);
        println!("{:<22} {peak:>9.1} MiB peak, {now:.1} MiB after (target < 150)", format!("  RSS {phase}"));
    }
}

/// Resident memory of process `pid` in MiB (Linux: `VmRSS` of `/proc/<pid>/status`).
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn report(name: &str, r: &PhaseResult) -> f64 {
    let total = r.ok + r.failed;
    let rate = r.ok as f64 / r.elapsed.as_secs_f64();
    println!(
        "{name:<22} {rate:>9.0} requests/s   p50 {:>7.2} ms   p99 {:>7.2} ms   success {:>6.2}% ({} of {})",
        percentile(&r.latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&r.latencies, 0.99).as_secs_f64() * 1000.0,
        if total == 0 { 0.0 } else { 100.0 * r.ok as f64 / total as f64 },
        r.ok,
        total
    );
    rate
}

/// pgbench with one single-row INSERT per transaction into a copy of the events table (same
/// columns, defaults and indexes) at the same concurrency.
fn pgbench(args: &Args, database_url: &str) -> anyhow::Result<f64> {
    psql(database_url, "CREATE TABLE IF NOT EXISTS pgbench_events (LIKE events INCLUDING ALL); CREATE SEQUENCE IF NOT EXISTS pgbench_seq")?;
    let script = std::env::temp_dir().join("shop-bench-append.sql");
    std::fs::write(
        &script,
        "INSERT INTO pgbench_events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('bench', 'client-' || :client_id, nextval('pgbench_seq'), 'happened', '1', '{\"quantity\": 1}', '{\"tenant\": \"default\"}');\n",
    )?;
    let out = Command::new("pgbench")
        .args(["-n", "-c", &args.clients.to_string(), "-j", "2", "-T", &args.seconds.to_string(), "-f"])
        .arg(&script)
        .arg(database_url)
        .output()
        .context("failed to run pgbench")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.trim_start_matches("tps = ").split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .with_context(|| format!("pgbench printed no tps: {text}{}", String::from_utf8_lossy(&out.stderr)))?;
    Ok(tps)
}

/// The topics `shop` publishes to (`<prefix>.<aggregate type>.v1`, the public types).
const TOPIC_TYPES: [&str; 8] = ["user", "product", "stock", "order", "payment", "cart", "promotion", "tenant_settings"];

/// Starts librdkafka's mock cluster with the shop's topics (its brokers have no admin API).
fn mock_cluster() -> anyhow::Result<rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>> {
    let mock = rdkafka::mocking::MockCluster::new(1)?;
    for t in TOPIC_TYPES {
        mock.create_topic(&format!("bench{}.{t}.v1", std::process::id()), 3, 1)?;
    }
    Ok(mock)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    let mock = if args.kafka_mock { Some(mock_cluster()?) } else { None };
    if let Some(m) = &mock {
        println!("relay to librdkafka's mock cluster at {}", m.bootstrap_servers());
        args.kafka = Some(m.bootstrap_servers());
    }
    let db = format!("shop_bench_{}", std::process::id());
    psql(&args.admin_url, &format!("CREATE DATABASE {db}"))?;
    let database_url = db_url(&args.admin_url, &db);
    let result = run(&args, &database_url).await;
    let _ = psql(&args.admin_url, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    result
}

async fn run(args: &Args, database_url: &str) -> anyhow::Result<()> {
    let shop = start_shop(args, database_url).await?;
    let rss = PeakRss::start(shop.child.id());
    let token = admin_token(args, database_url, &shop).await?;
    if !args.outage.is_empty() {
        return outages::run(&shop.base, &token, &args.outage).await;
    }
    let client = reqwest::Client::new();
    println!("setting up {} products with stock", args.products);
    let mut products = Vec::new();
    let mut skus = Vec::new();
    for i in 0..args.products {
        let sku = format!("SKU-{i}");
        let id = published_product(&client, &shop.base, &token, &sku, &format!("Product {i}"), "bench/items").await?;
        products.push(id);
        skus.push(sku);
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("clients {}  seconds {}  cores {cores}", args.clients, args.seconds);
    // The setup's events first: the lag measured during the mix is the mix's own.
    let settled = caught_up(&shop.base, &token, Duration::from_secs(60)).await;
    println!("{:<22} {:>9.2} s until every reader had applied the setup's events", "setup caught up", settled.as_secs_f64());
    let sampler = tokio::spawn(sample_lag(shop.base.clone(), token.clone(), Duration::from_secs(args.seconds)));
    let mix = drive(&shop.base, &token, args.clients, args.seconds, Arc::new(products.clone()), Arc::new(skus.clone())).await;
    let shop_rate = report("shop mix", &mix);
    rss.report("mix");
    // Every role runs in this one `shop serve` process: its resident memory after the mix.
    match rss_mib(shop.child.id()) {
        Some(mib) => println!("{:<22} {mib:>9.1} MiB (all roles, one process; target < 150)", "shop serve RSS"),
        None => println!("{:<22} unknown (no /proc)", "shop serve RSS"),
    }
    if let Ok(mut lags) = sampler.await {
        // The worst projection at each instant, then each reader on its own.
        let mut relay = lags.remove("relay").unwrap_or_default();
        let mut saga = lags.remove("order_saga").unwrap_or_default();
        let mut notifier = lags.remove("notifier").unwrap_or_default();
        let samples = lags.values().map(Vec::len).min().unwrap_or(0);
        let mut worst: Vec<Duration> = (0..samples).map(|i| lags.values().map(|l| l[i]).max().unwrap_or_default()).collect();
        print_lag("projection lag (worst)", &mut worst);
        let mut names: Vec<String> = lags.keys().cloned().collect();
        names.sort();
        for name in names {
            if let Some(l) = lags.get_mut(&name) {
                print_lag(&format!("  lag {name}"), l);
            }
        }
        if !saga.is_empty() {
            print_lag("order saga lag", &mut saga);
        }
        if !notifier.is_empty() {
            print_lag("notifier lag", &mut notifier);
        }
        if args.kafka.is_some() {
            print_lag("relay lag", &mut relay);
        }
    }
    let hot_skus: Vec<String> = skus.iter().take(args.hot).cloned().collect();
    let hot_products: Vec<String> = products.iter().take(args.hot).cloned().collect();
    let hot = drive(&shop.base, &token, args.clients, args.seconds, Arc::new(hot_products), Arc::new(hot_skus)).await;
    report(&format!("shop hot ({} aggregates)", args.hot), &hot);
    rss.report("hot");
    let reads = read_products(&shop.base, args.clients, args.seconds, Arc::new(products.clone())).await;
    report("GET /products/{id}", &reads);
    rss.report("product reads");
    let searches = search_products(&shop.base, args.clients, args.seconds, args.products).await;
    report("GET /products/search", &searches);
    rss.report("searches");
    // Open loop: a fixed rate, latency from each request's scheduled time (targets: search p99
    // 5 ms at 1,000/s, a product p99 2 ms at 5,000/s).
    let n = args.products.max(1) as u64;
    let base = shop.base.clone();
    let searches = open_loop(1_000, args.seconds, |client, i| {
        let q = match i % 3 {
            0 => format!("product {}", i % n),
            1 => format!("prodcut {}", i % n),
            _ => "prod".to_owned(),
        };
        client.get(format!("{base}/api/v1/products/search")).query(&[("q", q.as_str()), ("limit", "10")]).header("x-tenant", "default")
    })
    .await;
    report("search at 1,000/s", &searches);
    rss.report("search at 1,000/s");
    let reads =
        open_loop(5_000, args.seconds, |client, i| client.get(format!("{base}/api/v1/products/{}", products[(i % n) as usize]))).await;
    report("product at 5,000/s", &reads);
    rss.report("product at 5,000/s");
    let mut tokens = Vec::new();
    for i in 0..args.clients {
        tokens.push(customer_token(&shop.base, i).await?);
    }
    let tokens = Arc::new(tokens);
    for sku in &skus {
        client
            .post(format!("{}/api/v1/stock/{sku}/receipts", shop.base))
            .bearer_auth(&token)
            .json(&json!({"quantity": 100_000}))
            .send()
            .await?;
    }
    let orders = orders_end_to_end(&shop.base, Arc::clone(&tokens), Arc::new(skus.clone()), args.seconds, args.await_orders).await;
    report("orders end to end", &orders);
    let mut seen = std::mem::take(&mut *INVOICE_SEEN_AFTER.lock().unwrap_or_else(|p| p.into_inner()));
    if !seen.is_empty() {
        seen.sort();
        println!(
            "  invoice → client     p50 {:>7.2} ms   p99 {:>7.2} ms   (the invoicing transaction, the orders view, the live stream)",
            percentile(&seen, 0.50).as_secs_f64() * 1000.0,
            percentile(&seen, 0.99).as_secs_f64() * 1000.0
        );
    }
    rss.report("orders");
    // A shop from before carts (an old build driven for comparison) has no shopping phase.
    if let Err(e) = shopping(&shop.base, &token, Arc::clone(&tokens), Arc::new(skus.clone()), args.seconds).await {
        println!("shopping flows         skipped: {e}");
    }
    hot_sku(&shop.base, &token, Arc::clone(&tokens), 1_000, 100, args.await_orders).await?;
    if args.idle_streams > 0 {
        idle_streams(&shop.base, &tokens, &skus, &products, args).await?;
    }
    drop(shop);
    two_command_apis(args, database_url, &token, &products, &skus, 8.min(products.len())).await?;
    let tps = pgbench(args, database_url)?;
    println!("{:<22} {tps:>9.0} appends/s", "pgbench 1-event append");
    println!("ratio shop/pgbench     {:.2}", shop_rate / tps);
    Ok(())
}
