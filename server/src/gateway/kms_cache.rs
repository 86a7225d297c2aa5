//! A short-lived cache of KMS Decrypt answers: KMS calls cost money and share
//! a per-account request quota, and a browser opening the same object (or
//! ranges of it) asks for the same data key again and again.
//!
//! Entries are keyed by SHA-256 of (key ARN, algorithm, wrapped key), live
//! for a TTL, are bounded in number, are kept only in memory and are zeroized
//! when evicted. The cache sits behind authorization: every request is
//! authorized, and the digest of the answer checked, as if KMS had been
//! called.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

struct Entry {
    at: Instant,
    key_id: String,
    plaintext: Zeroizing<Vec<u8>>,
}

pub struct KmsCache {
    ttl: Duration,
    max: usize,
    map: Mutex<HashMap<[u8; 32], Entry>>,
    pub calls: AtomicU64,
    pub hits: AtomicU64,
}

impl KmsCache {
    /// `ttl` zero or `max` zero: no caching (KMS is called every time).
    pub fn new(ttl: Duration, max: usize) -> KmsCache {
        KmsCache { ttl, max, map: Mutex::new(HashMap::new()), calls: AtomicU64::new(0), hits: AtomicU64::new(0) }
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero() && self.max > 0
    }

    pub fn key(arn: &str, algorithm: &str, blob: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [arn.as_bytes(), algorithm.as_bytes(), blob] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.finalize().into()
    }

    /// A live answer: (KeyId, plaintext).
    pub fn get(&self, key: &[u8; 32]) -> Option<(String, Zeroizing<Vec<u8>>)> {
        if !self.enabled() {
            return None;
        }
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(key) {
            Some(e) if e.at.elapsed() < self.ttl => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some((e.key_id.clone(), e.plaintext.clone()))
            }
            Some(_) => {
                map.remove(key); // expired: dropped, and so zeroized
                None
            }
            None => None,
        }
    }

    pub fn put(&self, key: [u8; 32], key_id: &str, plaintext: &[u8]) {
        if !self.enabled() {
            return;
        }
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.max {
            let ttl = self.ttl;
            map.retain(|_, e| e.at.elapsed() < ttl);
        }
        while map.len() >= self.max {
            let Some(oldest) = map.iter().min_by_key(|(_, e)| e.at).map(|(k, _)| *k) else { break };
            map.remove(&oldest);
        }
        map.insert(key, Entry { at: Instant::now(), key_id: key_id.to_owned(), plaintext: Zeroizing::new(plaintext.to_vec()) });
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_expire_and_evict_by_age_and_count() {
        let c = KmsCache::new(Duration::from_millis(80), 2);
        let (a, b, d) = (KmsCache::key("arn", "x", b"a"), KmsCache::key("arn", "x", b"b"), KmsCache::key("arn", "x", b"d"));
        assert_ne!(KmsCache::key("arn", "xa", b""), KmsCache::key("arn", "x", b"a"), "fields are length-prefixed");
        assert!(c.get(&a).is_none());
        c.put(a, "arn", &[1; 80]);
        assert_eq!(c.get(&a).unwrap().1.as_slice(), &[1; 80]);
        c.put(b, "arn", &[2; 80]);
        std::thread::sleep(Duration::from_millis(5));
        c.put(d, "arn", &[3; 80]); // full: the oldest (a) goes
        assert!(c.get(&a).is_none());
        assert!(c.get(&b).is_some() && c.get(&d).is_some());
        assert_eq!(c.len(), 2);
        std::thread::sleep(Duration::from_millis(100));
        assert!(c.get(&b).is_none(), "expired");
        assert_eq!(c.hits.load(Ordering::Relaxed), 3);
        let off = KmsCache::new(Duration::ZERO, 10);
        off.put(a, "arn", &[1; 80]);
        assert!(off.get(&a).is_none());
    }
}
