//! `decryptRange(keyring, source, start, end, options)`: random-access
//! decryption (see `Client::decrypt_range`) over a JavaScript source:
//!
//! - a `Blob` or `File` (read with `slice().arrayBuffer()`);
//! - a URL string, or `{ url, headers?, credentials?, fetch? }`: read with
//!   HTTP `Range` requests (the size from a `HEAD` request);
//! - `{ size, read(offset, length) }` where `read` resolves to the bytes.

use std::cell::Cell;

use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

use super::api::{client, decrypt_options};
use super::convert::{field, header_to_js, string_field};
use super::error::{bad_arg, from_js, to_js};
use super::keyrings::Keyring;
use crate::error::{err, ErrorCode, Result};
use crate::stream::{RangeSource, SignatureCheck};

enum Kind {
    Blob(JsValue),
    Url { url: String, headers: JsValue, credentials: Option<String>, fetch: Function },
    Reader { size: u64, read: Function, this: JsValue },
}

struct JsSource {
    kind: Kind,
    size: Cell<Option<u64>>,
}

async fn wait(p: JsValue) -> Result<JsValue> {
    JsFuture::from(Promise::resolve(&p)).await.map_err(|e| from_js(&e, ErrorCode::Io))
}

fn get(o: &JsValue, k: &str) -> JsValue {
    Reflect::get(o, &k.into()).unwrap_or(JsValue::UNDEFINED)
}

fn call_method(o: &JsValue, name: &str, args: &[JsValue]) -> Result<JsValue> {
    let f = get(o, name).dyn_into::<Function>().map_err(|_| err!(Io, "the source has no {name}()"))?;
    let r = match args {
        [] => f.call0(o),
        [a] => f.call1(o, a),
        [a, b] => f.call2(o, a, b),
        _ => f.apply(o, &args.iter().collect()),
    };
    r.map_err(|e| from_js(&e, ErrorCode::Io))
}

fn safe(n: u64) -> JsValue {
    JsValue::from_f64(n as f64)
}

impl JsSource {
    fn new(source: &JsValue) -> std::result::Result<JsSource, JsValue> {
        let global_fetch = || {
            Reflect::get(&js_sys::global(), &"fetch".into())
                .ok()
                .and_then(|f| f.dyn_into::<Function>().ok())
                .ok_or_else(|| bad_arg("source", "this environment has no fetch; pass { url, fetch }"))
        };
        let kind = if let Some(url) = source.as_string() {
            Kind::Url { url, headers: JsValue::UNDEFINED, credentials: None, fetch: global_fetch()? }
        } else if let Some(url) = string_field(source, "url")? {
            let fetch = match field(source, "fetch") {
                Some(f) => f.dyn_into::<Function>().map_err(|_| bad_arg("source.fetch", "must be a function"))?,
                None => global_fetch()?,
            };
            Kind::Url { url, headers: field(source, "headers").unwrap_or(JsValue::UNDEFINED), credentials: string_field(source, "credentials")?, fetch }
        } else if let Some(read) = field(source, "read").and_then(|f| f.dyn_into::<Function>().ok()) {
            let size = field(source, "size").and_then(|s| s.as_f64()).filter(|s| *s >= 0.0 && s.fract() == 0.0);
            let size = size.ok_or_else(|| bad_arg("source.size", "must be the message's length in bytes"))?;
            Kind::Reader { size: size as u64, read, this: source.clone() }
        } else if field(source, "slice").is_some() && field(source, "size").is_some() {
            Kind::Blob(source.clone())
        } else {
            return Err(bad_arg("source", "must be a Blob, a URL, { url, headers?, credentials? } or { size, read(offset, length) }"));
        };
        Ok(JsSource { kind, size: Cell::new(None) })
    }

    fn init(&self, method: &str, range: Option<(u64, u64)>) -> Object {
        let Kind::Url { headers, credentials, .. } = &self.kind else { unreachable!("URL sources only") };
        let init = Object::new();
        let h = Object::new();
        if headers.is_object() {
            let _ = Object::assign(&h, headers.unchecked_ref());
        }
        if let Some((a, b)) = range {
            let _ = Reflect::set(&h, &"range".into(), &format!("bytes={a}-{}", b - 1).into());
        }
        let _ = Reflect::set(&init, &"method".into(), &method.into());
        let _ = Reflect::set(&init, &"headers".into(), &h);
        if let Some(c) = credentials {
            let _ = Reflect::set(&init, &"credentials".into(), &c.into());
        }
        init
    }

    async fn fetch(&self, method: &str, range: Option<(u64, u64)>) -> Result<JsValue> {
        let Kind::Url { url, fetch, .. } = &self.kind else { unreachable!("URL sources only") };
        let p = fetch.call2(&JsValue::UNDEFINED, &url.into(), &self.init(method, range)).map_err(|e| from_js(&e, ErrorCode::Io))?;
        let resp = wait(p).await?;
        let status = get(&resp, "status").as_f64().unwrap_or(0.0) as u32;
        if !(200..300).contains(&status) {
            return Err(err!(Io, "{method} {url} answered {status}"));
        }
        Ok(resp)
    }
}

fn header(resp: &JsValue, name: &str) -> Option<String> {
    call_method(&get(resp, "headers"), "get", &[name.into()]).ok().and_then(|v| v.as_string())
}

#[async_trait::async_trait(?Send)]
impl RangeSource for JsSource {
    async fn size(&self) -> Result<u64> {
        if let Some(s) = self.size.get() {
            return Ok(s);
        }
        let s = match &self.kind {
            Kind::Blob(b) => get(b, "size").as_f64().ok_or_else(|| err!(Io, "the Blob has no size"))? as u64,
            Kind::Reader { size, .. } => *size,
            Kind::Url { .. } => {
                let resp = self.fetch("HEAD", None).await?;
                header(&resp, "content-length").and_then(|v| v.trim().parse().ok()).ok_or_else(|| err!(Io, "HEAD gave no Content-Length"))?
            }
        };
        self.size.set(Some(s));
        Ok(s)
    }

    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let end = offset + len as u64;
        let bytes = match &self.kind {
            Kind::Blob(b) => {
                let part = call_method(b, "slice", &[safe(offset), safe(end)])?;
                wait(call_method(&part, "arrayBuffer", &[])?).await?
            }
            Kind::Reader { read, this, .. } => {
                let p = read.call2(this, &safe(offset), &JsValue::from_f64(len as f64)).map_err(|e| from_js(&e, ErrorCode::Io))?;
                wait(p).await?
            }
            Kind::Url { .. } => {
                let resp = self.fetch("GET", Some((offset, end))).await?;
                // A server that ignores Range answers 200 with everything: refuse
                // rather than read a whole large object by surprise.
                let status = get(&resp, "status").as_f64().unwrap_or(0.0) as u32;
                let range_ok = header(&resp, "content-range").is_some_and(|r| r.starts_with(&format!("bytes {offset}-")));
                if status != 206 || !range_ok {
                    return Err(err!(Io, "the server did not honour the Range request (status {status})"));
                }
                wait(call_method(&resp, "arrayBuffer", &[])?).await?
            }
        };
        let v = Uint8Array::new(&bytes).to_vec();
        if v.len() != len {
            return Err(err!(Truncated, "read {} bytes at {offset} where {len} were expected", v.len()));
        }
        Ok(v)
    }
}

/// Decrypts plaintext bytes `[start, end)` of a message, reading only its
/// header and the frames covering the range; resolves to
/// `{ plaintext, messageHeader, start, end, plaintextLength, signature }`
/// (`signature`: "unsigned", "verified" or "not-checked").
#[wasm_bindgen(js_name = decryptRange)]
pub fn decrypt_range(keyring: &Keyring, source: JsValue, start: f64, end: f64, opts: JsValue) -> Promise {
    let inner = keyring.inner.clone();
    future_to_promise(async move {
        let position = |v: f64, name: &str| {
            if v >= 0.0 && v.fract() == 0.0 && v <= 9_007_199_254_740_991.0 {
                Ok(v as u64)
            } else if v == f64::INFINITY && name == "end" {
                Ok(u64::MAX)
            } else {
                Err(bad_arg(name, "must be a non-negative integer"))
            }
        };
        let (start, end) = (position(start, "start")?, position(end, "end")?);
        let src = JsSource::new(&source)?;
        let c = client(&opts)?;
        let o = decrypt_options(&opts)?;
        let r = c.decrypt_range(inner.as_ref(), &src, start, end, &o).await.map_err(to_js)?;
        let out = Object::new();
        let _ = Reflect::set(&out, &"plaintext".into(), &Uint8Array::from(r.plaintext.as_slice()).into());
        let _ = Reflect::set(&out, &"messageHeader".into(), &header_to_js(&r.header).into());
        let _ = Reflect::set(&out, &"start".into(), &safe(r.start));
        let _ = Reflect::set(&out, &"end".into(), &safe(r.end));
        let _ = Reflect::set(&out, &"plaintextLength".into(), &safe(r.plaintext_len));
        let signature = match r.signature {
            SignatureCheck::Unsigned => "unsigned",
            SignatureCheck::Verified => "verified",
            SignatureCheck::NotChecked => "not-checked",
        };
        let _ = Reflect::set(&out, &"signature".into(), &signature.into());
        Ok(out.into())
    })
}
