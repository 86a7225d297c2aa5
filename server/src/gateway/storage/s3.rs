//! Amazon S3 through the official `aws-sdk-s3`: the standard credential and
//! region chain, an optional endpoint (emulators) and path-style
//! addressing. Blobs are `PREFIX` `OWNER/ID.esdk`. Presigned URLs come from
//! the SDK's SigV4 presigner; no request checksum is added that a browser
//! would have to reproduce.

use std::time::Duration;

use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use super::{Access, Failure, Kind, Part, Pending, Storage};

/// Where the gateway keeps blobs in S3.
#[derive(Clone, Debug)]
pub struct S3Config {
    pub bucket: String,
    /// Prepended to every key (e.g. `files/`).
    pub prefix: String,
    /// Another S3-compatible endpoint (an emulator).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// `https://endpoint/bucket/key` rather than `https://bucket.endpoint/key`.
    pub path_style: bool,
}

pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    origin: String,
}

fn failure<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static, R: std::fmt::Debug>(op: &str, e: &SdkError<E, R>) -> Failure {
    if let Some(s) = e.as_service_error() {
        let code = s.code().unwrap_or("S3 error");
        let kind = match code {
            "NoSuchKey" | "NotFound" => Kind::NotFound,
            "NoSuchUpload" => Kind::NoSuchUpload,
            "InvalidPart" | "InvalidPartOrder" | "EntityTooSmall" => Kind::InvalidParts,
            "SlowDown" | "ServiceUnavailable" | "InternalError" | "RequestTimeout" => Kind::Unavailable,
            "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" => Kind::AccessDenied,
            _ => Kind::Other,
        };
        return match s.code() {
            Some(_) => Failure::new(kind, format!("{op}: {code}: {}", s.message().unwrap_or(""))),
            // An answer the SDK could not read.
            None => Failure::new(kind, format!("{op}: {}", aws_sdk_s3::error::DisplayErrorContext(e))),
        };
    }
    match e {
        // An answer without an error code: a 404 of a HEAD, or a 5xx page.
        SdkError::ServiceError(_) | SdkError::ResponseError(_) => Failure::new(Kind::Other, format!("{op}: {}", aws_sdk_s3::error::DisplayErrorContext(e))),
        _ => Failure::new(Kind::Unavailable, format!("{op}: S3 unreachable: {}", aws_sdk_s3::error::DisplayErrorContext(e))),
    }
}

fn presigning(expires: Duration) -> Result<PresigningConfig, Failure> {
    PresigningConfig::expires_in(expires).map_err(|e| Failure::new(Kind::Other, format!("presign: {e}")))
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let host = rest.split(['/', '?']).next().unwrap_or("");
    format!("{scheme}://{host}")
}

impl S3Store {
    pub async fn open(c: &S3Config) -> Result<S3Store, String> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(30))
                    .operation_timeout(Duration::from_secs(60))
                    .build(),
            );
        if let Some(r) = c.region.clone().or_else(|| std::env::var("AWS_REGION").ok()) {
            loader = loader.region(aws_config::Region::new(r));
        } else if c.endpoint.is_some() {
            loader = loader.region(aws_config::Region::new("us-east-1"));
        }
        if let Some(e) = &c.endpoint {
            loader = loader.endpoint_url(e);
        }
        let shared = loader.load().await;
        let config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(c.path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        let client = aws_sdk_s3::Client::from_conf(config);
        let mut store = S3Store { client, bucket: c.bucket.clone(), prefix: c.prefix.clone(), origin: String::new() };
        // Presigning contacts nothing: the origin browsers will be sent to.
        let probe = store.client.get_object().bucket(&store.bucket).key(format!("{}probe", store.prefix)).presigned(presigning(Duration::from_secs(60)).map_err(|f| f.detail)?).await;
        store.origin = origin_of(probe.map_err(|e| format!("S3: {e}"))?.uri());
        Ok(store)
    }
}

#[async_trait::async_trait]
impl Storage for S3Store {
    fn direct(&self) -> bool {
        true
    }

    fn origin(&self) -> Option<&str> {
        Some(&self.origin)
    }

    async fn check(&self) -> Result<(), Failure> {
        self.client.head_bucket().bucket(&self.bucket).send().await.map(|_| ()).map_err(|e| failure(&format!("HeadBucket {}", self.bucket), &e))
    }

    fn key(&self, owner: &str, id: &str) -> String {
        format!("{}{owner}/{id}.esdk", self.prefix)
    }

    async fn read_range(&self, owner: &str, id: &str, start: u64, len: u64) -> Result<(Vec<u8>, u64), Failure> {
        let end = start + len.max(1) - 1;
        let r = self.client.get_object().bucket(&self.bucket).key(self.key(owner, id)).range(format!("bytes={start}-{end}")).send().await;
        let out = match r {
            Ok(o) => o,
            // An empty blob has no byte range to read.
            Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("InvalidRange") => return Ok((vec![], 0)),
            Err(e) => return Err(failure("GetObject", &e)),
        };
        let size = out
            .content_range()
            .and_then(|r| r.rsplit('/').next())
            .and_then(|t| t.parse::<u64>().ok())
            .or(out.content_length().map(|n| n as u64))
            .unwrap_or(0);
        let bytes = out.body.collect().await.map_err(|e| Failure::new(Kind::Unavailable, format!("GetObject: the body broke off: {e}")))?;
        let mut v = bytes.to_vec();
        v.truncate(len as usize);
        Ok((v, size))
    }

    async fn delete(&self, owner: &str, id: &str) -> Result<(), Failure> {
        self.client.delete_object().bucket(&self.bucket).key(self.key(owner, id)).send().await.map(|_| ()).map_err(|e| failure("DeleteObject", &e))
    }

    async fn access(&self, owner: &str, id: &str, expires: Duration) -> Result<Access, Failure> {
        let p = self.client.get_object().bucket(&self.bucket).key(self.key(owner, id)).presigned(presigning(expires)?).await.map_err(|e| failure("presign GetObject", &e))?;
        Ok(Access::Url(p.uri().to_owned()))
    }

    async fn start_multipart(&self, owner: &str, id: &str) -> Result<String, Failure> {
        let r = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(self.key(owner, id))
            .content_type("application/octet-stream")
            .send()
            .await
            .map_err(|e| failure("CreateMultipartUpload", &e))?;
        r.upload_id().map(str::to_owned).ok_or_else(|| Failure::new(Kind::Other, "CreateMultipartUpload: no upload id in the answer"))
    }

    async fn presign_part(&self, owner: &str, id: &str, upload: &str, number: i32, expires: Duration) -> Result<String, Failure> {
        let p = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(self.key(owner, id))
            .upload_id(upload)
            .part_number(number)
            .presigned(presigning(expires)?)
            .await
            .map_err(|e| failure("presign UploadPart", &e))?;
        Ok(p.uri().to_owned())
    }

    async fn list_parts(&self, owner: &str, id: &str, upload: &str) -> Result<Vec<Part>, Failure> {
        let mut pages = self.client.list_parts().bucket(&self.bucket).key(self.key(owner, id)).upload_id(upload).into_paginator().send();
        let mut parts = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| failure("ListParts", &e))?;
            for p in page.parts() {
                parts.push(Part { number: p.part_number().unwrap_or(0), size: p.size().unwrap_or(0).max(0) as u64, etag: p.e_tag().unwrap_or("").to_owned() });
            }
        }
        parts.sort_by_key(|p| p.number);
        Ok(parts)
    }

    async fn complete_multipart(&self, owner: &str, id: &str, upload: &str, parts: &[(i32, String)]) -> Result<(), Failure> {
        let done = CompletedMultipartUpload::builder()
            .set_parts(Some(parts.iter().map(|(n, etag)| CompletedPart::builder().part_number(*n).e_tag(etag).build()).collect()))
            .build();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(self.key(owner, id))
            .upload_id(upload)
            .multipart_upload(done)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failure("CompleteMultipartUpload", &e))
    }

    async fn abort_multipart(&self, key: &str, upload: &str) -> Result<(), Failure> {
        match self.client.abort_multipart_upload().bucket(&self.bucket).key(key).upload_id(upload).send().await {
            Ok(_) => Ok(()),
            Err(e) => match failure("AbortMultipartUpload", &e) {
                f if f.kind == Kind::NoSuchUpload => Ok(()),
                f => Err(f),
            },
        }
    }

    async fn list_multipart(&self) -> Result<Vec<Pending>, Failure> {
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(&self.prefix)
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(id_marker.clone())
                .send()
                .await
                .map_err(|e| failure("ListMultipartUploads", &e))?;
            for u in page.uploads() {
                if let (Some(key), Some(id)) = (u.key(), u.upload_id()) {
                    out.push(Pending { key: key.to_owned(), upload_id: id.to_owned(), initiated: u.initiated().map(|t| t.as_secs_f64()) });
                }
            }
            if page.is_truncated() != Some(true) {
                return Ok(out);
            }
            let next = (page.next_key_marker().map(str::to_owned), page.next_upload_id_marker().map(str::to_owned));
            if next == (key_marker.clone(), id_marker.clone()) || next.0.is_none() {
                return Ok(out);
            }
            (key_marker, id_marker) = next;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn origins_of_presigned_urls() {
        assert_eq!(super::origin_of("http://127.0.0.1:9000/bucket/k?X-Amz-Signature=1"), "http://127.0.0.1:9000");
        assert_eq!(super::origin_of("https://b.s3.eu-west-1.amazonaws.com/k"), "https://b.s3.eu-west-1.amazonaws.com");
    }
}
