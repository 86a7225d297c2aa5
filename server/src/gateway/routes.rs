//! The HTTP API (JSON):
//!
//! - `GET  /v1/public-key` → `{ keyArn, keySpec, encryptionAlgorithms, publicKey, fingerprint }`
//! - `POST /v1/objects` (envelope blob body) → `201 { id, size, keyArn }`
//! - `GET  /v1/objects` → `{ objects: [...] }` (owned or shared with the caller)
//! - `GET  /v1/objects/{id}` → the blob; `DELETE /v1/objects/{id}` (owner)
//! - `POST /v1/objects/{id}/shares` `{ user }` (owner)
//! - `POST /v1/uploads` → `{ uploadId, maxPartBytes }`; `PUT /v1/uploads/{id}?offset=N` (bytes)
//!   → `{ received }`; `POST /v1/uploads/{id}/complete` → 201 as `POST /v1/objects`;
//!   `DELETE /v1/uploads/{id}` cancels. For clients that cannot stream one request body.
//! - `POST /v1/decrypt-data-key` `{ keyId, ciphertextBlob, encryptionAlgorithm, encryptionContext }`
//!   → `{ plaintext, keyId, encryptionAlgorithm }`, the shape of KMS Decrypt
//!
//! - `POST /v1/login` `{ user, token }` → `{ user, csrfToken }` and the session cookie;
//!   `GET /v1/session` → the same for a live session; `POST /v1/logout`
//!
//! Every request but the public key and login needs `Authorization: Bearer
//! TOKEN` or the session cookie (plus `X-CSRF-Token` on requests that change
//! anything). Errors are `{ "error": CODE, "message": … }`; 429 and 503
//! carry `Retry-After`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures_util::StreamExt;
use kms_envelope::{KmsDecrypt, KmsDecryptRequest, KmsDecryptResponse};
use kms_envelope_server::api::{parse_json, valid_object_id, DecryptRequest, LoginRequest, PartQuery, Refusal, ShareRequest};
use serde_json::json;
use sha2::{Digest, Sha384};
use subtle::ConstantTimeEq;

use super::db::Object;
use super::incoming::{self, Incoming};
use super::kms_cache::KmsCache;
use std::sync::atomic::Ordering;
use super::session::{self, Credential};
use super::Gateway;

type Shared = Arc<Gateway>;

/// The gateway's routes.
pub fn router(gw: Shared) -> Router {
    let limit = Duration::from_secs(gw.config.request_timeout_seconds.max(1));
    let api = Router::new()
        .route("/v1/public-key", get(public_key))
        .route("/v1/login", post(login))
        .route("/v1/logout", post(logout))
        .route("/v1/session", get(current_session))
        .route("/v1/objects", post(upload).get(list).layer(DefaultBodyLimit::disable()))
        .route("/v1/objects/{id}", get(download).delete(delete))
        .route("/v1/objects/{id}/shares", post(share))
        .route("/v1/uploads", post(upload_start))
        .route("/v1/uploads/{id}", axum::routing::put(upload_part).delete(upload_cancel).layer(DefaultBodyLimit::max(MAX_PART)))
        .route("/v1/uploads/{id}/complete", post(upload_complete))
        .route("/v1/decrypt-data-key", post(decrypt_data_key))
        .route("/v1/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(axum::middleware::from_fn(move |req, next| api_headers(limit, req, next)));
    let app = match &gw.config.web_dir {
        Some(dir) => api.fallback_service(tower_http::services::ServeDir::new(dir).append_index_html_on_directories(true)),
        None => api,
    };
    let tls = gw.config.tls();
    app.layer(axum::middleware::from_fn(move |req, next| security_headers(tls, req, next))).with_state(gw)
}

/// A time limit for the small requests (every API request but the streamed
/// upload and download must complete, body read, KMS call and answer, within
/// `request_timeout_seconds`), and responses that are never cached.
async fn api_headers(limit: Duration, req: Request, next: Next) -> Response {
    let streamed = req.uri().path().starts_with("/v1/objects") && !req.uri().path().ends_with("/shares") && *req.method() != Method::DELETE;
    let mut r = if streamed {
        next.run(req).await
    } else {
        match tokio::time::timeout(limit, next.run(req)).await {
            Ok(r) => r,
            Err(_) => err(StatusCode::REQUEST_TIMEOUT, "TIMEOUT", "the request took too long").into_response(),
        }
    };
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Headers on every response: a strict Content-Security-Policy for the web
/// app (no inline script, no third-party origin; wasm allowed), no framing,
/// and HSTS when serving HTTPS.
async fn security_headers(tls: bool, req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; connect-src 'self'; \
             img-src 'self' blob: data:; style-src 'self'; object-src 'none'; base-uri 'none'; \
             frame-ancestors 'none'; form-action 'self'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    if tls {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000; includeSubDomains"));
    }
    r
}

pub struct ApiError(StatusCode, &'static str, String, Option<Duration>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(json!({ "error": self.1, "message": self.2 }))).into_response();
        if self.0 == StatusCode::TOO_MANY_REQUESTS || self.0 == StatusCode::SERVICE_UNAVAILABLE {
            let secs = self.3.map(|d| d.as_secs_f64().ceil() as u64).unwrap_or(1).max(1);
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}

pub fn err(status: StatusCode, code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError(status, code, msg.into(), None)
}

/// JSON endpoints take `application/json` only (no form or text bodies,
/// which a cross-site page can send without asking).
fn json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|m| m.type_() == mime::APPLICATION && m.subtype() == mime::JSON);
    if ok {
        Ok(())
    } else {
        Err(err(StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE", "send the body as application/json"))
    }
}

/// A refused body: 403 where it names nothing the caller may read, else 400.
fn refusal_status(r: &Refusal) -> StatusCode {
    if r.code == "FORBIDDEN" {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::BAD_REQUEST
    }
}

fn invalid(r: Refusal) -> ApiError {
    err(refusal_status(&r), r.code, r.reason)
}

fn unauthorized() -> ApiError {
    err(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "sign in, or send a valid bearer token")
}

/// The caller: a bearer token, or the session cookie. A cookie alone never
/// authorizes a state change: those need the CSRF token and a same-origin
/// request.
fn user(gw: &Gateway, method: &Method, headers: &HeaderMap) -> Result<String, ApiError> {
    match session::credential(headers) {
        Credential::Bearer(t) => gw.user_for_token(t).map(str::to_owned).ok_or_else(unauthorized),
        Credential::Cookie(id) => {
            let (user, csrf) = gw.sessions.get(id).ok_or_else(unauthorized)?;
            if session::changes_state(method) && !(session::csrf_ok(headers, &csrf) && session::same_origin(headers)) {
                return Err(err(StatusCode::FORBIDDEN, "CSRF", "a cross-site request, or no X-CSRF-Token: refused"));
            }
            Ok(user)
        }
        Credential::None => Err(unauthorized()),
    }
}

async fn public_key(State(gw): State<Shared>) -> Result<Response, ApiError> {
    let (arn, der) = gw.kms.public_key(&gw.config.key).await.map_err(|e| kms_failure(e.detail()))?;
    gw.note_key(&arn);
    Ok(Json(json!({
        "keyArn": arn,
        "keySpec": super::key_spec(&der),
        "encryptionAlgorithms": ["RSAES_OAEP_SHA_256", "RSAES_OAEP_SHA_1"],
        "publicKey": B64.encode(&der),
        "fingerprint": super::fingerprint(&der),
    }))
    .into_response())
}

/// Signs a person in: the user's token, checked like a bearer token, buys
/// a session cookie and the CSRF token the web app sends back.
async fn login(State(gw): State<Shared>, ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    if !session::same_origin(&headers) {
        return Err(err(StatusCode::FORBIDDEN, "CSRF", "a cross-site login: refused"));
    }
    if let Err(wait) = gw.login_limit.check(&peer.ip().to_string()) {
        return Err(ApiError(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", "too many sign-in attempts; wait".into(), Some(wait)));
    }
    json_content_type(&headers)?;
    let req: LoginRequest = parse_json(&body).map_err(invalid)?;
    match gw.user_for_token(&req.token) {
        Some(u) if u == req.user => {
            let (id, csrf) = gw.sessions.create(u);
            tracing::info!(user = u, "signed in");
            let mut r = Json(json!({ "user": u, "csrfToken": csrf })).into_response();
            let cookie = session::set_cookie(Some(&id), gw.sessions.lifetime());
            r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string()))?);
            Ok(r)
        }
        _ => Err(err(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "wrong user name or token")),
    }
}

async fn logout(State(gw): State<Shared>, method: Method, headers: HeaderMap) -> Result<Response, ApiError> {
    user(&gw, &method, &headers)?;
    if let Some(id) = session::session_cookie(&headers) {
        gw.sessions.remove(id);
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&session::set_cookie(None, Duration::ZERO)).expect("cookie"));
    Ok(r)
}

async fn current_session(State(gw): State<Shared>, headers: HeaderMap) -> Result<Response, ApiError> {
    let id = session::session_cookie(&headers).ok_or_else(unauthorized)?;
    let (user, csrf) = gw.sessions.get(id).ok_or_else(unauthorized)?;
    Ok(Json(json!({ "user": user, "csrfToken": csrf })).into_response())
}

/// `GET /v1/metrics` (Prometheus text; loopback clients only): KMS Decrypt
/// calls made and saved by the cache, and data-key decisions.
async fn metrics(State(gw): State<Shared>, ConnectInfo(peer): ConnectInfo<SocketAddr>) -> Result<Response, ApiError> {
    if !peer.ip().is_loopback() {
        return Err(err(StatusCode::FORBIDDEN, "FORBIDDEN", "metrics are served to this machine only"));
    }
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let text = format!(
        "# HELP kms_envelope_kms_decrypt_calls_total KMS Decrypt calls made.\n\
         # TYPE kms_envelope_kms_decrypt_calls_total counter\n\
         kms_envelope_kms_decrypt_calls_total {}\n\
         # HELP kms_envelope_kms_decrypt_cache_hits_total KMS Decrypt calls saved by the cache.\n\
         # TYPE kms_envelope_kms_decrypt_cache_hits_total counter\n\
         kms_envelope_kms_decrypt_cache_hits_total {}\n\
         # HELP kms_envelope_kms_decrypt_cache_entries KMS answers cached now.\n\
         # TYPE kms_envelope_kms_decrypt_cache_entries gauge\n\
         kms_envelope_kms_decrypt_cache_entries {}\n\
         # HELP kms_envelope_data_key_decisions_total Data-key requests by decision.\n\
         # TYPE kms_envelope_data_key_decisions_total counter\n\
         kms_envelope_data_key_decisions_total{{decision=\"allow\"}} {}\n\
         kms_envelope_data_key_decisions_total{{decision=\"deny\"}} {}\n",
        n(&gw.kms_cache.calls),
        n(&gw.kms_cache.hits),
        gw.kms_cache.len(),
        n(&gw.audit.counts[0]),
        n(&gw.audit.counts[1]),
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// KMS failures as HTTP answers a client can act on.
fn kms_failure(detail: &str) -> ApiError {
    let (status, code, msg) = if detail.contains("ThrottlingException") {
        (StatusCode::TOO_MANY_REQUESTS, "KMS_THROTTLED", "KMS is throttling requests; retry later")
    } else if detail.contains("DisabledException") {
        (StatusCode::CONFLICT, "KEY_DISABLED", "the KMS key is disabled")
    } else if detail.contains("KMSInvalidStateException") {
        (StatusCode::CONFLICT, "KEY_UNAVAILABLE", "the KMS key is pending deletion or otherwise unusable")
    } else if detail.contains("NotFoundException") {
        (StatusCode::CONFLICT, "KEY_NOT_FOUND", "the KMS key does not exist")
    } else if detail.contains("AccessDeniedException") {
        (StatusCode::BAD_GATEWAY, "KMS_ACCESS_DENIED", "the gateway may not use this KMS key")
    } else if detail.contains("InvalidCiphertextException") || detail.contains("IncorrectKeyException") {
        (StatusCode::FORBIDDEN, "INVALID_CIPHERTEXT", "KMS cannot decrypt this data key")
    } else if detail.contains("unreachable") {
        (StatusCode::SERVICE_UNAVAILABLE, "KMS_UNAVAILABLE", "KMS cannot be reached; retry later")
    } else {
        (StatusCode::BAD_GATEWAY, "KMS_ERROR", "KMS failed")
    };
    ApiError(status, code, format!("{msg} ({detail})"), if status == StatusCode::TOO_MANY_REQUESTS { Some(Duration::from_secs(2)) } else { None })
}

fn object_json(o: &Object) -> serde_json::Value {
    json!({ "id": o.id, "owner": o.owner, "keyArn": o.key_arn, "size": o.size, "created": o.created,
            "fileName": o.file_name, "sharedWith": o.shared_with })
}

/// Streams an upload to `incoming/` (see `Incoming`): an acknowledged
/// upload survives a crash; a failed one leaves nothing.
async fn upload(State(gw): State<Shared>, method: Method, headers: HeaderMap, req: Request) -> Result<Response, ApiError> {
    let who = user(&gw, &method, &headers)?;
    let max = gw.config.max_object_bytes;
    if let Some(len) = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok()) {
        if len > max {
            return Err(incoming::too_large(max));
        }
    }
    let mut object = Incoming::new(&gw, &who)?;
    let mut stream = req.into_body().into_data_stream();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(gw.config.upload_max_seconds);
    let stall = Duration::from_secs(gw.config.upload_stall_seconds.max(1));
    loop {
        let next = tokio::time::timeout(stall.min(deadline.saturating_duration_since(tokio::time::Instant::now())), stream.next()).await;
        let chunk: Bytes = match next {
            Err(_) => return Err(err(StatusCode::REQUEST_TIMEOUT, "TIMEOUT", "the upload stalled")),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(err(StatusCode::BAD_REQUEST, "UPLOAD_FAILED", format!("the upload broke off: {e}"))),
            Ok(Some(Ok(c))) => c,
        };
        if tokio::time::Instant::now() > deadline {
            return Err(err(StatusCode::REQUEST_TIMEOUT, "TIMEOUT", "the upload took too long"));
        }
        if let Err(e) = object.push(&gw, &chunk) {
            // Read and drop the rest (within the same limits) so that a
            // client still sending gets this answer, not a broken pipe.
            drain(&mut stream, deadline, stall, max).await;
            return Err(e);
        }
    }
    let o = object.commit(&gw)?;
    Ok((StatusCode::CREATED, Json(object_json(&o))).into_response())
}

/// Reads a refused upload's body to its end, at most `max` bytes and
/// within `deadline`, with no pause over `stall`.
async fn drain<S, E>(stream: &mut S, deadline: tokio::time::Instant, stall: Duration, max: u64)
where
    S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
{
    let mut seen = 0u64;
    while seen <= max {
        let left = stall.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        match tokio::time::timeout(left, stream.next()).await {
            Ok(Some(Ok(c))) => seen += c.len() as u64,
            _ => return,
        }
    }
}

/// Largest part of a chunked upload.
const MAX_PART: usize = 16 << 20;

/// `POST /v1/uploads`: starts a chunked upload → `{ uploadId, maxPartBytes }`.
async fn upload_start(State(gw): State<Shared>, method: Method, headers: HeaderMap) -> Result<Response, ApiError> {
    let who = user(&gw, &method, &headers)?;
    let object = Incoming::new(&gw, &who)?;
    let id = gw.uploads.start(&who, object).map_err(|m| err(StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_UPLOADS", m))?;
    Ok((StatusCode::CREATED, Json(json!({ "uploadId": id, "maxPartBytes": MAX_PART }))).into_response())
}

/// `PUT /v1/uploads/{id}?offset=N`: the next bytes; `offset` must be the
/// number of bytes received so far (a retried part gets 409 with `received`).
async fn upload_part(
    State(gw): State<Shared>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<PartQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let who = user(&gw, &method, &headers)?;
    let mut object = gw.uploads.take(&id, &who).map_err(|(s, m)| err(s, "UPLOAD", m))?;
    if q.offset != object.size() {
        let received = object.size();
        gw.uploads.put_back(&id, object);
        return Ok((StatusCode::CONFLICT, Json(json!({ "error": "OFFSET_MISMATCH", "message": "the part does not continue the upload", "received": received }))).into_response());
    }
    if let Err(e) = object.push(&gw, &body) {
        gw.uploads.forget(&id); // the upload ends here, and its file with it
        return Err(e);
    }
    let received = object.size();
    gw.uploads.put_back(&id, object);
    Ok(Json(json!({ "received": received })).into_response())
}

/// `POST /v1/uploads/{id}/complete` → 201 and the object, as `POST /v1/objects`.
async fn upload_complete(State(gw): State<Shared>, method: Method, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, ApiError> {
    let who = user(&gw, &method, &headers)?;
    let object = gw.uploads.end(&id, &who).map_err(|(s, m)| err(s, "UPLOAD", m))?;
    let o = object.commit(&gw)?;
    Ok((StatusCode::CREATED, Json(object_json(&o))).into_response())
}

/// `DELETE /v1/uploads/{id}`: cancels; nothing of it remains.
async fn upload_cancel(State(gw): State<Shared>, method: Method, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, ApiError> {
    let who = user(&gw, &method, &headers)?;
    drop(gw.uploads.end(&id, &who).map_err(|(s, m)| err(s, "UPLOAD", m))?);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list(State(gw): State<Shared>, method: Method, headers: HeaderMap) -> Result<Response, ApiError> {
    let who = user(&gw, &method, &headers)?;
    let objects: Vec<_> = gw.db.list_for(&who).iter().map(object_json).collect();
    Ok(Json(json!({ "objects": objects })).into_response())
}

fn entitled(o: &Object, who: &str) -> bool {
    o.owner == who || o.shared_with.iter().any(|u| u == who)
}

fn not_found() -> ApiError {
    err(StatusCode::NOT_FOUND, "NOT_FOUND", "no such object")
}

/// The blob, with HTTP `Range` support (206, `Content-Range`, 416) so
/// clients can read a header and a few frames of a large object.
async fn download(State(gw): State<Shared>, method: Method, headers: HeaderMap, Path(id): Path<String>, req: Request) -> Result<Response, ApiError> {
    use tower::ServiceExt;
    let who = user(&gw, &method, &headers)?;
    if !valid_object_id(&id) {
        return Err(not_found());
    }
    let o = gw.db.get(&id).filter(|o| entitled(o, &who)).ok_or_else(not_found)?;
    let path = gw.blob_path(&o.id);
    if !path.exists() {
        return Err(not_found());
    }
    let served = tower_http::services::ServeFile::new_with_mime(path, &mime::APPLICATION_OCTET_STREAM)
        .oneshot(req)
        .await
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, "STORAGE", e.to_string()))?;
    let mut r = served.map(Body::new);
    r.headers_mut().insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    Ok(r)
}

async fn delete(State(gw): State<Shared>, method: Method, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, ApiError> {
    let who = user(&gw, &method, &headers)?;
    let o = gw.db.get(&id).filter(|o| entitled(o, &who)).ok_or_else(not_found)?;
    if o.owner != who {
        return Err(err(StatusCode::FORBIDDEN, "FORBIDDEN", "only the owner may delete"));
    }
    // The row goes first: a blob without a row is invisible and removed at
    // startup. Only the request that removed the row removes the blob, so a
    // concurrent delete cannot remove a new upload's blob of the same id.
    let removed = gw.db.delete(&o.id).map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, "STORAGE", e.to_string()))?;
    if removed == 0 {
        return Err(not_found());
    }
    let _ = std::fs::remove_file(gw.blob_path(&o.id));
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn share(State(gw): State<Shared>, method: Method, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    let who = user(&gw, &method, &headers)?;
    json_content_type(&headers)?;
    let req: ShareRequest = parse_json(&body).map_err(invalid)?;
    let o = gw.db.get(&id).filter(|o| entitled(o, &who)).ok_or_else(not_found)?;
    if o.owner != who {
        return Err(err(StatusCode::FORBIDDEN, "FORBIDDEN", "only the owner may share"));
    }
    if !gw.config.users.iter().any(|u| u.name == req.user) {
        return Err(err(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "no such user"));
    }
    gw.db.share(&o.id, &req.user).map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, "STORAGE", e.to_string()))?;
    Ok(Json(object_json(&gw.db.get(&o.id).ok_or_else(not_found)?)).into_response())
}

/// The backend Decrypt: authorize on the claimed context, have KMS unwrap
/// the key, prove the claim with the digest KMS returned, then answer.
async fn decrypt_data_key(
    State(gw): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    // Data keys never cross the network in clear (loopback aside).
    if !gw.config.tls() && !peer.ip().is_loopback() {
        gw.audit.record(None, None, None, false, "plain HTTP from off the machine");
        return Err(err(StatusCode::FORBIDDEN, "TLS_REQUIRED", "data keys are only served over HTTPS"));
    }
    decrypt_inner(gw, method, headers, body).await
}

async fn decrypt_inner(gw: Shared, method: Method, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let who = match user(&gw, &method, &headers) {
        Ok(u) => u,
        Err(e) => {
            gw.audit.record(None, None, None, false, "no valid token");
            return Err(e);
        }
    };
    let deny = |status, code, object: Option<&str>, arn: Option<&str>, reason: &str| {
        gw.audit.record(Some(&who), object, arn, false, reason);
        err(status, code, reason.to_owned())
    };
    if let Err(wait) = gw.decrypt_limit.check(&who) {
        gw.audit.record(Some(&who), None, None, false, "rate limited");
        return Err(ApiError(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", "too many data-key requests; retry later".into(), Some(wait)));
    }
    if let Err(e) = json_content_type(&headers) {
        gw.audit.record(Some(&who), None, None, false, "not a JSON body");
        return Err(e);
    }
    let req = match DecryptRequest::parse(&body) {
        Ok(r) => r,
        Err(r) => return Err(deny(refusal_status(&r), r.code, r.object.as_deref(), r.key_id.as_deref(), &r.reason)),
    };
    let (object, arn, alg, serialized) = (req.object.clone(), Some(req.key_id.as_str()), req.algorithm, &req.serialized_context);
    let o = match gw.db.get(&object) {
        Some(o) if entitled(&o, &who) => o,
        _ => return Err(deny(StatusCode::FORBIDDEN, "FORBIDDEN", Some(&object), arn, "not entitled to this object")),
    };
    if req.encryption_context.get("owner") != Some(&o.owner) {
        return Err(deny(StatusCode::FORBIDDEN, "FORBIDDEN", Some(&object), arn, "the context's owner is not the object's owner"));
    }
    if req.key_id != o.key_arn {
        return Err(deny(StatusCode::FORBIDDEN, "FORBIDDEN", Some(&object), arn, "the object is not under this key"));
    }
    // A cached KMS answer for this wrapped key, or KMS itself.
    let cache_key = KmsCache::key(&req.key_id, alg.as_str(), &req.ciphertext_blob);
    let (resp, cached) = match gw.kms_cache.get(&cache_key) {
        Some((key_id, plaintext)) => (KmsDecryptResponse { key_id, plaintext }, true),
        None => {
            gw.kms_cache.calls.fetch_add(1, Ordering::Relaxed);
            let kms_req = KmsDecryptRequest { key_id: req.key_id.clone(), ciphertext_blob: req.ciphertext_blob.clone(), encryption_algorithm: alg, encryption_context: req.encryption_context.clone() };
            match gw.kms.decrypt(kms_req).await {
                Ok(r) => (r, false),
                Err(e) => {
                    let failure = kms_failure(e.detail());
                    gw.audit.record(Some(&who), Some(&object), arn, false, &format!("KMS: {}", e.detail()));
                    return Err(failure);
                }
            }
        }
    };
    // KMS answered for the key asked, with SHA-384(context) ‖ data key.
    let digest: [u8; 48] = Sha384::digest(serialized).into();
    let proven = resp.key_id == req.key_id && resp.plaintext.len() > 48 && bool::from(resp.plaintext[..48].ct_eq(&digest));
    if !proven {
        return Err(deny(StatusCode::FORBIDDEN, "FORBIDDEN", Some(&object), arn, "the wrapped key is bound to another encryption context"));
    }
    if !cached {
        gw.kms_cache.put(cache_key, &resp.key_id, &resp.plaintext);
    }
    gw.audit.record(Some(&who), Some(&object), arn, true, if o.owner == who { "owner" } else { "shared" });
    Ok(Json(json!({ "plaintext": B64.encode(&resp.plaintext[..]), "keyId": resp.key_id, "encryptionAlgorithm": alg.as_str() })).into_response())
}
