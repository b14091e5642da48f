//! Token-bucket rate limiting, per key (an account, an IP address, an account's messages).
//!
//! Buckets live in memory; a bucket that has been full for a while is dropped on the next sweep,
//! so memory is bounded by the number of recently active keys.
//!
//! [`SharedLimiter`] is the same limit shared by every node of a deployment with `[redis] url`:
//! each bucket is a Redis hash `guildhall:{server_name}:ratelimit:{limit}:{key}` (`tokens`, `updated` in
//! milliseconds of Redis' clock) changed by one Lua script, which expires once the bucket
//! would be full again. When Redis cannot be reached, the node's own bucket answers (a warning
//! once per outage): limits then hold per node, never not at all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Instant;

use crate::cluster::Cluster;

/// A limit shared by every node through Redis, or this node's own [`RateLimiter`] without it.
#[derive(Debug)]
pub struct SharedLimiter {
    local: RateLimiter,
    /// The cluster and the limit's name in its keys.
    shared: Option<(Cluster, &'static str)>,
    /// Whether the last attempt to reach Redis failed (warned about once per outage).
    failing: AtomicBool,
}

impl SharedLimiter {
    /// A limit of this node only.
    pub fn local(local: RateLimiter) -> Self {
        Self { local, shared: None, failing: AtomicBool::new(false) }
    }

    /// `local`'s limit shared through `cluster` (when there is one), named `name` in its keys.
    pub fn shared(local: RateLimiter, cluster: Option<&Cluster>, name: &'static str) -> Self {
        Self { shared: cluster.map(|cluster| (cluster.clone(), name)), ..Self::local(local) }
    }

    /// Takes one token for `key`: `Ok` if allowed, `Err(retry_after_ms)` if not.
    pub async fn check(&self, key: &str) -> Result<(), u64> {
        self.take(key, 1).await
    }

    /// Takes `count` tokens for `key`, all or none (see [`RateLimiter::take`]).
    pub async fn take(&self, key: &str, count: usize) -> Result<(), u64> {
        let Some(count) = i64::try_from(count).ok().filter(|count| *count > 0) else {
            return self.local.take(key, count);
        };
        match self.run_script(key, count).await {
            Some(0) => Ok(()),
            Some(retry_after_ms) if retry_after_ms < 0 => Err(u64::MAX),
            Some(retry_after_ms) => Err(retry_after_ms.unsigned_abs()),
            None => self.local.take(key, usize::try_from(count).unwrap_or(usize::MAX)),
        }
    }

    /// Gives back a token taken for `key` (an attempt that turned out not to count).
    pub async fn refund(&self, key: &str) {
        if self.run_script(key, -1).await.is_none() {
            self.local.refund(key);
        }
    }

    /// Runs the bucket script taking `count` tokens (giving back `-count` when negative):
    /// `Some(0)` when taken, `Some(ms)` to wait, `Some(-1)` never; `None` without Redis.
    async fn run_script(&self, key: &str, count: i64) -> Option<i64> {
        let (cluster, name) = self.shared.as_ref()?;
        let result = BUCKET_SCRIPT
            .key(cluster.key(&["ratelimit", name, key]))
            .arg(self.local.per_second)
            .arg(self.local.burst)
            .arg(count)
            .invoke_async::<i64>(&mut cluster.connection())
            .await;
        match result {
            Ok(answer) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(limit = name, "rate limits in Redis again");
                }
                Some(answer)
            }
            Err(error) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(limit = name, %error, "rate limits in Redis failed; this node's own buckets limit meanwhile");
                }
                None
            }
        }
    }
}

/// KEYS: the bucket. ARGV: tokens per second, burst, tokens to take (negative: to give back).
/// Returns 0 when taken, the milliseconds to wait, or -1 when more than the burst was asked.
static BUCKET_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local rate, burst, count = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(bucket[1]) or burst
local updated = tonumber(bucket[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - updated) / 1000 * rate)
local answer = 0
if count < 0 then
  tokens = math.min(burst, tokens - count)
elseif tokens >= count then
  tokens = tokens - count
elseif count > burst then
  answer = -1
else
  answer = math.ceil((count - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return answer
",
    )
});

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
