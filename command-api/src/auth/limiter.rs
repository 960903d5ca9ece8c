use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts failed logins per key (tenant and e-mail) in a sliding window; past the limit, the
/// key is refused until the window since its first failure has passed.
pub struct LoginLimiter {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginLimiter {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self { max_failures, window, failures: Mutex::new(HashMap::new()) }
    }

    /// `Err(seconds to wait)` when `key` is locked out.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), u64> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match failures.get(key) {
            Some((n, since)) if *n >= self.max_failures && now.duration_since(*since) < self.window => {
                Err((self.window - now.duration_since(*since)).as_secs().max(1))
            }
            _ => Ok(()),
        }
    }

    pub fn record_failure(&self, key: &str, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() > 100_000 {
            failures.retain(|_, (_, since)| now.duration_since(*since) < self.window);
        }
        let entry = failures.entry(key.to_owned()).or_insert((0, now));
        if now.duration_since(entry.1) >= self.window {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    pub fn record_success(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_locked_after_too_many_failures_until_the_window_passes() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check("k", t0).is_ok());
            limiter.record_failure("k", t0);
        }
        assert_eq!(limiter.check("k", t0 + Duration::from_secs(10)), Err(50));
        assert!(limiter.check("other", t0).is_ok());
        assert!(limiter.check("k", t0 + Duration::from_secs(61)).is_ok());
    }

    #[test]
    fn a_success_clears_the_count() {
        let limiter = LoginLimiter::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        limiter.record_failure("k", t0);
        limiter.record_success("k");
        limiter.record_failure("k", t0);
        assert!(limiter.check("k", t0).is_ok());
    }
}
