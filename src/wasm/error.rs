//! Errors as JavaScript sees them: `EnvelopeError extends Error` with the
//! core's stable `.code`.

use wasm_bindgen::prelude::*;

use crate::error::{Error, ErrorCode};

#[wasm_bindgen(inline_js = r#"
export class EnvelopeError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'EnvelopeError';
    this.code = code;
  }
}
export function envelopeErrorClass() { return EnvelopeError; }
"#)]
extern "C" {
    #[wasm_bindgen(js_name = EnvelopeError)]
    type JsEnvelopeError;
    #[wasm_bindgen(constructor, js_class = "EnvelopeError")]
    fn new(code: &str, message: &str) -> JsEnvelopeError;
    #[wasm_bindgen(js_name = envelopeErrorClass)]
    fn envelope_error_class_js() -> JsValue;
}

/// The `EnvelopeError` class, for `instanceof` checks.
#[wasm_bindgen(js_name = envelopeErrorClass)]
pub fn envelope_error_class() -> JsValue {
    envelope_error_class_js()
}

/// Converts a core error into a thrown `EnvelopeError`.
pub(crate) fn to_js(e: Error) -> JsValue {
    JsEnvelopeError::new(e.code().as_str(), &e.to_string()).into()
}

/// `INVALID_ARGUMENT` naming the argument.
pub(crate) fn bad_arg(name: &str, why: impl core::fmt::Display) -> JsValue {
    to_js(Error::new(ErrorCode::InvalidArgument, format!("{name}: {why}")))
}

/// Reads `.code` (an `EnvelopeError` thrown by a callback) and message of a JS exception.
pub(crate) fn from_js(v: &JsValue, default: ErrorCode) -> Error {
    let code = js_sys::Reflect::get(v, &"code".into())
        .ok()
        .and_then(|c| c.as_string())
        .and_then(|c| ErrorCode::from_str_code(&c))
        .unwrap_or(default);
    let msg = js_sys::Reflect::get(v, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .or_else(|| v.as_string())
        .unwrap_or_else(|| "the callback failed".to_owned());
    Error::new(code, msg)
}
