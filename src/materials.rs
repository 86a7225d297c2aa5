//! Cryptographic materials handed to and returned by keyrings
//! (SPEC framework/structures.md "Encryption Materials", "Decryption Materials").

use core::fmt;

use crate::format::context::EncryptionContext;
use crate::format::EncryptedDataKey;
use crate::secret::DataKey;
use crate::suite::AlgorithmSuite;

/// What a message is encrypted with: the suite, the full encryption context
/// (including `aws-crypto-public-key` for signing suites), the data key and
/// its wrapped copies.
pub struct EncryptionMaterials {
    /// Algorithm suite of the message.
    pub suite: AlgorithmSuite,
    /// The full encryption context written into the header.
    pub encryption_context: EncryptionContext,
    /// The plaintext data key, once a generator keyring has made one.
    pub data_key: Option<DataKey>,
    /// Every wrapped copy of the data key.
    pub encrypted_data_keys: Vec<EncryptedDataKey>,
    /// The message's plaintext length when known up front (caching keyrings
    /// count bytes per data key with it).
    pub plaintext_length: Option<u64>,
}

impl fmt::Debug for EncryptionMaterials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionMaterials")
            .field("suite", &self.suite)
            .field("encryption_context", &self.encryption_context)
            .field("data_key", &self.data_key.as_ref().map(|_| "<redacted>"))
            .field("encrypted_data_keys", &self.encrypted_data_keys.len())
            .finish()
    }
}

/// What a keyring needs to unwrap a data key, and where it puts it.
pub struct DecryptionMaterials {
    /// Algorithm suite of the message.
    pub suite: AlgorithmSuite,
    /// The message's encryption context.
    pub encryption_context: EncryptionContext,
    /// The unwrapped data key, once a keyring has one.
    pub data_key: Option<DataKey>,
}

impl fmt::Debug for DecryptionMaterials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecryptionMaterials")
            .field("suite", &self.suite)
            .field("encryption_context", &self.encryption_context)
            .field("data_key", &self.data_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}
