//! Uploads: `POST /v1/objects` streams one request body to disk (see
//! `Incoming`); `/v1/uploads` takes the same bytes in parts, for browsers
//! that cannot stream a request body. Every route authenticates the caller
//! and finds the upload before it reads a byte of the body, and part
//! bodies go to disk as they arrive, never whole into memory.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::StreamExt;
use serde_json::json;

use super::caller::authenticate;
use super::errors::{err, ApiError};
use super::incoming::{self, Incoming};
use super::objects::object_json;
use super::peer::Peer;
use super::request::query_param;
use super::Gateway;

type Shared = std::sync::Arc<Gateway>;

/// Largest part of a chunked upload.
pub const MAX_PART: u64 = 16 << 20;

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
}

/// One chunk of a body, within the stall and overall time limits. A chunk
/// already received is taken without arming a timer (a body in many tiny
/// chunks costs little per chunk).
async fn next_chunk<S, E>(stream: &mut S, deadline: tokio::time::Instant, stall: Duration) -> Result<Option<Bytes>, ApiError>
where
    S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    use futures_util::FutureExt;
    let now = tokio::time::Instant::now();
    if now >= deadline {
        return Err(err(StatusCode::REQUEST_TIMEOUT, "TIMEOUT", "the upload took too long"));
    }
    let item = match stream.next().now_or_never() {
        Some(item) => item,
        None => match tokio::time::timeout(stall.min(deadline - now), stream.next()).await {
            Ok(item) => item,
            Err(_) if tokio::time::Instant::now() >= deadline => return Err(err(StatusCode::REQUEST_TIMEOUT, "TIMEOUT", "the upload took too long")),
            Err(_) => return Err(err(StatusCode::REQUEST_TIMEOUT, "TIMEOUT", "the upload stalled")),
        },
    };
    match item {
        None => Ok(None),
        Some(Err(e)) => Err(err(StatusCode::BAD_REQUEST, "UPLOAD_FAILED", format!("the upload broke off: {e}"))),
        Some(Ok(c)) => Ok(Some(c)),
    }
}

/// Streams an upload to `incoming/`: an acknowledged upload survives a
/// crash; a failed one leaves nothing.
pub async fn upload(State(gw): State<Shared>, Extension(peer): Extension<Peer>, method: Method, headers: HeaderMap, req: Request) -> Result<Response, ApiError> {
    let who = authenticate(&gw, &peer, &method, &headers).await?.user;
    let max = gw.config.max_object_bytes;
    if declared_length(&headers).is_some_and(|len| len > max) {
        return Err(incoming::too_large(max));
    }
    let mut object = Incoming::new(&gw, &who)?;
    let mut stream = req.into_body().into_data_stream();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(gw.config.upload_max_seconds);
    let stall = Duration::from_secs(gw.config.upload_stall_seconds.max(1));
    while let Some(chunk) = next_chunk(&mut stream, deadline, stall).await? {
        if let Err(e) = object.push(&gw, &chunk).await {
            // Read and drop the rest (within the same limits) so that a
            // client still sending gets this answer, not a broken pipe;
            // not for a body whose chunks are themselves the abuse.
            if e.code() != "TOO_FRAGMENTED" {
                drain(&mut stream, deadline, stall, max).await;
            }
            return Err(e);
        }
        object.settle();
    }
    let o = object.commit(&gw).await?;
    Ok((StatusCode::CREATED, Json(object_json(&o))).into_response())
}

/// Reads a refused upload's body to its end, at most `max` bytes and
/// within `deadline`, with no pause over `stall`.
async fn drain<S, E>(stream: &mut S, deadline: tokio::time::Instant, stall: Duration, max: u64)
where
    S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut seen = 0u64;
    while seen <= max {
        match next_chunk(stream, deadline, stall).await {
            Ok(Some(c)) => seen += c.len() as u64,
            _ => return,
        }
    }
}

/// `POST /v1/uploads`: starts a chunked upload → `{ uploadId, maxPartBytes }`.
/// For objects in S3, a direct upload (see `direct`).
pub async fn upload_start(State(gw): State<Shared>, Extension(peer): Extension<Peer>, method: Method, headers: HeaderMap) -> Result<Response, ApiError> {
    let who = authenticate(&gw, &peer, &method, &headers).await?.user;
    if gw.store.direct() {
        return super::direct::start(&gw, &who).await;
    }
    let id = gw.uploads.start(Incoming::new(&gw, &who)?);
    Ok((StatusCode::CREATED, Json(json!({ "uploadId": id, "maxPartBytes": MAX_PART }))).into_response())
}

/// `PUT /v1/uploads/{id}?offset=N`: the next bytes; `offset` must be the
/// number of bytes received so far (a retried part gets 409 with
/// `received`). A part that breaks off is rolled back, to be sent again.
pub async fn upload_part(
    State(gw): State<Shared>,
    Extension(peer): Extension<Peer>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let who = authenticate(&gw, &peer, &method, &headers).await?.user;
    if gw.store.direct() {
        return Err(incoming::not_here());
    }
    let offset = query_param(req.uri().query(), "offset").and_then(|o| o.parse::<u64>().ok());
    let mut stream = req.into_body().into_data_stream();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(gw.config.request_timeout_seconds.max(1));
    let stall = Duration::from_secs(gw.config.upload_stall_seconds.max(1));
    // Refused before a byte is stored: the rest of an authenticated
    // caller's part is read and dropped (never kept), so that the client
    // gets the answer (a retry needs the 409's `received`).
    let early = match (offset, declared_length(&headers)) {
        (None, _) => Err(err(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "offset: the number of bytes sent so far, as ?offset=N")),
        (_, Some(len)) if len > MAX_PART => Err(err(StatusCode::PAYLOAD_TOO_LARGE, "TOO_LARGE", format!("parts are limited to {MAX_PART} bytes"))),
        (Some(offset), _) => gw.uploads.take(&id, &who).map_err(|(s, m)| err(s, "UPLOAD", m)).map(|o| (offset, o)),
    };
    let (offset, mut object) = match early {
        Ok(x) => x,
        Err(e) => {
            drain(&mut stream, deadline, stall, MAX_PART).await;
            return Err(e);
        }
    };
    if offset != object.size() {
        let received = object.size();
        gw.uploads.put_back(&id, object);
        drain(&mut stream, deadline, stall, MAX_PART).await;
        return Ok((StatusCode::CONFLICT, Json(json!({ "error": "OFFSET_MISMATCH", "message": "the part does not continue the upload", "received": received }))).into_response());
    }
    let mark = object.mark();
    match receive_part(&gw, &mut object, &mut stream, deadline, stall).await {
        Ok(()) => {
            object.settle();
            let received = object.size();
            gw.uploads.put_back(&id, object);
            Ok(Json(json!({ "received": received })).into_response())
        }
        // The body broke off or stalled: what came of it is forgotten.
        Err(e) if e.code() == "UPLOAD_FAILED" || e.code() == "TIMEOUT" => {
            if object.rollback(mark).is_ok() {
                gw.uploads.put_back(&id, object);
            } else {
                gw.uploads.forget(&id);
            }
            Err(e)
        }
        Err(e) => {
            gw.uploads.forget(&id); // the upload ends here, and its file with it
            drain(&mut stream, deadline, stall, MAX_PART).await;
            Err(e)
        }
    }
}

async fn receive_part(gw: &Gateway, object: &mut Incoming, stream: &mut axum::body::BodyDataStream, deadline: tokio::time::Instant, stall: Duration) -> Result<(), ApiError> {
    let mut part = 0u64;
    while let Some(chunk) = next_chunk(stream, deadline, stall).await? {
        part += chunk.len() as u64;
        if part > MAX_PART {
            return Err(err(StatusCode::PAYLOAD_TOO_LARGE, "TOO_LARGE", format!("parts are limited to {MAX_PART} bytes")));
        }
        object.push(gw, &chunk).await?;
    }
    Ok(())
}

/// `POST /v1/uploads/{id}/complete` → 201 and the object, as `POST /v1/objects`.
pub async fn upload_complete(State(gw): State<Shared>, Extension(peer): Extension<Peer>, method: Method, headers: HeaderMap, Path(id): Path<String>, req: Request) -> Result<Response, ApiError> {
    let who = authenticate(&gw, &peer, &method, &headers).await?.user;
    if gw.store.direct() {
        return super::direct::complete(&gw, &who, &id, &headers, req).await;
    }
    let object = gw.uploads.end(&id, &who).map_err(|(s, m)| err(s, "UPLOAD", m))?;
    let o = object.commit(&gw).await?;
    Ok((StatusCode::CREATED, Json(object_json(&o))).into_response())
}

/// `DELETE /v1/uploads/{id}`: cancels (a part still being received ends it
/// when it ends); nothing of it remains.
pub async fn upload_cancel(State(gw): State<Shared>, Extension(peer): Extension<Peer>, method: Method, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, ApiError> {
    let who = authenticate(&gw, &peer, &method, &headers).await?.user;
    if gw.store.direct() {
        return super::direct::cancel(&gw, &who, &id).await;
    }
    gw.uploads.cancel(&id, &who).map_err(|(s, m)| err(s, "UPLOAD", m))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
