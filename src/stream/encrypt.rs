//! Sans-IO encryptor: push plaintext, get message bytes, finish.
//!
//! It holds at most one frame of plaintext. When the plaintext length is an
//! exact multiple of the frame length the last frame is written as a full
//! final frame (SPEC client-apis/encrypt.md: SHOULD), which needs one frame of
//! lookahead: a full frame is sealed as a regular frame only once more input
//! arrives.

use crate::aead::FrameAead;
use crate::error::{err, Result};
use crate::format::body::{self, BodyKind};
use crate::format::header::{self, HeaderAuth};
use crate::format::{ContentType, Header};
use crate::signature::Signer;

/// Encrypts one message. Create it with [`crate::Client::encryptor`].
pub struct Encryptor {
    header: Header,
    /// Header bytes not yet handed out.
    pending_header: Option<Vec<u8>>,
    aead: Box<dyn FrameAead>,
    signer: Option<Signer>,
    frame_length: usize,
    /// Sequence number of the next frame.
    seq: u32,
    /// Plaintext of the frame being filled (≤ frame_length bytes).
    buf: Vec<u8>,
    plaintext_len: u64,
    header_len: usize,
    /// The plaintext length declared up front, if any (it must be kept).
    declared_len: Option<u64>,
}

impl Encryptor {
    pub(crate) async fn new(
        header: Header,
        aead: Box<dyn FrameAead>,
        signer: Option<Signer>,
        auth_only_context: &[u8],
    ) -> Result<Self> {
        debug_assert_eq!(header.content_type, ContentType::Framed);
        let mut bytes = header.serialize_body()?;
        // Header auth: GCM over an empty plaintext, IV = 12 zero bytes, AAD =
        // header body ‖ serialized authenticate-only pairs (SPEC
        // client-apis/encrypt.md "Construct the header").
        let iv = [0u8; 12];
        let mut sealed = Vec::with_capacity(16);
        if auth_only_context.is_empty() {
            aead.seal(&iv, &bytes, &[], &mut sealed).await?;
        } else {
            aead.seal(&iv, &[bytes.as_slice(), auth_only_context].concat(), &[], &mut sealed).await?;
        }
        let tag: [u8; 16] = sealed
            .as_slice()
            .try_into()
            .map_err(|_| err!(EncryptionFailed, "the AEAD backend returned a tag of {} bytes", sealed.len()))?;
        header::serialize_auth(header.version, &HeaderAuth { iv, tag }, &mut bytes);
        let mut signer = signer;
        if let Some(s) = signer.as_mut() {
            s.update(&bytes);
        }
        Ok(Encryptor {
            header_len: bytes.len(),
            frame_length: header.frame_length as usize,
            header,
            pending_header: Some(bytes),
            aead,
            signer,
            seq: 1,
            buf: Vec::new(),
            plaintext_len: 0,
            declared_len: None,
        })
    }

    pub(crate) fn declare_len(&mut self, n: Option<u64>) {
        self.declared_len = n;
    }

    fn check_declared(&self, at_end: bool) -> Result<()> {
        match self.declared_len {
            Some(d) if self.plaintext_len > d || (at_end && self.plaintext_len != d) => Err(err!(
                InvalidArgument,
                "the plaintext is {} bytes{}, but {d} were declared (plaintext_length)",
                self.plaintext_len,
                if at_end { "" } else { " so far" }
            )),
            _ => Ok(()),
        }
    }

    /// The message header (suite, message id, context, encrypted data keys).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Encrypts `input`, appending message bytes to `out`. The header is
    /// written by the first call; frames as soon as they are complete.
    pub async fn update(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.emit_header(out);
        self.plaintext_len += input.len() as u64;
        self.check_declared(false)?;
        while !input.is_empty() {
            if self.buf.len() == self.frame_length {
                // More input follows, so the buffered full frame is not the last.
                let frame = core::mem::take(&mut self.buf);
                self.seal(BodyKind::Frame, &frame, out).await?;
                self.buf = frame;
                self.buf.clear();
            }
            if self.buf.is_empty() && input.len() > self.frame_length {
                // Whole frames straight from the input, keeping one frame of lookahead.
                let (frame, rest) = input.split_at(self.frame_length);
                self.seal(BodyKind::Frame, frame, out).await?;
                input = rest;
                continue;
            }
            let take = (self.frame_length - self.buf.len()).min(input.len());
            self.buf.extend_from_slice(&input[..take]);
            input = &input[take..];
        }
        Ok(())
    }

    /// Writes the final frame (and the footer for signing suites).
    pub async fn finish(mut self, out: &mut Vec<u8>) -> Result<()> {
        self.check_declared(true)?;
        self.emit_header(out);
        let last = core::mem::take(&mut self.buf);
        self.seal(BodyKind::FinalFrame, &last, out).await?;
        if let Some(signer) = self.signer.take() {
            let sig = signer.sign()?;
            crate::format::footer::serialize(&sig, out);
        }
        Ok(())
    }

    /// Length of the header (body and authentication), in bytes.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// Exact size of the whole message for a plaintext of `plaintext_len`
    /// bytes (for a `Content-Length` before streaming an upload).
    pub fn encrypted_size(&self, plaintext_len: u64) -> Option<u64> {
        crate::client::encrypted_size(self.header_len as u64, plaintext_len, self.header.frame_length, self.header.suite)
    }

    /// Plaintext bytes accepted so far.
    pub fn plaintext_len(&self) -> u64 {
        self.plaintext_len
    }

    fn emit_header(&mut self, out: &mut Vec<u8>) {
        if let Some(h) = self.pending_header.take() {
            out.extend_from_slice(&h);
        }
    }

    /// Takes the next sequence number and lays out the frame: the bytes
    /// before its ciphertext, its IV and its AAD. Every frame, whoever
    /// encrypts it, is planned here.
    pub(crate) fn plan(&mut self, kind: BodyKind, len: usize) -> Result<FramePlan> {
        if kind == BodyKind::FinalFrame {
            // Whichever driver seals it, the message ends here: the declared length must be met.
            self.check_declared(true)?;
        }
        let seq = self.seq;
        if seq == body::FINAL_FRAME_MARKER {
            return Err(err!(LimitExceeded, "a message holds at most 2^32 - 1 frames"));
        }
        let iv = body::frame_iv(seq);
        let aad = body::body_aad(&self.header.message_id, kind, seq, len as u64);
        let mut prefix = Vec::with_capacity(24);
        match kind {
            BodyKind::FinalFrame => body::put_final_frame_prefix(&mut prefix, seq, &iv, len as u32),
            _ => body::put_frame_prefix(&mut prefix, seq, &iv),
        }
        self.seq += 1;
        Ok(FramePlan { prefix, iv, aad })
    }

    async fn seal(&mut self, kind: BodyKind, plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let plan = self.plan(kind, plaintext.len())?;
        let start = out.len();
        out.extend_from_slice(&plan.prefix);
        let expected = out.len() + plaintext.len() + 16;
        self.aead.seal(&plan.iv, &plan.aad, plaintext, out).await?;
        if out.len() != expected {
            return Err(err!(EncryptionFailed, "the AEAD backend returned the wrong length"));
        }
        if let Some(s) = self.signer.as_mut() {
            s.update(&out[start..]);
        }
        Ok(())
    }

    /// For drivers that keep bulk data outside this struct (the WebCrypto
    /// driver of the JS API): the header bytes if not yet handed out, the
    /// frame length, the buffered partial frame, and whether frames must
    /// pass through the signer (then such drivers must not be used).
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn take_header(&mut self) -> Option<Vec<u8>> {
        self.pending_header.take()
    }

    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn frame_len(&self) -> usize {
        self.frame_length
    }

    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn is_signing(&self) -> bool {
        self.signer.is_some()
    }

    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn buffer_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn count_plaintext(&mut self, n: usize) -> Result<()> {
        self.plaintext_len += n as u64;
        self.check_declared(false)
    }
}

/// A frame laid out but not yet encrypted.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) struct FramePlan {
    /// `seq ‖ IV`, or `marker ‖ seq ‖ IV ‖ length` for the final frame.
    pub prefix: Vec<u8>,
    pub iv: [u8; 12],
    pub aad: Vec<u8>,
}
