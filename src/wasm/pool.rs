//! Frames sealed and opened in batches by a worker pool (`WorkerPool` of
//! the npm package, `pkg-config/api.js` and `pool-worker.js`), so that the
//! cost of WebCrypto calls (copies, fresh result buffers, promise
//! bookkeeping: most of the ~90 µs a 64 KiB frame takes) is spread over the
//! cores.
//!
//! The pool is an object with `run(request) → Promise<{ frames, buffer }>`,
//! `request` being `{ op, key, data, lens, ivs, aads, aadLens }`: the
//! frames' bytes back to back in `data` (its buffer is transferred), their
//! lengths, 12-byte IVs and AADs. `frames` holds one output per frame, in
//! order; `buffer` is `data`'s buffer handed back, reused for a later batch
//! (fresh memory costs page faults: ~1.4 GB/s to fill against ~6 GB/s for
//! memory already touched).
//!
//! This module keeps the format: every frame is laid out by the core
//! (`Encryptor::plan`, or the `Decryptor` that hands each frame to the
//! AEAD) in order, and outputs are written in order; a worker only runs
//! AES-GCM. Memory stays bounded: at most `depth` batches in flight plus
//! the one being filled, each about 1 MiB.

use std::collections::VecDeque;

use js_sys::{Array, ArrayBuffer, Function, Object, Reflect, Uint32Array, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use super::convert::field;
use super::error::bad_arg;
use super::frames::{Out, WebKey};
use crate::error::{err, Result};
use crate::format::body::BodyKind;
use crate::stream::Encryptor;

/// Bytes per batch (a whole number of frames, at least one).
const BATCH_BYTES: usize = 1 << 20;

/// Larger frames are sealed (and opened) on the calling thread.
const MAX_POOLED_FRAME: usize = 16 << 20;

/// The largest sealed frame (content and tag) handed to the pool.
pub(crate) const MAX_POOLED_SEALED: usize = MAX_POOLED_FRAME + 16;

/// The `pool` option: an object with a `run` method.
#[derive(Clone)]
pub(crate) struct Pool {
    this: JsValue,
    run: Function,
    /// Batches in flight at most.
    depth: usize,
}

impl Pool {
    /// `opts.pool`, if given.
    pub(crate) fn from_options(opts: &JsValue) -> core::result::Result<Option<Pool>, JsValue> {
        let Some(this) = field(opts, "pool") else {
            return Ok(None);
        };
        let run = Reflect::get(&this, &"run".into())
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok())
            .ok_or_else(|| bad_arg("pool", "must be a WorkerPool"))?;
        let size = Reflect::get(&this, &"size".into())
            .ok()
            .and_then(|v| v.as_f64())
            .unwrap_or(2.0);
        let depth = (size.clamp(1.0, 64.0) as usize) * 2;
        Ok(Some(Pool { this, run, depth }))
    }

    fn run(&self, request: &Object) -> Result<JsFuture> {
        let p = self
            .run
            .call1(&self.this, request)
            .map_err(|e| pool_error(&e, "run"))?;
        let p: js_sys::Promise = p.dyn_into().map_err(|_| {
            err!(
                EncryptionFailed,
                "the worker pool's run() must return a promise"
            )
        })?;
        Ok(JsFuture::from(p))
    }
}

fn set(o: &Object, k: &str, v: &JsValue) {
    let _ = Reflect::set(o, &k.into(), v);
}

/// A batch handed to the pool: what to write before each sealed frame, and
/// each frame's plaintext length (to check what comes back).
struct InFlight {
    prefixes: Vec<Vec<u8>>,
    lens: Vec<usize>,
    result: JsFuture,
}

/// Encrypts through a pool: the caller's chunks are copied once into the
/// batch being filled, whose buffer then moves to a worker.
pub(crate) struct PoolSealer {
    enc: Encryptor,
    key: WebKey,
    pool: Pool,
    frame: usize,
    /// Capacity of a batch, in bytes (a multiple of `frame`).
    cap: usize,
    cur: Uint8Array,
    fill: usize,
    inflight: VecDeque<InFlight>,
    /// Batch buffers back from the pool, for reuse.
    spare: Vec<Uint8Array>,
    started: bool,
}

impl PoolSealer {
    /// Gives the encryptor back where the pool cannot serve: signing suites
    /// (frames must pass through the signer in order) and frames over
    /// `MAX_POOLED_FRAME` (a batch holds at least one whole frame).
    pub(crate) fn new(
        enc: Encryptor,
        key: WebKey,
        pool: Pool,
    ) -> core::result::Result<PoolSealer, Box<Encryptor>> {
        if enc.is_signing() || enc.frame_len() > MAX_POOLED_FRAME {
            return Err(Box::new(enc));
        }
        let frame = enc.frame_len();
        let cap = frame * (BATCH_BYTES / frame).max(1);
        Ok(PoolSealer {
            enc,
            key,
            pool,
            frame,
            cap,
            cur: Uint8Array::new_with_length(0),
            spare: Vec::new(),
            fill: 0,
            inflight: VecDeque::new(),
            started: false,
        })
    }

    /// Takes `chunk`; writes to `out` whatever batches completed meanwhile.
    pub(crate) async fn update(&mut self, chunk: &Uint8Array, out: &mut Out) -> Result<()> {
        let n = chunk.length() as usize;
        if n == 0 {
            return Ok(());
        }
        // The declared plaintext length is enforced before anything is written.
        self.enc.count_plaintext(n)?;
        if !self.started {
            self.started = true;
            out.put_bytes(&self.enc.take_header().unwrap_or_default());
            self.cur = self.fresh_batch();
        }
        let mut pos = 0;
        while pos < n {
            // A full batch goes only once more input shows its last frame is
            // not the final one.
            if self.fill == self.cap {
                self.dispatch(false, out).await?;
            }
            let take = (self.cap - self.fill).min(n - pos);
            self.cur.set(
                &chunk.subarray(pos as u32, (pos + take) as u32),
                self.fill as u32,
            );
            self.fill += take;
            pos += take;
        }
        Ok(())
    }

    /// Seals the rest, the final frame included, and writes it all to `out`.
    /// `Ok(false)`: nothing was ever given (an empty message); the caller
    /// finishes the untouched encryptor itself ([`PoolSealer::into_encryptor`]).
    pub(crate) async fn finish(&mut self, out: &mut Out) -> Result<bool> {
        if !self.started {
            return Ok(false);
        }
        self.dispatch(true, out).await?;
        while let Some(b) = self.inflight.pop_front() {
            self.write(b, out).await?;
        }
        Ok(true)
    }

    pub(crate) fn encryptor(&self) -> &Encryptor {
        &self.enc
    }

    pub(crate) fn into_encryptor(self) -> Encryptor {
        self.enc
    }

    fn fresh_batch(&mut self) -> Uint8Array {
        self.spare.pop().unwrap_or_else(|| Uint8Array::new_with_length(self.cap as u32))
    }

    /// Waits for a batch and writes each frame's prefix and sealed bytes.
    async fn write(&mut self, b: InFlight, out: &mut Out) -> Result<()> {
        let v = b.result.await.map_err(|e| pool_error(&e, "encrypt"))?;
        let (frames, back) = answer(v, b.lens.len())?;
        for (i, (prefix, len)) in b.prefixes.iter().zip(&b.lens).enumerate() {
            let sealed = frame_at(&frames, i)?;
            if sealed.length() as usize != len + 16 {
                return Err(err!(EncryptionFailed, "the worker pool sealed a frame to the wrong length"));
            }
            out.put_bytes(prefix);
            out.put(sealed);
        }
        if let Some(back) = back.filter(|b| b.length() as usize == self.cap) {
            self.spare.push(back);
        }
        Ok(())
    }

    /// Hands the filled batch to the pool; with `last`, its last frame is
    /// the final frame. Waits for (and writes) the oldest batch while too
    /// many are in flight.
    async fn dispatch(&mut self, last: bool, out: &mut Out) -> Result<()> {
        let fill = self.fill;
        let count = if last {
            fill.div_ceil(self.frame).max(1)
        } else {
            fill / self.frame
        };
        let mut prefixes = Vec::with_capacity(count);
        let mut lens = Vec::with_capacity(count);
        let mut ivs = Vec::with_capacity(12 * count);
        let mut aads = Vec::with_capacity(120 * count);
        let mut aad_lens = Vec::with_capacity(count);
        for i in 0..count {
            let start = i * self.frame;
            let len = (fill - start).min(self.frame);
            let kind = if last && i + 1 == count {
                BodyKind::FinalFrame
            } else {
                BodyKind::Frame
            };
            let plan = self.enc.plan(kind, len)?;
            prefixes.push(plan.prefix);
            lens.push(len as u32);
            ivs.extend_from_slice(&plan.iv);
            aads.extend_from_slice(&plan.aad);
            aad_lens.push(plan.aad.len() as u32);
        }
        let request = Object::new();
        set(&request, "op", &"encrypt".into());
        set(&request, "key", &self.key.1);
        set(&request, "data", &self.cur.subarray(0, fill as u32));
        set(&request, "lens", &Uint32Array::from(lens.as_slice()));
        set(&request, "ivs", &Uint8Array::from(ivs.as_slice()));
        set(&request, "aads", &Uint8Array::from(aads.as_slice()));
        set(&request, "aadLens", &Uint32Array::from(aad_lens.as_slice()));
        let result = self.pool.run(&request)?;
        self.inflight.push_back(InFlight {
            prefixes,
            lens: lens.iter().map(|&l| l as usize).collect(),
            result,
        });
        self.cur = if last { Uint8Array::new_with_length(0) } else { self.fresh_batch() };
        self.fill = 0;
        while self.inflight.len() > self.pool.depth {
            let b = self.inflight.pop_front().expect("non-empty");
            self.write(b, out).await?;
        }
        Ok(())
    }
}

/// A pool's answer: the outputs, and the request's buffer handed back.
fn answer(v: JsValue, expected: usize) -> Result<(Array, Option<Uint8Array>)> {
    let frames: Array = Reflect::get(&v, &"frames".into())
        .ok()
        .and_then(|f| f.dyn_into().ok())
        .ok_or_else(|| err!(EncryptionFailed, "the worker pool answered no list of frames"))?;
    if frames.length() as usize != expected {
        return Err(err!(EncryptionFailed, "the worker pool answered {} of {expected} frames", frames.length()));
    }
    let back = Reflect::get(&v, &"buffer".into()).ok().and_then(|b| b.dyn_into::<ArrayBuffer>().ok()).map(|b| Uint8Array::new(&b));
    Ok((frames, back))
}

fn frame_at(frames: &Array, i: usize) -> Result<Uint8Array> {
    let buf: ArrayBuffer =
        frames.get(i as u32).dyn_into().map_err(|_| err!(EncryptionFailed, "the worker pool answered a non-buffer"))?;
    Ok(Uint8Array::new(&buf))
}

/// The error a pool's rejection stands for: its `.code` where it has one
/// (`FRAME_AUTH_FAILED` for a frame that does not authenticate).
fn pool_error(v: &JsValue, what: &str) -> crate::Error {
    let code = Reflect::get(v, &"code".into())
        .ok()
        .and_then(|c| c.as_string());
    match code.as_deref() {
        Some("FRAME_AUTH_FAILED") => err!(FrameAuthFailed, "authentication tag does not verify"),
        Some("INVALID_STATE") => err!(InvalidState, "the worker pool cannot run ({what})"),
        _ => err!(EncryptionFailed, "a worker of the pool failed ({what})"),
    }
}

/// The batch of sealed frames being filled, in a JS buffer.
#[derive(Default)]
struct OpenBatch {
    key: Option<web_sys::CryptoKey>,
    data: Option<Uint8Array>,
    fill: usize,
    lens: Vec<u32>,
    ivs: Vec<u8>,
    aads: Vec<u8>,
    aad_lens: Vec<u32>,
}

impl OpenBatch {
    fn capacity(&self) -> usize {
        self.data.as_ref().map_or(0, |d| d.length() as usize)
    }
}

/// Frames opened in batches by a pool, for the decryptor of one message.
/// The core hands each frame to the AEAD in order; the WebCrypto key queues
/// it here instead of opening it at once. Plaintext reaches `ready` only
/// when its whole batch has authenticated, in order, and the drivers hand
/// on only what is in `ready` ([`PoolOpen::flush`] before the end of the
/// message: a message is complete only once every batch authenticated).
pub(crate) struct PoolOpen {
    pool: Pool,
    batch: core::cell::RefCell<OpenBatch>,
    inflight: core::cell::RefCell<VecDeque<(Vec<u32>, JsFuture)>>,
    /// Batch buffers (`BATCH_BYTES`) back from the pool, for reuse.
    spare: core::cell::RefCell<Vec<Uint8Array>>,
}

impl PoolOpen {
    pub(crate) fn new(pool: Pool) -> PoolOpen {
        PoolOpen {
            pool,
            batch: Default::default(),
            inflight: Default::default(),
            spare: Default::default(),
        }
    }

    /// Queues one sealed frame (ciphertext ‖ tag); may wait for the oldest
    /// batch, whose plaintext then goes to `ready`.
    pub(crate) async fn open(
        &self,
        key: &web_sys::CryptoKey,
        iv: &[u8; 12],
        aad: &[u8],
        sealed: &[u8],
        ready: &core::cell::RefCell<Vec<Uint8Array>>,
    ) -> Result<()> {
        let full = {
            let b = self.batch.borrow();
            !b.lens.is_empty() && b.fill + sealed.len() > b.capacity()
        };
        if full {
            self.send()?;
        }
        {
            let mut b = self.batch.borrow_mut();
            if b.lens.is_empty() {
                let cap = BATCH_BYTES.max(sealed.len());
                if b.capacity() < cap {
                    let reused = if cap == BATCH_BYTES { self.spare.borrow_mut().pop() } else { None };
                    b.data = Some(reused.unwrap_or_else(|| Uint8Array::new_with_length(cap as u32)));
                }
                b.key = Some(key.clone());
            }
            let start = b.fill;
            let data = b.data.as_ref().expect("allocated above");
            data.subarray(start as u32, (start + sealed.len()) as u32)
                .copy_from(sealed);
            b.fill += sealed.len();
            b.lens.push(sealed.len() as u32);
            b.ivs.extend_from_slice(iv);
            b.aads.extend_from_slice(aad);
            b.aad_lens.push(aad.len() as u32);
        }
        self.drain(self.pool.depth, ready).await
    }

    /// Sends what is queued and waits for every batch: afterwards `ready`
    /// holds all the plaintext, or an error says a frame failed.
    pub(crate) async fn flush(&self, ready: &core::cell::RefCell<Vec<Uint8Array>>) -> Result<()> {
        if !self.batch.borrow().lens.is_empty() {
            self.send()?;
        }
        self.drain(0, ready).await
    }

    fn send(&self) -> Result<()> {
        let b = core::mem::take(&mut *self.batch.borrow_mut());
        let request = Object::new();
        set(&request, "op", &"decrypt".into());
        set(
            &request,
            "key",
            b.key.as_ref().expect("a key with the first frame"),
        );
        set(
            &request,
            "data",
            &b.data
                .as_ref()
                .expect("a buffer with the first frame")
                .subarray(0, b.fill as u32),
        );
        set(&request, "lens", &Uint32Array::from(b.lens.as_slice()));
        set(&request, "ivs", &Uint8Array::from(b.ivs.as_slice()));
        set(&request, "aads", &Uint8Array::from(b.aads.as_slice()));
        set(
            &request,
            "aadLens",
            &Uint32Array::from(b.aad_lens.as_slice()),
        );
        let result = self.pool.run(&request)?;
        self.inflight.borrow_mut().push_back((b.lens, result));
        Ok(())
    }

    /// Waits for the oldest batches until at most `keep` are in flight.
    async fn drain(&self, keep: usize, ready: &core::cell::RefCell<Vec<Uint8Array>>) -> Result<()> {
        loop {
            let next = {
                let mut q = self.inflight.borrow_mut();
                if q.len() <= keep {
                    return Ok(());
                }
                q.pop_front().expect("non-empty")
            };
            let (lens, fut) = next;
            let v = fut.await.map_err(|e| pool_error(&e, "decrypt"))?;
            let (frames, back) = answer(v, lens.len())?;
            {
                let mut out = ready.borrow_mut();
                for (i, len) in lens.iter().enumerate() {
                    let plain = frame_at(&frames, i)?;
                    if plain.length() + 16 != *len {
                        return Err(err!(EncryptionFailed, "the worker pool opened a frame to the wrong length"));
                    }
                    out.push(plain);
                }
            }
            if let Some(back) = back.filter(|b| b.length() as usize == BATCH_BYTES) {
                self.spare.borrow_mut().push(back);
            }
        }
    }
}
