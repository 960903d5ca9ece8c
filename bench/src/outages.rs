//! Outage mode (`--outage`): instead of the throughput phases, four clients send stock receipts
//! (each with its own `Idempotency-Key`, retried with it until acknowledged) while each named
//! dependency is stopped for a while and started again. For each outage it prints the time
//! from the dependency's return to the first acknowledged command and to a caught-up pipeline
//! (every reader, the relay included, at lag 0 once the load stops at that first command).
//!
//! `bench/outages.sh` provisions the servers and passes the stop and start commands.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

/// `NAME::SECONDS::STOP::START`: the dependency, how long it stays away, and the shell
/// commands that stop and start it.
#[derive(Debug, Clone)]
pub struct Outage {
    name: String,
    down: Duration,
    stop: String,
    start: String,
}

impl FromStr for Outage {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.splitn(4, "::").map(str::trim).collect();
        let [name, seconds, stop, start] = parts[..] else {
            return Err("expected NAME::SECONDS::STOP-COMMAND::START-COMMAND".into());
        };
        let seconds: u64 = seconds.parse().map_err(|e| format!("seconds: {e}"))?;
        Ok(Self { name: name.to_owned(), down: Duration::from_secs(seconds), stop: stop.to_owned(), start: start.to_owned() })
    }
}

fn sh(command: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("bash").args(["-c", command]).status()?;
    if !status.success() {
        bail!("`{command}` failed: {status}");
    }
    Ok(())
}

/// The receipts in flight: when each was acknowledged, and what else clients saw.
#[derive(Default)]
struct Load {
    stop: AtomicBool,
    acknowledged: Mutex<Vec<Instant>>,
    unavailable: AtomicU64,
    /// Answers other than 2xx or 503, and requests that failed without an answer.
    other: AtomicU64,
}

fn start_load(base: &str, token: &str, sku: &str, clients: usize) -> (Arc<Load>, Vec<tokio::task::JoinHandle<()>>) {
    let load = Arc::new(Load::default());
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
    let url = format!("{base}/api/v1/stock/{sku}/receipts");
    let workers = (0..clients)
        .map(|_| {
            let (load, client, url, token) = (Arc::clone(&load), client.clone(), url.clone(), token.to_owned());
            tokio::spawn(async move {
                while !load.stop.load(Ordering::SeqCst) {
                    let key = uuid::Uuid::new_v4().to_string();
                    // The same key until the shop acknowledges it (or the load stops).
                    while !load.stop.load(Ordering::SeqCst) {
                        let sent = client
                            .post(&url)
                            .bearer_auth(&token)
                            .header("Idempotency-Key", &key)
                            .json(&json!({"quantity": 1}))
                            .send()
                            .await;
                        match sent.map(|r| r.status()) {
                            Ok(s) if s.is_success() => {
                                load.acknowledged.lock().map(|mut a| a.push(Instant::now())).ok();
                                break;
                            }
                            Ok(s) if s == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                                load.unavailable.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {
                                load.other.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect();
    (load, workers)
}

/// Waits until every reader `/admin/projections` lists is at lag 0 and none is retrying.
async fn caught_up(base: &str, token: &str, limit: Duration) -> anyhow::Result<Instant> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let answer = client.get(format!("{base}/api/v1/admin/projections")).bearer_auth(token).send().await;
        if let Ok(r) = answer {
            if let Ok(Value::Array(readers)) = r.json::<Value>().await {
                if !readers.is_empty() && readers.iter().all(|r| r["lag_events"] == 0 && r["state"] != "retrying") {
                    return Ok(Instant::now());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the pipeline did not catch up within {limit:?}")
}

pub async fn run(base: &str, token: &str, outages: &[Outage]) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let sku = "OUTAGE-1";
    crate::published_product(&client, base, token, sku, "Outage lamp", "bench/items").await?;
    for outage in outages {
        caught_up(base, token, Duration::from_secs(120)).await.context("before the outage")?;
        let (load, workers) = start_load(base, token, sku, 4);
        tokio::time::sleep(Duration::from_secs(2)).await;
        sh(&outage.stop)?;
        tokio::time::sleep(outage.down).await;
        sh(&outage.start)?;
        let back = Instant::now();
        let deadline = back + Duration::from_secs(120);
        let first = loop {
            let first = load.acknowledged.lock().ok().and_then(|a| a.iter().copied().find(|t| *t > back));
            if let Some(first) = first {
                break first;
            }
            if Instant::now() > deadline {
                bail!("{}: no command succeeded within 120 s of its return", outage.name);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        load.stop.store(true, Ordering::SeqCst);
        for worker in workers {
            worker.await?;
        }
        let settled =
            caught_up(base, token, Duration::from_secs(300)).await.with_context(|| format!("after the {} outage", outage.name))?;
        let acknowledged = load.acknowledged.lock().map(|a| a.len()).unwrap_or_default();
        println!(
            "{:<10} away {:>3} s: first command {:>8.2?} after its return, pipeline caught up {:>8.2?} after ({acknowledged} acknowledged, {} answered 503, {} other failures)",
            outage.name,
            outage.down.as_secs(),
            first - back,
            settled - back,
            load.unavailable.load(Ordering::Relaxed),
            load.other.load(Ordering::Relaxed),
        );
    }
    Ok(())
}
