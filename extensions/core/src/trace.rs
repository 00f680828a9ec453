//! Traces of a call through the pack: the spans each layer's decision is made in, and the ids of
//! the span a request is served in.
//!
//! The layers only use `tracing`: every span here is a `TRACE`-level span of the target
//! [`TARGET`], which the default log filters leave out. An embedder that exports traces (the
//! gateway, through `tracing-opentelemetry`) enables that target for its exporter alone; when
//! nothing enables it, a span costs one check of a cached callsite interest and nothing else.
//!
//! Each span's OpenTelemetry name is its `otel.name` field (`sso`, `dpop`, `policy`, …); its
//! outcome is `mcp_enterprise.decision` (`allow`, `deny`, `pass`) and, for a refusal,
//! `error.type` (the refusing layer's reason class, never a token or a secret).

use std::fmt;
use std::sync::{Arc, OnceLock};

use tracing::Span;

use crate::message::McpRequest;
use tracing::field::Empty;

/// The `tracing` target of every span made for traces.
pub const TARGET: &str = "mcp_enterprise::trace";

/// The W3C ids of the span a request is served in: the tracing layer outside the pack puts them
/// into the request extensions, so the audit record names the same trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanIds {
    trace_id: [u8; 16],
    span_id: [u8; 8],
}

impl SpanIds {
    /// The ids, when neither is all zeros (an invalid W3C id).
    pub fn new(trace_id: [u8; 16], span_id: [u8; 8]) -> Option<Self> {
        (trace_id != [0; 16] && span_id != [0; 8]).then_some(Self { trace_id, span_id })
    }

    /// The trace id.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The span id.
    pub fn span_id(&self) -> [u8; 8] {
        self.span_id
    }

    /// The trace id in lower-case hex (32 characters).
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The span id in lower-case hex (16 characters).
    pub fn span_id_hex(&self) -> String {
        hex(&self.span_id)
    }
}

impl fmt::Display for SpanIds {
    /// As a W3C `traceparent` (sampled flag left out: `-01`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{}-{}-01", self.trace_id_hex(), self.span_id_hex())
    }
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The span one layer's decision is made in: from the moment the layer looks at the request until
/// it lets it pass or refuses it (not the inner layers' time). Recorded as denied unless
/// [`allow`](Self::allow) or [`pass`](Self::pass) says otherwise; ends when dropped.
#[derive(Debug)]
#[must_use = "the decision span ends when dropped"]
pub struct Decision {
    span: Span,
    decided: bool,
}

impl Decision {
    /// Starts the decision span of `layer` (its OpenTelemetry name), a child of the current span.
    pub fn start(layer: &'static str) -> Self {
        let span = tracing::trace_span!(
            target: TARGET,
            "decision",
            otel.name = layer,
            mcp_enterprise.layer = layer,
            mcp_enterprise.decision = Empty,
            mcp_enterprise.cache = Empty,
            error.type = Empty,
            otel.status_code = Empty,
        );
        Self { span, decided: false }
    }

    /// The span, to instrument the decision's asynchronous work with (IdP calls become its
    /// children).
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// Notes whether a cache answered (`hit`) or the work was done (`miss`).
    pub fn cache(&self, hit: bool) {
        self.span.record("mcp_enterprise.cache", if hit { "hit" } else { "miss" });
    }

    /// The layer lets the request in.
    pub fn allow(mut self) {
        self.span.record("mcp_enterprise.decision", "allow");
        self.decided = true;
    }

    /// The layer leaves the request to another (not its credentials, not its method).
    pub fn pass(mut self) {
        self.span.record("mcp_enterprise.decision", "pass");
        self.decided = true;
    }

    /// The layer refuses the request; `error_type` is a low-cardinality class of the refusal.
    pub fn deny(mut self, error_type: &str) {
        self.span.record("mcp_enterprise.decision", "deny");
        self.span.record("error.type", error_type);
        self.span.record("otel.status_code", "ERROR");
        self.decided = true;
    }
}

impl Drop for Decision {
    fn drop(&mut self) {
        if !self.decided {
            self.span.record("mcp_enterprise.decision", "deny");
        }
    }
}

/// A span for one step of the pack's work done after the call's own future has finished (the
/// audit record's enqueueing when the response body ends), a child of `parent`.
/// A disabled `parent` (no span kept for it) leaves the span to the current one.
pub fn step(parent: &Span, name: &'static str) -> Span {
    if parent.is_disabled() {
        return tracing::trace_span!(target: TARGET, "step", otel.name = name);
    }
    tracing::trace_span!(target: TARGET, parent: parent, "step", otel.name = name)
}

/// What starts the server span of a request once its message is known: the tracing layer around
/// the pack puts one into the request extensions, the inspection layer starts it right after its
/// one parse of the body (so the sampling decision can use the `params._meta` trace context
/// without a second parse). The first start counts; later ones (another route's inspection) get
/// the same span.
#[derive(Clone)]
pub struct ServerSpan {
    start: Arc<StartFn>,
    started: Arc<OnceLock<Started>>,
}

/// The function that decides and starts a server span: it may set the request's trace context
/// headers (the context an unsampled request passes on).
pub type StartFn = dyn Fn(&mut http::request::Parts, Option<&McpRequest>) -> Started + Send + Sync;

/// A started server span: disabled when the request is not sampled (no span is kept, none of
/// its children either); its W3C ids when it is.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Started {
    /// The span (disabled when not sampled).
    pub span: Span,
    /// Its ids, for the audit record.
    pub ids: Option<SpanIds>,
}

impl Started {
    /// A started span and its ids.
    pub fn new(span: Span, ids: Option<SpanIds>) -> Self {
        Self { span, ids }
    }

    /// Nothing kept: the request is not sampled.
    pub fn none() -> Self {
        Self { span: Span::none(), ids: None }
    }
}

impl fmt::Debug for ServerSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSpan").field("started", &self.started.get()).finish_non_exhaustive()
    }
}

impl ServerSpan {
    /// A server span to be started by `start`.
    pub fn new(start: Arc<StartFn>) -> Self {
        Self { start, started: Arc::new(OnceLock::new()) }
    }

    /// Starts the span (once; a later call returns the first span) for the request `parts`, its
    /// parsed message when there is one.
    pub fn start(&self, parts: &mut http::request::Parts, mcp: Option<&McpRequest>) -> &Started {
        self.started.get_or_init(|| (self.start)(parts, mcp))
    }

    /// The span, when it was started.
    pub fn started(&self) -> Option<&Started> {
        self.started.get()
    }
}

/// A span for an outgoing call to an identity provider or authorization server (discovery, JWKS,
/// introspection, token exchange), a child of the current span.
pub fn idp_call(method: &http::Method, uri: &http::Uri) -> Span {
    let span = tracing::trace_span!(
        target: TARGET,
        "idp",
        otel.name = Empty,
        otel.kind = "client",
        http.request.method = method.as_str(),
        server.address = Empty,
        url.path = uri.path(),
        http.response.status_code = Empty,
        error.type = Empty,
        otel.status_code = Empty,
    );
    if !span.is_disabled() {
        span.record("otel.name", format!("{} {}", method, uri.path()));
        if let Some(host) = uri.host() {
            span.record("server.address", host);
        }
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_as_w3c_hex() {
        let ids = SpanIds::new([0xab; 16], [1; 8]).expect("valid");
        assert_eq!(ids.trace_id_hex(), "ab".repeat(16));
        assert_eq!(ids.to_string(), format!("00-{}-0101010101010101-01", "ab".repeat(16)));
        assert!(SpanIds::new([0; 16], [1; 8]).is_none());
        assert!(SpanIds::new([1; 16], [0; 8]).is_none());
    }
}
