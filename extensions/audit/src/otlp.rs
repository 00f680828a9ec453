//! An OpenTelemetry logs sink: every sealed record as an OTLP `LogRecord`, exported over
//! OTLP/HTTP with the JSON encoding (`POST /v1/logs`) by its own thread, so a slow or absent
//! collector never holds up the trail file.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};

use crate::error::AuditError;
use crate::time::parse_rfc3339_millis;
use crate::writer::AuditSink;

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

/// Exports every record to an OpenTelemetry collector (OTLP/HTTP, JSON encoding, plain `http://`:
/// run the collector as a local sidecar, or put a TLS-terminating proxy in front).
#[derive(Debug)]
pub struct OtlpSink {
    tx: Option<SyncSender<Value>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<OtlpStats>,
}

impl OtlpSink {
    /// A sink posting to `endpoint`, e.g. `http://127.0.0.1:4318/v1/logs`.
    pub fn new(endpoint: &str, service_name: &str) -> Result<Self, AuditError> {
        let target = Target::parse(endpoint)?;
        let (tx, rx) = sync_channel(QUEUE);
        let stats = Arc::new(OtlpStats::default());
        let exporter = Exporter { target, rx, stats: stats.clone(), service: service_name.to_owned() };
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
    addr: String,
    host_header: String,
    path: String,
}

impl Target {
    fn parse(endpoint: &str) -> Result<Self, AuditError> {
        let bad = |why: &str| AuditError::Config(format!("otlp endpoint {endpoint:?}: {why}"));
        let rest = endpoint.strip_prefix("http://").ok_or_else(|| bad("must be an http:// URL"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/v1/logs"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(bad("must name a host and carry no credentials"));
        }
        let addr = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Self { addr, host_header: authority.to_owned(), path: path.to_owned() })
    }
}

struct Exporter {
    target: Target,
    rx: Receiver<Value>,
    stats: Arc<OtlpStats>,
    service: String,
}

impl Exporter {
    fn run(self) {
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
            match self.post(&batch) {
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

    fn post(&self, batch: &[&Value]) -> io::Result<()> {
        let body = export_request(batch, &self.service).to_string();
        let addr: SocketAddr = self
            .target
            .addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::other("the collector address does not resolve"))?;
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.target.path,
            self.target.host_header,
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(body.as_bytes())?;
        let mut reader = BufReader::new(stream.take(64 * 1024));
        let mut status = String::new();
        reader.read_line(&mut status)?;
        let code = status.split_whitespace().nth(1).and_then(|c| c.parse::<u16>().ok()).unwrap_or(0);
        if (200..300).contains(&code) {
            Ok(())
        } else {
            Err(io::Error::other(format!("the collector answered {}", status.trim())))
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
        let t = Target::parse("http://127.0.0.1:4318/v1/logs").expect("ok");
        assert_eq!((t.addr.as_str(), t.path.as_str()), ("127.0.0.1:4318", "/v1/logs"));
        let t = Target::parse("http://collector").expect("ok");
        assert_eq!((t.addr.as_str(), t.path.as_str()), ("collector:80", "/v1/logs"));
        assert!(Target::parse("https://c/v1/logs").is_err());
        assert!(Target::parse("http://u:p@c/v1/logs").is_err());
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
