//! `audit export` judged by implementations nobody on the team wrote, on a real trail holding
//! every record kind — allowed, each denial kind (no token, a forged token, a missing scope, a
//! policy, a rate limit, a malformed request, a foreign `Host`), an error answered by the
//! upstream, a call its client aborted mid-stream, signed checkpoints and the closing one: every
//! OCSF event validates against the OCSF JSON schema of its class (PyPI `ocsf-json-schema`, which
//! packages the OCSF schema, validated by PyPI `jsonschema`), and every CEF line parses with PyPI
//! `pycef` back to the record's values. An event with a required attribute removed is refused,
//! so the validator is not a yes-man.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use http::{HeaderValue, StatusCode};
use http_body_util::BodyExt;
use mcp_enterprise::demo::{DEMO_ISSUER, DemoIdp};
use mcp_enterprise_audit::CheckpointSigner;
use mcp_enterprise_audit::verify::verify_dir;
use mcp_enterprise_config::Loader;
use mcp_enterprise_gateway::configured::ConfiguredGateway;
use mcp_enterprise_tests::gateway_process;
use mcp_enterprise_tests::peers::Peers;
use serde_json::{Value, json};

use crate::common;

/// Runs `siem-check.py MODE FILE` (tests/peers): one JSON document per line of `file`.
fn judge(mode: &str, file: &Path) -> Vec<Value> {
    let peers = Peers::default_dir();
    // a PYTHONPATH given by the caller comes first (a scratch install), then the shared peers
    let path = match std::env::var("PYTHONPATH") {
        Ok(given) if !given.is_empty() => format!("{given}:{}", peers.join("py").display()),
        _ => peers.join("py").display().to_string(),
    };
    let out = Command::new("python3")
        .arg(peers.join("siem-check.py"))
        .args([mode, &file.display().to_string()])
        .env("PYTHONPATH", path)
        .output()
        .expect("python3 runs siem-check.py (bash tests/run.sh installs its packages)");
    assert!(
        out.status.success(),
        "siem-check.py {mode} failed (are ocsf-json-schema, jsonschema and pycef installed in tests/peers/py?):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8").lines().map(|l| serde_json::from_str(l).expect("json")).collect()
}

/// `mcp-enterprise audit export --format FORMAT DIR`: its lines.
fn export(format: &str, trail: &Path) -> Vec<String> {
    let binary = gateway_process::binary().unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(binary)
        .args(["audit", "export", "--format", format])
        .arg(trail)
        .output()
        .expect("run mcp-enterprise");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").lines().map(str::to_owned).collect()
}

fn tool_call(
    url: &str,
    id: i64,
    name: &str,
    arguments: Value,
    token: Option<&str>,
) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let mut req = common::modern(url, id, "tools/call", json!({"name": name, "arguments": arguments}), json!({}));
    if let Some(token) = token {
        req.headers_mut().insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).expect("hv"));
    }
    req
}

/// A trail with every record kind, sealed: its directory.
async fn every_kind_of_record(dir: &Path) -> std::path::PathBuf {
    let upstream = common::demo_upstream().await;
    let idp = DemoIdp::generate().expect("idp");
    let resource = "http://localhost/mcp";
    let pem = CheckpointSigner::generate_pem().expect("key");
    let key = dir.join("audit-signing-key.pem");
    std::fs::write(&key, pem).expect("write key");
    let policy = dir.join("calls.cedar");
    std::fs::write(
        &policy,
        "permit(principal, action == Mcp::Action::\"tools/call\", resource);\n\
         forbid(principal, action == Mcp::Action::\"tools/call\", resource == Mcp::Tool::\"run_query\");\n",
    )
    .expect("write policy");
    let trail = dir.join("trail");
    let config = json!({
        "version": 1,
        "resource": resource,
        "upstream": {"url": upstream.url},
        "listen": {"address": "127.0.0.1:0"},
        "sso": {
            "issuers": [{"issuer": DEMO_ISSUER, "jwks": idp.jwks()}],
            "scopes": {"rules": [{"method": "tools/call", "name": "delete_*", "scopes": ["admin"]}]},
        },
        "policy": {"policy_files": [policy]},
        // a signed checkpoint every 4 calls, and the closing one
        "audit": {"directory": trail, "signing_key_file": key, "checkpoint_every_records": 4},
        "rate_limits": [{"name": "adds", "methods": ["tools/call"], "tools": ["add"], "requests": 1, "per_secs": 86400}],
    });
    let file = dir.join("gateway.json");
    std::fs::write(&file, config.to_string()).expect("write config");
    let gateway = ConfiguredGateway::start(Loader::new().file(&file)).await.expect("gateway");
    let url = gateway.mcp_url();
    let token = idp.mint("alice", "mcp", resource, Duration::from_secs(3600)).expect("token");
    let forged =
        DemoIdp::generate().expect("idp").mint("mallory", "mcp", resource, Duration::from_secs(3600)).expect("t");
    let expect = |status: StatusCode| {
        move |(got, _, body): (StatusCode, http::HeaderMap, Value)| {
            assert_eq!(got, status, "{body}");
        }
    };
    // allowed
    expect(StatusCode::OK)(common::call(tool_call(&url, 1, "echo", json!({"text": "x"}), Some(&token))).await);
    expect(StatusCode::OK)(common::call(tool_call(&url, 2, "add", json!({"a": 1, "b": 2}), Some(&token))).await);
    // denied: by the rate limit, no token, a forged token, a missing scope, the policies, a
    // header that disagrees with the body, a foreign Host
    expect(StatusCode::TOO_MANY_REQUESTS)(
        common::call(tool_call(&url, 3, "add", json!({"a": 1, "b": 2}), Some(&token))).await,
    );
    expect(StatusCode::UNAUTHORIZED)(common::call(tool_call(&url, 4, "echo", json!({"text": "x"}), None)).await);
    expect(StatusCode::UNAUTHORIZED)(
        common::call(tool_call(&url, 5, "echo", json!({"text": "x"}), Some(&forged))).await,
    );
    expect(StatusCode::FORBIDDEN)(
        common::call(tool_call(&url, 6, "delete_customer", json!({"id": "c-001"}), Some(&token))).await,
    );
    expect(StatusCode::FORBIDDEN)(
        common::call(tool_call(&url, 7, "run_query", json!({"database": "x"}), Some(&token))).await,
    );
    let mut req = tool_call(&url, 8, "echo", json!({"text": "x"}), Some(&token));
    req.headers_mut().insert("mcp-name", HeaderValue::from_static("add"));
    expect(StatusCode::BAD_REQUEST)(common::call(req).await);
    let mut req = tool_call(&url, 9, "echo", json!({"text": "x"}), Some(&token));
    req.headers_mut().insert("host", HeaderValue::from_static("attacker.example"));
    expect(StatusCode::FORBIDDEN)(common::call(req).await);
    // an error: the upstream answers a JSON-RPC error (no such tool)
    let (status, _, body) = common::call(tool_call(&url, 10, "no_such_tool", json!({}), Some(&token))).await;
    assert!(body.get("error").is_some() || body["result"]["isError"] == true, "{status} {body}");
    // aborted: the client goes away while the upstream streams its progress
    let mut req = tool_call(&url, 11, "stream_progress", json!({"steps": 50, "interval_ms": 100}), Some(&token));
    let mut body: Value =
        serde_json::from_slice(&req.body().clone().collect().await.expect("body").to_bytes()).expect("json");
    body["params"]["_meta"]["progressToken"] = json!("p-11");
    *req.body_mut() = http_body_util::Full::new(bytes::Bytes::from(body.to_string()));
    req.headers_mut().remove("content-length");
    let response = common::send(req).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = response.into_body();
    let first = stream.frame().await.expect("a first event").expect("frame");
    assert!(first.is_data());
    drop(stream);
    // the gateway sees the client gone and records the call
    let started = std::time::Instant::now();
    while !common::call_records(&trail).iter().any(|r| r["jsonrpc"]["id"] == 11) {
        assert!(started.elapsed() < Duration::from_secs(10), "the aborted call was never recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gateway.shutdown().await;
    trail
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_export_is_valid_ocsf_and_parseable_cef_for_every_record_kind() {
    let dir = tempfile::tempdir().expect("dir");
    let trail = every_kind_of_record(dir.path()).await;
    let report = verify_dir(&trail, None, false).expect("verify");
    assert!(report.is_ok(), "{report}");
    let all: Vec<Value> = mcp_enterprise_audit::trail_files(&trail)
        .expect("files")
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .expect("read")
                .lines()
                .map(|l| serde_json::from_str(l).expect("json"))
                .collect::<Vec<_>>()
        })
        .collect();
    let calls: Vec<&Value> = all.iter().filter(|r| r["type"] == "mcp").collect();
    let checkpoints = all.iter().filter(|r| r["type"] == "checkpoint").count();
    assert!(checkpoints >= 3, "periodic checkpoints and the closing one: {all:#?}");
    // every kind is there
    let kinds: std::collections::BTreeSet<String> = calls
        .iter()
        .map(|r| match (r["outcome"].as_str(), r["denied_by"]["layer"].as_str(), r["response_aborted"] == true) {
            (Some("error"), _, true) => "aborted".to_owned(),
            (Some(outcome), Some(layer), _) => format!("{outcome} by {layer}"),
            (Some(outcome), None, _) => outcome.to_owned(),
            _ => "?".to_owned(),
        })
        .collect();
    for kind in [
        "allowed",
        "error",
        "aborted",
        "denied by sso",
        "denied by policy",
        "denied by ratelimit",
        "denied by core",
        "denied by gateway",
    ] {
        assert!(kinds.contains(kind), "no {kind} record: {kinds:?}");
    }
    assert!(calls.iter().all(|r| r["http"]["peer_ip"] == "127.0.0.1"), "every call names its peer");

    // OCSF: one event per call record, none for the chain's bookkeeping, each valid
    let events = export("ocsf", &trail);
    assert_eq!(events.len(), calls.len(), "{events:#?}");
    // a control: an event without its required `api` must be refused
    let mut broken: Value = serde_json::from_str(&events[0]).expect("json");
    broken.as_object_mut().expect("object").remove("api");
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, format!("{}\n{broken}\n", events.join("\n"))).expect("write");
    let judged = judge("ocsf", &file);
    assert_eq!(judged.len(), events.len() + 1);
    for (verdict, event) in judged.iter().zip(&events) {
        assert_eq!(verdict["valid"], true, "{verdict}\n{event}");
    }
    let control = judged.last().expect("the control");
    assert_eq!(control["valid"], false, "an event without `api` was accepted: {control}");
    assert!(control.to_string().contains("'api' is a required property"), "{control}");
    for (event, record) in events.iter().zip(&calls) {
        let event: Value = serde_json::from_str(event).expect("json");
        assert_eq!(event["metadata"]["uid"], record["event_id"]);
        assert_eq!(event["src_endpoint"]["ip"], "127.0.0.1");
        let success = record["outcome"] == "allowed";
        assert_eq!(event["status_id"], if success { 1 } else { 2 }, "{event}");
    }

    // CEF: one line per call record, parsed back to the record's values
    let lines = export("cef", &trail);
    assert_eq!(lines.len(), calls.len());
    let file = dir.path().join("events.cef");
    std::fs::write(&file, format!("{}\n", lines.join("\n"))).expect("write");
    let parsed = judge("cef", &file);
    assert_eq!(parsed.len(), calls.len());
    for ((verdict, record), line) in parsed.iter().zip(&calls).zip(&lines) {
        let p = &verdict["parsed"];
        assert!(p.is_object(), "pycef could not parse {line}");
        assert_eq!((p["CEFVersion"].as_str(), p["DeviceVendor"].as_str()), (Some("0"), Some("mcp-enterprise")), "{p}");
        assert_eq!(p["externalId"], record["event_id"], "{line}");
        assert_eq!(p["act"], record["outcome"], "{line}");
        assert_eq!(p["correlationId"], record["correlation_id"], "{line}");
        assert_eq!(p["httpStatus"], record["http"]["status"].to_string(), "{line}");
        let severity: u8 = p["Severity"].as_str().and_then(|s| s.parse().ok()).expect("severity");
        assert!(severity <= 10, "{line}");
        if let Some(layer) = record["denied_by"]["layer"].as_str() {
            assert_eq!(p["deniedBy"], layer, "{line}");
        }
        if let Some(subject) = record["principal"]["subject"].as_str() {
            assert_eq!(p["suser"], subject, "{line}");
        }
    }
}
