//! Test support shared by the native suites and the wasm32 suites (Node and
//! headless Chromium). Everything here runs on both: keys are compiled in,
//! and keyrings complete without an executor.

#![allow(dead_code)]

use std::future::Future;
use std::sync::{Arc, Mutex};

use kms_envelope::*;
use rsa::Oaep;
use zeroize::Zeroizing;

/// Declares a test that runs natively and under wasm-bindgen-test.
#[macro_export]
macro_rules! case {
    ($(#[$m:meta])* fn $name:ident() $body:block) => {
        $(#[$m])*
        #[cfg_attr(not(target_arch = "wasm32"), test)]
        #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
        fn $name() $body
    };
}

/// Runs a future that completes without waiting (all keyrings here do).
pub fn now<F: Future>(f: F) -> F::Output {
    use futures::FutureExt;
    f.now_or_never().expect("future completed synchronously")
}

pub const KEY_ARN: &str = "arn:aws:kms:us-west-2:111122223333:key/0a1b2c3d-0000-4000-8000-000000000001";

pub const RSA_2048: &[u8] = include_bytes!("../vectors/keys/rsa-2048.pem");
pub const RSA_2048_PUB: &[u8] = include_bytes!("../vectors/keys/rsa-2048.pub.pem");
pub const RSA_2048_PUB_DER: &[u8] = include_bytes!("../vectors/keys/rsa-2048.pub.der");
pub const RSA_3072: &[u8] = include_bytes!("../vectors/keys/rsa-3072.pem");
pub const RSA_3072_PUB: &[u8] = include_bytes!("../vectors/keys/rsa-3072.pub.pem");
pub const RSA_4096: &[u8] = include_bytes!("../vectors/keys/rsa-4096.pem");
pub const RSA_4096_PUB: &[u8] = include_bytes!("../vectors/keys/rsa-4096.pub.pem");
pub const RSA_1024_PUB: &[u8] = include_bytes!("../vectors/keys/rsa-1024.pub.pem");
pub const AES_128: &[u8] = include_bytes!("../vectors/keys/aes-128.key");
pub const AES_192: &[u8] = include_bytes!("../vectors/keys/aes-192.key");
pub const AES_256: &[u8] = include_bytes!("../vectors/keys/aes-256.key");

/// Deterministic test plaintext, the same formula the peer scripts use.
pub fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + (i >> 8) * 7 + 11) & 0xFF) as u8).collect()
}

pub fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The contexts of the interop matrix: empty, ASCII, non-ASCII, control characters.
pub fn contexts() -> Vec<EncryptionContext> {
    vec![
        ctx(&[]),
        ctx(&[("owner", "alice"), ("object", "0001"), ("purpose", "test")]),
        ctx(&[("имя", "файл.txt"), ("ключ", "значение"), ("emoji", "🔐"), ("é", "ü")]),
        ctx(&[("ctl\u{1}", "line\nbreak\ttab\u{0}nul"), ("\u{7f}", "\r")]),
    ]
}

pub fn raw_aes(bits: usize) -> RawAesKeyring {
    let key = match bits {
        128 => AES_128,
        192 => AES_192,
        _ => AES_256,
    };
    RawAesKeyring::new("kms-envelope-test", &format!("aes-{bits}"), key).unwrap()
}

pub fn raw_rsa(padding: RsaPadding) -> RawRsaKeyring {
    RawRsaKeyring::new("kms-envelope-test", "rsa-2048", padding, Some(RSA_2048_PUB), Some(RSA_2048)).unwrap()
}

/// A KMS Decrypt test double that behaves like KMS for an asymmetric key:
/// it checks the key id and algorithm, does RSA-OAEP with the private key,
/// and answers with the key ARN. It counts calls and can be told to fail.
pub struct FakeKms {
    pub arn: String,
    key: rsa::RsaPrivateKey,
    pub calls: Mutex<u32>,
    pub mode: Mutex<FakeKmsMode>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FakeKmsMode {
    Normal,
    Throttle,
    WrongKeyId,
}

impl FakeKms {
    pub fn new(arn: &str, private_pem: &[u8]) -> Arc<Self> {
        Arc::new(FakeKms {
            arn: arn.to_owned(),
            key: private_key(private_pem),
            calls: Mutex::new(0),
            mode: Mutex::new(FakeKmsMode::Normal),
        })
    }
}

#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
impl KmsDecrypt for FakeKms {
    async fn decrypt(&self, req: KmsDecryptRequest) -> Result<KmsDecryptResponse> {
        *self.calls.lock().unwrap() += 1;
        let mode = *self.mode.lock().unwrap();
        if mode == FakeKmsMode::Throttle {
            return Err(Error::new(ErrorCode::KmsError, "ThrottlingException: Rate exceeded"));
        }
        if req.key_id != self.arn {
            return Err(Error::new(ErrorCode::KmsError, "IncorrectKeyException"));
        }
        let padding = match req.encryption_algorithm {
            KmsRsaAlgorithm::RsaesOaepSha1 => Oaep::new::<sha1::Sha1>(),
            KmsRsaAlgorithm::RsaesOaepSha256 => Oaep::new::<sha2::Sha256>(),
        };
        let pt = self
            .key
            .decrypt(padding, &req.ciphertext_blob)
            .map_err(|_| Error::new(ErrorCode::KmsError, "InvalidCiphertextException"))?;
        let key_id = if mode == FakeKmsMode::WrongKeyId {
            "arn:aws:kms:us-west-2:111122223333:key/another".to_owned()
        } else {
            self.arn.clone()
        };
        Ok(KmsDecryptResponse { key_id, plaintext: Zeroizing::new(pt) })
    }
}

pub fn private_key(pem: &[u8]) -> rsa::RsaPrivateKey {
    use rsa::pkcs8::DecodePrivateKey;
    rsa::RsaPrivateKey::from_pkcs8_pem(core::str::from_utf8(pem).unwrap()).unwrap()
}

pub fn kms_rsa(alg: KmsRsaAlgorithm) -> (KmsRsaKeyring, Arc<FakeKms>) {
    let kms = FakeKms::new(KEY_ARN, RSA_2048);
    let k = KmsRsaKeyring::new(KEY_ARN, Some(RSA_2048_PUB_DER), alg)
        .unwrap()
        .with_kms_decrypt(kms.clone());
    (k, kms)
}

pub fn opts(suite: AlgorithmSuite, frame_length: u32, c: &EncryptionContext) -> EncryptOptions {
    EncryptOptions { suite, frame_length, encryption_context: c.clone(), plaintext_length: None, ..EncryptOptions::default() }
}

pub fn encrypt(k: &dyn Keyring, pt: &[u8], o: &EncryptOptions) -> Vec<u8> {
    now(Client::new().encrypt(k, pt, o)).unwrap()
}

pub fn decrypt(k: &dyn Keyring, ct: &[u8]) -> Result<Vec<u8>> {
    now(Client::new().decrypt(k, ct, &DecryptOptions::default())).map(|(p, _)| p)
}

pub fn legacy_client() -> Client {
    Client::new().with_commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt)
}

/// Streaming decrypt in the given chunk sizes (cycled). Returns what was
/// released before the outcome, and the outcome.
pub fn stream_decrypt(client: &Client, k: &dyn Keyring, ct: &[u8], chunks: &[usize]) -> (Vec<u8>, Result<()>) {
    let mut dec = client.decryptor(&DecryptOptions::default());
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    let r = (|| {
        while pos < ct.len() {
            let n = chunks[i % chunks.len()].max(1).min(ct.len() - pos);
            i += 1;
            let status = now(dec.update(&ct[pos..pos + n], &mut out))?;
            pos += n;
            if status == DecryptStatus::NeedDataKey {
                now(dec.unwrap_data_key(k))?;
                now(dec.update(&[], &mut out))?;
            }
        }
        Ok(())
    })();
    match r {
        Ok(()) => {
            let fin = dec.finish().map(|_| ());
            (out, fin)
        }
        Err(e) => (out, Err(e)),
    }
}

/// Streaming encrypt in the given chunk sizes (cycled).
pub fn stream_encrypt(k: &dyn Keyring, pt: &[u8], o: &EncryptOptions, chunks: &[usize]) -> Vec<u8> {
    let mut enc = now(Client::new().encryptor(k, o)).unwrap();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < pt.len() {
        let n = chunks[i % chunks.len()].max(1).min(pt.len() - pos);
        i += 1;
        now(enc.update(&pt[pos..pos + n], &mut out)).unwrap();
        pos += n;
    }
    now(enc.finish(&mut out)).unwrap();
    out
}

/// Small deterministic PRNG for chunk sizes and positions (xorshift64*).
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

pub fn code<T: core::fmt::Debug>(r: Result<T>) -> &'static str {
    r.expect_err("expected an error").code().as_str()
}
