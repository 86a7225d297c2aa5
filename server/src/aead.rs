//! AES-GCM for native builds on aws-lc-rs (the same library rustls and the
//! embedded local KMS use): several times faster than the portable
//! RustCrypto backend on x86-64 and ARM. Plugged into the library through
//! its `AeadProvider` seam; the message format does not change.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_192_GCM, AES_256_GCM};
use kms_envelope::{AeadProvider, Error, ErrorCode, FrameAead, Result};

/// Creates aws-lc-rs AES-GCM keys (`Client::with_aead`).
#[derive(Clone, Copy, Debug, Default)]
pub struct AwsLcAead;

struct Key(LessSafeKey);

#[async_trait::async_trait]
impl AeadProvider for AwsLcAead {
    async fn new_key(&self, key: &[u8]) -> Result<Box<dyn FrameAead>> {
        let alg = match key.len() {
            16 => &AES_128_GCM,
            24 => &AES_192_GCM,
            32 => &AES_256_GCM,
            n => return Err(Error::new(ErrorCode::InvalidKey, format!("AES key of {n} bytes (need 16, 24 or 32)"))),
        };
        let k = UnboundKey::new(alg, key).map_err(|_| Error::new(ErrorCode::InvalidKey, "AES key refused"))?;
        Ok(Box::new(Key(LessSafeKey::new(k))))
    }
}

#[async_trait::async_trait]
impl FrameAead for Key {
    async fn seal(&self, iv: &[u8; 12], aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        out.extend_from_slice(plaintext);
        match self.0.seal_in_place_separate_tag(Nonce::assume_unique_for_key(*iv), Aad::from(aad), &mut out[start..]) {
            Ok(tag) => {
                out.extend_from_slice(tag.as_ref());
                Ok(())
            }
            Err(_) => {
                out.truncate(start);
                Err(Error::new(ErrorCode::LimitExceeded, "AES-GCM refused to seal"))
            }
        }
    }

    async fn open(&self, iv: &[u8; 12], aad: &[u8], sealed: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if sealed.len() < 16 {
            return Err(Error::new(ErrorCode::FrameAuthFailed, "ciphertext shorter than its tag"));
        }
        let start = out.len();
        out.extend_from_slice(sealed);
        match self.0.open_in_place(Nonce::assume_unique_for_key(*iv), Aad::from(aad), &mut out[start..]) {
            Ok(pt) => {
                let n = pt.len();
                out.truncate(start + n);
                Ok(())
            }
            Err(_) => {
                out.truncate(start);
                Err(Error::new(ErrorCode::FrameAuthFailed, "frame does not authenticate"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kms_envelope::{Client, DecryptOptions, EncryptOptions, RawAesKeyring, RustCryptoAead};
    use std::sync::Arc;

    #[test]
    fn messages_are_the_same_either_way() {
        futures_util::FutureExt::now_or_never(async {
            let k = RawAesKeyring::new("ns", "k", &[7u8; 32]).unwrap();
            let fast = Client::new().with_aead(Arc::new(AwsLcAead));
            let portable = Client::new().with_aead(Arc::new(RustCryptoAead));
            for len in [0usize, 1, 4095, 4096, 4097, 300_000] {
                let pt: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
                let mut o = EncryptOptions::default();
                o.frame_length = 4096;
                let a = fast.encrypt(&k, &pt, &o).await.unwrap();
                let b = portable.encrypt(&k, &pt, &o).await.unwrap();
                assert_eq!(portable.decrypt(&k, &a, &DecryptOptions::default()).await.unwrap().0, pt);
                assert_eq!(fast.decrypt(&k, &b, &DecryptOptions::default()).await.unwrap().0, pt);
                let mut t = a.clone();
                let n = t.len();
                t[n - 1] ^= 1; // the final frame's tag
                assert_eq!(fast.decrypt(&k, &t, &DecryptOptions::default()).await.unwrap_err().code(), ErrorCode::FrameAuthFailed);
            }
            for key in [&[1u8; 16][..], &[2u8; 24]] {
                let f = AwsLcAead.new_key(key).await.unwrap();
                let p = RustCryptoAead.new_key(key).await.unwrap();
                let (mut x, mut y) = (Vec::new(), Vec::new());
                f.seal(&[3; 12], b"aad", b"same bytes", &mut x).await.unwrap();
                p.seal(&[3; 12], b"aad", b"same bytes", &mut y).await.unwrap();
                assert_eq!(x, y, "{}-byte key", key.len());
            }
            assert_eq!(AwsLcAead.new_key(&[0; 20]).await.err().unwrap().code(), ErrorCode::InvalidKey);
        })
        .expect("completes at once");
    }
}
