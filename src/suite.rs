//! The ESDK algorithm suites (SPEC framework/algorithm-suites.md).

use crate::error::{err, Result};

/// Message format version a suite belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageVersion {
    /// Message format 1.0 (16-byte message id, legacy suites).
    V1,
    /// Message format 2.0 (32-byte message id, committing suites).
    V2,
}

impl MessageVersion {
    /// The byte written in the header.
    pub fn byte(self) -> u8 {
        match self {
            MessageVersion::V1 => 1,
            MessageVersion::V2 => 2,
        }
    }

    /// Length of the message id for this version.
    pub fn message_id_len(self) -> usize {
        match self {
            MessageVersion::V1 => 16,
            MessageVersion::V2 => 32,
        }
    }
}

/// Key derivation of a suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kdf {
    /// The data key is the encryption key.
    Identity,
    /// HKDF-SHA256, zero salt, info = suite id ‖ message id.
    HkdfSha256,
    /// HKDF-SHA384, zero salt, info = suite id ‖ message id.
    HkdfSha384,
    /// HKDF-SHA512, salt = message id, with key commitment.
    HkdfSha512Commit,
}

/// Footer signature algorithm of a suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    /// ECDSA over P-256 with SHA-256.
    EcdsaP256,
    /// ECDSA over P-384 with SHA-384.
    EcdsaP384,
}

/// One of the 11 ESDK algorithm suites.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AlgorithmSuite {
    id: u16,
}

impl core::fmt::Debug for AlgorithmSuite {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "AlgorithmSuite(0x{:04X})", self.id)
    }
}

impl core::fmt::Display for AlgorithmSuite {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "0x{:04X}", self.id)
    }
}

impl AlgorithmSuite {
    /// AES-128-GCM, no KDF (v1, legacy).
    pub const AES_128_GCM_IV12_TAG16_NO_KDF: Self = Self { id: 0x0014 };
    /// AES-192-GCM, no KDF (v1, legacy).
    pub const AES_192_GCM_IV12_TAG16_NO_KDF: Self = Self { id: 0x0046 };
    /// AES-256-GCM, no KDF (v1, legacy).
    pub const AES_256_GCM_IV12_TAG16_NO_KDF: Self = Self { id: 0x0078 };
    /// AES-128-GCM, HKDF-SHA256 (v1).
    pub const AES_128_GCM_IV12_TAG16_HKDF_SHA256: Self = Self { id: 0x0114 };
    /// AES-192-GCM, HKDF-SHA256 (v1).
    pub const AES_192_GCM_IV12_TAG16_HKDF_SHA256: Self = Self { id: 0x0146 };
    /// AES-256-GCM, HKDF-SHA256 (v1).
    pub const AES_256_GCM_IV12_TAG16_HKDF_SHA256: Self = Self { id: 0x0178 };
    /// AES-128-GCM, HKDF-SHA256, ECDSA P-256 (v1).
    pub const AES_128_GCM_IV12_TAG16_HKDF_SHA256_ECDSA_P256: Self = Self { id: 0x0214 };
    /// AES-192-GCM, HKDF-SHA384, ECDSA P-384 (v1).
    pub const AES_192_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384: Self = Self { id: 0x0346 };
    /// AES-256-GCM, HKDF-SHA384, ECDSA P-384 (v1).
    pub const AES_256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384: Self = Self { id: 0x0378 };
    /// AES-256-GCM, HKDF-SHA512, key commitment (v2). The default.
    pub const AES_256_GCM_HKDF_SHA512_COMMIT_KEY: Self = Self { id: 0x0478 };
    /// AES-256-GCM, HKDF-SHA512, key commitment, ECDSA P-384 (v2).
    pub const AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384: Self = Self { id: 0x0578 };

    /// All suites, newest first.
    pub const ALL: [AlgorithmSuite; 11] = [
        Self::AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
        Self::AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384,
        Self::AES_256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384,
        Self::AES_192_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384,
        Self::AES_128_GCM_IV12_TAG16_HKDF_SHA256_ECDSA_P256,
        Self::AES_256_GCM_IV12_TAG16_HKDF_SHA256,
        Self::AES_192_GCM_IV12_TAG16_HKDF_SHA256,
        Self::AES_128_GCM_IV12_TAG16_HKDF_SHA256,
        Self::AES_256_GCM_IV12_TAG16_NO_KDF,
        Self::AES_192_GCM_IV12_TAG16_NO_KDF,
        Self::AES_128_GCM_IV12_TAG16_NO_KDF,
    ];

    /// Looks a suite up by its two-byte id.
    pub fn from_id(id: u16) -> Result<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|s| s.id == id)
            .ok_or_else(|| err!(UnsupportedSuite, "unknown algorithm suite 0x{id:04X}"))
    }

    /// Parses `0x0478`, `0478` or `1144`.
    pub fn parse(s: &str) -> Result<Self> {
        let t = s.trim();
        let id = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            u16::from_str_radix(h, 16).ok()
        } else if t.len() == 4 && t.chars().all(|c| c.is_ascii_hexdigit()) {
            u16::from_str_radix(t, 16).ok()
        } else {
            t.parse::<u16>().ok()
        };
        match id {
            Some(id) => Self::from_id(id),
            None => Err(err!(InvalidArgument, "not an algorithm suite id: {s:?}")),
        }
    }

    /// The two-byte id.
    pub fn id(self) -> u16 {
        self.id
    }

    /// The message format this suite is written with.
    pub fn message_version(self) -> MessageVersion {
        if self.is_committing() {
            MessageVersion::V2
        } else {
            MessageVersion::V1
        }
    }

    /// Whether the suite commits to its data key.
    pub fn is_committing(self) -> bool {
        matches!(self.id, 0x0478 | 0x0578)
    }

    /// The key derivation function.
    pub fn kdf(self) -> Kdf {
        match self.id {
            0x0014 | 0x0046 | 0x0078 => Kdf::Identity,
            0x0114 | 0x0146 | 0x0178 | 0x0214 => Kdf::HkdfSha256,
            0x0346 | 0x0378 => Kdf::HkdfSha384,
            _ => Kdf::HkdfSha512Commit,
        }
    }

    /// The footer signature algorithm, if any.
    pub fn signature(self) -> Option<SignatureAlgorithm> {
        match self.id {
            0x0214 => Some(SignatureAlgorithm::EcdsaP256),
            0x0346 | 0x0378 | 0x0578 => Some(SignatureAlgorithm::EcdsaP384),
            _ => None,
        }
    }

    /// Whether the suite has a footer signature.
    pub fn is_signing(self) -> bool {
        self.signature().is_some()
    }

    /// AES key length of the derived encryption key, in bytes.
    pub fn encryption_key_len(self) -> usize {
        match self.id & 0x00FF {
            0x14 => 16,
            0x46 => 24,
            _ => 32,
        }
    }

    /// Length of the data key the keyrings generate and wrap.
    pub fn data_key_len(self) -> usize {
        self.encryption_key_len()
    }

    /// IV length (12 for every ESDK suite).
    pub const fn iv_len(self) -> usize {
        12
    }

    /// Tag length (16 for every ESDK suite).
    pub const fn tag_len(self) -> usize {
        16
    }
}
