//! The forwarding service: streams a request to the upstream MCP server and its response back.
//!
//! - Bodies stream both ways, SSE included; nothing is buffered here.
//! - Dropping the response (the client went away) drops the upstream response, which closes the
//!   upstream connection: the upstream sees the cancellation.
//! - Hop-by-hop headers are dropped (RFC 9110 §7.6.1). The caller's `Authorization`, `DPoP`,
//!   `Cookie` and `Proxy-Authorization` are **never** forwarded: token passthrough is forbidden by
//!   the MCP authorization spec. Every other header, `Mcp-Session-Id` and `Mcp-Param-*` included,
//!   is forwarded unchanged.
//! - The upstream gets the credential of the configured [`Propagation`] instead (a signed
//!   assertion for the caller, the gateway's own credential, or nothing); when it cannot be made,
//!   the call fails (`500`, JSON-RPC `-32603`) and nothing is sent upstream.
//! - The upstream must start its answer (status and headers) within the response timeout
//!   (default 300 s), else the call fails with `504` and the upstream request is dropped (its
//!   connection closed: the upstream sees the cancellation). A streamed (SSE) answer that has
//!   started is not cut: progress may legitimately run long.
//! - When the gateway stops, calls in flight finish within the grace period; what remains then is
//!   answered with a clear error (see [`drain`](crate::drain)).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mcp_enterprise_core::jsonrpc::codes;
use mcp_enterprise_core::outbound::{self, Egress, OutboundConnector, TlsSettings};
use mcp_enterprise_core::{BoxError, Denial, JsonRpcError, McpBody, McpRequest, Principal};
use tower_service::Service;

use crate::admin::Metrics;
use crate::drain::{Drain, DrainBody, Phase};
use crate::propagation::{self, Propagation};
use crate::telemetry;

/// How long the upstream may take to start answering, unless configured otherwise.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(300);

/// How long connecting to the upstream (TCP, proxy tunnel and TLS handshake) may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The body sent upstream.
type UpstreamBody = UnsyncBoxBody<Bytes, BoxError>;

/// Forwards requests under one path prefix to one upstream MCP endpoint. Cheap to clone (one
/// reference count): every layer of the pack clones the service inside it on each request.
#[derive(Clone, Debug)]
pub struct Proxy {
    shared: Arc<Shared>,
}

/// What every clone of a [`Proxy`] shares.
#[derive(Clone, Debug)]
struct Shared {
    client: Client<OutboundConnector, UpstreamBody>,
    upstream: Uri,
    /// Sent as `Host` instead of the upstream URL's authority.
    upstream_host: Option<http::HeaderValue>,
    prefix: String,
    /// The upstream URI of the prefix itself without a query (the usual request), made once.
    root_target: Option<Uri>,
    /// The upstream as named in errors (its host and route), made once.
    upstream_name: Arc<str>,
    propagation: Propagation,
    response_timeout: Duration,
    drain: Drain,
    /// The metrics and this route's label.
    metrics: Option<(Arc<Metrics>, Arc<String>)>,
}

/// The body of a proxied answer.
pub type ProxyBody = McpBody<DrainBody<Incoming>>;

impl Proxy {
    /// Forwards `{prefix}{rest}` to `{upstream path}{rest}`. `upstream` must be an absolute
    /// `http://` or `https://` URI (checked by the gateway builder); `https://` with the system's
    /// roots, through the environment's proxy.
    pub fn new(upstream: Uri, prefix: impl Into<String>) -> Self {
        #[allow(clippy::expect_used)] // the system roots and no client identity: nothing can fail
        let connector = outbound::connector(&Egress::from_env(), &TlsSettings::new(), DEFAULT_CONNECT_TIMEOUT, true)
            .expect("default TLS settings");
        Self::with_connector(upstream, prefix, connector)
    }

    /// [`new`](Self::new) with this connector (TLS settings, egress proxy, connect timeout).
    /// Connections are pooled (idle ones closed after 60 s); HTTP/2 when the upstream offers it
    /// by ALPN, else HTTP/1.1.
    pub fn with_connector(upstream: Uri, prefix: impl Into<String>, connector: OutboundConnector) -> Self {
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(60)).build(connector);
        let prefix = prefix.into();
        let shared = Shared {
            client,
            root_target: target_of(&upstream, "", None),
            upstream_name: upstream_name(&upstream, &prefix).into(),
            upstream,
            upstream_host: None,
            prefix,
            propagation: Propagation::None,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            drain: Drain::new(),
            metrics: None,
        };
        Self { shared: Arc::new(shared) }
    }

    /// The settings, to change while building (a clone of them if this proxy has been cloned).
    fn settings(&mut self) -> &mut Shared {
        Arc::make_mut(&mut self.shared)
    }

    /// Sends `host` as the upstream's `Host` (default: the upstream URL's authority).
    #[must_use]
    pub fn with_upstream_host(mut self, host: Option<http::HeaderValue>) -> Self {
        self.settings().upstream_host = host;
        self
    }

    /// Records upstream latency and errors in `metrics` (labelled with this proxy's path).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Option<Arc<Metrics>>) -> Self {
        let route = Arc::new(self.shared.prefix.clone());
        self.settings().metrics = metrics.map(|m| (m, route));
        self
    }

    /// Ends calls in flight when `drain` says so (a gateway's stop); by default nothing does.
    #[must_use]
    pub fn with_drain(mut self, drain: Drain) -> Self {
        self.settings().drain = drain;
        self
    }

    /// Fails a call with `504` when the upstream has not started its answer after `timeout`.
    #[must_use]
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.settings().response_timeout = timeout;
        self
    }

    /// Presents this credential to the upstream (default: none).
    #[must_use]
    pub fn with_propagation(mut self, propagation: Propagation) -> Self {
        self.settings().propagation = propagation;
        self
    }

    /// The upstream URI for a request path, or `None` when the path is not under the prefix.
    fn target(&self, uri: &Uri) -> Option<Uri> {
        let shared = &*self.shared;
        let rest = uri.path().strip_prefix(shared.prefix.as_str())?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        match (rest, uri.query()) {
            ("", None) => shared.root_target.clone(),
            (rest, query) => target_of(&shared.upstream, rest, query),
        }
    }
}

/// `upstream` with `rest` appended to its path and `query` (its own query dropped).
fn target_of(upstream: &Uri, rest: &str, query: Option<&str>) -> Option<Uri> {
    let base = upstream.path().trim_end_matches('/');
    let base = if base.is_empty() && rest.is_empty() { "/" } else { base };
    let pq = match query {
        Some(q) => format!("{base}{rest}?{q}"),
        None => format!("{base}{rest}"),
    };
    let mut parts = upstream.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(pq).ok()?);
    Uri::from_parts(parts).ok()
}

/// The upstream as named in errors: its route (the gateway path) and host.
fn upstream_name(upstream: &Uri, prefix: &str) -> String {
    let host = upstream.authority().map_or("", |a| a.as_str());
    format!("{host} (route {prefix})")
}

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The hop-by-hop headers removed whatever `Connection` names.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    KEEP_ALIVE,
    PROXY_CONNECTION,
];

/// Removes hop-by-hop headers, including those named by `Connection`.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // the usual message has none: one pass over its names (compared, not hashed) instead of a
    // lookup per hop-by-hop name; `Connection` is one of them, so what it names is handled below
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn error_response(status: StatusCode, mcp: Option<&McpRequest>, message: &str) -> Response<ProxyBody> {
    JsonRpcError::new(codes::INTERNAL_ERROR, message).with_id(mcp.and_then(|m| m.id().cloned())).into_response(status)
}

impl<B> Service<Request<B>> for Proxy
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let Some(target) = self.target(req.uri()) else {
            let response = JsonRpcError::new(codes::METHOD_NOT_FOUND, "no MCP endpoint at this path")
                .into_response(StatusCode::NOT_FOUND);
            return Box::pin(std::future::ready(Ok(response)));
        };
        let (mut parts, body) = req.into_parts();
        let mcp = McpRequest::take(&mut parts.extensions);
        strip_hop_by_hop(&mut parts.headers);
        // the credential for the upstream is worked out from the caller's (a token exchange needs
        // the validated token); then the caller's credentials are removed: never passed on
        let principal = parts.extensions.get::<Principal>().cloned();
        let mut inbound = http::HeaderMap::new();
        if matches!(self.shared.propagation, Propagation::TokenExchange(_)) {
            for value in parts.headers.get_all(header::AUTHORIZATION) {
                inbound.append(header::AUTHORIZATION, value.clone());
            }
        }
        propagation::strip_inbound_credentials(&mut parts.headers);
        // the upstream sees its own authority (or the configured override)
        parts.headers.remove(header::HOST);
        if let Some(host) = &self.shared.upstream_host {
            parts.headers.insert(header::HOST, host.clone());
        }
        // the upstream call's span continues the trace (headers and `params._meta`)
        let span = telemetry::upstream::span(&target);
        let rewritten = telemetry::upstream::inject(&span, &mut parts.headers, mcp.as_ref());
        parts.uri = target;
        parts.version = http::Version::HTTP_11;
        let shared = self.shared.clone();
        Box::pin(async move {
            let failed = |kind: &'static str| {
                if let Some((m, route)) = &shared.metrics {
                    m.upstream_failed(route, kind);
                }
            };
            match shared.propagation.credential(principal.as_ref(), mcp.as_ref(), &inbound).await {
                Ok(Some((name, value))) => {
                    parts.headers.insert(name, value);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, mode = shared.propagation.mode(), "no credential for the upstream");
                    let mut response = error_response(e.status(), mcp.as_ref(), e.public_message());
                    response.extensions_mut().insert(
                        Denial::new("gateway", format!("propagation: {e}")).with_jsonrpc_code(codes::INTERNAL_ERROR),
                    );
                    return Ok(response);
                }
            }
            drop(inbound);
            let body = match rewritten {
                Some(bytes) => http_body_util::Full::new(bytes).map_err(|never| match never {}).boxed_unsync(),
                None => body.map_err(Into::into).boxed_unsync(),
            };
            let upstream_req = Request::from_parts(parts, body);
            let asked = std::time::Instant::now();
            let request = tracing::Instrument::instrument(shared.client.request(upstream_req), span.clone());
            let answer = tokio::select! {
                answer = tokio::time::timeout(shared.response_timeout, request) => answer,
                () = shared.drain.reached(Phase::Expired) => {
                    tracing::warn!("stopping: the grace period ended before the upstream answered");
                    failed("shutdown");
                    return Ok(Drain::expired_answer(mcp.as_ref().and_then(|m| m.id().cloned())));
                }
            };
            if !span.is_disabled() {
                match &answer {
                    Ok(Ok(response)) => {
                        span.record("http.response.status_code", i64::from(response.status().as_u16()));
                        if response.status().is_client_error() || response.status().is_server_error() {
                            span.record("error.type", response.status().as_str());
                            span.record("otel.status_code", "ERROR");
                        }
                    }
                    Ok(Err(e)) => {
                        span.record("error.type", if e.is_connect() { "unreachable" } else { "failed" });
                        span.record("otel.status_code", "ERROR");
                    }
                    Err(_) => {
                        span.record("error.type", "timeout");
                        span.record("otel.status_code", "ERROR");
                    }
                }
            }
            drop(span);
            let Ok(answer) = answer else {
                failed("timeout");
                tracing::warn!(
                    timeout_secs = shared.response_timeout.as_secs(),
                    "the upstream did not start its answer in time"
                );
                return Ok(error_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    mcp.as_ref(),
                    "the upstream MCP server did not answer in time",
                ));
            };
            match answer {
                Ok(response) => {
                    if let Some((m, route)) = &shared.metrics {
                        m.upstream_answered(route, asked.elapsed().as_secs_f64());
                    }
                    let (mut parts, body) = response.into_parts();
                    strip_hop_by_hop(&mut parts.headers);
                    let sse = parts
                        .headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| {
                            v.trim_start().get(..17).is_some_and(|t| t.eq_ignore_ascii_case("text/event-stream"))
                        })
                        .then(|| mcp.as_ref().and_then(|m| m.id().cloned()));
                    Ok(Response::from_parts(parts, McpBody::new(DrainBody::new(body, shared.drain.clone(), sse))))
                }
                Err(e) => {
                    let upstream_name = &shared.upstream_name;
                    let tls = outbound::tls_failure(&e);
                    failed(if tls.is_some() {
                        "tls"
                    } else if e.is_connect() {
                        "unreachable"
                    } else {
                        "failed"
                    });
                    let message = match (&tls, e.is_connect()) {
                        (Some(why), _) => {
                            format!("the TLS handshake with the upstream MCP server {upstream_name} failed: {why}")
                        }
                        (None, true) => format!("the upstream MCP server {upstream_name} is unreachable"),
                        (None, false) => format!("the upstream MCP server {upstream_name} failed to answer"),
                    };
                    tracing::warn!(error = %outbound::error_chain(&e), upstream = %upstream_name, "upstream request failed");
                    Ok(error_response(StatusCode::BAD_GATEWAY, mcp.as_ref(), &message))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_mapping() {
        let p = Proxy::new("http://127.0.0.1:9/upstream/mcp".parse().expect("uri"), "/mcp");
        let t = |s: &str| p.target(&s.parse().expect("uri")).map(|u| u.to_string());
        assert_eq!(t("/mcp").as_deref(), Some("http://127.0.0.1:9/upstream/mcp"));
        assert_eq!(t("/mcp?x=1").as_deref(), Some("http://127.0.0.1:9/upstream/mcp?x=1"));
        assert_eq!(t("/mcp/server-card").as_deref(), Some("http://127.0.0.1:9/upstream/mcp/server-card"));
        assert_eq!(t("/mcpx"), None);
        assert_eq!(t("/other"), None);
        let root = Proxy::new("http://127.0.0.1:9".parse().expect("uri"), "/mcp");
        assert_eq!(
            root.target(&"/mcp".parse().expect("uri")).map(|u| u.to_string()).as_deref(),
            Some("http://127.0.0.1:9/")
        );
    }

    #[test]
    fn hop_by_hop_headers_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, x-private".parse().expect("hv"));
        h.insert("x-private", "1".parse().expect("hv"));
        h.insert("keep-alive", "timeout=5".parse().expect("hv"));
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().expect("hv"));
        h.insert("mcp-session-id", "abc".parse().expect("hv"));
        h.insert("mcp-param-region", "eu".parse().expect("hv"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2);
        assert!(h.contains_key("mcp-session-id") && h.contains_key("mcp-param-region"));
    }

    #[test]
    fn each_hop_by_hop_header_alone_is_dropped() {
        for name in ["connection", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding"]
            .into_iter()
            .chain(["upgrade", "keep-alive", "proxy-connection", "Keep-Alive", "Proxy-Connection", "TE"])
        {
            let mut h = HeaderMap::new();
            h.insert(HeaderName::from_bytes(name.as_bytes()).expect("name"), "x".parse().expect("hv"));
            h.insert("mcp-session-id", "abc".parse().expect("hv"));
            strip_hop_by_hop(&mut h);
            assert_eq!(h.len(), 1, "{name}");
            assert!(h.contains_key("mcp-session-id"), "{name}");
        }
        // nothing hop-by-hop: untouched
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "DPoP a".parse().expect("hv"));
        h.insert("dpop", "b".parse().expect("hv"));
        h.insert("keep-alive-x", "c".parse().expect("hv"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 3);
    }
}
