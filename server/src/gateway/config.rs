//! `kms-envelope serve --config FILE` (TOML):
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! data_dir = "./kms-envelope-data"
//! key = "alias/files"               # the KMS key whose public key browsers get
//! # kms_endpoint = "https://kms.us-east-1.amazonaws.com"   # absent: the embedded local KMS
//! allowed_key_arns = []             # more keys uploads may use (e.g. before a rotation)
//! max_object_bytes = 1073741824
//! [[users]]
//! name = "alice"
//! token_sha256 = "…"                # hex SHA-256 of the user's bearer token
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub name: String,
    pub token_sha256: String,
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
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:8080".parse().expect("address")
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./kms-envelope-data")
}
fn default_max_object() -> u64 {
    1 << 30
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut c: Config = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if c.data_dir.is_relative() {
            if let Some(dir) = path.parent() {
                c.data_dir = dir.join(&c.data_dir);
            }
        }
        for u in &c.users {
            if u.token_sha256.len() != 64 || hex::decode(&u.token_sha256).is_err() {
                return Err(format!("user {}: token_sha256 must be 64 hex digits", u.name));
            }
            if !valid_name(&u.name) {
                return Err(format!("user name {:?}: use letters, digits, '.', '_' or '-'", u.name));
            }
        }
        Ok(c)
    }
}

pub fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
