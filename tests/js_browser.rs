//! The JavaScript API in headless Chromium, on a page's main thread (wasm32 only).
#![cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);
mod js_api;
