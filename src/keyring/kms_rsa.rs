//! The AWS KMS RSA keyring (SPEC framework/aws-kms/aws-kms-rsa-keyring.md).
//!
//! Encrypt needs only the KMS key's public key: the data key is wrapped
//! locally with RSA-OAEP as `SHA-384(serialized context) ‖ data key`, which
//! binds the encryption context to the wrapped key. Decrypt calls KMS Decrypt
//! (through a caller-supplied [`KmsDecrypt`]) and checks the returned key id
//! and context digest before the key is used.

use std::sync::Arc;

use rsa::Oaep;
use sha2::{Digest, Sha256, Sha384};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::rsa_keys::{parse_rsa_public_key, RsaPublicKey};
use super::{combine_failures, ensure_data_key, Keyring};
use crate::error::{err, Result};
use crate::format::context::{self, EncryptionContext};
use crate::format::EncryptedDataKey;
use crate::materials::{DecryptionMaterials, EncryptionMaterials};
use crate::secret::DataKey;

/// Key provider id of this keyring's encrypted data keys.
pub const PROVIDER_ID: &str = "aws-kms-rsa";
const DIGEST_LEN: usize = 48;

/// The KMS encryption algorithms an RSA key can use for this keyring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KmsRsaAlgorithm {
    /// `RSAES_OAEP_SHA_1`: OAEP and MGF1 with SHA-1.
    RsaesOaepSha1,
    /// `RSAES_OAEP_SHA_256`: OAEP and MGF1 with SHA-256.
    RsaesOaepSha256,
}

impl KmsRsaAlgorithm {
    /// The KMS API name.
    pub fn as_str(self) -> &'static str {
        match self {
            KmsRsaAlgorithm::RsaesOaepSha1 => "RSAES_OAEP_SHA_1",
            KmsRsaAlgorithm::RsaesOaepSha256 => "RSAES_OAEP_SHA_256",
        }
    }

    /// Parses the KMS API name.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "RSAES_OAEP_SHA_1" => Ok(KmsRsaAlgorithm::RsaesOaepSha1),
            "RSAES_OAEP_SHA_256" => Ok(KmsRsaAlgorithm::RsaesOaepSha256),
            _ => Err(err!(
                InvalidArgument,
                "encryption algorithm {s:?} (use RSAES_OAEP_SHA_256 or RSAES_OAEP_SHA_1)"
            )),
        }
    }

    fn padding(self) -> Oaep {
        match self {
            KmsRsaAlgorithm::RsaesOaepSha1 => Oaep::new::<sha1::Sha1>(),
            KmsRsaAlgorithm::RsaesOaepSha256 => Oaep::new::<Sha256>(),
        }
    }
}

/// A KMS Decrypt request for an asymmetric key (no KMS encryption context:
/// asymmetric keys do not take one). `encryption_context` is the message's
/// context, for a backend that authorizes on it; KMS itself ignores it.
#[derive(Clone, Debug)]
pub struct KmsDecryptRequest {
    /// The key ARN to decrypt with.
    pub key_id: String,
    /// The RSA-OAEP ciphertext (the EDK).
    pub ciphertext_blob: Vec<u8>,
    /// The OAEP variant.
    pub encryption_algorithm: KmsRsaAlgorithm,
    /// The message's encryption context.
    pub encryption_context: EncryptionContext,
}

/// A KMS Decrypt response.
pub struct KmsDecryptResponse {
    /// The ARN of the key that decrypted.
    pub key_id: String,
    /// The decrypted bytes: `SHA-384(context) ‖ data key`.
    pub plaintext: Zeroizing<Vec<u8>>,
}

/// Calls KMS Decrypt (or a backend that does).
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
pub trait KmsDecrypt: crate::MaybeSend {
    /// Performs the call. Errors should carry `KMS_ERROR`.
    async fn decrypt(&self, request: KmsDecryptRequest) -> Result<KmsDecryptResponse>;
}

/// The AWS KMS RSA keyring.
#[derive(Clone)]
pub struct KmsRsaKeyring {
    key_arn: String,
    public_key: Option<RsaPublicKey>,
    algorithm: KmsRsaAlgorithm,
    kms: Option<Arc<dyn KmsDecrypt>>,
}

impl core::fmt::Debug for KmsRsaKeyring {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KmsRsaKeyring")
            .field("key_arn", &self.key_arn)
            .field("algorithm", &self.algorithm)
            .field("can_encrypt", &self.public_key.is_some())
            .field("can_decrypt", &self.kms.is_some())
            .finish()
    }
}

impl KmsRsaKeyring {
    /// A keyring for `key_arn` (a full KMS key ARN; aliases are refused).
    /// Encryption needs `public_key` (DER SPKI as KMS GetPublicKey returns it,
    /// or PEM); decryption needs a [`KmsDecrypt`] via [`Self::with_kms_decrypt`].
    pub fn new(key_arn: &str, public_key: Option<&[u8]>, algorithm: KmsRsaAlgorithm) -> Result<Self> {
        check_key_arn(key_arn)?;
        let public_key = public_key.map(parse_rsa_public_key).transpose()?;
        Ok(KmsRsaKeyring {
            key_arn: key_arn.to_owned(),
            public_key,
            algorithm,
            kms: None,
        })
    }

    /// Adds the KMS Decrypt call used on decrypt.
    pub fn with_kms_decrypt(mut self, kms: Arc<dyn KmsDecrypt>) -> Self {
        self.kms = Some(kms);
        self
    }

    /// The configured key ARN.
    pub fn key_arn(&self) -> &str {
        &self.key_arn
    }

    /// SHA-256 of the public key's DER SubjectPublicKeyInfo, for pinning.
    pub fn public_key_fingerprint(&self) -> Option<[u8; 32]> {
        use rsa::pkcs8::EncodePublicKey;
        let der = self.public_key.as_ref()?.to_public_key_der().ok()?;
        Some(Sha256::digest(der.as_bytes()).into())
    }
}

/// Checks `arn:PARTITION:kms:REGION:ACCOUNT:key/ID` (MPL: "Kms Key ID must be a KMS Key ARN").
pub(crate) fn check_key_arn(arn: &str) -> Result<()> {
    parse_key_arn(arn).map(|_| ())
}

struct Arn<'a> {
    partition: &'a str,
    region: &'a str,
    account: &'a str,
    key_id: &'a str,
}

fn parse_key_arn(arn: &str) -> Result<Arn<'_>> {
    let bad = || err!(InvalidArgument, "{arn:?} is not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)");
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" || parts[2] != "kms" {
        return Err(bad());
    }
    let (partition, region, account, resource) = (parts[1], parts[3], parts[4], parts[5]);
    if !partition.starts_with("aws") || region.is_empty() || account.is_empty() {
        return Err(bad());
    }
    let key_id = resource.strip_prefix("key/").ok_or_else(bad)?;
    if key_id.is_empty() {
        return Err(bad());
    }
    Ok(Arn { partition, region, account, key_id })
}

/// AWS KMS MRK Match for Decrypt (SPEC framework/aws-kms/aws-kms-mrk-match-for-decrypt.md):
/// identical ARNs match; multi-Region keys (`mrk-…`) also match across regions.
fn mrk_match(configured: &str, provider_info: &str) -> bool {
    if configured == provider_info {
        return true;
    }
    match (parse_key_arn(configured), parse_key_arn(provider_info)) {
        (Ok(a), Ok(b)) => {
            a.key_id.starts_with("mrk-")
                && a.partition == b.partition
                && a.account == b.account
                && a.key_id == b.key_id
                && a.region != b.region
        }
        _ => false,
    }
}

fn context_digest(ctx: &EncryptionContext) -> Result<[u8; DIGEST_LEN]> {
    // Not capped: the context of a message another SDK wrote may be larger
    // than this library writes (the encrypt path checks the cap first).
    Ok(Sha384::digest(context::canonical(ctx)?).into())
}

#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
impl Keyring for KmsRsaKeyring {
    async fn on_encrypt(&self, mut materials: EncryptionMaterials) -> Result<EncryptionMaterials> {
        if materials.suite.is_signing() {
            return Err(err!(
                UnsupportedSuiteForKeyring,
                "the AWS KMS RSA keyring does not support signing suite {}",
                materials.suite
            ));
        }
        let pk = self.public_key.as_ref().ok_or_else(|| {
            err!(InvalidArgument, "the AWS KMS RSA keyring needs the public key to encrypt")
        })?;
        ensure_data_key(&mut materials);
        let dk = materials.data_key.as_ref().map(DataKey::as_bytes).unwrap_or_default();
        let mut pt = Zeroizing::new(Vec::with_capacity(DIGEST_LEN + dk.len()));
        pt.extend_from_slice(&context_digest(&materials.encryption_context)?);
        pt.extend_from_slice(dk);
        let ct = pk
            .encrypt(&mut rand_core::OsRng, self.algorithm.padding(), &pt)
            .map_err(|_| err!(EncryptionFailed, "RSA-OAEP wrapping of the data key failed"))?;
        materials.encrypted_data_keys.push(EncryptedDataKey {
            provider_id: PROVIDER_ID.to_owned(),
            provider_info: self.key_arn.as_bytes().to_vec(),
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
        if materials.suite.is_signing() {
            return Err(err!(
                UnsupportedSuiteForKeyring,
                "the AWS KMS RSA keyring does not support signing suite {}",
                materials.suite
            ));
        }
        let kms = self.kms.as_ref().ok_or_else(|| {
            err!(InvalidArgument, "the AWS KMS RSA keyring needs a KMS Decrypt function to decrypt")
        })?;
        let expected_digest = context_digest(&materials.encryption_context)?;
        let mut failures: Vec<crate::Error> = Vec::new();
        // SPEC framework/aws-kms/aws-kms-rsa-keyring.md (OnDecrypt): the EDKs
        // are filtered first, and an aws-kms-rsa EDK whose provider info is
        // not a key ARN fails the whole call (as the Material Providers'
        // filter does), even when another EDK would unwrap.
        let mut ours = Vec::new();
        for edk in edks.iter().filter(|e| e.provider_id == PROVIDER_ID) {
            let info = core::str::from_utf8(&edk.provider_info)
                .map_err(|_| err!(MalformedMessage, "aws-kms-rsa provider info is not UTF-8"))?;
            check_key_arn(info).map_err(|e| crate::Error::new(crate::ErrorCode::MalformedMessage, e.detail()))?;
            if mrk_match(&self.key_arn, info) {
                ours.push((edk, info));
            }
        }
        for (edk, info) in ours {
            let request = KmsDecryptRequest {
                key_id: self.key_arn.clone(),
                ciphertext_blob: edk.ciphertext.clone(),
                encryption_algorithm: self.algorithm,
                encryption_context: materials.encryption_context.clone(),
            };
            let resp = match kms.decrypt(request).await {
                Ok(r) => r,
                Err(e) => {
                    failures.push(crate::Error::new(e.code(), format!("KMS Decrypt with {info}: {}", e.detail())));
                    continue;
                }
            };
            if resp.key_id != self.key_arn {
                failures.push(err!(
                    KmsResponseInvalid,
                    "KMS Decrypt returned key id {:?}, expected {:?}",
                    resp.key_id,
                    self.key_arn
                ));
                continue;
            }
            let want = DIGEST_LEN + materials.suite.data_key_len();
            if resp.plaintext.len() != want {
                failures.push(err!(
                    KmsResponseInvalid,
                    "KMS Decrypt returned {} bytes, expected {want}",
                    resp.plaintext.len()
                ));
                continue;
            }
            let (digest, key) = resp.plaintext.split_at(DIGEST_LEN);
            if !bool::from(digest.ct_eq(&expected_digest)) {
                failures.push(err!(
                    KmsResponseInvalid,
                    "the wrapped key is bound to a different encryption context"
                ));
                continue;
            }
            materials.data_key = Some(DataKey::new(key.to_vec()));
            return Ok(materials);
        }
        Err(combine_failures(&format!("the AWS KMS RSA keyring for {}", self.key_arn), failures))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns() {
        assert!(check_key_arn("arn:aws:kms:us-east-1:111122223333:key/1234abcd").is_ok());
        assert!(check_key_arn("arn:aws:kms:us-east-1:111122223333:alias/x").is_err());
        assert!(check_key_arn("alias/x").is_err());
        assert!(check_key_arn("1234abcd").is_err());
        assert!(mrk_match(
            "arn:aws:kms:us-east-1:111122223333:key/mrk-1",
            "arn:aws:kms:eu-west-1:111122223333:key/mrk-1"
        ));
        assert!(!mrk_match(
            "arn:aws:kms:us-east-1:111122223333:key/k-1",
            "arn:aws:kms:eu-west-1:111122223333:key/k-1"
        ));
    }
}
