//! Encryption context: canonical serialization and parsing
//! (SPEC framework/structures.md "Serialization"; data-format/message-header.md "AAD").

use std::collections::BTreeMap;

use super::reader::{put_u16_prefixed, Reader};
use crate::error::{err, Result};

/// An encryption context: UTF-8 key/value pairs, authenticated with the message.
///
/// Stored sorted by the UTF-8 bytes of the keys, which is the canonical order
/// the ESDK requires (`String`'s `Ord` is byte order).
pub type EncryptionContext = BTreeMap<String, String>;

/// The prefix reserved for keys the SDK itself writes.
pub const RESERVED_PREFIX: &str = "aws-crypto-";

/// The largest serialized context that fits the header's UInt16 AAD length
/// (the Dafny ESDK's `ESDK_CANONICAL_ENCRYPTION_CONTEXT_MAX_LENGTH`).
pub const MAX_SERIALIZED_LEN: usize = u16::MAX as usize - 2;

/// Canonical serialization for a message being written: [`canonical`], at
/// most [`MAX_SERIALIZED_LEN`] bytes.
pub fn serialize(ctx: &EncryptionContext) -> Result<Vec<u8>> {
    let out = canonical(ctx)?;
    if out.len() > MAX_SERIALIZED_LEN {
        return Err(err!(
            InvalidEncryptionContext,
            "serialized encryption context is {} bytes, the limit is {MAX_SERIALIZED_LEN}",
            out.len()
        ));
    }
    Ok(out)
}

/// Canonical serialization: empty context → no bytes; otherwise
/// `UInt16 count ‖ (UInt16 len ‖ key ‖ UInt16 len ‖ value)*`, keys sorted.
///
/// Without the write-side cap: a context read from a message (up to the
/// header field's 65535 bytes, which other SDKs write) serializes again for
/// the AAD and digests decryption needs.
pub fn canonical(ctx: &EncryptionContext) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    if ctx.is_empty() {
        return Ok(out);
    }
    if ctx.len() > u16::MAX as usize {
        return Err(err!(InvalidEncryptionContext, "encryption context has too many pairs"));
    }
    out.extend_from_slice(&(ctx.len() as u16).to_be_bytes());
    for (k, v) in ctx {
        if k.len() > u16::MAX as usize || v.len() > u16::MAX as usize {
            return Err(err!(InvalidEncryptionContext, "encryption context entry too long"));
        }
        put_u16_prefixed(&mut out, k.as_bytes());
        put_u16_prefixed(&mut out, v.as_bytes());
    }
    Ok(out)
}

/// Parses a serialized context (the bytes inside the header's AAD field).
///
/// Like the Dafny ESDK reader this accepts pairs in any order and the legacy
/// empty encoding `00 00` (a zero count), and rejects duplicate keys, bad
/// UTF-8 and trailing bytes.
pub fn parse(bytes: &[u8]) -> Result<EncryptionContext> {
    let mut ctx = EncryptionContext::new();
    if bytes.is_empty() {
        return Ok(ctx);
    }
    let mut r = Reader::new(bytes);
    let malformed = || err!(MalformedMessage, "encryption context is malformed");
    let count = r.u16().ok_or_else(malformed)?;
    for _ in 0..count {
        let k = r.u16_prefixed().ok_or_else(malformed)?;
        let v = r.u16_prefixed().ok_or_else(malformed)?;
        let k = core::str::from_utf8(k)
            .map_err(|_| err!(InvalidEncryptionContext, "encryption context key is not UTF-8"))?;
        let v = core::str::from_utf8(v)
            .map_err(|_| err!(InvalidEncryptionContext, "encryption context value is not UTF-8"))?;
        if ctx.insert(k.to_owned(), v.to_owned()).is_some() {
            return Err(err!(InvalidEncryptionContext, "duplicate encryption context key {k:?}"));
        }
    }
    if r.left() != 0 {
        return Err(err!(MalformedMessage, "bytes after the encryption context"));
    }
    Ok(ctx)
}

/// Refuses keys with the reserved prefix (SPEC client-apis/encrypt.md).
pub fn check_no_reserved_keys(ctx: &EncryptionContext) -> Result<()> {
    match ctx.keys().find(|k| k.starts_with(RESERVED_PREFIX)) {
        Some(k) => Err(err!(
            ReservedEncryptionContextKey,
            "encryption context key {k:?} uses the reserved prefix {RESERVED_PREFIX:?}"
        )),
        None => Ok(()),
    }
}

/// Compares a reproduced context with the one a header stores (SPEC
/// framework/cmm-interface.md "Decrypt Materials"): a key both hold must
/// have the same value. Returns the reproduced pairs the header does not
/// store, the message's authenticate-only pairs; none may use the reserved
/// prefix, which only the SDK writes.
pub fn reproduced_only(stored: &EncryptionContext, reproduced: &EncryptionContext) -> Result<EncryptionContext> {
    let mut auth_only = EncryptionContext::new();
    for (k, v) in reproduced {
        match stored.get(k) {
            Some(have) if have == v => {}
            Some(_) => {
                return Err(err!(
                    EncryptionContextMismatch,
                    "the message's encryption context value for {k:?} differs from the reproduced one"
                ))
            }
            None if k.starts_with(RESERVED_PREFIX) => {
                return Err(err!(
                    ReservedEncryptionContextKey,
                    "the reproduced pair {k:?} uses the reserved prefix {RESERVED_PREFIX:?} and the message does not store it"
                ))
            }
            None => {
                auth_only.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(auth_only)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_by_utf8_bytes() {
        let mut c = EncryptionContext::new();
        c.insert("é".into(), "1".into());
        c.insert("z".into(), "2".into());
        c.insert("A".into(), "3".into());
        let s = serialize(&c).unwrap();
        assert_eq!(&s[..2], &[0, 3]);
        assert_eq!(&s[2..5], &[0, 1, b'A']);
        // "z" (0x7A) sorts before "é" (0xC3 0xA9)
        assert_eq!(&s[8..11], &[0, 1, b'z']);
        assert_eq!(parse(&s).unwrap(), c);
    }

    #[test]
    fn the_write_cap_applies_to_writing_only() {
        for (size, writable) in [(65533usize, true), (65534, false), (65535, false)] {
            let mut c = EncryptionContext::new();
            c.insert("big".into(), "v".repeat(size - 9));
            let bytes = canonical(&c).unwrap();
            assert_eq!(bytes.len(), size);
            assert_eq!(serialize(&c).is_ok(), writable, "{size}");
            assert_eq!(parse(&bytes).unwrap(), c, "{size}: read back");
        }
    }

    #[test]
    fn legacy_empty_and_any_order() {
        assert!(parse(&[0, 0]).unwrap().is_empty());
        let unsorted = [0, 2, 0, 1, b'b', 0, 0, 0, 1, b'a', 0, 0];
        assert_eq!(parse(&unsorted).unwrap().len(), 2);
        let dup = [0, 2, 0, 1, b'a', 0, 0, 0, 1, b'a', 0, 0];
        assert_eq!(parse(&dup).unwrap_err().code().as_str(), "INVALID_ENCRYPTION_CONTEXT");
        assert_eq!(parse(&[0, 1, 0]).unwrap_err().code().as_str(), "MALFORMED_MESSAGE");
    }
}
