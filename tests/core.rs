//! The core suite. Natively: `cargo test`. On wasm32 this file runs under
//! Node (`cargo test --target wasm32-unknown-unknown --test core`); `browser.rs`
//! runs the same cases in headless Chromium.
mod cases;
mod shared;

/// Every stable error code is asserted by name somewhere in the test suites.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn every_error_code_is_asserted_by_a_test() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = String::new();
    for f in ["tests/cases/core_tests.rs", "tests/cases/vectors.rs", "server/tests/cli.rs"] {
        sources += &std::fs::read_to_string(root.join(f)).unwrap();
    }
    for code in kms_envelope::ErrorCode::ALL {
        let quoted = format!("\"{}\"", code.as_str());
        assert!(sources.contains(&quoted), "no test asserts {quoted}");
    }
}
