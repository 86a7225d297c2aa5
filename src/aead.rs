//! The AEAD seam: frame and header encryption go through [`FrameAead`], so a
//! platform can plug in its own AES-GCM (WebCrypto in browsers). The default
//! backend is RustCrypto `aes-gcm`.

// aes-gcm 0.10 speaks generic-array 0.14, whose latest patch release marks
// itself deprecated in favour of 1.x; the types are still the ones aes-gcm needs.
#![allow(deprecated)]

use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm};

use crate::error::{err, Result};

type Aes192Gcm = AesGcm<aes::Aes192, aes_gcm::aead::consts::U12>;

/// AES-GCM with a fixed key, 12-byte IVs and 16-byte tags.
pub trait FrameAead: crate::MaybeSend {
    /// Encrypts `buf` in place and returns the tag.
    fn seal_in_place(&self, iv: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> Result<[u8; 16]>;
    /// Decrypts `buf` in place after checking `tag`. On failure `buf` holds no plaintext.
    fn open_in_place(&self, iv: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8; 16]) -> Result<()>;
}

/// Creates keyed [`FrameAead`]s.
pub trait AeadProvider: crate::MaybeSend {
    /// Keys a cipher with a 16-, 24- or 32-byte AES key.
    fn new_key(&self, key: &[u8]) -> Result<Box<dyn FrameAead>>;
}

/// RustCrypto `aes-gcm` (AES-NI/CLMUL when the CPU has them; constant-time software otherwise).
#[derive(Clone, Copy, Debug, Default)]
pub struct RustCryptoAead;

enum Keyed {
    A128(Aes128Gcm),
    A192(Aes192Gcm),
    A256(Aes256Gcm),
}

impl AeadProvider for RustCryptoAead {
    fn new_key(&self, key: &[u8]) -> Result<Box<dyn FrameAead>> {
        Ok(Box::new(RustCryptoKey::new(key)?))
    }
}

/// A keyed RustCrypto AES-GCM cipher; the key schedule is zeroized on drop.
pub(crate) struct RustCryptoKey(Keyed);

impl RustCryptoKey {
    pub(crate) fn new(key: &[u8]) -> Result<Self> {
        let bad = || err!(InvalidKey, "AES key of {} bytes (need 16, 24 or 32)", key.len());
        Ok(RustCryptoKey(match key.len() {
            16 => Keyed::A128(Aes128Gcm::new_from_slice(key).map_err(|_| bad())?),
            24 => Keyed::A192(Aes192Gcm::new_from_slice(key).map_err(|_| bad())?),
            32 => Keyed::A256(Aes256Gcm::new_from_slice(key).map_err(|_| bad())?),
            _ => return Err(bad()),
        }))
    }
}

impl FrameAead for RustCryptoKey {
    fn seal_in_place(&self, iv: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> Result<[u8; 16]> {
        let n = GenericArray::from_slice(iv);
        let tag = match &self.0 {
            Keyed::A128(c) => c.encrypt_in_place_detached(n, aad, buf),
            Keyed::A192(c) => c.encrypt_in_place_detached(n, aad, buf),
            Keyed::A256(c) => c.encrypt_in_place_detached(n, aad, buf),
        }
        .map_err(|_| err!(EncryptionFailed, "AES-GCM encryption failed"))?;
        Ok(tag.into())
    }

    fn open_in_place(&self, iv: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8; 16]) -> Result<()> {
        let n = GenericArray::from_slice(iv);
        let t = GenericArray::from_slice(tag);
        let r = match &self.0 {
            Keyed::A128(c) => c.decrypt_in_place_detached(n, aad, buf, t),
            Keyed::A192(c) => c.decrypt_in_place_detached(n, aad, buf, t),
            Keyed::A256(c) => c.decrypt_in_place_detached(n, aad, buf, t),
        };
        r.map_err(|_| err!(FrameAuthFailed, "authentication tag does not verify"))
    }
}
