//! The core cases, compiled into the native suite (`core.rs`) and the wasm32
//! suites (`core.rs` under Node, `browser.rs` in Chromium).
mod caching;
mod conformance;
mod core_tests;
mod range;
mod required_context;
#[cfg(not(target_arch = "wasm32"))]
mod tamper;
pub mod vectors;
