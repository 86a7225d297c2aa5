//! An object being received: bytes go to a temporary file in `incoming/`;
//! the envelope header is checked as soon as it is complete (an
//! `aws-kms-rsa` data key for an allowed key, the uploader as the context's
//! owner, a fresh object id); `commit` syncs, renames into place and then
//! records the row. Dropped before `commit`, it leaves nothing behind.
//!
//! Used by the one-request upload (`POST /v1/objects`) and by the
//! chunked upload (`/v1/uploads`, for browsers that cannot stream a request
//! body over HTTP/1.1).

use std::io::Write;
use std::path::PathBuf;

use axum::http::StatusCode;

use super::db::Object;
use super::routes::{err, ApiError};
use super::Gateway;
use kms_envelope_server::api::valid_object_id;

pub struct Incoming {
    who: String,
    tmp: Option<PathBuf>,
    file: Option<std::fs::File>,
    prefix: Vec<u8>,
    checked: Option<Checked>,
    size: u64,
    max: u64,
}

struct Checked {
    id: String,
    arn: String,
    file_name: Option<String>,
}

impl Incoming {
    pub fn new(gw: &Gateway, who: &str) -> Result<Incoming, ApiError> {
        let tmp = gw.objects_dir.join("incoming").join(uuid::Uuid::new_v4().to_string());
        let file = std::fs::File::create(&tmp).map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, "STORAGE", e.to_string()))?;
        Ok(Incoming { who: who.to_owned(), tmp: Some(tmp), file: Some(file), prefix: Vec::new(), checked: None, size: 0, max: gw.config.max_object_bytes })
    }

    pub fn user(&self) -> &str {
        &self.who
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends bytes; checks the header once it is complete.
    pub fn push(&mut self, gw: &Gateway, chunk: &[u8]) -> Result<(), ApiError> {
        self.size += chunk.len() as u64;
        if self.size > self.max {
            return Err(too_large(self.max));
        }
        if self.checked.is_none() {
            self.prefix.extend_from_slice(chunk);
            self.checked = check_header(gw, &self.who, &self.prefix)?;
            if self.checked.is_none() && self.prefix.len() > 1 << 20 {
                return Err(err(StatusCode::BAD_REQUEST, "INVALID_MESSAGE", "header over 1 MiB"));
            }
            if self.checked.is_some() {
                self.prefix = Vec::new();
            }
        }
        let f = self.file.as_mut().ok_or_else(|| err(StatusCode::INTERNAL_SERVER_ERROR, "STORAGE", "closed"))?;
        f.write_all(chunk).map_err(|e| err(StatusCode::INSUFFICIENT_STORAGE, "STORAGE", e.to_string()))
    }

    /// Makes the object durable and visible: fsync, rename, directory
    /// fsync, then the metadata row.
    pub fn commit(mut self, gw: &Gateway) -> Result<Object, ApiError> {
        let c = self.checked.take().ok_or_else(|| err(StatusCode::BAD_REQUEST, "INVALID_MESSAGE", "the upload ends inside the header"))?;
        let file = self.file.take().ok_or_else(|| err(StatusCode::INTERNAL_SERVER_ERROR, "STORAGE", "closed"))?;
        file.sync_all().map_err(|e| err(StatusCode::INSUFFICIENT_STORAGE, "STORAGE", e.to_string()))?;
        drop(file);
        let dest = gw.blob_path(&c.id);
        // A hard link never replaces an existing file: of two uploads of one
        // id racing here, exactly one gets the name (a rename would let the
        // loser overwrite the winner's acknowledged blob).
        let tmp = self.tmp.take().expect("temporary file");
        if let Err(e) = std::fs::hard_link(&tmp, &dest) {
            let _ = std::fs::remove_file(&tmp);
            return Err(match e.kind() {
                std::io::ErrorKind::AlreadyExists => conflict(),
                _ => err(StatusCode::INSUFFICIENT_STORAGE, "STORAGE", e.to_string()),
            });
        }
        let _ = std::fs::remove_file(&tmp);
        if let Ok(d) = std::fs::File::open(&gw.objects_dir) {
            let _ = d.sync_all();
        }
        let o = Object {
            id: c.id,
            owner: self.who.clone(),
            key_arn: c.arn,
            size: self.size,
            created: crate::localkms::now(),
            file_name: c.file_name,
            shared_with: vec![],
        };
        if let Err(e) = gw.db.insert(&o) {
            let _ = std::fs::remove_file(&dest);
            return Err(err(StatusCode::CONFLICT, "CONFLICT", format!("cannot record the object: {e}")));
        }
        tracing::info!(object = %o.id, owner = %o.owner, size = o.size, "stored");
        Ok(o)
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if let Some(p) = self.tmp.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

pub fn too_large(max: u64) -> ApiError {
    err(StatusCode::PAYLOAD_TOO_LARGE, "TOO_LARGE", format!("objects are limited to {max} bytes"))
}

fn conflict() -> ApiError {
    err(StatusCode::CONFLICT, "CONFLICT", "an object with this id exists")
}

/// The header's checks: a KMS RSA data key for an allowed key, and a context
/// whose owner is the uploader and whose object id is fresh.
fn check_header(gw: &Gateway, who: &str, prefix: &[u8]) -> Result<Option<Checked>, ApiError> {
    let bad = |m: String| err(StatusCode::BAD_REQUEST, "INVALID_MESSAGE", m);
    let (h, _) = match kms_envelope::parse_header(prefix) {
        Ok(x) => x,
        Err(e) if e.code() == kms_envelope::ErrorCode::Truncated => return Ok(None),
        Err(e) => return Err(bad(format!("not an envelope: {e}"))),
    };
    let arn = h
        .encrypted_data_keys
        .iter()
        .filter(|e| e.provider_id == "aws-kms-rsa")
        .filter_map(|e| std::str::from_utf8(&e.provider_info).ok())
        .find(|a| gw.key_allowed(a))
        .ok_or_else(|| bad("no aws-kms-rsa data key for this gateway's KMS key".into()))?
        .to_owned();
    let ctx = &h.encryption_context;
    if ctx.get("owner").map(String::as_str) != Some(who) {
        return Err(err(StatusCode::FORBIDDEN, "FORBIDDEN", "the encryption context's owner must be the uploader"));
    }
    let id = ctx.get("object").ok_or_else(|| bad("the encryption context has no object id".into()))?;
    if !valid_object_id(id) {
        return Err(bad("object id: use 1 to 64 letters, digits, '-' or '_'".into()));
    }
    if gw.db.exists(id) {
        return Err(conflict());
    }
    Ok(Some(Checked { id: id.clone(), arn, file_name: ctx.get("file").cloned() }))
}
