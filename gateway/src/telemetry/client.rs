//! The OTLP exporters' HTTP client: the pack's own bounded rustls (aws-lc-rs) client, driven by a
//! small runtime of its own (the SDK's batch processors export from their own threads).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use mcp_enterprise_core::jwks::HttpClient;
use mcp_enterprise_core::outbound::{Egress, TlsSettings};
use opentelemetry_http::HttpError;

/// An `opentelemetry_http::HttpClient` over [`HttpClient`] (TLS on aws-lc-rs, the system's CA
/// roots and a configured CA file, the egress proxy, bounded bodies, a timeout per export).
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
    /// A client whose every export ends within `timeout`, connecting through `egress` and
    /// trusting `tls`'s extra CA roots besides the system's.
    pub fn new(timeout: Duration, egress: &Egress, tls: &TlsSettings) -> std::io::Result<Self> {
        let client = HttpClient::with_outbound(timeout, egress, tls).map_err(std::io::Error::other)?;
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
        let collector = request.uri().authority().map(|a| a.to_string()).unwrap_or_default();
        // the exporter's own requests are not traced: a span per export would be exported in turn
        let result = self
            .runtime
            .spawn(async move { client.exchange(request).await })
            .await
            .map_err(|e| -> HttpError { Box::new(e) })?;
        match result {
            Ok(response) => {
                if !response.status().is_success() {
                    tracing::warn!(%collector, status = response.status().as_u16(), "traces: the collector refused an export");
                }
                Ok(response)
            }
            Err(e) => {
                // a failed export is reported (the SDK itself logs nothing in this build)
                let error = mcp_enterprise_core::outbound::error_chain(&e);
                tracing::warn!(%collector, %error, "traces: an export to the collector failed");
                Err(Box::new(e))
            }
        }
    }
}
