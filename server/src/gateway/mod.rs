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
mod routes;

use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use config::Config;
use db::Db;

use crate::kms_client::Kms;

/// Shared state of the running gateway.
pub struct Gateway {
    pub config: Config,
    pub kms: Kms,
    pub key_arn: String,
    pub public_key_der: Vec<u8>,
    pub key_spec: String,
    pub db: Db,
    pub objects_dir: PathBuf,
    pub audit: audit::AuditLog,
    users: Vec<(String, [u8; 32])>,
}

impl Gateway {
    /// Opens storage, resolves the key through KMS and loads users.
    pub async fn open(config: Config, kms: Kms) -> Result<Arc<Gateway>, String> {
        let data = config.data_dir.clone();
        let objects_dir = data.join("objects");
        std::fs::create_dir_all(objects_dir.join("incoming")).map_err(|e| format!("cannot create {}: {e}", objects_dir.display()))?;
        let db = Db::open(&data.join("gateway.sqlite3"))?;
        let (key_arn, public_key_der) = kms.public_key(&config.key).await.map_err(|e| e.to_string())?;
        let key_spec = match public_key_der.len() {
            n if n < 300 => "RSA_2048",
            n if n < 450 => "RSA_3072",
            _ => "RSA_4096",
        }
        .to_owned();
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
        let g = Gateway { config, kms, key_arn, public_key_der, key_spec, db, objects_dir, audit, users };
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

    /// Key ARNs an upload may be wrapped for.
    pub fn key_allowed(&self, arn: &str) -> bool {
        arn == self.key_arn || self.config.allowed_key_arns.iter().any(|a| a == arn)
    }

    pub fn blob_path(&self, id: &str) -> PathBuf {
        self.objects_dir.join(format!("{id}.esdk"))
    }

    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(&self.public_key_der))
    }
}

/// Object ids are chosen by the uploader (they sit in the encryption
/// context before the upload); only plain characters are accepted.
pub fn valid_object_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub use routes::router;

/// Runs the gateway until interrupted: the embedded local KMS on a loopback
/// port unless `kms_endpoint` names another, then the HTTP API.
pub async fn serve(config: Config) -> Result<(), String> {
    let endpoint = match &config.kms_endpoint {
        Some(e) => e.clone(),
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
            format!("http://{addr}")
        }
    };
    let kms = Kms::new(Some(&endpoint), config.kms_region.as_deref()).await;
    let listen = config.listen;
    let gw = Gateway::open(config, kms).await?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    {
        use std::io::Write;
        println!("gateway listening on http://{addr} (key {}, KMS {endpoint})", gw.key_arn);
        let _ = std::io::stdout().flush();
    }
    axum::serve(listener, router(gw)).with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .map_err(|e| e.to_string())
}
