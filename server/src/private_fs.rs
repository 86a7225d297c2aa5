//! Everything the gateway and the local KMS write is for the user running
//! them only: directories 0700, files 0600, whatever the umask.
//!
//! `restrict_umask` makes that the default for every file the process
//! creates (SQLite's database, WAL and SHM files included); the helpers here
//! set the modes explicitly as well, and tighten what an older version or
//! another tool left looser.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

pub const DIR_MODE: u32 = 0o700;
pub const FILE_MODE: u32 = 0o600;

/// From here on, files and directories this process creates get no group
/// or other permission bits.
pub fn restrict_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Creates `dir` (and missing parents) as 0700; an existing one with
/// group or other bits is tightened to 0700.
pub fn private_dir(dir: &Path) -> Result<(), String> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    tighten(dir, DIR_MODE).map_err(|e| format!("cannot restrict {} to its owner: {e}", dir.display()))
}

/// Removes group and other bits from `path` if it has any (symlinks are
/// not followed: a link is refused).
pub fn tighten(path: &Path, mode: u32) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "a symbolic link where a file of the data directory belongs"));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Tightens `path` if it exists.
pub fn tighten_if_present(path: &Path, mode: u32) -> Result<(), String> {
    match tighten(path, mode) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot restrict {} to its owner: {e}", path.display())),
    }
}

/// Opens a new file for writing, 0600, failing if it exists.
pub fn create_new(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new().write(true).create_new(true).mode(FILE_MODE).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_and_files_are_owner_only_and_loose_ones_are_tightened() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("a/b");
        private_dir(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        let f = dir.join("f");
        drop(create_new(&f).unwrap());
        assert_eq!(fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(create_new(&f).is_err(), "never replaces a file");
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        tighten(&f, FILE_MODE).unwrap();
        assert_eq!(fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o600);
        std::os::unix::fs::symlink(&f, dir.join("link")).unwrap();
        assert!(tighten(&dir.join("link"), FILE_MODE).is_err());
        assert!(tighten_if_present(&dir.join("absent"), FILE_MODE).is_ok());
    }
}
