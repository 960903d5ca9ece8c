//! Token buckets per client address and overall, for the routes an attacker hammers (login,
//! registration, refresh, password reset). The client address is the socket's peer, unless
//! that peer is a trusted proxy (`SHOP_TRUSTED_PROXIES`): then the nearest address in
//! `X-Forwarded-For` that is not a trusted proxy. An address the client wrote itself is never
//! believed, or every request could claim a fresh address.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::{ApiError, ErrorCode};

/// A network: an address and a prefix length (`10.0.0.0/8`, `::1/128`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Network {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = s.trim().split_once('/').map_or((s.trim(), None), |(a, p)| (a, Some(p)));
        let addr: IpAddr = addr.parse().map_err(|_| format!("{s:?} is not an address or a network"))?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("{s:?}: the prefix must be 0-{max}"))?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) are the IPv4 address they carry.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address: the peer, or through trusted proxies the nearest untrusted address
/// they forwarded for.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[Network]) -> IpAddr {
    let peer = canonical(peer);
    if !trusted.iter().any(|n| n.contains(peer)) {
        return peer;
    }
    let hops: Vec<IpAddr> = forwarded_for.unwrap_or("").split(',').filter_map(|h| h.trim().parse().ok()).map(canonical).collect();
    hops.iter().rev().find(|ip| !trusted.iter().any(|n| n.contains(**ip))).or(hops.first()).copied().unwrap_or(peer)
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Refills `per_minute` tokens a minute up to `per_minute`; each request takes one.
fn take(bucket: &mut Bucket, per_minute: u32, now: Instant) -> Result<(), u64> {
    let capacity = f64::from(per_minute.max(1));
    let rate = capacity / 60.0;
    bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(capacity);
    bucket.at = now;
    if bucket.tokens >= 1.0 {
        bucket.tokens -= 1.0;
        Ok(())
    } else {
        Err(((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64)
    }
}

/// The limits and their buckets; one per process, shared by the limited routes.
pub struct RateLimits {
    per_client_per_minute: u32,
    total_per_minute: u32,
    trusted_proxies: Vec<Network>,
    buckets: Mutex<Buckets>,
}

struct Buckets {
    /// (route, client) → bucket.
    clients: HashMap<(String, IpAddr), Bucket>,
    /// route → bucket.
    total: HashMap<String, Bucket>,
}

impl RateLimits {
    pub fn new(per_client_per_minute: u32, total_per_minute: u32, trusted_proxies: Vec<Network>) -> Arc<Self> {
        Arc::new(Self {
            per_client_per_minute,
            total_per_minute,
            trusted_proxies,
            buckets: Mutex::new(Buckets { clients: HashMap::new(), total: HashMap::new() }),
        })
    }

    /// Takes a token for `client` on `route`; `Err(seconds to wait)` when its bucket or the
    /// route's overall bucket is empty.
    pub fn take(&self, route: &str, client: IpAddr, now: Instant) -> Result<(), u64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.clients.len() > 100_000 {
            // Buckets idle for a minute are full again: forgetting them changes nothing.
            buckets.clients.retain(|_, b| now.duration_since(b.at).as_secs() < 60);
        }
        let full = |n: u32| Bucket { tokens: f64::from(n.max(1)), at: now };
        let total = buckets.total.entry(route.to_owned()).or_insert_with(|| full(self.total_per_minute));
        let mut total_after = *total;
        take(&mut total_after, self.total_per_minute, now)?;
        let client_bucket = buckets.clients.entry((route.to_owned(), client)).or_insert_with(|| full(self.per_client_per_minute));
        take(client_bucket, self.per_client_per_minute, now)?;
        buckets.total.insert(route.to_owned(), total_after);
        Ok(())
    }
}

/// The middleware: 429 `rate_limited` with `Retry-After` once a bucket is empty.
pub async fn limit(State(limits): State<Arc<RateLimits>>, req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let forwarded = req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok());
    let client = client_ip(peer, forwarded, &limits.trusted_proxies);
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    match limits.take(&route, client, Instant::now()) {
        Ok(()) => next.run(req).await,
        Err(secs) => {
            tracing::info!(route = %route, client = %client, "rate limited");
            ApiError::new(ErrorCode::RateLimited, "too many requests from this address; wait and retry").retry_after(secs).into_response()
        }
    }
}

/// [`limit`] for anonymous requests only: a request with a bearer token is the signed-in
/// user's, checked by its extractor, and bounded by what the route lets one user do (a
/// customer has one open cart).
pub async fn limit_anonymous(state: State<Arc<RateLimits>>, req: Request, next: Next) -> Response {
    if req.headers().contains_key(axum::http::header::AUTHORIZATION) {
        return next.run(req).await;
    }
    limit(state, req, next).await
}

/// Documents the 429 on every operation of the routes the middleware serves.
pub fn document(mut item: aide::transform::TransformPathItem<'_>) -> aide::transform::TransformPathItem<'_> {
    use crate::Problems as _;
    let inner = item.inner_mut();
    for op in [&mut inner.get, &mut inner.post, &mut inner.put, &mut inner.patch, &mut inner.delete].into_iter().flatten() {
        let _ = aide::transform::TransformOperation::new(op).problems(&[ErrorCode::RateLimited]);
    }
    item
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn forwarded_addresses_count_only_through_trusted_proxies() {
        let trusted: Vec<Network> = vec!["10.0.0.0/8".parse().expect("net"), "::1".parse().expect("net")];
        assert_eq!(client_ip(ip("203.0.113.9"), Some("1.2.3.4"), &trusted), ip("203.0.113.9"), "untrusted peer: header ignored");
        assert_eq!(client_ip(ip("10.1.2.3"), Some("1.2.3.4, 198.51.100.7"), &trusted), ip("198.51.100.7"));
        assert_eq!(client_ip(ip("10.1.2.3"), Some("1.2.3.4, 198.51.100.7, 10.9.9.9"), &trusted), ip("198.51.100.7"));
        assert_eq!(client_ip(ip("::ffff:10.1.2.3"), Some("198.51.100.7"), &trusted), ip("198.51.100.7"), "mapped IPv4");
        assert_eq!(client_ip(ip("10.1.2.3"), None, &trusted), ip("10.1.2.3"));
        assert!("10.0.0.0/33".parse::<Network>().is_err());
    }

    #[test]
    fn a_client_bucket_empties_and_refills_and_the_total_holds_for_everyone() {
        let limits = RateLimits::new(3, 5, Vec::new());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limits.take("/login", ip("1.1.1.1"), t0).is_ok());
        }
        assert_eq!(limits.take("/login", ip("1.1.1.1"), t0), Err(20));
        assert!(limits.take("/register", ip("1.1.1.1"), t0).is_ok(), "routes have their own buckets");
        assert!(limits.take("/login", ip("2.2.2.2"), t0).is_ok());
        assert!(limits.take("/login", ip("3.3.3.3"), t0).is_ok());
        assert!(limits.take("/login", ip("4.4.4.4"), t0).is_err(), "5 a minute in all");
        let later = t0 + Duration::from_secs(30);
        assert!(limits.take("/login", ip("1.1.1.1"), later).is_ok(), "refilled");
    }
}
