//! The HTTP API (JSON):
//!
//! - `GET  /v1/public-key` → `{ keyArn, keySpec, encryptionAlgorithms, publicKey, fingerprint }`
//! - `POST /v1/objects` (envelope blob body) → `201 { id, size, keyArn }`
//! - `GET  /v1/objects` → `{ objects: [...] }` (owned or shared with the caller)
//! - `GET  /v1/objects/{id}?owner=USER` → the blob (owner: default the caller);
//!   `DELETE /v1/objects/{id}` (the caller's own)
//! - `POST /v1/objects/{id}/shares` `{ user }`, `GET /v1/objects/{id}/shares`
//!   → `{ shares: [{ user, granted }] }`, `DELETE /v1/objects/{id}/shares/{user}` (owner)
//! - `POST /v1/uploads` → `{ uploadId, maxPartBytes }`; `PUT /v1/uploads/{id}?offset=N` (bytes)
//!   → `{ received }`; `POST /v1/uploads/{id}/complete` → 201 as `POST /v1/objects`;
//!   `DELETE /v1/uploads/{id}` cancels. For clients that cannot stream one request body.
//! - Objects in S3 (the gateway carries no file bytes): `POST /v1/uploads` → `{ uploadId,
//!   objectId, partBytes, maxParts, direct: true }` (`objectId` is the context's `object`);
//!   `POST /v1/uploads/{id}/parts` `{ partNumbers }` → `{ parts: [{ partNumber, url }], expiresAt }`
//!   (PUT each part's bytes there); `POST /v1/uploads/{id}/complete` `{ parts: [{ partNumber, etag }] }`
//!   → 201 the object; `DELETE /v1/uploads/{id}` aborts; `GET /v1/objects/{id}` redirects (307)
//!   to a presigned URL
//! - `GET /v1/objects/{id}/url?owner=USER` → `{ url, direct, size, expiresAt }`: where to read
//!   the blob (with `Range`): a presigned S3 URL, or the gateway's own download route
//! - `POST /v1/decrypt-data-key` `{ keyId, ciphertextBlob, encryptionAlgorithm, encryptionContext }`
//!   → `{ plaintext, keyId, encryptionAlgorithm }`, the shape of KMS Decrypt
//!
//! - `GET /healthz` → 200 while serving; `GET /readyz` → 200 when the database, the
//!   object store and KMS answer, 503 `NOT_READY` / `DRAINING` otherwise (see `health`)
//! - `POST /v1/login` `{ user, token }` → `{ user, csrfToken }` and the session cookie;
//!   `GET /v1/session` → the same for a live session; `POST /v1/logout`
//! - `GET /v1/oidc` → `{ issuer, clientId, scope, authorizationParams, token, name }`, how the
//!   web app signs in with the OpenID provider (404 `OIDC_NOT_CONFIGURED` without one);
//!   `POST /v1/login/oidc` with `Authorization: Bearer JWT` → as `POST /v1/login`
//!
//! Every request but the public key, login and `/v1/oidc` needs `Authorization: Bearer
//! TOKEN` or the session cookie (plus `X-CSRF-Token` on requests that change
//! anything), checked before any body is read. Errors are `{ "error": CODE,
//! "message": … }`, the HTTP stack's own refusals included; 429 and 503
//! carry `Retry-After`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Extension, Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use kms_envelope_server::api::{parse_json, LoginRequest};
use serde_json::json;

use super::caller::{authenticate, charge_failure, failure_key, not_throttled, provider_user, unauthorized};
use super::errors::{err, ApiError};
use super::peer::{self, Peer};
use super::request::{json_content_type, read_body, JSON_MAX};
use super::session;
use super::{data_key, direct, health, objects, transfers, Gateway};

type Shared = Arc<Gateway>;

/// The gateway's routes.
pub fn router(gw: Shared) -> Router {
    let limit = Duration::from_secs(gw.config.request_timeout_seconds.max(1));
    let api = Router::new()
        .route("/v1/public-key", get(public_key))
        .route("/v1/login", post(login))
        .route("/v1/oidc", get(oidc_config))
        .route("/v1/login/oidc", post(oidc_login))
        .route("/v1/logout", post(logout))
        .route("/v1/session", get(current_session))
        .route("/v1/objects", post(transfers::upload).get(objects::list))
        .route("/v1/objects/{id}", get(objects::download).delete(objects::delete))
        .route("/v1/objects/{id}/url", get(objects::location))
        .route("/v1/objects/{id}/shares", post(objects::share).get(objects::shares))
        .route("/v1/objects/{id}/shares/{user}", delete(objects::unshare))
        .route("/v1/uploads", post(transfers::upload_start))
        .route("/v1/uploads/{id}", put(transfers::upload_part).delete(transfers::upload_cancel))
        .route("/v1/uploads/{id}/parts", post(direct::parts))
        .route("/v1/uploads/{id}/complete", post(transfers::upload_complete))
        .route("/v1/decrypt-data-key", post(data_key::decrypt_data_key))
        .route("/v1/metrics", get(metrics))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .layer(axum::middleware::from_fn(move |req, next| api_headers(limit, req, next)));
    let app = match &gw.config.web_dir {
        Some(dir) => api.fallback_service(tower_http::services::ServeDir::new(dir).append_index_html_on_directories(true)),
        None => api,
    };
    let tls = gw.config.tls();
    let idp = gw.config.oidc.as_ref().filter(|o| o.client_id.is_some()).and_then(|o| super::origin::of_url(&o.issuer));
    let csp = content_security_policy(&[gw.store.origin().map(str::to_owned), idp].into_iter().flatten().collect::<Vec<_>>());
    app.layer(axum::middleware::from_fn(super::errors::json_errors))
        .layer(axum::middleware::from_fn_with_state(gw.clone(), with_peer))
        .layer(axum::middleware::from_fn(move |req, next| security_headers(tls, csp.clone(), req, next)))
        .with_state(gw)
}

/// Who sent the request (see `peer`), for every handler.
async fn with_peer(State(gw): State<Shared>, ConnectInfo(socket): ConnectInfo<SocketAddr>, mut req: Request, next: Next) -> Response {
    let p = peer::peer(socket, req.headers(), &gw.config.trusted_proxies, gw.config.tls());
    req.extensions_mut().insert(p);
    next.run(req).await
}

/// A time limit for the small requests (every API request but the streamed
/// upload, its parts and the download must complete, body read, KMS call
/// and answer, within `request_timeout_seconds`: those have limits of their
/// own), and responses that are never cached.
async fn api_headers(limit: Duration, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let object_transfer = path.starts_with("/v1/objects") && !path.contains("/shares") && !path.ends_with("/url") && *req.method() != Method::DELETE;
    let part = path.starts_with("/v1/uploads/") && *req.method() == Method::PUT;
    let mut r = if object_transfer || part {
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

/// The web app's Content-Security-Policy: no inline script, no
/// third-party origin but the object store's (for direct transfers) and
/// the OpenID provider's (discovery and the token endpoint, for the web
/// sign-in); wasm allowed.
fn content_security_policy(others: &[String]) -> HeaderValue {
    let connect = std::iter::once("'self'").chain(others.iter().map(String::as_str)).collect::<Vec<_>>().join(" ");
    HeaderValue::from_str(&format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; connect-src {connect}; \
         img-src 'self' blob: data:; style-src 'self'; object-src 'none'; base-uri 'none'; \
         frame-ancestors 'none'; form-action 'self'"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'"))
}

/// Headers on every response: the Content-Security-Policy, no framing,
/// and HSTS when serving HTTPS.
async fn security_headers(tls: bool, csp: HeaderValue, req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    if tls {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000; includeSubDomains"));
    }
    r
}

async fn public_key(State(gw): State<Shared>) -> Result<Response, ApiError> {
    let (arn, der) = gw.kms.public_key(&gw.config.key).await.map_err(|e| data_key::kms_failure(&e))?;
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
/// a session cookie and the CSRF token the web app sends back. Failures
/// are throttled per (user, client address); successes are not counted.
async fn login(State(gw): State<Shared>, Extension(peer): Extension<Peer>, req: Request) -> Result<Response, ApiError> {
    if !session::same_origin(req.headers(), gw.origins()) {
        return Err(err(StatusCode::FORBIDDEN, "CSRF", "a sign-in from another origin (or no public_origin configured): refused"));
    }
    json_content_type(req.headers())?;
    let (parts, body) = req.into_parts();
    let body = read_body(&parts.headers, body, JSON_MAX).await?;
    let r: LoginRequest = parse_json(&body).map_err(|r| err(StatusCode::BAD_REQUEST, r.code, r.reason))?;
    let key = failure_key(Some(&r.user), &peer);
    not_throttled(&gw, &key).await?;
    match gw.user_for_token(&r.token) {
        Some(u) if u == r.user => open_session(&gw, u).await,
        _ => {
            charge_failure(&gw, &key).await?;
            gw.audit.refusals.unauthenticated.fetch_add(1, Ordering::Relaxed);
            Err(err(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "wrong user name or token"))
        }
    }
}

/// A session cookie for `user`, and the answer that carries it.
async fn open_session(gw: &Gateway, user: &str) -> Result<Response, ApiError> {
    let (id, csrf) = gw.sessions.create(user).await?;
    tracing::info!(user, "signed in");
    let mut resp = Json(json!({ "user": user, "csrfToken": csrf })).into_response();
    let cookie = session::set_cookie(Some(&id), gw.sessions.lifetime());
    resp.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string()))?);
    Ok(resp)
}

fn oidc_not_configured() -> ApiError {
    err(StatusCode::NOT_FOUND, "OIDC_NOT_CONFIGURED", "this gateway has no OpenID provider for the web app")
}

/// How the web app signs in with the OpenID provider (public: the page
/// needs it before anyone is signed in).
async fn oidc_config(State(gw): State<Shared>) -> Result<Response, ApiError> {
    let c = gw.oidc.as_ref().and_then(|o| o.web_config()).ok_or_else(oidc_not_configured)?;
    Ok(Json(c).into_response())
}

/// Trades a provider's token for a session. The token comes in the
/// `Authorization` header, which a cross-site form cannot set, and the
/// request must come from the web app's origin, so another site cannot
/// sign a browser in as someone else.
async fn oidc_login(State(gw): State<Shared>, Extension(peer): Extension<Peer>, req: Request) -> Result<Response, ApiError> {
    if !session::same_origin(req.headers(), gw.origins()) {
        return Err(err(StatusCode::FORBIDDEN, "CSRF", "a sign-in from another origin (or no public_origin configured): refused"));
    }
    let oidc = gw.oidc.as_ref().ok_or_else(oidc_not_configured)?;
    let token = match session::credential(req.headers()) {
        session::Credential::Bearer(t) if super::oidc::is_jwt(t) => t,
        _ => return Err(err(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "send the provider's token as Authorization: Bearer")),
    };
    let user = provider_user(&gw, oidc, &peer, token).await?;
    open_session(&gw, &user).await
}

/// Ends the session that authenticated this request, and only that one (a
/// request authenticated by a bearer token ends no session).
async fn logout(State(gw): State<Shared>, Extension(peer): Extension<Peer>, method: Method, req: Request) -> Result<Response, ApiError> {
    let caller = authenticate(&gw, &peer, &method, req.headers()).await?;
    let mut r = StatusCode::NO_CONTENT.into_response();
    if let Some(id) = caller.session {
        gw.sessions.remove(&id).await?;
        r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&session::set_cookie(None, Duration::ZERO)).expect("cookie"));
    }
    Ok(r)
}

async fn current_session(State(gw): State<Shared>, req: Request) -> Result<Response, ApiError> {
    let id = session::session_cookie(req.headers()).ok_or_else(unauthorized)?;
    let (user, csrf) = gw.sessions.get(id).await?.ok_or_else(unauthorized)?;
    Ok(Json(json!({ "user": user, "csrfToken": csrf })).into_response())
}

/// `GET /v1/metrics` (Prometheus text; loopback clients only): KMS Decrypt
/// calls made and saved by the cache, data-key decisions, refusals, and
/// the bytes moved on client connections.
async fn metrics(State(gw): State<Shared>, Extension(peer): Extension<Peer>) -> Result<Response, ApiError> {
    if !peer.local {
        return Err(err(StatusCode::FORBIDDEN, "FORBIDDEN", "metrics are served to this machine only"));
    }
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let r = &gw.audit.refusals;
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
         kms_envelope_data_key_decisions_total{{decision=\"deny\"}} {}\n\
         # HELP kms_envelope_refusals_total Requests refused before any decision (not in the audit log).\n\
         # TYPE kms_envelope_refusals_total counter\n\
         kms_envelope_refusals_total{{reason=\"unauthenticated\"}} {}\n\
         kms_envelope_refusals_total{{reason=\"auth_throttled\"}} {}\n\
         kms_envelope_refusals_total{{reason=\"rate_limited\"}} {}\n\
         kms_envelope_refusals_total{{reason=\"tls_required\"}} {}\n\
         # HELP kms_envelope_client_bytes_total Bytes received from and sent to clients (below TLS).\n\
         # TYPE kms_envelope_client_bytes_total counter\n\
         kms_envelope_client_bytes_total{{direction=\"received\"}} {}\n\
         kms_envelope_client_bytes_total{{direction=\"sent\"}} {}\n",
        n(&gw.kms_cache.calls),
        n(&gw.kms_cache.hits),
        gw.kms_cache.len(),
        n(&gw.audit.counts[0]),
        n(&gw.audit.counts[1]),
        n(&r.unauthenticated),
        n(&r.auth_throttled),
        n(&r.rate_limited),
        n(&r.tls_required),
        n(&gw.traffic.received),
        n(&gw.traffic.sent),
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

