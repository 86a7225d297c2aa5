//! Key storage of the embedded local KMS: one JSON file per key plus an
//! alias table, under `DATA_DIR/kms/`. Private keys are encrypted at rest
//! with AES-256-GCM under a master key (a 0600 file created on first use,
//! or `KMS_ENVELOPE_MASTER_KEY`, base64), the key id bound as AAD. Every
//! write goes to a temporary file that is synced and renamed into place.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::Fault;

/// Environment variable holding the master key (base64 of 32 bytes).
pub const MASTER_KEY_ENV: &str = "KMS_ENVELOPE_MASTER_KEY";
const AAD_PREFIX: &str = "kms-envelope local KMS key v1:";

/// A key's metadata, as stored and as DescribeKey reports it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyRecord {
    pub key_id: String,
    pub arn: String,
    pub key_spec: String,
    pub key_state: String,
    pub creation_date: f64,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_date: Option<f64>,
    /// nonce(12) ‖ AES-256-GCM(PKCS#8) ‖ tag(16), base64.
    pub encrypted_private_key: String,
}

pub struct Store {
    dir: PathBuf,
    master: LessSafeKey,
    /// Decrypted private keys by key id (their material never changes).
    cache: Mutex<BTreeMap<String, Arc<PrivateDecryptingKey>>>,
    /// Serializes writers within this process.
    write: Mutex<()>,
}

pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename, fsync dir).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.tmp-{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("f"), uuid::Uuid::new_v4()));
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

fn load_master_key(dir: &Path) -> Result<Zeroizing<Vec<u8>>, String> {
    if let Ok(v) = std::env::var(MASTER_KEY_ENV) {
        let k = Zeroizing::new(B64.decode(v.trim()).map_err(|_| format!("{MASTER_KEY_ENV} is not base64"))?);
        if k.len() != 32 {
            return Err(format!("{MASTER_KEY_ENV} must hold 32 bytes"));
        }
        return Ok(k);
    }
    let path = dir.join("master.key");
    match fs::read(&path) {
        Ok(k) if k.len() == 32 => Ok(Zeroizing::new(k)),
        Ok(_) => Err(format!("{} must hold exactly 32 bytes", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut k = Zeroizing::new(vec![0u8; 32]);
            SystemRandom::new().fill(&mut k).map_err(|_| "no randomness".to_string())?;
            write_atomic(&path, &k, 0o600).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            Ok(k)
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

impl Store {
    /// Opens (creating if needed) the store under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Store, String> {
        let dir = data_dir.join("kms");
        for d in [data_dir, &dir, &dir.join("keys")] {
            crate::private_fs::private_dir(d)?;
        }
        // Files an older version wrote with the umask's modes.
        let mut files = vec![data_dir.join("master.key"), dir.join("aliases.json")];
        files.extend(fs::read_dir(dir.join("keys")).map_err(|e| e.to_string())?.flatten().map(|e| e.path()));
        for f in &files {
            crate::private_fs::tighten_if_present(f, crate::private_fs::FILE_MODE)?;
        }
        let master = load_master_key(data_dir)?;
        let key = UnboundKey::new(&AES_256_GCM, &master).map_err(|_| "bad master key".to_string())?;
        Ok(Store { dir, master: LessSafeKey::new(key), cache: Mutex::new(BTreeMap::new()), write: Mutex::new(()) })
    }

    fn key_path(&self, key_id: &str) -> PathBuf {
        self.dir.join("keys").join(format!("{key_id}.json"))
    }

    fn valid_id(key_id: &str) -> bool {
        !key_id.is_empty() && key_id.len() <= 64 && key_id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
    }

    pub fn get(&self, key_id: &str) -> Result<KeyRecord, Fault> {
        if !Self::valid_id(key_id) {
            return Err(Fault::not_found(key_id));
        }
        let bytes = fs::read(self.key_path(key_id)).map_err(|_| Fault::not_found(key_id))?;
        serde_json::from_slice(&bytes).map_err(|e| Fault::internal(format!("corrupt key record {key_id}: {e}")))
    }

    pub fn put(&self, rec: &KeyRecord) -> Result<(), Fault> {
        let _g = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = serde_json::to_vec_pretty(rec).map_err(|e| Fault::internal(e.to_string()))?;
        write_atomic(&self.key_path(&rec.key_id), &bytes, 0o600).map_err(|e| Fault::internal(format!("cannot write key: {e}")))
    }

    pub fn list(&self) -> Result<Vec<KeyRecord>, Fault> {
        let mut v = Vec::new();
        let rd = fs::read_dir(self.dir.join("keys")).map_err(|e| Fault::internal(e.to_string()))?;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(id) = name.strip_suffix(".json") {
                if !name.starts_with('.') {
                    v.push(self.get(id)?);
                }
            }
        }
        v.sort_by(|a, b| a.creation_date.partial_cmp(&b.creation_date).unwrap_or(std::cmp::Ordering::Equal));
        Ok(v)
    }

    /// Generates and stores a new RSA key.
    pub fn create(&self, spec: &str, arn_prefix: &str, description: &str) -> Result<KeyRecord, Fault> {
        let size = match spec {
            "RSA_2048" => KeySize::Rsa2048,
            "RSA_3072" => KeySize::Rsa3072,
            "RSA_4096" => KeySize::Rsa4096,
            _ => return Err(Fault::validation(format!("KeySpec {spec} is not supported here (RSA_2048, RSA_3072, RSA_4096)"))),
        };
        let key = PrivateDecryptingKey::generate(size).map_err(|_| Fault::internal("key generation failed"))?;
        let pkcs8 = key.as_der().map_err(|_| Fault::internal("key encoding failed"))?;
        let key_id = uuid::Uuid::new_v4().to_string();
        let rec = KeyRecord {
            arn: format!("{arn_prefix}{key_id}"),
            encrypted_private_key: self.seal(&key_id, pkcs8.as_ref())?,
            key_id,
            key_spec: spec.to_owned(),
            key_state: "Enabled".to_owned(),
            creation_date: now(),
            description: description.to_owned(),
            deletion_date: None,
        };
        self.put(&rec)?;
        Ok(rec)
    }

    fn seal(&self, key_id: &str, pkcs8: &[u8]) -> Result<String, Fault> {
        let mut nonce = [0u8; 12];
        SystemRandom::new().fill(&mut nonce).map_err(|_| Fault::internal("no randomness"))?;
        let mut buf = Zeroizing::new(pkcs8.to_vec());
        let aad = format!("{AAD_PREFIX}{key_id}");
        self.master
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad.as_bytes()), &mut *buf)
            .map_err(|_| Fault::internal("cannot encrypt key"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(B64.encode(out))
    }

    /// The private key of `rec`, decrypted under the master key (cached).
    pub fn private_key(&self, rec: &KeyRecord) -> Result<Arc<PrivateDecryptingKey>, Fault> {
        if let Some(k) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&rec.key_id) {
            return Ok(k.clone());
        }
        let raw = B64.decode(&rec.encrypted_private_key).map_err(|_| Fault::internal("corrupt key record"))?;
        if raw.len() < 12 + 16 {
            return Err(Fault::internal("corrupt key record"));
        }
        let (nonce, ct) = raw.split_at(12);
        let mut buf = Zeroizing::new(ct.to_vec());
        let aad = format!("{AAD_PREFIX}{}", rec.key_id);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Fault::internal("corrupt key record"))?;
        let pkcs8 = self
            .master
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buf)
            .map_err(|_| Fault::internal("the master key does not open this key (wrong master key?)"))?;
        let key = Arc::new(PrivateDecryptingKey::from_pkcs8(pkcs8).map_err(|_| Fault::internal("corrupt private key"))?);
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(rec.key_id.clone(), key.clone());
        Ok(key)
    }

    pub fn aliases(&self) -> Result<BTreeMap<String, String>, Fault> {
        match fs::read(self.dir.join("aliases.json")) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| Fault::internal(format!("corrupt alias table: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(Fault::internal(e.to_string())),
        }
    }

    /// Changes the alias table under the write lock.
    pub fn update_aliases<T>(&self, f: impl FnOnce(&mut BTreeMap<String, String>) -> Result<T, Fault>) -> Result<T, Fault> {
        let _g = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut a = self.aliases()?;
        let r = f(&mut a)?;
        let bytes = serde_json::to_vec_pretty(&a).map_err(|e| Fault::internal(e.to_string()))?;
        write_atomic(&self.dir.join("aliases.json"), &bytes, 0o600).map_err(|e| Fault::internal(e.to_string()))?;
        Ok(r)
    }
}

/// Seconds since the epoch as RFC 3339 UTC, to the millisecond
/// (`2026-11-22T23:59:59.123Z`).
pub fn rfc3339(t: f64) -> String {
    let secs = t.floor() as i64;
    let millis = ((t - t.floor()) * 1000.0) as u32;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}
