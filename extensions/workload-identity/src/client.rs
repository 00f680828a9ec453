//! The client side of SEP-1933: a token source that exchanges the platform's workload JWT (a
//! Kubernetes projected service-account token, a SPIFFE JWT-SVID written to a file) for an access
//! token with the jwt-bearer grant, and a tower layer that puts that token on outgoing requests.
//!
//! - The assertion file is read again for every grant, so a rotated token (the kubelet or the
//!   SPIFFE helper rewrites the file) is picked up; its contents are never logged.
//! - The grant sends `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`, `assertion`,
//!   `resource` and `scope`; no client authentication.
//! - The access token is cached until shortly before it expires; concurrent callers share one
//!   grant (single flight).
//! - A refusal by the authorization server is not retried with the same assertion (nor with
//!   another grant type): it is returned again until the file holds a new assertion. Transport
//!   failures are retried after a short pause.
//!
//! # With DPoP
//!
//! The grant goes through a pluggable [`TokenTransport`]. Wrap the HTTP client in the `dpop`
//! crate's `DpopClientLayer` and pass it as a [`ServiceTransport`]: the token request then
//! carries a proof and the authorization server can bind the token to the key (`token_type:
//! DPoP`). Put [`WorkloadTokenLayer`] **outside** the same `DpopClientLayer` on the MCP client:
//! it writes `Authorization: DPoP <token>` for a DPoP-bound token, and the DPoP layer inside then
//! adds a proof with `ath` for it.
//!
//! ```text
//! ServiceBuilder::new()
//!     .layer(WorkloadTokenLayer::new(source))   // Authorization: Bearer|DPoP <token>
//!     .layer(DpopClientLayer::new(signer))      // DPoP: <proof with ath>
//!     .service(http_client)
//! ```

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use mcp_enterprise_core::BoxError;
use mcp_enterprise_core::clock::{Clock, SystemClock};
use mcp_enterprise_core::jwks::{self, FetchError, HttpClient, MAX_RESPONSE_BYTES, form_request};
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::WorkloadConfigError;
use crate::grant::JWT_BEARER_GRANT_TYPE;
use crate::replay::BoxFuture;
use crate::token_cache::TokenCache;
use crate::trust::check_url;

/// Largest assertion file read.
const MAX_ASSERTION_BYTES: u64 = 64 * 1024;

/// Why no access token could be obtained. Never contains the assertion or a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenSourceError {
    /// The assertion file is missing, unreadable, too large or not a JWT.
    #[error("workload assertion: {0}")]
    Assertion(String),
    /// The authorization server refused the grant (RFC 6749 §5.2 error).
    #[error("the authorization server refused the grant: {error}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The OAuth error code (`invalid_grant`, `unauthorized_client`, `invalid_scope`, …).
        error: String,
        /// `error_description`, if any.
        description: Option<String>,
    },
    /// The enterprise IdP refused the employee's refresh token (revoked, expired, already used…):
    /// only a new sign-in helps, so it is not retried with that refresh token.
    #[error("the identity provider refused the refresh token: {error}{}; the employee must sign in again", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    RefreshRefused {
        /// HTTP status.
        status: u16,
        /// The OAuth error code (`invalid_grant`, …).
        error: String,
        /// `error_description`, if any.
        description: Option<String>,
    },
    /// The authorization server could not be reached.
    #[error("token request failed: {0}")]
    Transport(String),
    /// The token response is not usable.
    #[error("invalid token response: {0}")]
    InvalidResponse(&'static str),
}

/// How the token request reaches the authorization server.
pub trait TokenTransport: Send + Sync + fmt::Debug + 'static {
    /// Sends the request and returns the whole (bounded) response, whatever its status.
    fn send(&self, request: Request<Full<Bytes>>) -> BoxFuture<'_, Result<Response<Bytes>, TokenSourceError>>;
}

impl TokenTransport for HttpClient {
    fn send(&self, request: Request<Full<Bytes>>) -> BoxFuture<'_, Result<Response<Bytes>, TokenSourceError>> {
        Box::pin(async move {
            self.request(request).await.map_err(|e: FetchError| TokenSourceError::Transport(e.to_string()))
        })
    }
}

/// Any tower HTTP client service as a [`TokenTransport`] (e.g. one wrapped in a DPoP client layer).
#[derive(Clone)]
pub struct ServiceTransport<S> {
    service: S,
    timeout: Duration,
}

impl<S> fmt::Debug for ServiceTransport<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceTransport").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl<S> ServiceTransport<S> {
    /// Sends token requests through `service`, each bounded by `timeout`.
    pub fn new(service: S, timeout: Duration) -> Self {
        Self { service, timeout }
    }
}

impl<S, ResB> TokenTransport for ServiceTransport<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResB>> + Clone + Send + Sync + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    ResB: Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    fn send(&self, request: Request<Full<Bytes>>) -> BoxFuture<'_, Result<Response<Bytes>, TokenSourceError>> {
        let mut service = self.service.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let work = async move {
                std::future::poll_fn(|cx| service.poll_ready(cx))
                    .await
                    .map_err(|e| TokenSourceError::Transport(e.into().to_string()))?;
                let res = service.call(request).await.map_err(|e| TokenSourceError::Transport(e.into().to_string()))?;
                let (parts, body) = res.into_parts();
                let body = Limited::new(body, MAX_RESPONSE_BYTES)
                    .collect()
                    .await
                    .map_err(|e| TokenSourceError::Transport(e.to_string()))?
                    .to_bytes();
                Ok(Response::from_parts(parts, body))
            };
            tokio::time::timeout(timeout, work).await.map_err(|_| TokenSourceError::Transport("timed out".into()))?
        })
    }
}

/// An access token from the authorization server. Its value never shows in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    value: String,
    dpop: bool,
    expires_at: Duration,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token_type", &if self.dpop { "DPoP" } else { "Bearer" })
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl AccessToken {
    /// The token.
    pub fn secret(&self) -> &str {
        &self.value
    }

    /// Whether it is DPoP-bound (`token_type: DPoP`).
    pub fn is_dpop(&self) -> bool {
        self.dpop
    }

    /// When it expires (since the epoch).
    pub fn expires_at(&self) -> Duration {
        self.expires_at
    }

    /// The `Authorization` header value: `Bearer <token>` or `DPoP <token>`.
    pub fn authorization(&self) -> Option<HeaderValue> {
        let scheme = if self.dpop { "DPoP" } else { "Bearer" };
        let mut value = HeaderValue::from_str(&format!("{scheme} {}", self.value)).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

struct SourceInner {
    file: AssertionFile,
    token_endpoint: String,
    resource: String,
    scope: Option<String>,
    refresh_margin: Duration,
    transport: Arc<dyn TokenTransport>,
    clock: Arc<dyn Clock>,
    cache: TokenCache,
}

/// The platform's workload JWT file (a Kubernetes projected service-account token, a SPIFFE
/// JWT-SVID written by the SPIFFE helper): read again on every use, so a rotated token is picked
/// up; bounded to 64 KiB; its contents must be one compact JWT and are never logged.
///
/// [`WorkloadTokenSource`] presents it in the jwt-bearer grant; a gateway can present it as its
/// RFC 7523 client assertion at a token endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct AssertionFile {
    path: PathBuf,
}

impl fmt::Debug for AssertionFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AssertionFile").field(&self.path).finish()
    }
}

impl AssertionFile {
    /// The file at `path` (not read yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Where the file is.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Reads the current assertion.
    pub async fn read(&self) -> Result<String, TokenSourceError> {
        let path = &self.path;
        let unreadable = |e: std::io::Error| TokenSourceError::Assertion(format!("{}: {e}", path.display()));
        let meta = tokio::fs::metadata(path).await.map_err(unreadable)?;
        self.check_size(meta.len())?;
        let text = tokio::fs::read_to_string(path).await.map_err(unreadable)?;
        self.check(&text)
    }

    /// Reads the current assertion without an async runtime (start-up checks).
    pub fn read_blocking(&self) -> Result<String, TokenSourceError> {
        let path = &self.path;
        let unreadable = |e: std::io::Error| TokenSourceError::Assertion(format!("{}: {e}", path.display()));
        let meta = std::fs::metadata(path).map_err(unreadable)?;
        self.check_size(meta.len())?;
        let text = std::fs::read_to_string(path).map_err(unreadable)?;
        self.check(&text)
    }

    fn check_size(&self, len: u64) -> Result<(), TokenSourceError> {
        if len > MAX_ASSERTION_BYTES {
            return Err(TokenSourceError::Assertion(format!(
                "{} is larger than {MAX_ASSERTION_BYTES} bytes",
                self.path.display()
            )));
        }
        Ok(())
    }

    fn check(&self, text: &str) -> Result<String, TokenSourceError> {
        let assertion = text.trim();
        if assertion.len() as u64 > MAX_ASSERTION_BYTES
            || jwks::split_compact(assertion).is_err()
            || !assertion.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(TokenSourceError::Assertion(format!("{} does not hold a compact JWT", self.path.display())));
        }
        Ok(assertion.to_owned())
    }
}

/// Exchanges a workload JWT file for access tokens (see the module documentation). Cheap to clone.
#[derive(Clone)]
pub struct WorkloadTokenSource {
    inner: Arc<SourceInner>,
}

impl fmt::Debug for WorkloadTokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadTokenSource")
            .field("file", &self.inner.file.path())
            .field("token_endpoint", &self.inner.token_endpoint)
            .field("resource", &self.inner.resource)
            .field("scope", &self.inner.scope)
            .finish_non_exhaustive()
    }
}

impl WorkloadTokenSource {
    /// A source reading the workload JWT from `file`, granting at `token_endpoint` for
    /// `resource` (the MCP server's canonical URI).
    pub fn builder(file: impl Into<PathBuf>, token_endpoint: &str, resource: &str) -> WorkloadTokenSourceBuilder {
        WorkloadTokenSourceBuilder {
            file: file.into(),
            token_endpoint: token_endpoint.to_owned(),
            resource: resource.to_owned(),
            scopes: Vec::new(),
            refresh_margin: Duration::from_secs(30),
            retry_pause: Duration::from_secs(5),
            http_timeout: Duration::from_secs(10),
            transport: None,
            clock: Arc::new(SystemClock),
            insecure_http_loopback: false,
        }
    }

    /// An access token: the cached one while it is fresh, otherwise a new grant (one at a time).
    pub async fn token(&self) -> Result<AccessToken, TokenSourceError> {
        let endpoint = &self.inner.token_endpoint;
        self.inner
            .cache
            .get(
                self.read_assertion(),
                |assertion| async move { self.grant(&assertion).await },
                |error| {
                    tracing::warn!(%error, token_endpoint = %endpoint, "workload token grant failed");
                },
            )
            .await
    }

    /// Forgets the cached access token if it is `token` (e.g. after the server answered
    /// `invalid_token`), so the next request makes a new grant.
    pub fn invalidate(&self, token: &AccessToken) {
        self.inner.cache.invalidate(token);
    }

    async fn read_assertion(&self) -> Result<String, TokenSourceError> {
        self.inner.file.read().await
    }

    async fn grant(&self, assertion: &str) -> Result<(AccessToken, Duration), TokenSourceError> {
        let inner = &self.inner;
        let mut form = vec![
            ("grant_type", JWT_BEARER_GRANT_TYPE),
            ("assertion", assertion),
            ("resource", inner.resource.as_str()),
        ];
        if let Some(scope) = &inner.scope {
            form.push(("scope", scope));
        }
        let request = form_request(&inner.token_endpoint, &form)
            .map_err(|_| TokenSourceError::Transport("invalid token endpoint URL".into()))?;
        let response = inner.transport.send(request).await?;
        parse_token_response(&response, inner.clock.now(), inner.refresh_margin)
    }
}

/// The refusal of an RFC 6749 §5.2 error response (`Transport` when it is not one).
pub(crate) fn refusal(response: &Response<Bytes>) -> TokenSourceError {
    let status = response.status();
    let body: Option<Value> = serde_json::from_slice(response.body()).ok();
    let text = |k: &str| body.as_ref().and_then(|b| b.get(k)).and_then(Value::as_str);
    match text("error") {
        Some(error) => TokenSourceError::Rejected {
            status: status.as_u16(),
            error: error.chars().take(64).collect(),
            description: text("error_description").map(|d| d.chars().take(256).collect()),
        },
        None => TokenSourceError::Transport(format!("HTTP status {}", status.as_u16())),
    }
}

/// An access token response (RFC 6749 §5.1): the token and when to refresh it (`margin` before
/// it expires, at most half its lifetime).
pub(crate) fn parse_token_response(
    response: &Response<Bytes>,
    now: Duration,
    refresh_margin: Duration,
) -> Result<(AccessToken, Duration), TokenSourceError> {
    if response.status() != StatusCode::OK {
        return Err(refusal(response));
    }
    let body: Value = serde_json::from_slice(response.body())
        .map_err(|_| TokenSourceError::InvalidResponse("the body is not JSON"))?;
    let value = body
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)))
        .ok_or(TokenSourceError::InvalidResponse("no usable access_token"))?;
    let dpop = match body.get("token_type").and_then(Value::as_str) {
        Some(t) if t.eq_ignore_ascii_case("bearer") => false,
        Some(t) if t.eq_ignore_ascii_case("dpop") => true,
        _ => return Err(TokenSourceError::InvalidResponse("token_type is neither Bearer nor DPoP")),
    };
    // without expires_in the token is used for a minute; more than a day is capped
    let lifetime = match body.get("expires_in") {
        None => Duration::from_secs(60),
        Some(v) => Duration::from_secs(
            v.as_u64()
                .filter(|s| *s > 0)
                .ok_or(TokenSourceError::InvalidResponse("expires_in is not a positive integer"))?,
        )
        .min(Duration::from_secs(24 * 3600)),
    };
    let margin = refresh_margin.min(lifetime / 2);
    let token = AccessToken { value: value.to_owned(), dpop, expires_at: now + lifetime };
    Ok((token, now + lifetime - margin))
}

/// Builds a [`WorkloadTokenSource`].
#[must_use]
pub struct WorkloadTokenSourceBuilder {
    file: PathBuf,
    token_endpoint: String,
    resource: String,
    scopes: Vec<String>,
    refresh_margin: Duration,
    retry_pause: Duration,
    http_timeout: Duration,
    transport: Option<Arc<dyn TokenTransport>>,
    clock: Arc<dyn Clock>,
    insecure_http_loopback: bool,
}

impl fmt::Debug for WorkloadTokenSourceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadTokenSourceBuilder").field("file", &self.file).finish_non_exhaustive()
    }
}

impl WorkloadTokenSourceBuilder {
    /// Requests this scope. Repeatable.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// How long before expiry a new token is fetched (default 30 s; at most half the lifetime).
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// Pause after a transport failure before the next grant attempt (default 5 s).
    pub fn retry_pause(mut self, pause: Duration) -> Self {
        self.retry_pause = pause;
        self
    }

    /// Timeout of the token request with the default transport (default 10 s).
    pub fn http_timeout(mut self, timeout: Duration) -> Self {
        self.http_timeout = timeout;
        self
    }

    /// Sends token requests through `transport` (e.g. a [`ServiceTransport`] with DPoP).
    pub fn transport(mut self, transport: Arc<dyn TokenTransport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// The clock (tests inject a manual one).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// **Insecure**: allows a plain-http token endpoint on `127.0.0.1` (tests).
    pub fn insecure_http_loopback(mut self) -> Self {
        self.insecure_http_loopback = true;
        self
    }

    /// Checks and builds. Nothing is read or requested yet.
    pub fn build(self) -> Result<WorkloadTokenSource, WorkloadConfigError> {
        check_url(&self.token_endpoint, self.insecure_http_loopback).map_err(|reason| WorkloadConfigError::Url {
            what: "token endpoint",
            value: self.token_endpoint.clone(),
            reason,
        })?;
        if self.resource.parse::<http::Uri>().map_or(true, |u| u.scheme().is_none() || u.host().is_none()) {
            return Err(WorkloadConfigError::Url {
                what: "resource",
                value: self.resource.clone(),
                reason: "must be an absolute URI".into(),
            });
        }
        for scope in &self.scopes {
            if !mcp_enterprise_core::challenge::is_scope_token(scope) {
                return Err(WorkloadConfigError::Limit { what: "scope", reason: "not a valid scope token" });
            }
        }
        let transport = match self.transport {
            Some(t) => t,
            None => Arc::new(HttpClient::new(self.http_timeout).map_err(|e| WorkloadConfigError::Http(e.to_string()))?),
        };
        let scope = (!self.scopes.is_empty()).then(|| self.scopes.join(" "));
        Ok(WorkloadTokenSource {
            inner: Arc::new(SourceInner {
                file: AssertionFile::new(self.file),
                token_endpoint: self.token_endpoint,
                resource: self.resource,
                scope,
                refresh_margin: self.refresh_margin,
                transport,
                cache: TokenCache::new(self.clock.clone(), self.retry_pause),
                clock: self.clock,
            }),
        })
    }
}

/// Puts the source's access token on every outgoing request (`Authorization: Bearer <token>`, or
/// `DPoP <token>` for a DPoP-bound token) and forgets it when the server answers `401` with
/// `error="invalid_token"`.
#[derive(Clone, Debug)]
#[must_use]
pub struct WorkloadTokenLayer {
    source: WorkloadTokenSource,
}

impl WorkloadTokenLayer {
    /// Attaches tokens from `source`.
    pub fn new(source: WorkloadTokenSource) -> Self {
        Self { source }
    }
}

impl<S> Layer<S> for WorkloadTokenLayer {
    type Service = WorkloadToken<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WorkloadToken { inner, source: self.source.clone() }
    }
}

/// The service made by [`WorkloadTokenLayer`]. Its error type must absorb [`TokenSourceError`]
/// (e.g. a boxed error).
#[derive(Clone, Debug)]
pub struct WorkloadToken<S> {
    inner: S,
    source: WorkloadTokenSource,
}

pub(crate) fn says_invalid_token(res_headers: &http::HeaderMap) -> bool {
    res_headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("error=\"invalid_token\""))
}

impl<S, B, ResB> Service<Request<B>> for WorkloadToken<S>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: From<TokenSourceError>,
    B: Send + 'static,
    ResB: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<ResB>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut service = std::mem::replace(&mut self.inner, clone);
        let source = self.source.clone();
        Box::pin(async move {
            let token = source.token().await?;
            let value =
                token.authorization().ok_or(TokenSourceError::InvalidResponse("token not usable in a header"))?;
            req.headers_mut().insert(header::AUTHORIZATION, value);
            let response = service.call(req).await?;
            if response.status() == StatusCode::UNAUTHORIZED && says_invalid_token(response.headers()) {
                source.invalidate(&token);
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn assertion_files_are_read_fresh_bounded_and_checked() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("token");
        let file = AssertionFile::new(&path);
        let missing = file.read_blocking().expect_err("no file yet");
        assert!(matches!(&missing, TokenSourceError::Assertion(m) if m.contains("token")), "{missing}");
        assert_eq!(file.read().await.expect_err("no file yet"), missing);

        // surrounding whitespace (a trailing newline) is not part of the JWT
        std::fs::write(&path, "aGVhZGVy.Y2xhaW1z.c2ln\n").expect("write");
        assert_eq!(file.read().await.expect("jwt"), "aGVhZGVy.Y2xhaW1z.c2ln");
        assert_eq!(file.read_blocking().expect("jwt"), "aGVhZGVy.Y2xhaW1z.c2ln");
        // rewritten by the platform: the next read sees the new one
        std::fs::write(&path, "bmV3.Y2xhaW1z.c2ln").expect("write");
        assert_eq!(file.read().await.expect("jwt"), "bmV3.Y2xhaW1z.c2ln");

        for bad in ["not a jwt", "a.b", "a.b.c.d", "a.b c.d", "a.b.c\u{0}"] {
            std::fs::write(&path, bad).expect("write");
            let err = file.read().await.expect_err(bad);
            assert!(!err.to_string().contains(bad.trim()), "the contents are never echoed: {err}");
            assert_eq!(file.read_blocking().expect_err(bad), err);
        }
        std::fs::write(&path, "a".repeat(MAX_ASSERTION_BYTES as usize + 1)).expect("write");
        let err = file.read().await.expect_err("too large");
        assert!(err.to_string().contains("larger than"), "{err}");
        assert!(!format!("{file:?}").is_empty());
    }
}
