//! The materials cache: decrypt-side reuse of unwrapped data keys (one KMS
//! call for many opens and range reads), each limit, partitions, opt-in
//! data-key reuse on encrypt, and concurrent use.

use std::sync::{Arc, Mutex};

use crate::case;
use crate::shared::*;
use kms_envelope::*;

const S0478: AlgorithmSuite = AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY;
const S0578: AlgorithmSuite = AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384;

fn caching(inner: Arc<dyn Keyring>, cache: &Arc<MaterialsCache>, limits: CacheLimits) -> CachingKeyring {
    CachingKeyring::new(inner, cache.clone(), limits).unwrap().with_partition("test")
}

fn calls(kms: &FakeKms) -> u32 {
    *kms.calls.lock().unwrap()
}

/// Counts the inner keyring's `on_encrypt` calls.
struct Counting {
    inner: RawAesKeyring,
    encrypts: Mutex<u32>,
}

#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
impl Keyring for Counting {
    async fn on_encrypt(&self, m: EncryptionMaterials) -> Result<EncryptionMaterials> {
        *self.encrypts.lock().unwrap() += 1;
        self.inner.on_encrypt(m).await
    }
    async fn on_decrypt(&self, m: DecryptionMaterials, edks: &[EncryptedDataKey]) -> Result<DecryptionMaterials> {
        self.inner.on_decrypt(m, edks).await
    }
}

case! {
    fn reopening_a_message_calls_kms_once_while_the_entry_is_valid() {
        let (k, kms) = kms_rsa(KmsRsaAlgorithm::RsaesOaepSha256);
        let k: Arc<dyn Keyring> = Arc::new(k);
        let pt = plaintext(300_000);
        let ct = encrypt(k.as_ref(), &pt, &opts(S0478, 4096, &ctx(&[("owner", "alice")])));
        let other = encrypt(k.as_ref(), b"other", &opts(S0478, 4096, &ctx(&[("owner", "alice")])));
        let cache = Arc::new(MaterialsCache::new(10));
        let c = caching(k.clone(), &cache, CacheLimits::default());
        for _ in 0..5 {
            assert_eq!(decrypt(&c, &ct).unwrap(), pt);
        }
        assert_eq!(calls(&kms), 1, "five opens, one KMS Decrypt");
        // Range reads of the same message reuse the entry too.
        for (a, b) in [(0u64, 10u64), (100_000, 200_000), (299_000, 300_000)] {
            let r = now(Client::new().decrypt_range(&c, &ct, a, b, &DecryptOptions::default())).unwrap();
            assert_eq!(r.plaintext, pt[a as usize..b as usize]);
        }
        assert_eq!(calls(&kms), 1);
        assert_eq!(decrypt(&c, &other).unwrap(), b"other");
        assert_eq!(calls(&kms), 2, "another message, another data key");
        assert_eq!(cache.len(), 2);
        // A keyring in another partition does not see these entries; one
        // that names the same partition does.
        let elsewhere = caching(k.clone(), &cache, CacheLimits::default()).with_partition("another app");
        assert_eq!(decrypt(&elsewhere, &ct).unwrap(), pt);
        assert_eq!(calls(&kms), 3);
        let sharing = caching(k.clone(), &cache, CacheLimits::default());
        assert_eq!(decrypt(&sharing, &ct).unwrap(), pt);
        assert_eq!(calls(&kms), 3, "the same partition, named: shared");
        // SPEC caching-cmm.md: by default, keyrings on one cache share nothing.
        let own = CachingKeyring::new(k.clone(), cache.clone(), CacheLimits::default()).unwrap();
        let own2 = CachingKeyring::new(k.clone(), cache.clone(), CacheLimits::default()).unwrap();
        assert_eq!(decrypt(&own, &ct).unwrap(), pt);
        assert_eq!(decrypt(&own2, &ct).unwrap(), pt);
        assert_eq!(calls(&kms), 5, "each default partition is its own");
        assert_eq!(decrypt(&own, &ct).unwrap(), pt);
        assert_eq!(calls(&kms), 5);
        // A tampered copy (same EDKs and context) still fails: the cache hands out keys, not verdicts.
        let mut bad = ct.clone();
        let n = bad.len();
        bad[n - 20] ^= 1;
        assert_eq!(decrypt(&c, &bad).unwrap_err().code(), ErrorCode::FrameAuthFailed);
    }
}

case! {
    fn decrypt_entries_end_after_max_messages() {
        let (k, kms) = kms_rsa(KmsRsaAlgorithm::RsaesOaepSha256);
        let k: Arc<dyn Keyring> = Arc::new(k);
        let ct = encrypt(k.as_ref(), b"hello", &opts(S0478, 4096, &ctx(&[])));
        let cache = Arc::new(MaterialsCache::new(10));
        let c = caching(k, &cache, CacheLimits { max_messages: 3, ..Default::default() });
        for _ in 0..3 {
            decrypt(&c, &ct).unwrap();
        }
        assert_eq!(calls(&kms), 1);
        decrypt(&c, &ct).unwrap();
        assert_eq!(calls(&kms), 2, "the fourth open asks KMS again");
        // Capacity: the least recently used entry goes.
        let small = Arc::new(MaterialsCache::new(1));
        let (k2, kms2) = kms_rsa(KmsRsaAlgorithm::RsaesOaepSha256);
        let k2: Arc<dyn Keyring> = Arc::new(k2);
        let c2 = caching(k2.clone(), &small, CacheLimits::default());
        let a = encrypt(k2.as_ref(), b"a", &opts(S0478, 64, &ctx(&[])));
        let b = encrypt(k2.as_ref(), b"b", &opts(S0478, 64, &ctx(&[])));
        decrypt(&c2, &a).unwrap();
        decrypt(&c2, &b).unwrap();
        decrypt(&c2, &a).unwrap();
        assert_eq!((calls(&kms2), small.len()), (3, 1));
    }
}

case! {
    fn data_keys_are_reused_on_encrypt_only_when_asked_and_within_limits() {
        let counting = Arc::new(Counting { inner: raw_aes(256), encrypts: Mutex::new(0) });
        let inner: Arc<dyn Keyring> = counting.clone();
        let cache = Arc::new(MaterialsCache::new(10));
        let edk = |ct: &[u8]| parse_header(ct).unwrap().0.encrypted_data_keys[0].ciphertext.clone();
        let o = opts(S0478, 1024, &ctx(&[("tenant", "a")]));

        // Off by default: every message gets its own data key.
        let plain = caching(inner.clone(), &cache, CacheLimits::default());
        let (a, b) = (encrypt(&plain, b"one", &o), encrypt(&plain, b"two", &o));
        assert_ne!(edk(&a), edk(&b));
        assert_eq!(*counting.encrypts.lock().unwrap(), 2);

        // On, with limits of 3 messages and 100 bytes.
        let reuse = caching(inner.clone(), &cache, CacheLimits { max_messages: 3, max_bytes: 100, ..Default::default() }).with_data_key_reuse(true);
        let m: Vec<Vec<u8>> = [40usize, 40, 10, 5].iter().map(|n| encrypt(&reuse, &plaintext(*n), &o)).collect();
        assert_eq!(edk(&m[0]), edk(&m[1]));
        assert_eq!(edk(&m[1]), edk(&m[2]), "three messages, 90 bytes: one data key");
        assert_ne!(edk(&m[2]), edk(&m[3]), "a fourth message needs a new key");
        assert_eq!(*counting.encrypts.lock().unwrap(), 4);
        for (ct, n) in m.iter().zip([40usize, 40, 10, 5]) {
            assert_eq!(decrypt(&counting.inner, ct).unwrap(), plaintext(n), "each message decrypts on its own");
        }
        let big = encrypt(&reuse, &plaintext(80), &o);
        let bigger = encrypt(&reuse, &plaintext(30), &o);
        assert_ne!(edk(&big), edk(&bigger), "80 + 30 bytes is over the byte limit");
        // Another context: another key.
        let other = encrypt(&reuse, b"x", &opts(S0478, 1024, &ctx(&[("tenant", "b")])));
        assert_ne!(edk(&other), edk(&bigger));
        // Signing suites and unknown lengths are never served from the cache.
        let s1 = encrypt(&reuse, b"s", &opts(S0578, 1024, &ctx(&[("tenant", "a")])));
        let s2 = encrypt(&reuse, b"s", &opts(S0578, 1024, &ctx(&[("tenant", "a")])));
        assert_ne!(edk(&s1), edk(&s2));
        let before = *counting.encrypts.lock().unwrap();
        let mut out = Vec::new();
        let mut e = now(Client::new().encryptor(&reuse, &o)).unwrap();
        now(e.update(b"streamed", &mut out)).unwrap();
        now(e.finish(&mut out)).unwrap();
        assert_eq!(*counting.encrypts.lock().unwrap(), before + 1, "no declared length: no reuse");
        // A declared length is enforced.
        let mut declared = o.clone();
        declared.plaintext_length = Some(4);
        let mut e = now(Client::new().encryptor(&reuse, &declared)).unwrap();
        assert_eq!(now(e.update(b"12345", &mut Vec::new())).unwrap_err().code(), ErrorCode::InvalidArgument);
        let mut e = now(Client::new().encryptor(&reuse, &declared)).unwrap();
        now(e.update(b"123", &mut Vec::new())).unwrap();
        assert_eq!(now(e.finish(&mut Vec::new())).unwrap_err().code(), ErrorCode::InvalidArgument);
    }
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn a_shared_cache_serves_concurrent_decryptions() {
    let (k, kms) = kms_rsa(KmsRsaAlgorithm::RsaesOaepSha256);
    let k: Arc<dyn Keyring> = Arc::new(k);
    let pt = plaintext(50_000);
    let ct = Arc::new(encrypt(k.as_ref(), &pt, &opts(S0478, 4096, &ctx(&[]))));
    let cache = Arc::new(MaterialsCache::new(4));
    let c = Arc::new(caching(k, &cache, CacheLimits::default()));
    decrypt(c.as_ref(), &ct).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (c, ct, pt) = (c.clone(), ct.clone(), pt.clone());
            std::thread::spawn(move || {
                for _ in 0..25 {
                    assert_eq!(decrypt(c.as_ref(), &ct).unwrap(), pt);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(calls(&kms), 1, "200 concurrent opens after the first, all from the cache");
}

case! {
    fn identity_kdf_messages_are_never_cached() {
        // SPEC caching-cmm.md "Decrypt Materials": with an identity KDF the
        // data key is the message key; such materials are not cached.
        let cache = Arc::new(MaterialsCache::new(1000));
        let c = caching(Arc::new(raw_aes(256)), &cache, CacheLimits::default());
        let client = legacy_client();
        let mut legacy = 0;
        for (name, bytes) in crate::cases::vectors::VECTORS {
            let v = crate::cases::vectors::parse(name, bytes);
            if v.get("keyring") != "raw-aes-256" || v.get("expect") != "success" {
                continue;
            }
            let suite = AlgorithmSuite::parse(v.get("suite")).unwrap();
            let before = cache.len();
            now(client.decrypt(&c, v.message, &DecryptOptions::default())).unwrap_or_else(|e| panic!("{name}: {e}"));
            let identity = suite.kdf() == Kdf::Identity;
            assert_eq!(cache.len(), before + usize::from(!identity), "{name}");
            legacy += usize::from(identity);
        }
        assert!(legacy >= 3, "identity-KDF vectors: {legacy}");
    }
}

case! {
    fn out_of_range_limits_are_refused() {
        let k: Arc<dyn Keyring> = Arc::new(raw_aes(256));
        let cache = Arc::new(MaterialsCache::new(1));
        for bad in [
            CacheLimits { max_age_secs: 0.0, ..Default::default() },
            CacheLimits { max_messages: 0, ..Default::default() },
            CacheLimits { max_messages: (1 << 32) + 1, ..Default::default() },
            CacheLimits { max_bytes: 1 << 63, ..Default::default() },
        ] {
            assert_eq!(code(CachingKeyring::new(k.clone(), cache.clone(), bad).map(|_| ())), "INVALID_ARGUMENT", "{bad:?}");
        }
    }
}
