//! TLS for the gateway (rustls on aws-lc-rs): a certificate chain and key
//! from PEM files, or with `--dev-tls` a self-signed certificate for
//! localhost kept in the data directory (the key file 0600).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// A server configuration from PEM files.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("cannot read the private key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the certificate and key do not fit: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The development certificate for localhost/127.0.0.1/::1, made once and
/// reused; returns (cert path, key path, SHA-256 fingerprint of the cert).
pub fn dev_certificate(data_dir: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf, String), String> {
    let dir = data_dir.join("dev-tls");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    if !cert_path.exists() || !key_path.exists() {
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
        let cert = rcgen::generate_simple_self_signed(names).map_err(|e| format!("cannot make a certificate: {e}"))?;
        crate::localkms::write_atomic(&key_path, cert.key_pair.serialize_pem().as_bytes(), 0o600).map_err(|e| format!("cannot write {}: {e}", key_path.display()))?;
        crate::localkms::write_atomic(&cert_path, cert.cert.pem().as_bytes(), crate::private_fs::FILE_MODE).map_err(|e| format!("cannot write {}: {e}", cert_path.display()))?;
    }
    let der = CertificateDer::from_pem_file(&cert_path).map_err(|e| format!("{}: {e}", cert_path.display()))?;
    Ok((cert_path, key_path, hex::encode(Sha256::digest(der.as_ref()))))
}
