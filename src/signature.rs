//! Footer signatures of signing suites: ECDSA P-256/SHA-256 and P-384/SHA-384
//! over header ‖ body (SPEC data-format/message-footer.md). The public key
//! travels in the encryption context as `aws-crypto-public-key`, base64 of
//! the SEC1 compressed point (SPEC framework/default-cmm.md).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sha2::{Digest, Sha256, Sha384};

use crate::error::{err, Result};
use crate::suite::SignatureAlgorithm;

/// Encryption context key that carries the verification key.
pub const PUBLIC_KEY_CONTEXT_KEY: &str = "aws-crypto-public-key";

/// Accumulates the signed bytes and signs at the end. The private key is
/// zeroized on drop (the `ecdsa` crate's `SigningKey` is `ZeroizeOnDrop`).
pub(crate) enum Signer {
    P256(p256::ecdsa::SigningKey, Sha256),
    P384(p384::ecdsa::SigningKey, Sha384),
}

impl Signer {
    /// A fresh key pair; returns the signer and the base64 public key.
    pub(crate) fn generate(alg: SignatureAlgorithm) -> (Signer, String) {
        let mut rng = rand_core::OsRng;
        match alg {
            SignatureAlgorithm::EcdsaP256 => {
                let k = p256::ecdsa::SigningKey::random(&mut rng);
                let pk = B64.encode(k.verifying_key().to_encoded_point(true).as_bytes());
                (Signer::P256(k, Sha256::new()), pk)
            }
            SignatureAlgorithm::EcdsaP384 => {
                let k = p384::ecdsa::SigningKey::random(&mut rng);
                let pk = B64.encode(k.verifying_key().to_encoded_point(true).as_bytes());
                (Signer::P384(k, Sha384::new()), pk)
            }
        }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            Signer::P256(_, h) => h.update(data),
            Signer::P384(_, h) => h.update(data),
        }
    }

    /// DER `ECDSA-Sig-Value` with s in the lower half of the group order,
    /// drawn until it has the suite's static length (as the Python SDK
    /// does), so a message's size is known before it is written.
    pub(crate) fn sign(self) -> Result<Vec<u8>> {
        use p256::ecdsa::signature::RandomizedDigestSigner;
        let fail = |_| err!(EncryptionFailed, "ECDSA signing failed");
        let mut rng = rand_core::OsRng;
        let mut der = Vec::new();
        for _ in 0..MAX_SIGNING_ATTEMPTS {
            der = match &self {
                Signer::P256(k, h) => {
                    let s: p256::ecdsa::Signature = k.try_sign_digest_with_rng(&mut rng, h.clone()).map_err(fail)?;
                    s.normalize_s().unwrap_or(s).to_der().as_bytes().to_vec()
                }
                Signer::P384(k, h) => {
                    let s: p384::ecdsa::Signature = k.try_sign_digest_with_rng(&mut rng, h.clone()).map_err(fail)?;
                    s.normalize_s().unwrap_or(s).to_der().as_bytes().to_vec()
                }
            };
            if der.len() == self.algorithm().signature_len() {
                break;
            }
        }
        Ok(der)
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        match self {
            Signer::P256(..) => SignatureAlgorithm::EcdsaP256,
            Signer::P384(..) => SignatureAlgorithm::EcdsaP384,
        }
    }
}

/// Half the draws give the static length; 64 failures in a row do not happen.
const MAX_SIGNING_ATTEMPTS: usize = 64;

impl SignatureAlgorithm {
    /// Length of the DER signature kms-envelope writes: r with its top bit
    /// set (one zero pad byte) and a low s, as the Python SDK's
    /// `signature_len` (71 for P-256, 103 for P-384).
    pub fn signature_len(self) -> usize {
        match self {
            SignatureAlgorithm::EcdsaP256 => 71,
            SignatureAlgorithm::EcdsaP384 => 103,
        }
    }
}

/// Accumulates the signed bytes and verifies the footer signature.
pub(crate) enum Verifier {
    P256(p256::ecdsa::VerifyingKey, Sha256),
    P384(p384::ecdsa::VerifyingKey, Sha384),
}

impl Verifier {
    pub(crate) fn from_context_value(alg: SignatureAlgorithm, b64: &str) -> Result<Verifier> {
        let bad = || err!(SignatureInvalid, "the message's verification key is not a valid public key");
        let point = B64.decode(b64).map_err(|_| bad())?;
        Ok(match alg {
            SignatureAlgorithm::EcdsaP256 => Verifier::P256(
                p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).map_err(|_| bad())?,
                Sha256::new(),
            ),
            SignatureAlgorithm::EcdsaP384 => Verifier::P384(
                p384::ecdsa::VerifyingKey::from_sec1_bytes(&point).map_err(|_| bad())?,
                Sha384::new(),
            ),
        })
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            Verifier::P256(_, h) => h.update(data),
            Verifier::P384(_, h) => h.update(data),
        }
    }

    pub(crate) fn verify(self, der: &[u8]) -> Result<()> {
        use p256::ecdsa::signature::DigestVerifier;
        let bad = || err!(SignatureInvalid, "the footer signature does not verify");
        match self {
            Verifier::P256(k, h) => {
                let s = p256::ecdsa::Signature::from_der(der).map_err(|_| bad())?;
                k.verify_digest(h, &s).map_err(|_| bad())
            }
            Verifier::P384(k, h) => {
                let s = p384::ecdsa::Signature::from_der(der).map_err(|_| bad())?;
                k.verify_digest(h, &s).map_err(|_| bad())
            }
        }
    }
}
