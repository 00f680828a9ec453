//! [`TraceLayer`]: the server span of every sampled request, outside the audit layer.
//!
//! The sampling decision comes first, made once the inspection layer has parsed the message
//! (its one parse: no second read of the body): parent-based on the caller's W3C context — the
//! one in the message's `params._meta` (`traceparent`/`tracestate`, per the OpenTelemetry MCP
//! conventions), else the one in the `traceparent`/`tracestate` headers — and by the configured
//! ratio when there is none. An unsampled request keeps no span at all (nor do its layers'
//! decision spans: [`super::subscriber_layer`] enables them only inside a kept span) and its
//! message goes upstream untouched: the caller's context, when there is one, in the headers.
//! A sampled request's span continues the caller's trace; when the headers and `_meta` differ,
//! the headers' context becomes a link. The span's ids go into the audit record and the span
//! stays open until the response body ends (streams included).
//!
//! A request refused before inspection (Host check, pre-authentication limit) gets its span,
//! decided on the headers, once its response is known.

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Frame;
use mcp_enterprise_config::TracePrincipal;
use mcp_enterprise_core::message::TraceContext;
use mcp_enterprise_core::trace::{ServerSpan, SpanIds, StartFn, Started, TARGET};
use mcp_enterprise_core::{BoxError, Denial, JsonRpcId, McpRequest, Principal};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanKind, TraceContextExt, TraceId};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::TraceSettings;

/// The `tracing` name of the server span (the one span of the target enabled outside a kept span).
pub(super) const SERVER: &str = "server";

/// Puts a server span around every sampled request (see the module docs).
#[derive(Clone)]
pub struct TraceLayer {
    settings: TraceSettings,
    start: Arc<StartFn>,
}

impl std::fmt::Debug for TraceLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceLayer").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl TraceLayer {
    /// The layer, with its sampling ratio and what the spans carry.
    pub fn new(settings: TraceSettings) -> Self {
        let ratio = settings.sampling_ratio;
        Self { settings, start: Arc::new(move |parts: &mut Parts, mcp: Option<&McpRequest>| start(ratio, parts, mcp)) }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = TraceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceService { inner, settings: self.settings, start: self.start.clone() }
    }
}

/// The service of [`TraceLayer`].
#[derive(Clone)]
pub struct TraceService<S> {
    inner: S,
    settings: TraceSettings,
    start: Arc<StartFn>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for TraceService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceService").field("inner", &self.inner).field("settings", &self.settings).finish()
    }
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

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let settings = self.settings;
        let server = ServerSpan::new(self.start.clone());
        req.extensions_mut().insert(server.clone());
        // for a request refused before inspection: its headers' context (cheap clones, usually none)
        let context = [TRACEPARENT, TRACESTATE].map(|k| req.headers().get(k).cloned());
        let version = req.version();
        Box::pin(async move {
            let future = inner.call(req);
            let mut future = std::pin::pin!(future);
            // once started (by the inspection layer inside), the span is the current one for the
            // layers outside it too (audit's enqueue span is its child)
            let kept = server.clone();
            let response = std::future::poll_fn(|cx| match kept.started() {
                Some(started) => started.span.in_scope(|| future.as_mut().poll(cx)),
                None => future.as_mut().poll(cx),
            })
            .await?;
            let started = match server.started() {
                Some(started) => started,
                None => {
                    let (mut parts, ()) = Request::new(()).into_parts();
                    parts.version = version;
                    for (key, value) in [TRACEPARENT, TRACESTATE].into_iter().zip(context) {
                        if let Some(value) = value {
                            parts.headers.insert(key, value);
                        }
                    }
                    server.start(&mut parts, None)
                }
            };
            let span = started.span.clone();
            if span.is_disabled() {
                // not sampled (or no exporter): nothing kept
                return Ok(response.map(Body::new));
            }
            describe(&span, &response, settings);
            // the span ends with the response body (a stream's last event)
            Ok(response.map(|b| Body::new(SpanBody { inner: b, span })))
        })
    }
}

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

thread_local! {
    /// The trace id the sampling decision of a new root span was made on: the next trace id the
    /// SDK asks [`Ids`] for on this thread (the span is started right after the decision), so the
    /// SDK's own ratio sampler agrees with it and the exported trace is the one decided on.
    static DECIDED: Cell<Option<TraceId>> = const { Cell::new(None) };
}

/// The SDK's id generator: random, except the trace id a sampling decision was just made on.
#[derive(Debug, Default)]
pub(super) struct Ids(RandomIdGenerator);

impl IdGenerator for Ids {
    fn new_trace_id(&self) -> TraceId {
        DECIDED.with(Cell::take).unwrap_or_else(|| self.0.new_trace_id())
    }

    fn new_span_id(&self) -> opentelemetry::trace::SpanId {
        self.0.new_span_id()
    }
}

/// The caller's context in a message's `params._meta`.
struct Meta<'a>(&'a TraceContext);

impl Extractor for Meta<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => self.0.traceparent.as_deref(),
            TRACESTATE => self.0.tracestate.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        [TRACEPARENT, TRACESTATE].into_iter().filter(|k| self.get(k).is_some()).collect()
    }
}

fn remote(cx: &opentelemetry::Context) -> bool {
    cx.span().span_context().is_valid()
}

/// The sampling decision and, for a sampled request, its started server span (see the module
/// docs). No exporter listening: nothing is kept either.
fn start(ratio: f64, parts: &mut Parts, mcp: Option<&McpRequest>) -> Started {
    let propagator = TraceContextPropagator::new();
    let meta = mcp.map(McpRequest::trace).filter(|t| t.traceparent.is_some());
    let from_meta = meta.map(|t| propagator.extract(&Meta(t))).filter(remote);
    let from_headers = parts
        .headers
        .contains_key(TRACEPARENT)
        .then(|| propagator.extract(&opentelemetry_http::HeaderExtractor(&parts.headers)))
        .filter(remote);
    let parent = from_meta.as_ref().or(from_headers.as_ref());
    let root = match parent {
        Some(cx) if !cx.span().span_context().is_sampled() => None,
        Some(_) => Some(None),
        None => root_decision(ratio).map(Some),
    };
    let Some(root) = root else {
        // not sampled: the caller's context goes on as it came, `_meta`'s in the headers too
        if let (Some(t), Some(_)) = (meta, &from_meta) {
            copy_to_headers(&mut parts.headers, t);
        }
        return Started::none();
    };
    let span = server_span();
    if span.is_disabled() {
        return Started::none();
    }
    match (&from_meta, &from_headers) {
        (Some(meta), Some(headers)) => {
            let headers = headers.span().span_context().clone();
            if headers.trace_id() != meta.span().span_context().trace_id() {
                span.add_link(headers);
            }
            let _ = span.set_parent(meta.clone());
        }
        (Some(cx), None) | (None, Some(cx)) => {
            let _ = span.set_parent(cx.clone());
        }
        (None, None) => {}
    }
    DECIDED.with(|d| d.set(root));
    let cx = span.context();
    DECIDED.with(|d| d.set(None));
    let own = cx.span().span_context().clone();
    if !own.is_sampled() {
        // the SDK decided otherwise (its sampler is the same, so only if the span was started
        // elsewhere): nothing is exported, the request goes on as an unsampled one
        return Started::none();
    }
    if let Some(v) = parts.headers.get("mcp-session-id").and_then(|v| v.to_str().ok()) {
        span.record("mcp.session.id", v);
    }
    if let Some(v) = parts.headers.get("mcp-protocol-version").and_then(|v| v.to_str().ok()) {
        span.record("mcp.protocol.version", v);
    }
    span.record("network.protocol.version", version(parts.version));
    let ids = SpanIds::new(own.trace_id().to_bytes(), own.span_id().to_bytes());
    Started::new(span, ids)
}

/// The ratio decision for a trace this request starts: the trace id when it is sampled (the
/// SDK's own `TraceIdRatioBased` rule, so the exported trace is the one decided on).
fn root_decision(ratio: f64) -> Option<TraceId> {
    if ratio <= 0.0 {
        return None;
    }
    let trace_id = RandomIdGenerator::default().new_trace_id();
    if ratio >= 1.0 {
        return Some(trace_id);
    }
    let result = Sampler::TraceIdRatioBased(ratio).should_sample(None, trace_id, "", &SpanKind::Server, &[], &[]);
    (result.decision == SamplingDecision::RecordAndSample).then_some(trace_id)
}

/// Puts the `_meta` context into the headers (the upstream reads either).
fn copy_to_headers(headers: &mut HeaderMap, meta: &TraceContext) {
    for (key, value) in [(TRACEPARENT, &meta.traceparent), (TRACESTATE, &meta.tracestate)] {
        match value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            Some(v) => {
                headers.insert(key, v);
            }
            None => {
                headers.remove(key);
            }
        }
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
