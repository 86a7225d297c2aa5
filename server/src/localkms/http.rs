//! The AWS KMS JSON protocol (awsJson1_1): `POST /` with
//! `X-Amz-Target: TrentService.<Operation>`; errors as
//! `{"__type": "<Exception>", "message": "…"}`.
//!
//! [`dispatch`] answers one request and serves both transports: the
//! in-process connector the gateway uses (no socket at all) and the
//! loopback HTTP server of `kms-envelope local-kms`, which accepts only
//! SigV4-signed requests (see `auth`) that name a loopback host.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use super::auth::{self, Credentials};
use super::{Fault, LocalKms};

pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// One answer of the protocol.
pub struct Answer {
    pub status: u16,
    pub body: String,
    /// The exception name (`x-amzn-errortype`), for errors.
    pub error: Option<&'static str>,
}

impl From<Fault> for Answer {
    fn from(f: Fault) -> Answer {
        Answer { status: f.status, body: json!({ "__type": f.name, "message": f.message }).to_string(), error: Some(f.name) }
    }
}

/// Answers one request: `target` is the `X-Amz-Target` header. CPU-bound
/// (RSA): callers run it off the async workers.
pub fn dispatch(kms: &LocalKms, target: Option<&str>, body: &[u8]) -> Answer {
    let Some(op) = target.and_then(|t| t.strip_prefix("TrentService.")) else {
        return Fault { name: "UnknownOperationException", message: "missing X-Amz-Target".into(), status: 400 }.into();
    };
    let req: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => return Fault { name: "SerializationException", message: "the request body is not JSON".into(), status: 400 }.into(),
        }
    };
    match kms.call(op, &req) {
        Ok(v) => {
            tracing::debug!(op, "local KMS call");
            Answer { status: 200, body: v.to_string(), error: None }
        }
        Err(f) => {
            tracing::info!(op, error = f.name, "local KMS call refused");
            f.into()
        }
    }
}

fn reply(a: Answer) -> Response {
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = (status, a.body).into_response();
    r.headers_mut().insert("content-type", HeaderValue::from_static(CONTENT_TYPE));
    if let Some(e) = a.error.and_then(|e| HeaderValue::from_str(e).ok()) {
        r.headers_mut().insert("x-amzn-errortype", e);
    }
    r
}

struct Served {
    kms: Arc<LocalKms>,
    credentials: Credentials,
}

async fn handle(State(s): State<Arc<Served>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    // DNS rebinding: a page of another site that resolves its name to
    // 127.0.0.1 still sends its own name as Host.
    if !auth::loopback_host(&headers) {
        return reply(Fault { name: "AccessDeniedException", message: "the local KMS answers requests for a loopback host only".into(), status: 403 }.into());
    }
    if let Err(f) = auth::verify(&s.credentials, &s.kms.region, &method, &uri, &headers, &body, std::time::SystemTime::now()) {
        tracing::warn!(error = f.name, "local KMS request refused: not authenticated");
        return reply(f.into());
    }
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let kms = s.kms.clone();
    match tokio::task::spawn_blocking(move || dispatch(&kms, target.as_deref(), &body)).await {
        Ok(a) => reply(a),
        Err(_) => reply(Fault::internal("the request failed").into()),
    }
}

/// Serves the local KMS on `addr` (loopback only) until the process ends,
/// to requests signed with `credentials`; calls `ready` with the bound
/// address (port 0 picks a free one).
pub async fn serve(kms: Arc<LocalKms>, credentials: Credentials, addr: SocketAddr, ready: impl FnOnce(SocketAddr)) -> std::io::Result<()> {
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "the local KMS listens on loopback addresses only"));
    }
    let state = Arc::new(Served { kms, credentials });
    let app = Router::new().route("/", post(handle)).layer(DefaultBodyLimit::max(64 * 1024)).with_state(state);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    ready(listener.local_addr()?);
    axum::serve(listener, app).await
}
