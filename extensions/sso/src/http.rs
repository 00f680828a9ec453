//! The small HTTP client the layer uses to reach identity providers: metadata, JWKS and
//! introspection. TLS is rustls on aws-lc-rs with the system's roots; bodies are bounded; every
//! call has a timeout.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::error::SsoConfigError;

/// Largest response body read from an identity provider.
pub(crate) const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Why a fetch failed (never contains secrets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL is not valid.
    #[error("invalid URL")]
    InvalidUrl,
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// Connection or protocol failure.
    #[error("request failed: {0}")]
    Transport(String),
    /// The server answered with an error status.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The body is larger than allowed.
    #[error("response larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    /// The body is not the expected JSON.
    #[error("invalid JSON: {0}")]
    Json(String),
}

/// A fetched JSON document and how long the server says it may be cached.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) body: Bytes,
    pub(crate) max_age: Option<Duration>,
}

#[derive(Clone)]
pub(crate) struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl HttpClient {
    pub(crate) fn new(timeout: Duration) -> Result<Self, SsoConfigError> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            tracing::warn!("no system CA certificates found: https identity providers will be unreachable");
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| SsoConfigError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self { client, timeout })
    }

    /// GETs a JSON document.
    pub(crate) async fn get_json(&self, url: &str) -> Result<Fetched, FetchError> {
        let uri: Uri = url.parse().map_err(|_| FetchError::InvalidUrl)?;
        let req = Request::get(uri)
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|_| FetchError::InvalidUrl)?;
        self.send(req).await
    }

    /// POSTs a form with HTTP Basic client authentication (RFC 6749 §2.3.1).
    pub(crate) async fn post_form(
        &self,
        url: &str,
        client_id: &str,
        client_secret: &str,
        form: &[(&str, &str)],
    ) -> Result<Fetched, FetchError> {
        let uri: Uri = url.parse().map_err(|_| FetchError::InvalidUrl)?;
        let credentials = format!("{}:{}", form_encode(client_id), form_encode(client_secret));
        let body: Vec<String> = form.iter().map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v))).collect();
        let req = Request::post(uri)
            .header(header::ACCEPT, "application/json")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::AUTHORIZATION, format!("Basic {}", STANDARD.encode(credentials)))
            .body(Full::new(Bytes::from(body.join("&"))))
            .map_err(|_| FetchError::InvalidUrl)?;
        self.send(req).await
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> Result<Fetched, FetchError> {
        let work = async {
            let res = self.client.request(req).await.map_err(|e| FetchError::Transport(error_chain(&e)))?;
            let status = res.status();
            let max_age = max_age(res.headers());
            if status != StatusCode::OK {
                return Err(FetchError::Status(status.as_u16()));
            }
            let body = Limited::new(res.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        FetchError::TooLarge
                    } else {
                        FetchError::Transport(e.to_string())
                    }
                })?
                .to_bytes();
            Ok(Fetched { body, max_age })
        };
        tokio::time::timeout(self.timeout, work).await.map_err(|_| FetchError::Timeout)?
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// `Cache-Control: max-age` (ignored with `no-store` / `no-cache`, which mean "do not reuse").
fn max_age(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get(header::CACHE_CONTROL)?.to_str().ok()?;
    let mut age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(secs) = lower.strip_prefix("max-age=") {
            age = secs.trim_matches('"').parse::<u64>().ok().map(Duration::from_secs);
        }
    }
    age
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control() {
        let mut h = http::HeaderMap::new();
        assert_eq!(max_age(&h), None);
        h.insert(header::CACHE_CONTROL, "public, max-age=600".parse().expect("hv"));
        assert_eq!(max_age(&h), Some(Duration::from_secs(600)));
        h.insert(header::CACHE_CONTROL, "no-store".parse().expect("hv"));
        assert_eq!(max_age(&h), Some(Duration::ZERO));
    }

    #[test]
    fn form_encoding() {
        assert_eq!(form_encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
