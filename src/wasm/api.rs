//! One-shot operations and options, shaped like the AWS Encryption SDK for
//! JavaScript: `encrypt(keyring, plaintext, opts)` → `{ result, messageHeader }`,
//! `decrypt(keyring, ciphertext, opts)` → `{ plaintext, messageHeader }`.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use js_sys::{Object, Promise, Reflect, Uint8Array};
use wasm_bindgen_futures::future_to_promise;
use wasm_bindgen::prelude::*;

use super::convert::{bool_field, bytes, context, field, header_to_js, string_field, string_list, u32_field};
use super::error::{bad_arg, to_js};
use super::keyrings::Keyring;
use super::frames::{as_u8_array, seal_chunk, Out, WebKey};
use super::pool::{Pool, PoolSealer};
use super::webcrypto::{Capture, CapturingWebCrypto, RecordingWebCrypto, WebCryptoAead};
use crate::aead::RustCryptoAead;
use crate::client::{Client, CommitmentPolicy, DecryptLimits, DecryptOptions, EncryptOptions};
use crate::suite::AlgorithmSuite;

/// Where the WebCrypto key of a message being encrypted is handed over to the fast frame driver.
pub(crate) type KeySlot = Rc<RefCell<Option<WebKey>>>;

/// The client for an options object: AEAD backend, policy, limits.
pub(crate) fn client(opts: &JsValue) -> Result<Client, JsValue> {
    client_recording(opts, None)
}

/// As [`client`]; with WebCrypto, decrypted frames may go to `capture`.
pub(crate) fn client_capturing(opts: &JsValue, capture: Rc<Capture>) -> Result<Client, JsValue> {
    let c = client(opts)?;
    Ok(match string_field(opts, "aeadBackend")?.as_deref() {
        None | Some("webcrypto") => c.with_aead(Arc::new(CapturingWebCrypto(capture))),
        _ => c,
    })
}

/// Runs the decryptor over `input`, unwrapping the key when asked; with
/// capture on (unsigned suites), frames land in `capture`, else in `out`.
pub(crate) async fn decrypt_step(
    dec: &mut crate::stream::Decryptor,
    keyring: &dyn crate::keyring::Keyring,
    capture: &Capture,
    input: &[u8],
    out: &mut Vec<u8>,
) -> crate::Result<crate::stream::DecryptStatus> {
    use crate::stream::DecryptStatus;
    let mut status = dec.update(input, out).await?;
    if status == DecryptStatus::NeedDataKey {
        let signing = dec.header().map(|h| h.suite.is_signing()).unwrap_or(true);
        capture.enabled.set(!signing);
        dec.unwrap_data_key(keyring).await?;
        status = dec.update(&[], out).await?;
    }
    Ok(status)
}

/// As [`client`]; with WebCrypto, the message key is also put in `slot`.
pub(crate) fn client_recording(opts: &JsValue, slot: Option<KeySlot>) -> Result<Client, JsValue> {
    let mut c = Client::new();
    c = match string_field(opts, "aeadBackend")?.as_deref() {
        None | Some("webcrypto") => match slot {
            Some(slot) => c.with_aead(Arc::new(RecordingWebCrypto(slot))),
            None => c.with_aead(Arc::new(WebCryptoAead)),
        },
        Some("rustcrypto") => c.with_aead(Arc::new(RustCryptoAead)),
        Some(other) => return Err(bad_arg("aeadBackend", format!("{other:?} (use \"webcrypto\" or \"rustcrypto\")"))),
    };
    if let Some(p) = string_field(opts, "commitmentPolicy")? {
        let policy = match p.as_str() {
            "REQUIRE_ENCRYPT_REQUIRE_DECRYPT" => CommitmentPolicy::RequireEncryptRequireDecrypt,
            "REQUIRE_ENCRYPT_ALLOW_DECRYPT" => CommitmentPolicy::RequireEncryptAllowDecrypt,
            _ => {
                return Err(bad_arg(
                    "commitmentPolicy",
                    "use \"REQUIRE_ENCRYPT_REQUIRE_DECRYPT\" or \"REQUIRE_ENCRYPT_ALLOW_DECRYPT\"",
                ))
            }
        };
        c = c.with_commitment_policy(policy);
    }
    let mut limits = DecryptLimits::default();
    if let Some(v) = field(opts, "maxEncryptedDataKeys") {
        if v == JsValue::FALSE {
            limits.max_encrypted_data_keys = None;
        } else {
            let n = u32_field(opts, "maxEncryptedDataKeys")?.filter(|n| (1..=65535).contains(n));
            limits.max_encrypted_data_keys =
                Some(n.ok_or_else(|| bad_arg("maxEncryptedDataKeys", "must be 1 to 65535, or false for no limit"))? as u16);
        }
    }
    if let Some(n) = u32_field(opts, "maxFrameLength")? {
        limits.max_frame_length = n;
    }
    if let Some(n) = u32_field(opts, "maxNonFramedLength")? {
        limits.max_non_framed_length = u64::from(n);
    }
    Ok(c.with_limits(limits))
}

pub(crate) fn encrypt_options(opts: &JsValue) -> Result<EncryptOptions, JsValue> {
    let mut o = EncryptOptions { encryption_context: context(field(opts, "encryptionContext"), "encryptionContext")?, ..Default::default() };
    if let Some(f) = u32_field(opts, "frameLength")? {
        if f == 0 {
            return Err(bad_arg("frameLength", "must be 1 to 4294967295"));
        }
        o.frame_length = f;
    }
    if let Some(s) = u32_field(opts, "suiteId")? {
        o.suite = AlgorithmSuite::from_id(s as u16).map_err(to_js)?;
    }
    if let Some(v) = field(opts, "plaintextLength") {
        match v.as_f64() {
            Some(n) if n >= 0.0 && n.fract() == 0.0 && n <= 9_007_199_254_740_991.0 => o.plaintext_length = Some(n as u64),
            _ => return Err(bad_arg("plaintextLength", "must be a non-negative safe integer")),
        }
    }
    if let Some(v) = field(opts, "requiredEncryptionContextKeys") {
        o.required_encryption_context_keys = string_list(&v, "requiredEncryptionContextKeys")?;
    }
    Ok(o)
}

pub(crate) fn decrypt_options(opts: &JsValue) -> Result<DecryptOptions, JsValue> {
    Ok(DecryptOptions {
        encryption_context: context(field(opts, "encryptionContext"), "encryptionContext")?,
        refuse_signed: bool_field(opts, "refuseSigned")?,
        allow_unverified_signature: bool_field(opts, "allowUnverifiedSignature")?,
    })
}

fn set(o: &Object, k: &str, v: &JsValue) {
    let _ = Reflect::set(o, &k.into(), v);
}

/// Encrypts `plaintext` → `{ result: Uint8Array, messageHeader }`.
#[wasm_bindgen]
pub fn encrypt(keyring: &Keyring, plaintext: JsValue, opts: JsValue) -> Promise {
    let inner = keyring.inner.clone();
    future_to_promise(async move {
    let slot: KeySlot = Rc::new(RefCell::new(None));
    let client = client_recording(&opts, Some(slot.clone()))?;
    let mut o = encrypt_options(&opts)?;
    let js = as_u8_array(&plaintext).ok_or_else(|| bad_arg("plaintext", "must be a Uint8Array, ArrayBuffer or ArrayBufferView"))?;
    o.plaintext_length.get_or_insert(js.length() as u64);
    let mut enc = client.encryptor(inner.as_ref(), &o).await.map_err(to_js)?;
    let header = header_to_js(enc.header());
    let r = Object::new();
    set(&r, "messageHeader", &header.clone().into());
    let pool = Pool::from_options(&opts)?;
    let web = slot.borrow_mut().take();
    if let (Some(key), false) = (web, enc.is_signing()) {
        // Frames sealed in batches by a worker pool.
        if let (Some(pool), true) = (pool, js.length() > 0) {
            let total = enc
                .encrypted_size(js.length() as u64)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| bad_arg("plaintext", "too large for one output array; use encryptStream"))?;
            match PoolSealer::new(enc, key.clone(), pool) {
                Ok(mut sealer) => {
                    let mut out = Out::contiguous(total);
                    sealer.update(&js, &mut out).await.map_err(to_js)?;
                    sealer.finish(&mut out).await.map_err(to_js)?;
                    if out.written() != total {
                        return Err(to_js(crate::error::err!(EncryptionFailed, "the worker pool produced {} of {total} bytes", out.written())));
                    }
                    set(&r, "result", &out.into_array().into());
                    return Ok(r.into());
                }
                Err(e) => enc = *e,
            }
        }
        // Fast path: frames sealed by WebCrypto straight from the caller's array.
        if let Some(out) = seal_chunk(&mut enc, &key, &js, true).await.map_err(to_js)? {
            set(&r, "result", &out.into());
            return Ok(r.into());
        }
    }
    let pt = bytes(&plaintext, "plaintext")?;
    let mut out = Vec::with_capacity(enc.encrypted_size(pt.len() as u64).unwrap_or(0) as usize);
    enc.update(&pt, &mut out).await.map_err(to_js)?;
    enc.finish(&mut out).await.map_err(to_js)?;
    set(&r, "result", &Uint8Array::from(out.as_slice()).into());
    Ok(r.into())
    })
}

/// Bytes of the ciphertext handed to the decryptor at a time.
const DECRYPT_PIECE: usize = 1 << 20;

/// Decrypts a whole message → `{ plaintext: Uint8Array, messageHeader }`.
#[wasm_bindgen]
pub fn decrypt(keyring: &Keyring, ciphertext: JsValue, opts: JsValue) -> Promise {
    let inner = keyring.inner.clone();
    future_to_promise(async move {
    let js = match as_u8_array(&ciphertext) {
        Some(js) => js,
        None => Uint8Array::from(bytes(&ciphertext, "ciphertext")?.as_slice()),
    };
    let capture = Rc::new(Capture::with_pool(Pool::from_options(&opts)?));
    let client = client_capturing(&opts, capture.clone())?;
    let o = decrypt_options(&opts)?;
    let mut dec = client.decryptor(&o);
    let mut out = Vec::new();
    // The plaintext: frames WebCrypto opened (captured), moved as they come
    // into one output sized from the message (see `plaintext_out`).
    let mut plain: Option<Out> = None;
    // Fed in pieces through one reused buffer: wasm memory stays small
    // whatever the message size.
    let n = js.length() as usize;
    let mut piece = vec![0u8; n.min(DECRYPT_PIECE)];
    let mut off = 0;
    loop {
        let take = (n - off).min(DECRYPT_PIECE);
        js.subarray(off as u32, (off + take) as u32).copy_to(&mut piece[..take]);
        decrypt_step(&mut dec, inner.as_ref(), &capture, &piece[..take], &mut out).await.map_err(to_js)?;
        off += take;
        if plain.is_none() && capture.enabled.get() {
            plain = Some(plaintext_out(&dec, n));
        }
        if let Some(p) = &mut plain {
            capture.take().into_iter().for_each(|f| p.put(f));
        }
        if off == n {
            break;
        }
    }
    capture.flush().await.map_err(to_js)?;
    let header = dec.finish().map_err(to_js)?;
    let mut plain = plain.unwrap_or_else(Out::chunks);
    capture.take().into_iter().for_each(|f| plain.put(f));
    plain.put_bytes(&out);
    let r = Object::new();
    set(&r, "plaintext", &plain.into_array().into());
    set(&r, "messageHeader", &header_to_js(&header).into());
    Ok(r.into())
    })
}

/// The output for the plaintext of a one-shot decrypt of an `n`-byte
/// message: one array sized from the message's layout where that is known
/// (framed, unsigned), which frames are copied into as they authenticate
/// (no second copy at the end, and each frame's array freed at once).
fn plaintext_out(dec: &crate::stream::Decryptor, n: usize) -> Out {
    use crate::format::ContentType;
    let size = match (dec.header(), dec.header_len()) {
        (Some(h), Some(hl)) if h.content_type == ContentType::Framed && !h.suite.is_signing() => {
            crate::format::body::framed_plaintext_len((n - hl) as u64, h.frame_length)
        }
        _ => None,
    };
    match size.and_then(|s| u32::try_from(s).ok()) {
        Some(s) => Out::contiguous(s),
        None => Out::chunks(),
    }
}

/// Parses a message header without any key: suite, context, key ARNs.
#[wasm_bindgen(js_name = parseHeader)]
pub fn parse_header(bytes_: JsValue) -> Result<JsValue, JsValue> {
    let b = bytes(&bytes_, "bytes")?;
    let (h, len) = crate::format::parse_header(&b).map_err(to_js)?;
    let o = header_to_js(&h);
    set(&o, "headerLength", &(len as u32).into());
    Ok(o.into())
}

/// The exact size of the message `encrypt`/`encryptStream` produce for
/// `plaintextSize` bytes with this keyring and these options (for an upload's
/// Content-Length). Wraps a throwaway data key to learn the header length.
#[wasm_bindgen(js_name = encryptedSize)]
pub fn encrypted_size(keyring: &Keyring, plaintext_size: f64, opts: JsValue) -> Promise {
    let inner = keyring.inner.clone();
    future_to_promise(async move {
    if !(plaintext_size >= 0.0 && plaintext_size.fract() == 0.0 && plaintext_size <= 9_007_199_254_740_991.0) {
        return Err(bad_arg("plaintextSize", "must be a non-negative safe integer"));
    }
    let o = encrypt_options(&opts)?;
    // The RustCrypto backend suffices: only the header length is wanted.
    let enc = Client::new().encryptor(inner.as_ref(), &o).await.map_err(to_js)?;
    enc.encrypted_size(plaintext_size as u64)
        .map(|n| JsValue::from(n as f64))
        .ok_or_else(|| bad_arg("plaintextSize", "needs more than 2^32 - 1 frames at this frame length"))
    })
}
