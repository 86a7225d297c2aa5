//! The sweep, at startup and every `sweep_seconds`: nothing of an upload
//! that never completed stays in the object store.
//!
//! - A direct upload idle past `upload_idle_seconds` is aborted in the
//!   store (its parts freed), its blob deleted if a completion assembled
//!   one that never became an object, and its row removed.
//! - A multipart upload in the store under the gateway's prefix that the
//!   database does not know (a gateway stopped between starting it and
//!   recording it, or anything else) is aborted once it is older than
//!   `upload_idle_seconds` (a younger one may be being recorded now).
//! - Chunked uploads through the gateway that went idle are dropped, and
//!   expired web sessions forgotten.
//!
//! A store that does not answer leaves everything for the next round.

use std::collections::HashSet;
use std::time::Duration;

use super::Gateway;

/// What one round did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub expired: usize,
    pub orphans: usize,
}

pub async fn run(gw: &Gateway) -> Swept {
    gw.uploads.sweep();
    let mut swept = Swept::default();
    let now = crate::localkms::now();
    match gw.db.purge_sessions(now).await {
        Ok(n) if n > 0 => tracing::debug!(sessions = n, "expired sessions forgotten"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot forget expired sessions"),
    }
    let uploads = match gw.db.uploads().await {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list direct uploads");
            return swept;
        }
    };
    for u in uploads.into_iter().filter(|u| gw.upload_expired(u, now)) {
        let key = gw.store.key(&u.owner, &u.object_id);
        if let Err(f) = gw.store.abort_multipart(&key, &u.store_upload_id).await {
            tracing::warn!(upload = %u.id, error = %f.detail, "cannot abort an expired upload yet");
            continue;
        }
        match gw.db.exists(&u.owner, &u.object_id).await {
            Ok(false) if gw.store.delete(&u.owner, &u.object_id).await.is_err() => continue,
            Ok(_) => {}
            Err(_) => continue,
        }
        if gw.db.delete_upload(&u.id).await.unwrap_or(false) {
            tracing::info!(upload = %u.id, owner = %u.owner, "expired upload aborted");
            swept.expired += 1;
        }
    }
    if !gw.store.direct() {
        return swept;
    }
    let pending = match gw.store.list_multipart().await {
        Ok(p) => p,
        Err(f) => {
            tracing::warn!(error = %f.detail, "cannot list multipart uploads");
            return swept;
        }
    };
    // Read after the listing: an upload recorded meanwhile is in here.
    let Ok(uploads) = gw.db.uploads().await else { return swept };
    let known: HashSet<&str> = uploads.iter().map(|u| u.store_upload_id.as_str()).collect();
    let young = |p: &super::storage::Pending| p.initiated.is_some_and(|t| now - t < gw.config.upload_idle_seconds as f64);
    for p in pending.iter().filter(|p| !known.contains(p.upload_id.as_str()) && !young(p)) {
        match gw.store.abort_multipart(&p.key, &p.upload_id).await {
            Ok(()) => {
                tracing::warn!(key = %p.key, initiated = ?p.initiated, "aborted a multipart upload the gateway does not know");
                swept.orphans += 1;
            }
            Err(f) => tracing::warn!(key = %p.key, error = %f.detail, "cannot abort an unknown multipart upload yet"),
        }
    }
    swept
}

/// Sweeps now and then every `sweep_seconds`, for as long as the gateway runs.
pub fn spawn(gw: std::sync::Arc<Gateway>) {
    let every = Duration::from_secs(gw.config.sweep_seconds.max(1));
    tokio::spawn(async move {
        loop {
            let s = run(&gw).await;
            if s != Swept::default() {
                tracing::info!(expired = s.expired, orphans = s.orphans, "sweep");
            }
            tokio::time::sleep(every).await;
        }
    });
}
