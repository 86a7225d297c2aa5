//! The audit log: one JSON line per data-key decision (time, user, object,
//! key ARN, decision, reason). Never key material.
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

pub struct AuditLog {
    file: Mutex<File>,
    queue: Mutex<Queue>,
    synced: Condvar,
    /// Decisions so far: [allowed, denied].
    pub counts: [std::sync::atomic::AtomicU64; 2],
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
        Ok(AuditLog { file: Mutex::new(f), queue: Mutex::default(), synced: Condvar::new(), counts: Default::default() })
    }

    pub fn record(&self, user: Option<&str>, object: Option<&str>, key_arn: Option<&str>, allowed: bool, reason: &str) {
        let line = json!({
            "time": crate::localkms::now_rfc3339(),
            "user": user,
            "object": object,
            "keyArn": key_arn,
            "decision": if allowed { "allow" } else { "deny" },
            "reason": reason,
        });
        self.counts[usize::from(!allowed)].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
                        log.record(Some("u"), Some(&format!("o-{t}-{i}")), None, i % 2 == 0, "test");
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
}
