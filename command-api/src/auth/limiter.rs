use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts failed logins per key (tenant and e-mail) in a window; past the limit, the key is
/// refused until the window since its first failure has passed. An attempt counts as a failure
/// from the moment it starts ([`LoginLimiter::begin`]), before its password is hashed, so
/// parallel attempts cannot all pass the check before any of them is counted.
pub struct LoginLimiter {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginLimiter {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self { max_failures, window, failures: Mutex::new(HashMap::new()) }
    }

    /// Starts an attempt for `key`, counted as a failure until [`LoginLimiter::succeeded`] or
    /// [`LoginLimiter::not_checked`] says otherwise; `Err(seconds to wait)` when `key` is
    /// locked out (the attempt is then not counted).
    pub fn begin(&self, key: &str, now: Instant) -> Result<(), u64> {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() > 100_000 {
            failures.retain(|_, (_, since)| now.duration_since(*since) < self.window);
        }
        let entry = failures.entry(key.to_owned()).or_insert((0, now));
        if now.duration_since(entry.1) >= self.window {
            *entry = (0, now);
        }
        if entry.0 >= self.max_failures {
            return Err((self.window - now.duration_since(entry.1)).as_secs().max(1));
        }
        entry.0 += 1;
        Ok(())
    }

    /// The attempt proved the password: the key's count starts over.
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    /// The attempt was never checked (hashing was unavailable): it does not count.
    pub fn not_checked(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = failures.get_mut(key) {
            entry.0 = entry.0.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_locked_after_too_many_attempts_until_the_window_passes() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.begin("k", t0).is_ok());
        }
        assert_eq!(limiter.begin("k", t0 + Duration::from_secs(10)), Err(50));
        assert!(limiter.begin("other", t0).is_ok());
        assert!(limiter.begin("k", t0 + Duration::from_secs(61)).is_ok());
    }

    #[test]
    fn parallel_attempts_count_before_they_are_checked() {
        let limiter = std::sync::Arc::new(LoginLimiter::new(10, Duration::from_secs(60)));
        let t0 = Instant::now();
        let admitted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..60).map(|_| s.spawn(|| limiter.begin("k", t0).is_ok())).collect();
            handles.into_iter().map(|h| usize::from(h.join().unwrap_or(false))).sum()
        });
        assert_eq!(admitted, 10);
    }

    #[test]
    fn a_success_clears_the_count_and_an_unchecked_attempt_does_not_count() {
        let limiter = LoginLimiter::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(limiter.begin("k", t0).is_ok());
        limiter.succeeded("k");
        assert!(limiter.begin("k", t0).is_ok());
        assert!(limiter.begin("k", t0).is_ok());
        limiter.not_checked("k");
        assert!(limiter.begin("k", t0).is_ok());
        assert!(limiter.begin("k", t0).is_err());
    }
}
