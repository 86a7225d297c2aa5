//! The raw RSA keyring (SPEC framework/raw-rsa-keyring.md): the data key is
//! wrapped with the keyring's own RSA key. Provider id = key namespace,
//! provider info = key name. The encryption context is not bound.
//!
//! Private-key operations use the `rsa` crate, which is not constant-time
//! (RUSTSEC-2023-0071). Do not expose a raw RSA private key to ciphertexts
//! an attacker can submit and time; servers use KMS (or the embedded local
//! KMS, built on aws-lc-rs) for that.

use rsa::{Oaep, Pkcs1v15Encrypt};
use sha2::{Sha256, Sha384, Sha512};

use super::rsa_keys::{parse_rsa_private_key, parse_rsa_public_key, RsaPrivateKey, RsaPublicKey};
use super::{combine_failures, ensure_data_key, Keyring};
use crate::error::{err, Result};
use crate::format::EncryptedDataKey;
use crate::materials::{DecryptionMaterials, EncryptionMaterials};
use crate::secret::DataKey;

/// RSA padding schemes of the raw RSA keyring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RsaPadding {
    /// PKCS#1 v1.5 (legacy).
    Pkcs1,
    /// OAEP with SHA-1 and MGF1-SHA-1.
    OaepSha1,
    /// OAEP with SHA-256 and MGF1-SHA-256.
    OaepSha256,
    /// OAEP with SHA-384 and MGF1-SHA-384.
    OaepSha384,
    /// OAEP with SHA-512 and MGF1-SHA-512.
    OaepSha512,
}

impl RsaPadding {
    /// Parses `pkcs1`, `oaep-sha1`, `oaep-sha256`, `oaep-sha384`, `oaep-sha512`.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "pkcs1" => RsaPadding::Pkcs1,
            "oaep-sha1" => RsaPadding::OaepSha1,
            "oaep-sha256" => RsaPadding::OaepSha256,
            "oaep-sha384" => RsaPadding::OaepSha384,
            "oaep-sha512" => RsaPadding::OaepSha512,
            _ => {
                return Err(err!(
                    InvalidArgument,
                    "RSA padding {s:?} (use pkcs1, oaep-sha1, oaep-sha256, oaep-sha384 or oaep-sha512)"
                ))
            }
        })
    }

    /// The name `parse` accepts.
    pub fn as_str(self) -> &'static str {
        match self {
            RsaPadding::Pkcs1 => "pkcs1",
            RsaPadding::OaepSha1 => "oaep-sha1",
            RsaPadding::OaepSha256 => "oaep-sha256",
            RsaPadding::OaepSha384 => "oaep-sha384",
            RsaPadding::OaepSha512 => "oaep-sha512",
        }
    }

    fn oaep(self) -> Option<Oaep> {
        Some(match self {
            RsaPadding::Pkcs1 => return None,
            RsaPadding::OaepSha1 => Oaep::new::<sha1::Sha1>(),
            RsaPadding::OaepSha256 => Oaep::new::<Sha256>(),
            RsaPadding::OaepSha384 => Oaep::new::<Sha384>(),
            RsaPadding::OaepSha512 => Oaep::new::<Sha512>(),
        })
    }
}

/// The raw RSA keyring.
#[derive(Clone)]
pub struct RawRsaKeyring {
    namespace: String,
    name: String,
    padding: RsaPadding,
    public_key: Option<RsaPublicKey>,
    private_key: Option<RsaPrivateKey>,
}

impl core::fmt::Debug for RawRsaKeyring {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RawRsaKeyring")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("padding", &self.padding)
            .field("can_encrypt", &self.public_key.is_some())
            .field("can_decrypt", &self.private_key.is_some())
            .finish()
    }
}

impl RawRsaKeyring {
    /// A keyring from PEM or DER keys. The public key wraps, the private key
    /// unwraps; either may be absent (SPEC: encrypt MUST NOT derive the
    /// public key from the private key).
    pub fn new(
        namespace: &str,
        name: &str,
        padding: RsaPadding,
        public_key: Option<&[u8]>,
        private_key: Option<&[u8]>,
    ) -> Result<Self> {
        if namespace.starts_with("aws-kms") {
            return Err(err!(InvalidArgument, "key namespaces starting with \"aws-kms\" are reserved"));
        }
        if public_key.is_none() && private_key.is_none() {
            return Err(err!(InvalidArgument, "a raw RSA keyring needs a public or a private key"));
        }
        Ok(RawRsaKeyring {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            padding,
            public_key: public_key.map(parse_rsa_public_key).transpose()?,
            private_key: private_key.map(parse_rsa_private_key).transpose()?,
        })
    }
}

#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
impl Keyring for RawRsaKeyring {
    async fn on_encrypt(&self, mut materials: EncryptionMaterials) -> Result<EncryptionMaterials> {
        let pk = self
            .public_key
            .as_ref()
            .ok_or_else(|| err!(InvalidArgument, "raw RSA keyring {:?} has no public key to encrypt with", self.name))?;
        ensure_data_key(&mut materials);
        let dk = materials.data_key.as_ref().map(DataKey::as_bytes).unwrap_or_default();
        let mut rng = rand_core::OsRng;
        let ct = match self.padding.oaep() {
            Some(oaep) => pk.encrypt(&mut rng, oaep, dk),
            None => pk.encrypt(&mut rng, Pkcs1v15Encrypt, dk),
        }
        .map_err(|_| err!(EncryptionFailed, "RSA wrapping of the data key failed"))?;
        materials.encrypted_data_keys.push(EncryptedDataKey {
            provider_id: self.namespace.clone(),
            provider_info: self.name.as_bytes().to_vec(),
            ciphertext: ct,
        });
        Ok(materials)
    }

    async fn on_decrypt(
        &self,
        mut materials: DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> Result<DecryptionMaterials> {
        super::needs_data_key(&materials)?;
        let sk = self
            .private_key
            .as_ref()
            .ok_or_else(|| err!(InvalidArgument, "raw RSA keyring {:?} has no private key to decrypt with", self.name))?;
        let mut failures: Vec<crate::Error> = Vec::new();
        for edk in edks {
            if edk.provider_id != self.namespace || edk.provider_info != self.name.as_bytes() {
                continue;
            }
            let r = match self.padding.oaep() {
                Some(oaep) => sk.decrypt(oaep, &edk.ciphertext),
                None => sk.decrypt(Pkcs1v15Encrypt, &edk.ciphertext),
            };
            match r {
                Ok(k) if k.len() == materials.suite.data_key_len() => {
                    materials.data_key = Some(DataKey::new(k));
                    return Ok(materials);
                }
                Ok(mut k) => {
                    zeroize::Zeroize::zeroize(&mut k);
                    failures.push(err!(NoDecryptableKey, "unwrapped key has the wrong length"));
                }
                Err(_) => failures.push(err!(NoDecryptableKey, "RSA unwrap failed")),
            }
        }
        Err(combine_failures(&format!("raw RSA keyring {}/{}", self.namespace, self.name), failures))
    }
}
