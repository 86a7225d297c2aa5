//! The audit log: one JSON line per data-key decision (time, user, object,
//! key ARN, decision, reason). Never key material.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde_json::json;

pub struct AuditLog {
    file: Mutex<File>,
    /// Decisions so far: [allowed, denied].
    pub counts: [std::sync::atomic::AtomicU64; 2],
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
        Ok(AuditLog { file: Mutex::new(f), counts: Default::default() })
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
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if writeln!(f, "{line}").and_then(|_| f.sync_data()).is_err() {
            tracing::error!("cannot write the audit log");
        }
    }
}
