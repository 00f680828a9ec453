//! The stdio bridge serving 2026-07-28 (sessionless) clients from
//! `@modelcontextprotocol/server-everything` run as a stdio child: `server/discover` from the
//! child's `initialize`; results with `resultType`; concurrent calls with the same client id each
//! answered (ids remapped per child); progress streamed event by event; a sampling request turned
//! into an MRTR round (`input_required`, then the retry with `inputResponses`); unknown, used and
//! expired `requestState`s refused; the pool within `max_sessions`; a pooled child killed mid-call;
//! the 2026-07-28 rejections (`-32602`, `-32020`, `-32022`, `404`, `405`); session-era clients on
//! the same route; no child left after shutdown.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use mcp_enterprise_gateway::stdio::StdioLimits;
use mcp_enterprise_tests::peers::Peers;
use serde_json::{Value, json};

use crate::common;
use crate::stdio::{Events, bridge};

const MODERN: &str = "2026-07-28";

fn meta(caps: &Value) -> Value {
    json!({"io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": caps,
        "io.modelcontextprotocol/clientInfo": {"name": "it", "version": "1"}})
}

/// A 2026-07-28 request with `_meta` for `caps`.
pub(crate) fn request(id: Value, method: &str, mut params: Value, caps: &Value) -> Value {
    let mut m = meta(caps);
    if let Some(extra) = params.get("_meta").and_then(Value::as_object) {
        for (k, v) in extra {
            m[k] = v.clone();
        }
    }
    params["_meta"] = m;
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// POSTs `body` with the 2026-07-28 headers taken from it (override with `headers`).
pub(crate) async fn post(url: &str, body: &Value, headers: &[(&str, &str)]) -> http::Response<Incoming> {
    let mut req = Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", MODERN);
    if let Some(method) = body["method"].as_str() {
        req = req.header("mcp-method", method);
    }
    if let Some(name) = body.pointer("/params/name").and_then(Value::as_str) {
        req = req.header("mcp-name", name);
    }
    for (k, v) in headers {
        let name = http::HeaderName::from_bytes(k.as_bytes()).expect("header name");
        req.headers_mut().expect("headers").insert(name, v.parse().expect("header value"));
    }
    let req = req.body(Full::new(Bytes::from(body.to_string()))).expect("request");
    common::client().request(req).await.expect("the gateway answers")
}

/// The answer to a modern request (SSE or JSON).
pub(crate) async fn answer(response: http::Response<Incoming>) -> Value {
    let sse = response
        .headers()
        .get("content-type")
        .is_some_and(|c| c.to_str().unwrap_or("").starts_with("text/event-stream"));
    if sse {
        Events::new(response).answer().await.0
    } else {
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        serde_json::from_slice(&bytes).expect("a JSON answer")
    }
}

fn text_of(result: &Value) -> String {
    result["content"].as_array().into_iter().flatten().filter_map(|c| c["text"].as_str()).collect::<Vec<_>>().join("")
}

#[tokio::test(flavor = "multi_thread")]
async fn modern_clients_discover_list_and_call_through_the_bridge() {
    let peers = Peers::require();
    let bridge = bridge(&peers, StdioLimits::default());
    let running = common::stdio_gateway(bridge.clone()).await;
    let url = running.mcp_url();
    let caps = json!({});

    let response = post(&url, &request(json!(1), "server/discover", json!({}), &caps), &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("mcp-session-id").is_none(), "no session in the 2026-07-28 era");
    let discover = answer(response).await;
    let result = &discover["result"];
    assert_eq!(discover["id"], 1, "{discover}");
    assert_eq!(result["resultType"], "complete", "{discover}");
    let versions: Vec<&str> =
        result["supportedVersions"].as_array().expect("versions").iter().filter_map(Value::as_str).collect();
    assert!(versions.contains(&MODERN) && versions.contains(&"2025-11-25"), "{versions:?}");
    assert!(result["capabilities"]["tools"].is_object(), "the child's capabilities: {discover}");
    assert_eq!(result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "mcp-servers/everything", "{discover}");
    assert!(result["instructions"].is_string(), "the child's instructions: {discover}");
    assert_eq!(result["ttlMs"], 0);
    assert_eq!(result["cacheScope"], "private");

    let list = answer(post(&url, &request(json!("l"), "tools/list", json!({}), &caps), &[]).await).await;
    assert_eq!(list["id"], "l");
    assert_eq!(list["result"]["resultType"], "complete", "{list}");
    assert_eq!(list["result"]["ttlMs"], 0);
    let tools: Vec<&str> =
        list["result"]["tools"].as_array().expect("tools").iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(tools.contains(&"echo"), "{tools:?}");
    assert!(!tools.contains(&"trigger-sampling-request"), "no sampling declared, no sampling tool: {tools:?}");

    let echo = request(json!(7), "tools/call", json!({"name": "echo", "arguments": {"message": "hi"}}), &caps);
    let response = post(&url, &echo, &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().expect("ascii").starts_with("text/event-stream"));
    let echoed = answer(response).await;
    assert_eq!(echoed["id"], 7, "{echoed}");
    assert_eq!(echoed["result"]["resultType"], "complete", "{echoed}");
    assert_eq!(text_of(&echoed["result"]), "Echo: hi");
    assert_eq!(bridge.pooled(), 1, "requests of the same capabilities share a child");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_modern_calls_with_the_same_id_each_get_their_own_answer() {
    let peers = Peers::require();
    let limit = 3;
    let bridge = bridge(&peers, StdioLimits { max_sessions: limit, ..StdioLimits::default() });
    let running = common::stdio_gateway(bridge.clone()).await;
    let url = running.mcp_url();
    let calls = (0..20).map(|i| {
        let url = url.clone();
        // every client uses id 1: the bridge's ids at the child keep them apart
        let caps = if i % 2 == 0 { json!({}) } else { json!({"experimental": {"it": {}}}) };
        async move {
            let body = request(
                json!(1),
                "tools/call",
                json!({"name": "echo", "arguments": {"message": format!("m{i}")}}),
                &caps,
            );
            (i, answer(post(&url, &body, &[]).await).await)
        }
    });
    let mut set = tokio::task::JoinSet::new();
    for c in calls {
        set.spawn(c);
    }
    let answers = set.join_all().await;
    for (i, a) in &answers {
        assert_eq!(a["id"], 1, "{a}");
        assert_eq!(text_of(&a["result"]), format!("Echo: m{i}"), "call {i} got {a}");
    }
    let pooled = bridge.pooled();
    assert!((1..=limit).contains(&pooled), "{pooled} pooled children, limit {limit}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn modern_progress_arrives_event_by_event() {
    let peers = Peers::require();
    let running = common::stdio_gateway(bridge(&peers, StdioLimits::default())).await;
    let url = running.mcp_url();
    let body = request(
        json!(3),
        "tools/call",
        json!({"name": "trigger-long-running-operation", "arguments": {"duration": 2, "steps": 4},
            "_meta": {"progressToken": "tok-1"}}),
        &json!({}),
    );
    let asked = Instant::now();
    let response = post(&url, &body, &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let (done, notes) = Events::new(response).answer().await;
    assert_eq!(done["id"], 3, "{done}");
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    let progress: Vec<&(Value, Instant)> =
        notes.iter().filter(|(n, _)| n["method"] == "notifications/progress").collect();
    assert_eq!(progress.len(), 4, "{notes:?}");
    for (n, _) in &progress {
        assert_eq!(n["params"]["progressToken"], "tok-1", "the client's own token: {n}");
    }
    let first = progress[0].1.duration_since(asked);
    let last = progress[3].1.duration_since(asked);
    assert!(last - first >= Duration::from_millis(1000), "events spread over the run: first {first:?}, last {last:?}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sampling_request_of_the_child_is_an_mrtr_round() {
    let peers = Peers::require();
    let limits = StdioLimits { max_sessions: 2, input_timeout: Duration::from_secs(2), ..StdioLimits::default() };
    let bridge = bridge(&peers, limits);
    let running = common::stdio_gateway(bridge.clone()).await;
    let url = running.mcp_url();
    let caps = json!({"sampling": {}});
    let list = answer(post(&url, &request(json!(0), "tools/list", json!({}), &caps), &[]).await).await;
    assert!(
        list["result"]["tools"].as_array().expect("tools").iter().any(|t| t["name"] == "trigger-sampling-request"),
        "{list}"
    );

    let params = json!({"name": "trigger-sampling-request", "arguments": {"prompt": "say hi", "maxTokens": 20}});
    let first = answer(post(&url, &request(json!(1), "tools/call", params.clone(), &caps), &[]).await).await;
    let result = &first["result"];
    assert_eq!(first["id"], 1, "{first}");
    assert_eq!(result["resultType"], "input_required", "{first}");
    let inputs = result["inputRequests"].as_object().expect("inputRequests");
    assert_eq!(inputs.len(), 1, "{first}");
    let (key, asked) = inputs.iter().next().expect("one");
    assert_eq!(asked["method"], "sampling/createMessage", "{first}");
    assert!(asked["params"]["messages"][0]["content"]["text"].as_str().expect("text").contains("say hi"), "{first}");
    let state = result["requestState"].as_str().expect("requestState").to_owned();
    assert_eq!(bridge.parked(), 1);

    let mut retry = params.clone();
    retry["requestState"] = json!(state);
    retry["inputResponses"] = json!({key.clone(): {"role": "assistant",
        "content": {"type": "text", "text": "sampled-by-the-test"}, "model": "it-model", "stopReason": "endTurn"}});
    // a response missing is refused, and the state kept
    let mut partial = retry.clone();
    partial["inputResponses"] = json!({});
    let refused = answer(post(&url, &request(json!(2), "tools/call", partial, &caps), &[]).await).await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    assert!(refused["error"]["message"].as_str().expect("message").contains(key.as_str()), "{refused}");

    let done = answer(post(&url, &request(json!(3), "tools/call", retry.clone(), &caps), &[]).await).await;
    assert_eq!(done["id"], 3, "the retry's id: {done}");
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    assert!(text_of(&done["result"]).contains("sampled-by-the-test"), "{done}");
    assert_eq!(bridge.parked(), 0);

    // used once
    let response = post(&url, &request(json!(4), "tools/call", retry.clone(), &caps), &[]).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let again = answer(response).await;
    assert_eq!(again["error"]["code"], -32602, "{again}");
    assert!(again["error"]["message"].as_str().expect("message").contains("requestState"), "{again}");
    // unknown
    let mut unknown = retry.clone();
    unknown["requestState"] = json!("00112233445566778899aabbccddeeff");
    let refused = answer(post(&url, &request(json!(5), "tools/call", unknown, &caps), &[]).await).await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");

    // expired: never retried, the call is abandoned and the child freed
    let parked = answer(post(&url, &request(json!(6), "tools/call", params.clone(), &caps), &[]).await).await;
    assert_eq!(parked["result"]["resultType"], "input_required", "{parked}");
    let mut late = retry.clone();
    late["requestState"] = parked["result"]["requestState"].clone();
    let key = parked["result"]["inputRequests"].as_object().expect("inputRequests").keys().next().expect("one").clone();
    late["inputResponses"] = json!({key: retry["inputResponses"].as_object().expect("map").values().next()});
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(bridge.parked(), 0, "the parked call expired");
    let expired = answer(post(&url, &request(json!(7), "tools/call", late, &caps), &[]).await).await;
    assert_eq!(expired["error"]["code"], -32602, "{expired}");
    let echo = request(json!(8), "tools/call", json!({"name": "echo", "arguments": {"message": "free"}}), &caps);
    assert_eq!(text_of(&answer(post(&url, &echo, &[]).await).await["result"]), "Echo: free");

    running.shutdown().await;

    // the pool is bounded: two calls parked at two exclusive children, a third is refused
    let bridge = self::bridge(&peers, StdioLimits { max_sessions: 2, ..StdioLimits::default() });
    let running = common::stdio_gateway(bridge.clone()).await;
    let url = running.mcp_url();
    for id in [10, 11] {
        let p = answer(post(&url, &request(json!(id), "tools/call", params.clone(), &caps), &[]).await).await;
        assert_eq!(p["result"]["resultType"], "input_required", "{p}");
    }
    assert_eq!(bridge.pooled(), 2);
    let response = post(&url, &request(json!(12), "tools/call", params.clone(), &caps), &[]).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "5");
    assert_eq!(answer(response).await["error"]["code"], -32000);
    assert_eq!(bridge.pooled(), 2);
    assert_eq!(bridge.parked(), 2);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pooled_child_killed_mid_call_fails_the_call_and_the_next_call_works() {
    let peers = Peers::require();
    let bridge = bridge(&peers, StdioLimits::default());
    let running = common::stdio_gateway(bridge.clone()).await;
    let url = running.mcp_url();
    let caps = json!({});
    let body = request(
        json!("long"),
        "tools/call",
        json!({"name": "trigger-long-running-operation", "arguments": {"duration": 30, "steps": 30},
            "_meta": {"progressToken": 9}}),
        &caps,
    );
    let mut events = Events::new(post(&url, &body, &[]).await);
    let (first, _) = events.next().await.expect("a progress event");
    assert_eq!(first["method"], "notifications/progress", "{first}");
    assert_eq!(first["params"]["progressToken"], 9, "{first}");
    let pids = bridge.child_pids();
    assert_eq!(pids.len(), 1);
    let killed = Instant::now();
    std::process::Command::new("kill").args(["-KILL", &pids[0].to_string()]).status().expect("kill the child");
    let (failed, _) = events.answer().await;
    assert!(killed.elapsed() < Duration::from_secs(1), "the error came after {:?}", killed.elapsed());
    assert_eq!(failed["id"], "long", "{failed}");
    assert_eq!(failed["error"]["code"], -32603, "{failed}");
    let echo = request(json!(2), "tools/call", json!({"name": "echo", "arguments": {"message": "again"}}), &caps);
    assert_eq!(text_of(&answer(post(&url, &echo, &[]).await).await["result"]), "Echo: again");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn modern_requests_are_checked_and_refused_precisely() {
    let peers = Peers::require();
    let running = common::stdio_gateway(bridge(&peers, StdioLimits::default())).await;
    let url = running.mcp_url();
    let caps = json!({});
    let echo = request(json!(1), "tools/call", json!({"name": "echo", "arguments": {"message": "x"}}), &caps);

    let mut no_caps = echo.clone();
    no_caps["params"]["_meta"].as_object_mut().expect("meta").remove("io.modelcontextprotocol/clientCapabilities");
    let response = post(&url, &no_caps, &[]).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(answer(response).await["error"]["code"], -32602);

    let response = post(&url, &echo, &[("mcp-name", "other")]).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(answer(response).await["error"]["code"], -32020);

    let response = post(&url, &echo, &[("mcp-method", "tools/list")]).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(answer(response).await["error"]["code"], -32020);

    let mut future = echo.clone();
    future["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    let response = post(&url, &future, &[("mcp-protocol-version", "2099-01-01")]).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let refused = answer(response).await;
    assert_eq!(refused["error"]["code"], -32022, "{refused}");
    assert_eq!(refused["error"]["data"]["requested"], "2099-01-01", "{refused}");

    let response = post(&url, &request(json!(2), "no/such-method", json!({}), &caps), &[]).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(answer(response).await["error"]["code"], -32601);

    for method in [http::Method::GET, http::Method::DELETE] {
        let req = Request::builder()
            .method(method.clone())
            .uri(&url)
            .header("accept", "text/event-stream")
            .header("mcp-protocol-version", MODERN)
            .body(Full::new(Bytes::new()))
            .expect("request");
        let response = common::client().request(req).await.expect("answer");
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(response.headers()["allow"], "POST");
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn session_era_and_modern_clients_share_the_route_and_no_child_outlives_it() {
    let peers = Peers::require();
    let bridge = bridge(&peers, StdioLimits::default());
    let running = common::stdio_gateway(bridge.clone()).await;
    let url = running.mcp_url();
    // a session-era client
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "it", "version": "1"}}});
    let req = |body: &Value, session: Option<&str>| {
        let mut r = Request::post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25");
        if let Some(s) = session {
            r = r.header("mcp-session-id", s);
        }
        r.body(Full::new(Bytes::from(body.to_string()))).expect("request")
    };
    let response = common::client().request(req(&init, None)).await.expect("answer");
    let session = response.headers()["mcp-session-id"].to_str().expect("ascii").to_owned();
    let init_answer = Events::new(response).answer().await.0;
    assert!(init_answer["result"].get("resultType").is_none(), "session-era results are untouched: {init_answer}");
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    common::client().request(req(&initialized, Some(&session))).await.expect("answer");
    // a modern client on the same route
    let caps = json!({});
    let echo = request(json!(1), "tools/call", json!({"name": "echo", "arguments": {"message": "modern"}}), &caps);
    assert_eq!(text_of(&answer(post(&url, &echo, &[]).await).await["result"]), "Echo: modern");
    // the session goes on, untranslated
    let legacy = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "legacy"}}});
    let response = common::client().request(req(&legacy, Some(&session))).await.expect("answer");
    let got = Events::new(response).answer().await.0;
    assert_eq!(text_of(&got["result"]), "Echo: legacy");
    assert!(got["result"].get("resultType").is_none(), "{got}");
    assert_eq!(bridge.sessions(), 2, "one session, one pooled child");
    assert_eq!(bridge.pooled(), 1);
    let pids = bridge.child_pids();
    assert_eq!(pids.len(), 2);
    running.shutdown().await;
    bridge.shutdown_and_wait().await;
    for pid in pids {
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "child {pid} (or its zombie) outlived the gateway"
        );
    }
    assert_eq!(bridge.sessions(), 0);
}
