//! The AEAD seam: frame and header encryption go through [`FrameAead`], so a
//! platform can plug in its own AES-GCM. The trait is async because the
//! browser's WebCrypto is; the default backend, RustCrypto `aes-gcm`,
//! completes at once.

// aes-gcm 0.10 speaks generic-array 0.14, whose latest patch release marks
// itself deprecated in favour of 1.x; the types are still the ones aes-gcm needs.
#![allow(deprecated)]

use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm};

use crate::error::{err, Result};

type Aes192Gcm = AesGcm<aes::Aes192, aes_gcm::aead::consts::U12>;

/// AES-GCM with a fixed key, 12-byte IVs and 16-byte tags.
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
pub trait FrameAead: crate::MaybeSend {
    /// Encrypts `plaintext` and appends `ciphertext ‖ tag` to `out`.
    async fn seal(&self, iv: &[u8; 12], aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) -> Result<()>;
    /// Checks and decrypts `ciphertext ‖ tag`, appending the plaintext to
    /// `out`. On failure nothing is appended (`FRAME_AUTH_FAILED`).
    async fn open(&self, iv: &[u8; 12], aad: &[u8], sealed: &[u8], out: &mut Vec<u8>) -> Result<()>;
}

/// Creates keyed [`FrameAead`]s.
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
pub trait AeadProvider: crate::MaybeSend {
    /// Keys a cipher with a 16-, 24- or 32-byte AES key.
    async fn new_key(&self, key: &[u8]) -> Result<Box<dyn FrameAead>>;
}

/// RustCrypto `aes-gcm` (AES-NI/CLMUL when the CPU has them; constant-time software otherwise).
#[derive(Clone, Copy, Debug, Default)]
pub struct RustCryptoAead;

enum Keyed {
    A128(Aes128Gcm),
    A192(Aes192Gcm),
    A256(Aes256Gcm),
}

#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
impl AeadProvider for RustCryptoAead {
    async fn new_key(&self, key: &[u8]) -> Result<Box<dyn FrameAead>> {
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

#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
impl FrameAead for RustCryptoKey {
    async fn seal(&self, iv: &[u8; 12], aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = self.seal_in_place(iv, aad, &mut out[start..])?;
        out.extend_from_slice(&tag);
        Ok(())
    }

    async fn open(&self, iv: &[u8; 12], aad: &[u8], sealed: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let Some(ct_len) = sealed.len().checked_sub(16) else {
            return Err(err!(FrameAuthFailed, "ciphertext shorter than its tag"));
        };
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&sealed[ct_len..]);
        let start = out.len();
        out.extend_from_slice(&sealed[..ct_len]);
        let r = self.open_in_place(iv, aad, &mut out[start..], &tag);
        if r.is_err() {
            out.truncate(start);
        }
        r
    }
}

impl RustCryptoKey {
    pub(crate) fn seal_in_place(&self, iv: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> Result<[u8; 16]> {
        let n = GenericArray::from_slice(iv);
        let tag = match &self.0 {
            Keyed::A128(c) => c.encrypt_in_place_detached(n, aad, buf),
            Keyed::A192(c) => c.encrypt_in_place_detached(n, aad, buf),
            Keyed::A256(c) => c.encrypt_in_place_detached(n, aad, buf),
        }
        .map_err(|_| err!(EncryptionFailed, "AES-GCM encryption failed"))?;
        Ok(tag.into())
    }

    pub(crate) fn open_in_place(&self, iv: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8; 16]) -> Result<()> {
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
