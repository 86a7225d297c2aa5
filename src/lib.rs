//! # kms-envelope
//!
//! Client-side envelope encryption in the **AWS Encryption SDK message
//! format**, for native code and WebAssembly. Messages are byte-compatible
//! with the official SDKs (Python, Java, Rust, JavaScript).
//!
//! * Encrypt: message format v2, suite 0x0478 (AES-256-GCM, HKDF-SHA512, key
//!   commitment) by default, or 0x0578 (adds an ECDSA P-384 signature).
//! * Decrypt: all 11 ESDK suites, framed and non-framed, under a
//!   [`CommitmentPolicy`].
//! * Keyrings: [`KmsRsaKeyring`] (`aws-kms-rsa`), [`RawRsaKeyring`],
//!   [`RawAesKeyring`], [`MultiKeyring`], or your own [`Keyring`].
//! * Streaming: sans-IO [`Encryptor`] and [`Decryptor`]; plaintext is released
//!   only after its frame authenticates.
//!
//! ```
//! # futures::executor::block_on(async {
//! use kms_envelope::{Client, EncryptOptions, DecryptOptions, RawAesKeyring};
//! let keyring = RawAesKeyring::new("example", "key-1", &[7u8; 32])?;
//! let client = Client::new();
//! let mut opts = EncryptOptions::default();
//! opts.encryption_context.insert("purpose".into(), "docs".into());
//! let message = client.encrypt(&keyring, b"hello", &opts).await?;
//! let (plaintext, header) = client.decrypt(&keyring, &message, &DecryptOptions::default()).await?;
//! assert_eq!(plaintext, b"hello");
//! assert_eq!(header.encryption_context["purpose"], "docs");
//! # Ok::<(), kms_envelope::Error>(())
//! # }).unwrap();
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod aead;
mod client;
mod error;
pub mod format;
mod kdf;
mod keyring;
mod materials;
mod random;
mod secret;
mod signature;
mod stream;
mod suite;
#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use aead::{AeadProvider, FrameAead, RustCryptoAead};
pub use client::{
    encrypted_size, Client, CommitmentPolicy, DecryptLimits, DecryptOptions, EncryptOptions,
    DEFAULT_FRAME_LENGTH, DEFAULT_MAX_ENCRYPTED_DATA_KEYS,
};
pub use error::{Error, ErrorCode, Result};
pub use format::context::EncryptionContext;
pub use format::{parse_header, ContentType, EncryptedDataKey, Header};
pub use keyring::{
    CacheLimits, CachingKeyring, MaterialsCache, KmsDecrypt, KmsDecryptRequest, KmsDecryptResponse, KmsRsaAlgorithm, KmsRsaKeyring, Keyring, MultiKeyring,
    RawAesKeyring, RawRsaKeyring, RsaPadding,
};
pub use materials::{DecryptionMaterials, EncryptionMaterials};
pub use secret::DataKey;
pub use signature::PUBLIC_KEY_CONTEXT_KEY;
pub use stream::{DecryptStatus, Decryptor, Encryptor, RangePlaintext, RangeSource, SignatureCheck};
pub use suite::{AlgorithmSuite, Kdf, MessageVersion, SignatureAlgorithm};

/// `Send + Sync` on native targets; nothing on wasm32, where keyrings call
/// JavaScript and cannot cross threads.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSend: Send + Sync {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + Sync + ?Sized> MaybeSend for T {}

/// `Send + Sync` on native targets; nothing on wasm32, where keyrings call
/// JavaScript and cannot cross threads.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSend {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSend for T {}
