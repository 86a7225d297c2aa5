//! Message body codec: frames, final frame, legacy single block
//! (SPEC data-format/message-body.md, message-body-aad.md).

use super::reader::Reader;
use crate::error::{err, Result};

/// Sequence number field value that marks the final frame.
pub(crate) const FINAL_FRAME_MARKER: u32 = 0xFFFF_FFFF;
/// Bytes a regular frame adds: seq(4) ‖ IV(12) ‖ … ‖ tag(16).
pub(crate) const FRAME_OVERHEAD: u64 = 4 + 12 + 16;
/// Bytes the final frame adds: marker(4) ‖ seq(4) ‖ IV(12) ‖ len(4) ‖ … ‖ tag(16).
pub(crate) const FINAL_FRAME_OVERHEAD: u64 = 4 + 4 + 12 + 4 + 16;
/// Largest legacy single-block content (SPEC: 2^36 − 32).
pub(crate) const MAX_NON_FRAMED_LEN: u64 = (1 << 36) - 32;

/// The body AAD content string of a piece of the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyKind {
    Frame,
    FinalFrame,
    SingleBlock,
}

impl BodyKind {
    fn content_string(self) -> &'static [u8] {
        match self {
            BodyKind::Frame => b"AWSKMSEncryptionClient Frame",
            BodyKind::FinalFrame => b"AWSKMSEncryptionClient Final Frame",
            BodyKind::SingleBlock => b"AWSKMSEncryptionClient Single Block",
        }
    }
}

/// Frame IV: the sequence number left-padded with zeros to 12 bytes.
pub(crate) fn frame_iv(seq: u32) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[8..].copy_from_slice(&seq.to_be_bytes());
    iv
}

/// Body AAD = message id ‖ content string ‖ UInt32 seq ‖ UInt64 content length.
pub(crate) fn body_aad(message_id: &[u8], kind: BodyKind, seq: u32, len: u64) -> Vec<u8> {
    let cs = kind.content_string();
    let mut aad = Vec::with_capacity(message_id.len() + cs.len() + 12);
    aad.extend_from_slice(message_id);
    aad.extend_from_slice(cs);
    aad.extend_from_slice(&seq.to_be_bytes());
    aad.extend_from_slice(&len.to_be_bytes());
    aad
}

/// Writes a regular frame's prefix (seq ‖ IV).
pub(crate) fn put_frame_prefix(out: &mut Vec<u8>, seq: u32, iv: &[u8; 12]) {
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(iv);
}

/// Writes the final frame's prefix (marker ‖ seq ‖ IV ‖ length).
pub(crate) fn put_final_frame_prefix(out: &mut Vec<u8>, seq: u32, iv: &[u8; 12], len: u32) {
    out.extend_from_slice(&FINAL_FRAME_MARKER.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(iv);
    out.extend_from_slice(&len.to_be_bytes());
}

/// A sealed piece of the body located inside a buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SealedPiece {
    pub kind: BodyKind,
    pub seq: u32,
    pub iv: [u8; 12],
    /// Ciphertext location within the buffer parsed; the 16-byte tag follows it.
    pub ct_start: usize,
    pub ct_len: usize,
    /// Bytes the whole piece occupies.
    pub len: usize,
}

/// Parses one frame from the front of `buf`; `Ok(None)` = need more bytes.
/// Nothing is allocated from a length field: the caller buffers only bytes
/// that actually arrived, and the frame length was bounded with the header.
pub(crate) fn parse_frame(buf: &[u8], frame_length: u32) -> Result<Option<SealedPiece>> {
    let mut r = Reader::new(buf);
    macro_rules! need {
        ($e:expr) => {
            match $e {
                Some(v) => v,
                None => return Ok(None),
            }
        };
    }
    let first = need!(r.u32());
    let is_final = first == FINAL_FRAME_MARKER;
    let seq = if is_final { need!(r.u32()) } else { first };
    let iv = need!(r.array::<12>());
    let (kind, ct_len) = if is_final {
        let len = need!(r.u32());
        if len > frame_length {
            return Err(err!(
                MalformedMessage,
                "final frame content length {len} exceeds the frame length {frame_length}"
            ));
        }
        (BodyKind::FinalFrame, len as usize)
    } else {
        (BodyKind::Frame, frame_length as usize)
    };
    let ct_start = r.used();
    need!(r.take(ct_len));
    need!(r.take(16));
    Ok(Some(SealedPiece {
        kind,
        seq,
        iv,
        ct_start,
        ct_len,
        len: r.used(),
    }))
}

/// Parses the header of a legacy single block: IV ‖ UInt64 length, then
/// the ciphertext and tag. `Ok(None)` = need more bytes.
pub(crate) fn parse_single_block(buf: &[u8], max_len: u64) -> Result<Option<SealedPiece>> {
    let mut r = Reader::new(buf);
    let Some(iv) = r.array::<12>() else { return Ok(None) };
    let Some(len) = r.u64() else { return Ok(None) };
    if len > MAX_NON_FRAMED_LEN {
        return Err(err!(MalformedMessage, "non-framed content length {len} is over 2^36 - 32"));
    }
    if len > max_len {
        return Err(err!(
            LimitExceeded,
            "non-framed content of {len} bytes exceeds the buffer limit of {max_len} bytes"
        ));
    }
    let ct_start = r.used();
    let Some(_) = r.take(len as usize) else { return Ok(None) };
    let Some(_tag) = r.take(16) else { return Ok(None) };
    Ok(Some(SealedPiece {
        kind: BodyKind::SingleBlock,
        seq: 1,
        iv,
        ct_start,
        ct_len: len as usize,
        len: r.used(),
    }))
}

/// Size of the body that frames `plaintext_len` bytes with `frame_length`,
/// writing a full final frame when the length divides exactly.
pub(crate) fn framed_body_len(plaintext_len: u64, frame_length: u32) -> Option<u64> {
    let f = frame_length as u64;
    let full = if plaintext_len == 0 { 0 } else { (plaintext_len - 1) / f };
    let last = plaintext_len - full * f;
    if full + 1 > u32::MAX as u64 {
        return None;
    }
    full.checked_mul(f + FRAME_OVERHEAD)?
        .checked_add(last + FINAL_FRAME_OVERHEAD)
}

/// The plaintext a framed body of `body_len` bytes carries, if the body is
/// regular frames followed by a final frame of at most `frame_length`
/// bytes (the only layout the format allows, spec "Body": every frame but
/// the final is full). For sizing an output before decrypting.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // used by the wasm API
pub(crate) fn framed_plaintext_len(body_len: u64, frame_length: u32) -> Option<u64> {
    let f = frame_length as u64;
    let rest = body_len.checked_sub(FINAL_FRAME_OVERHEAD)?;
    let (full, last) = (rest / (f + FRAME_OVERHEAD), rest % (f + FRAME_OVERHEAD));
    (f > 0 && last <= f).then(|| full * f + last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iv_and_aad_layout() {
        assert_eq!(frame_iv(0x01020304), [0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
        let aad = body_aad(&[7; 32], BodyKind::FinalFrame, 2, 5);
        assert_eq!(aad.len(), 32 + 34 + 4 + 8);
        assert_eq!(&aad[aad.len() - 12..], &[0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 5]);
    }

    #[test]
    fn plaintext_length_from_body_length() {
        for f in [1u32, 16, 4096] {
            for n in [0u64, 1, 15, 16, 17, 4095, 4096, 4097, 3 * 4096, 100_000] {
                let body = framed_body_len(n, f).unwrap();
                assert_eq!(framed_plaintext_len(body, f), Some(n), "n {n}, frame {f}");
            }
            // An empty final frame after full frames (other writers' layout).
            let body = 3 * (f as u64 + FRAME_OVERHEAD) + FINAL_FRAME_OVERHEAD;
            assert_eq!(framed_plaintext_len(body, f), Some(3 * f as u64));
        }
        assert_eq!(framed_plaintext_len(FINAL_FRAME_OVERHEAD - 1, 4096), None);
        // A remainder no final frame can have.
        assert_eq!(framed_plaintext_len(FINAL_FRAME_OVERHEAD + 17, 16), None);
        assert_eq!(framed_plaintext_len(1000, 0), None);
    }

    #[test]
    fn body_length() {
        assert_eq!(framed_body_len(0, 4), Some(40));
        assert_eq!(framed_body_len(4, 4), Some(44));
        assert_eq!(framed_body_len(5, 4), Some(36 + 41));
    }

    #[test]
    fn frame_needs_more_and_rejects_long_final() {
        let mut f = Vec::new();
        put_final_frame_prefix(&mut f, 1, &frame_iv(1), 9);
        assert_eq!(parse_frame(&f, 8).unwrap_err().code().as_str(), "MALFORMED_MESSAGE");
        assert_eq!(parse_frame(&f[..10], 8).unwrap(), None);
    }
}
