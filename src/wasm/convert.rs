//! JavaScript values ↔ core types: options objects, encryption contexts, headers.

use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::error::bad_arg;
use crate::format::context::EncryptionContext;
use crate::format::{ContentType, Header};

/// `opts[name]`, or `None` when `opts` or the field is undefined/null.
pub(crate) fn field(opts: &JsValue, name: &str) -> Option<JsValue> {
    if opts.is_undefined() || opts.is_null() {
        return None;
    }
    let v = Reflect::get(opts, &name.into()).ok()?;
    (!v.is_undefined() && !v.is_null()).then_some(v)
}

/// A boolean option: absent is `false`; anything but a boolean is refused.
pub(crate) fn bool_field(opts: &JsValue, name: &str) -> Result<bool, JsValue> {
    match field(opts, name) {
        None => Ok(false),
        Some(v) => v.as_bool().ok_or_else(|| super::error::bad_arg(name, "must be true or false")),
    }
}

pub(crate) fn string_field(opts: &JsValue, name: &str) -> Result<Option<String>, JsValue> {
    match field(opts, name) {
        None => Ok(None),
        Some(v) => v.as_string().map(Some).ok_or_else(|| bad_arg(name, "must be a string")),
    }
}

pub(crate) fn u32_field(opts: &JsValue, name: &str) -> Result<Option<u32>, JsValue> {
    match field(opts, name) {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(n) if n.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(&n) => Ok(Some(n as u32)),
            _ => Err(bad_arg(name, "must be an integer from 0 to 4294967295")),
        },
    }
}

/// Bytes from a `Uint8Array`, an `ArrayBuffer` or any `ArrayBufferView`.
pub(crate) fn bytes(v: &JsValue, name: &str) -> Result<Vec<u8>, JsValue> {
    if let Some(a) = v.dyn_ref::<Uint8Array>() {
        return Ok(a.to_vec());
    }
    if v.is_instance_of::<js_sys::ArrayBuffer>() {
        return Ok(Uint8Array::new(v).to_vec());
    }
    if js_sys::ArrayBuffer::is_view(v) {
        let buf = Reflect::get(v, &"buffer".into()).map_err(|_| bad_arg(name, "unreadable view"))?;
        let off = Reflect::get(v, &"byteOffset".into()).ok().and_then(|x| x.as_f64()).unwrap_or(0.0) as u32;
        let len = Reflect::get(v, &"byteLength".into()).ok().and_then(|x| x.as_f64()).unwrap_or(0.0) as u32;
        return Ok(Uint8Array::new_with_byte_offset_and_length(&buf, off, len).to_vec());
    }
    Err(bad_arg(name, "must be a Uint8Array, ArrayBuffer or ArrayBufferView"))
}

/// An array of strings, as a set.
pub(crate) fn string_list(v: &JsValue, name: &str) -> Result<std::collections::BTreeSet<String>, JsValue> {
    if !Array::is_array(v) {
        return Err(bad_arg(name, "must be an array of strings"));
    }
    Array::from(v)
        .iter()
        .map(|s| s.as_string().ok_or_else(|| bad_arg(name, "must be an array of strings")))
        .collect()
}

/// A plain object of string values.
pub(crate) fn context(v: Option<JsValue>, name: &str) -> Result<EncryptionContext, JsValue> {
    let mut ctx = EncryptionContext::new();
    let Some(v) = v else { return Ok(ctx) };
    if !v.is_object() {
        return Err(bad_arg(name, "must be an object of string values"));
    }
    for entry in Object::entries(v.unchecked_ref::<Object>()).iter() {
        let pair: Array = entry.unchecked_into();
        let k = pair.get(0).as_string().unwrap_or_default();
        let val = pair
            .get(1)
            .as_string()
            .ok_or_else(|| bad_arg(name, format!("value of {k:?} must be a string")))?;
        ctx.insert(k, val);
    }
    Ok(ctx)
}

pub(crate) fn context_to_js(ctx: &EncryptionContext) -> Object {
    let o = Object::new();
    for (k, v) in ctx {
        let _ = Reflect::set(&o, &k.into(), &v.into());
    }
    o
}

fn set(o: &Object, k: &str, v: JsValue) {
    let _ = Reflect::set(o, &k.into(), &v);
}

/// The header as a plain object (shaped like the JavaScript ESDK's `MessageHeader`).
pub(crate) fn header_to_js(h: &Header) -> Object {
    let o = Object::new();
    set(&o, "version", h.version.byte().into());
    set(&o, "suiteId", h.suite.id().into());
    set(&o, "messageId", Uint8Array::from(h.message_id.as_slice()).into());
    set(&o, "encryptionContext", context_to_js(&h.encryption_context).into());
    let edks = Array::new();
    for e in &h.encrypted_data_keys {
        let x = Object::new();
        set(&x, "providerId", e.provider_id.as_str().into());
        let info = match core::str::from_utf8(&e.provider_info) {
            Ok(s) => JsValue::from(s),
            Err(_) => Uint8Array::from(e.provider_info.as_slice()).into(),
        };
        set(&x, "providerInfo", info);
        set(&x, "encryptedDataKey", Uint8Array::from(e.ciphertext.as_slice()).into());
        edks.push(&x);
    }
    set(&o, "encryptedDataKeys", edks.into());
    set(&o, "contentType", if h.content_type == ContentType::Framed { "framed" } else { "non-framed" }.into());
    set(&o, "frameLength", h.frame_length.into());
    set(&o, "keyArns", {
        let arns = Array::new();
        for e in h.encrypted_data_keys.iter().filter(|e| e.provider_id == "aws-kms-rsa") {
            if let Ok(s) = core::str::from_utf8(&e.provider_info) {
                arns.push(&s.into());
            }
        }
        arns.into()
    });
    o
}
