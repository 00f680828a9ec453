//! The small HTTP client auth layers use to reach identity providers and authorization servers:
//! metadata, JWKS, introspection, token requests. Connections are the pack's outbound ones
//! ([`outbound`](crate::outbound)): rustls on aws-lc-rs with the system's roots plus any configured
//! CA bundle, through the egress proxy (`HTTPS_PROXY`/`NO_PROXY` or configured); bodies are
//! bounded; every call has a timeout.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::outbound::{self, Egress, OutboundConnector, TlsSettings};

/// Largest response body read from an identity provider.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

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

impl FetchError {
    /// A low-cardinality name of the failure (a trace's `error.type`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidUrl => "invalid_url",
            Self::Timeout => "timeout",
            Self::Transport(_) => "transport",
            Self::Status(_) => "status",
            Self::TooLarge => "too_large",
            Self::Json(_) => "json",
        }
    }
}

/// The TLS client could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TLS client setup failed: {0}")]
pub struct HttpClientError(pub String);

/// A fetched document and how long the server says it may be cached.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Fetched {
    /// The body.
    pub body: Bytes,
    /// `Cache-Control: max-age` (zero for `no-store` / `no-cache`), if sent.
    pub max_age: Option<Duration>,
}

/// A bounded HTTP/1.1 client over rustls (aws-lc-rs) with the system's CA roots. Cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<OutboundConnector, Full<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client whose every exchange (connect, send, read the whole body) ends within `timeout`:
    /// the system's roots, the proxy of the environment (`HTTPS_PROXY`, `NO_PROXY`...).
    pub fn new(timeout: Duration) -> Result<Self, HttpClientError> {
        Self::with_outbound(timeout, &Egress::from_env(), &TlsSettings::new())
    }

    /// A client connecting through `egress` and trusting `tls` (extra CA roots, client identity).
    pub fn with_outbound(timeout: Duration, egress: &Egress, tls: &TlsSettings) -> Result<Self, HttpClientError> {
        let connector = outbound::connector(egress, tls, timeout, false).map_err(|e| HttpClientError(e.to_string()))?;
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self { client, timeout })
    }

    /// The per-exchange timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// GETs a JSON document (status 200 only).
    pub async fn get_json(&self, url: &str) -> Result<Fetched, FetchError> {
        let uri: Uri = url.parse().map_err(|_| FetchError::InvalidUrl)?;
        let req = Request::get(uri)
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|_| FetchError::InvalidUrl)?;
        Self::ok(self.request(req).await?)
    }

    /// POSTs a form with HTTP Basic client authentication (RFC 6749 §2.3.1); status 200 only.
    pub async fn post_form(
        &self,
        url: &str,
        client_id: &str,
        client_secret: &str,
        form: &[(&str, &str)],
    ) -> Result<Fetched, FetchError> {
        let credentials = format!("{}:{}", form_encode(client_id), form_encode(client_secret));
        let mut req = form_request(url, form)?;
        let basic = http::HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(credentials)))
            .map_err(|_| FetchError::InvalidUrl)?;
        req.headers_mut().insert(header::AUTHORIZATION, basic);
        Self::ok(self.request(req).await?)
    }

    /// Sends any request and reads the whole (bounded) response, whatever its status: for
    /// endpoints whose error answers carry a body to read (an OAuth token endpoint's `400`).
    pub async fn request(&self, req: Request<Full<Bytes>>) -> Result<Response<Bytes>, FetchError> {
        let span = crate::trace::idp_call(req.method(), req.uri());
        let result = tracing::Instrument::instrument(self.exchange(req), span.clone()).await;
        if !span.is_disabled() {
            match &result {
                Ok(res) => {
                    span.record("http.response.status_code", i64::from(res.status().as_u16()));
                    if !res.status().is_success() {
                        span.record("error.type", res.status().as_str());
                        span.record("otel.status_code", "ERROR");
                    }
                }
                Err(e) => {
                    span.record("error.type", e.kind());
                    span.record("otel.status_code", "ERROR");
                }
            }
        }
        result
    }

    /// [`request`](Self::request) without a trace span: for the trace exporter's own requests
    /// (a span per export would be exported in turn).
    pub async fn exchange(&self, req: Request<Full<Bytes>>) -> Result<Response<Bytes>, FetchError> {
        let work = async {
            let res = self.client.request(req).await.map_err(|e| FetchError::Transport(error_chain(&e)))?;
            let (parts, body) = res.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
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
            Ok(Response::from_parts(parts, body))
        };
        tokio::time::timeout(self.timeout, work).await.map_err(|_| FetchError::Timeout)?
    }

    fn ok(res: Response<Bytes>) -> Result<Fetched, FetchError> {
        if res.status() != StatusCode::OK {
            return Err(FetchError::Status(res.status().as_u16()));
        }
        let max_age = max_age(res.headers());
        Ok(Fetched { body: res.into_body(), max_age })
    }
}

/// A `POST` of `form` (`application/x-www-form-urlencoded`, `Accept: application/json`) to `url`.
pub fn form_request(url: &str, form: &[(&str, &str)]) -> Result<Request<Full<Bytes>>, FetchError> {
    let uri: Uri = url.parse().map_err(|_| FetchError::InvalidUrl)?;
    let body: Vec<String> = form.iter().map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v))).collect();
    Request::post(uri)
        .header(header::ACCEPT, "application/json")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body.join("&"))))
        .map_err(|_| FetchError::InvalidUrl)
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    outbound::error_chain(e)
}

/// `Cache-Control: max-age` (zero with `no-store` / `no-cache`, which mean "do not reuse").
pub fn max_age(headers: &http::HeaderMap) -> Option<Duration> {
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
pub fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Decodes an `application/x-www-form-urlencoded` body into its pairs (`+` is a space). `None`
/// when a percent escape is broken or a name or value is not UTF-8.
pub fn form_decode(body: &[u8]) -> Option<Vec<(String, String)>> {
    fn unescape(part: &[u8]) -> Option<String> {
        let mut out = Vec::with_capacity(part.len());
        let mut i = 0;
        while i < part.len() {
            match part[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = part.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
                    let hex = std::str::from_utf8(hex).ok()?;
                    out.push(u8::from_str_radix(hex, 16).ok()?);
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).ok()
    }
    let mut pairs = Vec::new();
    for item in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let mut kv = item.splitn(2, |b| *b == b'=');
        let name = unescape(kv.next()?)?;
        let value = unescape(kv.next().unwrap_or_default())?;
        pairs.push((name, value));
    }
    Some(pairs)
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

    #[test]
    fn form_decoding() {
        let pairs = form_decode(b"a=1&b=x+y%2Fz&&c=&d&e=%C3%A9").expect("valid");
        let expected = [("a", "1"), ("b", "x y/z"), ("c", ""), ("d", ""), ("e", "é")];
        assert_eq!(pairs, expected.map(|(k, v)| (k.to_owned(), v.to_owned())));
        assert_eq!(form_decode(b"a=%2"), None, "truncated escape");
        assert_eq!(form_decode(b"a=%zz"), None, "not hex");
        assert_eq!(form_decode(b"a=%+1"), None, "a sign is not a hex digit");
        assert_eq!(form_decode(b"a=%FF"), None, "not UTF-8");
        assert_eq!(form_decode(b""), Some(Vec::new()));
        let round: Vec<(String, String)> = form_decode(form_encode("a b&c=d/é").as_bytes()).expect("valid");
        assert_eq!(round, [("a b&c=d/é".to_owned(), String::new())]);
    }
}
