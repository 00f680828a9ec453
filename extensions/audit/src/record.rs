//! Building one call record from what the request and the response carry.

use std::time::Instant;

use http::{HeaderMap, HeaderValue, Response};
use mcp_enterprise_core::{Denial, JsonRpcId, McpRequest, Principal};
use serde_json::{Map, Value, json};

use crate::redact::Redaction;
use crate::writer::base;

/// `_meta` key of SEP-2817's client-asserted invocation context.
pub const AI_INVOCATION_META: &str = "io.modelcontextprotocol/aiInvocation";

/// Longest string kept from client-asserted or client-chosen values.
const MAX_TEXT: usize = 1024;
/// Largest invocation context kept (canonical bytes); larger ones are replaced by a marker.
const MAX_INVOCATION_BYTES: usize = 8 * 1024;
/// Longest correlation id accepted from a client.
const MAX_CORRELATION_ID: usize = 128;

/// What is known when the request arrives.
#[derive(Debug)]
pub(crate) struct Arrival {
    pub(crate) started: Instant,
    record: Map<String, Value>,
    /// The correlation id as a header value, made once for the request and the response.
    correlation: Option<HeaderValue>,
}

impl Arrival {
    pub(crate) fn new(now: std::time::Duration, method: &http::Method, path: &str, headers: &HeaderMap) -> Self {
        let mut record = base("mcp", now);
        let event_id = record.get("event_id").and_then(Value::as_str).unwrap_or_default().to_owned();
        let correlation_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= MAX_CORRELATION_ID && v.bytes().all(|b| b.is_ascii_graphic()))
            .map_or(event_id, str::to_owned);
        record.insert("correlation_id".into(), Value::from(correlation_id.as_str()));
        record.insert("http".into(), json!({"method": method.as_str(), "path": truncate(path)}));
        for name in ["traceparent", "tracestate"] {
            if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
                record.insert(format!("http_{name}"), Value::from(truncate(v)));
            }
        }
        let correlation = HeaderValue::from_str(&correlation_id).ok();
        Self { started: Instant::now(), record, correlation }
    }

    /// The header value the correlation id travels in.
    pub(crate) fn correlation_header(&self) -> Option<HeaderValue> {
        self.correlation.clone()
    }

    /// Adds what the response carries: the inspected message, the principal, a refusal.
    pub(crate) fn respond<B>(mut self, response: &Response<B>, redaction: &Redaction, invocation: bool) -> Departure {
        let ext = response.extensions();
        let mcp = ext.get::<McpRequest>();
        let denial = ext.get::<Denial>();
        let r = &mut self.record;
        if let Some(http) = r.get_mut("http").and_then(Value::as_object_mut) {
            http.insert("status".into(), Value::from(response.status().as_u16()));
        }
        r.insert("principal".into(), ext.get::<Principal>().map_or(Value::Null, principal));
        match mcp {
            Some(mcp) => describe(r, mcp, redaction, invocation),
            None => {
                r.insert("client".into(), Value::Null);
                r.insert("jsonrpc".into(), Value::Null);
            }
        }
        let trace = mcp.map(McpRequest::trace);
        let traceparent = trace
            .and_then(|t| t.traceparent.as_deref())
            .map(str::to_owned)
            .or_else(|| r.get("http_traceparent").and_then(Value::as_str).map(str::to_owned));
        let tracestate = trace
            .and_then(|t| t.tracestate.as_deref())
            .map(str::to_owned)
            .or_else(|| r.get("http_tracestate").and_then(Value::as_str).map(str::to_owned));
        r.remove("http_traceparent");
        r.remove("http_tracestate");
        r.insert(
            "trace".into(),
            json!({"traceparent": traceparent.map(|t| truncate(&t)), "tracestate": tracestate.map(|t| truncate(&t))}),
        );
        let status = response.status();
        let (outcome, denied_by, code) = match denial {
            Some(d) => {
                let outcome = if status.is_server_error() { "error" } else { "denied" };
                (outcome, json!({"layer": d.layer(), "reason": truncate(d.reason())}), d.jsonrpc_code())
            }
            None if status.is_client_error() || status.is_server_error() => ("error", Value::Null, None),
            None => ("allowed", Value::Null, None),
        };
        r.insert("outcome".into(), Value::from(outcome));
        r.insert("denied_by".into(), denied_by);
        let sse = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"));
        Departure {
            started: self.started,
            record: self.record,
            known_code: code,
            denied: denial.is_some(),
            sse,
            request_id: mcp.and_then(|m| m.id().cloned()),
        }
    }
}

/// What is known when the response head leaves; completed when its body ends.
#[derive(Debug)]
pub(crate) struct Departure {
    started: Instant,
    record: Map<String, Value>,
    known_code: Option<i64>,
    denied: bool,
    pub(crate) sse: bool,
    pub(crate) request_id: Option<JsonRpcId>,
}

impl Departure {
    /// The complete record.
    pub(crate) fn finish(
        mut self,
        response_bytes: u64,
        body_code: Option<i64>,
        aborted: bool,
        result_digest: Option<String>,
    ) -> Map<String, Value> {
        let code = self.known_code.or(body_code);
        let r = &mut self.record;
        if !self.denied && (code.is_some() || aborted) && r.get("outcome").and_then(Value::as_str) == Some("allowed") {
            r.insert("outcome".into(), Value::from("error"));
        }
        r.insert("jsonrpc_error".into(), code.map_or(Value::Null, Value::from));
        if aborted {
            r.insert("response_aborted".into(), Value::Bool(true));
        }
        let latency = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        r.insert("latency_us".into(), Value::from(latency));
        r.insert("response_bytes".into(), Value::from(response_bytes));
        if let Some(d) = result_digest {
            r.insert("result_digest".into(), Value::from(d));
        }
        self.record
    }
}

fn describe(r: &mut Map<String, Value>, mcp: &McpRequest, redaction: &Redaction, invocation: bool) {
    r.insert(
        "client".into(),
        mcp.client().and_then(|c| c.client_info()).map_or(Value::Null, |info| {
            json!({"unverified": true, "name": info.name().map(truncate), "version": info.version().map(truncate)})
        }),
    );
    let target = match (mcp.method(), mcp.name(), mcp.uri()) {
        (_, _, Some(uri)) => json!({"kind": "resource", "name": truncate(uri)}),
        (Some(m), Some(name), _) if m.starts_with("prompts/") => json!({"kind": "prompt", "name": truncate(name)}),
        (_, Some(name), _) => json!({"kind": "tool", "name": truncate(name)}),
        _ => Value::Null,
    };
    r.insert(
        "jsonrpc".into(),
        json!({
            "method": mcp.method().map(truncate),
            "id": mcp.id().map(id_value),
            "target": target,
            "era": era(mcp),
            "protocol_version": mcp.protocol_version().map(truncate),
        }),
    );
    if let Some(arguments) = mcp.arguments() {
        r.insert("arguments".into(), redaction.arguments(mcp.name(), arguments));
    }
    if invocation && let Some(ctx) = mcp.params().and_then(|p| p.get("_meta")).and_then(|m| m.get(AI_INVOCATION_META)) {
        r.insert("invocation".into(), invocation_context(ctx));
    }
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
        Value::String(s) => Value::from(truncate(s)),
        Value::Object(_) | Value::Array(_) if depth >= 4 => Value::from("…"),
        Value::Object(m) => {
            Value::Object(m.iter().take(32).map(|(k, v)| (truncate(k), bounded(v, depth + 1))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().take(32).map(|v| bounded(v, depth + 1)).collect()),
        other => other.clone(),
    }
}

fn principal(p: &Principal) -> Value {
    json!({
        "issuer": p.issuer(),
        "subject": p.subject(),
        "kind": p.kind().as_str(),
        "client_id": p.client_id(),
        "auth_method": p.auth_method().as_str(),
        "token_fingerprint": p.token_fingerprint().map(|f| f.to_string()),
        "tenant": p.claims().get("tenant"),
    })
}

fn id_value(id: &JsonRpcId) -> Value {
    match id {
        JsonRpcId::Number(n) => Value::from(*n),
        JsonRpcId::String(s) => Value::from(truncate(s)),
        other => Value::from(truncate(&other.to_string())),
    }
}

fn truncate(s: &str) -> String {
    if s.len() <= MAX_TEXT {
        return s.to_owned();
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
