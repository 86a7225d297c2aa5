//! Object metadata: which blob belongs to whom, under which key, shared
//! with whom, and the direct uploads in progress. One seam, [`Metadata`],
//! and two databases behind it: SQLite in the data directory (the embedded
//! default, one gateway) and PostgreSQL (`database_url`, any number of
//! gateways sharing it).
//!
//! Object ids are unique per owner: an id names an object together with
//! its owner (the encryption context carries both), so no user can learn
//! that another user's id exists, or take an id before its owner uses it.
//! The database enforces that uniqueness (its primary key), not the
//! process: of two gateways recording one id, one gets [`Kind::Conflict`].
//!
//! Errors are typed by what went wrong ([`Kind`], from the database's error
//! code, never its message), so routes answer by kind.

mod postgres;
mod sqlite;
#[cfg(test)]
mod tests;

use std::time::Duration;

use axum::http::StatusCode;

pub use postgres::{Postgres, PostgresConfig};
pub use sqlite::Sqlite;

use super::errors::{err, retry_after, ApiError};

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Object {
    pub id: String,
    pub owner: String,
    pub key_arn: String,
    pub size: u64,
    pub created: f64,
    pub file_name: Option<String>,
    pub shared_with: Vec<String>,
}

/// A direct upload in progress: the object id it was issued, and the
/// store's multipart upload id.
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    pub id: String,
    pub owner: String,
    pub object_id: String,
    pub store_upload_id: String,
    pub part_bytes: u64,
    pub created: f64,
    pub touched: f64,
}

/// A web session as stored: the SHA-256 of its id (the id itself is only
/// in the browser's cookie), its user, CSRF token and expiry.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct SessionKey(pub [u8; 32]);

/// A token bucket: `rate` tokens a second, at most `burst`, one per request.
#[derive(Clone, Copy, Debug)]
pub struct Bucket {
    pub rate: f64,
    pub burst: f64,
}

/// What a bucket check does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Take {
    /// Spend a token if there is one.
    One,
    /// Look only: is there a token?
    Peek,
}

/// One audit record: a data-key decision about an authenticated caller
/// (`event` "decision", with the key, the decision and its reason), or a
/// share granted or revoked (`event` "share" / "unshare", with its target).
/// Never key material; fields come already bounded.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct AuditRecord {
    /// Assigned by the database as records are inserted; 0 until then.
    pub seq: i64,
    /// Seconds since the epoch, when the gateway decided.
    pub at: f64,
    /// The gateway instance that decided (`instance_name`).
    pub instance: String,
    pub event: String,
    pub user: String,
    pub owner: Option<String>,
    pub object: Option<String>,
    pub key_arn: Option<String>,
    /// "allow" or "deny", for decisions.
    pub decision: Option<String>,
    pub reason: Option<String>,
    /// Whom a share was granted to or revoked from.
    pub target: Option<String>,
}

/// Which audit records to read: from `since` (inclusive) to `until`
/// (exclusive), optionally one user's (as caller) or one object's, oldest
/// first, at most `limit`, after sequence number `after`.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub since: f64,
    pub until: Option<f64>,
    pub user: Option<String>,
    pub owner: Option<String>,
    pub object: Option<String>,
    pub after: i64,
    pub limit: usize,
}

/// What went wrong in the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A row with this key exists already (an object id taken, an upload recorded twice).
    Conflict,
    /// The database did not answer (down, unreachable, no free connection in time).
    Unavailable,
    Other,
}

/// A failed database operation: its kind, and a description for logs
/// (never a password or a connection string).
#[derive(Clone, Debug)]
pub struct Error {
    pub kind: Kind,
    pub detail: String,
}

impl Error {
    pub fn new(kind: Kind, detail: impl Into<String>) -> Error {
        Error { kind, detail: detail.into() }
    }
}

impl Error {
    /// The kind, for logs and audit records.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::Conflict => "conflict",
            Kind::Unavailable => "database unavailable",
            Kind::Other => "database error",
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// The API's answer to a database failure.
pub fn api_error(e: &Error) -> ApiError {
    match e.kind {
        Kind::Conflict => err(StatusCode::CONFLICT, "CONFLICT", "you already have an object with this id"),
        Kind::Unavailable => {
            tracing::warn!(error = %e.detail, "the database is unavailable");
            retry_after(StatusCode::SERVICE_UNAVAILABLE, "DATABASE_UNAVAILABLE", "the metadata database is unavailable: try again in a moment", Duration::from_secs(5))
        }
        Kind::Other => {
            tracing::error!(error = %e.detail, "database error");
            err(StatusCode::INTERNAL_SERVER_ERROR, "DATABASE", "the metadata database failed")
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        api_error(&e)
    }
}

/// Where metadata lives. Every method is one statement or one transaction.
#[async_trait::async_trait]
pub trait Metadata: Send + Sync {
    /// Whether the database answers (readiness).
    async fn ping(&self) -> Result<()>;

    /// Records an object; [`Kind::Conflict`] if the owner has one of this id.
    async fn insert(&self, o: &Object) -> Result<()>;

    async fn exists(&self, owner: &str, id: &str) -> Result<bool>;

    /// The object and who it is shared with.
    async fn get(&self, owner: &str, id: &str) -> Result<Option<Object>>;

    /// Objects the user owns or that are shared with them, newest first.
    async fn list_for(&self, user: &str) -> Result<Vec<Object>>;

    /// Every object as (owner, id).
    async fn all_keys(&self) -> Result<Vec<(String, String)>>;

    /// Removes the object (and its shares); whether it was there.
    async fn delete(&self, owner: &str, id: &str) -> Result<bool>;

    /// Shares the object with `user`; whether the share is new.
    async fn share(&self, owner: &str, id: &str, user: &str, now: f64) -> Result<bool>;

    /// Revokes `user`'s share; whether there was one.
    async fn unshare(&self, owner: &str, id: &str, user: &str) -> Result<bool>;

    /// The object's shares: (user, when granted), by user.
    async fn shares(&self, owner: &str, id: &str) -> Result<Vec<(String, f64)>>;

    /// Records a direct upload the store has started; [`Kind::Conflict`]
    /// if its id, or its object id for the owner, is taken.
    async fn insert_upload(&self, u: &Upload) -> Result<()>;

    async fn upload(&self, id: &str) -> Result<Option<Upload>>;

    /// Marks the upload active at `now` (idle ones expire).
    async fn touch_upload(&self, id: &str, now: f64) -> Result<()>;

    /// Forgets an upload; whether it was there (only one caller ends it).
    async fn delete_upload(&self, id: &str) -> Result<bool>;

    /// Every direct upload in progress, oldest first.
    async fn uploads(&self) -> Result<Vec<Upload>>;

    /// Direct uploads in progress: the owner's, and everybody's.
    async fn count_uploads(&self, owner: &str) -> Result<(usize, usize)>;

    /// Makes a direct upload an object, in one transaction: the object's
    /// row in, the upload's row out. `false` if the upload was ended
    /// meanwhile (cancelled, expired); [`Kind::Conflict`] if the id is taken.
    async fn finish_upload(&self, upload_id: &str, o: &Object) -> Result<bool>;

    /// Records a web session: (user, CSRF token), until `expires`.
    async fn create_session(&self, key: &SessionKey, user: &str, csrf: &str, expires: f64) -> Result<()>;

    /// A session's (user, CSRF token) if it is live at `now`.
    async fn session(&self, key: &SessionKey, now: f64) -> Result<Option<(String, String)>>;

    async fn delete_session(&self, key: &SessionKey) -> Result<()>;

    /// Forgets sessions expired at `now`: how many.
    async fn purge_sessions(&self, now: f64) -> Result<u64>;

    /// The token bucket `name` (one for every instance sharing the
    /// database): `Ok(Ok(()))` if the request may go on, `Ok(Err(wait))`
    /// when the bucket is empty.
    async fn take(&self, name: &str, bucket: Bucket, take: Take) -> Result<std::result::Result<(), Duration>>;

    /// Appends audit records in one transaction: all of them are durable
    /// when this returns `Ok`, none if it fails.
    async fn append_audit(&self, records: &[AuditRecord]) -> Result<()>;

    /// The audit records `q` selects, by sequence number.
    async fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>>;
}
