//! Token-bucket rate limiting, per key (an account, an IP address, an account's messages).
//!
//! Buckets live in memory; a bucket that has been full for a while is dropped on the next sweep,
//! so memory is bounded by the number of recently active keys.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// A set of token buckets with one rate.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// A limiter allowing `per_second` sustained, `burst` at once.
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// A limiter allowing `per_minute` sustained, `burst` at once.
    pub fn per_minute(per_minute: u32, burst: u32) -> Self {
        Self {
            per_second: f64::from(per_minute.max(1)) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The most tokens one key can hold.
    pub fn burst(&self) -> usize {
        // A configured count, far below usize::MAX.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let burst = self.burst as usize;
        burst
    }

    /// Gives back a token taken for `key` (an attempt that turned out not to count).
    pub fn refund(&self, key: &str) {
        self.give_back(key, 1);
    }

    /// Gives back `count` tokens taken for `key`.
    pub fn give_back(&self, key: &str, count: usize) {
        #[allow(clippy::cast_precision_loss)]
        let count = count as f64;
        if let Ok(mut buckets) = self.buckets.lock()
            && let Some(bucket) = buckets.get_mut(key)
        {
            bucket.tokens = (bucket.tokens + count).min(self.burst);
        }
    }

    /// Takes one token for `key`: `Ok` if allowed, `Err(retry_after_ms)` if not.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        self.take(key, 1)
    }

    /// Takes `count` tokens for `key`, all or none: `Ok` if allowed, `Err(retry_after_ms)` if
    /// not (never, when `count` exceeds the burst: `u64::MAX`).
    pub fn take(&self, key: &str, count: usize) -> Result<(), u64> {
        // Counts are small (at most a few hundred); the conversion is exact.
        #[allow(clippy::cast_precision_loss)]
        let count = count as f64;
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else { return Ok(()) };
        if buckets.len() > 100_000 {
            let full_after = self.burst / self.per_second;
            buckets
                .retain(|_, bucket| now.duration_since(bucket.updated).as_secs_f64() < full_after);
        }
        let bucket =
            buckets.entry(key.to_owned()).or_insert(Bucket { tokens: self.burst, updated: now });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= count {
            bucket.tokens -= count;
            Ok(())
        } else if count > self.burst {
            Err(u64::MAX)
        } else {
            let wait = (count - bucket.tokens) / self.per_second;
            // Truncation is fine: the value is a small positive number of milliseconds.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Err((wait * 1000.0).ceil() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_burst_then_refuses_with_a_delay() {
        let limiter = RateLimiter::new(1, 3);
        for _ in 0..3 {
            assert_eq!(limiter.check("a"), Ok(()));
        }
        let retry = limiter.check("a").unwrap_err();
        assert!((1..=1000).contains(&retry), "{retry}");
        assert_eq!(limiter.check("b"), Ok(()));
    }

    #[test]
    fn takes_several_tokens_all_or_none() {
        let limiter = RateLimiter::per_minute(1, 5);
        assert_eq!(limiter.take("a", 3), Ok(()));
        assert!(limiter.take("a", 3).is_err());
        assert_eq!(limiter.take("a", 2), Ok(()));
        limiter.give_back("a", 2);
        assert_eq!(limiter.take("a", 2), Ok(()));
        assert_eq!(limiter.take("b", 6), Err(u64::MAX));
    }
}
