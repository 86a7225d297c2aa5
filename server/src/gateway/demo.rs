//! `kms-envelope serve --demo`: everything a first run needs in one data
//! directory: a KMS key (`alias/files`, RSA_3072) in the embedded local KMS
//! and three users (alice, bob, carol) with random tokens, kept in
//! `demo-users.json` (0600) and printed at every start.

use std::path::Path;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::config::{Config, User};

pub const USERS: [&str; 3] = ["alice", "bob", "carol"];
const ALIAS: &str = "alias/files";

/// Prepares `data_dir` and returns the configuration and (user, token) logins.
pub fn prepare(data_dir: &Path, listen: std::net::SocketAddr) -> Result<(Config, Vec<(String, String)>), String> {
    std::fs::create_dir_all(data_dir).map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    let kms = crate::localkms::LocalKms::open(data_dir, "us-east-1")?;
    if kms.resolve(ALIAS).is_err() {
        let created = kms
            .call("CreateKey", &json!({ "KeySpec": "RSA_3072", "KeyUsage": "ENCRYPT_DECRYPT", "Description": "kms-envelope demo" }))
            .map_err(|e| e.to_string())?;
        let id = created["KeyMetadata"]["KeyId"].as_str().ok_or("CreateKey answered no key id")?.to_owned();
        kms.call("CreateAlias", &json!({ "AliasName": ALIAS, "TargetKeyId": id })).map_err(|e| e.to_string())?;
    }
    let path = data_dir.join("demo-users.json");
    let logins: Vec<(String, String)> = match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", path.display()))?,
        Err(_) => {
            let logins: Vec<(String, String)> = USERS.iter().map(|u| (u.to_string(), random_token())).collect();
            let bytes = serde_json::to_vec_pretty(&logins).map_err(|e| e.to_string())?;
            crate::localkms::write_atomic(&path, &bytes, 0o600).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            logins
        }
    };
    let users = logins.iter().map(|(name, token)| User { name: name.clone(), token_sha256: hex::encode(Sha256::digest(token.as_bytes())) }).collect();
    let text = format!("listen = \"{listen}\"\nkey = \"{ALIAS}\"\n");
    let mut config: Config = toml::from_str(&text).map_err(|e| e.to_string())?;
    config.data_dir = data_dir.to_owned();
    config.users = users;
    Ok((config, logins))
}

fn random_token() -> String {
    let mut b = [0u8; 24];
    SystemRandom::new().fill(&mut b).expect("system randomness");
    B64URL.encode(b)
}
