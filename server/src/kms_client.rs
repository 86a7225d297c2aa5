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

/// Names the AWS error of an SDK failure, e.g. `DisabledException: …`.
fn describe<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(e: &aws_sdk_kms::error::SdkError<E>) -> String {
    match e.as_service_error() {
        Some(s) => format!("{}: {}", s.code().unwrap_or("KMS error"), s.message().unwrap_or("")),
        None => format!("KMS unreachable: {}", aws_sdk_kms::error::DisplayErrorContext(e)),
    }
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
    pub async fn public_key(&self, key_id: &str) -> Result<(String, Vec<u8>), Error> {
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
    pub async fn describe(&self, key_id: &str) -> Result<(String, String, String, String), Error> {
        let r = self
            .client
            .describe_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| Error::new(ErrorCode::KmsError, format!("DescribeKey {key_id}: {}", describe(&e))))?;
        let m = r.key_metadata().ok_or_else(|| Error::new(ErrorCode::KmsResponseInvalid, "DescribeKey returned no metadata"))?;
        Ok((
            m.arn().unwrap_or(key_id).to_owned(),
            m.key_spec().map(|s| s.as_str().to_owned()).unwrap_or_default(),
            m.key_usage().map(|s| s.as_str().to_owned()).unwrap_or_default(),
            m.key_state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
        ))
    }

    async fn fetch_public_key(&self, key_id: &str) -> Result<(String, Vec<u8>), Error> {
        let r = self
            .client
            .get_public_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| Error::new(ErrorCode::KmsError, format!("GetPublicKey {key_id}: {}", describe(&e))))?;
        let arn = r.key_id().unwrap_or(key_id).to_owned();
        let der = r.public_key().map(|b| b.as_ref().to_vec()).ok_or_else(|| Error::new(ErrorCode::KmsResponseInvalid, "GetPublicKey returned no key"))?;
        Ok((arn, der))
    }
}

#[async_trait::async_trait]
impl KmsDecrypt for Kms {
    async fn decrypt(&self, req: KmsDecryptRequest) -> kms_envelope::Result<KmsDecryptResponse> {
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
            .map_err(|e| Error::new(ErrorCode::KmsError, format!("Decrypt: {}", describe(&e))))?;
        let plaintext = r.plaintext().map(|b| Zeroizing::new(b.as_ref().to_vec())).ok_or_else(|| Error::new(ErrorCode::KmsResponseInvalid, "Decrypt returned no plaintext"))?;
        Ok(KmsDecryptResponse { key_id: r.key_id().unwrap_or_default().to_owned(), plaintext })
    }
}
