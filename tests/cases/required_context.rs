//! Required (authenticate-only) encryption context (SPEC
//! framework/required-encryption-context-cmm.md, client-apis/encrypt.md and
//! decrypt.md "header auth"): pairs the header does not store, which the
//! header tag and the keyrings authenticate and a reader must reproduce.

use std::sync::Mutex;

use crate::case;
use crate::shared::*;
use kms_envelope::*;

const S0478: AlgorithmSuite = AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY;
const S0578: AlgorithmSuite = AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384;

/// Options with `pairs` in the context, the keys of `only` authenticate-only.
fn required(suite: AlgorithmSuite, pairs: &[(&str, &str)], only: &[&str]) -> EncryptOptions {
    let mut o = opts(suite, 100, &ctx(pairs));
    o.required_encryption_context_keys = only.iter().map(|k| k.to_string()).collect();
    o
}

fn reproduced(pairs: &[(&str, &str)]) -> DecryptOptions {
    DecryptOptions { encryption_context: ctx(pairs), ..DecryptOptions::default() }
}

fn decrypt_with(k: &dyn Keyring, ct: &[u8], pairs: &[(&str, &str)]) -> Result<(Vec<u8>, Header)> {
    now(Client::new().decrypt(k, ct, &reproduced(pairs)))
}

/// Records the context each decrypt call hands its inner keyring.
struct Seen<K> {
    inner: K,
    contexts: Mutex<Vec<EncryptionContext>>,
}

#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
impl<K: Keyring> Keyring for Seen<K> {
    async fn on_encrypt(&self, m: EncryptionMaterials) -> Result<EncryptionMaterials> {
        self.contexts.lock().unwrap().push(m.encryption_context.clone());
        self.inner.on_encrypt(m).await
    }
    async fn on_decrypt(&self, m: DecryptionMaterials, edks: &[EncryptedDataKey]) -> Result<DecryptionMaterials> {
        self.contexts.lock().unwrap().push(m.encryption_context.clone());
        self.inner.on_decrypt(m, edks).await
    }
}

case! {
    fn authenticate_only_pairs_are_not_stored_and_must_be_reproduced() {
        let pt = plaintext(1000);
        let (kms, _) = kms_rsa(KmsRsaAlgorithm::RsaesOaepSha256);
        let keyrings: Vec<(Box<dyn Keyring>, &str, &[AlgorithmSuite])> = vec![
            (Box::new(raw_aes(256)), "NO_DECRYPTABLE_KEY", &[S0478, S0578]),
            // Raw RSA does not bind the context: the header tag catches it.
            (Box::new(raw_rsa(RsaPadding::OaepSha256)), "HEADER_AUTH_FAILED", &[S0478, S0578]),
            // KMS RSA binds the context's digest into the wrapped key.
            (Box::new(kms), "KMS_RESPONSE_INVALID", &[S0478]),
        ];
        for (k, missing, suites) in &keyrings {
            for &suite in *suites {
                let o = required(suite, &[("owner", "alice"), ("tenant", "t-1"), ("purpose", "x")], &["tenant", "purpose"]);
                let ct = encrypt(k.as_ref(), &pt, &o);
                let (h, _) = parse_header(&ct).unwrap();
                assert!(!h.encryption_context.contains_key("tenant") && !h.encryption_context.contains_key("purpose"));
                assert_eq!(h.encryption_context["owner"], "alice");
                // The values are nowhere in the message.
                assert!(!ct.windows(3).any(|w| w == b"t-1"), "{suite}");
                let (out, dh) = decrypt_with(k.as_ref(), &ct, &[("tenant", "t-1"), ("purpose", "x")]).unwrap();
                assert_eq!(out, pt);
                assert_eq!(dh.encryption_context, h.encryption_context);
                // With the stored pair reproduced too.
                assert!(decrypt_with(k.as_ref(), &ct, &[("owner", "alice"), ("tenant", "t-1"), ("purpose", "x")]).is_ok());
                // Missing, partial or wrong: refused, the code naming the check that caught it.
                for bad in [&[][..], &[("tenant", "t-1")][..], &[("tenant", "t-2"), ("purpose", "x")][..]] {
                    let e = decrypt_with(k.as_ref(), &ct, bad).unwrap_err();
                    assert_eq!(e.code().as_str(), *missing, "{suite} {bad:?}: {e}");
                }
                // An extra pair the message was not written with fails the same way.
                let e = decrypt_with(k.as_ref(), &ct, &[("tenant", "t-1"), ("purpose", "x"), ("extra", "1")]).unwrap_err();
                assert_eq!(e.code().as_str(), *missing);
                assert!(e.detail().contains("authenticate-only"), "{e}");
                // A stored pair with another value is refused before any key work.
                assert_eq!(code(decrypt_with(k.as_ref(), &ct, &[("owner", "bob"), ("tenant", "t-1"), ("purpose", "x")])), "ENCRYPTION_CONTEXT_MISMATCH");
            }
        }
    }
}

case! {
    fn keyrings_see_the_whole_context_on_both_sides() {
        let k = Seen { inner: raw_rsa(RsaPadding::OaepSha1), contexts: Mutex::new(Vec::new()) };
        let ct = encrypt(&k, b"abc", &required(S0478, &[("a", "1"), ("b", "2")], &["b"]));
        assert!(decrypt_with(&k, &ct, &[("b", "2")]).is_ok());
        let seen = k.contexts.lock().unwrap().clone();
        assert_eq!(seen, vec![ctx(&[("a", "1"), ("b", "2")]), ctx(&[("a", "1"), ("b", "2")])]);
        // Streaming decryption takes the same reproduced context.
        let mut dec = Client::new().decryptor(&reproduced(&[("b", "2")]));
        let mut out = Vec::new();
        assert_eq!(now(dec.update(&ct, &mut out)).unwrap(), DecryptStatus::NeedDataKey);
        assert_eq!(dec.materials().unwrap().encryption_context, ctx(&[("a", "1"), ("b", "2")]));
        now(dec.unwrap_data_key(&k)).unwrap();
        now(dec.update(&[], &mut out)).unwrap();
        assert_eq!(out, b"abc");
    }
}

case! {
    fn every_context_authenticate_only_and_range_reads() {
        let k = raw_aes(128);
        let pt = plaintext(1000);
        let ct = encrypt(&k, &pt, &required(S0478, &[("tenant", "t-1")], &["tenant"]));
        let (h, _) = parse_header(&ct).unwrap();
        assert!(h.encryption_context.is_empty());
        let client = Client::new();
        let r = now(client.decrypt_range(&k, &ct, 250, 420, &reproduced(&[("tenant", "t-1")]))).unwrap();
        assert_eq!(r.plaintext, pt[250..420]);
        assert_eq!(code(now(client.decrypt_range(&k, &ct, 250, 420, &DecryptOptions::default()))), "NO_DECRYPTABLE_KEY");
    }
}

case! {
    fn required_keys_must_have_values_and_reserved_keys_cannot_be_reproduced() {
        let k = raw_aes(256);
        let o = required(S0478, &[("a", "1")], &["b"]);
        assert_eq!(code(now(Client::new().encrypt(&k, b"x", &o))), "INVALID_ARGUMENT");
        // aws-crypto- keys are the SDK's own: reproducing one the header
        // does not store is refused.
        let ct = encrypt(&k, b"x", &opts(S0478, 100, &ctx(&[])));
        assert_eq!(code(decrypt_with(&k, &ct, &[("aws-crypto-public-key", "AAAA")])), "RESERVED_ENCRYPTION_CONTEXT_KEY");
        // The signing suite's stored public key may be reproduced, with its value.
        let signed = encrypt(&k, b"x", &opts(S0578, 100, &ctx(&[])));
        let (h, _) = parse_header(&signed).unwrap();
        let pk = h.encryption_context[PUBLIC_KEY_CONTEXT_KEY].clone();
        assert!(decrypt_with(&k, &signed, &[(PUBLIC_KEY_CONTEXT_KEY, &pk)]).is_ok());
        assert_eq!(code(decrypt_with(&k, &signed, &[(PUBLIC_KEY_CONTEXT_KEY, "other")])), "ENCRYPTION_CONTEXT_MISMATCH");
    }
}
