//! The one error type of kms-envelope.
//!
//! Every failure carries an [`ErrorCode`] whose string form is stable and is
//! what the CLI prints and what JavaScript sees as `error.code`. The detail
//! text is for people; it never contains key material or plaintext.

use core::fmt;

/// Stable, machine-readable error codes.
///
/// The string form (`ErrorCode::as_str`) is part of the public contract and
/// does not change between releases; new codes may be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The caller passed an invalid argument (frame length, suite, option).
    InvalidArgument,
    /// Key material could not be parsed or is unacceptable (size, type).
    InvalidKey,
    /// The message ended before it was complete.
    Truncated,
    /// Bytes follow the end of the message.
    TrailingData,
    /// The message is not well-formed (bad field value, bad length).
    MalformedMessage,
    /// The message version is not 1 or 2, or does not match its suite.
    UnsupportedVersion,
    /// The algorithm suite id is unknown or reserved.
    UnsupportedSuite,
    /// A configured limit (EDK count, frame length, header size) was exceeded.
    LimitExceeded,
    /// The encryption context is invalid (duplicate key, too large, bad UTF-8).
    InvalidEncryptionContext,
    /// An encryption context key uses the reserved `aws-crypto-` prefix.
    ReservedEncryptionContextKey,
    /// A reproduced encryption context pair differs from the stored one.
    EncryptionContextMismatch,
    /// The commitment policy forbids this algorithm suite.
    CommitmentPolicyViolation,
    /// The key commitment in the header does not match the data key.
    CommitmentMismatch,
    /// The header authentication tag does not verify.
    HeaderAuthFailed,
    /// A frame's authentication tag does not verify.
    FrameAuthFailed,
    /// Frames are out of order, duplicated or missing.
    FrameSequence,
    /// The footer signature does not verify, or is missing.
    SignatureInvalid,
    /// The decryption refuses signed messages, or a range of a signed
    /// message whose signature it cannot check.
    SignaturePolicy,
    /// No keyring could decrypt any encrypted data key.
    NoDecryptableKey,
    /// The keyring does not support the requested algorithm suite.
    UnsupportedSuiteForKeyring,
    /// The KMS Decrypt call failed.
    KmsError,
    /// The KMS Decrypt response is inconsistent (key id, digest, length).
    KmsResponseInvalid,
    /// A cryptographic operation failed while encrypting or wrapping.
    EncryptionFailed,
    /// The streaming API was used out of order.
    InvalidState,
    /// Reading or writing a file failed (CLI and I/O adapters only).
    Io,
}

impl ErrorCode {
    /// Every code, for documentation and tests.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::InvalidArgument,
        ErrorCode::InvalidKey,
        ErrorCode::Truncated,
        ErrorCode::TrailingData,
        ErrorCode::MalformedMessage,
        ErrorCode::UnsupportedVersion,
        ErrorCode::UnsupportedSuite,
        ErrorCode::LimitExceeded,
        ErrorCode::InvalidEncryptionContext,
        ErrorCode::ReservedEncryptionContextKey,
        ErrorCode::EncryptionContextMismatch,
        ErrorCode::CommitmentPolicyViolation,
        ErrorCode::CommitmentMismatch,
        ErrorCode::HeaderAuthFailed,
        ErrorCode::FrameAuthFailed,
        ErrorCode::FrameSequence,
        ErrorCode::SignatureInvalid,
        ErrorCode::SignaturePolicy,
        ErrorCode::NoDecryptableKey,
        ErrorCode::UnsupportedSuiteForKeyring,
        ErrorCode::KmsError,
        ErrorCode::KmsResponseInvalid,
        ErrorCode::EncryptionFailed,
        ErrorCode::InvalidState,
        ErrorCode::Io,
    ];

    /// The stable string form, e.g. `"FRAME_AUTH_FAILED"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::InvalidKey => "INVALID_KEY",
            ErrorCode::Truncated => "TRUNCATED",
            ErrorCode::TrailingData => "TRAILING_DATA",
            ErrorCode::MalformedMessage => "MALFORMED_MESSAGE",
            ErrorCode::UnsupportedVersion => "UNSUPPORTED_VERSION",
            ErrorCode::UnsupportedSuite => "UNSUPPORTED_SUITE",
            ErrorCode::LimitExceeded => "LIMIT_EXCEEDED",
            ErrorCode::InvalidEncryptionContext => "INVALID_ENCRYPTION_CONTEXT",
            ErrorCode::ReservedEncryptionContextKey => "RESERVED_ENCRYPTION_CONTEXT_KEY",
            ErrorCode::EncryptionContextMismatch => "ENCRYPTION_CONTEXT_MISMATCH",
            ErrorCode::CommitmentPolicyViolation => "COMMITMENT_POLICY_VIOLATION",
            ErrorCode::CommitmentMismatch => "COMMITMENT_MISMATCH",
            ErrorCode::HeaderAuthFailed => "HEADER_AUTH_FAILED",
            ErrorCode::FrameAuthFailed => "FRAME_AUTH_FAILED",
            ErrorCode::FrameSequence => "FRAME_SEQUENCE",
            ErrorCode::SignatureInvalid => "SIGNATURE_INVALID",
            ErrorCode::SignaturePolicy => "SIGNATURE_POLICY",
            ErrorCode::NoDecryptableKey => "NO_DECRYPTABLE_KEY",
            ErrorCode::UnsupportedSuiteForKeyring => "UNSUPPORTED_SUITE_FOR_KEYRING",
            ErrorCode::KmsError => "KMS_ERROR",
            ErrorCode::KmsResponseInvalid => "KMS_RESPONSE_INVALID",
            ErrorCode::EncryptionFailed => "ENCRYPTION_FAILED",
            ErrorCode::InvalidState => "INVALID_STATE",
            ErrorCode::Io => "IO",
        }
    }

    /// Parses the string form back into a code.
    pub fn from_str_code(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from kms-envelope: a stable [`ErrorCode`] and a human-readable detail.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    code: ErrorCode,
    detail: String,
}

impl Error {
    /// Creates an error. `detail` must not contain secrets.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Error {
            code,
            detail: detail.into(),
        }
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The human-readable detail (never contains key material).
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({}: {})", self.code.as_str(), self.detail)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.detail)
    }
}

impl std::error::Error for Error {}

/// Result alias used across the crate.
pub type Result<T, E = Error> = core::result::Result<T, E>;

macro_rules! err {
    ($code:ident, $($arg:tt)*) => {
        $crate::error::Error::new($crate::error::ErrorCode::$code, format!($($arg)*))
    };
}
pub(crate) use err;
