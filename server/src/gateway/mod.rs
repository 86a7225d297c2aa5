//! The gateway (`kms-envelope serve`): hands out the KMS public key, stores
//! envelope blobs it cannot read, and is the backend Decrypt that gives a
//! data key only to someone entitled to the object the key belongs to.
//!
//! It never sees plaintext file content. For `decrypt-data-key` the
//! encryption context a caller claims is proven, not trusted: KMS returns
//! `SHA-384(context) ‖ data key`, and the digest must match the claim before
//! authorization on it means anything.

mod admission;
mod audit;
mod caller;
pub mod config;
mod data_key;
pub mod demo;
mod direct;
mod errors;
mod health;
mod incoming;
mod kms_cache;
mod listener;
mod meta;
mod objects;
mod oidc;
mod origin;
mod peer;
mod ratelimit;
mod request;
mod routes;
mod session;
mod slots;
mod storage;
mod sweep;
mod tls;
mod transfers;
mod uploads;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use audit::json as audit_json;
pub use config::Config;
pub use meta::{AuditQuery, AuditRecord};
use meta::Metadata;

use crate::kms_client::Kms;

/// Shared state of the running gateway.
pub struct Gateway {
    pub config: Config,
    pub kms: Kms,
    /// The configured key's ARN at start.
    pub key_arn: String,
    /// Every ARN the configured key (or alias) has resolved to.
    known_keys: Mutex<HashSet<String>>,
    /// Object metadata: SQLite in the data directory, or PostgreSQL.
    db: Arc<dyn Metadata>,
    /// Where blobs are kept.
    store: Arc<dyn storage::Storage>,
    /// The same store when it is the local directory (uploads through the gateway).
    local: Option<Arc<storage::LocalDir>>,
    pub audit: audit::AuditLog,
    users: Vec<(String, [u8; 32])>,
    /// The OpenID provider whose JWTs are bearer tokens, if configured.
    oidc: Option<oidc::Oidc>,
    sessions: session::Sessions,
    /// Data-key requests per user.
    decrypt_bucket: meta::Bucket,
    /// Failed authentication per (user, client address); see `caller`.
    auth_bucket: meta::Bucket,
    uploads: uploads::Uploads,
    upload_slots: slots::Slots,
    kms_cache: kms_cache::KmsCache,
    /// The web app's origins, known once the listener is bound.
    origins: OnceLock<Vec<String>>,
    /// Bytes moved on client connections.
    traffic: Arc<listener::Traffic>,
    /// Draining, and the last readiness check.
    readiness: health::Readiness,
}

/// The configured store: the local directory, or S3 (checked reachable).
async fn open_store(config: &Config) -> Result<(Arc<dyn storage::Storage>, Option<Arc<storage::LocalDir>>), String> {
    match config.storage {
        config::StorageKind::Local => {
            let local = Arc::new(storage::LocalDir::open(config.data_dir.join("objects"))?);
            Ok((local.clone(), Some(local)))
        }
        config::StorageKind::S3 => {
            let c = storage::S3Config {
                bucket: config.s3_bucket.clone().unwrap_or_default(),
                prefix: config.s3_prefix.clone(),
                endpoint: config.s3_endpoint.clone(),
                region: config.s3_region.clone(),
                path_style: config.s3_path_style,
            };
            let s3 = storage::S3Store::open(&c).await?;
            storage::Storage::check(&s3).await.map_err(|f| format!("S3 bucket {}: {}", c.bucket, f.detail))?;
            Ok((Arc::new(s3), None))
        }
    }
}

/// PostgreSQL's URL: `KMS_ENVELOPE_DATABASE_URL`, else `database_url`.
fn database_url(config: &Config) -> Option<String> {
    std::env::var("KMS_ENVELOPE_DATABASE_URL").ok().filter(|u| !u.is_empty()).or_else(|| config.database_url.as_ref().map(|u| u.0.clone()))
}

/// The configured metadata database: PostgreSQL when `database_url` (or
/// `KMS_ENVELOPE_DATABASE_URL`) is set, else SQLite in the data directory.
async fn open_metadata(config: &Config) -> Result<Arc<dyn Metadata>, String> {
    if let Some(url) = database_url(config) {
        let c = meta::PostgresConfig { url, ca: config.database_ca.clone(), pool: config.database_pool };
        return Ok(Arc::new(meta::Postgres::open(&c).await?));
    }
    let path = config.data_dir.join("gateway.sqlite3");
    if !path.exists() {
        // SQLite gives the WAL and SHM files the database file's mode.
        drop(crate::private_fs::create_new(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?);
    }
    Ok(Arc::new(meta::Sqlite::open(&path)?))
}

/// Reads audit records from the configured database (`kms-envelope audit`);
/// the embedded SQLite database must exist already.
pub async fn audit_records(config: &Config, q: &AuditQuery) -> Result<Vec<AuditRecord>, String> {
    let sqlite = config.data_dir.join("gateway.sqlite3");
    if database_url(config).is_none() && !sqlite.exists() {
        return Err(format!("no gateway database at {} (and no database_url)", sqlite.display()));
    }
    open_metadata(config).await?.audit(q).await.map_err(|e| e.detail)
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
        crate::private_fs::private_dir(&data)?;
        let (store, local) = open_store(&config).await?;
        // Files an older version (or another umask) left readable by others.
        for f in ["gateway.sqlite3", "gateway.sqlite3-wal", "gateway.sqlite3-shm", "audit.log", "demo-users.json"] {
            crate::private_fs::tighten_if_present(&data.join(f), crate::private_fs::FILE_MODE)?;
        }
        let db = open_metadata(&config).await?;
        // The key must be an RSA key for encryption; say so now rather than at the first upload.
        let (arn, spec, usage, state) = kms.describe(&config.key).await.map_err(|f| f.detail)?;
        if !spec.starts_with("RSA_") || usage != "ENCRYPT_DECRYPT" {
            return Err(format!("{arn} is a {spec} key for {usage}: the gateway needs an RSA key for ENCRYPT_DECRYPT"));
        }
        if state != "Enabled" {
            tracing::warn!(key = %arn, state = %state, "the KMS key is not enabled: data keys cannot be released");
        }
        let (key_arn, _) = kms.public_key(&config.key).await.map_err(|f| f.detail)?;
        let mut users = Vec::with_capacity(config.users.len());
        for u in &config.users {
            let mut h = [0u8; 32];
            let bytes = hex::decode(&u.token_sha256).ok().filter(|b| b.len() == 32).ok_or_else(|| format!("user {}: token_sha256 must be 64 hex digits", u.name))?;
            h.copy_from_slice(&bytes);
            if users.iter().any(|(_, other)| *other == h) {
                return Err(format!("user {} has the token_sha256 of another user: give each user a token of its own", u.name));
            }
            users.push((u.name.clone(), h));
        }
        let oidc = config.oidc.clone().map(oidc::Oidc::new).transpose()?;
        let audit = audit::AuditLog::start(db.clone(), config.instance(), config.audit_stdout);
        let sessions = session::Sessions::new(db.clone(), Duration::from_secs(config.session_hours.max(1) * 3600));
        let decrypt_bucket = meta::Bucket { rate: config.decrypt_rate_per_second.max(0.001), burst: f64::from(config.decrypt_burst.max(1)) };
        let auth_bucket = meta::Bucket { rate: (config.auth_failures_per_minute / 60.0).max(0.001), burst: f64::from(config.auth_failure_burst.max(1)) };
        let upload_slots = slots::Slots::new(config.max_uploads_per_user, config.max_uploads);
        let kms_cache = kms_cache::KmsCache::new(Duration::from_secs(config.kms_cache_seconds), config.kms_cache_entries);
        let known_keys = Mutex::new(HashSet::from([key_arn.clone()]));
        let g = Gateway {
            config,
            kms,
            key_arn,
            known_keys,
            db,
            store,
            local,
            audit,
            users,
            oidc,
            sessions,
            decrypt_bucket,
            auth_bucket,
            uploads: Default::default(),
            upload_slots,
            kms_cache,
            origins: OnceLock::new(),
            traffic: Arc::default(),
            readiness: Default::default(),
        };
        if let Some(local) = &g.local {
            let keys = g.db.all_keys().await.map_err(|e| format!("cannot list objects: {e}"))?;
            local.recover(&keys.into_iter().collect())?;
        }
        Ok(Arc::new(g))
    }

    /// The origins the web app may send state changes from.
    pub fn origins(&self) -> &[String] {
        self.origins.get().map(Vec::as_slice).unwrap_or(&[])
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

    /// Whether `name` can be a user: a configured one, or, with an OpenID
    /// provider, any valid name (its users are not listed anywhere; a
    /// share with a name no one signs in as gives nobody anything).
    pub fn may_be_user(&self, name: &str) -> bool {
        match self.oidc {
            Some(_) => config::valid_name(name),
            None => self.users.iter().any(|(u, _)| u == name),
        }
    }

    /// Key ARNs an upload may be wrapped for: whatever the configured key
    /// has resolved to, and the configured extra keys.
    pub fn key_allowed(&self, arn: &str) -> bool {
        self.known_keys.lock().unwrap_or_else(|p| p.into_inner()).contains(arn) || self.config.allowed_key_arns.iter().any(|a| a == arn)
    }

    /// Lifetime of presigned URLs.
    pub fn presign_lifetime(&self) -> Duration {
        Duration::from_secs(self.config.presign_seconds)
    }

    /// Spends one of `who`'s data-key requests (one budget across every
    /// instance sharing the database): `Err(wait)` when it is spent.
    pub async fn spend_data_key(&self, who: &str) -> Result<Result<(), Duration>, errors::ApiError> {
        self.db.take(&format!("decrypt:{who}"), self.decrypt_bucket, meta::Take::One).await.map_err(errors::ApiError::from)
    }

    /// The failed-authentication budget of `key`: looked at, or spent by one failure.
    pub async fn auth_throttle(&self, key: &str, take: meta::Take) -> Result<Result<(), Duration>, errors::ApiError> {
        self.db.take(&format!("auth:{key}"), self.auth_bucket, take).await.map_err(errors::ApiError::from)
    }

    fn note_key(&self, arn: &str) {
        self.known_keys.lock().unwrap_or_else(|p| p.into_inner()).insert(arn.to_owned());
    }

}

pub use routes::router;

/// Runs the gateway until interrupted: with the embedded local KMS (called
/// in process: it opens no port) unless `kms_endpoint` names another KMS
/// ("aws": the standard AWS endpoint and credential chain), then the
/// HTTP(S) API.
pub async fn serve(config: Config, banner: Vec<String>) -> Result<(), String> {
    let (kms, kms_name) = match config.kms_endpoint.as_deref() {
        Some("aws") => (Kms::new(None, config.kms_region.as_deref()).await, "AWS KMS".to_owned()),
        Some(e) => (Kms::new(Some(e), config.kms_region.as_deref()).await, e.to_owned()),
        None => {
            let local = crate::localkms::LocalKms::open(&config.data_dir, config.kms_region.as_deref().unwrap_or("us-east-1"))?;
            (Kms::embedded(local).await, "embedded, in process".to_owned())
        }
    };
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
        // A closed stdout must not stop the server.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "gateway listening on {scheme}://{host} (key {}, KMS {kms_name})", gw.key_arn);
        for line in dev_cert.iter().chain(&banner) {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
    sweep::spawn(gw.clone());
    let _ = gw.origins.set(origin::allowed(gw.config.public_origin.as_deref(), gw.config.tls(), addr));
    let header_timeout = Duration::from_secs(gw.config.header_timeout_seconds.max(1));
    let idle = Duration::from_secs(gw.config.idle_timeout_seconds.max(1));
    let guard = listener::Guarded::new(gw.config.max_connections, idle, gw.traffic.clone());
    let gw_for_signal = gw.clone();
    let app = router(gw).into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::new();
    tokio::spawn(shutdown_on_signal(gw_for_signal, handle.clone()));
    let r = match tls {
        Some(cfg) => {
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(axum_server::tls_rustls::RustlsConfig::from_config(cfg)).acceptor(guard);
            let mut server = axum_server::from_tcp(listener).acceptor(acceptor).handle(handle);
            listener::limit_protocols(server.http_builder(), header_timeout, idle);
            server.serve(app).await
        }
        None => {
            let mut server = axum_server::from_tcp(listener).acceptor(guard).handle(handle);
            listener::limit_protocols(server.http_builder(), header_timeout, idle);
            server.serve(app).await
        }
    };
    r.map_err(|e| e.to_string())
}

/// Waits for SIGTERM or SIGINT, then drains: `/readyz` answers 503 for
/// `drain_seconds` while every route keeps serving, then the listener
/// closes and requests in flight get `shutdown_grace_seconds` to finish.
/// A second signal ends the drain at once; a third, the grace.
async fn shutdown_on_signal(gw: Arc<Gateway>, handle: axum_server::Handle) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot listen for SIGTERM and SIGINT: the gateway stops only when killed");
        return;
    };
    async fn next(term: &mut tokio::signal::unix::Signal, int: &mut tokio::signal::unix::Signal) -> &'static str {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
    let first = next(&mut term, &mut int).await;
    gw.readiness.drain();
    let drain = Duration::from_secs(gw.config.drain_seconds);
    let grace = Duration::from_secs(gw.config.shutdown_grace_seconds);
    tracing::info!(signal = first, drain_seconds = drain.as_secs(), grace_seconds = grace.as_secs(), "draining: /readyz answers 503");
    tokio::select! {
        _ = tokio::time::sleep(drain) => {}
        s = next(&mut term, &mut int) => tracing::info!(signal = s, "second signal: ending the drain"),
    }
    tracing::info!(in_flight = handle.connection_count(), "closing the listener; requests in flight may finish");
    handle.graceful_shutdown(Some(grace));
    let s = next(&mut term, &mut int).await;
    tracing::warn!(signal = s, in_flight = handle.connection_count(), "another signal: closing every connection now");
    handle.shutdown();
}
