//! What a load balancer asks an instance:
//!
//! - `GET /healthz` (liveness): 200 while the process serves requests.
//! - `GET /readyz` (readiness): 200 when the database, the object store and
//!   KMS each answer within [`CHECK_TIMEOUT`]; 503 `NOT_READY` naming the
//!   parts that did not, and 503 `DRAINING` once the instance is shutting
//!   down (so the balancer stops sending before connections are refused).
//!
//! Both need no credential, so neither says more than which part failed
//! and how (`unreachable`, `timeout`): details (endpoints, bucket names,
//! error texts) go to the log. A check result is reused for
//! [`REUSE`], and concurrent probes share one check: an unauthenticated
//! flood of probes costs KMS and S3 at most one call each per second.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::Gateway;

/// How long each part may take to answer a readiness check.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a readiness result is reused.
const REUSE: Duration = Duration::from_secs(1);

/// How a part answered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Verdict {
    Ok,
    Unreachable,
    Timeout,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Unreachable => "unreachable",
            Verdict::Timeout => "timeout",
        }
    }
}

type Checks = [(&'static str, Verdict); 3];

/// Readiness state: draining, and the last check.
#[derive(Default)]
pub struct Readiness {
    draining: AtomicBool,
    last: tokio::sync::Mutex<Option<(Instant, Checks)>>,
}

impl Readiness {
    /// From now on the instance answers not ready.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

async fn timed<F>(part: &'static str, check: F) -> Verdict
where
    F: std::future::Future<Output = Result<(), String>>,
{
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(())) => Verdict::Ok,
        Ok(Err(detail)) => {
            tracing::warn!(part, %detail, "readiness check failed");
            Verdict::Unreachable
        }
        Err(_) => {
            tracing::warn!(part, timeout_ms = CHECK_TIMEOUT.as_millis() as u64, "readiness check timed out");
            Verdict::Timeout
        }
    }
}

/// Asks each part once, all at the same time.
async fn check(gw: &Gateway) -> Checks {
    let db = timed("database", async { gw.db.ping().await.map_err(|e| e.detail) });
    let store = timed("storage", async { gw.store.check().await.map_err(|f| f.detail) });
    let kms = timed("kms", async { gw.kms.describe(&gw.config.key).await.map(|_| ()).map_err(|f| f.detail) });
    let (db, store, kms) = tokio::join!(db, store, kms);
    [("database", db), ("storage", store), ("kms", kms)]
}

pub async fn healthz() -> Response {
    Json(json!({ "status": "alive" })).into_response()
}

pub async fn readyz(State(gw): State<Arc<Gateway>>) -> Response {
    if gw.readiness.draining() {
        return not_ready("DRAINING", "this instance is shutting down", None);
    }
    let checks = {
        let mut last = gw.readiness.last.lock().await;
        match *last {
            Some((at, checks)) if at.elapsed() < REUSE => checks,
            _ => {
                let checks = check(&gw).await;
                *last = Some((Instant::now(), checks));
                checks
            }
        }
    };
    let parts: Map<String, Value> = checks.iter().map(|(k, v)| ((*k).to_owned(), Value::from(v.as_str()))).collect();
    let failed: Vec<_> = checks.iter().filter(|(_, v)| *v != Verdict::Ok).map(|(k, v)| format!("{k} {}", v.as_str())).collect();
    if failed.is_empty() {
        Json(json!({ "status": "ready", "checks": parts })).into_response()
    } else {
        not_ready("NOT_READY", &format!("not ready: {}", failed.join(", ")), Some(parts))
    }
}

fn not_ready(code: &str, message: &str, checks: Option<Map<String, Value>>) -> Response {
    let mut body = json!({ "error": code, "message": message });
    if let Some(c) = checks {
        body["checks"] = Value::Object(c);
    }
    let mut r = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}
