//! Stored objects: list, download (with `Range`), delete, and sharing:
//! grant, list and revoke. An object is named by its owner and its id;
//! routes take `?owner=` (default: the caller). Anything the caller may not
//! read is answered as if it did not exist (404).

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use kms_envelope_server::api::{parse_json, valid_object_id, ShareRequest};
use serde_json::json;

use super::caller::{authenticate, Caller};
use super::meta::Object;
use super::errors::{err, ApiError};
use super::peer::Peer;
use super::request::{json_content_type, query_param, read_body, JSON_MAX};
use super::storage::{self, Access};
use super::Gateway;

type Shared = std::sync::Arc<Gateway>;

pub fn object_json(o: &Object) -> serde_json::Value {
    json!({ "id": o.id, "owner": o.owner, "keyArn": o.key_arn, "size": o.size, "created": o.created,
            "fileName": o.file_name, "sharedWith": o.shared_with })
}

pub fn entitled(o: &Object, who: &str) -> bool {
    o.owner == who || o.shared_with.iter().any(|u| u == who)
}

pub fn not_found() -> ApiError {
    err(StatusCode::NOT_FOUND, "NOT_FOUND", "no such object")
}

/// The object `owner`/`id` if `who` may read it.
async fn readable(gw: &Gateway, owner: &str, id: &str, who: &str) -> Result<Object, ApiError> {
    if !valid_object_id(id) {
        return Err(not_found());
    }
    gw.db.get(owner, id).await?.filter(|o| entitled(o, who)).ok_or_else(not_found)
}

/// The caller's own object `id` (sharing and deleting are the owner's).
async fn owned(gw: &Gateway, caller: &Caller, id: &str) -> Result<Object, ApiError> {
    readable(gw, &caller.user, id, &caller.user).await
}

pub async fn list(State(gw): State<Shared>, Extension(peer): Extension<Peer>, method: Method, req: Request) -> Result<Response, ApiError> {
    let who = authenticate(&gw, &peer, &method, req.headers()).await?.user;
    let objects: Vec<_> = gw.db.list_for(&who).await?.iter().map(object_json).collect();
    Ok(Json(json!({ "objects": objects })).into_response())
}

/// The blob, with HTTP `Range` support (206, `Content-Range`, 416) so
/// clients can read a header and a few frames of a large object; for an
/// object in S3, a redirect (307) to a short-lived presigned URL (the
/// gateway carries no file bytes).
pub async fn download(State(gw): State<Shared>, Extension(peer): Extension<Peer>, method: Method, Path(id): Path<String>, req: Request) -> Result<Response, ApiError> {
    use tower::ServiceExt;
    let who = authenticate(&gw, &peer, &method, req.headers()).await?.user;
    let owner = query_param(req.uri().query(), "owner").unwrap_or_else(|| who.clone());
    let o = readable(&gw, &owner, &id, &who).await?;
    match gw.store.access(&o.owner, &o.id, gw.presign_lifetime()).await.map_err(|f| storage::api_error(&f))? {
        Access::Url(url) => {
            let location = HeaderValue::from_str(&url).map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, "STORAGE", e.to_string()))?;
            Ok((StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, location)]).into_response())
        }
        Access::File(path) => {
            let served = tower_http::services::ServeFile::new_with_mime(path, &mime::APPLICATION_OCTET_STREAM)
                .oneshot(req)
                .await
                .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, "STORAGE", e.to_string()))?;
            let mut r = served.map(Body::new);
            r.headers_mut().insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            Ok(r)
        }
    }
}

/// `GET /v1/objects/{id}/url?owner=USER` → `{ url, direct, size, expiresAt }`:
/// where the caller reads the blob, with `Range` requests. For an object in
/// S3 a presigned URL (no credentials needed until `expiresAt`); otherwise
/// the gateway's download route, authenticated as any other request.
pub async fn location(State(gw): State<Shared>, Extension(peer): Extension<Peer>, method: Method, Path(id): Path<String>, req: Request) -> Result<Response, ApiError> {
    let who = authenticate(&gw, &peer, &method, req.headers()).await?.user;
    let owner = query_param(req.uri().query(), "owner").unwrap_or_else(|| who.clone());
    let o = readable(&gw, &owner, &id, &who).await?;
    let lifetime = gw.presign_lifetime();
    let expires = crate::localkms::now() + lifetime.as_secs_f64();
    let (url, direct) = match gw.store.access(&o.owner, &o.id, lifetime).await.map_err(|f| storage::api_error(&f))? {
        Access::Url(url) => (url, true),
        Access::File(_) => {
            let q: String = form_urlencoded::Serializer::new(String::new()).append_pair("owner", &o.owner).finish();
            (format!("/v1/objects/{}?{q}", o.id), false)
        }
    };
    Ok(Json(json!({ "url": url, "direct": direct, "size": o.size, "expiresAt": if direct { Some(expires) } else { None } })).into_response())
}

pub async fn delete(State(gw): State<Shared>, Extension(peer): Extension<Peer>, method: Method, Path(id): Path<String>, req: Request) -> Result<Response, ApiError> {
    let caller = authenticate(&gw, &peer, &method, req.headers()).await?;
    let o = owned(&gw, &caller, &id).await?;
    // The row goes first: a blob without a row is invisible (and, in the
    // local directory, removed at startup). Only the request that removed
    // the row removes the blob, so a concurrent delete cannot remove a new
    // upload's blob of the same id.
    let removed = gw.db.delete(&o.owner, &o.id).await?;
    if !removed {
        return Err(not_found());
    }
    if let Err(f) = gw.store.delete(&o.owner, &o.id).await {
        tracing::warn!(object = %o.id, owner = %o.owner, error = %f.detail, "the object is deleted but its blob could not be removed");
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/objects/{id}/shares` `{ user }`: the owner grants `user` read access.
pub async fn share(State(gw): State<Shared>, Extension(peer): Extension<Peer>, method: Method, Path(id): Path<String>, req: Request) -> Result<Response, ApiError> {
    let caller = authenticate(&gw, &peer, &method, req.headers()).await?;
    json_content_type(req.headers())?;
    let (parts, body) = req.into_parts();
    let body = read_body(&parts.headers, body, JSON_MAX).await?;
    let r: ShareRequest = parse_json(&body).map_err(|r| err(StatusCode::BAD_REQUEST, r.code, r.reason))?;
    let o = owned(&gw, &caller, &id).await?;
    if !gw.may_be_user(&r.user) {
        return Err(err(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "no such user"));
    }
    let new = gw.db.share(&o.owner, &o.id, &r.user, crate::localkms::now()).await?;
    if new {
        gw.audit.event(&caller.user, &o.owner, &o.id, "share", &r.user).await?;
    }
    Ok(Json(object_json(&gw.db.get(&o.owner, &o.id).await?.ok_or_else(not_found)?)).into_response())
}

/// `GET /v1/objects/{id}/shares` → `{ shares: [{ user, granted }] }` (owner only).
pub async fn shares(State(gw): State<Shared>, Extension(peer): Extension<Peer>, method: Method, Path(id): Path<String>, req: Request) -> Result<Response, ApiError> {
    let caller = authenticate(&gw, &peer, &method, req.headers()).await?;
    let o = owned(&gw, &caller, &id).await?;
    let shares: Vec<_> = gw.db.shares(&o.owner, &o.id).await?.into_iter().map(|(user, granted)| json!({ "user": user, "granted": granted })).collect();
    Ok(Json(json!({ "shares": shares })).into_response())
}

/// `DELETE /v1/objects/{id}/shares/{user}` (owner only): from now on `user`
/// gets 404 for the object and no data key for it (the KMS answer cache
/// sits behind this same authorization).
pub async fn unshare(State(gw): State<Shared>, Extension(peer): Extension<Peer>, method: Method, Path((id, user)): Path<(String, String)>, req: Request) -> Result<Response, ApiError> {
    let caller = authenticate(&gw, &peer, &method, req.headers()).await?;
    let o = owned(&gw, &caller, &id).await?;
    let removed = gw.db.unshare(&o.owner, &o.id, &user).await?;
    if !removed {
        return Err(err(StatusCode::NOT_FOUND, "NOT_FOUND", "the object is not shared with this user"));
    }
    gw.audit.event(&caller.user, &o.owner, &o.id, "unshare", &user).await?;
    tracing::info!(object = %o.id, owner = %o.owner, user = %user, "share revoked");
    Ok(StatusCode::NO_CONTENT.into_response())
}
