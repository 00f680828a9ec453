//! Building one call record from what the request and the response carry.

use std::borrow::Cow;
use std::time::Instant;

use http::{HeaderMap, HeaderName, HeaderValue, Response};
use mcp_enterprise_core::trace::SpanIds;
use mcp_enterprise_core::{AuditEvents, Denial, JsonRpcId, McpRequest, Principal};
use serde_json::{Value, json};

use crate::canonical::{Members, Object};
use crate::redact::Redaction;
use crate::service::X_REQUEST_ID;
use crate::time::{UuidText, uuid_v7_text, write_rfc3339_millis};

/// `_meta` key of SEP-2817's client-asserted invocation context.
pub const AI_INVOCATION_META: &str = "io.modelcontextprotocol/aiInvocation";

/// Longest string kept from client-asserted or client-chosen values.
const MAX_TEXT: usize = 1024;
/// Largest invocation context kept (canonical bytes); larger ones are replaced by a marker.
const MAX_INVOCATION_BYTES: usize = 8 * 1024;
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Longest correlation id accepted from a client.
const MAX_CORRELATION_ID: usize = 128;

/// What is known when the request arrives.
#[derive(Debug)]
pub(crate) struct Arrival {
    pub(crate) started: Instant,
    now: std::time::Duration,
    event_id: UuidText,
    /// The client's `X-Request-Id`, when it sent a usable one (else the event id is used).
    correlation_id: Option<String>,
    method: http::Method,
    /// The request's target (a clone shares its bytes): the path is read from it when the
    /// record is written.
    uri: http::Uri,
    traceparent: Option<String>,
    tracestate: Option<String>,
    /// The span the gateway serves the call in, when it traces.
    span: Option<SpanIds>,
    /// The correlation id as a header value, made once for the request and the response.
    correlation: Option<HeaderValue>,
    /// Where the request came from, when the server says (`src_endpoint`, `http.peer_ip`).
    client: Option<mcp_enterprise_core::ClientAddress>,
    /// Filled by the auth layers inside when they authenticate the request: who made a call
    /// that never got its response.
    pub(crate) principal: mcp_enterprise_core::PrincipalSlot,
}

impl Arrival {
    pub(crate) fn new(now: std::time::Duration, method: &http::Method, uri: &http::Uri, headers: &HeaderMap) -> Self {
        let event_id = uuid_v7_text(now);
        let correlation_id = headers
            .get(&X_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= MAX_CORRELATION_ID && v.bytes().all(|b| b.is_ascii_graphic()))
            .map(str::to_owned);
        let header =
            |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).map(|v| truncate(v).into_owned());
        let correlation = HeaderValue::from_str(correlation_id.as_deref().unwrap_or(event_id.as_str())).ok();
        Self {
            started: Instant::now(),
            now,
            event_id,
            correlation_id,
            method: method.clone(),
            uri: uri.clone(),
            traceparent: header(&TRACEPARENT),
            tracestate: header(&TRACESTATE),
            span: None,
            correlation,
            client: None,
            principal: mcp_enterprise_core::PrincipalSlot::new(),
        }
    }

    /// Records the client's address (`src_endpoint.ip`, and the proxy's as `proxy_ip`) and the
    /// connection's peer (`http.peer_ip`, `http.peer_port`).
    pub(crate) fn with_client(mut self, client: Option<mcp_enterprise_core::ClientAddress>) -> Self {
        self.client = client;
        self
    }

    /// Notes the span the call is served in (its trace and span ids go into the record).
    pub(crate) fn with_span(mut self, span: Option<SpanIds>) -> Self {
        self.span = span;
        self
    }

    /// The header value the correlation id travels in.
    pub(crate) fn correlation_header(&self) -> Option<HeaderValue> {
        self.correlation.clone()
    }

    /// Adds what the response carries: the inspected message, the principal, a refusal. The
    /// record is written straight into its canonical members, in `record` (empty: a new one or
    /// the buffers of one already written).
    pub(crate) fn respond<B>(
        self,
        response: &Response<B>,
        redaction: &Redaction,
        invocation: bool,
        record: Members<'static>,
    ) -> Departure {
        let ext = response.extensions();
        let mcp = ext.get::<McpRequest>();
        let denial = ext.get::<Denial>();
        let status = response.status();
        // nested objects are written straight into the record, their members in canonical order
        // (members written roughly in canonical order: the writer's sort has less to move)
        let mut r = record;
        r.str("event_id", self.event_id.as_str());
        r.member("occurred_at", |buf| write_rfc3339_millis(self.now, buf));
        r.str("correlation_id", self.correlation_id.as_deref().unwrap_or(self.event_id.as_str()));
        let client = self.client;
        r.object_with("http", |http| {
            http.str("method", self.method.as_str());
            http.str("path", &truncate(self.uri.path()));
            if let Some(client) = client {
                http.member("peer_ip", |buf| write_ip(client.peer.ip(), buf));
                http.int("peer_port", client.peer.port());
            }
            http.int("status", status.as_u16());
        });
        if let Some(client) = client {
            r.object_with("src_endpoint", |src| {
                src.member("ip", |buf| write_ip(client.ip, buf));
                if client.is_forwarded() {
                    src.member("proxy_ip", |buf| write_ip(client.peer.ip(), buf));
                }
            });
        }
        match ext.get::<Principal>() {
            Some(p) => r.object_with("principal", |m| principal(m, p)),
            None => r.literal("principal", "null"),
        }
        match mcp {
            Some(mcp) => describe(&mut r, mcp, redaction, invocation),
            None => {
                r.literal("client", "null");
                r.literal("jsonrpc", "null");
            }
        }
        let trace = mcp.map(McpRequest::trace);
        let traceparent = trace.and_then(|t| t.traceparent.as_deref()).or(self.traceparent.as_deref());
        let tracestate = trace.and_then(|t| t.tracestate.as_deref()).or(self.tracestate.as_deref());
        // the server span starts inside (after inspection): its ids come back with the response
        let span = self.span.as_ref().or_else(|| ext.get::<SpanIds>());
        r.object_with("trace", |t| {
            if let Some(span) = span {
                t.member("span_id", |buf| write_hex(&span.span_id(), buf));
                t.member("trace_id", |buf| write_hex(&span.trace_id(), buf));
            }
            t.opt_str("traceparent", traceparent.map(truncate).as_deref());
            t.opt_str("tracestate", tracestate.map(truncate).as_deref());
        });
        if let Some(events) = ext.get::<AuditEvents>().filter(|e| !e.events().is_empty()) {
            r.value("events", &events_value(events));
        }
        let (outcome, code) = match denial {
            Some(d) => {
                r.object_with("denied_by", |by| {
                    by.str("layer", d.layer());
                    by.str("reason", &truncate(d.reason()));
                });
                (if status.is_server_error() { "error" } else { "denied" }, d.jsonrpc_code())
            }
            None => {
                r.literal("denied_by", "null");
                (if status.is_client_error() || status.is_server_error() { "error" } else { "allowed" }, None)
            }
        };
        r.str("type", "mcp");
        r.int("v", 1);
        let sse = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().get(..17).is_some_and(|t| t.eq_ignore_ascii_case("text/event-stream")));
        Departure {
            started: self.started,
            record: r,
            outcome,
            known_code: code,
            denied: denial.is_some(),
            sse,
            request_id: mcp.and_then(|m| m.id().cloned()),
        }
    }
}

/// What is known when the response head leaves; completed when its body ends.
pub(crate) struct Departure {
    started: Instant,
    record: Members<'static>,
    outcome: &'static str,
    known_code: Option<i64>,
    denied: bool,
    pub(crate) sse: bool,
    pub(crate) request_id: Option<JsonRpcId>,
}

impl std::fmt::Debug for Departure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Departure").field("outcome", &self.outcome).finish_non_exhaustive()
    }
}

impl Departure {
    /// The complete record.
    pub(crate) fn finish(
        mut self,
        response_bytes: u64,
        body_code: Option<i64>,
        aborted: bool,
        result_digest: Option<String>,
    ) -> Members<'static> {
        let code = self.known_code.or(body_code);
        let outcome = if !self.denied && (code.is_some() || aborted) && self.outcome == "allowed" {
            "error"
        } else {
            self.outcome
        };
        let r = &mut self.record;
        r.str("outcome", outcome);
        r.opt_int("jsonrpc_error", code);
        if aborted {
            r.literal("response_aborted", "true");
        }
        r.int("latency_us", u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX));
        r.int("response_bytes", response_bytes);
        if let Some(d) = result_digest {
            r.str("result_digest", &d);
        }
        self.record
    }
}

fn describe(r: &mut Members<'static>, mcp: &McpRequest, redaction: &Redaction, invocation: bool) {
    match mcp.client().and_then(|c| c.client_info()) {
        Some(info) => r.object_with("client", |c| {
            c.opt_str("name", info.name().map(truncate).as_deref());
            c.literal("unverified", "true");
            c.opt_str("version", info.version().map(truncate).as_deref());
        }),
        None => r.literal("client", "null"),
    }
    let target = match (mcp.method(), mcp.name(), mcp.uri()) {
        (_, _, Some(uri)) => Some(("resource", uri)),
        (Some(m), Some(name), _) if m.starts_with("prompts/") => Some(("prompt", name)),
        (_, Some(name), _) => Some(("tool", name)),
        _ => None,
    };
    r.object_with("jsonrpc", |j| {
        j.str("era", era(mcp));
        match mcp.id() {
            Some(JsonRpcId::Number(n)) => j.int("id", *n),
            Some(JsonRpcId::String(s)) => j.str("id", &truncate(s)),
            Some(other) => j.str("id", &truncate(&other.to_string())),
            None => j.literal("id", "null"),
        }
        j.opt_str("method", mcp.method().map(truncate).as_deref());
        j.opt_str("protocol_version", mcp.protocol_version().map(truncate).as_deref());
        match target {
            Some((kind, name)) => j.object("target", |t| {
                t.str("kind", kind);
                t.str("name", &truncate(name));
            }),
            None => j.literal("target", "null"),
        }
    });
    let params = mcp.params();
    if let Some(arguments) = params.and_then(|p| p.get("arguments")).and_then(Value::as_object) {
        r.object_with("arguments", |o| redaction.write_arguments(mcp.name(), arguments, o));
    }
    if invocation && let Some(ctx) = params.and_then(|p| p.get("_meta")).and_then(|m| m.get(AI_INVOCATION_META)) {
        r.value("invocation", &invocation_context(ctx));
    }
}

/// The events layers left in the response (`core::AuditEvent`), each `{"kind": .., fields..}`,
/// bounded like every other value a record takes from outside.
fn events_value(events: &AuditEvents) -> Value {
    Value::Array(
        events
            .events()
            .iter()
            .take(32)
            .map(|e| {
                let mut m: serde_json::Map<String, Value> =
                    e.fields().iter().take(32).map(|(k, v)| (truncate(k).into_owned(), bounded(v, 1))).collect();
                m.insert("kind".into(), Value::from(truncate(e.kind()).into_owned()));
                Value::Object(m)
            })
            .collect(),
    )
}

fn era(mcp: &McpRequest) -> &'static str {
    match mcp.era() {
        mcp_enterprise_core::Era::Legacy => "2025-11-25",
        _ => "2026-07-28",
    }
}

/// SEP-2817 context, kept as the client asserted it (bounded), never as evidence.
fn invocation_context(ctx: &Value) -> Value {
    let mut kept = bounded(ctx, 0);
    if crate::canonical::to_vec(&kept).len() > MAX_INVOCATION_BYTES {
        kept = json!({"omitted": "larger than 8 KiB"});
    }
    json!({"client_asserted": true, "context": kept})
}

fn bounded(v: &Value, depth: usize) -> Value {
    match v {
        Value::String(s) => Value::from(truncate(s).into_owned()),
        Value::Object(_) | Value::Array(_) if depth >= 4 => Value::from("…"),
        Value::Object(m) => {
            Value::Object(m.iter().take(32).map(|(k, v)| (truncate(k).into_owned(), bounded(v, depth + 1))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().take(32).map(|v| bounded(v, depth + 1)).collect()),
        other => other.clone(),
    }
}

fn principal(m: &mut Object<'_, '_>, p: &Principal) {
    m.str("auth_method", p.auth_method().as_str());
    m.opt_str("client_id", p.client_id());
    m.str("issuer", p.issuer());
    m.str("kind", p.kind().as_str());
    m.str("subject", p.subject());
    match p.claims().get("tenant") {
        Some(tenant) => m.value("tenant", tenant),
        None => m.literal("tenant", "null"),
    }
    // base64url of 16 bytes: 22 characters, encoded on the stack
    let mut text = [0u8; 24];
    let fingerprint = p.token_fingerprint().and_then(|f| {
        use base64::Engine as _;
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_slice(f.as_bytes(), &mut text).ok()?;
        std::str::from_utf8(&text[..n]).ok()
    });
    m.opt_str("token_fingerprint", fingerprint);
}

/// An IP address as a JSON string (its text needs no escaping).
fn write_ip(ip: std::net::IpAddr, buf: &mut Vec<u8>) {
    use std::io::Write as _;
    let _ = write!(buf, "\"{}\"", ip.to_canonical());
}

/// Bytes as a JSON string of lower-case hex.
fn write_hex(bytes: &[u8], buf: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.push(b'"');
    for b in bytes {
        buf.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
    }
    buf.push(b'"');
}

fn truncate(s: &str) -> Cow<'_, str> {
    if s.len() <= MAX_TEXT {
        return Cow::Borrowed(s);
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &s[..end]))
}
