//! The gateway's way to its embedded local KMS: an HTTP connector for the
//! official `aws-sdk-kms` client that hands each request to [`dispatch`]
//! inside the process. The client code path (serialization, retries,
//! timeouts, error parsing) is the one used against AWS KMS, and no socket
//! exists that another local process could call.

use std::sync::Arc;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;

use super::http::{dispatch, CONTENT_TYPE};
use super::LocalKms;

#[derive(Clone)]
pub struct InProcess(Arc<LocalKms>);

impl std::fmt::Debug for InProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InProcess(local KMS)")
    }
}

impl InProcess {
    pub fn client(kms: Arc<LocalKms>) -> SharedHttpClient {
        SharedHttpClient::new(InProcess(kms))
    }
}

impl HttpClient for InProcess {
    fn http_connector(&self, _: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

impl HttpConnector for InProcess {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let kms = self.0.clone();
        HttpConnectorFuture::new(async move {
            let target = request.headers().get("x-amz-target").map(str::to_owned);
            // The SDK's JSON requests are in memory, never streamed.
            let body = request
                .body()
                .bytes()
                .map(<[u8]>::to_vec)
                .ok_or_else(|| ConnectorError::other("a streamed body for the local KMS".into(), None))?;
            let a = tokio::task::spawn_blocking(move || dispatch(&kms, target.as_deref(), &body))
                .await
                .map_err(|e| ConnectorError::other(Box::new(e), None))?;
            let status = StatusCode::try_from(a.status).map_err(|e| ConnectorError::other(Box::new(e), None))?;
            let mut r = HttpResponse::new(status, SdkBody::from(a.body));
            r.headers_mut().insert("content-type", CONTENT_TYPE);
            if let Some(e) = a.error {
                r.headers_mut().insert("x-amzn-errortype", e);
            }
            Ok(r)
        })
    }
}
