//! OpenTelemetry traces (the `traces` section) judged by a real OTLP receiver: the official
//! `opentelemetry-proto` definitions decode every span the gateway process exports. One call
//! through the full pack (SSO against a real OpenID provider, policy, rate limits, audit) gives
//! the server span with the MCP attributes and a child span per layer's decision and for the
//! upstream call; the client's `traceparent` (header and `params._meta`) is continued and reaches
//! the upstream in both places with the gateway's span as parent; the audit record holds the
//! same trace id; refusals carry `error.type`.

use std::io::BufRead as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode};
use mcp_enterprise_tests::gateway_process::GatewayProcess;
use mcp_enterprise_tests::oidc::{DEFAULT_JWT_RESOURCE, JWT_CLIENT, OidcOptions, OidcProvider};
use mcp_enterprise_tests::peers::Peers;
use mcp_enterprise_tests::process::ChildGuard;
use serde_json::{Value, json};

use crate::common;

/// What the upstream received: each request's headers and JSON body.
pub(crate) type Received = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

/// An upstream answering every JSON-RPC request with an empty tool result, keeping what it got.
pub(crate) async fn recording_upstream() -> (String, Received) {
    let received: Received = Arc::default();
    let kept = received.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: axum::body::Bytes| {
        let kept = kept.clone();
        async move {
            let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let id = message["id"].clone();
            kept.lock().unwrap().push((headers, message));
            let answer = json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": "ok"}]}});
            ([(http::header::CONTENT_TYPE, "application/json")], answer.to_string())
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// Starts the OTLP receiver peer; returns its base URL (`http://127.0.0.1:<port>`).
pub(crate) fn otlp_receiver(out: &Path) -> (ChildGuard, String) {
    let peers = Peers::default_dir();
    let mut child = std::process::Command::new("python3")
        .arg(peers.join("otlp-receiver.py"))
        .arg(out)
        .env("PYTHONPATH", peers.join("py"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs the OTLP receiver (bash tests/run.sh installs its packages)");
    let stdout = child.stdout.take().unwrap();
    let guard = ChildGuard::new("otlp-receiver", child);
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line).unwrap();
    let port = line.trim().strip_prefix("listening ").unwrap_or_else(|| panic!("receiver said {line:?}")).to_owned();
    (guard, format!("http://127.0.0.1:{port}"))
}

pub(crate) fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A modern `tools/call` of `echo` (SEP-2243 headers), with more `_meta` members.
pub(crate) fn tool_call(
    url: &str,
    id: i64,
    token: Option<&str>,
    meta: Option<Value>,
) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let params = json!({"name": "echo", "arguments": {"text": "x"}});
    let mut req = common::modern(url, id, "tools/call", params, json!({}));
    if let Some(meta) = meta {
        let mut body: Value = serde_json::from_slice(&futures_body(&req)).unwrap();
        for (k, v) in meta.as_object().unwrap() {
            body["params"]["_meta"][k] = v.clone();
        }
        let headers = req.headers().clone();
        req = common::post(url, &body);
        *req.headers_mut() = headers;
    }
    req.headers_mut().insert("host", HeaderValue::from_static("mcp.test"));
    if let Some(token) = token {
        req.headers_mut().insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
    }
    req
}

/// The bytes of a request's (in-memory) body.
fn futures_body(req: &http::Request<http_body_util::Full<bytes::Bytes>>) -> bytes::Bytes {
    use http_body::Body as _;
    let mut body = req.body().clone();
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match std::pin::Pin::new(&mut body).poll_frame(&mut cx) {
        std::task::Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap(),
        _ => bytes::Bytes::new(),
    }
}

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const HEADER_SPAN: &str = "00f067aa0ba902b7";
const META_SPAN: &str = "b7ad6b7169203331";
const OTHER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_call_through_the_full_pack_exports_the_span_tree_and_continues_the_callers_trace() {
    let peers = Peers::require();
    let provider = OidcProvider::start(&peers, OidcOptions::default()).await.expect("oidc-provider");
    let (upstream, received) = recording_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("otlp");
    let (_receiver, collector) = otlp_receiver(&out);
    let api_key = dir.path().join("otel-api-key");
    std::fs::write(&api_key, "key-4711\n").unwrap();
    let policy = dir.path().join("allow.cedar");
    std::fs::write(&policy, "permit(principal, action, resource);\n").unwrap();
    let config = json!({
        "version": 1,
        "resource": DEFAULT_JWT_RESOURCE,
        "upstream": {"url": upstream},
        "listen": {"address": "127.0.0.1:0", "allowed_hosts": ["mcp.test"]},
        "sso": {"issuers": [{"issuer": provider.issuer()}]},
        "policy": {"policy_files": [policy]},
        "rate_limits": [{"name": "calls", "methods": ["tools/call"], "requests": 100, "per_secs": 60}],
        "audit": {"directory": dir.path().join("trail")},
        "traces": {
            "endpoint": format!("{collector}/v1/traces"),
            "headers": {"x-api-key": format!("${{file:{}}}", api_key.display())},
            "resource": {"deployment.environment.name": "test"},
            "service_name": "gateway-under-test",
            "principal": "subject_and_client",
        },
    });
    let file = dir.path().join("gateway.json");
    std::fs::write(&file, config.to_string()).unwrap();
    let gw = GatewayProcess::start_args(dir.path(), &["serve", "--config", file.to_str().unwrap()], "info")
        .await
        .expect("gateway");
    let url = gw.mcp_url().to_owned();
    let token = provider.client_credentials_token(JWT_CLIENT, Some(DEFAULT_JWT_RESOURCE), None).await.expect("token");

    // 1. a call carrying the caller's context in the header and in `_meta` (which wins)
    let mut req = tool_call(
        &url,
        7,
        Some(&token),
        Some(json!({"traceparent": format!("00-{CLIENT_TRACE}-{META_SPAN}-01"), "tracestate": "vendor=meta"})),
    );
    req.headers_mut()
        .insert("traceparent", HeaderValue::from_str(&format!("00-{CLIENT_TRACE}-{HEADER_SPAN}-01")).unwrap());
    let (status, _, body) = common::call(req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // 2. a refusal (no token), with the context in the header alone
    let mut req = tool_call(&url, 8, None, None);
    req.headers_mut()
        .insert("traceparent", HeaderValue::from_str(&format!("00-{OTHER_TRACE}-{HEADER_SPAN}-01")).unwrap());
    let (status, _, _) = common::call(req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // SIGTERM: the gateway stops and its tracer provider sends what is pending
    gw.signal("TERM").unwrap();
    let mut gw = gw;
    let exit = gw.wait_exit(Duration::from_secs(20)).await.expect("exits");
    assert!(exit.success(), "{}", gw.stderr());

    assert!(
        !out.with_extension("errors").exists() && !dir.path().join("otlp.errors").exists(),
        "{:?}",
        std::fs::read_to_string(dir.path().join("otlp.errors"))
    );
    let spans = lines(&dir.path().join("otlp.spans"));
    let describe = || {
        spans
            .iter()
            .map(|s| format!("{} {} <- {} {}", s["name"], s["span_id"], s["parent_span_id"], s["attributes"]))
            .collect::<Vec<_>>()
            .join("\n")
    };
    // every export: protobuf, with the configured header (from the secret reference)
    let exports: Vec<Value> =
        lines(&dir.path().join("otlp.headers")).into_iter().filter(|h| h["path"] == "/v1/traces").collect();
    assert!(!exports.is_empty(), "no trace export");
    for h in &exports {
        assert_eq!(h["content-type"], "application/x-protobuf", "{h}");
        assert_eq!(h["x-api-key"], "key-4711", "{h}");
    }

    // the allowed call's server span: parent = the `_meta` context, the header's a link
    let server = spans
        .iter()
        .find(|s| s["trace_id"] == CLIENT_TRACE && s["kind"] == 2)
        .unwrap_or_else(|| panic!("no server span in the client's trace:\n{}", describe()));
    assert_eq!(server["name"], "tools/call echo", "{server}");
    assert_eq!(server["parent_span_id"], META_SPAN, "{server}");
    assert_eq!(server["resource"]["service.name"], "gateway-under-test");
    assert_eq!(server["resource"]["deployment.environment.name"], "test");
    assert_eq!(server["scope"], "mcp-enterprise");
    let a = &server["attributes"];
    assert_eq!(a["mcp.method.name"], "tools/call", "{a}");
    assert_eq!(a["gen_ai.tool.name"], "echo", "{a}");
    assert_eq!(a["gen_ai.operation.name"], "execute_tool", "{a}");
    assert_eq!(a["jsonrpc.request.id"], "7", "{a}");
    assert_eq!(a["mcp.protocol.version"], common::MODERN, "{a}");
    assert_eq!(a["network.transport"], "tcp", "{a}");
    assert_eq!(a["http.response.status_code"], 200, "{a}");
    assert_eq!(a["mcp_enterprise.client.id"], JWT_CLIENT.id, "{a}");
    assert!(a["enduser.id"].as_str().is_some_and(|s| !s.is_empty()), "{a}");
    assert!(a.get("error.type").is_none(), "{a}");
    assert_eq!(server["status"]["code"], 0, "unset: {server}");

    // its children: each layer's decision and the upstream call
    let id = server["span_id"].as_str().unwrap();
    let children: Vec<&Value> = spans.iter().filter(|s| s["parent_span_id"] == id).collect();
    let child = |name: &str| {
        children
            .iter()
            .copied()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no {name} span under the server span:\n{}", describe()))
    };
    for layer in ["sso", "policy", "rate_limit"] {
        let span = child(layer);
        assert_eq!(span["attributes"]["mcp_enterprise.decision"], "allow", "{span}");
        assert_eq!(span["trace_id"], CLIENT_TRACE);
    }
    assert_eq!(child("audit")["trace_id"], CLIENT_TRACE);
    let upstream_span = child("upstream");
    assert_eq!(upstream_span["kind"], 3, "client: {upstream_span}");
    assert_eq!(upstream_span["attributes"]["http.response.status_code"], 200, "{upstream_span}");
    // the identity provider's documents were fetched under the SSO decision (first token)
    let sso = child("sso");
    assert_eq!(sso["attributes"]["mcp_enterprise.cache"], "miss", "{sso}");
    let idp: Vec<&Value> = spans.iter().filter(|s| s["parent_span_id"] == sso["span_id"]).collect();
    assert!(!idp.is_empty(), "no IdP call under the SSO decision:\n{}", describe());
    for call in &idp {
        assert_eq!(call["kind"], 3, "client: {call}");
        assert!(call["name"].as_str().unwrap().starts_with("GET /"), "{call}");
        assert_eq!(call["attributes"]["http.response.status_code"], 200, "{call}");
    }
    // spans nest in time
    for s in &children {
        assert!(
            s["start"].as_u64() >= server["start"].as_u64() && s["end"].as_u64() <= server["end"].as_u64(),
            "{s}\nserver: {server}"
        );
    }

    // the upstream got the context in the header and in `_meta`, the gateway's span as parent
    let expected = format!("00-{CLIENT_TRACE}-{}-01", upstream_span["span_id"].as_str().unwrap());
    let received = received.lock().unwrap().clone();
    let (headers, message) = received.iter().find(|(_, m)| m["id"] == 7).expect("the call reached the upstream");
    assert_eq!(headers["traceparent"], expected.as_str());
    assert_eq!(message["params"]["_meta"]["traceparent"], expected.as_str(), "{message}");
    assert_eq!(message["params"]["_meta"]["tracestate"], "vendor=meta", "{message}");
    assert_eq!(headers["tracestate"], "vendor=meta");
    assert_eq!(message["params"]["arguments"], json!({"text": "x"}), "the call itself unchanged");
    assert!(headers.get("authorization").is_none());

    // the refusal: error.type on the server span (the header's trace), SSO's decision a denial
    let refused = spans
        .iter()
        .find(|s| s["trace_id"] == OTHER_TRACE && s["kind"] == 2)
        .unwrap_or_else(|| panic!("no server span for the refusal:\n{}", describe()));
    assert_eq!(refused["parent_span_id"], HEADER_SPAN);
    assert_eq!(refused["attributes"]["mcp_enterprise.denied_by"], "sso", "{refused}");
    assert_eq!(refused["attributes"]["http.response.status_code"], 401, "{refused}");
    assert!(refused["attributes"]["error.type"].as_str().is_some(), "{refused}");
    assert_eq!(refused["status"]["code"], 2, "error: {refused}");
    let denied = spans
        .iter()
        .find(|s| s["parent_span_id"] == refused["span_id"] && s["name"] == "sso")
        .unwrap_or_else(|| panic!("no SSO decision under the refusal:\n{}", describe()));
    assert_eq!(denied["attributes"]["mcp_enterprise.decision"], "deny", "{denied}");
    assert_eq!(denied["attributes"]["error.type"], "missing_token", "{denied}");
    assert!(!spans.iter().any(|s| s["trace_id"] == OTHER_TRACE && s["name"] == "upstream"), "refused: never upstream");

    // the audit records name the same traces and the server spans
    let records = common::call_records(&dir.path().join("trail"));
    let allowed = records.iter().find(|r| r["jsonrpc"]["id"] == 7).expect("record of the call");
    assert_eq!(allowed["trace"]["trace_id"], CLIENT_TRACE, "{allowed}");
    assert_eq!(allowed["trace"]["span_id"], server["span_id"], "{allowed}");
    let denied = records.iter().find(|r| r["jsonrpc"]["id"] == 8).expect("record of the refusal");
    assert_eq!(denied["trace"]["trace_id"], OTHER_TRACE, "{denied}");
    assert_eq!(denied["trace"]["span_id"], refused["span_id"], "{denied}");
}

/// Sampling is decided before any span is kept: at ratio 0.0, a call without a caller's context
/// and one whose context says "not sampled" export nothing and reach the upstream untouched (the
/// `_meta` context also in the headers), while a caller's sampled context is followed
/// (parent-based) and its call traced and continued as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_calls_keep_no_span_and_reach_the_upstream_untouched() {
    let (upstream, received) = recording_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("otlp");
    let (_receiver, collector) = otlp_receiver(&out);
    let config = json!({
        "version": 1,
        "resource": DEFAULT_JWT_RESOURCE,
        "upstream": {"url": upstream},
        "listen": {"address": "127.0.0.1:0", "allowed_hosts": ["mcp.test"]},
        "audit": {"directory": dir.path().join("trail")},
        "traces": {"endpoint": format!("{collector}/v1/traces"), "sampling_ratio": 0.0},
    });
    let file = dir.path().join("gateway.json");
    std::fs::write(&file, config.to_string()).unwrap();
    let gw = GatewayProcess::start_args(dir.path(), &["serve", "--config", file.to_str().unwrap()], "info")
        .await
        .expect("gateway");
    let url = gw.mcp_url().to_owned();

    // 1. no context: the ratio says no
    let req = tool_call(&url, 1, None, None);
    let sent: Value = serde_json::from_slice(&futures_body(&req)).unwrap();
    let (status, _, body) = common::call(req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // 2. the caller's context in `_meta`, not sampled: followed
    let unsampled = format!("00-{CLIENT_TRACE}-{META_SPAN}-00");
    let req = tool_call(&url, 2, None, Some(json!({"traceparent": unsampled, "tracestate": "vendor=meta"})));
    let sent_meta: Value = serde_json::from_slice(&futures_body(&req)).unwrap();
    let (status, _, body) = common::call(req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // 3. the caller's context in the header, sampled: followed although the ratio is 0.0
    let mut req = tool_call(&url, 3, None, None);
    req.headers_mut()
        .insert("traceparent", HeaderValue::from_str(&format!("00-{OTHER_TRACE}-{HEADER_SPAN}-01")).unwrap());
    let (status, _, body) = common::call(req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    gw.signal("TERM").unwrap();
    let mut gw = gw;
    let exit = gw.wait_exit(Duration::from_secs(20)).await.expect("exits");
    assert!(exit.success(), "{}", gw.stderr());

    let received = received.lock().unwrap().clone();
    let got = |id: i64| received.iter().find(|(_, m)| m["id"] == id).cloned().expect("the call reached the upstream");
    let (headers, message) = got(1);
    assert_eq!(message, sent, "unsampled without a context: the message goes on as sent");
    assert!(headers.get("traceparent").is_none() && headers.get("tracestate").is_none(), "{headers:?}");
    let (headers, message) = got(2);
    assert_eq!(message, sent_meta, "unsampled with a `_meta` context: the message goes on as sent");
    assert_eq!(headers["traceparent"], unsampled.as_str(), "the `_meta` context in the header too");
    assert_eq!(headers["tracestate"], "vendor=meta");
    let (headers, message) = got(3);
    let traced = headers["traceparent"].to_str().unwrap().to_owned();
    assert!(traced.starts_with(&format!("00-{OTHER_TRACE}-")) && traced.ends_with("-01"), "{traced}");
    assert!(!traced.contains(HEADER_SPAN), "the gateway's span is the parent: {traced}");
    assert_eq!(message["params"]["_meta"]["traceparent"], traced.as_str(), "{message}");

    let spans = lines(&dir.path().join("otlp.spans"));
    assert!(!spans.is_empty(), "the sampled call was exported");
    for s in &spans {
        assert_eq!(s["trace_id"], OTHER_TRACE, "only the sampled call's trace is exported: {s}");
    }
    let server: Vec<&Value> = spans.iter().filter(|s| s["kind"] == 2).collect();
    assert_eq!(server.len(), 1, "{spans:?}");
    assert_eq!(server[0]["parent_span_id"], HEADER_SPAN);
    assert!(spans.iter().any(|s| s["name"] == "upstream" && traced.contains(s["span_id"].as_str().unwrap())));

    let records = common::call_records(&dir.path().join("trail"));
    for id in [1, 2] {
        let r = records.iter().find(|r| r["jsonrpc"]["id"] == id).expect("record");
        assert!(r["trace"].get("trace_id").is_none(), "no span, no span ids: {r}");
    }
    let r = records.iter().find(|r| r["jsonrpc"]["id"] == 3).expect("record");
    assert_eq!(r["trace"]["trace_id"], OTHER_TRACE, "{r}");
    assert_eq!(r["trace"]["span_id"], server[0]["span_id"], "{r}");
}
