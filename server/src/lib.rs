//! The library half of `kms-envelope-server`: the gateway's JSON request
//! bodies and their checks (pure functions of their input, so the fuzz
//! targets in `fuzz/` exercise exactly the code the server runs), and the
//! native AES-GCM backend the CLI and the benchmarks use.

pub mod aead;
pub mod api;
