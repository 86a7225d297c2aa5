//! The JavaScript API in Node (wasm32 only).
#![cfg(target_arch = "wasm32")]
mod js_api;
