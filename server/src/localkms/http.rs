//! The AWS KMS JSON protocol (awsJson1_1) over HTTP: `POST /` with
//! `X-Amz-Target: TrentService.<Operation>`; errors as
//! `{"__type": "<Exception>", "message": "…"}`. Requests are not
//! authenticated: the server binds to loopback only.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use super::{Fault, LocalKms};

const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

fn reply(status: StatusCode, body: Value, error: Option<&str>) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert("content-type", HeaderValue::from_static(CONTENT_TYPE));
    if let Some(e) = error.and_then(|e| HeaderValue::from_str(e).ok()) {
        r.headers_mut().insert("x-amzn-errortype", e);
    }
    r
}

fn fault(f: Fault) -> Response {
    let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::BAD_REQUEST);
    reply(status, json!({ "__type": f.name, "message": f.message }), Some(f.name))
}

async fn handle(State(kms): State<Arc<LocalKms>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(op) = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix("TrentService."))
        .map(str::to_owned)
    else {
        return fault(Fault { name: "UnknownOperationException", message: "missing X-Amz-Target".into(), status: 400 });
    };
    let req: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => return fault(Fault { name: "SerializationException", message: "the request body is not JSON".into(), status: 400 }),
        }
    };
    // RSA work is CPU-bound: keep it off the async workers.
    let r = tokio::task::spawn_blocking(move || {
        let r = kms.call(&op, &req);
        match &r {
            Ok(_) => tracing::debug!(op, "local KMS call"),
            Err(f) => tracing::info!(op, error = f.name, "local KMS call refused"),
        }
        r
    })
    .await;
    match r {
        Ok(Ok(v)) => reply(StatusCode::OK, v, None),
        Ok(Err(f)) => fault(f),
        Err(_) => fault(Fault::internal("the request failed")),
    }
}

/// Serves the local KMS on `addr` until the process ends; calls `ready`
/// with the bound address (port 0 picks a free one).
pub async fn serve(kms: Arc<LocalKms>, addr: SocketAddr, ready: impl FnOnce(SocketAddr)) -> std::io::Result<()> {
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the local KMS does not authenticate requests and listens on loopback addresses only",
        ));
    }
    let app = Router::new().route("/", post(handle)).layer(DefaultBodyLimit::max(64 * 1024)).with_state(kms);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    ready(listener.local_addr()?);
    axum::serve(listener, app).await
}
