//! RSA key parsing: SPKI (DER or PEM, as KMS GetPublicKey returns), PKCS#1
//! public keys, and PKCS#8 / PKCS#1 private keys. The parsed private key
//! type (from the `rsa` crate) derives `Debug`, so it never leaves this crate.

use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::traits::PublicKeyParts;
pub(crate) use rsa::{RsaPrivateKey, RsaPublicKey};

use crate::error::{err, Result};

/// Smallest modulus accepted, in bits.
pub(crate) const MIN_MODULUS_BITS: usize = 2048;

/// Parses an RSA public key from DER SPKI, PEM `PUBLIC KEY` or PEM `RSA PUBLIC KEY`.
pub(crate) fn parse_rsa_public_key(bytes: &[u8]) -> Result<RsaPublicKey> {
    let key = if let Some(pem) = as_pem(bytes) {
        RsaPublicKey::from_public_key_pem(pem)
            .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem))
            .map_err(|_| err!(InvalidKey, "not an RSA public key in PEM"))?
    } else {
        RsaPublicKey::from_public_key_der(bytes)
            .or_else(|_| RsaPublicKey::from_pkcs1_der(bytes))
            .map_err(|_| err!(InvalidKey, "not an RSA public key in DER (SubjectPublicKeyInfo)"))?
    };
    check_size(key.size() * 8)?;
    Ok(key)
}

/// Parses an RSA private key from PEM or DER, PKCS#8 or PKCS#1.
pub(crate) fn parse_rsa_private_key(bytes: &[u8]) -> Result<RsaPrivateKey> {
    let key = if let Some(pem) = as_pem(bytes) {
        RsaPrivateKey::from_pkcs8_pem(pem)
            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem))
            .map_err(|_| err!(InvalidKey, "not an RSA private key in PEM"))?
    } else {
        RsaPrivateKey::from_pkcs8_der(bytes)
            .or_else(|_| RsaPrivateKey::from_pkcs1_der(bytes))
            .map_err(|_| err!(InvalidKey, "not an RSA private key in DER"))?
    };
    check_size(key.size() * 8)?;
    Ok(key)
}

fn check_size(bits: usize) -> Result<()> {
    if bits < MIN_MODULUS_BITS {
        return Err(err!(InvalidKey, "RSA modulus of {bits} bits; at least {MIN_MODULUS_BITS} required"));
    }
    Ok(())
}

fn as_pem(bytes: &[u8]) -> Option<&str> {
    let s = core::str::from_utf8(bytes).ok()?;
    s.contains("-----BEGIN ").then_some(s.trim())
}
