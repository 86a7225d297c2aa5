//! The embedded local KMS: RSA ENCRYPT_DECRYPT keys that speak the AWS KMS
//! JSON protocol (`X-Amz-Target: TrentService.<Operation>`), so the gateway,
//! the CLI, boto3 and the AWS CLI reach it exactly as they reach AWS KMS.
//! Private-key operations run on aws-lc-rs (constant-time RSA-OAEP), since
//! callers choose the ciphertexts.
//!
//! The gateway calls it in process (`inprocess`); `kms-envelope local-kms`
//! serves it to other tools on loopback, to SigV4-signed requests only
//! (`auth`).

mod auth;
mod http;
mod inprocess;
mod store;

use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{OaepAlgorithm, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use zeroize::Zeroizing;

pub use auth::Credentials;
pub use http::serve;
pub use inprocess::InProcess;
pub use store::KeyRecord;
use store::Store;
pub use store::now;
pub use store::rfc3339;
pub use store::write_atomic;

/// An AWS-style error: the exception name and a message.
#[derive(Debug, Clone)]
pub struct Fault {
    pub name: &'static str,
    pub message: String,
    /// HTTP status (400 for client errors, 500 for ours).
    pub status: u16,
}

impl Fault {
    fn new(name: &'static str, message: impl Into<String>) -> Fault {
        Fault { name, message: message.into(), status: 400 }
    }
    pub fn not_found(id: &str) -> Fault {
        Fault::new("NotFoundException", format!("Key '{id}' does not exist"))
    }
    pub fn validation(m: impl Into<String>) -> Fault {
        Fault::new("ValidationException", m)
    }
    pub fn internal(m: impl Into<String>) -> Fault {
        Fault { name: "KMSInternalException", message: m.into(), status: 500 }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

/// The local KMS over a data directory.
pub struct LocalKms {
    store: Store,
    pub(crate) region: String,
    account: String,
}

const ACCOUNT: &str = "111122223333";
const ALGORITHMS: [&str; 2] = ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"];

fn oaep(name: Option<&str>) -> Result<&'static OaepAlgorithm, Fault> {
    match name {
        Some("RSAES_OAEP_SHA_256") => Ok(&OAEP_SHA256_MGF1SHA256),
        Some("RSAES_OAEP_SHA_1") => Ok(&OAEP_SHA1_MGF1SHA1),
        Some("SYMMETRIC_DEFAULT") | None => Err(Fault::new(
            "InvalidKeyUsageException",
            "RSA keys need EncryptionAlgorithm RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256",
        )),
        Some(other) => Err(Fault::validation(format!("EncryptionAlgorithm {other} is not valid"))),
    }
}

fn str_field<'a>(req: &'a Value, k: &str) -> Option<&'a str> {
    req.get(k).and_then(Value::as_str)
}

fn required<'a>(req: &'a Value, k: &str) -> Result<&'a str, Fault> {
    str_field(req, k).ok_or_else(|| Fault::validation(format!("{k} is required")))
}

fn blob(req: &Value, k: &str) -> Result<Zeroizing<Vec<u8>>, Fault> {
    let s = required(req, k)?;
    B64.decode(s).map(Zeroizing::new).map_err(|_| Fault::validation(format!("{k} is not base64")))
}

impl LocalKms {
    pub fn open(data_dir: &Path, region: &str) -> Result<Arc<LocalKms>, String> {
        Ok(Arc::new(LocalKms { store: Store::open(data_dir)?, region: region.to_owned(), account: ACCOUNT.to_owned() }))
    }

    fn arn_prefix(&self) -> String {
        format!("arn:aws:kms:{}:{}:key/", self.region, self.account)
    }

    fn alias_arn(&self, alias: &str) -> String {
        format!("arn:aws:kms:{}:{}:{alias}", self.region, self.account)
    }

    /// Resolves a key id, key ARN, alias name or alias ARN.
    pub fn resolve(&self, id: &str) -> Result<KeyRecord, Fault> {
        let alias = if let Some(a) = id.strip_prefix(&format!("arn:aws:kms:{}:{}:", self.region, self.account)) {
            if let Some(k) = a.strip_prefix("key/") {
                return self.store.get(k);
            }
            Some(a)
        } else if id.starts_with("alias/") {
            Some(id)
        } else if id.starts_with("arn:") {
            return Err(Fault::not_found(id));
        } else {
            None
        };
        match alias {
            Some(a) => {
                let target = self.store.aliases()?.get(a).cloned().ok_or_else(|| Fault::new("NotFoundException", format!("Alias {a} does not exist")))?;
                self.store.get(&target)
            }
            None => self.store.get(id),
        }
    }

    fn metadata(&self, r: &KeyRecord) -> Value {
        let mut m = json!({
            "AWSAccountId": self.account,
            "KeyId": r.key_id,
            "Arn": r.arn,
            "CreationDate": r.creation_date,
            "Enabled": r.key_state == "Enabled",
            "Description": r.description,
            "KeyUsage": "ENCRYPT_DECRYPT",
            "KeyState": r.key_state,
            "Origin": "AWS_KMS",
            "KeyManager": "CUSTOMER",
            "CustomerMasterKeySpec": r.key_spec,
            "KeySpec": r.key_spec,
            "EncryptionAlgorithms": ALGORITHMS,
            "MultiRegion": false,
        });
        if let Some(d) = r.deletion_date {
            m["DeletionDate"] = json!(d);
        }
        m
    }

    fn usable(r: &KeyRecord) -> Result<(), Fault> {
        match r.key_state.as_str() {
            "Enabled" => Ok(()),
            "Disabled" => Err(Fault::new("DisabledException", format!("{} is disabled.", r.arn))),
            "PendingDeletion" => Err(Fault::new("KMSInvalidStateException", format!("{} is pending deletion.", r.arn))),
            s => Err(Fault::new("KMSInvalidStateException", format!("{} is in state {s}.", r.arn))),
        }
    }

    fn set_state(&self, id: &str, state: &str, deletion: Option<f64>) -> Result<KeyRecord, Fault> {
        let mut r = self.resolve(id)?;
        r.key_state = state.to_owned();
        r.deletion_date = deletion;
        self.store.put(&r)?;
        Ok(r)
    }

    /// Handles one operation of the KMS API.
    pub fn call(&self, op: &str, req: &Value) -> Result<Value, Fault> {
        match op {
            "CreateKey" => {
                let spec = str_field(req, "KeySpec").or_else(|| str_field(req, "CustomerMasterKeySpec")).unwrap_or("SYMMETRIC_DEFAULT");
                if let Some(u) = str_field(req, "KeyUsage") {
                    if u != "ENCRYPT_DECRYPT" {
                        return Err(Fault::validation("only ENCRYPT_DECRYPT keys are supported"));
                    }
                }
                let r = self.store.create(spec, &self.arn_prefix(), str_field(req, "Description").unwrap_or(""))?;
                Ok(json!({ "KeyMetadata": self.metadata(&r) }))
            }
            "DescribeKey" => Ok(json!({ "KeyMetadata": self.metadata(&self.resolve(required(req, "KeyId")?)?) })),
            "ListKeys" => {
                let keys: Vec<Value> = self.store.list()?.iter().map(|r| json!({ "KeyId": r.key_id, "KeyArn": r.arn })).collect();
                Ok(json!({ "Keys": keys, "Truncated": false }))
            }
            "GetPublicKey" => {
                let r = self.resolve(required(req, "KeyId")?)?;
                if r.key_state == "PendingDeletion" {
                    Self::usable(&r)?;
                }
                let sk = self.store.private_key(&r)?;
                let der = sk.public_key().as_der().map_err(|_| Fault::internal("cannot encode the public key"))?;
                Ok(json!({
                    "KeyId": r.arn,
                    "PublicKey": B64.encode(der.as_ref()),
                    "CustomerMasterKeySpec": r.key_spec,
                    "KeySpec": r.key_spec,
                    "KeyUsage": "ENCRYPT_DECRYPT",
                    "EncryptionAlgorithms": ALGORITHMS,
                }))
            }
            "Decrypt" => {
                let id = str_field(req, "KeyId").ok_or_else(|| {
                    Fault::new("InvalidCiphertextException", "KeyId is required to decrypt with an asymmetric key")
                })?;
                let r = self.resolve(id)?;
                Self::usable(&r)?;
                if req.get("EncryptionContext").map(|c| !c.is_null()).unwrap_or(false) {
                    return Err(Fault::validation("EncryptionContext is not supported with asymmetric keys"));
                }
                let alg_name = str_field(req, "EncryptionAlgorithm");
                let alg = oaep(alg_name)?;
                let ct = blob(req, "CiphertextBlob")?;
                if ct.is_empty() || ct.len() > 6144 {
                    return Err(Fault::validation("CiphertextBlob must be 1 to 6144 bytes"));
                }
                let sk = OaepPrivateDecryptingKey::new((*self.store.private_key(&r)?).clone())
                    .map_err(|_| Fault::internal("unusable key"))?;
                let mut out = Zeroizing::new(vec![0u8; sk.min_output_size()]);
                let n = sk
                    .decrypt(alg, &ct, &mut out, None)
                    .map_err(|_| Fault::new("InvalidCiphertextException", "The ciphertext is invalid for this key and algorithm"))?
                    .len();
                Ok(json!({ "KeyId": r.arn, "Plaintext": B64.encode(&out[..n]), "EncryptionAlgorithm": alg_name }))
            }
            "Encrypt" => {
                let r = self.resolve(required(req, "KeyId")?)?;
                Self::usable(&r)?;
                let alg_name = str_field(req, "EncryptionAlgorithm");
                let alg = oaep(alg_name)?;
                let pt = blob(req, "Plaintext")?;
                let pk = OaepPublicEncryptingKey::new(self.store.private_key(&r)?.public_key()).map_err(|_| Fault::internal("unusable key"))?;
                if pt.len() > pk.max_plaintext_size(alg) {
                    return Err(Fault::validation(format!("Plaintext is longer than {} bytes", pk.max_plaintext_size(alg))));
                }
                let mut out = vec![0u8; pk.ciphertext_size()];
                let n = pk.encrypt(alg, &pt, &mut out, None).map_err(|_| Fault::internal("encryption failed"))?.len();
                Ok(json!({ "KeyId": r.arn, "CiphertextBlob": B64.encode(&out[..n]), "EncryptionAlgorithm": alg_name }))
            }
            "EnableKey" => self.set_state(required(req, "KeyId")?, "Enabled", None).map(|_| json!({})),
            "DisableKey" => {
                let r = self.resolve(required(req, "KeyId")?)?;
                if r.key_state == "PendingDeletion" {
                    return Err(Fault::new("KMSInvalidStateException", format!("{} is pending deletion.", r.arn)));
                }
                self.set_state(&r.key_id, "Disabled", None).map(|_| json!({}))
            }
            "ScheduleKeyDeletion" => {
                let days = req.get("PendingWindowInDays").and_then(Value::as_u64).unwrap_or(30);
                if !(7..=30).contains(&days) {
                    return Err(Fault::validation("PendingWindowInDays must be 7 to 30"));
                }
                let when = now() + days as f64 * 86400.0;
                let r = self.set_state(required(req, "KeyId")?, "PendingDeletion", Some(when))?;
                Ok(json!({ "KeyId": r.arn, "DeletionDate": when, "KeyState": "PendingDeletion", "PendingWindowInDays": days }))
            }
            "CancelKeyDeletion" => {
                let r = self.resolve(required(req, "KeyId")?)?;
                if r.key_state != "PendingDeletion" {
                    return Err(Fault::new("KMSInvalidStateException", format!("{} is not pending deletion.", r.arn)));
                }
                // As in AWS KMS, a key whose deletion is cancelled comes back disabled.
                let r = self.set_state(&r.key_id, "Disabled", None)?;
                Ok(json!({ "KeyId": r.arn }))
            }
            "CreateAlias" | "UpdateAlias" => {
                let name = required(req, "AliasName")?.to_owned();
                if !name.starts_with("alias/") || name.starts_with("alias/aws/") || name.len() > 256 {
                    return Err(Fault::validation("AliasName must begin with alias/ (and not alias/aws/)"));
                }
                let target = self.resolve(required(req, "TargetKeyId")?)?;
                let create = op == "CreateAlias";
                self.store.update_aliases(|a| {
                    match (create, a.contains_key(&name)) {
                        (true, true) => return Err(Fault::new("AlreadyExistsException", format!("An alias with the name {name} already exists"))),
                        (false, false) => return Err(Fault::new("NotFoundException", format!("Alias {name} does not exist"))),
                        _ => {}
                    }
                    a.insert(name.clone(), target.key_id.clone());
                    Ok(json!({}))
                })
            }
            "DeleteAlias" => {
                let name = required(req, "AliasName")?.to_owned();
                self.store.update_aliases(|a| {
                    a.remove(&name).ok_or_else(|| Fault::new("NotFoundException", format!("Alias {name} does not exist")))?;
                    Ok(json!({}))
                })
            }
            "ListAliases" => {
                let only = match str_field(req, "KeyId") {
                    Some(k) => Some(self.resolve(k)?.key_id),
                    None => None,
                };
                let aliases: Vec<Value> = self
                    .store
                    .aliases()?
                    .iter()
                    .filter(|(_, t)| only.as_ref().map(|o| o == *t).unwrap_or(true))
                    .map(|(n, t)| json!({ "AliasName": n, "AliasArn": self.alias_arn(n), "TargetKeyId": t }))
                    .collect();
                Ok(json!({ "Aliases": aliases, "Truncated": false }))
            }
            _ => Err(Fault::new("UnknownOperationException", format!("{op} is not supported by the local KMS"))),
        }
    }
}
