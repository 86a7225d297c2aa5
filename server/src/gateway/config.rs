//! `kms-envelope serve --config FILE` (TOML):
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! data_dir = "./kms-envelope-data"
//! key = "alias/files"               # the KMS key whose public key browsers get
//! # kms_endpoint = "https://kms.us-east-1.amazonaws.com"   # absent: the embedded local KMS
//! allowed_key_arns = []             # more keys uploads may use (e.g. before a rotation)
//! max_object_bytes = 1073741824
//! # tls_cert = "cert.pem"          # PEM chain and key: serve HTTPS (HSTS on)
//! # tls_key = "key.pem"
//! # dev_tls = true                  # a self-signed localhost certificate instead
//! decrypt_rate_per_second = 10      # per user, on average
//! decrypt_burst = 50                # per user, at once
//! session_hours = 12                # web login lifetime
//! kms_cache_seconds = 60            # reuse a KMS Decrypt answer this long (0: never)
//! kms_cache_entries = 10000
//! # web_dir = "www/dist"            # the web app, served at /
//! # public_origin = "https://files.example.com"   # the origin browsers use (default: the listen address)
//! # trusted_proxies = ["127.0.0.1"] # reverse proxies whose X-Forwarded-For/-Proto are believed
//! max_uploads_per_user = 8          # uploads in progress at once, both upload paths together
//! max_uploads = 256                 # for everybody together
//! max_connections = 1024            # open client connections
//! idle_timeout_seconds = 60         # a connection that moves no byte this long is closed
//! auth_failures_per_minute = 10     # failed sign-ins / tokens per (user, address), after a burst of 10
//! # storage = "s3"                  # blobs in Amazon S3 (default "local": data_dir/objects)
//! # s3_bucket = "acme-files"
//! # s3_prefix = "files/"            # keys are PREFIX OWNER/ID.esdk
//! # s3_endpoint = "http://127.0.0.1:9000"   # an S3-compatible endpoint (emulators)
//! # s3_region = "eu-west-1"         # default: the standard region chain
//! # s3_path_style = true            # endpoint/bucket/key addressing
//! # part_bytes = 16777216           # direct uploads: size of every part but the last (5 MiB to 5 GiB)
//! # presign_seconds = 300           # lifetime of presigned part and download URLs
//! # upload_idle_seconds = 600       # a direct upload with no activity this long is aborted
//! # sweep_seconds = 60              # how often expired and unknown multipart uploads are aborted
//! # database_url = "postgres://gateway:…@db.internal:5432/files?sslmode=require"   # absent: SQLite in data_dir
//! # database_ca = "rds-global-bundle.pem"   # the database server's CA: TLS, verified (needed for sslmode=require)
//! # database_pool = 16              # connections per instance
//! # instance_name = "gw-1"         # in audit records (default: host name and listen port)
//! audit_stdout = false              # also print each audit record as a JSON line on stdout
//! drain_seconds = 0                 # on SIGTERM: answer /readyz 503 this long, still serving, before closing
//! shutdown_grace_seconds = 30       # then: requests in flight get this long to finish
//! [[users]]                        # static bearer tokens: the demo, service accounts
//! name = "alice"
//! token_sha256 = "…"                # hex SHA-256 of the user's bearer token
//! [oidc]                            # bearer tokens (JWTs) from an OpenID provider
//! issuer = "https://login.example.com/"   # exactly as the discovery document says
//! audience = "https://files.example.com"  # the `aud` tokens must carry
//! user_claim = "sub"                # the claim that names the user
//! clock_skew_seconds = 60           # leeway on exp and nbf
//! jwks_refresh_seconds = 30         # an unknown kid refetches the keys at most this often
//! jwks_max_age_seconds = 3600       # keys are refetched when older than this
//! # client_id = "…"                 # the web app's sign-in (authorization code + PKCE)
//! # scope = "openid"
//! # authorization_params = { audience = "https://files.example.com" }
//! # web_token = "access_token"      # or "id_token": the token the web app trades for a session
//! # display_name = "Example SSO"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub name: String,
    pub token_sha256: String,
}

/// An OpenID provider whose JWTs are bearer tokens (`[oidc]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    pub issuer: String,
    pub audience: String,
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    #[serde(default = "default_skew")]
    pub clock_skew_seconds: u64,
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_seconds: u64,
    #[serde(default = "default_jwks_max_age")]
    pub jwks_max_age_seconds: u64,
    /// The web app's client (public, PKCE); absent: no web sign-in.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default = "default_scope")]
    pub scope: String,
    /// Extra authorization request parameters (e.g. Auth0's `audience`).
    #[serde(default)]
    pub authorization_params: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub web_token: WebToken,
    #[serde(default)]
    pub display_name: Option<String>,
}

/// The token the web app presents to open a session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebToken {
    #[default]
    AccessToken,
    IdToken,
}

impl WebToken {
    pub fn as_str(self) -> &'static str {
        match self {
            WebToken::AccessToken => "access_token",
            WebToken::IdToken => "id_token",
        }
    }
}

fn default_user_claim() -> String {
    "sub".into()
}
fn default_skew() -> u64 {
    60
}
fn default_jwks_refresh() -> u64 {
    30
}
fn default_jwks_max_age() -> u64 {
    3600
}
fn default_scope() -> String {
    "openid".into()
}

/// A connection string that may hold a password: shown only as its scheme.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(pub String);

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = self.0.split_once("://").map(|(s, _)| s).unwrap_or("?");
        write!(f, "{scheme}://…")
    }
}

/// Where blobs are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// `data_dir/objects`: the gateway carries every byte.
    #[default]
    Local,
    /// Amazon S3 (or an S3-compatible service): browsers transfer bytes
    /// with presigned URLs.
    S3,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    pub key: String,
    #[serde(default)]
    pub kms_endpoint: Option<String>,
    #[serde(default)]
    pub kms_region: Option<String>,
    #[serde(default)]
    pub allowed_key_arns: Vec<String>,
    #[serde(default = "default_max_object")]
    pub max_object_bytes: u64,
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    #[serde(default)]
    pub dev_tls: bool,
    #[serde(default = "default_rate")]
    pub decrypt_rate_per_second: f64,
    #[serde(default = "default_burst")]
    pub decrypt_burst: u32,
    #[serde(default = "default_session_hours")]
    pub session_hours: u64,
    #[serde(default)]
    pub web_dir: Option<PathBuf>,
    #[serde(default = "default_cache_seconds")]
    pub kms_cache_seconds: u64,
    #[serde(default = "default_cache_entries")]
    pub kms_cache_entries: usize,
    /// Time a client gets to send its request headers (slowloris).
    #[serde(default = "default_header_timeout")]
    pub header_timeout_seconds: u64,
    /// Time limit of every request but streamed uploads and downloads.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: u64,
    /// A streamed upload that sends nothing for this long is dropped.
    #[serde(default = "default_upload_stall")]
    pub upload_stall_seconds: u64,
    /// Longest a streamed upload may take.
    #[serde(default = "default_upload_max")]
    pub upload_max_seconds: u64,
    /// The origin (scheme://host[:port]) browsers load the web app from;
    /// state changes authenticated by the session cookie must come from it.
    #[serde(default)]
    pub public_origin: Option<String>,
    /// Peers (reverse proxies on this machine or the network) whose
    /// `X-Forwarded-For` and `X-Forwarded-Proto` are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    #[serde(default = "default_uploads_per_user")]
    pub max_uploads_per_user: usize,
    #[serde(default = "default_uploads")]
    pub max_uploads: usize,
    #[serde(default = "default_connections")]
    pub max_connections: usize,
    /// A connection that sends and receives nothing this long is closed
    /// (also the time a new connection gets to send its first byte).
    #[serde(default = "default_idle")]
    pub idle_timeout_seconds: u64,
    /// Failed authentications allowed per (user, client address) per
    /// minute, after a burst of `auth_failure_burst`.
    #[serde(default = "default_auth_failures")]
    pub auth_failures_per_minute: f64,
    #[serde(default = "default_auth_burst")]
    pub auth_failure_burst: u32,
    #[serde(default)]
    pub storage: StorageKind,
    #[serde(default)]
    pub s3_bucket: Option<String>,
    #[serde(default)]
    pub s3_prefix: String,
    #[serde(default)]
    pub s3_endpoint: Option<String>,
    #[serde(default)]
    pub s3_region: Option<String>,
    #[serde(default)]
    pub s3_path_style: bool,
    /// Size of every part of a direct upload but the last.
    #[serde(default = "default_part_bytes")]
    pub part_bytes: u64,
    /// Lifetime of presigned URLs.
    #[serde(default = "default_presign")]
    pub presign_seconds: u64,
    /// A direct upload idle this long is aborted.
    #[serde(default = "default_upload_idle")]
    pub upload_idle_seconds: u64,
    #[serde(default = "default_sweep")]
    pub sweep_seconds: u64,
    /// On SIGTERM or SIGINT: how long the instance keeps serving while
    /// answering `/readyz` with 503 (so a load balancer takes it out first).
    #[serde(default)]
    pub drain_seconds: u64,
    /// Then: how long requests in flight get to finish before the process exits.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_seconds: u64,
    /// PostgreSQL for metadata (`postgres://…`), shared by every instance;
    /// absent: SQLite in `data_dir`. `KMS_ENVELOPE_DATABASE_URL` overrides it.
    #[serde(default)]
    pub database_url: Option<DatabaseUrl>,
    /// PEM file of the CA that signed the database server's certificate: TLS.
    #[serde(default)]
    pub database_ca: Option<PathBuf>,
    /// Most database connections this instance opens.
    #[serde(default = "default_database_pool")]
    pub database_pool: usize,
    /// This instance's name in audit records; default `HOST:PORT`
    /// (`HOST/pid-PID` when the port is picked at start).
    #[serde(default)]
    pub instance_name: Option<String>,
    /// Each committed audit record also as a JSON line on standard output.
    #[serde(default)]
    pub audit_stdout: bool,
    #[serde(default)]
    pub oidc: Option<OidcConfig>,
}

impl Config {
    /// Every default, on `data_dir`: for commands that only read a data
    /// directory (the demo's has no configuration file).
    pub fn defaults_in(data_dir: PathBuf) -> Config {
        let mut c: Config = toml::from_str("key = \"\"").expect("every field but key has a default");
        c.data_dir = data_dir;
        c
    }

    /// The name audit records give this instance.
    pub fn instance(&self) -> String {
        self.instance_name.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
            let host = if host.is_empty() { "gateway" } else { &host };
            match self.listen.port() {
                // A port picked at bind time: the process tells instances apart.
                0 => format!("{host}/pid-{}", std::process::id()),
                port => format!("{host}:{port}"),
            }
        })
    }
}

/// S3's smallest part (but the last) and largest part.
pub const MIN_PART: u64 = 5 << 20;
pub const MAX_PART: u64 = 5 << 30;
/// S3's most parts of one upload.
pub const MAX_PARTS: u64 = 10_000;

fn default_listen() -> SocketAddr {
    "127.0.0.1:8080".parse().expect("address")
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./kms-envelope-data")
}
fn default_max_object() -> u64 {
    1 << 30
}
fn default_rate() -> f64 {
    10.0
}
fn default_burst() -> u32 {
    50
}
fn default_session_hours() -> u64 {
    12
}
fn default_cache_seconds() -> u64 {
    60
}
fn default_header_timeout() -> u64 {
    20
}
fn default_request_timeout() -> u64 {
    30
}
fn default_upload_stall() -> u64 {
    30
}
fn default_upload_max() -> u64 {
    3600
}
fn default_uploads_per_user() -> usize {
    8
}
fn default_uploads() -> usize {
    256
}
fn default_connections() -> usize {
    1024
}
fn default_idle() -> u64 {
    60
}
fn default_auth_failures() -> f64 {
    10.0
}
fn default_auth_burst() -> u32 {
    10
}
fn default_part_bytes() -> u64 {
    16 << 20
}
fn default_presign() -> u64 {
    300
}
fn default_upload_idle() -> u64 {
    600
}
fn default_sweep() -> u64 {
    60
}
fn default_shutdown_grace() -> u64 {
    30
}
fn default_database_pool() -> usize {
    16
}
fn default_cache_entries() -> usize {
    10_000
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut c: Config = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(dir) = path.parent() {
            for p in [Some(&mut c.data_dir), c.tls_cert.as_mut(), c.tls_key.as_mut(), c.web_dir.as_mut(), c.database_ca.as_mut()].into_iter().flatten() {
                if p.is_relative() {
                    *p = dir.join(&*p);
                }
            }
        }
        for u in &c.users {
            if u.token_sha256.len() != 64 || hex::decode(&u.token_sha256).is_err() {
                return Err(format!("user {}: token_sha256 must be 64 hex digits", u.name));
            }
            if !valid_name(&u.name) {
                return Err(format!("user name {:?}: use letters, digits, '.', '_', '-' or '@', starting with a letter or digit (and not \"incoming\")", u.name));
            }
        }
        let mut names = std::collections::HashSet::new();
        if let Some(u) = c.users.iter().find(|u| !names.insert(&u.name)) {
            return Err(format!("user {} is configured twice", u.name));
        }
        c.check()?;
        Ok(c)
    }

    /// Checks what a file cannot express.
    pub fn check(&self) -> Result<(), String> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("tls_cert and tls_key go together".into());
        }
        if !self.decrypt_rate_per_second.is_finite() || self.decrypt_rate_per_second <= 0.0 || self.decrypt_burst == 0 {
            return Err("decrypt_rate_per_second and decrypt_burst must be positive".into());
        }
        if !self.auth_failures_per_minute.is_finite() || self.auth_failures_per_minute <= 0.0 || self.auth_failure_burst == 0 {
            return Err("auth_failures_per_minute and auth_failure_burst must be positive".into());
        }
        if self.max_uploads_per_user == 0 || self.max_uploads == 0 || self.max_connections == 0 || self.idle_timeout_seconds == 0 {
            return Err("max_uploads_per_user, max_uploads, max_connections and idle_timeout_seconds must be positive".into());
        }
        if self.storage == StorageKind::S3 && self.s3_bucket.as_deref().is_none_or(str::is_empty) {
            return Err("storage = \"s3\" needs s3_bucket".into());
        }
        if !(MIN_PART..=MAX_PART).contains(&self.part_bytes) {
            return Err(format!("part_bytes must be from {MIN_PART} to {MAX_PART} (S3's limits)"));
        }
        if self.max_object_bytes.div_ceil(self.part_bytes) > MAX_PARTS {
            return Err(format!("max_object_bytes / part_bytes must be at most {MAX_PARTS} parts: raise part_bytes"));
        }
        if self.presign_seconds == 0 || self.presign_seconds > 7 * 24 * 3600 || self.upload_idle_seconds == 0 || self.sweep_seconds == 0 {
            return Err("presign_seconds (at most 7 days), upload_idle_seconds and sweep_seconds must be positive".into());
        }
        if let Some(o) = &self.oidc {
            check_oidc(o)?;
        }
        if let Some(o) = &self.public_origin {
            super::origin::parse(o).ok_or_else(|| format!("public_origin {o:?}: write scheme://host[:port], e.g. https://files.example.com"))?;
        }
        Ok(())
    }

    /// Whether the gateway speaks HTTPS.
    pub fn tls(&self) -> bool {
        self.dev_tls || self.tls_cert.is_some()
    }
}

fn check_oidc(o: &OidcConfig) -> Result<(), String> {
    if !secure_url(&o.issuer) {
        return Err(format!("oidc.issuer {:?}: an https:// URL (http:// only on loopback)", o.issuer));
    }
    if o.audience.is_empty() || o.user_claim.is_empty() {
        return Err("oidc.audience and oidc.user_claim must not be empty".into());
    }
    if o.jwks_refresh_seconds == 0 || o.jwks_max_age_seconds < o.jwks_refresh_seconds || o.clock_skew_seconds > 300 {
        return Err("oidc: jwks_refresh_seconds positive, jwks_max_age_seconds at least that, clock_skew_seconds at most 300".into());
    }
    Ok(())
}

/// An `https://` URL, or `http://` to a loopback host (a provider on this
/// machine, as in tests): keys fetched in the clear from elsewhere could
/// be anyone's.
pub fn secure_url(url: &str) -> bool {
    if url.starts_with("https://") {
        return true;
    }
    let Some(rest) = url.strip_prefix("http://") else { return false };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    matches!(host, "localhost" | "[::1]") || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// A user name: 1 to 64 letters, digits, '.', '_', '-' or '@' (an e-mail
/// address from an OpenID provider), starting with a
/// letter or digit (it names the user's directory under `objects/`, so
/// never `.`, `..` or a hidden name) and not `incoming` (the directory of
/// uploads in progress).
pub fn valid_name(s: &str) -> bool {
    s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
        && s != "incoming"
}

#[cfg(test)]
mod tests {
    use super::{secure_url, valid_name};

    #[test]
    fn provider_urls_are_https_or_loopback() {
        for ok in ["https://login.example.com/", "http://127.0.0.1:9000", "http://localhost/realms/x", "http://[::1]:80/", "http://127.0.0.2"] {
            assert!(secure_url(ok), "{ok}");
        }
        for bad in ["http://login.example.com", "http://127.0.0.1.evil.com/", "http://localhost.evil.com:80", "ftp://127.0.0.1", "login.example.com", "http://10.0.0.1"] {
            assert!(!secure_url(bad), "{bad}");
        }
    }

    #[test]
    fn user_names_are_safe_directory_names() {
        for ok in ["alice", "bob.smith", "u_1", "9lives", "a-b", "carol@example.com"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", ".hidden", "-x", "incoming", "a/b", "a b", "é", "@x", "auth0|123", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
