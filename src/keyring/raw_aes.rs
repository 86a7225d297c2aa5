//! The raw AES keyring (SPEC framework/raw-aes-keyring.md): AES-GCM wrapping
//! with the encryption context as AAD. Provider id = key namespace; provider
//! info = key name ‖ UInt32 tag bits (128) ‖ UInt32 IV length (12) ‖ IV;
//! ciphertext = wrapped key ‖ tag.

use zeroize::Zeroizing;

use super::{combine_failures, ensure_data_key, Keyring};
use crate::aead::RustCryptoKey;
use crate::error::{err, Result};
use crate::format::context;
use crate::format::EncryptedDataKey;
use crate::materials::{DecryptionMaterials, EncryptionMaterials};
use crate::secret::DataKey;

const TAG_BITS: u32 = 128;
const IV_LEN: u32 = 12;

/// The raw AES keyring. The wrapping key is zeroized on drop.
pub struct RawAesKeyring {
    namespace: String,
    name: String,
    cipher: RustCryptoKey,
}

impl core::fmt::Debug for RawAesKeyring {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RawAesKeyring")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl RawAesKeyring {
    /// A keyring with a 16-, 24- or 32-byte wrapping key.
    pub fn new(namespace: &str, name: &str, wrapping_key: &[u8]) -> Result<Self> {
        if namespace.starts_with("aws-kms") {
            return Err(err!(InvalidArgument, "key namespaces starting with \"aws-kms\" are reserved"));
        }
        let cipher = RustCryptoKey::new(wrapping_key)
            .map_err(|_| err!(InvalidKey, "raw AES wrapping key of {} bytes (need 16, 24 or 32)", wrapping_key.len()))?;
        Ok(RawAesKeyring {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            cipher,
        })
    }

    fn provider_info(&self, iv: &[u8; 12]) -> Vec<u8> {
        let mut info = Vec::with_capacity(self.name.len() + 20);
        info.extend_from_slice(self.name.as_bytes());
        info.extend_from_slice(&TAG_BITS.to_be_bytes());
        info.extend_from_slice(&IV_LEN.to_be_bytes());
        info.extend_from_slice(iv);
        info
    }

    /// The IV from provider info, if it belongs to this key.
    fn iv_of(&self, info: &[u8]) -> Option<[u8; 12]> {
        let rest = info.strip_prefix(self.name.as_bytes())?;
        if rest.len() != 20 || rest[..4] != TAG_BITS.to_be_bytes() || rest[4..8] != IV_LEN.to_be_bytes() {
            return None;
        }
        let mut iv = [0u8; 12];
        iv.copy_from_slice(&rest[8..]);
        Some(iv)
    }
}

#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
impl Keyring for RawAesKeyring {
    async fn on_encrypt(&self, mut materials: EncryptionMaterials) -> Result<EncryptionMaterials> {
        ensure_data_key(&mut materials);
        let aad = context::serialize(&materials.encryption_context)?;
        let iv: [u8; 12] = crate::random::array();
        let mut buf = materials.data_key.as_ref().map(|k| k.as_bytes().to_vec()).unwrap_or_default();
        let tag = self.cipher.seal_in_place(&iv, &aad, &mut buf)?;
        buf.extend_from_slice(&tag);
        materials.encrypted_data_keys.push(EncryptedDataKey {
            provider_id: self.namespace.clone(),
            provider_info: self.provider_info(&iv),
            ciphertext: buf,
        });
        Ok(materials)
    }

    async fn on_decrypt(
        &self,
        mut materials: DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> Result<DecryptionMaterials> {
        super::needs_data_key(&materials)?;
        let aad = context::canonical(&materials.encryption_context)?;
        let mut failures: Vec<crate::Error> = Vec::new();
        for edk in edks.iter().filter(|e| e.provider_id == self.namespace) {
            let Some(iv) = self.iv_of(&edk.provider_info) else { continue };
            let n = edk.ciphertext.len();
            if n != materials.suite.data_key_len() + 16 {
                failures.push(err!(NoDecryptableKey, "wrapped key has the wrong length"));
                continue;
            }
            let mut buf = Zeroizing::new(edk.ciphertext[..n - 16].to_vec());
            let mut tag = [0u8; 16];
            tag.copy_from_slice(&edk.ciphertext[n - 16..]);
            match self.cipher.open_in_place(&iv, &aad, &mut buf, &tag) {
                Ok(()) => {
                    materials.data_key = Some(DataKey::new(buf.to_vec()));
                    return Ok(materials);
                }
                Err(_) => failures.push(err!(NoDecryptableKey, "AES-GCM unwrap failed (wrong key or encryption context)")),
            }
        }
        Err(combine_failures(&format!("raw AES keyring {}/{}", self.namespace, self.name), failures))
    }
}
