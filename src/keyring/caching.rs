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

use sha2::{Digest, Sha384};

use super::Keyring;
use crate::error::{err, Result};
use crate::format::context;
use crate::format::EncryptedDataKey;
use crate::materials::{DecryptionMaterials, EncryptionMaterials};
use crate::secret::DataKey;
use crate::suite::Kdf;

/// A cache entry identifier: SHA-384 (SPEC caching-cmm.md, Appendix A).
type CacheId = [u8; 48];

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

/// Limits of one cached entry (SPEC caching-cmm.md "Initialization").
#[derive(Clone, Copy, Debug)]
pub struct CacheLimits {
    /// Seconds an entry may be used after it was made: more than zero.
    pub max_age_secs: f64,
    /// Messages an entry may serve (encrypt: messages it protects; decrypt:
    /// opens): 1 to 2^32, the default 2^32.
    pub max_messages: u64,
    /// Plaintext bytes an encryption entry may protect: at most 2^63 − 1,
    /// the default.
    pub max_bytes: u64,
}

/// The largest message limit (SPEC caching-cmm.md "Limit Messages").
pub const MAX_CACHE_MESSAGES: u64 = 1 << 32;
/// The largest byte limit (SPEC caching-cmm.md "Limit Bytes").
pub const MAX_CACHE_BYTES: u64 = i64::MAX as u64;

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits { max_age_secs: 300.0, max_messages: MAX_CACHE_MESSAGES, max_bytes: MAX_CACHE_BYTES }
    }
}

impl CacheLimits {
    /// Refuses limits the specification does not allow (`INVALID_ARGUMENT`).
    pub fn validate(&self) -> Result<()> {
        if !(self.max_age_secs.is_finite() && self.max_age_secs > 0.0) {
            return Err(err!(InvalidArgument, "the cache's max age must be a number of seconds above zero"));
        }
        if self.max_messages == 0 || self.max_messages > MAX_CACHE_MESSAGES {
            return Err(err!(InvalidArgument, "the cache's message limit must be 1 to 2^32"));
        }
        if self.max_bytes > MAX_CACHE_BYTES {
            return Err(err!(InvalidArgument, "the cache's byte limit must be at most 2^63 - 1"));
        }
        Ok(())
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
    inner: Mutex<(HashMap<CacheId, Entry>, u64)>,
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

    fn lock(&self) -> std::sync::MutexGuard<'_, (HashMap<CacheId, Entry>, u64)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one use of a valid entry for `key` (adding `bytes`), or `None`;
    /// an entry past its limits is removed.
    fn take(&self, key: &CacheId, limits: &CacheLimits, bytes: u64) -> Option<Arc<Cached>> {
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

    fn put(&self, key: CacheId, value: Cached, bytes: u64) {
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
    /// Caches what `inner` unwraps, within `limits` (checked: see
    /// [`CacheLimits`]). The keyring gets a partition of its own, so it
    /// never uses entries another keyring put in the same cache (SPEC
    /// caching-cmm.md "Partition ID"); see [`CachingKeyring::with_partition`].
    /// Data-key reuse on encrypt is off.
    pub fn new(inner: Arc<dyn Keyring>, cache: Arc<MaterialsCache>, limits: CacheLimits) -> Result<Self> {
        limits.validate()?;
        let partition = crate::random::array::<16>().iter().map(|b| format!("{b:02x}")).collect();
        Ok(CachingKeyring { inner, cache, limits, partition, reuse_data_keys: false })
    }

    /// Shares entries with the keyrings that name the same partition (and
    /// the same cache): only for keyrings that may serve each other's keys.
    pub fn with_partition(mut self, partition: &str) -> Self {
        self.partition = partition.to_owned();
        self
    }

    /// Also reuse data keys across messages on encrypt (see the module docs for the trade-off).
    pub fn with_data_key_reuse(mut self, on: bool) -> Self {
        self.reuse_data_keys = on;
        self
    }

    /// SPEC caching-cmm.md, Appendix A: SHA-384 of resource id 0x01 ‖ 0x00 ‖
    /// scope ‖ 0x00 ‖ partition ‖ 0x00 ‖ resource suffix.
    fn id(&self, scope: u8, suffix: &[&[u8]]) -> CacheId {
        let mut h = Sha384::new();
        h.update([0x01, 0x00, scope, 0x00]);
        h.update(self.partition.as_bytes());
        for part in suffix {
            h.update([0x00]);
            h.update(part);
        }
        h.finalize().into()
    }

    /// Encryption materials with an algorithm suite: suffix 0x01 ‖ 0x00 ‖
    /// suite id ‖ 0x00 ‖ serialized context.
    fn encrypt_id(&self, suite: u16, ctx: &[u8]) -> CacheId {
        self.id(0x01, &[&[0x01], &suite.to_be_bytes(), ctx])
    }

    /// Decryption materials: suite id ‖ 0x00 ‖ the serialized EDK entries,
    /// sorted, concatenated ‖ 0x00 ‖ serialized context.
    fn decrypt_id(&self, suite: u16, edks: &[EncryptedDataKey], ctx: &[u8]) -> Result<CacheId> {
        let mut entries = edks
            .iter()
            .map(|e| {
                let mut b = Vec::new();
                crate::format::header::serialize_edk(e, &mut b).map(|()| b)
            })
            .collect::<Result<Vec<_>>>()?;
        entries.sort_unstable();
        Ok(self.id(0x02, &[&suite.to_be_bytes(), &entries.concat(), ctx]))
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
        let key = self.encrypt_id(materials.suite.id(), &ctx);
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
        // SPEC caching-cmm.md "Decrypt Materials": identity-KDF suites (the
        // data key is the message key) are never cached.
        if materials.suite.kdf() == Kdf::Identity {
            return self.inner.on_decrypt(materials, edks).await;
        }
        let ctx = context::canonical(&materials.encryption_context)?;
        let key = self.decrypt_id(materials.suite.id(), edks, &ctx)?;
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
        let k = |i: u8| [i; 48];
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
        let put = |i: u8, bytes| cache.put([i; 48], Cached::Decrypt(DataKey::new(vec![i; 32])), bytes);
        let by_messages = CacheLimits { max_messages: 3, ..Default::default() };
        put(1, 0);
        assert!(cache.take(&[1; 48], &by_messages, 0).is_some());
        assert!(cache.take(&[1; 48], &by_messages, 0).is_some());
        assert!(cache.take(&[1; 48], &by_messages, 0).is_none(), "the put counts as the first message");
        let by_bytes = CacheLimits { max_bytes: 100, ..Default::default() };
        put(2, 60);
        assert!(cache.take(&[2; 48], &by_bytes, 40).is_some());
        assert!(cache.take(&[2; 48], &by_bytes, 1).is_none());
        let by_age = CacheLimits { max_age_secs: 0.05, ..Default::default() };
        put(3, 0);
        assert!(cache.take(&[3; 48], &by_age, 0).is_some());
        std::thread::sleep(std::time::Duration::from_millis(80));
        assert!(cache.take(&[3; 48], &by_age, 0).is_none());
        assert!(cache.is_empty(), "expired entries are removed");
    }

    #[test]
    fn cache_ids_follow_the_specification_appendix() {
        struct Nothing;
        #[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
        #[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
        impl Keyring for Nothing {
            async fn on_encrypt(&self, m: EncryptionMaterials) -> Result<EncryptionMaterials> {
                Ok(m)
            }
            async fn on_decrypt(&self, m: DecryptionMaterials, _: &[EncryptedDataKey]) -> Result<DecryptionMaterials> {
                Ok(m)
            }
        }
        let k = CachingKeyring::new(Arc::new(Nothing), Arc::new(MaterialsCache::new(1)), CacheLimits::default()).unwrap().with_partition("p");
        let ctx = [0, 1, 0, 1, b'a', 0, 1, b'b'];
        // Encrypt, with suite 0x0478: 01 00 01 00 "p" 00 01 00 04 78 00 ctx.
        let mut want = vec![1, 0, 1, 0, b'p', 0, 1, 0, 0x04, 0x78, 0];
        want.extend_from_slice(&ctx);
        assert_eq!(k.encrypt_id(0x0478, &ctx), <[u8; 48]>::from(Sha384::digest(&want)));
        // Decrypt: 01 00 02 00 "p" 00 suite 00 sorted serialized EDKs 00 ctx.
        let edk = |id: &str, info: &[u8], ct: &[u8]| EncryptedDataKey { provider_id: id.into(), provider_info: info.to_vec(), ciphertext: ct.to_vec() };
        let (e1, e2) = (edk("z", b"i", b"c"), edk("a", b"jj", b"d"));
        let ser2 = [0, 1, b'a', 0, 2, b'j', b'j', 0, 1, b'd'];
        let ser1 = [0, 1, b'z', 0, 1, b'i', 0, 1, b'c'];
        let mut want = vec![1, 0, 2, 0, b'p', 0, 0x04, 0x78, 0];
        want.extend_from_slice(&ser2);
        want.extend_from_slice(&ser1);
        want.push(0);
        want.extend_from_slice(&ctx);
        let id = k.decrypt_id(0x0478, &[e1.clone(), e2.clone()], &ctx).unwrap();
        assert_eq!(id, <[u8; 48]>::from(Sha384::digest(&want)));
        assert_eq!(id, k.decrypt_id(0x0478, &[e2, e1], &ctx).unwrap(), "the EDK order does not matter");
        // Another partition, another id; a default partition is unique.
        assert_ne!(k.encrypt_id(0x0478, &ctx), k.with_partition("q").encrypt_id(0x0478, &ctx));
        let fresh = || CachingKeyring::new(Arc::new(Nothing), Arc::new(MaterialsCache::new(1)), CacheLimits::default()).unwrap();
        assert_ne!(fresh().partition, fresh().partition);
    }

    #[test]
    fn limits_outside_the_specification_are_refused() {
        let ok = CacheLimits::default();
        assert!(ok.validate().is_ok());
        assert_eq!((ok.max_messages, ok.max_bytes), (1 << 32, (1 << 63) - 1));
        for bad in [
            CacheLimits { max_age_secs: 0.0, ..ok },
            CacheLimits { max_age_secs: -1.0, ..ok },
            CacheLimits { max_age_secs: f64::NAN, ..ok },
            CacheLimits { max_age_secs: f64::INFINITY, ..ok },
            CacheLimits { max_messages: 0, ..ok },
            CacheLimits { max_messages: (1 << 32) + 1, ..ok },
            CacheLimits { max_bytes: 1 << 63, ..ok },
        ] {
            assert_eq!(bad.validate().unwrap_err().code(), crate::ErrorCode::InvalidArgument, "{bad:?}");
        }
        assert!(CacheLimits { max_messages: 1, max_bytes: 0, max_age_secs: 0.001 }.validate().is_ok());
    }
}
