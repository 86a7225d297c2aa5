//! The core suite. Natively: `cargo test`. On wasm32 this file runs under
//! Node (`cargo test --target wasm32-unknown-unknown --test core`); `browser.rs`
//! runs the same cases in headless Chromium.
mod cases;
mod shared;
