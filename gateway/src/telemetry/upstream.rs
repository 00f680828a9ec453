//! The upstream call's span and the trace context the upstream receives: in the
//! `traceparent`/`tracestate` headers and in the message's `params._meta` (the OpenTelemetry MCP
//! conventions), the upstream call's span as the parent.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Uri, header};
use mcp_enterprise_core::McpRequest;
use mcp_enterprise_core::trace::TARGET;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use serde_json::{Map, Value};
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The span of the call to the upstream, a child of the current (server) span.
pub(crate) fn span(upstream: &Uri) -> tracing::Span {
    tracing::trace_span!(
        target: TARGET,
        "upstream",
        otel.name = "upstream",
        otel.kind = "client",
        otel.status_code = Empty,
        server.address = upstream.host().unwrap_or_default(),
        server.port = i64::from(upstream.port_u16().unwrap_or(80)),
        url.path = upstream.path(),
        http.response.status_code = Empty,
        error.type = Empty,
    )
}

/// Writes `span`'s context into `headers` (replacing the caller's) and, for a request or
/// notification, into its `params._meta`: the new body, when there is one. Nothing when no
/// exporter listens (the caller's headers then go on unchanged).
pub(crate) fn inject(span: &tracing::Span, headers: &mut HeaderMap, mcp: Option<&McpRequest>) -> Option<Bytes> {
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    if !opentelemetry::trace::TraceContextExt::span(&cx).span_context().is_valid() {
        // enabled by a log filter, not exported: the caller's context goes on unchanged
        return None;
    }
    headers.remove("traceparent");
    headers.remove("tracestate");
    TraceContextPropagator::new().inject_context(&cx, &mut opentelemetry_http::HeaderInjector(headers));
    let mut message = mcp?.message().clone();
    let object = message.as_object_mut().filter(|m| m.contains_key("method"))?;
    let params = object.entry("params").or_insert_with(|| Value::Object(Map::new())).as_object_mut()?;
    let meta = params.entry("_meta").or_insert_with(|| Value::Object(Map::new())).as_object_mut()?;
    for key in ["traceparent", "tracestate"] {
        match headers.get(key).and_then(|v| v.to_str().ok()) {
            Some(v) => meta.insert(key.to_owned(), Value::from(v)),
            None => meta.remove(key),
        };
    }
    let body = Bytes::from(serde_json::to_vec(&message).ok()?);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    Some(body)
}
