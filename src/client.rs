//! The client: configuration (commitment policy, limits, AEAD backend) and
//! the operations — streaming [`Encryptor`]/[`Decryptor`] and one-shot
//! [`Client::encrypt`]/[`Client::decrypt`], which are thin wrappers over them.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::aead::{AeadProvider, RustCryptoAead};
use crate::error::{err, Result};
use crate::format::context::{self, EncryptionContext};
use crate::format::{ContentType, Header};
use crate::kdf;
use crate::keyring::Keyring;
use crate::materials::EncryptionMaterials;
use crate::signature::{Signer, PUBLIC_KEY_CONTEXT_KEY};
use crate::stream::{DecryptStatus, Decryptor, Encryptor};
use crate::suite::{AlgorithmSuite, MessageVersion};

/// Default frame length (64 KiB: the sweet spot for WebCrypto).
pub const DEFAULT_FRAME_LENGTH: u32 = 65536;
/// Default maximum number of encrypted data keys accepted on decrypt.
pub const DEFAULT_MAX_ENCRYPTED_DATA_KEYS: u16 = 10;

/// Commitment policy (SPEC framework/commitment-policy.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CommitmentPolicy {
    /// Encrypt with committing suites; decrypt only committing messages. The default.
    #[default]
    RequireEncryptRequireDecrypt,
    /// Encrypt with committing suites; also decrypt legacy (non-committing) messages.
    RequireEncryptAllowDecrypt,
}

impl CommitmentPolicy {
    /// Parses `require-encrypt-require-decrypt` or `require-encrypt-allow-decrypt`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "require-encrypt-require-decrypt" => Ok(Self::RequireEncryptRequireDecrypt),
            "require-encrypt-allow-decrypt" => Ok(Self::RequireEncryptAllowDecrypt),
            _ => Err(err!(
                InvalidArgument,
                "commitment policy {s:?} (use require-encrypt-require-decrypt or require-encrypt-allow-decrypt)"
            )),
        }
    }
}

/// Limits applied while decrypting, before anything is allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecryptLimits {
    /// Maximum number of encrypted data keys, on decrypt and on encrypt
    /// (`None` = no limit, the spec's default). Default 10.
    pub max_encrypted_data_keys: Option<u16>,
    /// Largest frame accepted (framed content), on decrypt and on encrypt:
    /// a client writes no frame it would refuse to read. Default 16 MiB
    /// (a frame is held whole until its tag verifies); up to 2^32 − 1, the
    /// format's limit, may be allowed. Non-framed bodies have their own limit.
    pub max_frame_length: u32,
    /// Largest non-framed body accepted. Its plaintext can only be released
    /// once its one tag, at the end, verifies, so it is held in memory whole
    /// (a framed message is not). Default 64 MiB; the format allows up to
    /// 2^36 − 32 bytes (SPEC data-format/message-body.md).
    pub max_non_framed_length: u64,
    /// Largest header accepted. Default 1 MiB.
    pub max_header_length: usize,
}

impl Default for DecryptLimits {
    fn default() -> Self {
        DecryptLimits {
            max_encrypted_data_keys: Some(DEFAULT_MAX_ENCRYPTED_DATA_KEYS),
            max_frame_length: 16 << 20,
            max_non_framed_length: 64 << 20,
            max_header_length: 1 << 20,
        }
    }
}

impl DecryptLimits {
    /// Parses a complete header as decryption would, under these limits:
    /// for a store or gateway that checks messages it cannot decrypt. A
    /// header cut short is `Truncated`, unless it is already past
    /// `max_header_length` (`LimitExceeded`).
    pub fn parse_header(&self, bytes: &[u8]) -> Result<(Header, usize)> {
        let limits = crate::format::header::HeaderLimits {
            max_encrypted_data_keys: self.max_encrypted_data_keys,
        };
        match crate::format::header::parse(bytes, &limits)? {
            Some(p) if p.len > self.max_header_length => Err(err!(
                LimitExceeded,
                "the header is {} bytes, the maximum is {}",
                p.len,
                self.max_header_length
            )),
            Some(p) if p.header.frame_length > self.max_frame_length => Err(err!(
                LimitExceeded,
                "frames of {} bytes, the maximum is {}",
                p.header.frame_length,
                self.max_frame_length
            )),
            Some(p) => Ok((p.header, p.len)),
            None if bytes.len() > self.max_header_length => Err(err!(
                LimitExceeded,
                "the header is over {} bytes",
                self.max_header_length
            )),
            None => Err(err!(Truncated, "the message ends inside its header")),
        }
    }
}

/// Options of one encryption.
#[derive(Clone, Debug)]
pub struct EncryptOptions {
    /// Algorithm suite: 0x0478 (default) or 0x0578.
    pub suite: AlgorithmSuite,
    /// Frame length in bytes, 1 to the client's `max_frame_length` (16 MiB
    /// by default; at most 2^32 − 1). Default 65536.
    pub frame_length: u32,
    /// Encryption context (no `aws-crypto-` keys).
    pub encryption_context: EncryptionContext,
    /// The plaintext's length, if known before encrypting (one-shot
    /// `encrypt` sets it). Then it is enforced, and caching keyrings may
    /// reuse data keys within their byte limits.
    pub plaintext_length: Option<u64>,
    /// Keys of `encryption_context` whose pairs are authenticated but not
    /// stored: the header tag covers them, the keyrings see them, and a
    /// reader must supply them again (SPEC
    /// framework/required-encryption-context-cmm.md).
    pub required_encryption_context_keys: BTreeSet<String>,
}

impl Default for EncryptOptions {
    fn default() -> Self {
        EncryptOptions {
            suite: AlgorithmSuite::AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
            frame_length: DEFAULT_FRAME_LENGTH,
            encryption_context: EncryptionContext::new(),
            plaintext_length: None,
            required_encryption_context_keys: BTreeSet::new(),
        }
    }
}

/// Options of one decryption.
#[derive(Clone, Debug, Default)]
pub struct DecryptOptions {
    /// The reproduced encryption context (SPEC client-apis/decrypt.md,
    /// framework/cmm-interface.md "Decrypt Materials"). A pair whose key the
    /// header stores must have the stored value (`ENCRYPTION_CONTEXT_MISMATCH`);
    /// the other pairs are the message's authenticate-only pairs: they join
    /// the header tag's AAD and the keyrings' context, so a pair the message
    /// was not written with fails decryption.
    pub encryption_context: EncryptionContext,
    /// Refuse signed suites (`SIGNATURE_POLICY`) as soon as the header
    /// shows one, before any data key is unwrapped (SPEC
    /// client-apis/decrypt.md: the unsigned-only decryption of the SDKs).
    pub refuse_signed: bool,
    /// Range reads of a signed message that do not reach its end cannot
    /// check its signature: refused (`SIGNATURE_POLICY`) unless this is set,
    /// and then the result says [`SignatureCheck::NotChecked`].
    pub allow_unverified_signature: bool,
}

/// Entry point: holds the configuration shared by operations.
#[derive(Clone)]
pub struct Client {
    policy: CommitmentPolicy,
    limits: DecryptLimits,
    aead: Arc<dyn AeadProvider>,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl core::fmt::Debug for Client {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client").field("policy", &self.policy).field("limits", &self.limits).finish()
    }
}

impl Client {
    /// A client with the default policy, limits and the RustCrypto AEAD.
    pub fn new() -> Self {
        Client {
            policy: CommitmentPolicy::default(),
            limits: DecryptLimits::default(),
            aead: Arc::new(RustCryptoAead),
        }
    }

    /// Sets the commitment policy.
    pub fn with_commitment_policy(mut self, policy: CommitmentPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets the decrypt limits.
    pub fn with_limits(mut self, limits: DecryptLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the maximum number of encrypted data keys accepted on decrypt.
    pub fn with_max_encrypted_data_keys(mut self, max: Option<u16>) -> Self {
        self.limits.max_encrypted_data_keys = max;
        self
    }

    /// Plugs in another AES-GCM implementation.
    pub fn with_aead(mut self, aead: Arc<dyn AeadProvider>) -> Self {
        self.aead = aead;
        self
    }

    /// Starts a message: makes the data key and its encrypted copies with `keyring`.
    pub async fn encryptor(&self, keyring: &dyn Keyring, opts: &EncryptOptions) -> Result<Encryptor> {
        let suite = opts.suite;
        // Both policies require committing suites on encrypt; legacy suites are decrypt-only.
        if suite.message_version() != MessageVersion::V2 {
            return Err(err!(
                CommitmentPolicyViolation,
                "suite {suite} does not commit to its key; encrypt with 0x0478 or 0x0578"
            ));
        }
        if opts.frame_length == 0 {
            return Err(err!(InvalidArgument, "frame length must be 1 to 4294967295 bytes"));
        }
        // What this client writes, it reads: frames above its decryption
        // limit are refused here rather than written unreadable by default.
        if opts.frame_length > self.limits.max_frame_length {
            return Err(err!(
                LimitExceeded,
                "frame length {} exceeds this client's max_frame_length of {} bytes (the largest frame its decryption accepts; raise it with DecryptLimits to write larger frames)",
                opts.frame_length,
                self.limits.max_frame_length
            ));
        }
        context::check_no_reserved_keys(&opts.encryption_context)?;
        // SPEC framework/required-encryption-context-cmm.md: every required
        // key must have a value in the context, or encryption fails.
        if let Some(k) = opts.required_encryption_context_keys.iter().find(|k| !opts.encryption_context.contains_key(*k)) {
            return Err(err!(InvalidArgument, "the required encryption context key {k:?} has no value in the encryption context"));
        }
        let mut ctx = opts.encryption_context.clone();
        let signer = suite.signature().map(|alg| {
            let (signer, pk) = Signer::generate(alg);
            ctx.insert(PUBLIC_KEY_CONTEXT_KEY.to_owned(), pk);
            signer
        });
        context::serialize(&ctx)?; // size check before any key work
        let materials = keyring
            .on_encrypt(EncryptionMaterials {
                suite,
                encryption_context: ctx,
                data_key: None,
                encrypted_data_keys: Vec::new(),
                plaintext_length: opts.plaintext_length,
            })
            .await?;
        // SPEC client-apis/encrypt.md: the message uses the suite of the
        // materials, which a keyring must not change from the one asked for.
        if materials.suite != suite {
            return Err(err!(InvalidState, "the keyring changed the suite from {suite} to {}", materials.suite));
        }
        let data_key = materials
            .data_key
            .as_ref()
            .filter(|k| k.as_bytes().len() == suite.data_key_len())
            .ok_or_else(|| err!(InvalidState, "the keyring produced no data key of the suite's length"))?;
        if materials.encrypted_data_keys.is_empty() {
            return Err(err!(InvalidState, "the keyring produced no encrypted data key"));
        }
        // SPEC client-apis/encrypt.md: more encrypted data keys than the
        // configured maximum fail encryption (the spec sets no default; this
        // library's is the one its decryption applies, so what it writes it reads).
        if let Some(max) = self.limits.max_encrypted_data_keys {
            if materials.encrypted_data_keys.len() > usize::from(max) {
                return Err(err!(
                    LimitExceeded,
                    "the keyrings made {} encrypted data keys, the maximum is {max}",
                    materials.encrypted_data_keys.len()
                ));
            }
        }
        let (stored, auth_only) = split_context(&materials.encryption_context, &opts.required_encryption_context_keys)?;
        let message_id = crate::random::array::<32>().to_vec();
        let keys = kdf::derive(suite, data_key.as_bytes(), &message_id)?;
        let header = Header {
            version: MessageVersion::V2,
            suite,
            message_id,
            encryption_context: stored,
            encrypted_data_keys: materials.encrypted_data_keys.clone(),
            content_type: ContentType::Framed,
            frame_length: opts.frame_length,
            suite_data: keys.commit_key.as_deref().copied(),
        };
        let aead = self.aead.new_key(&keys.encryption_key).await?;
        // SPEC client-apis/encrypt.md "Construct the header": the tag's AAD is
        // the header body ‖ the serialized authenticate-only pairs.
        let mut enc = Encryptor::new(header, aead, signer, &context::canonical(&auth_only)?).await?;
        enc.declare_len(opts.plaintext_length);
        Ok(enc)
    }

    /// Starts decrypting a message (feed it bytes, unwrap the key when asked).
    pub fn decryptor(&self, opts: &DecryptOptions) -> Decryptor {
        Decryptor::new(self.policy, self.limits, self.aead.clone(), opts)
    }

    /// Encrypts a whole plaintext in one call.
    pub async fn encrypt(&self, keyring: &dyn Keyring, plaintext: &[u8], opts: &EncryptOptions) -> Result<Vec<u8>> {
        let mut sized;
        let opts = match opts.plaintext_length {
            Some(_) => opts,
            None => {
                sized = opts.clone();
                sized.plaintext_length = Some(plaintext.len() as u64);
                &sized
            }
        };
        let mut enc = self.encryptor(keyring, opts).await?;
        let mut out = Vec::with_capacity(
            crate::format::body::framed_body_len(plaintext.len() as u64, opts.frame_length)
                .map(|n| n as usize + 1024)
                .unwrap_or(0),
        );
        enc.update(plaintext, &mut out).await?;
        enc.finish(&mut out).await?;
        Ok(out)
    }

    /// Decrypts a whole message in one call. Bytes after the message are an error.
    pub async fn decrypt(
        &self,
        keyring: &dyn Keyring,
        ciphertext: &[u8],
        opts: &DecryptOptions,
    ) -> Result<(Vec<u8>, Header)> {
        let mut dec = self.decryptor(opts);
        // The header first, so the body is read in place once the key is
        // there rather than buffered while the keyring works; a header that
        // does not parse goes in whole, for the decryptor's own error.
        let split = crate::format::parse_header(ciphertext).map_or(ciphertext.len(), |(_, n)| n);
        let (head, body) = ciphertext.split_at(split);
        // The plaintext is shorter than the message: one allocation, no regrowth.
        let mut out = Vec::with_capacity(ciphertext.len());
        if dec.update(head, &mut out).await? == DecryptStatus::NeedDataKey {
            dec.unwrap_data_key(keyring).await?;
        }
        dec.update(body, &mut out).await?;
        let header = dec.finish()?;
        Ok((out, header))
    }
}

/// Splits the materials' context into the pairs the header stores and the
/// authenticate-only pairs of `required` (SPEC framework/structures.md
/// "Required Encryption Context Keys": each is a key of the context).
fn split_context(full: &EncryptionContext, required: &BTreeSet<String>) -> Result<(EncryptionContext, EncryptionContext)> {
    let mut stored = full.clone();
    let mut auth_only = EncryptionContext::new();
    for k in required {
        let v = stored
            .remove(k)
            .ok_or_else(|| err!(InvalidState, "the keyring dropped the required encryption context key {k:?}"))?;
        auth_only.insert(k.clone(), v);
    }
    Ok((stored, auth_only))
}

/// Exact size of the message kms-envelope writes for `plaintext_len` bytes,
/// given the header length ([`Encryptor::header_len`]). `None` on overflow
/// or when the plaintext needs more than 2^32 − 1 frames.
pub fn encrypted_size(header_len: u64, plaintext_len: u64, frame_length: u32, suite: AlgorithmSuite) -> Option<u64> {
    if frame_length == 0 {
        return None;
    }
    let body = crate::format::body::framed_body_len(plaintext_len, frame_length)?;
    let footer = suite.signature().map_or(0, |alg| 2 + alg.signature_len() as u64);
    header_len.checked_add(body)?.checked_add(footer)
}
