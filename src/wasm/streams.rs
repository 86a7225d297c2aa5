//! Streaming for JavaScript: `encryptStream` / `decryptStream` return a
//! `TransformStream<Uint8Array, Uint8Array>`; `Encryptor` / `Decryptor` are
//! the same machines driven by hand.
//!
//! Backpressure comes from the TransformStream itself: it does not call
//! `transform` again until the promise of the previous call settles, and
//! does not pull from the writable side while the readable side is full.
//! Each call holds at most one input chunk and about one frame of output.
//! The stream's `messageHeader` property is a promise of the header; for
//! decryption it resolves once the data key is unwrapped, before any
//! plaintext flows. An errored stream means nothing after the last
//! delivered chunk can be trusted.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::future_to_promise;

use super::api::{client, client_capturing, client_recording, decrypt_options, decrypt_step, encrypt_options, KeySlot};
use super::webcrypto::Capture;
use super::frames::{as_u8_array, seal_chunk, seal_chunk_list, Out, WebKey};
use super::pool::{Pool, PoolSealer};
use super::convert::{bytes, header_to_js};
use super::error::{bad_arg, to_js};
use super::keyrings::Keyring;
use crate::error::err;
use crate::stream::{DecryptStatus, Decryptor as CoreDecryptor, Encryptor as CoreEncryptor};

type Shared<T> = Rc<RefCell<Option<T>>>;

/// A promise whose settle functions are kept for later.
struct Deferred {
    promise: Promise,
    resolve: Function,
    reject: Function,
}

impl Deferred {
    fn new() -> Deferred {
        let mut slots: (Option<Function>, Option<Function>) = (None, None);
        let promise = Promise::new(&mut |res, rej| slots = (Some(res), Some(rej)));
        // Unobserved rejections must not become unhandled-rejection noise.
        let noop = Closure::once_into_js(|_: JsValue| {});
        if let Ok(catch) = Reflect::get(&promise, &"catch".into()).and_then(|c| c.dyn_into::<Function>()) {
            let _ = catch.call1(&promise, &noop);
        }
        Deferred { promise, resolve: slots.0.expect("executor ran"), reject: slots.1.expect("executor ran") }
    }
    fn resolve(&self, v: &JsValue) {
        let _ = self.resolve.call1(&JsValue::UNDEFINED, v);
    }
    fn reject(&self, v: &JsValue) {
        let _ = self.reject.call1(&JsValue::UNDEFINED, v);
    }
}

fn taken() -> JsValue {
    to_js(err!(InvalidState, "the stream is finished or failed"))
}

fn chunk_bytes(chunk: &JsValue) -> Result<Vec<u8>, JsValue> {
    bytes(chunk, "chunk")
}

fn enqueue(controller: &JsValue, out: &[u8]) -> Result<(), JsValue> {
    if out.is_empty() {
        return Ok(());
    }
    let f: Function = Reflect::get(controller, &"enqueue".into())?.unchecked_into();
    f.call1(controller, &Uint8Array::from(out).into()).map(|_| ())
}

/// An encryptor with, when WebCrypto holds its key, the fast frame driver,
/// or with a worker pool as well, the pooled one.
enum Sealer {
    Direct { enc: CoreEncryptor, web: Option<WebKey> },
    Pooled(PoolSealer),
}

impl Sealer {
    fn new(enc: CoreEncryptor, web: Option<WebKey>) -> Sealer {
        let web = if enc.is_signing() { None } else { web };
        Sealer::Direct { enc, web }
    }

    /// With a pool, where it can serve (WebCrypto holds the key, no signature).
    fn with_pool(enc: CoreEncryptor, web: Option<WebKey>, pool: Option<Pool>) -> Sealer {
        match (web, pool) {
            (Some(key), Some(pool)) => match PoolSealer::new(enc, key.clone(), pool) {
                Ok(p) => Sealer::Pooled(p),
                Err(enc) => Sealer::new(*enc, Some(key)),
            },
            (web, _) => Sealer::new(enc, web),
        }
    }

    fn encryptor(&self) -> &CoreEncryptor {
        match self {
            Sealer::Direct { enc, .. } => enc,
            Sealer::Pooled(p) => p.encryptor(),
        }
    }

    async fn update(&mut self, chunk: &JsValue) -> Result<Uint8Array, JsValue> {
        match self {
            Sealer::Pooled(p) => Ok(join(pooled_update(p, chunk).await?)),
            Sealer::Direct { enc, web } => direct_update(enc, web.as_ref(), chunk).await,
        }
    }

    /// As `update`, as a list of arrays passed on without copying.
    async fn update_chunks(&mut self, chunk: &JsValue) -> Result<Vec<Uint8Array>, JsValue> {
        match self {
            Sealer::Pooled(p) => pooled_update(p, chunk).await,
            Sealer::Direct { enc, web } => {
                if let (Some(key), Some(js)) = (&*web, as_u8_array(chunk)) {
                    if let Some(out) = seal_chunk_list(enc, key, &js, false).await.map_err(to_js)? {
                        return Ok(out);
                    }
                }
                Ok(vec![direct_update(enc, None, chunk).await?])
            }
        }
    }

    async fn finish_chunks(self) -> Result<Vec<Uint8Array>, JsValue> {
        match self {
            Sealer::Pooled(p) => pooled_finish(p).await,
            Sealer::Direct { mut enc, web } => {
                if let Some(key) = &web {
                    let empty = Uint8Array::new_with_length(0);
                    if let Some(out) = seal_chunk_list(&mut enc, key, &empty, true).await.map_err(to_js)? {
                        return Ok(out);
                    }
                }
                Ok(vec![direct_finish(enc, None).await?])
            }
        }
    }

    async fn finish(self) -> Result<Uint8Array, JsValue> {
        match self {
            Sealer::Pooled(p) => Ok(join(pooled_finish(p).await?)),
            Sealer::Direct { enc, web } => direct_finish(enc, web.as_ref()).await,
        }
    }
}

async fn direct_update(enc: &mut CoreEncryptor, web: Option<&WebKey>, chunk: &JsValue) -> Result<Uint8Array, JsValue> {
    if let (Some(key), Some(js)) = (web, as_u8_array(chunk)) {
        if let Some(out) = seal_chunk(enc, key, &js, false).await.map_err(to_js)? {
            return Ok(out);
        }
    }
    let input = chunk_bytes(chunk)?;
    let mut out = Vec::with_capacity(input.len() + 1024);
    enc.update(&input, &mut out).await.map_err(to_js)?;
    Ok(Uint8Array::from(out.as_slice()))
}

async fn direct_finish(mut enc: CoreEncryptor, web: Option<&WebKey>) -> Result<Uint8Array, JsValue> {
    if let Some(key) = web {
        if let Some(out) = seal_chunk(&mut enc, key, &Uint8Array::new_with_length(0), true).await.map_err(to_js)? {
            return Ok(out);
        }
    }
    let mut out = Vec::new();
    enc.finish(&mut out).await.map_err(to_js)?;
    Ok(Uint8Array::from(out.as_slice()))
}

async fn pooled_update(p: &mut PoolSealer, chunk: &JsValue) -> Result<Vec<Uint8Array>, JsValue> {
    let js = match as_u8_array(chunk) {
        Some(js) => js,
        None => Uint8Array::from(chunk_bytes(chunk)?.as_slice()),
    };
    let mut out = Out::chunks();
    p.update(&js, &mut out).await.map_err(to_js)?;
    Ok(out.into_list())
}

async fn pooled_finish(mut p: PoolSealer) -> Result<Vec<Uint8Array>, JsValue> {
    let mut out = Out::chunks();
    if p.finish(&mut out).await.map_err(to_js)? {
        return Ok(out.into_list());
    }
    // An empty message: nothing went to the pool.
    Ok(vec![direct_finish(p.into_encryptor(), None).await?])
}

/// One array of several.
fn join(list: Vec<Uint8Array>) -> Uint8Array {
    if list.len() == 1 {
        return list.into_iter().next().expect("one");
    }
    let all = Uint8Array::new_with_length(list.iter().map(|a| a.length()).sum());
    let mut off = 0;
    for a in &list {
        all.set(a, off);
        off += a.length();
    }
    all
}

fn enqueue_js(controller: &JsValue, out: &Uint8Array) -> Result<(), JsValue> {
    if out.length() == 0 {
        return Ok(());
    }
    let f: Function = Reflect::get(controller, &"enqueue".into())?.unchecked_into();
    f.call1(controller, out).map(|_| ())
}

/// Builds `new TransformStream({ start, transform, flush })` from closures.
fn transform_stream(
    start: Closure<dyn FnMut(JsValue) -> Promise>,
    transform: Closure<dyn FnMut(JsValue, JsValue) -> Promise>,
    flush: Closure<dyn FnMut(JsValue) -> Promise>,
) -> Result<Object, JsValue> {
    let t = Object::new();
    Reflect::set(&t, &"start".into(), &start.into_js_value())?;
    Reflect::set(&t, &"transform".into(), &transform.into_js_value())?;
    Reflect::set(&t, &"flush".into(), &flush.into_js_value())?;
    let ctor: Function = Reflect::get(&js_sys::global(), &"TransformStream".into())?
        .dyn_into()
        .map_err(|_| to_js(err!(InvalidState, "this JavaScript environment has no TransformStream")))?;
    Ok(Reflect::construct(&ctor, &js_sys::Array::of1(&t))?.unchecked_into())
}

/// Encrypts what is written to it: `file.stream().pipeThrough(encryptStream(keyring, opts))`.
#[wasm_bindgen(js_name = encryptStream)]
pub fn encrypt_stream(keyring: &Keyring, opts: JsValue) -> Result<Object, JsValue> {
    let slot: KeySlot = Rc::new(RefCell::new(None));
    let client = client_recording(&opts, Some(slot.clone()))?;
    let o = encrypt_options(&opts)?;
    let pool = Pool::from_options(&opts)?;
    let inner = keyring.inner.clone();
    let state: Shared<Sealer> = Rc::new(RefCell::new(None));
    let header = Rc::new(Deferred::new());

    let (s, h) = (state.clone(), header.clone());
    let start = Closure::wrap(Box::new(move |_controller: JsValue| {
        let (s, h, inner, client, o, slot, pool) = (s.clone(), h.clone(), inner.clone(), client.clone(), o.clone(), slot.clone(), pool.clone());
        future_to_promise(async move {
            match client.encryptor(inner.as_ref(), &o).await {
                Ok(enc) => {
                    h.resolve(&header_to_js(enc.header()).into());
                    let web = slot.borrow_mut().take();
                    *s.borrow_mut() = Some(Sealer::with_pool(enc, web, pool));
                    Ok(JsValue::UNDEFINED)
                }
                Err(e) => {
                    let e = to_js(e);
                    h.reject(&e);
                    Err(e)
                }
            }
        })
    }) as Box<dyn FnMut(JsValue) -> Promise>);

    let s = state.clone();
    let transform = Closure::wrap(Box::new(move |chunk: JsValue, controller: JsValue| {
        let s = s.clone();
        future_to_promise(async move {
            let mut sealer = s.borrow_mut().take().ok_or_else(taken)?;
            let out = sealer.update_chunks(&chunk).await?;
            *s.borrow_mut() = Some(sealer);
            for c in &out {
                enqueue_js(&controller, c)?;
            }
            Ok(JsValue::UNDEFINED)
        })
    }) as Box<dyn FnMut(JsValue, JsValue) -> Promise>);

    let s = state;
    let flush = Closure::wrap(Box::new(move |controller: JsValue| {
        let s = s.clone();
        future_to_promise(async move {
            let sealer = s.borrow_mut().take().ok_or_else(taken)?;
            for c in &sealer.finish_chunks().await? {
                enqueue_js(&controller, c)?;
            }
            Ok(JsValue::UNDEFINED)
        })
    }) as Box<dyn FnMut(JsValue) -> Promise>);

    let ts = transform_stream(start, transform, flush)?;
    Reflect::set(&ts, &"messageHeader".into(), &header.promise)?;
    Ok(ts)
}

/// Decrypts what is written to it, releasing each frame once it authenticates.
#[wasm_bindgen(js_name = decryptStream)]
pub fn decrypt_stream(keyring: &Keyring, opts: JsValue) -> Result<Object, JsValue> {
    let capture = Rc::new(Capture::with_pool(Pool::from_options(&opts)?));
    let client = client_capturing(&opts, capture.clone())?;
    let o = decrypt_options(&opts)?;
    let inner = keyring.inner.clone();
    let state: Shared<CoreDecryptor> = Rc::new(RefCell::new(Some(client.decryptor(&o))));
    let header = Rc::new(Deferred::new());

    let start = Closure::wrap(Box::new(|_c: JsValue| Promise::resolve(&JsValue::UNDEFINED)) as Box<dyn FnMut(JsValue) -> Promise>);

    let capture_end = capture.clone();
    let (s, h) = (state.clone(), header.clone());
    let transform = Closure::wrap(Box::new(move |chunk: JsValue, controller: JsValue| {
        let (s, h, inner, capture) = (s.clone(), h.clone(), inner.clone(), capture.clone());
        future_to_promise(async move {
            let input = chunk_bytes(&chunk)?;
            let mut dec = s.borrow_mut().take().ok_or_else(taken)?;
            let had_header = dec.header().is_some();
            let mut out = Vec::new();
            let r = decrypt_step(&mut dec, inner.as_ref(), &capture, &input, &mut out).await;
            // Frames that authenticated before a failure are still delivered, then the error.
            let frames = capture.take();
            if let Err(e) = r {
                let e = to_js(e);
                h.reject(&e);
                for f in &frames {
                    enqueue_js(&controller, f)?;
                }
                enqueue(&controller, &out)?;
                return Err(e);
            }
            if !had_header {
                if let Some(hd) = dec.header() {
                    h.resolve(&header_to_js(hd).into());
                }
            }
            *s.borrow_mut() = Some(dec);
            for f in &frames {
                enqueue_js(&controller, f)?;
            }
            enqueue(&controller, &out)?;
            Ok(JsValue::UNDEFINED)
        })
    }) as Box<dyn FnMut(JsValue, JsValue) -> Promise>);

    let (s, h) = (state, header.clone());
    let flush = Closure::wrap(Box::new(move |controller: JsValue| {
        let (s, h, capture) = (s.clone(), h.clone(), capture_end.clone());
        future_to_promise(async move {
            let dec = s.borrow_mut().take().ok_or_else(taken)?;
            // Frames still with a worker pool: delivered once authenticated.
            let flushed = capture.flush().await;
            for f in &capture.take() {
                enqueue_js(&controller, f)?;
            }
            flushed.and_then(|()| dec.finish().map(|_| ())).map_err(|e| {
                let e = to_js(e);
                h.reject(&e);
                e
            })?;
            Ok(JsValue::UNDEFINED)
        })
    }) as Box<dyn FnMut(JsValue) -> Promise>);

    let ts = transform_stream(start, transform, flush)?;
    Reflect::set(&ts, &"messageHeader".into(), &header.promise)?;
    Ok(ts)
}

/// An encryptor driven by hand: `await Encryptor.start(keyring, opts)`, then
/// `update(chunk)` and `finish()`, each resolving to the message bytes produced.
#[wasm_bindgen]
pub struct Encryptor {
    inner: Shared<Sealer>,
    header: JsValue,
}

#[wasm_bindgen]
impl Encryptor {
    /// Wraps a fresh data key with `keyring` and prepares the header.
    pub fn start(keyring: &Keyring, opts: JsValue) -> Promise {
        let inner = keyring.inner.clone();
        future_to_promise(async move {
            let slot: KeySlot = Rc::new(RefCell::new(None));
            let client = client_recording(&opts, Some(slot.clone()))?;
            let o = encrypt_options(&opts)?;
            let pool = Pool::from_options(&opts)?;
            let enc = client.encryptor(inner.as_ref(), &o).await.map_err(to_js)?;
            let web = slot.borrow_mut().take();
            Ok(Encryptor {
                header: header_to_js(enc.header()).into(),
                inner: Rc::new(RefCell::new(Some(Sealer::with_pool(enc, web, pool)))),
            }
            .into())
        })
    }

    /// The message header (available at once).
    #[wasm_bindgen(getter, js_name = messageHeader)]
    pub fn message_header(&self) -> JsValue {
        self.header.clone()
    }

    /// Exact message size for a plaintext of `plaintext_size` bytes.
    #[wasm_bindgen(js_name = encryptedSize)]
    pub fn encrypted_size(&self, plaintext_size: f64) -> Result<f64, JsValue> {
        let b = self.inner.borrow();
        let enc = b.as_ref().ok_or_else(taken)?.encryptor();
        enc.encrypted_size(plaintext_size as u64).map(|n| n as f64).ok_or_else(|| bad_arg("plaintextSize", "too large"))
    }

    /// Encrypts a chunk; resolves to the bytes ready so far (may be empty).
    pub fn update(&self, chunk: JsValue) -> Promise {
        let s = self.inner.clone();
        future_to_promise(async move {
            let mut sealer = s.borrow_mut().take().ok_or_else(taken)?;
            let out = sealer.update(&chunk).await?;
            *s.borrow_mut() = Some(sealer);
            Ok(out.into())
        })
    }

    /// Ends the message; resolves to its last bytes.
    pub fn finish(&self) -> Promise {
        let s = self.inner.clone();
        future_to_promise(async move {
            let sealer = s.borrow_mut().take().ok_or_else(taken)?;
            Ok(sealer.finish().await?.into())
        })
    }
}

/// A decryptor driven by hand: `new Decryptor(keyring, opts)`, then
/// `update(chunk)` (resolving to authenticated plaintext) and `finish()`.
#[wasm_bindgen]
pub struct Decryptor {
    inner: Shared<CoreDecryptor>,
    keyring: std::sync::Arc<dyn crate::keyring::Keyring>,
}

#[wasm_bindgen]
impl Decryptor {
    /// A decryptor for one message.
    #[wasm_bindgen(constructor)]
    pub fn new(keyring: &Keyring, opts: JsValue) -> Result<Decryptor, JsValue> {
        let client = client(&opts)?;
        let o = decrypt_options(&opts)?;
        Ok(Decryptor { inner: Rc::new(RefCell::new(Some(client.decryptor(&o)))), keyring: keyring.inner.clone() })
    }

    /// The header once parsed, else `undefined`.
    #[wasm_bindgen(getter, js_name = messageHeader)]
    pub fn message_header(&self) -> JsValue {
        self.inner.borrow().as_ref().and_then(|d| d.header()).map(|h| header_to_js(h).into()).unwrap_or(JsValue::UNDEFINED)
    }

    /// Feeds message bytes; resolves to the plaintext of every frame that authenticated.
    pub fn update(&self, chunk: JsValue) -> Promise {
        let (s, k) = (self.inner.clone(), self.keyring.clone());
        future_to_promise(async move {
            let input = chunk_bytes(&chunk)?;
            let mut dec = s.borrow_mut().take().ok_or_else(taken)?;
            let mut out = Vec::with_capacity(input.len());
            if dec.update(&input, &mut out).await.map_err(to_js)? == DecryptStatus::NeedDataKey {
                dec.unwrap_data_key(k.as_ref()).await.map_err(to_js)?;
                dec.update(&[], &mut out).await.map_err(to_js)?;
            }
            *s.borrow_mut() = Some(dec);
            Ok(Uint8Array::from(out.as_slice()).into())
        })
    }

    /// Ends the input: rejects with `TRUNCATED` unless the message was complete.
    pub fn finish(&self) -> Result<JsValue, JsValue> {
        let dec = self.inner.borrow_mut().take().ok_or_else(taken)?;
        let h = dec.finish().map_err(to_js)?;
        Ok(header_to_js(&h).into())
    }
}
