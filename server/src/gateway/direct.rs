//! Direct uploads, for objects kept in S3: the browser PUTs encrypted parts
//! to presigned multipart URLs and the gateway never carries a file byte.
//!
//! `POST /v1/uploads` starts the multipart upload, records it (so that
//! every gateway knows it) and issues the object id the encryption context
//! must carry.
//! `POST /v1/uploads/{id}/parts` presigns the next parts. `complete` checks
//! the parts against what the store holds, assembles them, reads the
//! header back and applies exactly the checks of an upload through the
//! gateway (see `admission`), and only then records the object: a blob that
//! fails is deleted. Idle uploads expire and are aborted by the sweep.

use std::collections::HashSet;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use kms_envelope_server::api::{parse_json, CompleteRequest, PartsRequest};
use serde_json::json;

use super::admission::{check_header, Checked};
use super::caller::authenticate;
use super::meta::{self, Object, Upload};
use super::errors::{err, ApiError};
use super::incoming::too_large;
use super::objects::object_json;
use super::peer::Peer;
use super::request::{json_content_type, read_body, JSON_MAX};
use super::slots::Full;
use super::storage::{api_error, Kind, Part};
use super::Gateway;

type Shared = std::sync::Arc<Gateway>;

/// Parts presigned by one request.
const PARTS_PER_REQUEST: usize = 16;
/// Seconds between two records of an upload's activity.
const TOUCH_EVERY: f64 = 5.0;
/// The first read of a header; a longer one is read again whole.
const FIRST_READ: u64 = 64 << 10;

fn no_upload() -> ApiError {
    err(StatusCode::NOT_FOUND, "UPLOAD", "no such upload (finished, cancelled or expired)")
}

fn invalid_parts(m: impl AsRef<str>) -> ApiError {
    err(StatusCode::BAD_REQUEST, "INVALID_PARTS", m)
}

/// The most parts an object under the size limit can have.
fn max_parts(gw: &Gateway) -> u64 {
    gw.config.max_object_bytes.div_ceil(gw.config.part_bytes).max(1)
}

impl Gateway {
    /// Whether an upload has had no activity for `upload_idle_seconds`.
    pub fn upload_expired(&self, u: &Upload, now: f64) -> bool {
        now - u.touched > self.config.upload_idle_seconds as f64
    }

    /// Marks an upload active (at most every few seconds: a write per
    /// request would cost more than expiry needs).
    async fn touch(&self, u: &Upload, now: f64) -> Result<(), ApiError> {
        if now - u.touched >= TOUCH_EVERY {
            self.db.touch_upload(&u.id, now).await?;
        }
        Ok(())
    }

    /// The caller's live upload `id` (anyone else's is answered as missing).
    async fn live_upload(&self, id: &str, who: &str) -> Result<Upload, ApiError> {
        let u = self.db.upload(id).await?.filter(|u| u.owner == who).ok_or_else(no_upload)?;
        if self.upload_expired(&u, crate::localkms::now()) {
            return Err(no_upload());
        }
        Ok(u)
    }
}

/// Starts a direct upload → `{ uploadId, objectId, partBytes, maxParts, direct }`.
pub async fn start(gw: &Gateway, who: &str) -> Result<Response, ApiError> {
    let (mine, all) = gw.db.count_uploads(who).await?;
    if mine >= gw.config.max_uploads_per_user {
        return Err(Full::User(gw.config.max_uploads_per_user).answer());
    }
    if all >= gw.config.max_uploads {
        return Err(Full::Everyone.answer());
    }
    let object_id = uuid::Uuid::new_v4().to_string();
    let store_upload_id = gw.store.start_multipart(who, &object_id).await.map_err(|f| api_error(&f))?;
    let now = crate::localkms::now();
    let u = Upload { id: uuid::Uuid::new_v4().to_string(), owner: who.to_owned(), object_id, store_upload_id, part_bytes: gw.config.part_bytes, created: now, touched: now };
    if let Err(e) = gw.db.insert_upload(&u).await {
        let _ = gw.store.abort_multipart(&gw.store.key(who, &u.object_id), &u.store_upload_id).await;
        return Err(e.into());
    }
    tracing::info!(upload = %u.id, owner = %who, object = %u.object_id, "direct upload started");
    let body = json!({
        "uploadId": u.id, "objectId": u.object_id, "partBytes": u.part_bytes, "maxParts": max_parts(gw),
        "maxObjectBytes": gw.config.max_object_bytes, "direct": true, "idleSeconds": gw.config.upload_idle_seconds,
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `POST /v1/uploads/{id}/parts` `{ partNumbers }` → presigned `UploadPart`
/// URLs, valid for `presign_seconds`.
pub async fn parts(State(gw): State<Shared>, Extension(peer): Extension<Peer>, method: Method, headers: HeaderMap, Path(id): Path<String>, req: Request) -> Result<Response, ApiError> {
    let who = authenticate(&gw, &peer, &method, &headers).await?.user;
    if !gw.store.direct() {
        return Err(api_error(&super::storage::Failure::new(super::storage::Kind::Unsupported, "this gateway stores objects itself: PUT /v1/uploads/ID?offset=N")));
    }
    json_content_type(&headers)?;
    let body = read_body(&headers, req.into_body(), JSON_MAX).await?;
    let r: PartsRequest = parse_json(&body).map_err(|r| err(StatusCode::BAD_REQUEST, r.code, r.reason))?;
    let max = max_parts(&gw);
    if r.part_numbers.is_empty() || r.part_numbers.len() > PARTS_PER_REQUEST {
        return Err(err(StatusCode::BAD_REQUEST, "INVALID_REQUEST", format!("ask for 1 to {PARTS_PER_REQUEST} parts at a time")));
    }
    if let Some(n) = r.part_numbers.iter().find(|&&n| n < 1 || n as u64 > max) {
        return Err(err(StatusCode::BAD_REQUEST, "TOO_LARGE", format!("part {n}: parts are numbered 1 to {max} (objects are limited to {} bytes)", gw.config.max_object_bytes)));
    }
    let u = gw.live_upload(&id, &who).await?;
    let now = crate::localkms::now();
    gw.touch(&u, now).await?;
    let lifetime = gw.presign_lifetime();
    let store_id = u.store_upload_id.as_str();
    let mut urls = Vec::with_capacity(r.part_numbers.len());
    for n in &r.part_numbers {
        let url = gw.store.presign_part(&u.owner, &u.object_id, store_id, *n, lifetime).await.map_err(|f| api_error(&f))?;
        urls.push(json!({ "partNumber": n, "url": url }));
    }
    Ok(Json(json!({ "parts": urls, "expiresAt": now + lifetime.as_secs_f64() })).into_response())
}

/// The parts a completion names must be exactly the parts the store holds,
/// numbered 1 to n, every one but the last of the upload's part size, with
/// the ETags their PUTs answered, and no more bytes than an object may have.
fn check_parts(gw: &Gateway, u: &Upload, named: &CompleteRequest, held: &[Part]) -> Result<u64, ApiError> {
    if named.parts.is_empty() {
        return Err(invalid_parts("name every part, numbered from 1"));
    }
    for (i, p) in named.parts.iter().enumerate() {
        if p.part_number != i as i32 + 1 {
            return Err(invalid_parts(format!("parts must be numbered 1, 2, 3, … in order: part {} is at place {}", p.part_number, i + 1)));
        }
    }
    let named_numbers: HashSet<i32> = named.parts.iter().map(|p| p.part_number).collect();
    if let Some(extra) = held.iter().find(|h| !named_numbers.contains(&h.number)) {
        return Err(invalid_parts(format!("part {} was uploaded but is not named", extra.number)));
    }
    let last = named.parts.len() as i32;
    let mut total = 0u64;
    for p in &named.parts {
        let h = held.iter().find(|h| h.number == p.part_number).ok_or_else(|| invalid_parts(format!("part {} was not uploaded", p.part_number)))?;
        if unquote(&h.etag) != unquote(&p.etag) {
            return Err(invalid_parts(format!("part {}: the ETag is not the one its upload answered", p.part_number)));
        }
        if (p.part_number < last && h.size != u.part_bytes) || h.size > u.part_bytes {
            return Err(invalid_parts(format!("part {}: {} bytes; every part but the last has {} bytes", p.part_number, h.size, u.part_bytes)));
        }
        total += h.size;
    }
    if total > gw.config.max_object_bytes {
        return Err(too_large(gw.config.max_object_bytes));
    }
    Ok(total)
}

fn unquote(etag: &str) -> &str {
    etag.trim().trim_matches('"')
}

/// Reads the blob's header back and checks it: the first 64 KiB, then (for
/// a longer header) up to the 1 MiB limit.
async fn admit(gw: &Gateway, u: &Upload) -> Result<(Checked, u64), ApiError> {
    let unavailable = |f: super::storage::Failure| api_error(&f);
    let (mut prefix, size) = gw.store.read_range(&u.owner, &u.object_id, 0, FIRST_READ).await.map_err(unavailable)?;
    let mut checked = check_header(gw, &u.owner, &prefix, Some(&u.object_id)).await?;
    if checked.is_none() && size > prefix.len() as u64 {
        let limit = kms_envelope::DecryptLimits::default().max_header_length as u64 + 1;
        prefix = gw.store.read_range(&u.owner, &u.object_id, 0, limit).await.map_err(unavailable)?.0;
        checked = check_header(gw, &u.owner, &prefix, Some(&u.object_id)).await?;
    }
    let c = checked.ok_or_else(|| err(StatusCode::BAD_REQUEST, "INVALID_MESSAGE", "the upload ends inside the header"))?;
    if size > gw.config.max_object_bytes {
        return Err(too_large(gw.config.max_object_bytes));
    }
    Ok((c, size))
}

/// `POST /v1/uploads/{id}/complete` `{ parts: [{ partNumber, etag }] }` → 201
/// and the object. A blob that fails the checks is deleted and the upload
/// ended; a store that is unavailable leaves the upload as it was (send
/// the same completion again).
pub async fn complete(gw: &Gateway, who: &str, id: &str, headers: &HeaderMap, req: Request) -> Result<Response, ApiError> {
    json_content_type(headers)?;
    let body = read_body(headers, req.into_body(), JSON_MAX).await?;
    let named: CompleteRequest = parse_json(&body).map_err(|r| err(StatusCode::BAD_REQUEST, r.code, r.reason))?;
    let u = gw.live_upload(id, who).await?;
    gw.touch(&u, crate::localkms::now()).await?;
    let assembled_before = assemble(gw, &u, &named).await?;
    // From here the blob exists in the store but is no object until its row is in.
    let (c, size) = match admit(gw, &u).await {
        Ok(x) => x,
        Err(e) if assembled_before && e.status() == StatusCode::NOT_FOUND => {
            let _ = gw.db.delete_upload(&u.id).await;
            return Err(no_upload());
        }
        Err(e) if e.status() == StatusCode::SERVICE_UNAVAILABLE => return Err(e), // the sweep removes it if it never comes back
        Err(e) => {
            discard(gw, &u).await;
            return Err(e);
        }
    };
    let o = Object { id: c.id, owner: u.owner.clone(), key_arn: c.arn, size, created: crate::localkms::now(), file_name: c.file_name, shared_with: vec![] };
    match gw.db.finish_upload(&u.id, &o).await {
        Ok(true) => {}
        Ok(false) => {
            // Cancelled or expired while completing, or another completion
            // of the same upload won: its object keeps the blob.
            if matches!(gw.db.exists(&u.owner, &u.object_id).await, Ok(false)) {
                let _ = gw.store.delete(&u.owner, &u.object_id).await;
            }
            return Err(no_upload());
        }
        // Unavailable: the upload stays as it was, to be completed again (or swept).
        Err(e) if e.kind == meta::Kind::Unavailable => return Err(e.into()),
        Err(e) => {
            discard(gw, &u).await;
            return Err(e.into());
        }
    }
    tracing::info!(object = %o.id, owner = %o.owner, size = o.size, "stored (direct upload)");
    Ok((StatusCode::CREATED, Json(object_json(&o))).into_response())
}

/// Checks the named parts against the store's and assembles them; whether
/// an earlier completion had assembled them already (S3 failed after
/// assembling, and the client sent the same completion again).
async fn assemble(gw: &Gateway, u: &Upload, named: &CompleteRequest) -> Result<bool, ApiError> {
    let held = match gw.store.list_parts(&u.owner, &u.object_id, &u.store_upload_id).await {
        Ok(held) => held,
        // The upload is live (its row is here), so only a completion ended it in the store.
        Err(f) if f.kind == Kind::NoSuchUpload => return Ok(true),
        Err(f) => return Err(api_error(&f)),
    };
    check_parts(gw, u, named, &held)?;
    let parts: Vec<(i32, String)> = named.parts.iter().map(|p| (p.part_number, p.etag.clone())).collect();
    gw.store.complete_multipart(&u.owner, &u.object_id, &u.store_upload_id, &parts).await.map_err(|f| api_error(&f))?;
    Ok(false)
}

/// A refused blob: deleted, and its upload ended. A blob that became an
/// object (another completion of the same upload won) is the object's:
/// only the upload ends.
async fn discard(gw: &Gateway, u: &Upload) {
    match gw.db.exists(&u.owner, &u.object_id).await {
        Ok(false) => {}
        Ok(true) => {
            let _ = gw.db.delete_upload(&u.id).await;
            return;
        }
        Err(_) => return, // the row stays; the sweep decides once the database answers
    }
    if let Err(f) = gw.store.delete(&u.owner, &u.object_id).await {
        tracing::warn!(upload = %u.id, error = %f.detail, "a refused blob could not be deleted yet; the sweep retries");
        return; // the row stays, so the sweep deletes the blob once it expires
    }
    let _ = gw.db.delete_upload(&u.id).await;
}

/// `DELETE /v1/uploads/{id}`: aborts the multipart upload (its parts are
/// freed), then forgets it. An unavailable store leaves it to be cancelled again.
pub async fn cancel(gw: &Gateway, who: &str, id: &str) -> Result<Response, ApiError> {
    let u = gw.db.upload(id).await?.filter(|u| u.owner == who).ok_or_else(no_upload)?;
    gw.store.abort_multipart(&gw.store.key(&u.owner, &u.object_id), &u.store_upload_id).await.map_err(|f| api_error(&f))?;
    if gw.db.delete_upload(&u.id).await? {
        // A completion racing this cancel may have assembled the blob: no row, no object.
        if !gw.db.exists(&u.owner, &u.object_id).await? {
            let _ = gw.store.delete(&u.owner, &u.object_id).await;
        }
    }
    tracing::info!(upload = %u.id, owner = %who, "direct upload cancelled");
    Ok(StatusCode::NO_CONTENT.into_response())
}
