//! A token bucket per webhook source: a small one of our own (a map of buckets) rather
//! than `governor`, as the only need is "n per minute per key" with a bounded key set.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// At most this many sources are tracked; beyond it, buckets that have refilled are
/// forgotten (they would allow a full burst anyway).
const MAX_KEYS: usize = 10_000;

/// Allows `per_minute` requests per key and minute, all of them at once at most.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// A limiter allowing `per_minute` (at least 1).
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: per_minute.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key`; `false` when its bucket is empty.
    pub fn allow(&self, key: &str) -> bool {
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            return false;
        };
        if buckets.len() >= MAX_KEYS && !buckets.contains_key(key) {
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * per_second < capacity
            });
            if buckets.len() >= MAX_KEYS {
                return false;
            }
        }
        let (tokens, at) = buckets.entry(key.to_owned()).or_insert((capacity, now));
        let refilled =
            (*tokens + now.saturating_duration_since(*at).as_secs_f64() * per_second).min(capacity);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            true
        } else {
            *tokens = refilled;
            false
        }
    }

    /// How long until `key` may send again, roughly (for `Retry-After`).
    pub fn retry_after(&self) -> Duration {
        Duration::from_secs_f64(60.0 / f64::from(self.per_minute)).max(Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_source_gets_its_burst_then_its_rate() {
        let limiter = RateLimiter::new(60);
        for _ in 0..60 {
            assert!(limiter.allow("ci"));
        }
        assert!(!limiter.allow("ci"));
        assert!(limiter.allow("other"), "sources are limited separately");
        tokio::time::advance(Duration::from_millis(1100)).await;
        assert!(limiter.allow("ci"));
        assert!(!limiter.allow("ci"));
    }
}
