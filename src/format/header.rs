//! Message header codec, versions 1.0 and 2.0 (SPEC data-format/message-header.md).

use super::context::{self, EncryptionContext};
use super::reader::{put_u16_prefixed, Reader};
use crate::error::{err, Result};
use crate::suite::{AlgorithmSuite, MessageVersion};

/// Type byte of v1 headers: customer authenticated encrypted data.
const V1_TYPE: u8 = 0x80;

/// An encrypted data key: a data key wrapped by one key provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedDataKey {
    /// Key provider id (`aws-kms-rsa`, or a raw keyring's namespace).
    pub provider_id: String,
    /// Key provider info (a key ARN, or a raw keyring's name and parameters).
    pub provider_info: Vec<u8>,
    /// The wrapped key.
    pub ciphertext: Vec<u8>,
}

/// How the body is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentType {
    /// One single block (legacy; decrypt only).
    NonFramed,
    /// A sequence of frames.
    Framed,
}

impl ContentType {
    fn byte(self) -> u8 {
        match self {
            ContentType::NonFramed => 1,
            ContentType::Framed => 2,
        }
    }
}

/// A parsed message header (everything before the body).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Message format version.
    pub version: MessageVersion,
    /// Algorithm suite.
    pub suite: AlgorithmSuite,
    /// Message id (16 bytes in v1, 32 in v2).
    pub message_id: Vec<u8>,
    /// The encryption context stored in the message.
    pub encryption_context: EncryptionContext,
    /// Encrypted data keys, in message order.
    pub encrypted_data_keys: Vec<EncryptedDataKey>,
    /// Framed or non-framed body.
    pub content_type: ContentType,
    /// Frame length (0 for non-framed bodies).
    pub frame_length: u32,
    /// Algorithm suite data: the commit key of committing suites.
    pub suite_data: Option<[u8; 32]>,
}

/// The header's authentication section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HeaderAuth {
    /// v1 carries its IV (all zeros in practice); v2 uses 12 zero bytes.
    pub iv: [u8; 12],
    pub tag: [u8; 16],
}

/// A header as read off the wire, with the exact bytes it was read from.
#[derive(Clone, Debug)]
pub(crate) struct ParsedHeader {
    pub header: Header,
    /// The serialized header body: the AAD of the header tag.
    pub body_bytes: Vec<u8>,
    pub auth: HeaderAuth,
    /// Total bytes of header body plus authentication.
    pub len: usize,
}

/// Limits applied while parsing, before anything is allocated from a length field.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeaderLimits {
    pub max_encrypted_data_keys: Option<u16>,
}

impl Header {
    /// Serializes the header body (without the authentication section).
    pub fn serialize_body(&self) -> Result<Vec<u8>> {
        let ctx = context::serialize(&self.encryption_context)?;
        let mut out = Vec::with_capacity(128 + ctx.len());
        out.push(self.version.byte());
        if self.version == MessageVersion::V1 {
            out.push(V1_TYPE);
        }
        out.extend_from_slice(&self.suite.id().to_be_bytes());
        if self.message_id.len() != self.version.message_id_len() {
            return Err(err!(InvalidArgument, "message id has the wrong length"));
        }
        out.extend_from_slice(&self.message_id);
        put_u16_prefixed(&mut out, &ctx);
        if self.encrypted_data_keys.is_empty() || self.encrypted_data_keys.len() > u16::MAX as usize {
            return Err(err!(InvalidArgument, "a message needs 1 to 65535 encrypted data keys"));
        }
        out.extend_from_slice(&(self.encrypted_data_keys.len() as u16).to_be_bytes());
        for edk in &self.encrypted_data_keys {
            serialize_edk(edk, &mut out)?;
        }
        out.push(self.content_type.byte());
        match self.version {
            MessageVersion::V1 => {
                out.extend_from_slice(&[0, 0, 0, 0]);
                out.push(self.suite.iv_len() as u8);
                out.extend_from_slice(&self.frame_length.to_be_bytes());
            }
            MessageVersion::V2 => {
                out.extend_from_slice(&self.frame_length.to_be_bytes());
                let data = self
                    .suite_data
                    .ok_or_else(|| err!(InvalidArgument, "v2 header needs the commit key"))?;
                out.extend_from_slice(&data);
            }
        }
        Ok(out)
    }
}

/// Serializes one encrypted data key entry (SPEC data-format/message-header.md
/// "Encrypted Data Key Entries"): three UInt16-prefixed fields.
pub(crate) fn serialize_edk(edk: &EncryptedDataKey, out: &mut Vec<u8>) -> Result<()> {
    for field in [edk.provider_id.as_bytes(), &edk.provider_info, &edk.ciphertext] {
        if field.len() > u16::MAX as usize {
            return Err(err!(InvalidArgument, "encrypted data key field over 65535 bytes"));
        }
        put_u16_prefixed(out, field);
    }
    Ok(())
}

/// Serializes the header authentication section.
pub(crate) fn serialize_auth(version: MessageVersion, auth: &HeaderAuth, out: &mut Vec<u8>) {
    if version == MessageVersion::V1 {
        out.extend_from_slice(&auth.iv);
    }
    out.extend_from_slice(&auth.tag);
}

/// Parses a header from the front of `buf`.
///
/// `Ok(None)` means `buf` is a valid prefix of a header and more bytes are
/// needed; an error means no continuation can make it valid.
pub(crate) fn parse(buf: &[u8], limits: &HeaderLimits) -> Result<Option<ParsedHeader>> {
    let mut r = Reader::new(buf);
    macro_rules! need {
        ($e:expr) => {
            match $e {
                Some(v) => v,
                None => return Ok(None),
            }
        };
    }
    let version = match need!(r.u8()) {
        1 => MessageVersion::V1,
        2 => MessageVersion::V2,
        v => return Err(err!(UnsupportedVersion, "unsupported message format version {v}")),
    };
    if version == MessageVersion::V1 {
        let t = need!(r.u8());
        if t != V1_TYPE {
            return Err(err!(MalformedMessage, "unknown message type 0x{t:02X}"));
        }
    }
    let suite = AlgorithmSuite::from_id(need!(r.u16()))?;
    if suite.message_version() != version {
        return Err(err!(
            UnsupportedVersion,
            "suite {suite} does not belong to message format version {}",
            version.byte()
        ));
    }
    let message_id = need!(r.take(version.message_id_len())).to_vec();
    let ctx_bytes = need!(r.u16_prefixed());
    let encryption_context = context::parse(ctx_bytes)?;

    let count = need!(r.u16());
    if count == 0 {
        return Err(err!(MalformedMessage, "the message has no encrypted data keys"));
    }
    if let Some(max) = limits.max_encrypted_data_keys {
        // SPEC client-apis/decrypt.md: stop as soon as the count exceeds the maximum.
        if count > max {
            return Err(err!(
                LimitExceeded,
                "the message has {count} encrypted data keys, the maximum is {max}"
            ));
        }
    }
    let mut encrypted_data_keys = Vec::with_capacity(count.min(64) as usize);
    for _ in 0..count {
        let id = need!(r.u16_prefixed());
        let info = need!(r.u16_prefixed());
        let ct = need!(r.u16_prefixed());
        let provider_id = core::str::from_utf8(id)
            .map_err(|_| err!(MalformedMessage, "key provider id is not UTF-8"))?
            .to_owned();
        encrypted_data_keys.push(EncryptedDataKey {
            provider_id,
            provider_info: info.to_vec(),
            ciphertext: ct.to_vec(),
        });
    }
    let content_type = match need!(r.u8()) {
        1 => ContentType::NonFramed,
        2 => ContentType::Framed,
        c => return Err(err!(MalformedMessage, "unknown content type {c}")),
    };
    let frame_length;
    let mut suite_data = None;
    match version {
        MessageVersion::V1 => {
            if need!(r.array::<4>()) != [0; 4] {
                return Err(err!(MalformedMessage, "reserved header bytes are not zero"));
            }
            let iv_len = need!(r.u8());
            if iv_len as usize != suite.iv_len() {
                return Err(err!(MalformedMessage, "IV length {iv_len} does not match the suite"));
            }
            frame_length = need!(r.u32());
        }
        MessageVersion::V2 => {
            frame_length = need!(r.u32());
            suite_data = Some(need!(r.array::<32>()));
        }
    }
    match content_type {
        ContentType::NonFramed if frame_length != 0 => {
            return Err(err!(MalformedMessage, "non-framed message with a frame length"))
        }
        ContentType::Framed if frame_length == 0 => {
            return Err(err!(MalformedMessage, "framed message with frame length 0"))
        }
        _ => {}
    }
    let body_len = r.used();
    let iv = match version {
        MessageVersion::V1 => need!(r.array::<12>()),
        MessageVersion::V2 => [0u8; 12],
    };
    let tag = need!(r.array::<16>());
    Ok(Some(ParsedHeader {
        header: Header {
            version,
            suite,
            message_id,
            encryption_context,
            encrypted_data_keys,
            content_type,
            frame_length,
            suite_data,
        },
        body_bytes: buf[..body_len].to_vec(),
        auth: HeaderAuth { iv, tag },
        len: r.used(),
    }))
}

/// Parses a complete header without any key: for inspection and routing.
///
/// Returns the header and its length in bytes. Bytes after the header are
/// the body and are not looked at.
pub fn parse_header(bytes: &[u8]) -> Result<(Header, usize)> {
    let limits = HeaderLimits {
        max_encrypted_data_keys: None,
    };
    match parse(bytes, &limits)? {
        Some(p) => Ok((p.header, p.len)),
        None => Err(err!(Truncated, "the message ends inside its header")),
    }
}
