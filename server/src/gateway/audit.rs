//! The audit log: one JSON line per data-key decision of an authenticated
//! caller (time, user, owner, object, key ARN, decision, reason) and per
//! grant or revocation of a share (`event`: `share` / `unshare`, `target`).
//! Never key material. Every field is cut to [`FIELD_MAX`] bytes, so a
//! request cannot write more than a bounded line.
//!
//! Refusals that carry no identity (no valid credential, plain HTTP from
//! off the machine) and rate-limited requests are counted ([`Refusals`],
//! served at `/v1/metrics`) instead of written and synced one by one: a
//! flood of them must not turn into a flood of disk syncs.
//!
//! A decision returns only once its line is on disk (fdatasync), so no key
//! is released unrecorded. Concurrent decisions share one sync (group
//! commit): whoever finds no sync running writes and syncs every line queued
//! so far, the others wait for it. The wait leaves the async worker thread to
//! other requests (`block_in_place`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Condvar, Mutex};

use serde_json::json;

/// Longest field written to the log or echoed in an error message, in bytes.
pub const FIELD_MAX: usize = 256;

/// `s`, cut at a character boundary to at most `max` bytes (over 32), with
/// a note of the length it had.
pub fn cut(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut end = max - 32;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[{} bytes]", &s[..end], s.len()).into()
}

/// `s` cut to [`FIELD_MAX`].
pub fn bounded(s: &str) -> std::borrow::Cow<'_, str> {
    cut(s, FIELD_MAX)
}

/// Requests refused before any decision, by reason.
#[derive(Default)]
pub struct Refusals {
    pub unauthenticated: std::sync::atomic::AtomicU64,
    pub auth_throttled: std::sync::atomic::AtomicU64,
    pub rate_limited: std::sync::atomic::AtomicU64,
    pub tls_required: std::sync::atomic::AtomicU64,
}

pub struct AuditLog {
    file: Mutex<File>,
    queue: Mutex<Queue>,
    synced: Condvar,
    /// Decisions so far: [allowed, denied].
    pub counts: [std::sync::atomic::AtomicU64; 2],
    pub refusals: Refusals,
}

#[derive(Default)]
struct Queue {
    lines: Vec<u8>,
    /// Lines queued so far, and how many of them are on disk.
    queued: u64,
    durable: u64,
    syncing: bool,
}

impl AuditLog {
    pub fn open(path: &Path) -> Result<AuditLog, String> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        Ok(AuditLog { file: Mutex::new(f), queue: Mutex::default(), synced: Condvar::new(), counts: Default::default(), refusals: Refusals::default() })
    }

    /// A data-key decision for an authenticated caller; returns once on disk.
    pub fn record(&self, user: &str, owner: Option<&str>, object: Option<&str>, key_arn: Option<&str>, allowed: bool, reason: &str) {
        let b = |v: Option<&str>| v.map(|s| bounded(s).into_owned());
        self.counts[usize::from(!allowed)].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.write(json!({
            "time": crate::localkms::now_rfc3339(),
            "user": bounded(user),
            "owner": b(owner),
            "object": b(object),
            "keyArn": b(key_arn),
            "decision": if allowed { "allow" } else { "deny" },
            "reason": bounded(reason),
        }));
    }

    /// A share granted (`share`) or revoked (`unshare`) by `user`.
    pub fn event(&self, user: &str, owner: &str, object: &str, event: &str, target: &str) {
        self.write(json!({
            "time": crate::localkms::now_rfc3339(),
            "event": event,
            "user": bounded(user),
            "owner": bounded(owner),
            "object": bounded(object),
            "target": bounded(target),
        }));
    }

    fn write(&self, line: serde_json::Value) {
        let mine = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(q.lines, "{line}");
            q.queued += 1;
            q.queued
        };
        let wait = || self.until_durable(mine);
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(wait),
            _ => wait(),
        }
    }

    fn until_durable(&self, mine: u64) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        while q.durable < mine {
            if q.syncing {
                q = self.synced.wait(q).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // This thread syncs everything queued so far.
            q.syncing = true;
            let lines = std::mem::take(&mut q.lines);
            let upto = q.queued;
            drop(q);
            let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
            if f.write_all(&lines).and_then(|_| f.sync_data()).is_err() {
                tracing::error!("cannot write the audit log");
            }
            drop(f);
            q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.syncing = false;
            q.durable = upto;
            self.synced.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_decisions_are_all_recorded_whole() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("audit.log");
        let log = std::sync::Arc::new(AuditLog::open(&path).unwrap());
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let (log, path) = (log.clone(), path.clone());
                std::thread::spawn(move || {
                    for i in 0..50 {
                        log.record("u", Some("u"), Some(&format!("o-{t}-{i}")), None, i % 2 == 0, "test");
                        // Returned: the line is in the file.
                        let text = std::fs::read_to_string(&path).unwrap();
                        assert!(text.contains(&format!("\"o-{t}-{i}\"")));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = std::fs::read_to_string(d.path().join("audit.log")).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 800);
        let objects: std::collections::BTreeSet<_> = lines.iter().map(|l| l["object"].as_str().unwrap().to_owned()).collect();
        assert_eq!(objects.len(), 800);
    }

    #[test]
    fn fields_are_bounded() {
        let d = tempfile::tempdir().unwrap();
        let log = AuditLog::open(&d.path().join("audit.log")).unwrap();
        let huge = "é".repeat(40_000);
        log.record(&huge, Some(&huge), Some(&huge), Some(&huge), false, &huge);
        log.event(&huge, &huge, &huge, "share", &huge);
        let text = std::fs::read_to_string(d.path().join("audit.log")).unwrap();
        for line in text.lines() {
            assert!(line.len() < 8 * FIELD_MAX, "{} bytes", line.len());
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(v["user"].as_str().unwrap().ends_with("…[80000 bytes]"));
        }
        assert_eq!(bounded("short"), "short");
    }
}
