//! AWS KMS through the official SDK (`aws-sdk-kms`): the standard
//! credential and region chain, an optional endpoint (the embedded local
//! KMS, or any KMS-compatible service), retries with exponential backoff and
//! jitter on throttling, and KMS errors mapped to kms-envelope's codes.

use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::EncryptionAlgorithmSpec;
use kms_envelope::{Error, ErrorCode, KmsDecrypt, KmsDecryptRequest, KmsDecryptResponse, KmsRsaAlgorithm};
use zeroize::Zeroizing;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a GetPublicKey answer is reused: public keys do not change, but
/// an alias may be moved to a new key (rotation).
const PUBLIC_KEY_TTL: Duration = Duration::from_secs(300);

type PublicKeyCache = Arc<Mutex<HashMap<String, (Instant, String, Vec<u8>)>>>;

/// A KMS client.
#[derive(Clone)]
pub struct Kms {
    client: aws_sdk_kms::Client,
    public_keys: PublicKeyCache,
}

/// What went wrong with a KMS call, from the error's AWS code (the
/// protocol's `__type`), not its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    Throttled,
    Disabled,
    InvalidState,
    NotFound,
    AccessDenied,
    InvalidCiphertext,
    /// No answer: connection refused or broken, or timed out.
    Unreachable,
    /// An answer without what it must carry.
    BadResponse,
    Other,
}

/// A failed KMS call: its kind and a description (the operation, the AWS
/// error name and message; never request or key material).
#[derive(Clone, Debug)]
pub struct Failure {
    pub kind: FailureKind,
    pub detail: String,
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Error {
        let code = if f.kind == FailureKind::BadResponse { ErrorCode::KmsResponseInvalid } else { ErrorCode::KmsError };
        Error::new(code, f.detail)
    }
}

fn failure<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(op: &str, e: &aws_sdk_kms::error::SdkError<E>) -> Failure {
    match e.as_service_error() {
        Some(s) => {
            let code = s.code().unwrap_or("KMS error");
            let kind = match code {
                "ThrottlingException" => FailureKind::Throttled,
                "DisabledException" => FailureKind::Disabled,
                "KMSInvalidStateException" => FailureKind::InvalidState,
                "NotFoundException" => FailureKind::NotFound,
                "AccessDeniedException" => FailureKind::AccessDenied,
                "InvalidCiphertextException" | "IncorrectKeyException" => FailureKind::InvalidCiphertext,
                _ => FailureKind::Other,
            };
            Failure { kind, detail: format!("{op}: {code}: {}", s.message().unwrap_or("")) }
        }
        None => Failure { kind: FailureKind::Unreachable, detail: format!("{op}: KMS unreachable: {}", aws_sdk_kms::error::DisplayErrorContext(e)) },
    }
}

fn bad_response(m: &str) -> Failure {
    Failure { kind: FailureKind::BadResponse, detail: m.to_owned() }
}

impl Kms {
    /// Builds a client. With `endpoint` and no credentials configured in the
    /// environment, placeholder credentials are used (emulators such as
    /// moto accept any); `kms-envelope local-kms` accepts only the ones in
    /// its credentials file (`AWS_SHARED_CREDENTIALS_FILE`).
    pub async fn new(endpoint: Option<&str>, region: Option<&str>) -> Kms {
        let mut loader = Self::loader();
        if let Some(r) = region.map(str::to_owned).or_else(|| std::env::var("AWS_REGION").ok()) {
            loader = loader.region(aws_config::Region::new(r));
        } else if endpoint.is_some() {
            loader = loader.region(aws_config::Region::new("us-east-1"));
        }
        if let Some(e) = endpoint {
            loader = loader.endpoint_url(e);
            let configured = ["AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE"].iter().any(|v| std::env::var_os(v).is_some());
            if !configured {
                loader = loader.credentials_provider(aws_sdk_kms::config::Credentials::new("local", "local", None, None, "kms-envelope-local"));
            }
        }
        Kms { client: aws_sdk_kms::Client::new(&loader.load().await), public_keys: PublicKeyCache::default() }
    }

    /// A client of the embedded local KMS, called in process through the
    /// same SDK code path (no socket: nothing else on the machine can call it).
    pub async fn embedded(local: std::sync::Arc<crate::localkms::LocalKms>) -> Kms {
        let region = local.region.clone();
        let loader = Self::loader()
            .region(aws_config::Region::new(region))
            // Never dialled: the connector answers every request itself.
            .endpoint_url("http://embedded-local-kms.invalid")
            .http_client(crate::localkms::InProcess::client(local))
            .credentials_provider(aws_sdk_kms::config::Credentials::new("embedded", "embedded", None, None, "kms-envelope-embedded"));
        Kms { client: aws_sdk_kms::Client::new(&loader.load().await), public_keys: PublicKeyCache::default() }
    }

    fn loader() -> aws_config::ConfigLoader {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(5))
            // A KMS that hangs must not hang the gateway's callers.
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(5))
                    .operation_timeout(Duration::from_secs(15))
                    .build(),
            )
    }

    /// GetPublicKey: (key ARN, DER SPKI), cached for a few minutes.
    pub async fn public_key(&self, key_id: &str) -> Result<(String, Vec<u8>), Failure> {
        {
            let cache = self.public_keys.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, arn, der)) = cache.get(key_id) {
                if at.elapsed() < PUBLIC_KEY_TTL {
                    return Ok((arn.clone(), der.clone()));
                }
            }
        }
        let (arn, der) = self.fetch_public_key(key_id).await?;
        self.public_keys.lock().unwrap_or_else(|p| p.into_inner()).insert(key_id.to_owned(), (Instant::now(), arn.clone(), der.clone()));
        Ok((arn, der))
    }

    /// DescribeKey: (key ARN, key spec, key usage, key state).
    pub async fn describe(&self, key_id: &str) -> Result<(String, String, String, String), Failure> {
        let r = self.client.describe_key().key_id(key_id).send().await.map_err(|e| failure(&format!("DescribeKey {key_id}"), &e))?;
        let m = r.key_metadata().ok_or_else(|| bad_response("DescribeKey returned no metadata"))?;
        Ok((
            m.arn().unwrap_or(key_id).to_owned(),
            m.key_spec().map(|s| s.as_str().to_owned()).unwrap_or_default(),
            m.key_usage().map(|s| s.as_str().to_owned()).unwrap_or_default(),
            m.key_state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
        ))
    }

    async fn fetch_public_key(&self, key_id: &str) -> Result<(String, Vec<u8>), Failure> {
        let r = self.client.get_public_key().key_id(key_id).send().await.map_err(|e| failure(&format!("GetPublicKey {key_id}"), &e))?;
        let arn = r.key_id().unwrap_or(key_id).to_owned();
        let der = r.public_key().map(|b| b.as_ref().to_vec()).ok_or_else(|| bad_response("GetPublicKey returned no key"))?;
        Ok((arn, der))
    }

    /// KMS Decrypt, failing with a typed [`Failure`] (the gateway answers by its kind).
    pub async fn decrypt_key(&self, req: KmsDecryptRequest) -> Result<KmsDecryptResponse, Failure> {
        let alg = match req.encryption_algorithm {
            KmsRsaAlgorithm::RsaesOaepSha1 => EncryptionAlgorithmSpec::RsaesOaepSha1,
            KmsRsaAlgorithm::RsaesOaepSha256 => EncryptionAlgorithmSpec::RsaesOaepSha256,
        };
        // Asymmetric keys take no KMS encryption context; the message's
        // context is bound through the digest the keyring checks.
        let r = self
            .client
            .decrypt()
            .key_id(&req.key_id)
            .ciphertext_blob(Blob::new(req.ciphertext_blob))
            .encryption_algorithm(alg)
            .send()
            .await
            .map_err(|e| failure("Decrypt", &e))?;
        let plaintext = r.plaintext().map(|b| Zeroizing::new(b.as_ref().to_vec())).ok_or_else(|| bad_response("Decrypt returned no plaintext"))?;
        Ok(KmsDecryptResponse { key_id: r.key_id().unwrap_or_default().to_owned(), plaintext })
    }
}

#[async_trait::async_trait]
impl KmsDecrypt for Kms {
    async fn decrypt(&self, req: KmsDecryptRequest) -> kms_envelope::Result<KmsDecryptResponse> {
        Ok(self.decrypt_key(req).await?)
    }
}
