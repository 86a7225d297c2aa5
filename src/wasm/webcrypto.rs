//! AES-GCM through WebCrypto (`crypto.subtle`), the browser's hardware AES:
//! about 15× faster than AES compiled to wasm. The derived key is imported
//! once per message as a non-extractable `CryptoKey`; each frame is one
//! `encrypt`/`decrypt` call on a view of wasm memory, which WebCrypto copies
//! before it returns its promise.
//!
//! Falls back to RustCrypto where WebCrypto cannot serve: no `crypto.subtle`
//! (insecure contexts), 192-bit keys (browsers refuse them), and zero-length
//! plaintexts (some engines reject empty AES-GCM: the header tag, an empty
//! final frame).

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{CryptoKey, SubtleCrypto};

use super::pool::{Pool, PoolOpen, MAX_POOLED_SEALED};
use crate::aead::{AeadProvider, FrameAead, RustCryptoKey};
use crate::error::{err, Result};

/// `globalThis.crypto.subtle`, in windows, workers and Node alike.
pub(crate) fn subtle() -> Option<SubtleCrypto> {
    let crypto = Reflect::get(&js_sys::global(), &"crypto".into()).ok()?;
    if crypto.is_undefined() || crypto.is_null() {
        return None;
    }
    let subtle = Reflect::get(&crypto, &"subtle".into()).ok()?;
    if subtle.is_undefined() || subtle.is_null() {
        return None;
    }
    Some(subtle.unchecked_into())
}

/// The WebCrypto AEAD provider.
#[derive(Clone, Copy, Debug, Default)]
pub struct WebCryptoAead;

#[async_trait::async_trait(?Send)]
impl AeadProvider for WebCryptoAead {
    async fn new_key(&self, key: &[u8]) -> Result<Box<dyn FrameAead>> {
        let fallback = RustCryptoKey::new(key)?;
        Ok(match import_key(key).await {
            Some((subtle, key)) => WebCryptoKey::new(subtle, key, fallback, None),
            None => Box::new(fallback),
        })
    }
}

/// A WebCryptoAead that also hands the imported key to a driver that
/// encrypts frames straight from JavaScript memory (see `frames.rs`).
pub(crate) struct RecordingWebCrypto(pub(crate) Rc<RefCell<Option<(SubtleCrypto, CryptoKey)>>>);

#[async_trait::async_trait(?Send)]
impl AeadProvider for RecordingWebCrypto {
    async fn new_key(&self, key: &[u8]) -> Result<Box<dyn FrameAead>> {
        let fallback = RustCryptoKey::new(key)?;
        Ok(match import_key(key).await {
            Some((subtle, key)) => {
                *self.0.borrow_mut() = Some((subtle.clone(), key.clone()));
                WebCryptoKey::new(subtle, key, fallback, None)
            }
            None => Box::new(fallback),
        })
    }
}

/// Decrypted frames handed on as WebCrypto's own arrays instead of being
/// copied into the core's output buffer. Enabled only for suites without
/// a signature: a signed message's final frame must wait for its footer,
/// which only the core's held-back buffer guarantees.
///
/// With a worker pool, frames are opened in batches there, and `frames`
/// receives each batch once all of it authenticated.
#[derive(Default)]
pub(crate) struct Capture {
    pub(crate) enabled: core::cell::Cell<bool>,
    pub(crate) frames: RefCell<Vec<Uint8Array>>,
    pool: Option<PoolOpen>,
}

impl Capture {
    pub(crate) fn with_pool(pool: Option<Pool>) -> Capture {
        Capture { pool: pool.map(PoolOpen::new), ..Capture::default() }
    }

    /// The plaintext frames ready (authenticated), in order.
    pub(crate) fn take(&self) -> Vec<Uint8Array> {
        core::mem::take(&mut *self.frames.borrow_mut())
    }

    /// Waits until every frame handed to the pool is opened (or one failed).
    pub(crate) async fn flush(&self) -> Result<()> {
        match &self.pool {
            Some(p) => p.flush(&self.frames).await,
            None => Ok(()),
        }
    }
}

/// A WebCryptoAead whose keys deliver decrypted frames into a [`Capture`].
pub(crate) struct CapturingWebCrypto(pub(crate) Rc<Capture>);

#[async_trait::async_trait(?Send)]
impl AeadProvider for CapturingWebCrypto {
    async fn new_key(&self, key: &[u8]) -> Result<Box<dyn FrameAead>> {
        let fallback = RustCryptoKey::new(key)?;
        Ok(match import_key(key).await {
            Some((subtle, key)) => WebCryptoKey::new(subtle, key, fallback, Some(self.0.clone())),
            None => Box::new(fallback),
        })
    }
}

/// Imports an AES-GCM key into WebCrypto, non-extractable; `None` where
/// WebCrypto cannot serve (no `crypto.subtle`, 192-bit keys, import refused).
pub(crate) async fn import_key(key: &[u8]) -> Option<(SubtleCrypto, CryptoKey)> {
    {
        let subtle = match subtle() {
            Some(s) if key.len() != 24 => s,
            _ => return None,
        };
        let algorithm = Object::new();
        set(&algorithm, "name", &"AES-GCM".into());
        let usages = Array::of2(&"encrypt".into(), &"decrypt".into());
        let key_data = Uint8Array::from(key);
        let imported = subtle
            .import_key_with_object("raw", &key_data.buffer().into(), &algorithm, false, &usages)
            .map_err(|_| err!(EncryptionFailed, "WebCrypto importKey failed"));
        // Best effort: wipe the JS copy of the key bytes once imported.
        let result = match imported {
            Ok(p) => JsFuture::from(p).await.map_err(|_| err!(EncryptionFailed, "WebCrypto importKey failed")),
            Err(e) => Err(e),
        };
        key_data.fill(0, 0, key.len() as u32);
        // A WebCrypto that cannot import AES-GCM keys is no WebCrypto to use.
        result.ok().map(|k| (subtle, k.unchecked_into()))
    }
}

struct WebCryptoKey {
    subtle: SubtleCrypto,
    key: CryptoKey,
    fallback: RustCryptoKey,
    capture: Option<Rc<Capture>>,
    params: RefCell<GcmParams>,
}

impl WebCryptoKey {
    fn new(subtle: SubtleCrypto, key: CryptoKey, fallback: RustCryptoKey, capture: Option<Rc<Capture>>) -> Box<WebCryptoKey> {
        Box::new(WebCryptoKey { subtle, key, fallback, capture, params: RefCell::new(GcmParams::new()) })
    }
}

fn set(o: &Object, k: &str, v: &JsValue) {
    let _ = Reflect::set(o, &k.into(), v);
}

/// An `AesGcmParams` object reused for every frame of a key: only the
/// bytes of its `iv` and `additionalData` arrays change. Safe because
/// WebCrypto copies both while `encrypt`/`decrypt` runs, before returning
/// its promise (WebCrypto, "normalize an algorithm": a copy of the bytes
/// held by each BufferSource member), as it does the data. A fresh object
/// and two fresh arrays per frame cost more than the AES of a small frame.
pub(crate) struct GcmParams {
    obj: Object,
    iv: Uint8Array,
    aad: Uint8Array,
}

impl GcmParams {
    pub(crate) fn new() -> GcmParams {
        let obj = Object::new();
        set(&obj, "name", &"AES-GCM".into());
        set(&obj, "tagLength", &128.into());
        let iv = Uint8Array::new_with_length(12);
        set(&obj, "iv", &iv);
        let aad = Uint8Array::new_with_length(0);
        set(&obj, "additionalData", &aad);
        GcmParams { obj, iv, aad }
    }

    /// The parameters for one frame; valid until the next `fill`.
    pub(crate) fn fill(&mut self, iv: &[u8; 12], aad: &[u8]) -> &Object {
        self.iv.copy_from(iv);
        if self.aad.length() as usize != aad.len() {
            self.aad = Uint8Array::new_with_length(aad.len() as u32);
            set(&self.obj, "additionalData", &self.aad);
        }
        self.aad.copy_from(aad);
        &self.obj
    }
}

async fn resolve(p: core::result::Result<Promise, JsValue>) -> core::result::Result<Uint8Array, ()> {
    let v = JsFuture::from(p.map_err(|_| ())?).await.map_err(|_| ())?;
    Ok(Uint8Array::new(&v))
}

fn append(out: &mut Vec<u8>, arr: &Uint8Array) {
    let start = out.len();
    out.resize(start + arr.length() as usize, 0);
    arr.copy_to(&mut out[start..]);
}

#[async_trait::async_trait(?Send)]
impl FrameAead for WebCryptoKey {
    async fn seal(&self, iv: &[u8; 12], aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if plaintext.is_empty() {
            return self.fallback.seal(iv, aad, plaintext, out).await;
        }
        let p = self.subtle.encrypt_with_object_and_u8_array(self.params.borrow_mut().fill(iv, aad), &self.key, plaintext);
        let sealed = resolve(p)
            .await
            .map_err(|_| err!(EncryptionFailed, "WebCrypto AES-GCM encryption failed"))?;
        append(out, &sealed);
        Ok(())
    }

    async fn open(&self, iv: &[u8; 12], aad: &[u8], sealed: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if sealed.len() <= 16 {
            return self.fallback.open(iv, aad, sealed, out).await;
        }
        if let Some(c) = &self.capture {
            if let (true, Some(pool)) = (c.enabled.get(), &c.pool) {
                if sealed.len() <= MAX_POOLED_SEALED {
                    return pool.open(&self.key, iv, aad, sealed, &c.frames).await;
                }
                // Too large for a batch: what is queued goes first, in order.
                pool.flush(&c.frames).await?;
            }
        }
        let p = self.subtle.decrypt_with_object_and_u8_array(self.params.borrow_mut().fill(iv, aad), &self.key, sealed);
        let plain = resolve(p)
            .await
            .map_err(|_| err!(FrameAuthFailed, "authentication tag does not verify"))?;
        match &self.capture {
            Some(c) if c.enabled.get() => c.frames.borrow_mut().push(plain),
            _ => append(out, &plain),
        }
        Ok(())
    }
}
