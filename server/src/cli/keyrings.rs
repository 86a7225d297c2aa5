//! Keyring options: `name=value,...` specs turned into keyrings.

use std::collections::BTreeMap;
use std::sync::Arc;

use kms_envelope::{Error, ErrorCode, Keyring, KmsRsaAlgorithm, KmsRsaKeyring, MultiKeyring, RawAesKeyring, RawRsaKeyring, RsaPadding};
use zeroize::Zeroizing;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    RawRsa,
    RawAes,
    KmsRsa,
}

impl Kind {
    fn flag(self) -> &'static str {
        match self {
            Kind::RawRsa => "--raw-rsa",
            Kind::RawAes => "--raw-aes",
            Kind::KmsRsa => "--kms-rsa",
        }
    }
}

fn bad(msg: String) -> Error {
    Error::new(ErrorCode::InvalidArgument, msg)
}

/// Splits `a=1,b=2`; every key must be in `allowed`, none repeated.
fn fields(kind: Kind, spec: &str, allowed: &[&str]) -> Result<BTreeMap<String, String>, Error> {
    let mut m = BTreeMap::new();
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| bad(format!("{}: expected name=value, got {part:?}", kind.flag())))?;
        if !allowed.contains(&k) {
            return Err(bad(format!("{}: unknown field {k:?} (expected {})", kind.flag(), allowed.join(", "))));
        }
        if m.insert(k.to_owned(), v.to_owned()).is_some() {
            return Err(bad(format!("{}: field {k:?} given twice", kind.flag())));
        }
    }
    Ok(m)
}

fn need<'a>(kind: Kind, m: &'a BTreeMap<String, String>, k: &str) -> Result<&'a str, Error> {
    m.get(k).map(String::as_str).ok_or_else(|| bad(format!("{}: missing {k}=", kind.flag())))
}

fn read_key_file(path: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| Error::new(ErrorCode::Io, format!("cannot read key file {path}: {e}")))
}

/// Builds one keyring from a spec. `kms` is the KMS client, created only
/// when a `--kms-rsa` keyring needs one.
pub async fn build(kind: Kind, spec: &str, decrypting: bool, kms: &dyn Fn() -> KmsFuture) -> Result<Arc<dyn Keyring>, Error> {
    match kind {
        Kind::RawRsa => {
            let m = fields(kind, spec, &["namespace", "name", "public", "private", "padding"])?;
            let padding = RsaPadding::parse(need(kind, &m, "padding")?)?;
            let public = m.get("public").map(|p| read_key_file(p)).transpose()?;
            let private = m.get("private").map(|p| read_key_file(p)).transpose()?;
            Ok(Arc::new(RawRsaKeyring::new(
                need(kind, &m, "namespace")?,
                need(kind, &m, "name")?,
                padding,
                public.as_deref().map(|v| v.as_slice()),
                private.as_deref().map(|v| v.as_slice()),
            )?))
        }
        Kind::RawAes => {
            let m = fields(kind, spec, &["namespace", "name", "key"])?;
            let key = read_key_file(need(kind, &m, "key")?)?;
            Ok(Arc::new(RawAesKeyring::new(need(kind, &m, "namespace")?, need(kind, &m, "name")?, &key)?))
        }
        Kind::KmsRsa => {
            let m = fields(kind, spec, &["arn", "public", "algorithm"])?;
            let alg = KmsRsaAlgorithm::parse(m.get("algorithm").map(String::as_str).unwrap_or("RSAES_OAEP_SHA_256"))?;
            let arn = need(kind, &m, "arn")?;
            if decrypting {
                let client = kms().await;
                return Ok(Arc::new(KmsRsaKeyring::new(arn, None, alg)?.with_kms_decrypt(Arc::new(client))));
            }
            let public = match m.get("public") {
                Some(p) => read_key_file(p)?,
                None => {
                    // The public key from KMS itself, for the key named (an ARN).
                    let (key_arn, der) = kms().await.public_key(arn).await?;
                    if key_arn != arn {
                        return Err(bad(format!("--kms-rsa: KMS says {arn} is {key_arn}; give the key ARN")));
                    }
                    Zeroizing::new(der)
                }
            };
            Ok(Arc::new(KmsRsaKeyring::new(arn, Some(&public), alg)?))
        }
    }
}

pub type KmsFuture = std::pin::Pin<Box<dyn std::future::Future<Output = crate::kms_client::Kms> + Send>>;

/// All keyrings as one: a single keyring, or a multi-keyring whose generator is the first.
pub async fn build_all(specs: &[(Kind, String)], decrypting: bool, kms: &dyn Fn() -> KmsFuture) -> Result<Arc<dyn Keyring>, Error> {
    let mut rings = Vec::new();
    for (k, s) in specs {
        rings.push(build(*k, s, decrypting, kms).await?);
    }
    match rings.len() {
        0 => Err(bad("give at least one keyring: --raw-rsa, --raw-aes or --kms-rsa".into())),
        1 => Ok(rings.remove(0)),
        _ => {
            let generator = rings.remove(0);
            Ok(Arc::new(MultiKeyring::new(Some(generator), rings)?))
        }
    }
}
