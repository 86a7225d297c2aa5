//! Message footer: the ECDSA signature of signing suites (SPEC data-format/message-footer.md).

use super::reader::{put_u16_prefixed, Reader};

/// Parses `UInt16 length ‖ signature`; `None` = need more bytes.
/// Returns the signature and the footer length.
pub(crate) fn parse(buf: &[u8]) -> Option<(&[u8], usize)> {
    let mut r = Reader::new(buf);
    let sig = r.u16_prefixed()?;
    Some((sig, r.used()))
}

/// Serializes a footer.
pub(crate) fn serialize(signature: &[u8], out: &mut Vec<u8>) {
    put_u16_prefixed(out, signature);
}
