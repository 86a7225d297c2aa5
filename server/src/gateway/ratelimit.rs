//! Rate limits, a token bucket per key (in memory, for a gateway on SQLite;
//! with PostgreSQL every instance spends from one bucket in the database,
//! see `meta`): per user for data keys (a stolen
//! session or token cannot drain every data key at KMS speed, and one user
//! cannot spend the account's shared KMS request quota), and per (user,
//! client address) for failed authentication, where only failures spend
//! tokens (`blocked`, and `check` on a failure): a correct login is never counted, and a
//! client elsewhere cannot lock anyone out; one at the same address only
//! until the bucket refills.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `rate` requests per second on average, `burst` at once.
    pub fn new(rate: f64, burst: u32) -> RateLimiter {
        RateLimiter { rate: rate.max(0.001), burst: f64::from(burst.max(1)), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one request for `key`; `Err(wait)` when over the limit.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.with_bucket(key, |tokens| {
            if *tokens >= 1.0 {
                *tokens -= 1.0;
                true
            } else {
                false
            }
        })
    }

    /// `Err(wait)` if `key` has no token left; spends nothing.
    pub fn blocked(&self, key: &str) -> Result<(), Duration> {
        self.with_bucket(key, |tokens| *tokens >= 1.0)
    }

    /// Refills `key`'s bucket, then lets `f` look at (and spend) its tokens;
    /// `f` returns whether the request may go on.
    fn with_bucket(&self, key: &str, f: impl FnOnce(&mut f64) -> bool) -> Result<(), Duration> {
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            let (rate, burst) = (self.rate, self.burst);
            map.retain(|_, (t, at)| *t + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = map.entry(key.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if f(tokens) {
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refuse_then_refill() {
        let l = RateLimiter::new(50.0, 3);
        for _ in 0..3 {
            assert!(l.check("alice").is_ok());
        }
        let wait = l.check("alice").unwrap_err();
        assert!(wait <= Duration::from_millis(20), "{wait:?}");
        assert!(l.check("bob").is_ok(), "buckets are per user");
        std::thread::sleep(Duration::from_millis(30));
        assert!(l.check("alice").is_ok());
    }

    #[test]
    fn only_failures_are_charged() {
        let l = RateLimiter::new(20.0, 2);
        for _ in 0..100 {
            assert!(l.blocked("alice@127.0.0.1").is_ok(), "looking spends nothing");
        }
        let _ = l.check("alice@127.0.0.1");
        let _ = l.check("alice@127.0.0.1");
        let wait = l.blocked("alice@127.0.0.1").unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(50), "{wait:?}");
        assert!(l.blocked("alice@10.0.0.9").is_ok(), "another address is not locked out");
        std::thread::sleep(Duration::from_millis(60));
        assert!(l.blocked("alice@127.0.0.1").is_ok(), "the lock ends by itself");
    }
}
