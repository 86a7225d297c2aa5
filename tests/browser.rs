//! The core suite in headless Chromium (wasm32 only). It runs in a dedicated
//! Web Worker, where an upload page does its encryption, so the long
//! CPU-bound cases do not block the page the test runner talks to.
#![cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_dedicated_worker);
mod cases;
mod shared;
