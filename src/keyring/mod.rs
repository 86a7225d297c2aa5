//! Keyrings wrap a data key on encrypt and unwrap one on decrypt
//! (SPEC framework/keyring-interface.md).

mod caching;
mod kms_rsa;
mod multi;
mod raw_aes;
mod raw_rsa;
mod rsa_keys;

pub use caching::{CacheLimits, CachingKeyring, MaterialsCache};
pub use kms_rsa::{KmsDecrypt, KmsDecryptRequest, KmsDecryptResponse, KmsRsaAlgorithm, KmsRsaKeyring};
pub use multi::MultiKeyring;
pub use raw_aes::RawAesKeyring;
pub use raw_rsa::{RawRsaKeyring, RsaPadding};

use crate::error::Result;
use crate::format::EncryptedDataKey;
use crate::materials::{DecryptionMaterials, EncryptionMaterials};
use crate::secret::DataKey;

/// A keyring. Both operations are async because a keyring may call a
/// network service (KMS); local keyrings complete at once.
///
/// On native targets keyrings are `Send + Sync` and their futures `Send`;
/// on wasm32 (JavaScript callbacks) they are neither.
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
pub trait Keyring: crate::MaybeSend {
    /// Generates the data key if there is none yet (when acting as a
    /// generator), then adds this keyring's encrypted data key.
    async fn on_encrypt(&self, materials: EncryptionMaterials) -> Result<EncryptionMaterials>;

    /// Sets `materials.data_key` from one of `edks` this keyring can unwrap,
    /// or fails with `NO_DECRYPTABLE_KEY` (listing each attempt). Materials
    /// that already hold a data key are refused (`INVALID_STATE`).
    async fn on_decrypt(
        &self,
        materials: DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> Result<DecryptionMaterials>;
}

/// SPEC framework/keyring-interface.md (OnDecrypt): decryption materials
/// that already hold a plaintext data key make a keyring fail, unchanged.
pub(crate) fn needs_data_key(materials: &DecryptionMaterials) -> Result<()> {
    if materials.data_key.is_some() {
        return Err(crate::error::err!(InvalidState, "the decryption materials already hold a data key"));
    }
    Ok(())
}

/// Generates the data key when the materials have none.
pub(crate) fn ensure_data_key(materials: &mut EncryptionMaterials) {
    if materials.data_key.is_none() {
        materials.data_key = Some(DataKey::generate(materials.suite.data_key_len()));
    }
}

const NO_MATCH: &str = "no encrypted data key matches";

/// Turns the failures of every attempt into one error: a single failure (or
/// several of one kind) keeps its code, so a KMS outage still reads
/// `KMS_ERROR`; mixed failures are listed under `NO_DECRYPTABLE_KEY`.
pub(crate) fn combine_failures(what: &str, mut failures: Vec<crate::Error>) -> crate::Error {
    use crate::error::err;
    // A keyring that found no EDK of its own explains nothing next to one that tried and failed.
    failures.retain(|e| !e.detail().starts_with(NO_MATCH));
    let Some(first) = failures.first() else {
        return err!(NoDecryptableKey, "{NO_MATCH} {what}");
    };
    let code = first.code();
    let details: Vec<&str> = failures.iter().map(|e| e.detail()).collect();
    if failures.iter().all(|e| e.code() == code) {
        crate::Error::new(code, format!("{what}: {}", details.join("; ")))
    } else {
        let list: Vec<String> = failures.iter().map(|e| e.to_string()).collect();
        err!(NoDecryptableKey, "{what} could not decrypt any encrypted data key: {}", list.join("; "))
    }
}
