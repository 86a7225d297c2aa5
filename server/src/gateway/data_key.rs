//! `POST /v1/decrypt-data-key`, the backend Decrypt: authenticate, then
//! authorize on the claimed context, have KMS unwrap the key (or reuse its
//! cached answer), prove the claim with the digest KMS returned, then
//! answer in the shape of KMS Decrypt.
//!
//! Every decision about an authenticated caller is an audit record,
//! committed before the answer (a record that cannot be written fails the
//! request, releasing nothing); requests
//! with no valid credential, over plain HTTP from off the machine, or over
//! the caller's rate are counted in the metrics instead.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use kms_envelope::{KmsDecryptRequest, KmsDecryptResponse};
use kms_envelope_server::api::{DecryptRequest, Refusal};
use serde_json::json;
use sha2::{Digest, Sha384};
use subtle::ConstantTimeEq;

use super::caller::authenticate;
use crate::kms_client::{Failure, FailureKind};
use super::errors::{err, retry_after, ApiError};
use super::kms_cache::KmsCache;
use super::objects::entitled;
use super::peer::Peer;
use super::request::{json_content_type, read_body, JSON_MAX};
use super::Gateway;

type Shared = std::sync::Arc<Gateway>;

/// A refused body: 403 where it names nothing the caller may read, else 400.
fn refusal_status(r: &Refusal) -> StatusCode {
    if r.code == "FORBIDDEN" {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::BAD_REQUEST
    }
}

/// KMS failures as HTTP answers a client can act on, by their kind.
pub fn kms_failure(f: &Failure) -> ApiError {
    let (status, code, msg) = match f.kind {
        FailureKind::Throttled => (StatusCode::TOO_MANY_REQUESTS, "KMS_THROTTLED", "KMS is throttling requests; retry later"),
        FailureKind::Disabled => (StatusCode::CONFLICT, "KEY_DISABLED", "the KMS key is disabled"),
        FailureKind::InvalidState => (StatusCode::CONFLICT, "KEY_UNAVAILABLE", "the KMS key is pending deletion or otherwise unusable"),
        FailureKind::NotFound => (StatusCode::CONFLICT, "KEY_NOT_FOUND", "the KMS key does not exist"),
        FailureKind::AccessDenied => (StatusCode::BAD_GATEWAY, "KMS_ACCESS_DENIED", "the gateway may not use this KMS key"),
        FailureKind::InvalidCiphertext => (StatusCode::FORBIDDEN, "INVALID_CIPHERTEXT", "KMS cannot decrypt this data key"),
        FailureKind::Unreachable => (StatusCode::SERVICE_UNAVAILABLE, "KMS_UNAVAILABLE", "KMS cannot be reached; retry later"),
        FailureKind::BadResponse | FailureKind::Other => (StatusCode::BAD_GATEWAY, "KMS_ERROR", "KMS failed"),
    };
    let message = format!("{msg} ({})", f.detail);
    if status == StatusCode::TOO_MANY_REQUESTS {
        retry_after(status, code, message, Duration::from_secs(2))
    } else {
        err(status, code, message)
    }
}

pub async fn decrypt_data_key(State(gw): State<Shared>, Extension(peer): Extension<Peer>, method: Method, req: Request) -> Result<Response, ApiError> {
    // Data keys never cross the network in clear (this machine aside).
    if !peer.https && !peer.local {
        gw.audit.refusals.tls_required.fetch_add(1, Ordering::Relaxed);
        return Err(err(StatusCode::FORBIDDEN, "TLS_REQUIRED", "data keys are only served over HTTPS"));
    }
    let who = authenticate(&gw, &peer, &method, req.headers()).await?.user;
    if let Err(wait) = gw.spend_data_key(&who).await? {
        gw.audit.refusals.rate_limited.fetch_add(1, Ordering::Relaxed);
        return Err(retry_after(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", "too many data-key requests; retry later", wait));
    }
    // A refusal is answered only once it is recorded.
    let deny = |status, code, owner: Option<&str>, object: Option<&str>, arn: Option<&str>, reason: &str| {
        let answer = err(status, code, reason);
        let (gw, who) = (&gw, &who);
        let (owner, object, arn, reason) = (owner.map(str::to_owned), object.map(str::to_owned), arn.map(str::to_owned), reason.to_owned());
        async move {
            match gw.audit.record(who, owner.as_deref(), object.as_deref(), arn.as_deref(), false, &reason).await {
                Ok(()) => answer,
                Err(e) => e.into(),
            }
        }
    };
    if let Err(e) = json_content_type(req.headers()) {
        gw.audit.record(&who, None, None, None, false, "not a JSON body").await?;
        return Err(e);
    }
    let (parts, body) = req.into_parts();
    let body = match read_body(&parts.headers, body, JSON_MAX).await {
        Ok(b) => b,
        Err(e) => return Err(deny(e.status(), e.code(), None, None, None, "the request body was refused").await),
    };
    let req = match DecryptRequest::parse(&body) {
        Ok(r) => r,
        Err(r) => return Err(deny(refusal_status(&r), r.code, None, r.object.as_deref(), r.key_id.as_deref(), &r.reason).await),
    };
    let (object, arn, alg) = (req.object.as_str(), Some(req.key_id.as_str()), req.algorithm);
    // The context names the object's owner and id; the proof below makes
    // sure the wrapped key was made for exactly this context.
    let Some(owner) = req.encryption_context.get("owner").cloned() else {
        return Err(deny(StatusCode::FORBIDDEN, "FORBIDDEN", None, Some(object), arn, "the encryption context names no owner").await);
    };
    let found = match gw.db.get(&owner, object).await {
        Ok(found) => found,
        Err(e) => {
            // Recorded where it can be (the database may be down).
            let _ = gw.audit.record(&who, Some(&owner), Some(object), arn, false, &format!("metadata: {}", e.kind_name())).await;
            return Err(e.into());
        }
    };
    let o = match found {
        Some(o) if entitled(&o, &who) => o,
        _ => return Err(deny(StatusCode::FORBIDDEN, "FORBIDDEN", Some(&owner), Some(object), arn, "not entitled to this object").await),
    };
    if req.key_id != o.key_arn {
        return Err(deny(StatusCode::FORBIDDEN, "FORBIDDEN", Some(&owner), Some(object), arn, "the object is not under this key").await);
    }
    // A cached KMS answer for this wrapped key, or KMS itself.
    let cache_key = KmsCache::key(&req.key_id, alg.as_str(), &req.ciphertext_blob);
    let (resp, cached) = match gw.kms_cache.get(&cache_key) {
        Some((key_id, plaintext)) => (KmsDecryptResponse { key_id, plaintext }, true),
        None => {
            gw.kms_cache.calls.fetch_add(1, Ordering::Relaxed);
            let kms_req = KmsDecryptRequest { key_id: req.key_id.clone(), ciphertext_blob: req.ciphertext_blob.clone(), encryption_algorithm: alg, encryption_context: req.encryption_context.clone() };
            match gw.kms.decrypt_key(kms_req).await {
                Ok(r) => (r, false),
                Err(f) => {
                    gw.audit.record(&who, Some(&owner), Some(object), arn, false, &format!("KMS: {}", f.detail)).await?;
                    return Err(kms_failure(&f));
                }
            }
        }
    };
    // KMS answered for the key asked, with SHA-384(context) ‖ data key.
    let digest: [u8; 48] = Sha384::digest(&req.serialized_context).into();
    let proven = resp.key_id == req.key_id && resp.plaintext.len() > 48 && bool::from(resp.plaintext[..48].ct_eq(&digest));
    if !proven {
        return Err(deny(StatusCode::FORBIDDEN, "FORBIDDEN", Some(&owner), Some(object), arn, "the wrapped key is bound to another encryption context").await);
    }
    if !cached {
        gw.kms_cache.put(cache_key, &resp.key_id, &resp.plaintext);
    }
    // No key leaves unrecorded.
    gw.audit.record(&who, Some(&owner), Some(object), arn, true, if o.owner == who { "owner" } else { "shared" }).await?;
    Ok(Json(json!({ "plaintext": B64.encode(&resp.plaintext[..]), "keyId": resp.key_id, "encryptionAlgorithm": alg.as_str() })).into_response())
}
