//! A materials cache and a keyring that uses it, modelled on the ESDK's
//! local cryptographic materials cache and caching materials manager
//! (SPEC framework/caching-cmm.md, framework/local-cryptographic-materials-cache.md).
//!
//! - **Decrypt**: a data key unwrapped for (suite, set of encrypted data
//!   keys, encryption context) is reused while the entry is valid, so
//!   reopening a message, or reading ranges of it, calls the inner keyring
//!   (and KMS behind it) once.
//! - **Encrypt** (off unless `reuse_data_keys`): one data key, with its
//!   encrypted copies, protects several messages under the same suite and
//!   context. This trades isolation for fewer KMS calls: a leaked data key
//!   exposes every message it protected, so bound it with `max_messages`,
//!   `max_bytes` and `max_age`. Signing suites are never served from the
//!   cache (each message has its own signing key). Reuse needs the message's
//!   plaintext length up front (`EncryptOptions::plaintext_length`); without
//!   it the inner keyring is called.
//!
//! Entries expire after `max_age`, after `max_messages` uses, or once they
//! have protected `max_bytes`; the cache holds at most `capacity` entries
//! (least recently used evicted first). Evicted data keys are dropped and
//! so zeroized.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha512};

use super::Keyring;
use crate::error::Result;
use crate::format::context;
use crate::format::EncryptedDataKey;
use crate::materials::{DecryptionMaterials, EncryptionMaterials};
use crate::secret::DataKey;

/// Time source: seconds since an arbitrary origin (wasm has no `Instant`).
fn now() -> f64 {
    #[cfg(target_arch = "wasm32")]
    {
        js_sys::Date::now() / 1000.0
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
    }
}

/// Limits of one cached entry.
#[derive(Clone, Copy, Debug)]
pub struct CacheLimits {
    /// Seconds an entry may be used after it was made.
    pub max_age_secs: f64,
    /// Messages an entry may serve (encrypt: messages it protects; decrypt: opens).
    pub max_messages: u64,
    /// Plaintext bytes an encryption entry may protect.
    pub max_bytes: u64,
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits { max_age_secs: 300.0, max_messages: 1 << 32, max_bytes: u64::MAX }
    }
}

enum Cached {
    Decrypt(DataKey),
    Encrypt { data_key: DataKey, edks: Vec<EncryptedDataKey> },
}

struct Entry {
    made: f64,
    used_at: u64,
    messages: u64,
    bytes: u64,
    value: Arc<Cached>,
}

/// A bounded in-memory cache of data keys, shareable between keyrings.
pub struct MaterialsCache {
    capacity: usize,
    inner: Mutex<(HashMap<[u8; 64], Entry>, u64)>,
}

impl MaterialsCache {
    /// A cache of at most `capacity` entries (at least 1).
    pub fn new(capacity: usize) -> Self {
        MaterialsCache { capacity: capacity.max(1), inner: Mutex::new((HashMap::new(), 0)) }
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.lock().0.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every entry (and so zeroizes its data key).
    pub fn clear(&self) {
        self.lock().0.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (HashMap<[u8; 64], Entry>, u64)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one use of a valid entry for `key` (adding `bytes`), or `None`;
    /// an entry past its limits is removed.
    fn take(&self, key: &[u8; 64], limits: &CacheLimits, bytes: u64) -> Option<Arc<Cached>> {
        let mut g = self.lock();
        let (map, clock) = &mut *g;
        *clock += 1;
        let tick = *clock;
        let e = map.get_mut(key)?;
        let fresh = now() - e.made < limits.max_age_secs;
        let fits = e.messages < limits.max_messages && e.bytes.saturating_add(bytes) <= limits.max_bytes;
        if !fresh || !fits {
            map.remove(key);
            return None;
        }
        e.messages += 1;
        e.bytes += bytes;
        e.used_at = tick;
        Some(e.value.clone())
    }

    fn put(&self, key: [u8; 64], value: Cached, bytes: u64) {
        let mut g = self.lock();
        let (map, clock) = &mut *g;
        *clock += 1;
        while map.len() >= self.capacity && !map.contains_key(&key) {
            let Some(lru) = map.iter().min_by_key(|(_, e)| e.used_at).map(|(k, _)| *k) else { break };
            map.remove(&lru);
        }
        map.insert(key, Entry { made: now(), used_at: *clock, messages: 1, bytes, value: Arc::new(value) });
    }
}

/// A keyring that serves data keys from a [`MaterialsCache`] and asks its
/// inner keyring on a miss.
pub struct CachingKeyring {
    inner: Arc<dyn Keyring>,
    cache: Arc<MaterialsCache>,
    limits: CacheLimits,
    partition: String,
    reuse_data_keys: bool,
}

impl CachingKeyring {
    /// Caches what `inner` unwraps, within `limits`. `partition` separates
    /// keyrings that share one cache (entries of one are never served to
    /// another). Data-key reuse on encrypt is off.
    pub fn new(inner: Arc<dyn Keyring>, cache: Arc<MaterialsCache>, limits: CacheLimits, partition: &str) -> Self {
        CachingKeyring { inner, cache, limits, partition: partition.to_owned(), reuse_data_keys: false }
    }

    /// Also reuse data keys across messages on encrypt (see the module docs for the trade-off).
    pub fn with_data_key_reuse(mut self, on: bool) -> Self {
        self.reuse_data_keys = on;
        self
    }

    fn key(&self, kind: u8, suite: u16, ctx: &[u8], edks: &[EncryptedDataKey]) -> [u8; 64] {
        // SPEC caching-cmm.md: SHA-512 over the partition, the suite, the
        // sorted digests of the EDKs and the serialized context.
        let mut h = Sha512::new();
        let part = Sha512::digest(self.partition.as_bytes());
        h.update(part);
        h.update([kind]);
        h.update(suite.to_be_bytes());
        let mut digests: Vec<[u8; 64]> = edks
            .iter()
            .map(|e| {
                let mut d = Sha512::new();
                for f in [e.provider_id.as_bytes(), &e.provider_info, &e.ciphertext] {
                    d.update((f.len() as u64).to_be_bytes());
                    d.update(f);
                }
                d.finalize().into()
            })
            .collect();
        digests.sort_unstable();
        for d in &digests {
            h.update(d);
        }
        h.update(Sha512::digest(ctx));
        h.finalize().into()
    }
}

#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
impl Keyring for CachingKeyring {
    async fn on_encrypt(&self, mut materials: EncryptionMaterials) -> Result<EncryptionMaterials> {
        let bytes = materials.plaintext_length;
        let cacheable = self.reuse_data_keys && materials.suite.signature().is_none() && materials.data_key.is_none() && bytes.is_some();
        if !cacheable {
            return self.inner.on_encrypt(materials).await;
        }
        let bytes = bytes.unwrap_or(0);
        let ctx = context::serialize(&materials.encryption_context)?;
        let key = self.key(0, materials.suite.id(), &ctx, &[]);
        if let Some(hit) = self.cache.take(&key, &self.limits, bytes) {
            if let Cached::Encrypt { data_key, edks } = &*hit {
                materials.data_key = Some(data_key.clone());
                materials.encrypted_data_keys = edks.clone();
                return Ok(materials);
            }
        }
        let m = self.inner.on_encrypt(materials).await?;
        if bytes <= self.limits.max_bytes {
            if let Some(dk) = &m.data_key {
                self.cache.put(key, Cached::Encrypt { data_key: dk.clone(), edks: m.encrypted_data_keys.clone() }, bytes);
            }
        }
        Ok(m)
    }

    async fn on_decrypt(&self, mut materials: DecryptionMaterials, edks: &[EncryptedDataKey]) -> Result<DecryptionMaterials> {
        super::needs_data_key(&materials)?;
        let ctx = context::canonical(&materials.encryption_context)?;
        let key = self.key(1, materials.suite.id(), &ctx, edks);
        if let Some(hit) = self.cache.take(&key, &self.limits, 0) {
            if let Cached::Decrypt(dk) = &*hit {
                materials.data_key = Some(dk.clone());
                return Ok(materials);
            }
        }
        let m = self.inner.on_decrypt(materials, edks).await?;
        if let Some(dk) = &m.data_key {
            self.cache.put(key, Cached::Decrypt(dk.clone()), 0);
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicted_entries_are_dropped_so_their_keys_are_zeroized() {
        let cache = MaterialsCache::new(2);
        let limits = CacheLimits::default();
        let k = |i: u8| [i; 64];
        cache.put(k(1), Cached::Decrypt(DataKey::new(vec![1; 32])), 0);
        let weak = Arc::downgrade(&cache.take(&k(1), &limits, 0).unwrap());
        cache.put(k(2), Cached::Decrypt(DataKey::new(vec![2; 32])), 0);
        assert!(weak.upgrade().is_some());
        cache.take(&k(2), &limits, 0); // 2 is now the most recent
        cache.put(k(3), Cached::Decrypt(DataKey::new(vec![3; 32])), 0);
        // Entry 1 (least recently used) is gone and nothing holds its key:
        // DataKey's drop zeroized it.
        assert!(weak.upgrade().is_none(), "the evicted key is still alive");
        assert_eq!(cache.len(), 2);
        let weak3 = Arc::downgrade(&cache.take(&k(3), &limits, 0).unwrap());
        cache.clear();
        assert!(weak3.upgrade().is_none());
    }

    #[test]
    fn limits_by_messages_bytes_and_age() {
        let cache = MaterialsCache::new(10);
        let put = |i: u8, bytes| cache.put([i; 64], Cached::Decrypt(DataKey::new(vec![i; 32])), bytes);
        let by_messages = CacheLimits { max_messages: 3, ..Default::default() };
        put(1, 0);
        assert!(cache.take(&[1; 64], &by_messages, 0).is_some());
        assert!(cache.take(&[1; 64], &by_messages, 0).is_some());
        assert!(cache.take(&[1; 64], &by_messages, 0).is_none(), "the put counts as the first message");
        let by_bytes = CacheLimits { max_bytes: 100, ..Default::default() };
        put(2, 60);
        assert!(cache.take(&[2; 64], &by_bytes, 40).is_some());
        assert!(cache.take(&[2; 64], &by_bytes, 1).is_none());
        let by_age = CacheLimits { max_age_secs: 0.05, ..Default::default() };
        put(3, 0);
        assert!(cache.take(&[3; 64], &by_age, 0).is_some());
        std::thread::sleep(std::time::Duration::from_millis(80));
        assert!(cache.take(&[3; 64], &by_age, 0).is_none());
        assert!(cache.is_empty(), "expired entries are removed");
    }
}
