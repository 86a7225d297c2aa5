//! Request bodies of the gateway's JSON API and the checks that need nothing
//! but the bytes: well-formed JSON of the right shape, plain object ids, a
//! supported algorithm, base64, a serializable encryption context.
//! Authorization happens afterwards, in the routes.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use kms_envelope::{EncryptionContext, KmsRsaAlgorithm};
use serde::Deserialize;

/// Object ids are chosen by the uploader (they sit in the encryption
/// context before the upload); only plain characters are accepted, so an id
/// is always a safe file name and never needs quoting.
pub fn valid_object_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Why a request body was refused: `FORBIDDEN` (the context names no
/// object) or `INVALID_REQUEST`, with a reason safe to show and to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Stable code: `INVALID_REQUEST` or `FORBIDDEN`.
    pub code: &'static str,
    /// For the client and the audit log; never echoes secret input.
    pub reason: String,
    /// The object the request named, once known.
    pub object: Option<String>,
    /// The key the request named, once known.
    pub key_id: Option<String>,
}

fn refuse(code: &'static str, reason: impl Into<String>, object: Option<&str>, key_id: Option<&str>) -> Refusal {
    Refusal { code, reason: reason.into(), object: object.map(str::to_owned), key_id: key_id.map(str::to_owned) }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawDecryptRequest {
    key_id: String,
    ciphertext_blob: String,
    encryption_algorithm: String,
    #[serde(default)]
    encryption_context: EncryptionContext,
}

/// `POST /v1/decrypt-data-key`, checked: the KMS Decrypt request a client
/// asks the gateway to make on its behalf.
pub struct DecryptRequest {
    /// The KMS key ARN the wrapped key claims.
    pub key_id: String,
    /// The object id from the context (`object`), already validated.
    pub object: String,
    /// RSAES_OAEP_SHA_256 or RSAES_OAEP_SHA_1.
    pub algorithm: KmsRsaAlgorithm,
    /// The wrapped data key (the EDK's ciphertext).
    pub ciphertext_blob: Vec<u8>,
    /// The claimed encryption context.
    pub encryption_context: EncryptionContext,
    /// Its ESDK serialization, whose SHA-384 KMS must return.
    pub serialized_context: Vec<u8>,
}

impl DecryptRequest {
    /// Parses and checks a request body.
    pub fn parse(body: &[u8]) -> Result<Self, Refusal> {
        let raw: RawDecryptRequest =
            serde_json::from_slice(body).map_err(|e| refuse("INVALID_REQUEST", format!("malformed request: {e}"), None, None))?;
        let arn = Some(raw.key_id.as_str());
        let Some(object) = raw.encryption_context.get("object").filter(|o| valid_object_id(o)).cloned() else {
            return Err(refuse("FORBIDDEN", "the encryption context names no object", None, arn));
        };
        let o = Some(object.as_str());
        let algorithm = KmsRsaAlgorithm::parse(&raw.encryption_algorithm)
            .map_err(|_| refuse("INVALID_REQUEST", "unsupported encryptionAlgorithm", o, arn))?;
        let ciphertext_blob = B64
            .decode(raw.ciphertext_blob.trim())
            .map_err(|_| refuse("INVALID_REQUEST", "ciphertextBlob is not base64", o, arn))?;
        if ciphertext_blob.is_empty() || ciphertext_blob.len() > 1024 {
            return Err(refuse("INVALID_REQUEST", "ciphertextBlob must be 1 to 1024 bytes (an RSA ciphertext)", o, arn));
        }
        let serialized_context = kms_envelope::format::context::canonical(&raw.encryption_context)
            .map_err(|_| refuse("INVALID_REQUEST", "invalid encryption context", o, arn))?;
        Ok(DecryptRequest { key_id: raw.key_id, object, algorithm, ciphertext_blob, encryption_context: raw.encryption_context, serialized_context })
    }
}

/// `POST /v1/login`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The user name.
    pub user: String,
    /// The user's token.
    pub token: String,
}

/// `POST /v1/objects/{id}/shares`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareRequest {
    /// Who may read the object from now on.
    pub user: String,
}

/// `POST /v1/uploads/{id}/parts`: the parts to presign.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PartsRequest {
    /// 1-based part numbers.
    pub part_numbers: Vec<i32>,
}

/// A part of a direct upload, as its PUT answered.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompletedPart {
    pub part_number: i32,
    /// The `ETag` header of the part's PUT answer.
    pub etag: String,
}

/// `POST /v1/uploads/{id}/complete` of a direct upload: every part, in order.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    pub parts: Vec<CompletedPart>,
}

/// The query of `PUT /v1/uploads/{id}?offset=N`.
#[derive(Deserialize)]
pub struct PartQuery {
    /// Bytes received so far.
    pub offset: u64,
}

/// Parses a small JSON body into `T`, as `INVALID_REQUEST` when it is not one.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| refuse("INVALID_REQUEST", format!("malformed request: {e}"), None, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(ctx: serde_json::Value, alg: &str, blob: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"keyId": "arn:k", "ciphertextBlob": blob, "encryptionAlgorithm": alg, "encryptionContext": ctx})).unwrap()
    }

    #[test]
    fn decrypt_requests_are_checked_before_authorization() {
        let ok = DecryptRequest::parse(&body(serde_json::json!({"object": "o-1", "owner": "alice"}), "RSAES_OAEP_SHA_256", "AAEC")).unwrap();
        assert_eq!((ok.object.as_str(), ok.ciphertext_blob.as_slice()), ("o-1", &[0u8, 1, 2][..]));
        assert_eq!(ok.serialized_context, kms_envelope::format::context::serialize(&ok.encryption_context).unwrap());
        let code = |b: &[u8]| DecryptRequest::parse(b).err().map(|r| r.code);
        assert_eq!(code(b"{"), Some("INVALID_REQUEST"));
        assert_eq!(code(b"[]"), Some("INVALID_REQUEST"));
        assert_eq!(code(&body(serde_json::json!({"owner": "alice"}), "RSAES_OAEP_SHA_256", "AAEC")), Some("FORBIDDEN"));
        assert_eq!(code(&body(serde_json::json!({"object": "../x"}), "RSAES_OAEP_SHA_256", "AAEC")), Some("FORBIDDEN"));
        assert_eq!(code(&body(serde_json::json!({"object": "x' OR 1=1 --"}), "RSAES_OAEP_SHA_256", "AAEC")), Some("FORBIDDEN"));
        assert_eq!(code(&body(serde_json::json!({"object": "o"}), "RSAES_PKCS1_V1_5", "AAEC")), Some("INVALID_REQUEST"));
        assert_eq!(code(&body(serde_json::json!({"object": "o"}), "RSAES_OAEP_SHA_1", "not base64!")), Some("INVALID_REQUEST"));
        assert_eq!(code(&body(serde_json::json!({"object": "o"}), "RSAES_OAEP_SHA_1", "")), Some("INVALID_REQUEST"));
        assert_eq!(code(&body(serde_json::json!({"object": "o", "aws-crypto-public-key": "x"}), "RSAES_OAEP_SHA_1", "AA==")), None, "reserved keys are the keyring's business");
        let mut extra: serde_json::Value = serde_json::from_slice(&body(serde_json::json!({"object": "o"}), "RSAES_OAEP_SHA_1", "AA==")).unwrap();
        extra["grantTokens"] = serde_json::json!([]);
        assert_eq!(code(&serde_json::to_vec(&extra).unwrap()), Some("INVALID_REQUEST"), "unknown fields are refused");
    }

    #[test]
    fn object_ids_are_plain() {
        for ok in ["a", "obj-1", "A_b-9", &"x".repeat(64)] {
            assert!(valid_object_id(ok), "{ok}");
        }
        for bad in ["", "../etc", "a/b", "a.b", "a b", "é", "a\0", &"x".repeat(65), "1;DROP TABLE objects"] {
            assert!(!valid_object_id(bad), "{bad}");
        }
    }
}
