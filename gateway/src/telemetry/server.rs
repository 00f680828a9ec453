//! [`TraceLayer`]: the server span of every request, outside the audit layer.
//!
//! The span continues the caller's trace: the W3C context in the message's `params._meta`
//! (`traceparent`/`tracestate`, per the OpenTelemetry MCP conventions) is the parent, else the one
//! in the `traceparent`/`tracestate` headers; when both are there and differ, the headers' becomes
//! a link. The span's ids go into the request extensions ([`SpanIds`]) for the audit record, and
//! the span stays open until the response body ends (streams included).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use mcp_enterprise_config::TracePrincipal;
use mcp_enterprise_core::trace::{SpanIds, TARGET};
use mcp_enterprise_core::{BoxError, Denial, JsonRpcId, McpRequest, Principal};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::TraceSettings;

/// Bodies up to this size are read for the `_meta` trace context before the request goes on;
/// larger ones go on unread (their trace context comes from the headers).
const PEEK_LIMIT: usize = 64 * 1024;

/// Puts a server span around every request (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceLayer {
    settings: TraceSettings,
}

impl TraceLayer {
    /// The layer, with what the spans carry.
    pub fn new(settings: TraceSettings) -> Self {
        Self { settings }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = TraceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceService { inner, settings: self.settings }
    }
}

/// The service of [`TraceLayer`].
#[derive(Debug, Clone)]
pub struct TraceService<S> {
    inner: S,
    settings: TraceSettings,
}

impl<S, ResB> Service<Request<Body>> for TraceService<S>
where
    S: Service<Request<Body>, Response = Response<ResB>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let settings = self.settings;
        Box::pin(async move {
            let span = server_span();
            if span.is_disabled() {
                // no exporter listens: nothing to continue or record
                return Ok(inner.call(req).await?.map(Body::new));
            }
            let (mut parts, body) = req.into_parts();
            let (body, meta) = if parts.method == http::Method::POST { peek(body).await } else { (body, None) };
            let propagator = TraceContextPropagator::new();
            let from_headers = propagator.extract(&opentelemetry_http::HeaderExtractor(&parts.headers));
            let from_meta = meta.map(|m| propagator.extract(&m));
            let remote = |cx: &opentelemetry::Context| cx.span().span_context().is_valid();
            let parent = match from_meta {
                Some(meta) if remote(&meta) => {
                    let headers = from_headers.span().span_context().clone();
                    if headers.is_valid() && headers.trace_id() != meta.span().span_context().trace_id() {
                        span.add_link(headers);
                    }
                    meta
                }
                _ => from_headers,
            };
            let _ = span.set_parent(parent);
            let cx = span.context();
            let own = cx.span().span_context().clone();
            if let Some(ids) = SpanIds::new(own.trace_id().to_bytes(), own.span_id().to_bytes()) {
                parts.extensions.insert(ids);
            }
            if let Some(v) = parts.headers.get("mcp-session-id").and_then(|v| v.to_str().ok()) {
                span.record("mcp.session.id", v);
            }
            if let Some(v) = parts.headers.get("mcp-protocol-version").and_then(|v| v.to_str().ok()) {
                span.record("mcp.protocol.version", v);
            }
            span.record("network.protocol.version", version(parts.version));
            let req = Request::from_parts(parts, body);
            let future = span.in_scope(|| inner.call(req));
            let response = future.instrument(span.clone()).await?;
            describe(&span, &response, settings);
            // the span ends with the response body (a stream's last event)
            Ok(response.map(|b| Body::new(SpanBody { inner: b, span })))
        })
    }
}

/// The server span, its attributes to be recorded (OpenTelemetry MCP conventions).
fn server_span() -> tracing::Span {
    tracing::trace_span!(
        target: TARGET,
        "server",
        otel.name = "mcp",
        otel.kind = "server",
        otel.status_code = Empty,
        otel.status_description = Empty,
        mcp.method.name = Empty,
        mcp.session.id = Empty,
        mcp.protocol.version = Empty,
        mcp.resource.uri = Empty,
        jsonrpc.request.id = Empty,
        gen_ai.tool.name = Empty,
        gen_ai.prompt.name = Empty,
        gen_ai.operation.name = Empty,
        error.type = Empty,
        rpc.response.status_code = Empty,
        http.response.status_code = Empty,
        network.transport = "tcp",
        network.protocol.name = "http",
        network.protocol.version = Empty,
        enduser.id = Empty,
        mcp_enterprise.client.id = Empty,
        mcp_enterprise.denied_by = Empty,
    )
}

fn version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// Records what the response says about the call: the parsed message (inspection puts it into
/// the response extensions), the principal, a refusal.
fn describe<B>(span: &tracing::Span, response: &Response<B>, settings: TraceSettings) {
    let ext = response.extensions();
    let status = response.status();
    // integers as i64: tracing-opentelemetry records other integer types as text
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if let Some(mcp) = ext.get::<McpRequest>() {
        if let Some(method) = mcp.method() {
            span.record("mcp.method.name", method);
            let name = match (method, mcp.name()) {
                ("tools/call", Some(tool)) => {
                    span.record("gen_ai.tool.name", tool);
                    span.record("gen_ai.operation.name", "execute_tool");
                    format!("{method} {tool}")
                }
                ("prompts/get", Some(prompt)) => {
                    span.record("gen_ai.prompt.name", prompt);
                    format!("{method} {prompt}")
                }
                _ => method.to_owned(),
            };
            // the span has started: its name is changed on the OpenTelemetry span itself
            span.context().span().update_name(name);
        }
        if let Some(uri) = mcp.uri() {
            span.record("mcp.resource.uri", uri);
        }
        match mcp.id() {
            Some(JsonRpcId::Number(n)) => {
                span.record("jsonrpc.request.id", n.to_string());
            }
            Some(JsonRpcId::String(s)) => {
                span.record("jsonrpc.request.id", s.as_str());
            }
            _ => {}
        }
        if let Some(v) = mcp.protocol_version() {
            span.record("mcp.protocol.version", v);
        }
        if let Some(v) = mcp.session_id() {
            span.record("mcp.session.id", v);
        }
    }
    if let Some(principal) = ext.get::<Principal>() {
        if settings.principal != TracePrincipal::None
            && let Some(client) = principal.client_id()
        {
            span.record("mcp_enterprise.client.id", client);
        }
        if settings.principal == TracePrincipal::SubjectAndClient {
            span.record("enduser.id", principal.subject());
        }
    }
    if let Some(denial) = ext.get::<Denial>() {
        span.record("mcp_enterprise.denied_by", denial.layer());
        match denial.jsonrpc_code() {
            Some(code) => {
                span.record("error.type", code.to_string());
                span.record("rpc.response.status_code", code.to_string());
            }
            None => {
                span.record("error.type", status.as_str());
            }
        }
        span.record("otel.status_description", denial.layer());
    } else if status.is_client_error() || status.is_server_error() {
        span.record("error.type", status.as_str());
        span.record("otel.status_code", "ERROR");
    }
}

/// The trace context of a message's `params._meta`.
#[derive(Debug, Default, serde::Deserialize)]
struct Meta {
    traceparent: Option<String>,
    tracestate: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
struct Probe {
    params: Option<ProbeParams>,
}

#[derive(Debug, serde::Deserialize)]
struct ProbeParams {
    #[serde(rename = "_meta")]
    meta: Option<Meta>,
}

impl Extractor for Meta {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => self.traceparent.as_deref(),
            "tracestate" => self.tracestate.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        ["traceparent", "tracestate"].into_iter().filter(|k| self.get(k).is_some()).collect()
    }
}

/// Reads up to [`PEEK_LIMIT`] bytes of `body` for the `_meta` trace context; the body goes on
/// whole, as read (a larger one: what was read, then the rest unread; a failed read: its error).
async fn peek(mut body: Body) -> (Body, Option<Meta>) {
    let mut read = BytesMut::new();
    loop {
        match body.frame().await {
            None => {
                let read = read.freeze();
                let meta = serde_json::from_slice::<Probe>(&read).ok().and_then(|p| p.params).and_then(|p| p.meta);
                return (Body::from(read), meta);
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    read.extend_from_slice(&data);
                    if read.len() > PEEK_LIMIT {
                        return (Body::new(Prefixed::new(read.freeze(), None, Some(body))), None);
                    }
                }
                Err(trailers) => {
                    let rest = Prefixed::new(read.freeze(), None, Some(body)).with_trailers(trailers);
                    return (Body::new(rest), None);
                }
            },
            Some(Err(e)) => return (Body::new(Prefixed::new(read.freeze(), Some(e.into()), None)), None),
        }
    }
}

pin_project! {
    /// What was read of a body, then what went wrong or the rest of it.
    struct Prefixed {
        prefix: Option<Bytes>,
        trailers: Option<Frame<Bytes>>,
        error: Option<BoxError>,
        #[pin]
        rest: Option<Body>,
    }
}

impl Prefixed {
    fn new(prefix: Bytes, error: Option<BoxError>, rest: Option<Body>) -> Self {
        Self { prefix: (!prefix.is_empty()).then_some(prefix), trailers: None, error, rest }
    }

    fn with_trailers(mut self, trailers: Frame<Bytes>) -> Self {
        self.trailers = Some(trailers);
        self
    }
}

impl http_body::Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Some(prefix) = this.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        if let Some(error) = this.error.take() {
            return Poll::Ready(Some(Err(error)));
        }
        if let Some(trailers) = this.trailers.take() {
            return Poll::Ready(Some(Ok(trailers)));
        }
        match this.rest.as_pin_mut() {
            Some(rest) => rest.poll_frame(cx).map(|f| f.map(|r| r.map_err(Into::into))),
            None => Poll::Ready(None),
        }
    }
}

pin_project! {
    /// A response body that keeps the server span open until it is done.
    struct SpanBody<B> {
        #[pin]
        inner: B,
        span: tracing::Span,
    }
}

impl<B> http_body::Body for SpanBody<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        // a span ends when it is last exited: entered for every frame, it ends with the body
        let _entered = this.span.enter();
        this.inner.poll_frame(cx).map(|f| f.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bodies_go_on_whole_and_their_meta_context_is_read() {
        let json = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","tracestate":"a=1"}}}"#;
        let (body, meta) = peek(Body::from(json)).await;
        let meta = meta.expect("meta");
        assert_eq!(meta.traceparent.as_deref(), Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
        assert_eq!(meta.tracestate.as_deref(), Some("a=1"));
        assert_eq!(body.collect().await.expect("body").to_bytes(), json.as_bytes());
        let big =
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{"pad":"{}"}}}}"#, "y".repeat(PEEK_LIMIT * 2));
        let (body, meta) = peek(Body::from(big.clone())).await;
        assert!(meta.is_none());
        assert_eq!(body.collect().await.expect("body").to_bytes(), big.as_bytes());
        let (_, meta) = peek(Body::from("not json")).await;
        assert!(meta.is_none());
    }
}
