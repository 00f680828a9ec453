//! Behaviour of the layer and the trail: records, redaction, tamper evidence, restarts, crashes,
//! failing disks and full queues.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use mcp_enterprise_core::{
    AuditEvent, AuthMethod, Denial, InspectLayer, McpBody, Principal, PrincipalKind, TokenFingerprint,
};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tower::{Service, ServiceBuilder, ServiceExt};

use crate::verify::{Report, verify_dir, verify_files, verify_files_with_progress};
use crate::{
    AuditLayer, AuditLayerBuilder, AuditTrail, CheckpointSigner, CheckpointVerifier, Clock, FsyncPolicy,
    QueueFullPolicy, Redaction, ResultMode, trail_files,
};

const NOW_MS: u64 = 1_795_599_045_123;
const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.c2VjcmV0LXRva2VuLXBheWxvYWQ.c2ln";

#[derive(Debug)]
struct Fixed;

impl Clock for Fixed {
    fn now(&self) -> Duration {
        Duration::from_millis(NOW_MS)
    }
}

type Req = Request<McpBody<Full<Bytes>>>;

/// The service behind the layer: answers like an MCP server, and plays an auth layer when the
/// test asks (`x-test-principal`, `x-test-deny`), leaving in the response extensions exactly what
/// the real layers leave.
async fn upstream(req: Req) -> Result<Response<Full<Bytes>>, Infallible> {
    let headers = req.headers().clone();
    let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let call: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(layer) = headers.get("x-test-deny").and_then(|v| v.to_str().ok()) {
        let mut res = Response::new(Full::new(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32600,"message":"Unauthorized"}}"#,
        )));
        *res.status_mut() = StatusCode::UNAUTHORIZED;
        res.extensions_mut().insert(Denial::new(layer.to_owned(), "invalid token: expired").with_jsonrpc_code(-32600));
        return Ok(res);
    }
    let answer = match call.pointer("/params/name").and_then(Value::as_str) {
        Some("fail") => json!({"jsonrpc": "2.0", "id": call["id"], "error": {"code": -32001, "message": "boom"}}),
        _ => json!({"jsonrpc": "2.0", "id": call["id"], "result": {"content": [{"type": "text", "text": "ok"}]}}),
    };
    let sse = headers.get("x-test-sse").is_some();
    let event = headers.get("x-test-event").is_some();
    let mut res = if sse {
        let text = format!(
            "event: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{}}}}\n\ndata: {answer}\n\n"
        );
        let mut r = Response::new(Full::new(Bytes::from(text)));
        r.headers_mut().insert("content-type", "text/event-stream".parse().expect("hv"));
        r
    } else {
        Response::new(Full::new(Bytes::from(answer.to_string())))
    };
    if headers.get("x-test-principal").is_some() {
        let p = Principal::builder("https://idp.example", "alice", PrincipalKind::User, AuthMethod::Dpop)
            .client_id("agent-app")
            .token_fingerprint(TokenFingerprint::from_sha256(&[7; 32]))
            .build();
        res.extensions_mut().insert(p);
    }
    if event {
        let fields = json!({"tool": "echo", "old_digest": "sha256:aa", "new_digest": "sha256:bb"});
        let fields = fields.as_object().cloned().unwrap_or_default();
        AuditEvent::new("integrity.tool_definition_changed", fields).attach(&mut res);
    }
    Ok(res)
}

struct Trail {
    dir: tempfile::TempDir,
    layer: AuditLayer,
    trail: Option<AuditTrail>,
    key: CheckpointVerifier,
}

fn builder(dir: &Path, signer: CheckpointSigner) -> AuditLayerBuilder {
    AuditLayer::builder()
        .directory(dir)
        .signing_key(signer)
        .fsync(FsyncPolicy::EveryRecord)
        .clock(Arc::new(Fixed))
        .redaction(Redaction::new(b"test hmac key, 32 bytes long....").clear("echo", ["text"]))
}

fn start_with(tweak: impl FnOnce(AuditLayerBuilder) -> AuditLayerBuilder) -> Trail {
    let dir = tempfile::tempdir().expect("dir");
    let pem = CheckpointSigner::generate_pem().expect("pem");
    let signer = CheckpointSigner::from_pkcs8(pem.as_bytes()).expect("signer");
    let key = CheckpointVerifier::from_public_key(signer.public_key().as_bytes()).expect("key");
    std::fs::write(dir.path().join("key.pem"), pem).expect("w");
    let trail_dir = dir.path().join("trail");
    let (layer, trail) = tweak(builder(&trail_dir, signer)).build().expect("build");
    Trail { dir, layer, trail: Some(trail), key }
}

impl Trail {
    fn trail_dir(&self) -> PathBuf {
        self.dir.path().join("trail")
    }

    fn restart(&mut self) {
        self.stop();
        let signer =
            CheckpointSigner::from_pkcs8(&std::fs::read(self.dir.path().join("key.pem")).expect("r")).expect("signer");
        let (layer, trail) = builder(&self.trail_dir(), signer).build().expect("build");
        self.layer = layer;
        self.trail = Some(trail);
    }

    fn stop(&mut self) {
        if let Some(t) = self.trail.take() {
            t.shutdown();
        }
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> (StatusCode, Value) {
        let svc = ServiceBuilder::new()
            .layer(self.layer.clone())
            .layer(InspectLayer::new())
            .service(tower::service_fn(upstream));
        let res = svc.oneshot(req).await.expect("infallible");
        let status = res.status();
        let body = res.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    fn records(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for f in trail_files(&self.trail_dir()).expect("files") {
            // a torn line is not a record
            out.extend(std::fs::read_to_string(f).expect("read").lines().filter_map(|l| serde_json::from_str(l).ok()));
        }
        out
    }

    fn calls(&self) -> Vec<Value> {
        self.records().into_iter().filter(|r| r["type"] == "mcp").collect()
    }

    fn verify(&self) -> Report {
        verify_dir(&self.trail_dir(), Some(&self.key), false).expect("verify")
    }
}

fn call(body: Value) -> http::request::Builder {
    let _ = &body;
    Request::post("/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
}

fn tool_call(id: i64, name: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": arguments}})
}

fn body(v: &Value) -> Full<Bytes> {
    Full::new(Bytes::from(v.to_string()))
}

async fn wait_written(t: &Trail, n: u64) {
    for _ in 0..500 {
        if t.layer.stats().written() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("only {} of {n} records written", t.layer.stats().written());
}

#[tokio::test]
async fn an_allowed_call_is_recorded_with_every_field() {
    let mut t = start_with(|b| b.results(ResultMode::Digest));
    let msg = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "echo", "arguments": {"text": "hello", "api_token": TOKEN, "count": 3},
        "_meta": {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                  "io.modelcontextprotocol/aiInvocation": {"turnId": "t-9", "model": {"name": "m1"}, "userIntent": {"text": "greet", "redacted": false}}}}});
    let req = call(msg.clone())
        .header("x-request-id", "req-123")
        .header("x-test-principal", "1")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(body(&msg))
        .expect("req");
    let (status, answer) = t.send(req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["result"]["content"][0]["text"], "ok");
    t.stop();
    let calls = t.calls();
    assert_eq!(calls.len(), 1);
    let r = &calls[0];
    assert_eq!(r["occurred_at"], "2026-11-25T09:30:45.123Z");
    assert_eq!(r["event_id"].as_str().expect("id").len(), 36);
    assert_eq!(r["correlation_id"], "req-123");
    assert_eq!(r["http"], json!({"method": "POST", "path": "/mcp", "status": 200}));
    assert_eq!(r["principal"]["issuer"], "https://idp.example");
    assert_eq!(r["principal"]["subject"], "alice");
    assert_eq!(r["principal"]["kind"], "user");
    assert_eq!(r["principal"]["client_id"], "agent-app");
    assert_eq!(r["principal"]["auth_method"], "dpop");
    assert_eq!(r["principal"]["token_fingerprint"], TokenFingerprint::from_sha256(&[7; 32]).to_string());
    assert_eq!(r["jsonrpc"]["method"], "tools/call");
    assert_eq!(r["jsonrpc"]["id"], 7);
    assert_eq!(r["jsonrpc"]["target"], json!({"kind": "tool", "name": "echo"}));
    assert_eq!(r["jsonrpc"]["era"], "2025-11-25");
    assert_eq!(r["arguments"]["clear"], json!({"text": "hello"}));
    assert_eq!(r["arguments"]["dropped"], json!(["api_token"]));
    assert!(r["arguments"]["digests"]["count"].as_str().expect("digest").starts_with("hmac-sha256:"));
    assert_eq!(r["outcome"], "allowed");
    assert_eq!(r["denied_by"], Value::Null);
    assert_eq!(r["jsonrpc_error"], Value::Null);
    assert!(r["latency_us"].as_u64().is_some());
    assert_eq!(r["response_bytes"].as_u64(), Some(answer.to_string().len() as u64));
    assert!(r["result_digest"].as_str().expect("digest").starts_with("hmac-sha256:"));
    assert_eq!(r["trace"]["traceparent"], "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    assert_eq!(r["invocation"]["client_asserted"], true);
    assert_eq!(r["invocation"]["context"]["turnId"], "t-9");
    assert_eq!(r["seq"].as_u64(), Some(3), "after the start record and its checkpoint");
    let report = t.verify();
    assert!(report.is_ok(), "{report}");
    // the token appears nowhere in the trail, not even in part
    let bytes: Vec<u8> =
        trail_files(&t.trail_dir()).expect("f").iter().flat_map(|f| std::fs::read(f).expect("r")).collect();
    let text = String::from_utf8(bytes).expect("utf8");
    for part in TOKEN.split('.') {
        assert!(!text.contains(part), "token part {part} in the trail");
    }
}

#[tokio::test]
async fn client_info_is_marked_unverified_and_correlation_ids_are_generated() {
    let mut t = start_with(|b| b);
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
        "capabilities": {}, "clientInfo": {"name": "claude-code", "version": "2.1.0"}}});
    let svc =
        ServiceBuilder::new().layer(t.layer.clone()).layer(InspectLayer::new()).service(tower::service_fn(upstream));
    let res = svc.oneshot(call(init.clone()).body(body(&init)).expect("req")).await.expect("ok");
    let header = res.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned).expect("id echoed");
    res.into_body().collect().await.expect("body");
    t.stop();
    let r = &t.calls()[0];
    assert_eq!(r["client"], json!({"unverified": true, "name": "claude-code", "version": "2.1.0"}));
    assert_eq!(r["correlation_id"], header);
    assert_eq!(r["correlation_id"], r["event_id"]);
    assert_eq!(r["principal"], Value::Null);
}

#[tokio::test]
async fn refusals_and_errors_are_recorded_with_the_layer_and_code() {
    let mut t = start_with(|b| b);
    // refused by an auth layer inside
    let m = tool_call(1, "echo", json!({"text": "x"}));
    let (status, _) = t.send(call(m.clone()).header("x-test-deny", "sso").body(body(&m)).expect("req")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // refused by core inspection: not JSON
    let (status, _) = t.send(call(Value::Null).body(Full::new(Bytes::from_static(b"{nope"))).expect("req")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // a JSON-RPC error from the server, as JSON and as SSE
    let m = tool_call(2, "fail", json!({}));
    t.send(call(m.clone()).body(body(&m)).expect("req")).await;
    let m = tool_call(3, "fail", json!({}));
    t.send(call(m.clone()).header("x-test-sse", "1").body(body(&m)).expect("req")).await;
    let m = tool_call(4, "echo", json!({}));
    t.send(call(m.clone()).header("x-test-sse", "1").body(body(&m)).expect("req")).await;
    t.stop();
    let calls = t.calls();
    assert_eq!(calls.len(), 5);
    assert_eq!(calls[0]["outcome"], "denied");
    assert_eq!(calls[0]["denied_by"], json!({"layer": "sso", "reason": "invalid token: expired"}));
    assert_eq!(calls[0]["http"]["status"], 401);
    assert_eq!(calls[0]["jsonrpc_error"], -32600);
    assert_eq!(calls[0]["jsonrpc"]["target"]["name"], "echo");
    assert_eq!(calls[1]["outcome"], "denied");
    assert_eq!(calls[1]["denied_by"]["layer"], "core");
    assert_eq!(calls[1]["jsonrpc_error"], -32700);
    assert_eq!(calls[1]["jsonrpc"], Value::Null);
    for (r, sse) in [(&calls[2], false), (&calls[3], true)] {
        assert_eq!(r["outcome"], "error", "sse={sse}");
        assert_eq!(r["jsonrpc_error"], -32001, "sse={sse}");
        assert_eq!(r["denied_by"], Value::Null);
        assert_eq!(r["http"]["status"], 200);
    }
    assert_eq!(calls[4]["outcome"], "allowed");
    assert!(t.verify().is_ok());
}

#[tokio::test]
async fn events_left_in_the_response_are_recorded_with_the_call() {
    let mut t = start_with(|b| b);
    let m = tool_call(1, "echo", json!({}));
    t.send(call(m.clone()).header("x-test-event", "1").body(body(&m)).expect("req")).await;
    let m = tool_call(2, "echo", json!({}));
    t.send(call(m.clone()).body(body(&m)).expect("req")).await;
    t.stop();
    let calls = t.calls();
    assert_eq!(
        calls[0]["events"],
        json!([{"kind": "integrity.tool_definition_changed", "tool": "echo", "old_digest": "sha256:aa", "new_digest": "sha256:bb"}])
    );
    assert!(calls[1].get("events").is_none());
    assert!(t.verify().is_ok());
}

#[tokio::test]
async fn an_abandoned_response_is_recorded_as_aborted() {
    let mut t = start_with(|b| b);
    let m = tool_call(1, "echo", json!({}));
    let svc =
        ServiceBuilder::new().layer(t.layer.clone()).layer(InspectLayer::new()).service(tower::service_fn(upstream));
    let res = svc.oneshot(call(m.clone()).body(body(&m)).expect("req")).await.expect("ok");
    drop(res); // the client went away before reading the body
    t.stop();
    let r = &t.calls()[0];
    assert_eq!(r["outcome"], "error");
    assert_eq!(r["response_aborted"], true);
}

#[tokio::test]
async fn a_call_cancelled_before_its_response_is_recorded_as_aborted() {
    let mut t = start_with(|b| b);
    let m = tool_call(1, "slow", json!({}));
    let never = tower::service_fn(|_req: Req| std::future::pending::<Result<Response<Full<Bytes>>, Infallible>>());
    let svc = ServiceBuilder::new().layer(t.layer.clone()).layer(InspectLayer::new()).service(never);
    let call = svc.oneshot(call(m.clone()).body(body(&m)).expect("req"));
    // the client goes away (or the server stops) while the upstream has not answered
    let cancelled = tokio::time::timeout(Duration::from_millis(50), call).await;
    assert!(cancelled.is_err(), "the inner service never answers");
    t.stop();
    let calls = t.calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0]["outcome"], "error");
    assert_eq!(calls[0]["response_aborted"], true);
    assert_eq!(calls[0]["http"]["status"], 499);
    assert_eq!(calls[0]["response_bytes"], 0);
    assert!(t.verify().is_ok());
}

#[tokio::test]
async fn a_cancelled_call_names_who_an_inner_layer_authenticated() {
    let mut t = start_with(|b| b);
    // an auth layer inside fills the slot audit left, then the upstream never answers
    let authenticated_then_hung = tower::service_fn(|req: Req| {
        let p = Principal::builder("https://idp.example", "alice", PrincipalKind::User, AuthMethod::Bearer)
            .client_id("agent-app")
            .token_fingerprint(TokenFingerprint::from_sha256(&[7; 32]))
            .build();
        mcp_enterprise_core::PrincipalSlot::fill(req.extensions(), &p);
        std::future::pending::<Result<Response<Full<Bytes>>, Infallible>>()
    });
    let svc = ServiceBuilder::new().layer(t.layer.clone()).layer(InspectLayer::new()).service(authenticated_then_hung);
    let m = tool_call(1, "slow", json!({}));
    let cancelled = tokio::time::timeout(
        Duration::from_millis(50),
        svc.clone().oneshot(call(m.clone()).body(body(&m)).expect("req")),
    )
    .await;
    assert!(cancelled.is_err(), "the inner service never answers");
    // refused before authentication (nothing filled the slot): nobody is named
    let never = tower::service_fn(|_req: Req| std::future::pending::<Result<Response<Full<Bytes>>, Infallible>>());
    let anonymous = ServiceBuilder::new().layer(t.layer.clone()).layer(InspectLayer::new()).service(never);
    let m = tool_call(2, "slow", json!({}));
    let cancelled = tokio::time::timeout(
        Duration::from_millis(50),
        anonymous.oneshot(call(m.clone()).body(body(&m)).expect("req")),
    )
    .await;
    assert!(cancelled.is_err());
    t.stop();
    let calls = t.calls();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert_eq!((calls[0]["response_aborted"].clone(), calls[0]["http"]["status"].clone()), (json!(true), json!(499)));
    let p = &calls[0]["principal"];
    assert_eq!(
        (p["subject"].as_str(), p["issuer"].as_str(), p["auth_method"].as_str(), p["client_id"].as_str()),
        (Some("alice"), Some("https://idp.example"), Some("bearer"), Some("agent-app"))
    );
    assert_eq!(p["token_fingerprint"], "BwcHBwcHBwcHBwcHBwcHBw");
    assert_eq!((calls[1]["response_aborted"].clone(), calls[1]["principal"].clone()), (json!(true), Value::Null));
    assert!(t.verify().is_ok());
}

async fn write_calls(t: &Trail, n: i64) {
    for i in 0..n {
        let m = tool_call(i, "echo", json!({"text": format!("call {i}")}));
        let (status, _) = t.send(call(m.clone()).body(body(&m)).expect("req")).await;
        assert_eq!(status, StatusCode::OK);
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).expect("read").lines().map(str::to_owned).collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).expect("write");
}

fn broken(t: &Trail) -> crate::verify::Problem {
    let report = t.verify();
    let text = report.to_string();
    report.broken.unwrap_or_else(|| panic!("expected a broken trail: {text}"))
}

#[tokio::test]
async fn verification_pinpoints_every_kind_of_tampering() {
    let mut t = start_with(|b| b.checkpoints(3, Duration::from_secs(3600)));
    write_calls(&t, 8).await;
    t.stop();
    let report = t.verify();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.records, 8);
    assert!(report.signatures_verified >= 4, "{report}");
    let file = trail_files(&t.trail_dir()).expect("f").remove(0);
    let original = lines(&file);
    let line_of = |want: &str| original.iter().position(|l| l.contains(want)).expect("line") + 1;

    // one byte edited inside a record (its text argument is in clear)
    let n = line_of("call 4");
    let mut edited = original.clone();
    edited[n - 1] = edited[n - 1].replacen("call 4", "call 5", 1);
    write_lines(&file, &edited);
    let p = broken(&t);
    assert_eq!(p.line, n);
    assert!(p.what.contains("hash does not match"), "{p}");

    // an edit that keeps the JSON meaning (whitespace)
    let mut spaced = original.clone();
    spaced[n - 1] = spaced[n - 1].replacen(":", ": ", 1);
    write_lines(&file, &spaced);
    let p = broken(&t);
    assert_eq!(p.line, n);
    assert!(p.what.contains("canonical"), "{p}");

    // a record deleted
    let mut deleted = original.clone();
    deleted.remove(n - 1);
    write_lines(&file, &deleted);
    let p = broken(&t);
    assert_eq!(p.line, n, "the record after the gap");
    assert!(p.what.contains("sequence jumps"), "{p}");

    // two records swapped
    let mut swapped = original.clone();
    swapped.swap(n - 1, n);
    write_lines(&file, &swapped);
    assert_eq!(broken(&t).line, n);

    // the tail truncated (the closing checkpoint and records before it gone)
    let truncated = original[..original.len() - 3].to_vec();
    write_lines(&file, &truncated);
    let p = broken(&t);
    assert!(p.what.contains("without a closing checkpoint"), "{p}");
    // … which a live trail may do
    assert!(verify_dir(&t.trail_dir(), Some(&t.key), true).expect("v").is_ok());

    // a rewritten tail: records re-chained by someone without the key
    let mut forged = original.clone();
    let last = forged.len() - 1;
    let mut record: serde_json::Map<String, Value> = serde_json::from_str(&forged[last]).expect("json");
    record.insert("kind".into(), Value::from("close"));
    record.insert("occurred_at".into(), Value::from("2026-11-25T09:30:46.000Z"));
    let hash = crate::record_hash(&record);
    record.insert("hash".into(), Value::from(hash));
    forged[last] = String::from_utf8(crate::canonical::to_vec(&Value::Object(record))).expect("utf8");
    write_lines(&file, &forged);
    let p = broken(&t);
    assert_eq!(p.line, last + 1);
    assert!(p.what.contains("signature"), "{p}");

    // another key does not verify the original
    write_lines(&file, &original);
    let other = CheckpointVerifier::from_public_key(CheckpointSigner::generate().expect("k").public_key().as_bytes())
        .expect("v");
    let report = verify_dir(&t.trail_dir(), Some(&other), false).expect("v");
    assert!(report.broken.expect("broken").what.contains("signed by key"));
    assert!(t.verify().is_ok());
}

#[tokio::test]
async fn rotation_keeps_one_chain_and_swapped_files_are_caught() {
    let mut t = start_with(|b| b.rotation(600, None));
    write_calls(&t, 6).await;
    t.stop();
    let files = trail_files(&t.trail_dir()).expect("files");
    assert!(files.len() >= 3, "{files:?}");
    let report = t.verify();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.records, 6);
    let records = t.records();
    assert_eq!(records.iter().filter(|r| r["type"] == "file").count(), files.len() - 1);
    // swap the contents of two rotated files
    let (a, b) = (std::fs::read(&files[1]).expect("r"), std::fs::read(&files[2]).expect("r"));
    std::fs::write(&files[1], &b).expect("w");
    std::fs::write(&files[2], &a).expect("w");
    let p = broken(&t);
    assert_eq!(p.file, files[1]);
    assert_eq!(p.line, 1);
    // a rotated file removed from the middle
    std::fs::write(&files[1], &a).expect("w");
    std::fs::write(&files[2], &b).expect("w");
    assert!(t.verify().is_ok());
    let mut partial = files.clone();
    partial.remove(1);
    let report = verify_files(&partial, Some(&t.key), false).expect("v");
    let p = report.broken.expect("broken");
    assert_eq!(p.file, files[2]);
    assert!(p.what.contains("files swapped, removed or renamed"), "{p}");
}

/// The verifier reports the bytes it has checked: never backwards, at the end of every file, and
/// the whole trail's size at the end; a broken trail stops the reports where it broke.
#[tokio::test]
async fn verification_reports_its_progress_in_bytes() {
    let mut t = start_with(|b| b.rotation(600, None));
    write_calls(&t, 6).await;
    t.stop();
    let files = trail_files(&t.trail_dir()).expect("files");
    let total: u64 = files.iter().map(|f| std::fs::metadata(f).expect("m").len()).sum();
    let mut seen = Vec::new();
    let report = verify_files_with_progress(&files, Some(&t.key), false, &mut |done| seen.push(done)).expect("v");
    assert!(report.is_ok(), "{report}");
    assert!(seen.len() >= files.len(), "at least one report per file: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert_eq!(seen.last().copied(), Some(total));
    let first_file = std::fs::metadata(&files[0]).expect("m").len();
    assert_eq!(seen[0], first_file, "the first report ends the first file: {seen:?}");
    // broken in the second file: no report reaches the end of the trail
    let mut lines2 = lines(&files[1]);
    lines2[0] = lines2[0].replacen("\"seq\":", "\"seq\": ", 1);
    write_lines(&files[1], &lines2);
    let mut seen = Vec::new();
    let report = verify_files_with_progress(&files, Some(&t.key), false, &mut |done| seen.push(done)).expect("v");
    assert!(!report.is_ok());
    assert!(seen.iter().all(|&d| d <= first_file), "{seen:?}");
}

#[tokio::test]
async fn a_restart_continues_the_chain() {
    let mut t = start_with(|b| b);
    write_calls(&t, 2).await;
    t.restart();
    write_calls(&t, 2).await;
    t.stop();
    let report = t.verify();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.records, 4);
    let starts: Vec<Value> = t.records().into_iter().filter(|r| r["type"] == "start").collect();
    assert_eq!(starts.len(), 2);
    assert_eq!(starts[0]["previous_run"], "none");
    assert_eq!(starts[1]["previous_run"], "closed");
    assert_eq!(
        starts[1]["previous_file"],
        json!(trail_files(&t.trail_dir()).expect("f")[0].file_name().and_then(|n| n.to_str()))
    );
}

#[tokio::test]
async fn a_torn_last_line_is_detected_then_sealed_at_restart() {
    let mut t = start_with(|b| b);
    write_calls(&t, 3).await;
    t.stop();
    // what a crash mid-write leaves: no closing checkpoint, half a record
    let file = trail_files(&t.trail_dir()).expect("f").remove(0);
    let mut ls = lines(&file);
    ls.pop();
    let torn = ls.pop().expect("record");
    let mut bytes: Vec<u8> = ls.iter().flat_map(|l| format!("{l}\n").into_bytes()).collect();
    bytes.extend_from_slice(&torn.as_bytes()[..torn.len() / 2]);
    std::fs::write(&file, &bytes).expect("w");
    let p = broken(&t);
    assert!(p.what.contains("torn last line"), "{p}");
    t.restart();
    write_calls(&t, 1).await;
    t.stop();
    let report = t.verify();
    assert!(report.is_ok(), "{report}");
    assert!(report.notes.iter().any(|n| n.contains("torn line")), "{report}");
    let start = t.records().into_iter().filter(|r| r["type"] == "start").nth(1).expect("second start");
    assert_eq!(start["previous_run"], "unclean");
    assert_eq!(start["torn"]["bytes"], torn.len() / 2);
    // the torn bytes are still there, byte for byte
    assert!(std::fs::read(&file).expect("r").ends_with(&torn.as_bytes()[..torn.len() / 2]));
}

#[tokio::test]
async fn a_failing_disk_holds_records_and_the_policy_decides() {
    // the next file after a rotation is /dev/full: every write fails with ENOSPC
    for policy in [QueueFullPolicy::Backpressure, QueueFullPolicy::FailClosed] {
        let mut t = start_with(|b| b.rotation(1, None).on_full(policy).queue_capacity(4));
        let dir = t.trail_dir();
        // start, checkpoint, call 1 (seq 3), rotate checkpoint, then a new file opening with
        // a `file` record (seq 5); the next call (6) and its rotate checkpoint (7) lead to file 8
        write_calls(&t, 1).await;
        wait_written(&t, 1).await;
        for _ in 0..200 {
            if t.records().last().is_some_and(|r| r["type"] == "file") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let last = t.records().last().cloned().expect("records");
        assert_eq!((last["type"].as_str(), last["seq"].as_u64()), (Some("file"), Some(5)));
        let next = dir.join(crate::file::file_name(8));
        std::os::unix::fs::symlink("/dev/full", &next).expect("symlink");
        write_calls(&t, 1).await; // rotates after this record: the rotate checkpoint, then /dev/full
        for _ in 0..200 {
            if t.layer.stats().failed() > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(t.layer.stats().failed() > 0, "{policy:?}: writes fail");
        let m = tool_call(9, "echo", json!({"text": "during"}));
        let svc = ServiceBuilder::new()
            .layer(t.layer.clone())
            .layer(InspectLayer::new())
            .service(tower::service_fn(upstream));
        match policy {
            QueueFullPolicy::FailClosed => {
                let res = svc.oneshot(call(m.clone()).body(body(&m)).expect("req")).await.expect("ok");
                assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE, "nothing unrecorded gets through");
                assert_eq!(t.layer.stats().refused(), 1);
                assert_eq!(res.extensions().get::<Denial>().map(Denial::layer), Some("audit"));
            }
            _ => {
                // the call goes through; its record waits for the disk
                let res = svc.oneshot(call(m.clone()).body(body(&m)).expect("req")).await.expect("ok");
                assert_eq!(res.status(), StatusCode::OK);
                res.into_body().collect().await.expect("body");
                tokio::time::sleep(Duration::from_millis(100)).await;
                assert!(t.layer.stats().queued() >= 1, "held, not dropped");
            }
        }
        // space comes back
        std::fs::remove_file(&next).expect("rm");
        let expected = if policy == QueueFullPolicy::FailClosed { 2 } else { 3 };
        wait_written(&t, expected).await;
        t.stop();
        let report = t.verify();
        assert!(report.is_ok(), "{policy:?}: {report}");
        assert_eq!(report.records, expected, "{policy:?}: nothing lost");
    }
}

/// The writer hands the buffers of written records back to the request path — as many as a batch
/// held, so a busy trail allocates none per record — and gives all but 256 of them back to the
/// allocator once it has been idle through a whole wait.
#[tokio::test]
async fn spare_records_cover_a_batch_and_shrink_when_idle() {
    let t = start_with(|b| b.fsync(FsyncPolicy::Os));
    let shared = t.layer.recorder.shared.clone();
    // 600 records queued at once (nobody takes a spare record meanwhile): batches of up to 600
    for i in 0..600 {
        let mut record = shared.record();
        record.str("type", "mcp");
        record.int("n", i);
        shared.push(record, None);
    }
    wait_written(&t, 600).await;
    assert_eq!(shared.spare_len(), 600, "every written record's buffers kept for reuse");
    let built = shared.record();
    assert_eq!(shared.spare_len(), 599, "a record is built in a spare one");
    drop(built);
    // idle: nothing queued through a whole wait (at most a second) leaves 256
    for _ in 0..300 {
        if shared.spare_len() == 256 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(shared.spare_len(), 256, "the spare records of a busy spell go back once idle");
}

/// The writer keeps its batch buffer from one batch to the next: each batch's lines are written
/// once, none of an earlier batch again, and the chain runs through them all.
#[tokio::test]
async fn batches_written_from_a_kept_buffer_hold_each_record_once() {
    let mut t = start_with(|b| b.fsync(FsyncPolicy::Os));
    let shared = t.layer.recorder.shared.clone();
    let mut n = 0;
    for round in 1..=6 {
        // batches of different sizes, each written before the next is queued
        for _ in 0..round * 7 {
            let mut record = shared.record();
            record.str("type", "mcp");
            record.int("n", n);
            shared.push(record, None);
            n += 1;
        }
        wait_written(&t, u64::try_from(n).expect("n")).await;
    }
    t.stop();
    assert!(t.verify().is_ok(), "{}", t.verify());
    let seen: Vec<i64> = t.calls().iter().map(|r| r["n"].as_i64().expect("n")).collect();
    assert_eq!(seen, (0..n).collect::<Vec<_>>(), "every record once, in order");
}

#[tokio::test]
async fn a_full_queue_waits_or_refuses_per_policy() {
    for policy in [QueueFullPolicy::Backpressure, QueueFullPolicy::FailClosed] {
        let mut t = start_with(|b| b.queue_capacity(1).on_full(policy));
        let gate = Arc::new(Semaphore::new(0));
        let g = gate.clone();
        let slow = tower::service_fn(move |req: Req| {
            let g = g.clone();
            async move {
                let _permit = g.acquire().await.expect("gate");
                upstream(req).await
            }
        });
        let mut svc = ServiceBuilder::new().layer(t.layer.clone()).layer(InspectLayer::new()).service(slow);
        let m = tool_call(1, "echo", json!({}));
        let first = svc.ready().await.expect("ready").call(call(m.clone()).body(body(&m)).expect("req"));
        let first = tokio::spawn(first);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = svc.ready().await.expect("ready").call(call(m.clone()).body(body(&m)).expect("req"));
        let second = tokio::spawn(second);
        tokio::time::sleep(Duration::from_millis(100)).await;
        match policy {
            QueueFullPolicy::FailClosed => {
                let res = second.await.expect("join").expect("ok");
                assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
                gate.add_permits(1);
                first.await.expect("join").expect("ok").into_body().collect().await.expect("b");
                wait_written(&t, 1).await;
            }
            _ => {
                assert!(!second.is_finished(), "waits for room in the queue");
                gate.add_permits(2);
                first.await.expect("join").expect("ok").into_body().collect().await.expect("b");
                second.await.expect("join").expect("ok").into_body().collect().await.expect("b");
                wait_written(&t, 2).await;
            }
        }
        t.stop();
        assert!(t.verify().is_ok());
    }
}

#[test]
fn advertised_settings_say_what_is_recorded() {
    let t = start_with(|b| b.retention_hint("P1Y"));
    let set = t.layer.add_extensions(mcp_enterprise_core::ExtensionSet::builder()).expect("ext").build();
    assert_eq!(
        set.advertised()["io.github.mcp-enterprise/audit"],
        json!({"arguments": "digest", "results": "none", "invocationContext": true, "tamperEvident": true, "retention": "P1Y"})
    );
    assert!(!format!("{:?}", t.layer).contains("test hmac key"));
}
