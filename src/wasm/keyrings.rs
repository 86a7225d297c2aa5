//! Keyrings for JavaScript. One opaque `Keyring` class with a factory per
//! kind; the package entry gives them their ESDK-style names
//! (`new KmsRsaKeyring({...})`).

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use zeroize::Zeroizing;

use super::convert::{bytes, context_to_js, field, string_field};
use super::error::{bad_arg, from_js, to_js};
use crate::error::{err, ErrorCode, Result};
use crate::keyring::{
    CacheLimits, CachingKeyring, KmsDecrypt, KmsDecryptRequest, KmsDecryptResponse, KmsRsaAlgorithm, KmsRsaKeyring, MultiKeyring, RawAesKeyring,
    RawRsaKeyring, RsaPadding,
};

/// A keyring usable with `encrypt`, `decrypt` and the streams.
#[wasm_bindgen]
pub struct Keyring {
    pub(crate) inner: Arc<dyn crate::keyring::Keyring>,
    kind: &'static str,
}

#[wasm_bindgen]
impl Keyring {
    /// The AWS KMS RSA keyring:
    /// `{ keyArn, publicKey, encryptionAlgorithm?, kmsDecrypt?, allowedKeyArns?, publicKeyFingerprint? }`.
    ///
    /// `publicKey` is DER SPKI (`Uint8Array`), PEM, or the KMS GetPublicKey
    /// response (`{ KeyId, PublicKey: base64, KeyUsage, EncryptionAlgorithms }`).
    /// `kmsDecrypt({ keyId, ciphertextBlob, encryptionAlgorithm, encryptionContext })`
    /// resolves to `{ plaintext, keyId }` (plaintext as bytes or base64).
    /// `allowedKeyArns` and `publicKeyFingerprint` (SHA-256 of the DER SPKI,
    /// hex or base64) pin the key: whoever serves the public key could
    /// otherwise substitute their own.
    #[wasm_bindgen(js_name = kmsRsa)]
    pub fn kms_rsa(opts: JsValue) -> core::result::Result<Keyring, JsValue> {
        let arn = string_field(&opts, "keyArn")?.ok_or_else(|| bad_arg("keyArn", "is required"))?;
        let alg = match string_field(&opts, "encryptionAlgorithm")? {
            Some(a) => KmsRsaAlgorithm::parse(&a).map_err(to_js)?,
            None => KmsRsaAlgorithm::RsaesOaepSha256,
        };
        if let Some(allowed) = field(&opts, "allowedKeyArns") {
            let list: Vec<String> = js_sys::Array::from(&allowed).iter().filter_map(|v| v.as_string()).collect();
            if !list.contains(&arn) {
                return Err(to_js(err!(InvalidKey, "key {arn} is not one of allowedKeyArns")));
            }
        }
        let public = match field(&opts, "publicKey") {
            None => None,
            Some(v) => Some(public_key_bytes(&v, &arn, alg)?),
        };
        let mut k = KmsRsaKeyring::new(&arn, public.as_deref(), alg).map_err(to_js)?;
        if let Some(pin) = string_field(&opts, "publicKeyFingerprint")? {
            let have = k
                .public_key_fingerprint()
                .ok_or_else(|| bad_arg("publicKeyFingerprint", "needs publicKey"))?;
            let want = decode_fingerprint(&pin).ok_or_else(|| bad_arg("publicKeyFingerprint", "is not 32 bytes of hex or base64"))?;
            if have != want {
                return Err(to_js(err!(InvalidKey, "the public key does not match the pinned fingerprint")));
            }
        }
        if let Some(f) = field(&opts, "kmsDecrypt") {
            let f: Function = f.dyn_into().map_err(|_| bad_arg("kmsDecrypt", "must be a function"))?;
            k = k.with_kms_decrypt(Arc::new(JsKmsDecrypt(f)));
        }
        Ok(Keyring { inner: Arc::new(k), kind: "KmsRsaKeyring" })
    }

    /// The raw RSA keyring: `{ keyNamespace, keyName, publicKey?, privateKey?, padding? }`
    /// (PEM or DER; padding `oaep-sha256` by default).
    #[wasm_bindgen(js_name = rawRsa)]
    pub fn raw_rsa(opts: JsValue) -> core::result::Result<Keyring, JsValue> {
        let ns = string_field(&opts, "keyNamespace")?.ok_or_else(|| bad_arg("keyNamespace", "is required"))?;
        let name = string_field(&opts, "keyName")?.ok_or_else(|| bad_arg("keyName", "is required"))?;
        let padding = RsaPadding::parse(&string_field(&opts, "padding")?.unwrap_or_else(|| "oaep-sha256".into())).map_err(to_js)?;
        let key = |n: &str| -> core::result::Result<Option<Zeroizing<Vec<u8>>>, JsValue> {
            Ok(match field(&opts, n) {
                None => None,
                Some(v) => Some(Zeroizing::new(match v.as_string() {
                    Some(s) => s.into_bytes(),
                    None => bytes(&v, n)?,
                })),
            })
        };
        let (public, private) = (key("publicKey")?, key("privateKey")?);
        let k = RawRsaKeyring::new(&ns, &name, padding, public.as_deref().map(|v| &v[..]), private.as_deref().map(|v| &v[..]))
            .map_err(to_js)?;
        Ok(Keyring { inner: Arc::new(k), kind: "RawRsaKeyring" })
    }

    /// The raw AES keyring: `{ keyNamespace, keyName, wrappingKey }` (16, 24 or 32 bytes).
    #[wasm_bindgen(js_name = rawAes)]
    pub fn raw_aes(opts: JsValue) -> core::result::Result<Keyring, JsValue> {
        let ns = string_field(&opts, "keyNamespace")?.ok_or_else(|| bad_arg("keyNamespace", "is required"))?;
        let name = string_field(&opts, "keyName")?.ok_or_else(|| bad_arg("keyName", "is required"))?;
        let key = Zeroizing::new(bytes(&field(&opts, "wrappingKey").ok_or_else(|| bad_arg("wrappingKey", "is required"))?, "wrappingKey")?);
        let k = RawAesKeyring::new(&ns, &name, &key).map_err(to_js)?;
        Ok(Keyring { inner: Arc::new(k), kind: "RawAesKeyring" })
    }

    /// A keyring that caches what `inner` unwraps in `cache`:
    /// `{ maxAge? (seconds above 0, 300), maxMessages? (1 to 2^32, 2^32), maxBytes? (2^63 - 1),
    /// partition? (a unique one; name one to share entries), reuseDataKeys? (false) }`.
    /// See `CachingKeyring` in the package docs.
    pub fn caching(inner: &Keyring, cache: &MaterialsCache, opts: JsValue) -> core::result::Result<Keyring, JsValue> {
        let num = |name: &str| -> core::result::Result<Option<f64>, JsValue> {
            match field(&opts, name) {
                None => Ok(None),
                Some(v) => match v.as_f64() {
                    Some(n) if n >= 0.0 => Ok(Some(n)),
                    _ => Err(bad_arg(name, "must be a non-negative number")),
                },
            }
        };
        let d = CacheLimits::default();
        let limits = CacheLimits {
            max_age_secs: num("maxAge")?.unwrap_or(d.max_age_secs),
            max_messages: num("maxMessages")?.map(|n| n as u64).unwrap_or(d.max_messages),
            max_bytes: num("maxBytes")?.map(|n| n as u64).unwrap_or(d.max_bytes),
        };
        let reuse = field(&opts, "reuseDataKeys").map(|v| v.is_truthy()).unwrap_or(false);
        let mut k = CachingKeyring::new(inner.inner.clone(), cache.inner.clone(), limits).map_err(to_js)?.with_data_key_reuse(reuse);
        if let Some(p) = string_field(&opts, "partition")? {
            k = k.with_partition(&p);
        }
        Ok(Keyring { inner: Arc::new(k), kind: "CachingKeyring" })
    }

    /// A copy of this handle (keyrings are immutable and shared).
    #[wasm_bindgen(js_name = clone)]
    pub fn clone_handle(&self) -> Keyring {
        Keyring { inner: self.inner.clone(), kind: self.kind }
    }

    /// The keyring's kind, e.g. `"KmsRsaKeyring"`.
    #[wasm_bindgen(getter)]
    pub fn kind(&self) -> String {
        self.kind.to_owned()
    }
}

/// A bounded in-memory cache of data keys for `CachingKeyring`s; entries are
/// zeroized when evicted.
#[wasm_bindgen]
pub struct MaterialsCache {
    inner: Arc<crate::keyring::MaterialsCache>,
}

#[wasm_bindgen]
impl MaterialsCache {
    /// A cache of at most `capacity` entries (default 1000).
    #[wasm_bindgen(constructor)]
    pub fn new(capacity: Option<u32>) -> MaterialsCache {
        MaterialsCache { inner: Arc::new(crate::keyring::MaterialsCache::new(capacity.unwrap_or(1000) as usize)) }
    }

    /// Entries held now.
    #[wasm_bindgen(getter)]
    pub fn size(&self) -> u32 {
        self.inner.len() as u32
    }

    /// Drops every entry.
    pub fn clear(&self) {
        self.inner.clear();
    }
}

/// `createMultiKeyring(generator, children)`: the generator (may be
/// `undefined`) makes and wraps the data key, every child wraps it too; on
/// decrypt each is tried in turn. The handles passed are consumed: pass
/// `keyring.clone()` to keep using one.
#[wasm_bindgen(js_name = createMultiKeyring)]
pub fn create_multi_keyring(generator: Option<Keyring>, children: Vec<Keyring>) -> core::result::Result<Keyring, JsValue> {
    let k = MultiKeyring::new(generator.map(|g| g.inner), children.into_iter().map(|c| c.inner).collect()).map_err(to_js)?;
    Ok(Keyring { inner: Arc::new(k), kind: "MultiKeyring" })
}

fn decode_fingerprint(s: &str) -> Option<[u8; 32]> {
    let t = s.trim().trim_start_matches("sha256:");
    let v = hex::decode(t).ok().or_else(|| B64.decode(t).ok())?;
    v.try_into().ok()
}

/// DER/PEM bytes, or a KMS GetPublicKey response checked against the keyring's settings.
fn public_key_bytes(v: &JsValue, arn: &str, alg: KmsRsaAlgorithm) -> core::result::Result<Vec<u8>, JsValue> {
    if let Some(pem) = v.as_string() {
        return Ok(pem.into_bytes());
    }
    if v.is_instance_of::<Uint8Array>() || v.is_instance_of::<js_sys::ArrayBuffer>() || js_sys::ArrayBuffer::is_view(v) {
        return bytes(v, "publicKey");
    }
    // A GetPublicKey response.
    let pk = field(v, "PublicKey").ok_or_else(|| bad_arg("publicKey", "must be DER bytes, PEM, or a KMS GetPublicKey response"))?;
    if let Some(id) = string_field(v, "KeyId")? {
        if id != arn {
            return Err(to_js(err!(InvalidKey, "the public key belongs to {id}, not {arn}")));
        }
    }
    if let Some(usage) = string_field(v, "KeyUsage")? {
        if usage != "ENCRYPT_DECRYPT" {
            return Err(to_js(err!(InvalidKey, "KMS key usage is {usage}; ENCRYPT_DECRYPT is needed")));
        }
    }
    if let Some(algs) = field(v, "EncryptionAlgorithms") {
        let list: Vec<String> = js_sys::Array::from(&algs).iter().filter_map(|a| a.as_string()).collect();
        if !list.iter().any(|a| a == alg.as_str()) {
            return Err(to_js(err!(InvalidKey, "the KMS key does not support {}", alg.as_str())));
        }
    }
    match pk.as_string() {
        Some(b64) => B64.decode(b64.trim()).map_err(|_| bad_arg("publicKey.PublicKey", "is not base64")),
        None => bytes(&pk, "publicKey.PublicKey"),
    }
}

/// A JavaScript `kmsDecrypt` callback as a [`KmsDecrypt`].
struct JsKmsDecrypt(Function);

#[async_trait::async_trait(?Send)]
impl KmsDecrypt for JsKmsDecrypt {
    async fn decrypt(&self, req: KmsDecryptRequest) -> Result<KmsDecryptResponse> {
        let arg = Object::new();
        let set = |k: &str, v: JsValue| {
            let _ = Reflect::set(&arg, &k.into(), &v);
        };
        set("keyId", req.key_id.as_str().into());
        set("ciphertextBlob", Uint8Array::from(req.ciphertext_blob.as_slice()).into());
        set("encryptionAlgorithm", req.encryption_algorithm.as_str().into());
        set("encryptionContext", context_to_js(&req.encryption_context).into());
        let ret = self.0.call1(&JsValue::UNDEFINED, &arg).map_err(|e| from_js(&e, ErrorCode::KmsError))?;
        let resolved = JsFuture::from(Promise::resolve(&ret)).await.map_err(|e| from_js(&e, ErrorCode::KmsError))?;
        let key_id = field(&resolved, "keyId")
            .or_else(|| field(&resolved, "KeyId"))
            .and_then(|v| v.as_string())
            .ok_or_else(|| err!(KmsResponseInvalid, "kmsDecrypt returned no keyId"))?;
        let pt = field(&resolved, "plaintext")
            .or_else(|| field(&resolved, "Plaintext"))
            .ok_or_else(|| err!(KmsResponseInvalid, "kmsDecrypt returned no plaintext"))?;
        let plaintext = match pt.as_string() {
            Some(b64) => B64
                .decode(b64.trim())
                .map_err(|_| err!(KmsResponseInvalid, "kmsDecrypt plaintext is not base64"))?,
            None => bytes(&pt, "plaintext").map_err(|_| err!(KmsResponseInvalid, "kmsDecrypt plaintext is not bytes"))?,
        };
        // Best effort: wipe the caller's copy of the key material.
        if let Some(a) = pt.dyn_ref::<Uint8Array>() {
            a.fill(0, 0, a.length());
        }
        Ok(KmsDecryptResponse { key_id, plaintext: Zeroizing::new(plaintext) })
    }
}
