//! An OpenTelemetry logs sink: every sealed record as an OTLP `LogRecord`, exported over
//! OTLP/HTTP with the JSON encoding (`POST /v1/logs`) by its own thread, so a slow or absent
//! collector never holds up the trail file. `https://` collectors are reached through the pack's
//! rustls (aws-lc-rs) client with the system's CA roots; configured headers (an API key) go with
//! every export.
//!
//! Why not the OpenTelemetry SDK's log pipeline (the gateway's traces use the SDK): its
//! `Logger` → batch processor path keeps its own queue, drops silently when full and cannot say
//! which records a collector accepted, while this sink must account for every sealed record
//! (`exported`/`dropped`/`failed_requests`, read by the metrics and `/readyz`), keep what failed
//! for a retry within a bound, export each record verbatim (its canonical JSON as the body, its own
//! time, chain `seq` and `hash`) and say at shutdown what was left unexported. The wire format is
//! the same OTLP/HTTP any collector accepts (checked with the official protobuf definitions).

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Uri};
use http_body_util::Full;
use mcp_enterprise_core::jwks::HttpClient;
use mcp_enterprise_core::outbound::{Egress, TlsSettings};
use serde_json::{Value, json};

use crate::error::AuditError;
use crate::time::parse_rfc3339_millis;
use crate::writer::AuditSink;

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Records waiting for the exporter at most; beyond, records are counted as dropped (the trail
/// file still has them).
const QUEUE: usize = 65_536;
/// Records per export request at most.
const BATCH: usize = 1024;
/// Records kept for a retry while the collector is down, at most.
const RETRY_KEEP: usize = 16_384;

/// Counters of an [`OtlpSink`].
#[derive(Debug, Default)]
pub struct OtlpStats {
    exported: AtomicU64,
    dropped: AtomicU64,
    failed_requests: AtomicU64,
}

impl OtlpStats {
    /// Records the collector accepted.
    pub fn exported(&self) -> u64 {
        self.exported.load(Ordering::Relaxed)
    }
    /// Records given up on (queue or retry buffer full); they remain in the trail file.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
    /// Export requests that failed (retried with the next batch).
    pub fn failed_requests(&self) -> u64 {
        self.failed_requests.load(Ordering::Relaxed)
    }
}

/// Exports every record to an OpenTelemetry collector (OTLP/HTTP, JSON encoding, `https://` or
/// `http://`, with configured headers).
#[derive(Debug)]
pub struct OtlpSink {
    tx: Option<SyncSender<Value>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<OtlpStats>,
}

impl OtlpSink {
    /// A sink posting to `endpoint`, e.g. `https://otel.example.com:4318/v1/logs`.
    pub fn new(endpoint: &str, service_name: &str) -> Result<Self, AuditError> {
        Self::with_headers(endpoint, service_name, &BTreeMap::new())
    }

    /// A sink posting to `endpoint` with `headers` on every export (e.g. an API key).
    pub fn with_headers(
        endpoint: &str,
        service_name: &str,
        headers: &BTreeMap<String, String>,
    ) -> Result<Self, AuditError> {
        Self::with_outbound(endpoint, service_name, headers, &Egress::from_env(), &TlsSettings::new())
    }

    /// [`with_headers`](Self::with_headers), connecting through `egress` (an HTTP proxy, unless
    /// the collector is in its `no_proxy`) and trusting `tls`'s extra CA roots.
    pub fn with_outbound(
        endpoint: &str,
        service_name: &str,
        headers: &BTreeMap<String, String>,
        egress: &Egress,
        tls: &TlsSettings,
    ) -> Result<Self, AuditError> {
        let target = Target::parse(endpoint, headers)?;
        let client =
            HttpClient::with_outbound(EXPORT_TIMEOUT, egress, tls).map_err(|e| AuditError::Config(e.to_string()))?;
        let (tx, rx) = sync_channel(QUEUE);
        let stats = Arc::new(OtlpStats::default());
        let exporter = Exporter { target, rx, stats: stats.clone(), service: service_name.to_owned(), client };
        let thread = std::thread::Builder::new()
            .name("mcpe-audit-otlp".into())
            .spawn(move || exporter.run())
            .map_err(|e| AuditError::Writer(e.to_string()))?;
        Ok(Self { tx: Some(tx), thread: Some(thread), stats })
    }

    /// The export counters (shared: keep a clone before handing the sink to the layer).
    pub fn stats(&self) -> Arc<OtlpStats> {
        self.stats.clone()
    }
}

impl AuditSink for OtlpSink {
    fn write(&mut self, record: &Value, _line: &[u8]) -> io::Result<()> {
        let Some(tx) = &self.tx else { return Ok(()) };
        match tx.try_send(record.clone()) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                Err(io::Error::other("the OTLP export queue is full"))
            }
            Err(TrySendError::Disconnected(_)) => Err(io::Error::other("the OTLP exporter stopped")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        // closing the channel makes the exporter send what it has and stop
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[derive(Debug, Clone)]
struct Target {
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Target {
    fn parse(endpoint: &str, headers: &BTreeMap<String, String>) -> Result<Self, AuditError> {
        let bad = |why: &str| AuditError::Config(format!("otlp endpoint {endpoint:?}: {why}"));
        let uri: Uri = endpoint.parse().map_err(|_| bad("not a valid URL"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(bad("must be an https:// or http:// URL"));
        }
        let authority = uri.authority().ok_or_else(|| bad("must name a host and carry no credentials"))?;
        if authority.host().is_empty() || authority.as_str().contains('@') {
            return Err(bad("must name a host and carry no credentials"));
        }
        let uri = if uri.path() == "/" && !endpoint.ends_with('/') {
            format!("{endpoint}/v1/logs").parse().map_err(|_| bad("not a valid URL"))?
        } else {
            uri
        };
        let headers = headers
            .iter()
            .map(|(name, value)| {
                // the value is secret: never in the message
                let bad = || AuditError::Config(format!("otlp_headers: {name:?} is not a usable HTTP header"));
                Ok((
                    HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?,
                    HeaderValue::from_str(value).map_err(|_| bad())?,
                ))
            })
            .collect::<Result<_, AuditError>>()?;
        Ok(Self { uri, headers })
    }
}

struct Exporter {
    target: Target,
    rx: Receiver<Value>,
    stats: Arc<OtlpStats>,
    service: String,
    client: HttpClient,
}

impl Exporter {
    fn run(self) {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!(%error, "the OTLP exporter cannot start");
                return;
            }
        };
        let mut pending: VecDeque<Value> = VecDeque::new();
        let mut open = true;
        while open || !pending.is_empty() {
            // gather a batch: wait briefly for the first record, then take what is there
            match self.rx.recv_timeout(Duration::from_millis(200)) {
                Ok(r) => pending.push_back(r),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
            while pending.len() < BATCH {
                match self.rx.try_recv() {
                    Ok(r) => pending.push_back(r),
                    Err(_) => break,
                }
            }
            if pending.is_empty() {
                continue;
            }
            let n = pending.len().min(BATCH);
            let batch: Vec<&Value> = pending.iter().take(n).collect();
            match self.post(&runtime, &batch) {
                Ok(()) => {
                    pending.drain(..n);
                    self.stats.exported.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(error) => {
                    self.stats.failed_requests.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, records = n, "OTLP export failed; retrying");
                    while pending.len() > RETRY_KEEP {
                        pending.pop_front();
                        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    if !open {
                        // shutting down with the collector unreachable: say what is left behind
                        self.stats.dropped.fetch_add(pending.len() as u64, Ordering::Relaxed);
                        tracing::error!(records = pending.len(), "OTLP exporter stopped with unexported records");
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    }

    fn post(&self, runtime: &tokio::runtime::Runtime, batch: &[&Value]) -> io::Result<()> {
        let body = export_request(batch, &self.service).to_string();
        let mut request = Request::post(self.target.uri.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(io::Error::other)?;
        for (name, value) in &self.target.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let answer = runtime.block_on(self.client.exchange(request)).map_err(io::Error::other)?;
        if answer.status().is_success() {
            Ok(())
        } else {
            Err(io::Error::other(format!("the collector answered {}", answer.status())))
        }
    }
}

fn attr(key: &str, value: &Value) -> Option<Value> {
    let v = match value {
        Value::String(s) => json!({"stringValue": s}),
        Value::Bool(b) => json!({"boolValue": b}),
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({"intValue": n.to_string()}),
        _ => return None,
    };
    Some(json!({"key": key, "value": v}))
}

/// One `ExportLogsServiceRequest` (OTLP JSON encoding) for `records`.
pub fn export_request(records: &[&Value], service: &str) -> Value {
    let logs: Vec<Value> = records.iter().map(|r| log_record(r)).collect();
    json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeLogs": [{
            "scope": {"name": "mcp_enterprise.audit", "version": env!("CARGO_PKG_VERSION")},
            "logRecords": logs,
        }],
    }]})
}

fn log_record(r: &Value) -> Value {
    let millis = r.get("occurred_at").and_then(Value::as_str).and_then(parse_rfc3339_millis).unwrap_or(0);
    let nanos = u128::from(millis) * 1_000_000;
    let outcome = r.get("outcome").and_then(Value::as_str);
    let (severity, text) = match outcome {
        Some("denied") => (13, "WARN"),
        Some("error") => (17, "ERROR"),
        _ => (9, "INFO"),
    };
    let pairs = [
        ("event.name", r.get("type").map(|t| Value::from(format!("mcp.audit.{}", t.as_str().unwrap_or("record"))))),
        ("mcp.audit.event_id", r.get("event_id").cloned()),
        ("mcp.audit.seq", r.get("seq").cloned()),
        ("mcp.audit.hash", r.get("hash").cloned()),
        ("mcp.audit.outcome", r.get("outcome").cloned()),
        ("mcp.method.name", r.pointer("/jsonrpc/method").cloned()),
        ("mcp.target.name", r.pointer("/jsonrpc/target/name").cloned()),
        ("mcp.audit.denied_by", r.pointer("/denied_by/layer").cloned()),
        ("enduser.id", r.pointer("/principal/subject").cloned()),
        ("http.response.status_code", r.pointer("/http/status").cloned()),
    ];
    let attributes: Vec<Value> = pairs.iter().filter_map(|(k, v)| v.as_ref().and_then(|v| attr(k, v))).collect();
    let mut log = json!({
        "timeUnixNano": nanos.to_string(),
        "observedTimeUnixNano": nanos.to_string(),
        "severityNumber": severity,
        "severityText": text,
        "body": {"stringValue": String::from_utf8_lossy(&crate::canonical::to_vec(r))},
        "attributes": attributes,
    });
    // the span the gateway served the call in, else the caller's W3C traceparent
    // (version-traceid-spanid-flags)
    let own = |key: &str, len: usize| {
        r.pointer(&format!("/trace/{key}"))
            .and_then(Value::as_str)
            .filter(|v| v.len() == len && v.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    if let (Some(trace_id), Some(span_id)) = (own("trace_id", 32), own("span_id", 16)) {
        log["traceId"] = Value::from(trace_id.to_ascii_lowercase());
        log["spanId"] = Value::from(span_id.to_ascii_lowercase());
    } else if let Some(tp) = r.pointer("/trace/traceparent").and_then(Value::as_str) {
        let parts: Vec<&str> = tp.split('-').collect();
        if parts.len() == 4
            && parts[1].len() == 32
            && parts[2].len() == 16
            && parts[1].bytes().all(|b| b.is_ascii_hexdigit())
            && parts[2].bytes().all(|b| b.is_ascii_hexdigit())
        {
            log["traceId"] = Value::from(parts[1].to_ascii_lowercase());
            log["spanId"] = Value::from(parts[2].to_ascii_lowercase());
        }
    }
    log
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let none = BTreeMap::new();
        let t = Target::parse("http://127.0.0.1:4318/v1/logs", &none).expect("ok");
        assert_eq!(t.uri.to_string(), "http://127.0.0.1:4318/v1/logs");
        let t = Target::parse("https://collector", &none).expect("ok");
        assert_eq!(t.uri.to_string(), "https://collector/v1/logs");
        assert!(Target::parse("ftp://c/v1/logs", &none).is_err());
        assert!(Target::parse("http://u:p@c/v1/logs", &none).is_err());
        let headers = BTreeMap::from([("x-api-key".to_owned(), "k".to_owned())]);
        assert_eq!(Target::parse("https://c/v1/logs", &headers).expect("ok").headers.len(), 1);
        let bad = BTreeMap::from([("bad header".to_owned(), "k".to_owned())]);
        assert!(Target::parse("https://c/v1/logs", &bad).is_err());
    }

    #[test]
    fn records_become_log_records() {
        let r = json!({"type": "mcp", "event_id": "e", "occurred_at": "2026-11-25T09:30:45.123Z", "seq": 3,
            "outcome": "denied", "jsonrpc": {"method": "tools/call", "target": {"name": "x"}},
            "trace": {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}});
        let req = export_request(&[&r], "gw");
        let log = &req["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
        assert_eq!(log["timeUnixNano"], "1795599045123000000");
        assert_eq!(log["severityText"], "WARN");
        assert_eq!(log["traceId"], "0af7651916cd43dd8448eb211c80319c");
        assert!(
            log["attributes"]
                .as_array()
                .expect("a")
                .contains(&json!({"key": "mcp.audit.seq", "value": {"intValue": "3"}}))
        );
    }
}
