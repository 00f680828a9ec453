//! The OTLP exporters' HTTP client: the pack's own bounded rustls (aws-lc-rs) client, driven by a
//! small runtime of its own (the SDK's batch processors export from their own threads).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use mcp_enterprise_core::jwks::HttpClient;
use opentelemetry_http::HttpError;

/// An `opentelemetry_http::HttpClient` over [`HttpClient`] (TLS on aws-lc-rs, the system's CA
/// roots, bounded bodies, a timeout per export).
#[derive(Clone)]
pub struct OtlpHttpClient {
    client: HttpClient,
    runtime: Arc<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for OtlpHttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpHttpClient").field("client", &self.client).finish_non_exhaustive()
    }
}

impl OtlpHttpClient {
    /// A client whose every export ends within `timeout`.
    pub fn new(timeout: Duration) -> std::io::Result<Self> {
        let client = HttpClient::new(timeout).map_err(std::io::Error::other)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mcpe-otlp")
            .enable_all()
            .build()?;
        Ok(Self { client, runtime: Arc::new(runtime) })
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OtlpHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let request = request.map(Full::new);
        // the exporter's own requests are not traced: a span per export would be exported in turn
        self.runtime
            .spawn(async move { client.exchange(request).await })
            .await
            .map_err(|e| -> HttpError { Box::new(e) })?
            .map_err(|e| -> HttpError { Box::new(e) })
    }
}
