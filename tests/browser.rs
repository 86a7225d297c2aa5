//! The core suite in headless Chromium (wasm32 only).
#![cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);
mod shared;
