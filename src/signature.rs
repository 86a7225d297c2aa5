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

    /// DER `ECDSA-Sig-Value`, with s normalized to the lower half of the group order.
    pub(crate) fn sign(self) -> Result<Vec<u8>> {
        use p256::ecdsa::signature::DigestSigner;
        let fail = |_| err!(EncryptionFailed, "ECDSA signing failed");
        Ok(match self {
            Signer::P256(k, h) => {
                let s: p256::ecdsa::Signature = k.try_sign_digest(h).map_err(fail)?;
                s.normalize_s().unwrap_or(s).to_der().as_bytes().to_vec()
            }
            Signer::P384(k, h) => {
                let s: p384::ecdsa::Signature = k.try_sign_digest(h).map_err(fail)?;
                s.normalize_s().unwrap_or(s).to_der().as_bytes().to_vec()
            }
        })
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
