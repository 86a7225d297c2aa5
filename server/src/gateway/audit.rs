//! The audit trail: one record per data-key decision about an
//! authenticated caller (time, instance, user, owner, object, key ARN,
//! decision, reason) and per grant or revocation of a share (`event`:
//! `share` / `unshare`, `target`), in the metadata database, where every
//! instance writes and `kms-envelope audit` reads. Never key material.
//! Every field is cut to [`FIELD_MAX`] bytes, so a request cannot write
//! more than a bounded record. With `audit_stdout`, each committed record
//! is also a JSON line on standard output, for a log shipper.
//!
//! Refusals that carry no identity (no valid credential, plain HTTP from
//! off the machine) and rate-limited requests are counted ([`Refusals`],
//! served at `/v1/metrics`) instead of written one by one: a flood of them
//! must not turn into a flood of commits.
//!
//! A decision returns only once its record is committed, so no key is
//! released unrecorded; a record that cannot be written fails the request
//! (503 from the database's error) and releases nothing. Concurrent
//! decisions share one commit (group commit): one writer task takes every
//! record queued while the previous batch was committing, writes them in
//! one transaction and answers each. The writer runs on its own, so a
//! request given up by its client cannot cut a batch short.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::json;

use super::meta::{self, AuditRecord, Metadata};

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
    pub unauthenticated: AtomicU64,
    pub auth_throttled: AtomicU64,
    pub rate_limited: AtomicU64,
    pub tls_required: AtomicU64,
}

/// How many records one transaction takes at most.
const BATCH_MAX: usize = 512;

type Reply = tokio::sync::oneshot::Sender<meta::Result<()>>;

pub struct AuditLog {
    queue: tokio::sync::mpsc::Sender<(AuditRecord, Reply)>,
    instance: String,
    /// Decisions so far: [allowed, denied].
    pub counts: [AtomicU64; 2],
    pub refusals: Refusals,
}

impl AuditLog {
    /// Starts the writer (on the current Tokio runtime): records go to `db`,
    /// and to standard output as JSON lines if `stdout`.
    pub fn start(db: Arc<dyn Metadata>, instance: String, stdout: bool) -> AuditLog {
        let (queue, rx) = tokio::sync::mpsc::channel(4 * BATCH_MAX);
        tokio::spawn(writer(db, stdout, rx));
        AuditLog { queue, instance, counts: Default::default(), refusals: Refusals::default() }
    }

    /// A data-key decision for an authenticated caller; returns once committed.
    pub async fn record(&self, user: &str, owner: Option<&str>, object: Option<&str>, key_arn: Option<&str>, allowed: bool, reason: &str) -> meta::Result<()> {
        let b = |v: Option<&str>| v.map(|s| bounded(s).into_owned());
        let r = AuditRecord {
            event: "decision".into(),
            user: bounded(user).into_owned(),
            owner: b(owner),
            object: b(object),
            key_arn: b(key_arn),
            decision: Some(if allowed { "allow" } else { "deny" }.into()),
            reason: b(Some(reason)),
            ..self.blank()
        };
        self.write(r).await?;
        self.counts[usize::from(!allowed)].fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// A share granted (`share`) or revoked (`unshare`) by `user`.
    pub async fn event(&self, user: &str, owner: &str, object: &str, event: &str, target: &str) -> meta::Result<()> {
        let b = |s: &str| Some(bounded(s).into_owned());
        let r = AuditRecord { event: event.into(), user: bounded(user).into_owned(), owner: b(owner), object: b(object), target: b(target), ..self.blank() };
        self.write(r).await
    }

    fn blank(&self) -> AuditRecord {
        AuditRecord { at: crate::localkms::now(), instance: self.instance.clone(), ..AuditRecord::default() }
    }

    async fn write(&self, r: AuditRecord) -> meta::Result<()> {
        let stopped = || meta::Error::new(meta::Kind::Unavailable, "the audit writer has stopped");
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.queue.send((r, reply)).await.map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

/// Commits what is queued, a batch at a time, and answers each record's caller.
async fn writer(db: Arc<dyn Metadata>, stdout: bool, mut rx: tokio::sync::mpsc::Receiver<(AuditRecord, Reply)>) {
    let mut batch = Vec::with_capacity(BATCH_MAX);
    while rx.recv_many(&mut batch, BATCH_MAX).await > 0 {
        let (records, replies): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        let result = db.append_audit(&records).await;
        match &result {
            Ok(()) if stdout => print_lines(&records),
            Ok(()) => {}
            Err(e) => tracing::error!(error = %e.detail, records = records.len(), "cannot write audit records: their requests fail"),
        }
        for reply in replies {
            let _ = reply.send(result.clone());
        }
    }
}

fn print_lines(records: &[AuditRecord]) {
    let mut out = std::io::stdout().lock();
    for r in records {
        let _ = writeln!(out, "{}", json(r));
    }
    let _ = out.flush();
}

/// A record as today's JSON line: decisions with `keyArn`, `decision` and
/// `reason`; share events with `event` and `target`.
pub fn json(r: &AuditRecord) -> serde_json::Value {
    let mut v = json!({
        "time": crate::localkms::rfc3339(r.at),
        "instance": r.instance,
        "user": r.user,
        "owner": r.owner,
        "object": r.object,
    });
    if r.event == "decision" {
        v["keyArn"] = json!(r.key_arn);
        v["decision"] = json!(r.decision);
        v["reason"] = json!(r.reason);
    } else {
        v["event"] = json!(r.event);
        v["target"] = json!(r.target);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::meta::{AuditQuery, Sqlite};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    }

    async fn all(db: &dyn Metadata) -> Vec<AuditRecord> {
        db.audit(&AuditQuery { limit: 100_000, ..Default::default() }).await.unwrap()
    }

    #[test]
    fn concurrent_decisions_are_all_recorded_whole() {
        let d = tempfile::tempdir().unwrap();
        let db: Arc<dyn Metadata> = Arc::new(Sqlite::open(&d.path().join("g.sqlite3")).unwrap());
        runtime().block_on(async {
            let log = Arc::new(AuditLog::start(db.clone(), "test-1".into(), false));
            let tasks: Vec<_> = (0..16)
                .map(|t| {
                    let (log, db) = (log.clone(), db.clone());
                    tokio::spawn(async move {
                        for i in 0..50 {
                            let object = format!("o-{t}-{i}");
                            log.record("u", Some("u"), Some(&object), None, i % 2 == 0, "test").await.unwrap();
                            // Returned: the record is committed.
                            let q = AuditQuery { object: Some(object), limit: 10, ..Default::default() };
                            assert_eq!(db.audit(&q).await.unwrap().len(), 1);
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            let records = all(&*db).await;
            assert_eq!(records.len(), 800);
            let objects: std::collections::BTreeSet<_> = records.iter().map(|r| r.object.clone().unwrap()).collect();
            assert_eq!(objects.len(), 800);
            assert!(records.iter().all(|r| r.instance == "test-1" && r.event == "decision"));
            assert_eq!(records.iter().filter(|r| r.decision.as_deref() == Some("allow")).count(), 400);
            assert_eq!(log.counts[0].load(Ordering::Relaxed), 400);
        });
    }

    #[test]
    fn fields_are_bounded() {
        let d = tempfile::tempdir().unwrap();
        let db: Arc<dyn Metadata> = Arc::new(Sqlite::open(&d.path().join("g.sqlite3")).unwrap());
        runtime().block_on(async {
            let log = AuditLog::start(db.clone(), "i".into(), false);
            let huge = "é".repeat(40_000);
            log.record(&huge, Some(&huge), Some(&huge), Some(&huge), false, &huge).await.unwrap();
            log.event(&huge, &huge, &huge, "share", &huge).await.unwrap();
            for r in all(&*db).await {
                let line = json(&r).to_string();
                assert!(line.len() < 8 * FIELD_MAX, "{} bytes", line.len());
                assert!(r.user.ends_with("…[80000 bytes]"));
            }
        });
        assert_eq!(bounded("short"), "short");
    }

    #[test]
    fn a_record_that_cannot_be_committed_fails_its_caller() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("g.sqlite3");
        let db: Arc<dyn Metadata> = Arc::new(Sqlite::open(&path).unwrap());
        runtime().block_on(async {
            let log = AuditLog::start(db.clone(), "i".into(), false);
            log.record("u", None, None, None, true, "ok").await.unwrap();
            // The table gone (as a database refusing writes would): the caller hears of it.
            rusqlite::Connection::open(&path).unwrap().execute_batch("DROP TABLE audit").unwrap();
            let e = log.record("u", None, None, None, true, "lost").await.unwrap_err();
            assert_eq!(e.kind, meta::Kind::Other, "{e}");
            assert_eq!(log.counts[0].load(Ordering::Relaxed), 1, "only the committed decision is counted");
        });
    }
}
