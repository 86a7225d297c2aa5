//! Per-user rate limits (a token bucket each): a stolen session or token
//! cannot drain every data key at KMS speed, and one user cannot spend the
//! account's shared KMS request quota.

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
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            let (rate, burst) = (self.rate, self.burst);
            map.retain(|_, (t, at)| *t + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = map.entry(key.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
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
}
