//! Turning trail records into what SIEMs ingest: OCSF API Activity events and CEF lines.

use serde_json::{Map, Value, json};

use crate::time::parse_rfc3339_millis;

/// OCSF schema version the events follow (1.4.0: the first with the `trace` object).
pub const OCSF_VERSION: &str = "1.4.0";
const PRODUCT: &str = "mcp-enterprise";
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn activity(method: Option<&str>) -> (u64, &'static str) {
    match method {
        Some(m) if m.ends_with("/list") || m == "resources/read" || m == "prompts/get" || m == "server/discover" => {
            (2, "Read")
        }
        Some("initialize") => (1, "Create"),
        _ => (99, "Other"),
    }
}

/// A W3C `traceparent`'s trace id and flags (`00-<trace id>-<parent id>-<flags>`).
fn trace_of(traceparent: Option<&str>) -> Option<Value> {
    let mut parts = traceparent?.split('-');
    let (_version, trace_id, _parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| json!({"uid": trace_id, "flags": flags}))
}

/// Where the call came from: the client's address when the record has it (the gateway's
/// listener records it; a trusted proxy's as an intermediate, the peer's port only when the
/// client is the peer), else the client's self-declared name, else `unknown` (OCSF requires the
/// endpoint to name something).
fn source(record: &Value) -> Value {
    let ip = record.pointer("/src_endpoint/ip").or_else(|| record.pointer("/http/peer_ip"));
    match (ip.and_then(Value::as_str), text(record, &["client", "name"])) {
        (Some(ip), _) => match record.pointer("/src_endpoint/proxy_ip") {
            Some(proxy) => json!({"ip": ip, "intermediate_ips": [proxy]}),
            None => json!({"ip": ip, "port": record.pointer("/http/peer_port")}),
        },
        (None, Some(name)) => json!({"name": name}),
        (None, None) => json!({"name": "unknown"}),
    }
}

/// Drops `null` members, and objects left empty, at every level: OCSF types have no null (an
/// absent attribute is left out) and its objects name at least one thing.
fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, without_nulls(v)))
                .filter(|(_, v)| !v.is_null() && v.as_object().is_none_or(|o| !o.is_empty()))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// One call record as an OCSF API Activity event (class 6003); `None` for chain bookkeeping
/// records (start, file, checkpoint), which `audit verify` checks instead.
pub fn ocsf(record: &Value) -> Option<Value> {
    if record.get("type").and_then(Value::as_str) != Some("mcp") {
        return None;
    }
    let method = text(record, &["jsonrpc", "method"]);
    let (activity_id, activity_name) = activity(method);
    let outcome = record.get("outcome").and_then(Value::as_str).unwrap_or("error");
    let (status_id, status, severity_id) = match outcome {
        "allowed" => (1, "Success", 1),
        "denied" => (2, "Failure", 3),
        _ => (2, "Failure", 2),
    };
    let principal = record.get("principal").filter(|p| !p.is_null());
    let time = text(record, &["occurred_at"]).and_then(parse_rfc3339_millis);
    let mut unmapped = Map::new();
    for key in ["seq", "hash", "arguments", "invocation", "jsonrpc_error", "result_digest", "response_bytes"] {
        if let Some(v) = record.get(key).filter(|v| !v.is_null()) {
            unmapped.insert(key.into(), v.clone());
        }
    }
    Some(without_nulls(json!({
        "class_uid": 6003,
        "class_name": "API Activity",
        "category_uid": 6,
        "category_name": "Application Activity",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": 600_300 + activity_id,
        "time": time,
        "severity_id": severity_id,
        "status_id": status_id,
        "status": status,
        "status_code": record.pointer("/http/status").map(Value::to_string),
        "status_detail": text(record, &["denied_by", "reason"]),
        "duration": record.get("latency_us").and_then(Value::as_u64).map(|us| us / 1000),
        "metadata": {
            "version": OCSF_VERSION,
            "uid": record.get("event_id"),
            "correlation_uid": record.get("correlation_id"),
            "product": {"name": PRODUCT, "vendor_name": PRODUCT, "version": VERSION},
            "log_name": "mcp-audit",
        },
        "actor": {
            // a call refused before (or without) authentication has no principal: anonymous
            "user": principal.map_or_else(|| json!({"name": "anonymous", "type": "anonymous"}), |p| json!({
                "uid": p.get("subject"),
                "type": p.get("kind"),
                "org": p.get("tenant").filter(|t| !t.is_null()).map(|t| json!({"uid": t})),
            })),
            "app_name": principal.and_then(|p| p.get("client_id")).filter(|c| !c.is_null()),
            "authorizations": principal.map(|p| json!([{"decision": outcome, "policy": {"name": p.get("auth_method")}}])),
            "idp": principal.map(|p| json!({"name": p.get("issuer")})),
        },
        "api": {
            // refused before its JSON-RPC message was read: the HTTP method
            "operation": method.or_else(|| text(record, &["http", "method"])),
            "request": {"uid": record.pointer("/jsonrpc/id").map(|id| match id { Value::String(s) => s.clone(), other => other.to_string() })},
            "response": {"code": record.get("jsonrpc_error"), "error": text(record, &["denied_by", "layer"])},
            "service": {"name": text(record, &["jsonrpc", "target", "name"])},
            "version": text(record, &["jsonrpc", "protocol_version"]),
        },
        "http_request": {
            "http_method": text(record, &["http", "method"]),
            "url": {"path": text(record, &["http", "path"])},
            "user_agent": text(record, &["client", "name"]),
        },
        "src_endpoint": source(record),
        "trace": trace_of(text(record, &["trace", "traceparent"])),
        "unmapped": unmapped,
    })))
}

/// One call record as a CEF line; `None` for chain bookkeeping records.
pub fn cef(record: &Value) -> Option<String> {
    if record.get("type").and_then(Value::as_str) != Some("mcp") {
        return None;
    }
    let method = text(record, &["jsonrpc", "method"]).unwrap_or("-");
    let outcome = record.get("outcome").and_then(Value::as_str).unwrap_or("error");
    let severity = match outcome {
        "allowed" => 2,
        "denied" => 6,
        _ => 5,
    };
    let signature = format!("mcp:{method}");
    let name = match text(record, &["jsonrpc", "target", "name"]) {
        Some(target) => format!("{method} {target}"),
        None => method.to_owned(),
    };
    let mut ext: Vec<(&str, String)> = Vec::new();
    let mut put = |k: &'static str, v: Option<String>| {
        if let Some(v) = v {
            ext.push((k, v));
        }
    };
    let mut labeled: Vec<(&'static str, &'static str, Option<String>)> = Vec::new();
    put("rt", text(record, &["occurred_at"]).and_then(parse_rfc3339_millis).map(|t| t.to_string()));
    put("externalId", text(record, &["event_id"]).map(str::to_owned));
    put("suser", text(record, &["principal", "subject"]).map(str::to_owned));
    put("act", Some(outcome.to_owned()));
    put("outcome", Some(if outcome == "allowed" { "success".into() } else { "failure".into() }));
    put("requestMethod", text(record, &["http", "method"]).map(str::to_owned));
    put("request", text(record, &["http", "path"]).map(str::to_owned));
    put("reason", text(record, &["denied_by", "reason"]).map(str::to_owned));
    labeled.push(("cs1", "issuer", text(record, &["principal", "issuer"]).map(str::to_owned)));
    labeled.push(("cs2", "clientId", text(record, &["principal", "client_id"]).map(str::to_owned)));
    labeled.push(("cs3", "deniedBy", text(record, &["denied_by", "layer"]).map(str::to_owned)));
    labeled.push(("cs4", "correlationId", text(record, &["correlation_id"]).map(str::to_owned)));
    labeled.push(("cs5", "traceparent", text(record, &["trace", "traceparent"]).map(str::to_owned)));
    labeled.push(("cs6", "recordHash", text(record, &["hash"]).map(str::to_owned)));
    labeled.push(("cn1", "httpStatus", record.pointer("/http/status").and_then(Value::as_u64).map(|s| s.to_string())));
    labeled.push(("cn2", "jsonRpcError", record.get("jsonrpc_error").and_then(Value::as_i64).map(|c| c.to_string())));
    labeled.push(("cn3", "latencyMicros", record.get("latency_us").and_then(Value::as_u64).map(|l| l.to_string())));
    put("out", record.get("response_bytes").and_then(Value::as_u64).map(|b| b.to_string()));
    for (key, label, value) in labeled {
        if let Some(value) = value {
            ext.push((label_key(key), label.to_owned()));
            ext.push((key, value));
        }
    }
    let ext: Vec<String> = ext.into_iter().map(|(k, v)| format!("{k}={}", escape_ext(&v))).collect();
    Some(format!(
        "CEF:0|{}|{}|{}|{}|{}|{severity}|{}",
        escape_header(PRODUCT),
        escape_header("gateway"),
        escape_header(VERSION),
        escape_header(&signature),
        escape_header(&name),
        ext.join(" ")
    ))
}

fn label_key(key: &str) -> &'static str {
    match key {
        "cs1" => "cs1Label",
        "cs2" => "cs2Label",
        "cs3" => "cs3Label",
        "cs4" => "cs4Label",
        "cs5" => "cs5Label",
        "cs6" => "cs6Label",
        "cn1" => "cn1Label",
        "cn2" => "cn2Label",
        _ => "cn3Label",
    }
}

fn escape_header(s: &str) -> String {
    s.replace('\\', "\\\\").replace('|', "\\|").replace(['\r', '\n'], " ")
}

fn escape_ext(s: &str) -> String {
    s.replace('\\', "\\\\").replace('=', "\\=").replace('\r', "\\r").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Value {
        json!({"type": "mcp", "event_id": "e1", "occurred_at": "2026-11-25T09:30:45.123Z", "correlation_id": "c1",
            "http": {"method": "POST", "path": "/mcp", "status": 403},
            "principal": {"issuer": "https://idp", "subject": "alice|x=1", "kind": "user", "client_id": "app",
                          "auth_method": "bearer", "token_fingerprint": "fp", "tenant": null},
            "jsonrpc": {"method": "tools/call", "id": 3, "target": {"kind": "tool", "name": "delete_customer"},
                        "era": "2025-11-25", "protocol_version": "2025-11-25"},
            "outcome": "denied", "denied_by": {"layer": "sso", "reason": "insufficient scope: needs a=b\nc"},
            "jsonrpc_error": -32600, "latency_us": 1500, "response_bytes": 120, "seq": 9, "hash": "h",
            "trace": {"traceparent": null, "tracestate": null}})
    }

    #[test]
    fn ocsf_api_activity() {
        let e = ocsf(&record()).expect("event");
        assert_eq!(e["class_uid"], 6003);
        assert_eq!(e["type_uid"], 600_399);
        assert_eq!(e["time"], 1_795_599_045_123u64);
        assert_eq!(e["status"], "Failure");
        assert_eq!(e["status_code"], "403");
        assert_eq!(e["actor"]["user"]["uid"], "alice|x=1");
        assert_eq!(e["api"]["operation"], "tools/call");
        assert_eq!(e["api"]["service"]["name"], "delete_customer");
        assert_eq!(e["api"]["request"]["uid"], "3");
        assert_eq!(e["metadata"]["uid"], "e1");
        assert_eq!(e["unmapped"]["seq"], 9);
        assert!(ocsf(&json!({"type": "checkpoint"})).is_none());
    }

    #[test]
    fn cef_line_is_escaped() {
        let line = cef(&record()).expect("line");
        assert!(line.starts_with("CEF:0|mcp-enterprise|gateway|"), "{line}");
        assert!(line.contains("|mcp:tools/call|tools/call delete_customer|6|"), "{line}");
        assert!(line.contains("suser=alice|x\\=1"), "{line}");
        assert!(line.contains("reason=insufficient scope: needs a\\=b\\nc"), "{line}");
        assert!(line.contains("rt=1795599045123"), "{line}");
        assert!(line.contains("cn1=403"), "{line}");
        assert!(!line.contains('\n'));
    }
}
