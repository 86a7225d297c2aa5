//! Reading what a request carries, after it has been authenticated: small
//! JSON bodies (never before the caller is known, never past their limit),
//! query parameters, and the checks on their media type.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use http_body_util::BodyExt;

use super::errors::{err, ApiError};

/// Largest JSON request body.
pub const JSON_MAX: usize = 64 * 1024;

/// JSON endpoints take `application/json` only (no form or text bodies,
/// which a cross-site page can send without asking).
pub fn json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
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

/// Reads a body of at most `max` bytes (a declared `Content-Length` over it
/// is refused before anything is read).
pub async fn read_body(headers: &HeaderMap, body: Body, max: usize) -> Result<Bytes, ApiError> {
    let too_large = || err(StatusCode::PAYLOAD_TOO_LARGE, "TOO_LARGE", format!("request bodies here are limited to {max} bytes"));
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    match http_body_util::Limited::new(body, max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(_) => Err(err(StatusCode::BAD_REQUEST, "UPLOAD_FAILED", "the request body broke off")),
    }
}

/// A query parameter, if present (first occurrence), decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters() {
        assert_eq!(query_param(Some("offset=5&owner=al%69ce"), "owner").as_deref(), Some("alice"));
        assert_eq!(query_param(Some("owner=a&owner=b"), "owner").as_deref(), Some("a"));
        assert_eq!(query_param(Some("x=1"), "owner"), None);
        assert_eq!(query_param(None, "owner"), None);
    }
}
