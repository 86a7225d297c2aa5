//! Input and output. A file output is written to a temporary file in the
//! same directory, synced, and renamed over the target only on success; on
//! failure the temporary file is removed and the target is untouched.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use kms_envelope::{Error, ErrorCode};
use tempfile::NamedTempFile;

pub fn io_err(what: &str, e: io::Error) -> Error {
    Error::new(ErrorCode::Io, format!("{what}: {e}"))
}

pub fn open_input(path: &str) -> Result<Box<dyn Read>, Error> {
    if path == "-" {
        return Ok(Box::new(io::stdin().lock()));
    }
    let f = File::open(path).map_err(|e| io_err(&format!("cannot open {path}"), e))?;
    Ok(Box::new(f))
}

pub enum Output {
    Stdout(io::StdoutLock<'static>),
    File { tmp: NamedTempFile, target: String },
}

impl Output {
    pub fn create(path: &str) -> Result<Output, Error> {
        if path == "-" {
            return Ok(Output::Stdout(io::stdout().lock()));
        }
        let target = Path::new(path);
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".kms-envelope-")
            .suffix(".partial")
            .tempfile_in(dir)
            .map_err(|e| io_err(&format!("cannot create a file in {}", dir.display()), e))?;
        Ok(Output::File { tmp, target: path.to_owned() })
    }

    pub fn write(&mut self, data: &[u8]) -> Result<(), Error> {
        match self {
            Output::Stdout(s) => s.write_all(data).map_err(|e| io_err("cannot write to stdout", e)),
            Output::File { tmp, target } => tmp.write_all(data).map_err(|e| io_err(&format!("cannot write {target}"), e)),
        }
    }

    /// Makes the output visible: flush, fsync and rename.
    pub fn commit(self) -> Result<(), Error> {
        match self {
            Output::Stdout(mut s) => s.flush().map_err(|e| io_err("cannot write to stdout", e)),
            Output::File { tmp, target } => {
                tmp.as_file().sync_all().map_err(|e| io_err(&format!("cannot sync {target}"), e))?;
                tmp.persist(&target).map_err(|e| io_err(&format!("cannot rename into {target}"), e.error))?;
                Ok(())
            }
        }
    }
}
