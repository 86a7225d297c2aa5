//! The local directory: `objects/OWNER/ID.esdk`, uploads in progress in
//! `objects/incoming/`. Crash-safe: a blob is synced and hard-linked into
//! place before its row is recorded, and startup removes whatever has no
//! row. Every directory is 0700 and every blob 0600.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Access, Failure, Kind, Part, Pending, Storage};

pub struct LocalDir {
    dir: PathBuf,
}

/// Why a finished upload could not be linked into place.
pub enum LinkError {
    /// The owner already has a blob of this id.
    Exists,
    Io(std::io::Error),
}

fn unsupported() -> Failure {
    Failure::new(Kind::Unsupported, "this gateway stores objects itself: upload through it (POST /v1/objects or PUT /v1/uploads/ID)")
}

impl LocalDir {
    pub fn open(dir: PathBuf) -> Result<LocalDir, String> {
        for d in [&dir, &dir.join("incoming")] {
            crate::private_fs::private_dir(d)?;
        }
        Ok(LocalDir { dir })
    }

    /// A new file for an upload in progress.
    pub fn staging_file(&self) -> std::io::Result<(PathBuf, std::fs::File)> {
        let tmp = self.dir.join("incoming").join(uuid::Uuid::new_v4().to_string());
        let f = crate::private_fs::create_new(&tmp)?;
        Ok((tmp, f))
    }

    /// An owner's blobs (user names are plain file names).
    fn owner_dir(&self, owner: &str) -> PathBuf {
        self.dir.join(owner)
    }

    pub fn blob_path(&self, owner: &str, id: &str) -> PathBuf {
        self.owner_dir(owner).join(format!("{id}.esdk"))
    }

    /// Links a synced staging file into place as `owner`/`id`, then syncs
    /// the directory. A hard link never replaces an existing file: of two
    /// uploads of one id racing here, exactly one gets the name (a rename
    /// would let the loser overwrite the winner's acknowledged blob). The
    /// staging file is removed either way.
    pub fn link(&self, staged: &Path, owner: &str, id: &str) -> Result<(), LinkError> {
        let dir = self.owner_dir(owner);
        let done = crate::private_fs::private_dir(&dir)
            .map_err(|e| LinkError::Io(std::io::Error::other(e)))
            .and_then(|_| std::fs::hard_link(staged, self.blob_path(owner, id)).map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => LinkError::Exists,
                _ => LinkError::Io(e),
            }));
        let _ = std::fs::remove_file(staged);
        done?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// After a crash: partial uploads and blobs without a row are not
    /// objects. Blobs of the flat layout of version 0 (`objects/ID.esdk`)
    /// move into their owner's directory; every directory and blob is
    /// made owner-only.
    pub fn recover(&self, known: &HashSet<(String, String)>) -> Result<(), String> {
        if let Ok(rd) = std::fs::read_dir(self.dir.join("incoming")) {
            for e in rd.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let owner_of: HashMap<&str, &str> = known.iter().map(|(o, i)| (i.as_str(), o.as_str())).collect();
        let Ok(rd) = std::fs::read_dir(&self.dir) else { return Ok(()) };
        for e in rd.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if name == "incoming" {
                continue;
            }
            if let Some(id) = name.strip_suffix(".esdk") {
                self.recover_flat(&path, id, owner_of.get(id).copied())?;
                continue;
            }
            if path.is_dir() && crate::gateway::config::valid_name(&name) {
                self.recover_owner(&path, &name, known)?;
            }
        }
        Ok(())
    }

    fn recover_flat(&self, path: &Path, id: &str, owner: Option<&str>) -> Result<(), String> {
        match owner {
            Some(owner) => {
                crate::private_fs::private_dir(&self.owner_dir(owner))?;
                std::fs::rename(path, self.blob_path(owner, id)).map_err(|e| format!("cannot move {}: {e}", path.display()))?;
                crate::private_fs::tighten_if_present(&self.blob_path(owner, id), crate::private_fs::FILE_MODE)
            }
            None => {
                tracing::warn!(object = id, "removing a blob with no metadata (interrupted upload)");
                let _ = std::fs::remove_file(path);
                Ok(())
            }
        }
    }

    fn recover_owner(&self, path: &Path, owner: &str, known: &HashSet<(String, String)>) -> Result<(), String> {
        crate::private_fs::tighten_if_present(path, crate::private_fs::DIR_MODE)?;
        for b in std::fs::read_dir(path).map_err(|e| e.to_string())?.flatten() {
            let file = b.file_name().to_string_lossy().to_string();
            match file.strip_suffix(".esdk") {
                Some(id) if known.contains(&(owner.to_owned(), id.to_owned())) => {
                    crate::private_fs::tighten_if_present(&b.path(), crate::private_fs::FILE_MODE)?;
                }
                _ => {
                    tracing::warn!(owner = %owner, file = %file, "removing a blob with no metadata (interrupted upload)");
                    let _ = std::fs::remove_file(b.path());
                }
            }
        }
        Ok(())
    }
}

fn io_failure(op: &str, e: std::io::Error) -> Failure {
    match e.kind() {
        std::io::ErrorKind::NotFound => Failure::new(Kind::NotFound, format!("{op}: no such blob")),
        _ => Failure::new(Kind::Other, format!("{op}: {e}")),
    }
}

#[async_trait::async_trait]
impl Storage for LocalDir {
    fn direct(&self) -> bool {
        false
    }

    fn origin(&self) -> Option<&str> {
        None
    }

    async fn check(&self) -> Result<(), Failure> {
        let incoming = self.dir.join("incoming");
        match std::fs::metadata(&incoming) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(Failure::new(Kind::Unavailable, format!("{} is not a directory", incoming.display()))),
            Err(e) => Err(Failure::new(Kind::Unavailable, format!("{}: {e}", incoming.display()))),
        }
    }

    fn key(&self, owner: &str, id: &str) -> String {
        format!("{owner}/{id}.esdk")
    }

    async fn read_range(&self, owner: &str, id: &str, start: u64, len: u64) -> Result<(Vec<u8>, u64), Failure> {
        use std::io::{Seek, SeekFrom};
        let mut f = std::fs::File::open(self.blob_path(owner, id)).map_err(|e| io_failure("read", e))?;
        let size = f.metadata().map_err(|e| io_failure("read", e))?.len();
        let mut out = Vec::new();
        f.seek(SeekFrom::Start(start)).map_err(|e| io_failure("read", e))?;
        f.take(len).read_to_end(&mut out).map_err(|e| io_failure("read", e))?;
        Ok((out, size))
    }

    async fn delete(&self, owner: &str, id: &str) -> Result<(), Failure> {
        match std::fs::remove_file(self.blob_path(owner, id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_failure("delete", e)),
            _ => Ok(()),
        }
    }

    async fn access(&self, owner: &str, id: &str, _expires: Duration) -> Result<Access, Failure> {
        let path = self.blob_path(owner, id);
        if !path.exists() {
            return Err(Failure::new(Kind::NotFound, "no such blob"));
        }
        Ok(Access::File(path))
    }

    async fn start_multipart(&self, _: &str, _: &str) -> Result<String, Failure> {
        Err(unsupported())
    }

    async fn presign_part(&self, _: &str, _: &str, _: &str, _: i32, _: Duration) -> Result<String, Failure> {
        Err(unsupported())
    }

    async fn list_parts(&self, _: &str, _: &str, _: &str) -> Result<Vec<Part>, Failure> {
        Err(unsupported())
    }

    async fn complete_multipart(&self, _: &str, _: &str, _: &str, _: &[(i32, String)]) -> Result<(), Failure> {
        Err(unsupported())
    }

    async fn abort_multipart(&self, _: &str, _: &str) -> Result<(), Failure> {
        Err(unsupported())
    }

    async fn list_multipart(&self) -> Result<Vec<Pending>, Failure> {
        Ok(vec![])
    }
}
