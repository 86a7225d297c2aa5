//! The JavaScript API, for browsers, workers and Node (wasm-bindgen).
//!
//! Shaped like the AWS Encryption SDK for JavaScript (`encrypt`, `decrypt`,
//! keyrings, `MessageHeader`), plus streams, `parseHeader`, `encryptedSize`,
//! key pinning and a gateway Decrypt client. Frame AES-GCM runs on WebCrypto.

// The core shares providers and keyrings through `Arc` (Send + Sync natively);
// on wasm32 there is one thread and JavaScript objects inside, which is fine.
#![allow(clippy::arc_with_non_send_sync)]

mod api;
mod convert;
mod error;
mod frames;
mod gateway;
mod keyrings;
mod pool;
mod range;
mod streams;
mod webcrypto;

pub use api::{decrypt, encrypt, encrypted_size, parse_header};
pub use error::envelope_error_class;
pub use gateway::gateway_kms_decrypt;
pub use keyrings::{create_multi_keyring, Keyring, MaterialsCache};
pub use range::decrypt_range;
pub use streams::{decrypt_stream, encrypt_stream, Decryptor, Encryptor};
pub use webcrypto::WebCryptoAead;
