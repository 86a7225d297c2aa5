//! Where blobs live: the seam between the gateway and its object store.
//!
//! Two stores implement [`Storage`]: the local directory (`objects/OWNER/
//! ID.esdk`, the embedded default: the gateway carries every byte) and
//! Amazon S3 through the official `aws-sdk-s3` (browsers PUT encrypted parts
//! to presigned multipart URLs and GET ranges of presigned URLs: the
//! gateway only authorizes, reads headers back and records metadata).
//!
//! Errors are typed by what went wrong ([`Kind`], from the S3 error code,
//! never its message), so routes answer by kind.

mod local;
mod s3;

use std::time::Duration;

use axum::http::StatusCode;

pub use local::{LinkError, LocalDir};
pub use s3::{S3Config, S3Store};

use super::errors::{err, retry_after, ApiError};

/// What went wrong in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// No such blob.
    NotFound,
    /// No such multipart upload (completed, aborted or never started).
    NoSuchUpload,
    /// A multipart completion named parts the store does not have (wrong
    /// ETag, unknown part, parts out of order, a part too small).
    InvalidParts,
    /// The store did not answer, or answered that it is overloaded.
    Unavailable,
    /// The store refused the gateway's credentials.
    AccessDenied,
    /// The operation does not exist for this store.
    Unsupported,
    Other,
}

/// A failed store operation: its kind and a description for logs and
/// error messages (the operation and the store's error name; never a
/// presigned URL or a credential).
#[derive(Clone, Debug)]
pub struct Failure {
    pub kind: Kind,
    pub detail: String,
}

impl Failure {
    pub fn new(kind: Kind, detail: impl Into<String>) -> Failure {
        Failure { kind, detail: detail.into() }
    }
}

/// The API's answer to a store failure.
pub fn api_error(f: &Failure) -> ApiError {
    match f.kind {
        Kind::NotFound => err(StatusCode::NOT_FOUND, "NOT_FOUND", "no such object"),
        Kind::NoSuchUpload => err(StatusCode::NOT_FOUND, "UPLOAD", "no such upload (finished, cancelled or expired)"),
        Kind::InvalidParts => err(StatusCode::BAD_REQUEST, "INVALID_PARTS", format!("the parts do not match what was uploaded: {}", f.detail)),
        Kind::Unavailable => retry_after(StatusCode::SERVICE_UNAVAILABLE, "STORAGE_UNAVAILABLE", format!("object storage is unavailable: {}", f.detail), Duration::from_secs(5)),
        Kind::AccessDenied => err(StatusCode::BAD_GATEWAY, "STORAGE", format!("object storage refused the gateway: {}", f.detail)),
        Kind::Unsupported => err(StatusCode::CONFLICT, "NOT_DIRECT", f.detail.clone()),
        Kind::Other => err(StatusCode::BAD_GATEWAY, "STORAGE", f.detail.clone()),
    }
}

/// How a client reads a blob.
pub enum Access {
    /// The gateway serves it from this file.
    File(std::path::PathBuf),
    /// The client GETs (with `Range`) this presigned URL until it expires.
    Url(String),
}

/// A multipart upload the store holds, as listed for the sweep.
pub struct Pending {
    pub key: String,
    pub upload_id: String,
    /// Seconds since the Unix epoch, if the store says.
    pub initiated: Option<f64>,
}

/// A part as the store lists it.
pub struct Part {
    pub number: i32,
    pub size: u64,
    pub etag: String,
}

/// An object store. Blobs are named by owner and object id.
#[async_trait::async_trait]
pub trait Storage: Send + Sync {
    /// Whether clients transfer bytes with the store themselves
    /// (presigned URLs) rather than through the gateway.
    fn direct(&self) -> bool;

    /// The origin (scheme://host[:port]) browsers reach the store at, for
    /// the web app's Content-Security-Policy; none when the gateway serves.
    fn origin(&self) -> Option<&str>;

    /// Whether the store answers (startup and readiness).
    async fn check(&self) -> Result<(), Failure>;

    /// The store's key of a blob (for the sweep's bookkeeping).
    fn key(&self, owner: &str, id: &str) -> String;

    /// Bytes `start..start+len` of a blob (fewer at its end), and its size.
    async fn read_range(&self, owner: &str, id: &str, start: u64, len: u64) -> Result<(Vec<u8>, u64), Failure>;

    /// Removes a blob; removing one that is not there succeeds.
    async fn delete(&self, owner: &str, id: &str) -> Result<(), Failure>;

    /// How clients read a blob, for `expires`.
    async fn access(&self, owner: &str, id: &str, expires: Duration) -> Result<Access, Failure>;

    /// Starts a multipart upload of a blob: its upload id.
    async fn start_multipart(&self, owner: &str, id: &str) -> Result<String, Failure>;

    /// A presigned URL that PUTs part `number` (1-based) of the upload.
    async fn presign_part(&self, owner: &str, id: &str, upload: &str, number: i32, expires: Duration) -> Result<String, Failure>;

    /// The parts the store has received, by number.
    async fn list_parts(&self, owner: &str, id: &str, upload: &str) -> Result<Vec<Part>, Failure>;

    /// Assembles the blob from its parts (number, ETag), in order.
    async fn complete_multipart(&self, owner: &str, id: &str, upload: &str, parts: &[(i32, String)]) -> Result<(), Failure>;

    /// Ends an upload and frees its parts; an upload already gone succeeds.
    async fn abort_multipart(&self, key: &str, upload: &str) -> Result<(), Failure>;

    /// Every multipart upload in progress under the gateway's prefix.
    async fn list_multipart(&self) -> Result<Vec<Pending>, Failure>;
}
