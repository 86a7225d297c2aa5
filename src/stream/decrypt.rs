//! Sans-IO decryptor: push message bytes, get plaintext, finish.
//!
//! Plaintext leaves only after the frame it belongs to authenticates; for
//! signing suites the final frame is held until the footer signature
//! verifies (SPEC client-apis/decrypt.md). The buffer holds the header, or at
//! most one incomplete frame plus the bytes of the last `update` call.

use subtle::ConstantTimeEq;

use crate::aead::FrameAead;
use crate::client::{CommitmentPolicy, DecryptLimits};
use crate::error::{err, ErrorCode, Result};
use crate::format::body::{self, BodyKind, SealedPiece};
use crate::format::context::{self, EncryptionContext};
use crate::format::header::{self, HeaderLimits, ParsedHeader};
use crate::format::{footer, ContentType, Header};
use crate::kdf;
use crate::keyring::Keyring;
use crate::materials::DecryptionMaterials;
use crate::signature::{Verifier, PUBLIC_KEY_CONTEXT_KEY};

/// What the decryptor needs next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecryptStatus {
    /// More message bytes.
    NeedInput,
    /// The header is parsed: unwrap the data key (see [`Decryptor::unwrap_data_key`]).
    NeedDataKey,
    /// The message is complete and authenticated.
    Done,
}

enum State {
    Header,
    NeedKey(Box<ParsedHeader>),
    Body(Box<Body>),
    Footer(Box<Body>),
    Done(Header),
    Failed,
}

struct Body {
    header: Header,
    aead: Box<dyn FrameAead>,
    next_seq: u32,
    verifier: Option<Verifier>,
    /// Final-frame plaintext withheld until the signature verifies.
    held: Vec<u8>,
}

/// Decrypts one message. Create it with [`crate::Client::decryptor`].
pub struct Decryptor {
    policy: CommitmentPolicy,
    limits: DecryptLimits,
    aead: std::sync::Arc<dyn crate::aead::AeadProvider>,
    /// The caller's reproduced encryption context.
    reproduced: EncryptionContext,
    /// Its pairs the header does not store, once the header is parsed: the
    /// message's authenticate-only pairs.
    auth_only: EncryptionContext,
    refuse_signed: bool,
    state: State,
    buf: Vec<u8>,
    header_len: Option<usize>,
}

impl Decryptor {
    pub(crate) fn new(
        policy: CommitmentPolicy,
        limits: DecryptLimits,
        aead: std::sync::Arc<dyn crate::aead::AeadProvider>,
        opts: &crate::client::DecryptOptions,
    ) -> Self {
        Decryptor {
            policy,
            limits,
            aead,
            reproduced: opts.encryption_context.clone(),
            auth_only: EncryptionContext::new(),
            refuse_signed: opts.refuse_signed,
            state: State::Header,
            buf: Vec::new(),
            header_len: None,
        }
    }

    /// The serialized header's length, once parsed.
    pub(crate) fn header_len(&self) -> Option<usize> {
        self.header_len
    }

    /// Opens the frame with sequence number `seq` (regular or final) that
    /// `raw` holds exactly, out of order: for range reads, which check
    /// positions themselves. Needs the data key; signatures are not involved.
    pub(crate) async fn open_frame_at(&mut self, raw: &[u8], seq: u32, out: &mut Vec<u8>) -> Result<BodyKind> {
        let State::Body(b) = &mut self.state else {
            return Err(err!(InvalidState, "the data key is not unwrapped"));
        };
        let piece = body::parse_frame(raw, b.header.frame_length)?
            .ok_or_else(|| err!(Truncated, "frame {seq} ends early"))?;
        if piece.len != raw.len() {
            return Err(err!(MalformedMessage, "frame {seq} does not end where the layout says"));
        }
        if piece.seq != seq {
            return Err(err!(FrameSequence, "frame {} where frame {seq} was expected", piece.seq));
        }
        open_sealed(b.aead.as_ref(), &b.header.message_id, &piece, raw, out).await?;
        Ok(piece.kind)
    }

    /// The header, once parsed.
    pub fn header(&self) -> Option<&Header> {
        match &self.state {
            State::NeedKey(p) => Some(&p.header),
            State::Body(b) | State::Footer(b) => Some(&b.header),
            State::Done(h) => Some(h),
            State::Header | State::Failed => None,
        }
    }

    /// Feeds message bytes; appends authenticated plaintext to `out`.
    ///
    /// After an error the decryptor is unusable and everything it released
    /// before the failing frame is all that may be trusted.
    pub async fn update(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<DecryptStatus> {
        if matches!(self.state, State::Failed) {
            return Err(err!(InvalidState, "the decryptor failed earlier"));
        }
        // Whole frames are read straight from `input`; only an incomplete
        // tail is copied into the buffer.
        let r = if self.buf.is_empty() {
            match self.process(input, out).await {
                Ok((status, used)) => {
                    self.buf.extend_from_slice(&input[used..]);
                    Ok(status)
                }
                Err(e) => Err(e),
            }
        } else {
            let mut buf = core::mem::take(&mut self.buf);
            buf.extend_from_slice(input);
            let r = self.process(&buf, out).await;
            if let Ok((_, used)) = &r {
                buf.drain(..*used);
                self.buf = buf;
            }
            r.map(|(status, _)| status)
        };
        if r.is_err() {
            self.state = State::Failed;
            self.buf = Vec::new();
        }
        r
    }

    /// Ends the input. Fails with `TRUNCATED` unless the message is complete.
    pub fn finish(self) -> Result<Header> {
        match self.state {
            State::Done(h) => Ok(h),
            State::Failed => Err(err!(InvalidState, "the decryptor failed earlier")),
            State::Header => Err(err!(Truncated, "the message ends inside its header")),
            State::NeedKey(_) => Err(err!(InvalidState, "the data key was never unwrapped")),
            State::Body(_) => Err(err!(Truncated, "the message ends before its final frame")),
            State::Footer(_) => Err(err!(Truncated, "the message ends before its signature")),
        }
    }

    /// Empty decryption materials for this message, to hand to a keyring.
    pub fn materials(&self) -> Result<DecryptionMaterials> {
        match &self.state {
            // SPEC framework/cmm-interface.md "Decrypt Materials": reproduced
            // pairs the header does not store join the materials' context.
            State::NeedKey(p) => Ok(DecryptionMaterials {
                suite: p.header.suite,
                encryption_context: p.header.encryption_context.iter().chain(&self.auth_only).map(|(k, v)| (k.clone(), v.clone())).collect(),
                data_key: None,
            }),
            _ => Err(err!(InvalidState, "no data key is needed now")),
        }
    }

    /// Unwraps the data key with `keyring` and verifies the header.
    pub async fn unwrap_data_key(&mut self, keyring: &dyn Keyring) -> Result<()> {
        let materials = self.materials()?;
        let edks = match &self.state {
            State::NeedKey(p) => p.header.encrypted_data_keys.clone(),
            _ => unreachable_state()?,
        };
        match keyring.on_decrypt(materials, &edks).await {
            Ok(m) => self.set_data_key(m).await,
            Err(e) => {
                self.state = State::Failed;
                Err(self.auth_only_hint(e))
            }
        }
    }

    /// Accepts materials holding the data key: checks the key commitment in
    /// constant time, then the header tag. Body bytes already buffered are
    /// processed by the next `update` call.
    pub async fn set_data_key(&mut self, materials: DecryptionMaterials) -> Result<()> {
        let parsed = match core::mem::replace(&mut self.state, State::Failed) {
            State::NeedKey(p) => p,
            other => {
                self.state = other;
                return Err(err!(InvalidState, "no data key is needed now"));
            }
        };
        let body = self.verify_header(&parsed, materials).await.map_err(|e| self.auth_only_hint(e))?;
        self.state = State::Body(Box::new(body));
        Ok(())
    }

    /// Names the authenticate-only pairs in a failure they may have caused:
    /// a pair the message was not written with makes the data key or the
    /// header tag fail, like a wrong value does. The code is kept.
    fn auth_only_hint(&self, e: crate::Error) -> crate::Error {
        if self.auth_only.is_empty() || !matches!(e.code(), ErrorCode::NoDecryptableKey | ErrorCode::HeaderAuthFailed | ErrorCode::KmsError | ErrorCode::KmsResponseInvalid) {
            return e;
        }
        let keys: Vec<&str> = self.auth_only.keys().map(String::as_str).collect();
        crate::Error::new(
            e.code(),
            format!("{} (the reproduced pairs {keys:?}, which the header does not store, were authenticated as the message's authenticate-only pairs)", e.detail()),
        )
    }

    async fn verify_header(&self, parsed: &ParsedHeader, materials: DecryptionMaterials) -> Result<Body> {
        let h = &parsed.header;
        // SPEC framework/structures.md (decryption materials): the keyring
        // may add the data key, never change the suite.
        if materials.suite != h.suite {
            return Err(err!(InvalidState, "the materials are for suite {}, the message uses {}", materials.suite, h.suite));
        }
        let dk = materials
            .data_key
            .as_ref()
            .ok_or_else(|| err!(NoDecryptableKey, "the keyring returned no data key"))?;
        let keys = kdf::derive(h.suite, dk.as_bytes(), &h.message_id)?;
        if let (Some(expected), Some(stored)) = (&keys.commit_key, &h.suite_data) {
            // SPEC client-apis/decrypt.md: compare the commit key before using the data key.
            if !bool::from(expected.as_slice().ct_eq(stored)) {
                return Err(err!(CommitmentMismatch, "the data key does not match the message's key commitment"));
            }
        }
        let aead = self.aead.new_key(&keys.encryption_key).await?;
        // SPEC client-apis/decrypt.md "Verify the header": AAD = header body ‖
        // the serialized authenticate-only pairs of the materials.
        let auth_only = context::canonical(&self.auth_only)?;
        let aad: std::borrow::Cow<[u8]> = if auth_only.is_empty() {
            std::borrow::Cow::Borrowed(&parsed.body_bytes)
        } else {
            std::borrow::Cow::Owned([parsed.body_bytes.as_slice(), &auth_only].concat())
        };
        aead.open(&parsed.auth.iv, &aad, &parsed.auth.tag, &mut Vec::new())
            .await
            .map_err(|_| err!(HeaderAuthFailed, "the header authentication tag does not verify"))?;
        let verifier = match h.suite.signature() {
            Some(alg) => {
                let pk = h.encryption_context.get(PUBLIC_KEY_CONTEXT_KEY).ok_or_else(|| {
                    err!(SignatureInvalid, "signing suite without {PUBLIC_KEY_CONTEXT_KEY:?} in the context")
                })?;
                let mut v = Verifier::from_context_value(alg, pk)?;
                v.update(&parsed.body_bytes);
                let mut auth = Vec::with_capacity(28);
                header::serialize_auth(h.version, &parsed.auth, &mut auth);
                v.update(&auth);
                Some(v)
            }
            None => None,
        };
        Ok(Body {
            header: h.clone(),
            aead,
            next_seq: 1,
            verifier,
            held: Vec::new(),
        })
    }

    /// Consumes what it can of `data`; returns the status and the bytes used.
    async fn process(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(DecryptStatus, usize)> {
        let mut pos = 0;
        let status = loop {
            let rest = &data[pos..];
            match &mut self.state {
                State::Header => {
                    let limits = HeaderLimits {
                        max_encrypted_data_keys: self.limits.max_encrypted_data_keys,
                    };
                    match header::parse(rest, &limits)? {
                        None => {
                            if rest.len() > self.limits.max_header_length {
                                return Err(err!(
                                    LimitExceeded,
                                    "header longer than the limit of {} bytes",
                                    self.limits.max_header_length
                                ));
                            }
                            break DecryptStatus::NeedInput;
                        }
                        Some(p) => {
                            self.check_header(&p.header)?;
                            self.auth_only = context::reproduced_only(&p.header.encryption_context, &self.reproduced)?;
                            pos += p.len;
                            self.header_len = Some(p.len);
                            self.state = State::NeedKey(Box::new(p));
                        }
                    }
                }
                State::NeedKey(_) => break DecryptStatus::NeedDataKey,
                State::Body(b) => {
                    let piece = match b.header.content_type {
                        ContentType::Framed => body::parse_frame(rest, b.header.frame_length)?,
                        ContentType::NonFramed => {
                            body::parse_single_block(rest, self.limits.max_non_framed_length)?
                        }
                    };
                    let Some(piece) = piece else { break DecryptStatus::NeedInput };
                    let is_last = piece.kind != BodyKind::Frame;
                    open_piece(b, &piece, &rest[..piece.len], out).await?;
                    pos += piece.len;
                    if is_last {
                        self.state = if b.verifier.is_some() {
                            State::Footer(take_body(&mut self.state))
                        } else {
                            State::Done(b.header.clone())
                        };
                    }
                }
                State::Footer(b) => {
                    let Some((sig, len)) = footer::parse(rest) else { break DecryptStatus::NeedInput };
                    let v = b.verifier.take().ok_or_else(|| err!(InvalidState, "no verifier"))?;
                    v.verify(sig)?;
                    out.append(&mut b.held);
                    pos += len;
                    self.state = State::Done(b.header.clone());
                }
                State::Done(_) => {
                    if !rest.is_empty() {
                        return Err(err!(TrailingData, "{} bytes after the end of the message", rest.len()));
                    }
                    break DecryptStatus::Done;
                }
                State::Failed => return Err(err!(InvalidState, "the decryptor failed earlier")),
            }
        };
        Ok((status, pos))
    }

    /// Checks made before any key is unwrapped, so a refused message costs no KMS call.
    fn check_header(&self, h: &Header) -> Result<()> {
        if self.policy == CommitmentPolicy::RequireEncryptRequireDecrypt && !h.suite.is_committing() {
            return Err(err!(
                CommitmentPolicyViolation,
                "suite {} does not commit to its key; the policy require-encrypt-require-decrypt refuses it",
                h.suite
            ));
        }
        if self.refuse_signed && h.suite.signature().is_some() {
            return Err(err!(SignaturePolicy, "suite {} is signed, and this decryption accepts unsigned messages only", h.suite));
        }
        // SPEC framework/default-cmm.md (Decrypt Materials): a suite without a
        // signature must not carry the reserved public-key pair.
        if h.suite.signature().is_none() && h.encryption_context.contains_key(PUBLIC_KEY_CONTEXT_KEY) {
            return Err(err!(
                ReservedEncryptionContextKey,
                "suite {} signs nothing, but the context holds {PUBLIC_KEY_CONTEXT_KEY:?}",
                h.suite
            ));
        }
        if h.content_type == ContentType::Framed && h.frame_length > self.limits.max_frame_length {
            return Err(err!(
                LimitExceeded,
                "frame length {} exceeds the limit of {} bytes",
                h.frame_length,
                self.limits.max_frame_length
            ));
        }
        Ok(())
    }
}

fn take_body(state: &mut State) -> Box<Body> {
    match core::mem::replace(state, State::Failed) {
        State::Body(b) => b,
        _ => unreachable!("take_body is only called in the Body state"),
    }
}

fn unreachable_state<T>() -> Result<T> {
    Err(err!(InvalidState, "the decryptor is not waiting for a data key"))
}

/// Authenticates and decrypts one piece of the body into `out` (or into the
/// held buffer for a signed final frame). On failure nothing is appended.
async fn open_piece(b: &mut Body, piece: &SealedPiece, raw: &[u8], out: &mut Vec<u8>) -> Result<()> {
    if piece.kind != BodyKind::SingleBlock {
        if piece.seq != b.next_seq {
            return Err(err!(
                FrameSequence,
                "frame {} where frame {} was expected",
                piece.seq,
                b.next_seq
            ));
        }
        b.next_seq = b.next_seq.checked_add(1).ok_or_else(|| err!(LimitExceeded, "too many frames"))?;
    }
    if let Some(v) = b.verifier.as_mut() {
        v.update(raw);
    }
    let signed_last = b.verifier.is_some() && piece.kind != BodyKind::Frame;
    let dst = if signed_last { &mut b.held } else { out };
    open_sealed(b.aead.as_ref(), &b.header.message_id, piece, raw, dst).await
}

/// Authenticates and decrypts `piece` (held in `raw`) into `dst`; on failure
/// nothing is appended.
async fn open_sealed(aead: &dyn FrameAead, message_id: &[u8], piece: &SealedPiece, raw: &[u8], dst: &mut Vec<u8>) -> Result<()> {
    let aad = body::body_aad(message_id, piece.kind, piece.seq, piece.ct_len as u64);
    // The ciphertext and its tag are contiguous in the message.
    let sealed = &raw[piece.ct_start..piece.ct_start + piece.ct_len + 16];
    let start = dst.len();
    if let Err(e) = aead.open(&piece.iv, &aad, sealed, dst).await {
        dst.truncate(start);
        return Err(match e.code() {
            ErrorCode::FrameAuthFailed => err!(FrameAuthFailed, "frame {} does not authenticate", piece.seq),
            _ => e,
        });
    }
    Ok(())
}
