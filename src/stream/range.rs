//! Random-access decryption: a framed message has fixed-length frames, so
//! the position of every frame follows from the header length, the frame
//! length and the message size. A range read fetches the header and only the
//! frames that cover the requested plaintext bytes, authenticates each of
//! them (header tag, key commitment, frame tags and sequence numbers), and
//! returns exactly the requested bytes.
//!
//! What a range read cannot prove: that frames *outside* the range are
//! intact, or that the message was not cut short after the range — unless
//! the range reaches the end, in which case the final frame (whose position
//! and sequence number follow from the message size) is verified too, and
//! for signing suites the whole message is read so the signature can be
//! checked. Non-framed (legacy) messages are one GCM block: always read whole.
//! A range of a signed message that does not reach the end is refused unless
//! the caller allows an unverified signature, and the result says which.

use crate::client::{Client, DecryptOptions};
use crate::error::{err, Result};
use crate::format::body::{BodyKind, FINAL_FRAME_OVERHEAD, FRAME_OVERHEAD};
use crate::format::{ContentType, Header};
use crate::keyring::Keyring;
use crate::stream::DecryptStatus;
use crate::MaybeSend;

/// Random access to the bytes of one message: a file, a `Blob`, an object
/// read with HTTP `Range` requests, or memory.
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
pub trait RangeSource: MaybeSend {
    /// The message's length in bytes.
    async fn size(&self) -> Result<u64>;
    /// Exactly `len` bytes at `offset` (an error if fewer exist).
    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>>;
}

#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
impl RangeSource for [u8] {
    async fn size(&self) -> Result<u64> {
        Ok(self.len() as u64)
    }
    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let start = usize::try_from(offset).map_err(|_| err!(Truncated, "offset {offset} is past the end"))?;
        self.get(start..start.saturating_add(len))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| err!(Truncated, "the message ends before byte {}", offset + len as u64))
    }
}

#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
impl RangeSource for Vec<u8> {
    async fn size(&self) -> Result<u64> {
        self[..].size().await
    }
    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        self[..].read_at(offset, len).await
    }
}

/// The result of [`Client::decrypt_range`].
#[derive(Debug)]
pub struct RangePlaintext {
    /// The plaintext bytes `[start, end)`.
    pub plaintext: Vec<u8>,
    /// The (authenticated) header.
    pub header: Header,
    /// The range returned, after clamping to the plaintext's length.
    pub start: u64,
    /// End of the range returned (exclusive).
    pub end: u64,
    /// The whole message's plaintext length.
    pub plaintext_len: u64,
    /// Whether the message's signature was checked.
    pub signature: SignatureCheck,
}

/// What a range read knows of the message's signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureCheck {
    /// The suite signs nothing.
    Unsigned,
    /// The whole message was read and its signature verifies.
    Verified,
    /// Only the range's frames were read (`allow_unverified_signature`):
    /// they authenticate under the data key, but whoever could unwrap that
    /// key could have written them.
    NotChecked,
}

/// The first read for the header; doubled while the header is longer.
const HEADER_READ: u64 = 4096;

impl Client {
    /// Decrypts plaintext bytes `[start, end)` of the message in `source`,
    /// reading only its header and the frames that cover the range (see
    /// the module docs for what that proves). The range is clamped to the
    /// plaintext's length as `slice` would; `start >= end` gives no bytes
    /// after the header (and data key) is verified.
    pub async fn decrypt_range(
        &self,
        keyring: &dyn Keyring,
        source: &dyn RangeSource,
        start: u64,
        end: u64,
        opts: &DecryptOptions,
    ) -> Result<RangePlaintext> {
        let size = source.size().await?;
        // The header, read in growing pieces.
        let mut dec = self.decryptor(opts);
        let mut fetched: Vec<u8> = Vec::new();
        let mut want = HEADER_READ.min(size);
        loop {
            let more = source.read_at(fetched.len() as u64, (want - fetched.len() as u64) as usize).await?;
            let status = dec.update(&more, &mut Vec::new()).await?;
            fetched.extend_from_slice(&more);
            if status == DecryptStatus::NeedDataKey {
                break;
            }
            if fetched.len() as u64 >= size {
                return Err(err!(Truncated, "the message ends inside its header"));
            }
            want = (want * 2).min(size);
        }
        let header_len = dec.header_len().ok_or_else(|| err!(InvalidState, "no header length"))? as u64;
        let header = dec.header().cloned().ok_or_else(|| err!(InvalidState, "no header"))?;

        if header.content_type == ContentType::NonFramed {
            return self.whole(keyring, source, size, start, end, opts).await;
        }
        let f = u64::from(header.frame_length);
        let stride = f + FRAME_OVERHEAD;
        // Regular frames, the final frame's content length, for a footer of `footer` bytes.
        let layout = |footer: u64| -> Option<(u64, u64)> {
            let body = size.checked_sub(header_len + footer + FINAL_FRAME_OVERHEAD)?;
            let regular = body / stride;
            let last_len = body - regular * stride;
            (last_len <= f && regular < u64::from(u32::MAX)).then_some((regular, last_len))
        };
        let (footer, (regular, last_len)) = match header.suite.signature() {
            None => (0, layout(0).ok_or_else(|| err!(MalformedMessage, "the message size does not fit its frame length (trailing bytes or truncation)"))?),
            Some(alg) => {
                // SPEC data-format/message-footer.md: a 2-byte length, then the
                // DER signature, whose length varies (the Node SDK does not pad
                // it). Find the lengths the last bytes allow: a length prefix l
                // followed by a DER SEQUENCE header of l - 2 content bytes
                // (short form: ECDSA signatures are under 128 bytes). When the
                // layout is still not certain, read everything.
                let max = alg.signature_len() as u64 + 1;
                let tail_len = (2 + max).min(size);
                let tail = source.read_at(size - tail_len, tail_len as usize).await?;
                let fits: Vec<_> = (8..=max)
                    .filter(|&l| l + 2 <= tail_len)
                    .filter(|&l| {
                        let at = (tail_len - 2 - l) as usize;
                        u64::from(u16::from_be_bytes([tail[at], tail[at + 1]])) == l
                            && tail[at + 2] == 0x30
                            && u64::from(tail[at + 3]) == l - 2
                    })
                    .filter_map(|l| layout(2 + l).map(|lay| (2 + l, lay)))
                    .collect();
                match fits.as_slice() {
                    [one] => *one,
                    _ => return self.whole(keyring, source, size, start, end, opts).await,
                }
            }
        };
        let signed = footer > 0;
        let plaintext_len = regular * f + last_len;
        if signed && end.min(plaintext_len) == plaintext_len {
            // The signature covers every byte: verify it the only way there is.
            return self.whole(keyring, source, size, start, end, opts).await;
        }
        if signed && !opts.allow_unverified_signature {
            return Err(err!(
                SignaturePolicy,
                "a range of a signed message that does not reach its end cannot check the signature; read to the end, or allow an unverified signature"
            ));
        }
        let end = end.min(plaintext_len);
        let start = start.min(end);
        let reaches_end = end == plaintext_len;
        // SPEC client-apis/decrypt.md: the key commitment and header tag are checked here.
        dec.unwrap_data_key(keyring).await?;
        let mut plaintext = Vec::new();
        if start < end || reaches_end {
            // Frames are numbered from 1; frame i (0-based) starts at header + i·stride.
            let first = if start < end { start / f } else { regular };
            let last = if reaches_end { regular } else { (end - 1) / f };
            let from = header_len + first * stride;
            let to = if last == regular { size - footer } else { header_len + (last + 1) * stride };
            let bytes = read_reusing(source, &fetched, from, to).await?;
            let mut out = Vec::with_capacity(((last - first + 1) * f) as usize);
            let mut at = 0usize;
            for i in first..=last {
                let len = if i == regular { (FINAL_FRAME_OVERHEAD + last_len) as usize } else { stride as usize };
                let seq = u32::try_from(i + 1).map_err(|_| err!(LimitExceeded, "too many frames"))?;
                let kind = dec.open_frame_at(&bytes[at..at + len], seq, &mut out).await?;
                if (i == regular) != (kind == BodyKind::FinalFrame) {
                    return Err(err!(MalformedMessage, "frame {seq} is not where the message size puts it"));
                }
                at += len;
            }
            let skip = (start - first * f) as usize;
            plaintext = out[skip..skip + (end - start) as usize].to_vec();
        }
        let signature = if signed { SignatureCheck::NotChecked } else { SignatureCheck::Unsigned };
        Ok(RangePlaintext { plaintext, header, start, end, plaintext_len, signature })
    }

    /// Reads and decrypts the whole message, keeping `[start, end)`.
    async fn whole(
        &self,
        keyring: &dyn Keyring,
        source: &dyn RangeSource,
        size: u64,
        start: u64,
        end: u64,
        opts: &DecryptOptions,
    ) -> Result<RangePlaintext> {
        const CHUNK: u64 = 1 << 20;
        let mut dec = self.decryptor(opts);
        let (mut kept, mut seen, mut at) = (Vec::new(), 0u64, 0u64);
        let mut out = Vec::new();
        while at < size {
            let n = CHUNK.min(size - at);
            let bytes = source.read_at(at, n as usize).await?;
            at += n;
            if dec.update(&bytes, &mut out).await? == DecryptStatus::NeedDataKey {
                dec.unwrap_data_key(keyring).await?;
                dec.update(&[], &mut out).await?;
            }
            keep(&mut kept, &out, seen, start, end);
            seen += out.len() as u64;
            out.clear();
        }
        let header = dec.finish()?;
        let end = end.min(seen);
        let start = start.min(end);
        let signature = if header.suite.signature().is_some() { SignatureCheck::Verified } else { SignatureCheck::Unsigned };
        Ok(RangePlaintext { plaintext: kept, header, start, end, plaintext_len: seen, signature })
    }
}

/// Appends the part of `chunk` (plaintext offsets `seen..`) inside `[start, end)`.
fn keep(kept: &mut Vec<u8>, chunk: &[u8], seen: u64, start: u64, end: u64) {
    let lo = start.max(seen);
    let hi = end.min(seen + chunk.len() as u64);
    if lo < hi {
        kept.extend_from_slice(&chunk[(lo - seen) as usize..(hi - seen) as usize]);
    }
}

/// Bytes `[from, to)` of the message, reusing what the header read fetched.
async fn read_reusing(source: &dyn RangeSource, fetched: &[u8], from: u64, to: u64) -> Result<Vec<u8>> {
    let have = fetched.len() as u64;
    if to <= have {
        return Ok(fetched[from as usize..to as usize].to_vec());
    }
    if from < have {
        let mut v = fetched[from as usize..].to_vec();
        v.extend_from_slice(&source.read_at(have, (to - have) as usize).await?);
        return Ok(v);
    }
    source.read_at(from, (to - from) as usize).await
}
