//! What the official SDKs refuse, refused here too (the ESDK specification's
//! MUSTs on materials and keyrings): a public key in an unsigned suite's
//! context, keyrings handed materials that already hold a data key, a
//! multi-keyring generator that makes no data key, an `aws-kms-rsa` EDK
//! whose provider info is not a key ARN, a keyring that changes the suite,
//! and signed messages under unsigned-only decryption.

use std::sync::{Arc, Mutex};

use crate::case;
use crate::shared::*;
use kms_envelope::*;

const S0478: AlgorithmSuite = AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY;
const S0578: AlgorithmSuite = AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384;

/// What a test keyring does to the materials its inner keyring returns.
type Change = Box<dyn Fn(&mut EncryptionMaterials) + Send + Sync>;
type DecryptChange = Box<dyn Fn(&mut DecryptionMaterials) + Send + Sync>;

/// A keyring that misbehaves: it changes what its inner keyring returns,
/// and counts its decrypt calls.
struct Altering {
    inner: Arc<dyn Keyring>,
    on_encrypt: Change,
    on_decrypt: DecryptChange,
    decrypts: Mutex<u32>,
}

fn altering(inner: Arc<dyn Keyring>, on_encrypt: Change, on_decrypt: DecryptChange) -> Altering {
    Altering { inner, on_encrypt, on_decrypt, decrypts: Mutex::new(0) }
}

#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
impl Keyring for Altering {
    async fn on_encrypt(&self, m: EncryptionMaterials) -> Result<EncryptionMaterials> {
        let mut m = self.inner.on_encrypt(m).await?;
        (self.on_encrypt)(&mut m);
        Ok(m)
    }
    async fn on_decrypt(&self, m: DecryptionMaterials, edks: &[EncryptedDataKey]) -> Result<DecryptionMaterials> {
        *self.decrypts.lock().unwrap() += 1;
        let mut m = self.inner.on_decrypt(m, edks).await?;
        (self.on_decrypt)(&mut m);
        Ok(m)
    }
}

/// A generator that makes nothing: returns the materials as it got them.
struct Idle;

#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
impl Keyring for Idle {
    async fn on_encrypt(&self, m: EncryptionMaterials) -> Result<EncryptionMaterials> {
        Ok(m)
    }
    async fn on_decrypt(&self, m: DecryptionMaterials, _: &[EncryptedDataKey]) -> Result<DecryptionMaterials> {
        Ok(m)
    }
}

fn unchanged() -> DecryptChange {
    Box::new(|_| {})
}

case! {
    fn a_public_key_in_an_unsigned_suites_context_is_refused_before_any_unwrap() {
        // Raw RSA does not bind the context into its wrapped key, so the
        // message below is whole: a valid header tag over the extra pair.
        let rsa: Arc<dyn Keyring> = Arc::new(raw_rsa(RsaPadding::OaepSha256));
        let sneaky = altering(
            rsa.clone(),
            Box::new(|m| {
                m.encryption_context.insert(PUBLIC_KEY_CONTEXT_KEY.into(), "A".repeat(68));
            }),
            unchanged(),
        );
        let ct = encrypt(&sneaky, b"unsigned", &opts(S0478, 64, &ctx(&[("owner", "alice")])));
        let (h, _) = parse_header(&ct).unwrap();
        assert_eq!(h.suite, S0478);
        assert!(h.encryption_context.contains_key(PUBLIC_KEY_CONTEXT_KEY));
        // SPEC framework/default-cmm.md: decrypt MUST fail.
        assert_eq!(code(decrypt(&sneaky, &ct)), "RESERVED_ENCRYPTION_CONTEXT_KEY");
        assert_eq!(*sneaky.decrypts.lock().unwrap(), 0, "refused before the keyring is asked");
        let r = now(Client::new().decrypt_range(&sneaky, &ct, 0, 4, &DecryptOptions::default()));
        assert_eq!(code(r), "RESERVED_ENCRYPTION_CONTEXT_KEY", "range reads too");
        // Streaming: refused as soon as the header is in.
        let (out, r) = stream_decrypt(&Client::new(), rsa.as_ref(), &ct, &[7]);
        assert_eq!((out.len(), code(r)), (0, "RESERVED_ENCRYPTION_CONTEXT_KEY"));
        // A signing suite's own public key is what it must carry.
        let signed = encrypt(rsa.as_ref(), b"signed", &opts(S0578, 64, &ctx(&[("owner", "alice")])));
        assert_eq!(decrypt(rsa.as_ref(), &signed).unwrap(), b"signed");
    }
}

case! {
    fn keyrings_refuse_decryption_materials_that_already_hold_a_data_key() {
        let ct = encrypt(&raw_aes(256), b"x", &opts(S0478, 64, &ctx(&[])));
        let (h, _) = parse_header(&ct).unwrap();
        let (kms, calls) = kms_rsa(KmsRsaAlgorithm::RsaesOaepSha256);
        let aes: Arc<dyn Keyring> = Arc::new(raw_aes(256));
        let cache = Arc::new(MaterialsCache::new(4));
        let keyrings: Vec<(&str, Box<dyn Keyring>)> = vec![
            ("raw AES", Box::new(raw_aes(256))),
            ("raw RSA", Box::new(raw_rsa(RsaPadding::OaepSha1))),
            ("AWS KMS RSA", Box::new(kms)),
            ("multi", Box::new(MultiKeyring::new(Some(aes.clone()), vec![]).unwrap())),
            ("caching", Box::new(CachingKeyring::new(aes, cache, CacheLimits::default()).unwrap())),
        ];
        for (name, k) in &keyrings {
            let held = DecryptionMaterials {
                suite: h.suite,
                encryption_context: h.encryption_context.clone(),
                data_key: Some(DataKey::new(vec![7; 32])),
            };
            // SPEC framework/keyring-interface.md (OnDecrypt): MUST fail.
            let r = now(k.on_decrypt(held, &h.encrypted_data_keys));
            assert_eq!(code(r), "INVALID_STATE", "{name}");
        }
        assert_eq!(*calls.calls.lock().unwrap(), 0, "no KMS call for materials it refuses");
    }
}

case! {
    fn a_multi_keyring_whose_generator_makes_no_data_key_fails() {
        // Before, the child generated the key the generator did not.
        let multi = MultiKeyring::new(Some(Arc::new(Idle)), vec![Arc::new(raw_aes(256))]).unwrap();
        let r = now(Client::new().encrypt(&multi, b"x", &opts(S0478, 64, &ctx(&[]))));
        assert_eq!(code(r), "INVALID_STATE");
        let fine = MultiKeyring::new(Some(Arc::new(raw_aes(128))), vec![Arc::new(raw_aes(256))]).unwrap();
        let ct = encrypt(&fine, b"x", &opts(S0478, 64, &ctx(&[])));
        assert_eq!(decrypt(&raw_aes(256), &ct).unwrap(), b"x");
    }
}

case! {
    fn an_aws_kms_rsa_edk_that_names_no_key_arn_fails_the_call() {
        let (kms, fake) = kms_rsa(KmsRsaAlgorithm::RsaesOaepSha256);
        let kms: Arc<dyn Keyring> = Arc::new(kms);
        for info in ["alias/files", "0a1b2c3d-0000-4000-8000-000000000001", "not an arn", ""] {
            // The keyring's own EDK first, then one that names no key ARN.
            let bad = info.as_bytes().to_vec();
            let extra = altering(
                kms.clone(),
                Box::new(move |m| {
                    let mut e = m.encrypted_data_keys[0].clone();
                    e.provider_info = bad.clone();
                    m.encrypted_data_keys.push(e);
                }),
                unchanged(),
            );
            let ct = encrypt(&extra, b"x", &opts(S0478, 64, &ctx(&[])));
            assert_eq!(parse_header(&ct).unwrap().0.encrypted_data_keys.len(), 2);
            let before = *fake.calls.lock().unwrap();
            assert_eq!(code(decrypt(kms.as_ref(), &ct)), "MALFORMED_MESSAGE", "{info:?}");
            assert_eq!(*fake.calls.lock().unwrap(), before, "{info:?}: the EDKs are filtered before any KMS call");
        }
        let ct = encrypt(kms.as_ref(), b"x", &opts(S0478, 64, &ctx(&[])));
        assert_eq!(decrypt(kms.as_ref(), &ct).unwrap(), b"x");
    }
}

case! {
    fn a_keyring_may_not_change_the_suite() {
        let aes: Arc<dyn Keyring> = Arc::new(raw_aes(256));
        let on_encrypt = altering(aes.clone(), Box::new(|m| m.suite = AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384), unchanged());
        let r = now(Client::new().encrypt(&on_encrypt, b"x", &opts(S0478, 64, &ctx(&[]))));
        assert_eq!(code(r), "INVALID_STATE");
        let short_key = altering(aes.clone(), Box::new(|m| m.data_key = Some(DataKey::new(vec![1; 16]))), unchanged());
        let r = now(Client::new().encrypt(&short_key, b"x", &opts(S0478, 64, &ctx(&[]))));
        assert_eq!(code(r), "INVALID_STATE", "a data key of another length than the suite's");
        let ct = encrypt(aes.as_ref(), b"x", &opts(S0478, 64, &ctx(&[])));
        let on_decrypt = altering(aes, Box::new(|_| {}), Box::new(|m| m.suite = S0578));
        assert_eq!(code(decrypt(&on_decrypt, &ct)), "INVALID_STATE");
    }
}

case! {
    fn unsigned_only_decryption_refuses_a_signed_message_at_its_header() {
        let aes: Arc<dyn Keyring> = Arc::new(raw_aes(256));
        let counted = altering(aes.clone(), Box::new(|_| {}), unchanged());
        let signed = encrypt(aes.as_ref(), &plaintext(10_000), &opts(S0578, 1024, &ctx(&[])));
        let unsigned = encrypt(aes.as_ref(), &plaintext(10_000), &opts(S0478, 1024, &ctx(&[])));
        let only = DecryptOptions { refuse_signed: true, ..DecryptOptions::default() };
        // SPEC client-apis/decrypt.md: refused as soon as the header shows the suite.
        assert_eq!(code(now(Client::new().decrypt(&counted, &signed, &only))), "SIGNATURE_POLICY");
        assert_eq!(*counted.decrypts.lock().unwrap(), 0, "no data key unwrapped");
        let mut dec = Client::new().decryptor(&only);
        let (h, _) = parse_header(&signed).unwrap();
        let header_len = h.serialize_body().unwrap().len() + 16;
        assert_eq!(code(now(dec.update(&signed[..header_len], &mut Vec::new()))), "SIGNATURE_POLICY");
        let r = now(Client::new().decrypt_range(&counted, &signed, 0, 10, &only));
        assert_eq!(code(r), "SIGNATURE_POLICY");
        assert_eq!(now(Client::new().decrypt(&counted, &unsigned, &only)).unwrap().0, plaintext(10_000));
        assert_eq!(now(Client::new().decrypt(&counted, &signed, &DecryptOptions::default())).unwrap().0, plaintext(10_000));
    }
}

/// Remembers the data key its inner keyring makes (tests only).
struct Recording {
    inner: RawAesKeyring,
    key: Mutex<Vec<u8>>,
}

#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
impl Keyring for Recording {
    async fn on_encrypt(&self, m: EncryptionMaterials) -> Result<EncryptionMaterials> {
        let m = self.inner.on_encrypt(m).await?;
        *self.key.lock().unwrap() = m.data_key.as_ref().unwrap().as_bytes().to_vec();
        Ok(m)
    }
    async fn on_decrypt(&self, m: DecryptionMaterials, edks: &[EncryptedDataKey]) -> Result<DecryptionMaterials> {
        self.inner.on_decrypt(m, edks).await
    }
}

case! {
    fn dotnet_4_0_0_header_tags_are_refused() {
        // ESDK-NET 4.0.0 computed the header tag over the header body and two
        // more zero bytes (an empty context serialized as a count), which no
        // other SDK reads without its NetV4_0_0 retry policy. kms-envelope
        // does not retry: such a message is refused, and must be decrypted
        // with ESDK-NET's retry policy (or re-encrypted by 4.0.1 or later).
        use aes_gcm::aead::{Aead, KeyInit, Payload};
        let k = Recording { inner: raw_aes(256), key: Mutex::new(Vec::new()) };
        let ct = encrypt(&k, b"written by 4.0.0", &opts(S0478, 64, &ctx(&[])));
        let (h, len) = parse_header(&ct).unwrap();
        let body = &ct[..len - 16];
        let hk = hkdf::Hkdf::<sha2::Sha512>::new(Some(&h.message_id), &k.key.lock().unwrap());
        let mut key = [0u8; 32];
        hk.expand(&[&[0x04, 0x78][..], b"DERIVEKEY"].concat(), &mut key).unwrap();
        let gcm = aes_gcm::Aes256Gcm::new_from_slice(&key).unwrap();
        let tag = |aad: &[u8]| gcm.encrypt(&[0u8; 12].into(), Payload { msg: &[], aad }).unwrap();
        assert_eq!(tag(body), ct[len - 16..len], "the specification's tag, recomputed");
        let mut dotnet = ct.clone();
        dotnet[len - 16..len].copy_from_slice(&tag(&[body, &[0, 0]].concat()));
        assert_eq!(code(decrypt(&k, &dotnet)), "HEADER_AUTH_FAILED");
        assert_eq!(decrypt(&k, &ct).unwrap(), b"written by 4.0.0");
    }
}

case! {
    fn every_frame_length_a_client_writes_it_also_reads() {
        let k = raw_aes(256);
        let max = DecryptLimits::default().max_frame_length;
        // The largest frame the default client writes decrypts by default.
        let ct = encrypt(&k, &plaintext(100), &opts(S0478, max, &ctx(&[])));
        assert_eq!(decrypt(&k, &ct).unwrap(), plaintext(100));
        // One more is refused on encrypt, before any key work, not written unreadable.
        assert_eq!(code(now(Client::new().encrypt(&k, b"x", &opts(S0478, max + 1, &ctx(&[]))))), "LIMIT_EXCEEDED");
        // Raised, the limit admits the format's largest frame both ways.
        let wide = Client::new().with_limits(DecryptLimits { max_frame_length: u32::MAX, ..DecryptLimits::default() });
        let ct = now(wide.encrypt(&k, &plaintext(100), &opts(S0478, u32::MAX, &ctx(&[])))).unwrap();
        assert_eq!(now(wide.decrypt(&k, &ct, &DecryptOptions::default())).unwrap().0, plaintext(100));
        assert_eq!(code(decrypt(&k, &ct)), "LIMIT_EXCEEDED");
    }
}
