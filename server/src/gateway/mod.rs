//! The gateway (`kms-envelope serve`): hands out the KMS public key, stores
//! envelope blobs it cannot read, and is the backend Decrypt that gives a
//! data key only to someone entitled to the object the key belongs to.
//!
//! It never sees plaintext file content. For `decrypt-data-key` the
//! encryption context a caller claims is proven, not trusted: KMS returns
//! `SHA-384(context) ‖ data key`, and the digest must match the claim before
//! authorization on it means anything.

mod audit;
pub mod config;
mod db;
pub mod demo;
mod incoming;
mod kms_cache;
mod ratelimit;
mod routes;
mod session;
mod tls;
mod uploads;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use config::Config;
use db::Db;

use crate::kms_client::Kms;

/// Shared state of the running gateway.
pub struct Gateway {
    pub config: Config,
    pub kms: Kms,
    /// The configured key's ARN at start.
    pub key_arn: String,
    /// Every ARN the configured key (or alias) has resolved to.
    known_keys: Mutex<HashSet<String>>,
    pub db: Db,
    pub objects_dir: PathBuf,
    pub audit: audit::AuditLog,
    users: Vec<(String, [u8; 32])>,
    sessions: session::Sessions,
    decrypt_limit: ratelimit::RateLimiter,
    login_limit: ratelimit::RateLimiter,
    uploads: uploads::Uploads,
    kms_cache: kms_cache::KmsCache,
}

/// The key size, from the length of its DER SPKI.
pub fn key_spec(der: &[u8]) -> &'static str {
    match der.len() {
        n if n < 300 => "RSA_2048",
        n if n < 450 => "RSA_3072",
        _ => "RSA_4096",
    }
}

/// SHA-256 of the DER SPKI, in hex: what clients pin.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

impl Gateway {
    /// Opens storage, resolves the key through KMS and loads users.
    pub async fn open(config: Config, kms: Kms) -> Result<Arc<Gateway>, String> {
        let data = config.data_dir.clone();
        let objects_dir = data.join("objects");
        std::fs::create_dir_all(objects_dir.join("incoming")).map_err(|e| format!("cannot create {}: {e}", objects_dir.display()))?;
        let db = Db::open(&data.join("gateway.sqlite3"))?;
        // The key must be an RSA key for encryption; say so now rather than at the first upload.
        let (arn, spec, usage, state) = kms.describe(&config.key).await.map_err(|e| e.to_string())?;
        if !spec.starts_with("RSA_") || usage != "ENCRYPT_DECRYPT" {
            return Err(format!("{arn} is a {spec} key for {usage}: the gateway needs an RSA key for ENCRYPT_DECRYPT"));
        }
        if state != "Enabled" {
            tracing::warn!(key = %arn, state = %state, "the KMS key is not enabled: data keys cannot be released");
        }
        let (key_arn, _) = kms.public_key(&config.key).await.map_err(|e| e.to_string())?;
        let users = config
            .users
            .iter()
            .map(|u| {
                let mut h = [0u8; 32];
                h.copy_from_slice(&hex::decode(&u.token_sha256).unwrap_or_else(|_| vec![0; 32]));
                (u.name.clone(), h)
            })
            .collect();
        let audit = audit::AuditLog::open(&data.join("audit.log"))?;
        let sessions = session::Sessions::new(Duration::from_secs(config.session_hours.max(1) * 3600));
        let decrypt_limit = ratelimit::RateLimiter::new(config.decrypt_rate_per_second, config.decrypt_burst);
        let login_limit = ratelimit::RateLimiter::new(0.2, 10);
        let kms_cache = kms_cache::KmsCache::new(Duration::from_secs(config.kms_cache_seconds), config.kms_cache_entries);
        let known_keys = Mutex::new(HashSet::from([key_arn.clone()]));
        let g = Gateway { config, kms, key_arn, known_keys, db, objects_dir, audit, users, sessions, decrypt_limit, login_limit, uploads: Default::default(), kms_cache };
        g.recover();
        Ok(Arc::new(g))
    }

    /// After a crash: partial uploads and blobs without a row are not objects.
    fn recover(&self) {
        if let Ok(rd) = std::fs::read_dir(self.objects_dir.join("incoming")) {
            for e in rd.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let known: std::collections::HashSet<String> = self.db.all_ids().into_iter().collect();
        if let Ok(rd) = std::fs::read_dir(&self.objects_dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if let Some(id) = name.strip_suffix(".esdk") {
                    if !known.contains(id) {
                        tracing::warn!(object = id, "removing a blob with no metadata (interrupted upload)");
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
    }

    /// The user a bearer token belongs to (compared as SHA-256, in constant time).
    pub fn user_for_token(&self, token: &str) -> Option<&str> {
        let h: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (name, want) in &self.users {
            if bool::from(h.ct_eq(want)) {
                found = Some(name.as_str());
            }
        }
        found
    }

    /// Key ARNs an upload may be wrapped for: whatever the configured key
    /// has resolved to, and the configured extra keys.
    pub fn key_allowed(&self, arn: &str) -> bool {
        self.known_keys.lock().unwrap_or_else(|p| p.into_inner()).contains(arn) || self.config.allowed_key_arns.iter().any(|a| a == arn)
    }

    fn note_key(&self, arn: &str) {
        self.known_keys.lock().unwrap_or_else(|p| p.into_inner()).insert(arn.to_owned());
    }

    pub fn blob_path(&self, id: &str) -> PathBuf {
        self.objects_dir.join(format!("{id}.esdk"))
    }

}

pub use routes::router;

/// Runs the gateway until interrupted: the embedded local KMS on a loopback
/// port unless `kms_endpoint` names another KMS ("aws": the standard AWS
/// endpoint and credential chain), then the HTTP(S) API.
pub async fn serve(config: Config, banner: Vec<String>) -> Result<(), String> {
    let endpoint = match config.kms_endpoint.as_deref() {
        Some("aws") => None,
        Some(e) => Some(e.to_owned()),
        None => {
            let kms = crate::localkms::LocalKms::open(&config.data_dir, config.kms_region.as_deref().unwrap_or("us-east-1"))?;
            let (tx, rx) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                let r = crate::localkms::serve(kms, "127.0.0.1:0".parse().expect("address"), |a| {
                    let _ = tx.send(a);
                })
                .await;
                if let Err(e) = r {
                    tracing::error!("local KMS stopped: {e}");
                }
            });
            let addr = rx.await.map_err(|_| "the local KMS did not start".to_string())?;
            Some(format!("http://{addr}"))
        }
    };
    let kms = Kms::new(endpoint.as_deref(), config.kms_region.as_deref()).await;
    let listen = config.listen;
    let mut dev_cert = None;
    let tls = if config.dev_tls {
        let (cert, key, fp) = tls::dev_certificate(&config.data_dir)?;
        dev_cert = Some(format!("development certificate {} (SHA-256 {fp})", cert.display()));
        Some(tls::load(&cert, &key)?)
    } else {
        match (&config.tls_cert, &config.tls_key) {
            (Some(c), Some(k)) => Some(tls::load(c, k)?),
            _ => None,
        }
    };
    let gw = Gateway::open(config, kms).await?;
    let listener = std::net::TcpListener::bind(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    if tls.is_none() && !addr.ip().is_loopback() {
        tracing::warn!("serving plain HTTP on {addr}: data keys are refused to clients off this machine; configure TLS");
    }
    {
        use std::io::Write;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let host = if addr.ip().is_loopback() { format!("127.0.0.1:{}", addr.port()) } else { addr.to_string() };
        let kms_name = endpoint.as_deref().unwrap_or("AWS KMS");
        // A closed stdout must not stop the server.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "gateway listening on {scheme}://{host} (key {}, KMS {kms_name})", gw.key_arn);
        for line in dev_cert.iter().chain(&banner) {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
    let header_timeout = gw.config.header_timeout_seconds.max(1);
    let app = router(gw).into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        h.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    let r = match tls {
        Some(cfg) => {
            let mut server = axum_server::from_tcp_rustls(listener, axum_server::tls_rustls::RustlsConfig::from_config(cfg)).handle(handle);
            limit_headers(server.http_builder(), Duration::from_secs(header_timeout));
            server.serve(app).await
        }
        None => {
            let mut server = axum_server::from_tcp(listener).handle(handle);
            limit_headers(server.http_builder(), Duration::from_secs(header_timeout));
            server.serve(app).await
        }
    };
    r.map_err(|e| e.to_string())
}

/// A client gets `header_timeout_seconds` to send its request headers
/// (slowloris) and at most 100 headers.
fn limit_headers(b: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>, timeout: Duration) {
    b.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(timeout).max_headers(100);
    b.http2().timer(hyper_util::rt::TokioTimer::new()).max_concurrent_streams(100);
}
