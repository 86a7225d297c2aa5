//! `gatewayKmsDecrypt(url, options)`: a `kmsDecrypt` callback that asks the
//! kms-envelope gateway (or any service speaking the same JSON) to unwrap a
//! data key, with exponential backoff and full jitter on throttling.
//!
//! Request (POST, JSON): `{ keyId, ciphertextBlob: base64, encryptionAlgorithm, encryptionContext }`.
//! Response: `{ plaintext: base64, keyId, encryptionAlgorithm }`, the shape of KMS Decrypt.
//! Retried: HTTP 429 and 503, and bodies naming `ThrottlingException`,
//! honouring `Retry-After`; network failures are retried too. Anything else
//! fails at once with `KMS_ERROR` and the server's message.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

use super::convert::{bytes, field, string_field, u32_field};
use super::error::{bad_arg, to_js};
use crate::error::{err, Error};

const DEFAULT_ATTEMPTS: u32 = 5;
const BASE_DELAY_MS: f64 = 100.0;
const MAX_DELAY_MS: f64 = 5_000.0;

#[derive(Clone)]
struct Config {
    url: String,
    headers: JsValue,
    credentials: Option<String>,
    max_attempts: u32,
    signal: JsValue,
    fetch: Function,
}

/// Returns an async `kmsDecrypt` function for `KmsRsaKeyring`.
///
/// `options`: `{ headers?, credentials? ("include" for cookie sessions),
/// maxAttempts? (5), signal? (AbortSignal), fetch? (a fetch implementation) }`.
#[wasm_bindgen(js_name = gatewayKmsDecrypt)]
pub fn gateway_kms_decrypt(url: String, options: JsValue) -> Result<Function, JsValue> {
    if url.is_empty() {
        return Err(bad_arg("url", "is required"));
    }
    let fetch = match field(&options, "fetch") {
        Some(f) => f.dyn_into::<Function>().map_err(|_| bad_arg("fetch", "must be a function"))?,
        None => Reflect::get(&js_sys::global(), &"fetch".into())?
            .dyn_into::<Function>()
            .map_err(|_| bad_arg("fetch", "this environment has no fetch; pass options.fetch"))?,
    };
    let cfg = Config {
        url,
        headers: field(&options, "headers").unwrap_or(JsValue::UNDEFINED),
        credentials: string_field(&options, "credentials")?,
        max_attempts: u32_field(&options, "maxAttempts")?.unwrap_or(DEFAULT_ATTEMPTS).max(1),
        signal: field(&options, "signal").unwrap_or(JsValue::UNDEFINED),
        fetch,
    };
    let f = Closure::wrap(Box::new(move |req: JsValue| {
        let cfg = cfg.clone();
        future_to_promise(async move { call(&cfg, &req).await.map_err(to_js) })
    }) as Box<dyn FnMut(JsValue) -> Promise>);
    Ok(f.into_js_value().unchecked_into())
}

fn set(o: &Object, k: &str, v: &JsValue) {
    let _ = Reflect::set(o, &k.into(), v);
}

async fn sleep(ms: f64) {
    let p = Promise::new(&mut |resolve, _| {
        if let Ok(st) = Reflect::get(&js_sys::global(), &"setTimeout".into()) {
            if let Ok(st) = st.dyn_into::<Function>() {
                let _ = st.call2(&JsValue::UNDEFINED, &resolve, &ms.into());
                return;
            }
        }
        let _ = resolve.call0(&JsValue::UNDEFINED);
    });
    let _ = JsFuture::from(p).await;
}

fn aborted(signal: &JsValue) -> bool {
    field(signal, "aborted").map(|v| v.is_truthy()).unwrap_or(false)
}

/// Full jitter: uniform in [0, min(cap, base·2^attempt)).
fn backoff(attempt: u32) -> f64 {
    let ceiling = (BASE_DELAY_MS * 2f64.powi(attempt as i32)).min(MAX_DELAY_MS);
    js_sys::Math::random() * ceiling
}

async fn call(cfg: &Config, req: &JsValue) -> Result<JsValue, Error> {
    let body = Object::new();
    for k in ["keyId", "encryptionAlgorithm", "encryptionContext"] {
        set(&body, k, &field(req, k).unwrap_or(JsValue::UNDEFINED));
    }
    let blob = field(req, "ciphertextBlob").ok_or_else(|| err!(InvalidArgument, "ciphertextBlob is required"))?;
    let blob = bytes(&blob, "ciphertextBlob").map_err(|_| err!(InvalidArgument, "ciphertextBlob must be bytes"))?;
    set(&body, "ciphertextBlob", &B64.encode(blob).into());
    let body = js_sys::JSON::stringify(&body).map_err(|_| err!(InvalidArgument, "request is not serializable"))?;

    let mut last = String::new();
    for attempt in 0..cfg.max_attempts {
        if aborted(&cfg.signal) {
            return Err(err!(KmsError, "the request was aborted"));
        }
        let init = Object::new();
        set(&init, "method", &"POST".into());
        set(&init, "body", &body.clone().into());
        let headers = Object::new();
        set(&headers, "content-type", &"application/json".into());
        if cfg.headers.is_object() {
            let _ = Object::assign(&headers, cfg.headers.unchecked_ref());
        }
        set(&init, "headers", &headers.into());
        if let Some(c) = &cfg.credentials {
            set(&init, "credentials", &c.into());
        }
        if !cfg.signal.is_undefined() {
            set(&init, "signal", &cfg.signal);
        }
        let resp = match cfg.fetch.call2(&JsValue::UNDEFINED, &cfg.url.clone().into(), &init) {
            Ok(p) => JsFuture::from(Promise::resolve(&p)).await,
            Err(e) => Err(e),
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                if aborted(&cfg.signal) {
                    return Err(err!(KmsError, "the request was aborted"));
                }
                last = format!("network error: {}", super::error::from_js(&e, crate::ErrorCode::KmsError).detail());
                sleep(backoff(attempt)).await;
                continue;
            }
        };
        let status = field(&resp, "status").and_then(|s| s.as_f64()).unwrap_or(0.0) as u32;
        let text = match Reflect::get(&resp, &"text".into()).ok().and_then(|f| f.dyn_into::<Function>().ok()) {
            Some(f) => match f.call0(&resp) {
                Ok(p) => JsFuture::from(Promise::resolve(&p)).await.ok().and_then(|t| t.as_string()).unwrap_or_default(),
                Err(_) => String::new(),
            },
            None => String::new(),
        };
        let json = js_sys::JSON::parse(&text).unwrap_or(JsValue::UNDEFINED);
        let error_name = field(&json, "__type")
            .or_else(|| field(&json, "code"))
            .or_else(|| field(&json, "error"))
            .and_then(|v| v.as_string())
            .unwrap_or_default();
        if (200..300).contains(&status) {
            let pt = field(&json, "plaintext").ok_or_else(|| err!(KmsResponseInvalid, "the gateway answered without a plaintext"))?;
            let pt = pt.as_string().ok_or_else(|| err!(KmsResponseInvalid, "plaintext is not a base64 string"))?;
            let raw = B64.decode(pt.trim()).map_err(|_| err!(KmsResponseInvalid, "plaintext is not base64"))?;
            let out = Object::new();
            set(&out, "plaintext", &Uint8Array::from(raw.as_slice()).into());
            set(&out, "keyId", &field(&json, "keyId").unwrap_or(JsValue::UNDEFINED));
            set(&out, "encryptionAlgorithm", &field(&json, "encryptionAlgorithm").unwrap_or(JsValue::UNDEFINED));
            return Ok(out.into());
        }
        let message = field(&json, "message").and_then(|v| v.as_string()).unwrap_or_else(|| text.chars().take(200).collect());
        last = format!("gateway answered {status} {error_name}: {message}");
        let throttled = status == 429 || status == 503 || error_name.contains("Throttling");
        if !throttled {
            return Err(err!(KmsError, "{last}"));
        }
        let retry_after = field(&resp, "headers")
            .and_then(|h| Reflect::get(&h, &"get".into()).ok().and_then(|g| g.dyn_into::<Function>().ok()).map(|g| (h, g)))
            .and_then(|(h, g)| g.call1(&h, &"retry-after".into()).ok())
            .and_then(|v| v.as_string())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .map(|s| (s * 1000.0).min(MAX_DELAY_MS * 6.0));
        if attempt + 1 < cfg.max_attempts {
            sleep(retry_after.unwrap_or_else(|| backoff(attempt))).await;
        }
    }
    Err(err!(KmsError, "gave up after {} attempts; last: {last}", cfg.max_attempts))
}
