//! An object being received: bytes go through a buffer to a temporary file
//! in `incoming/`; the envelope header is checked as soon as it is complete
//! (under the limits decryption applies: at most 10 data keys, a header of
//! at most 1 MiB; an `aws-kms-rsa` data key for an allowed key; the uploader
//! as the context's owner; an id the uploader has not used); `commit`
//! syncs, links into place and then records the row. Dropped before
//! `commit`, it leaves nothing behind. Each holds an upload slot.
//!
//! The header is parsed again only once the buffered prefix has doubled
//! since the last attempt (and once more at the end), so a header fed a
//! byte at a time costs work linear in its size, not quadratic. And since
//! every chunk of a body costs the HTTP stack a few microseconds whatever
//! its size, a body in pathologically small chunks (past 4096 chunks, under
//! 64 bytes a chunk on average) is refused: CPU per upload stays
//! proportional to its bytes.
//!
//! Used by the one-request upload (`POST /v1/objects`) and by the
//! chunked upload (`/v1/uploads`, for browsers that cannot stream a request
//! body over HTTP/1.1).

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use axum::http::StatusCode;

use super::admission::{check_header, conflict, Checked};
use super::meta::{Kind, Object};
use super::errors::{err, ApiError};
use super::slots::{Full, Slot};
use super::storage::LinkError;
use super::Gateway;

pub struct Incoming {
    who: String,
    tmp: Option<PathBuf>,
    file: Option<BufWriter<std::fs::File>>,
    prefix: Vec<u8>,
    probe: Probe,
    checked: Option<Checked>,
    chunks: u64,
    size: u64,
    max: u64,
    _slot: Slot,
}

pub struct Mark {
    size: u64,
    checked: bool,
    probe: Probe,
}

/// Chunks a body may have before their average size is looked at.
const FRAGMENTED_AFTER: u64 = 4096;
/// Smallest average chunk, in bytes, past `FRAGMENTED_AFTER` chunks.
const MIN_AVERAGE_CHUNK: u64 = 64;

/// When to parse a header that is still incomplete: at the first bytes,
/// then each time the buffered prefix has doubled (a parse costs time
/// linear in the prefix, so all attempts together cost at most twice the
/// header), and at the limit, where the attempt refuses.
#[derive(Clone, Copy, Default)]
struct Probe {
    next: usize,
}

impl Probe {
    fn due(&mut self, len: usize) -> bool {
        if len < self.next {
            return false;
        }
        self.next = len.saturating_mul(2).min(kms_envelope::DecryptLimits::default().max_header_length + 1);
        true
    }
}

impl Incoming {
    pub fn new(gw: &Gateway, who: &str) -> Result<Incoming, ApiError> {
        let local = gw.local.as_ref().ok_or_else(not_here)?;
        gw.uploads.sweep();
        let slot = gw.upload_slots.take(who).map_err(Full::answer)?;
        let (tmp, file) = local.staging_file().map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, "STORAGE", e.to_string()))?;
        Ok(Incoming {
            who: who.to_owned(),
            tmp: Some(tmp),
            file: Some(BufWriter::with_capacity(256 << 10, file)),
            prefix: Vec::new(),
            probe: Probe::default(),
            checked: None,
            chunks: 0,
            size: 0,
            max: gw.config.max_object_bytes,
            _slot: slot,
        })
    }

    pub fn user(&self) -> &str {
        &self.who
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends bytes; checks the header once it is complete.
    pub async fn push(&mut self, gw: &Gateway, chunk: &[u8]) -> Result<(), ApiError> {
        self.size += chunk.len() as u64;
        self.chunks += 1;
        if self.size > self.max {
            return Err(too_large(self.max));
        }
        if self.chunks > FRAGMENTED_AFTER && self.size < self.chunks * MIN_AVERAGE_CHUNK {
            return Err(err(StatusCode::BAD_REQUEST, "TOO_FRAGMENTED", format!("send the body in chunks of {MIN_AVERAGE_CHUNK} bytes or more")));
        }
        if self.checked.is_none() {
            self.prefix.extend_from_slice(chunk);
            if self.probe.due(self.prefix.len()) {
                self.try_check(gw).await?;
            }
        }
        let f = self.file.as_mut().ok_or_else(|| err(StatusCode::INTERNAL_SERVER_ERROR, "STORAGE", "closed"))?;
        f.write_all(chunk).map_err(storage_full)
    }

    async fn try_check(&mut self, gw: &Gateway) -> Result<(), ApiError> {
        self.checked = check_header(gw, &self.who, &self.prefix, None).await?;
        Ok(())
    }

    /// Frees the header's bytes once it is checked (they are kept until
    /// then so that a part can be rolled back).
    pub fn settle(&mut self) {
        if self.checked.is_some() && !self.prefix.is_empty() {
            self.prefix = Vec::new();
        }
    }

    /// Where the upload stands, to roll back to if a part breaks off.
    pub fn mark(&self) -> Mark {
        Mark { size: self.size, checked: self.checked.is_some(), probe: self.probe }
    }

    /// Forgets every byte since `m` (a part that broke off: the client
    /// sends it again at the same offset), header check included.
    pub fn rollback(&mut self, m: Mark) -> Result<(), ApiError> {
        use std::io::{Seek, SeekFrom};
        let f = self.file.as_mut().ok_or_else(|| err(StatusCode::INTERNAL_SERVER_ERROR, "STORAGE", "closed"))?;
        f.flush().map_err(storage_full)?;
        let file = f.get_mut();
        file.set_len(m.size).and_then(|_| file.seek(SeekFrom::Start(m.size))).map_err(storage_full)?;
        if !m.checked {
            self.checked = None;
            self.prefix.truncate(m.size as usize);
        }
        self.size = m.size;
        self.probe = m.probe;
        Ok(())
    }

    /// Makes the object durable and visible: flush and fsync, link into
    /// place, directory fsync, then the metadata row.
    pub async fn commit(mut self, gw: &Gateway) -> Result<Object, ApiError> {
        if self.checked.is_none() {
            self.try_check(gw).await?;
        }
        let c = self.checked.take().ok_or_else(|| err(StatusCode::BAD_REQUEST, "INVALID_MESSAGE", "the upload ends inside the header"))?;
        let file = self.file.take().ok_or_else(|| err(StatusCode::INTERNAL_SERVER_ERROR, "STORAGE", "closed"))?;
        let file = file.into_inner().map_err(|e| storage_full(e.into_error()))?;
        file.sync_all().map_err(storage_full)?;
        drop(file);
        let local = gw.local.as_ref().ok_or_else(not_here)?;
        let tmp = self.tmp.take().expect("temporary file");
        local.link(&tmp, &self.who, &c.id).map_err(|e| match e {
            LinkError::Exists => conflict(),
            LinkError::Io(e) => storage_full(e),
        })?;
        let o = Object {
            id: c.id,
            owner: self.who.clone(),
            key_arn: c.arn,
            size: self.size,
            created: crate::localkms::now(),
            file_name: c.file_name,
            shared_with: vec![],
        };
        if let Err(e) = gw.db.insert(&o).await {
            let _ = std::fs::remove_file(local.blob_path(&o.owner, &o.id));
            return Err(if e.kind == Kind::Conflict { conflict() } else { e.into() });
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

fn storage_full(e: std::io::Error) -> ApiError {
    err(StatusCode::INSUFFICIENT_STORAGE, "STORAGE", e.to_string())
}

/// An upload through the gateway, when objects are kept in S3.
pub fn not_here() -> ApiError {
    err(
        StatusCode::CONFLICT,
        "DIRECT_UPLOAD",
        "this gateway keeps objects in S3 and carries no file bytes: POST /v1/uploads, PUT the parts to the URLs of POST /v1/uploads/ID/parts, then complete",
    )
}

pub fn too_large(max: u64) -> ApiError {
    err(StatusCode::PAYLOAD_TOO_LARGE, "TOO_LARGE", format!("objects are limited to {max} bytes"))
}

#[cfg(test)]
mod tests {
    use super::Probe;

    #[test]
    fn a_header_fed_a_byte_at_a_time_is_parsed_a_logarithmic_number_of_times() {
        let mut p = Probe::default();
        let (mut attempts, mut work) = (0, 0usize);
        for len in 1..=65_536 {
            if p.due(len) {
                attempts += 1;
                work += len;
            }
        }
        assert_eq!(attempts, 17, "at 1, 2, 4, … 65536 bytes");
        assert!(work < 2 * 65_536, "{work} bytes parsed in all");
        // Past the 1 MiB header limit the next attempt is the one that refuses.
        let mut p = Probe::default();
        assert!(p.due(700 << 10));
        assert!(!p.due(1 << 20));
        assert!(p.due((1 << 20) + 1));
    }
}
