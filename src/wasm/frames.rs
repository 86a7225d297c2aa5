//! The fast path of the JS API: frames encrypted by WebCrypto straight from
//! the caller's `Uint8Array` (a `subarray` per frame) into one output
//! `Uint8Array` (one `set` per frame) — no trip through wasm memory for
//! bulk data. The core `Encryptor` still lays out every frame (`plan`) and
//! keeps the partial frame between chunks; only the copies are avoided.
//! Used for non-signing suites when WebCrypto holds the key; anything else
//! takes the generic path.

use js_sys::Uint8Array;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;
use web_sys::{CryptoKey, SubtleCrypto};

use super::webcrypto::GcmParams;
use crate::error::{err, Result};
use crate::format::body::BodyKind;
use crate::stream::{Encryptor, FramePlan};

pub(crate) type WebKey = (SubtleCrypto, CryptoKey);

enum Source<'a> {
    Js(&'a Uint8Array),
    Wasm(&'a [u8]),
}

async fn seal(key: &WebKey, params: &mut GcmParams, plan: &FramePlan, data: Source<'_>) -> Result<Uint8Array> {
    let params = params.fill(&plan.iv, &plan.aad);
    let p = match data {
        Source::Js(a) => key.0.encrypt_with_object_and_js_u8_array(params, &key.1, a),
        Source::Wasm(s) => key.0.encrypt_with_object_and_u8_array(params, &key.1, s),
    }
    .map_err(|_| err!(EncryptionFailed, "WebCrypto AES-GCM encryption failed"))?;
    let v = JsFuture::from(p).await.map_err(|_| err!(EncryptionFailed, "WebCrypto AES-GCM encryption failed"))?;
    Ok(Uint8Array::new(&v))
}

/// Where sealed (or opened) bytes go: one contiguous array (one-shot), or a
/// list of chunks handed on as they are, WebCrypto's result arrays
/// included, with no copy at all (streams).
pub(crate) enum Out {
    Contiguous { buf: Uint8Array, off: u32 },
    Chunks { list: Vec<Uint8Array>, len: u32 },
}

impl Out {
    pub(crate) fn contiguous(total: u32) -> Out {
        Out::Contiguous { buf: Uint8Array::new_with_length(total), off: 0 }
    }
    pub(crate) fn chunks() -> Out {
        Out::Chunks { list: Vec::new(), len: 0 }
    }
    pub(crate) fn put(&mut self, a: Uint8Array) {
        match self {
            Out::Contiguous { buf, off } if *off + a.length() <= buf.length() => {
                buf.set(&a, *off);
                *off += a.length();
            }
            Out::Contiguous { buf, off } => {
                // More than the array holds (an output whose size was
                // only estimated): carry on as a list.
                let list = vec![buf.subarray(0, *off), a];
                let len = list.iter().map(|x| x.length()).sum();
                *self = Out::Chunks { list, len };
            }
            Out::Chunks { list, len } => {
                *len += a.length();
                list.push(a);
            }
        }
    }
    /// Bytes from wasm memory: copied straight into a contiguous output
    /// where they fit (no temporary array), else as a new chunk.
    pub(crate) fn put_bytes(&mut self, b: &[u8]) {
        let n = b.len() as u32;
        match self {
            _ if b.is_empty() => {}
            Out::Contiguous { buf, off } if b.len() <= (buf.length() - *off) as usize => {
                buf.subarray(*off, *off + n).copy_from(b);
                *off += n;
            }
            _ => self.put(Uint8Array::from(b)),
        }
    }
    /// The contiguous output, exactly as long as what was written.
    pub(crate) fn into_array(self) -> Uint8Array {
        match self {
            Out::Contiguous { buf, off } if off == buf.length() => buf,
            Out::Contiguous { buf, off } => buf.slice(0, off),
            Out::Chunks { list, len } => {
                let all = Uint8Array::new_with_length(len);
                let mut off = 0;
                for a in &list {
                    all.set(a, off);
                    off += a.length();
                }
                all
            }
        }
    }
    pub(crate) fn into_list(self) -> Vec<Uint8Array> {
        match self {
            Out::Contiguous { buf, off } => vec![buf.subarray(0, off)],
            Out::Chunks { list, .. } => list,
        }
    }
    pub(crate) fn written(&self) -> u32 {
        match self {
            Out::Contiguous { off, .. } => *off,
            Out::Chunks { len, .. } => *len,
        }
    }
}

/// Encrypts `chunk`, returning the message bytes ready (the header first,
/// once). With `last`, also seals the final frame; the encryptor is then
/// spent. Returns `None` when this path cannot serve and the generic one
/// must (an empty message, whose empty final frame WebCrypto may refuse).
pub(crate) async fn seal_chunk(enc: &mut Encryptor, key: &WebKey, chunk: &Uint8Array, last: bool) -> Result<Option<Uint8Array>> {
    match seal_into(enc, key, chunk, last, false).await? {
        Some(Out::Contiguous { buf, .. }) => Ok(Some(buf)),
        _ => Ok(None),
    }
}

/// As [`seal_chunk`], but the output is the list of arrays to pass on.
pub(crate) async fn seal_chunk_list(enc: &mut Encryptor, key: &WebKey, chunk: &Uint8Array, last: bool) -> Result<Option<Vec<Uint8Array>>> {
    match seal_into(enc, key, chunk, last, true).await? {
        Some(Out::Chunks { list, .. }) => Ok(Some(list)),
        _ => Ok(None),
    }
}

async fn seal_into(enc: &mut Encryptor, key: &WebKey, chunk: &Uint8Array, last: bool, chunks: bool) -> Result<Option<Out>> {
    debug_assert!(!enc.is_signing());
    let f = enc.frame_len();
    let n = chunk.length() as usize;
    let buffered = enc.buffer_mut().len();
    let avail = buffered + n;
    if last && avail == 0 {
        return Ok(None);
    }
    // A full frame stays buffered until more input shows it is not the last.
    let regular = if avail == 0 { 0 } else { (avail - 1) / f };
    let rem = avail - regular * f;
    // The declared plaintext length is enforced before anything is written.
    enc.count_plaintext(n)?;
    let header = enc.take_header().unwrap_or_default();
    let total = header.len() + regular * (f + 32) + if last { rem + 40 } else { 0 };
    let total = u32::try_from(total).map_err(|_| err!(LimitExceeded, "chunk too large for one output array"))?;
    let mut out = if chunks {
        Out::Chunks { list: Vec::with_capacity(2 * regular + 3), len: 0 }
    } else {
        Out::Contiguous { buf: Uint8Array::new_with_length(total), off: 0 }
    };
    out.put_bytes(&header);
    let mut params = GcmParams::new();
    let mut pos = 0usize;
    for j in 0..regular {
        let plan = enc.plan(BodyKind::Frame, f)?;
        out.put_bytes(&plan.prefix);
        let sealed = if j == 0 && buffered > 0 {
            // The frame straddles chunks: complete it in the buffer.
            let need = f - buffered;
            let mut b = core::mem::take(enc.buffer_mut());
            let start = b.len();
            b.resize(f, 0);
            chunk.subarray(0, need as u32).copy_to(&mut b[start..]);
            pos = need;
            let r = seal(key, &mut params, &plan, Source::Wasm(&b)).await;
            b.clear();
            *enc.buffer_mut() = b;
            r?
        } else {
            let r = seal(key, &mut params, &plan, Source::Js(&chunk.subarray(pos as u32, (pos + f) as u32))).await?;
            pos += f;
            r
        };
        out.put(sealed);
    }
    // What is left joins the buffer (at most one frame).
    if pos < n {
        let b = enc.buffer_mut();
        let start = b.len();
        b.resize(start + (n - pos), 0);
        chunk.subarray(pos as u32, n as u32).copy_to(&mut b[start..]);
    }
    if last {
        let b = core::mem::take(enc.buffer_mut());
        let plan = enc.plan(BodyKind::FinalFrame, b.len())?;
        out.put_bytes(&plan.prefix);
        out.put(seal(key, &mut params, &plan, Source::Wasm(&b)).await?);
    }
    if out.written() != total {
        return Err(err!(EncryptionFailed, "the WebCrypto driver produced {} of {total} bytes", out.written()));
    }
    Ok(Some(out))
}

/// A JS value as a `Uint8Array` view without copying (ArrayBuffer, views).
pub(crate) fn as_u8_array(v: &JsValue) -> Option<Uint8Array> {
    use wasm_bindgen::JsCast;
    if let Some(a) = v.dyn_ref::<Uint8Array>() {
        return Some(a.clone());
    }
    if v.is_instance_of::<js_sys::ArrayBuffer>() {
        return Some(Uint8Array::new(v));
    }
    if js_sys::ArrayBuffer::is_view(v) {
        let get = |k: &str| js_sys::Reflect::get(v, &k.into()).ok();
        let buf = get("buffer")?;
        let off = get("byteOffset")?.as_f64()? as u32;
        let len = get("byteLength")?.as_f64()? as u32;
        return Some(Uint8Array::new_with_byte_offset_and_length(&buf, off, len));
    }
    None
}
