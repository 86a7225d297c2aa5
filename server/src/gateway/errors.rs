//! The API's error answers: `{ "error": CODE, "message": … }` with a stable
//! code, `Retry-After` on 429 and 503, messages cut to [`MESSAGE_MAX`]
//! bytes (a request's own fields are never echoed whole), and the same
//! shape for what the HTTP stack itself refuses (unknown routes, wrong
//! methods, oversized or malformed requests), via [`json_errors`].

use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Longest message of an error answer, in bytes.
pub const MESSAGE_MAX: usize = 512;

pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry: Option<Duration>,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.code
    }
}

fn bounded(s: &str) -> String {
    super::audit::cut(s, MESSAGE_MAX).into_owned()
}

pub fn err(status: StatusCode, code: &'static str, message: impl AsRef<str>) -> ApiError {
    ApiError { status, code, message: bounded(message.as_ref()), retry: None }
}

/// A 429 or 503 that says when to come back.
pub fn retry_after(status: StatusCode, code: &'static str, message: impl AsRef<str>, wait: Duration) -> ApiError {
    ApiError { retry: Some(wait), ..err(status, code, message) }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(json!({ "error": self.code, "message": self.message }))).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS || self.status == StatusCode::SERVICE_UNAVAILABLE {
            let secs = self.retry.map(|d| d.as_secs_f64().ceil() as u64).unwrap_or(1).max(1);
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}

/// The code of an error the HTTP stack answered by itself.
fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => "INVALID_REQUEST",
        StatusCode::UNAUTHORIZED => "UNAUTHENTICATED",
        StatusCode::FORBIDDEN => "FORBIDDEN",
        StatusCode::NOT_FOUND => "NOT_FOUND",
        StatusCode::METHOD_NOT_ALLOWED => "METHOD_NOT_ALLOWED",
        StatusCode::REQUEST_TIMEOUT => "TIMEOUT",
        StatusCode::LENGTH_REQUIRED => "LENGTH_REQUIRED",
        StatusCode::PAYLOAD_TOO_LARGE => "TOO_LARGE",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "UNSUPPORTED_MEDIA_TYPE",
        StatusCode::RANGE_NOT_SATISFIABLE => "RANGE_NOT_SATISFIABLE",
        StatusCode::TOO_MANY_REQUESTS => "RATE_LIMITED",
        s if s.is_server_error() => "INTERNAL",
        _ => "INVALID_REQUEST",
    }
}

/// Gives error answers of `/v1/` that are not JSON yet (the framework's
/// plain-text rejections, empty 404/405s) the JSON error shape; headers
/// such as `Allow` and `Content-Range` stay.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/v1/");
    let r = next.run(req).await;
    let is_json = r.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
    if !api || is_json || !(r.status().is_client_error() || r.status().is_server_error()) {
        return r;
    }
    let (mut parts, body) = r.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let message = if text.trim().is_empty() { parts.status.canonical_reason().unwrap_or("refused").to_owned() } else { text };
    let body = json!({ "error": code_for(parts.status), "message": bounded(&message) }).to_string();
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}
