//! What a blob must be to become an object: the checks on its envelope
//! header, the same for every upload path. Under the limits decryption
//! applies (at most 10 data keys, a header of at most 1 MiB): an
//! `aws-kms-rsa` data key for an allowed key, the uploader as the
//! context's `owner`, and an `object` id the uploader has not used (for a
//! direct upload, the id the gateway issued).

use axum::http::StatusCode;
use kms_envelope_server::api::valid_object_id;

use super::errors::{err, ApiError};
use super::Gateway;

/// A header that passed: what the object's row records.
pub struct Checked {
    pub id: String,
    pub arn: String,
    pub file_name: Option<String>,
}

pub fn conflict() -> ApiError {
    err(StatusCode::CONFLICT, "CONFLICT", "you already have an object with this id")
}

/// The header's checks: the limits decryption applies, a KMS RSA data key
/// for an allowed key, and a context whose owner is the uploader and whose
/// object id is not one of the uploader's objects (and, for a direct
/// upload, is the id the gateway issued for it).
pub async fn check_header(gw: &Gateway, who: &str, prefix: &[u8], issued: Option<&str>) -> Result<Option<Checked>, ApiError> {
    let bad = |m: String| err(StatusCode::BAD_REQUEST, "INVALID_MESSAGE", m);
    let (h, _) = match kms_envelope::DecryptLimits::default().parse_header(prefix) {
        Ok(x) => x,
        Err(e) if e.code() == kms_envelope::ErrorCode::Truncated => return Ok(None),
        Err(e) if e.code() == kms_envelope::ErrorCode::LimitExceeded => {
            return Err(err(StatusCode::BAD_REQUEST, "LIMIT_EXCEEDED", format!("refused as decryption would refuse it: {e}")))
        }
        Err(e) => return Err(bad(format!("not an envelope: {e}"))),
    };
    let arn = h
        .encrypted_data_keys
        .iter()
        .filter(|e| e.provider_id == "aws-kms-rsa")
        .filter_map(|e| std::str::from_utf8(&e.provider_info).ok())
        .find(|a| gw.key_allowed(a))
        .ok_or_else(|| bad("no aws-kms-rsa data key for this gateway's KMS key".into()))?
        .to_owned();
    let ctx = &h.encryption_context;
    if ctx.get("owner").map(String::as_str) != Some(who) {
        return Err(err(StatusCode::FORBIDDEN, "FORBIDDEN", "the encryption context's owner must be the uploader"));
    }
    let id = ctx.get("object").ok_or_else(|| bad("the encryption context has no object id".into()))?;
    if !valid_object_id(id) {
        return Err(bad("object id: use 1 to 64 letters, digits, '-' or '_'".into()));
    }
    if gw.db.exists(who, id).await? {
        return Err(conflict());
    }
    if issued.is_some_and(|want| want != id) {
        return Err(bad("the encryption context's object must be the id this upload was issued".into()));
    }
    Ok(Some(Checked { id: id.clone(), arn, file_name: ctx.get("file").cloned() }))
}
