//! HTTP-level tests: both protocol eras against [`router`] (in-process, `oneshot`)
//! and against [`serve`] on a real loopback socket.

use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{DemoServer, MCP_PATH, mcp_service_for, router, router_for, serve};

const LEGACY: &str = "2025-11-25";
const MODERN: &str = "2026-07-28";
const ACCEPT_BOTH: &str = "application/json, text/event-stream";

/// One parsed SSE event, stamped with the time its last byte arrived.
#[derive(Debug)]
struct SseEvent {
    id: Option<String>,
    data: String,
    retry: Option<u64>,
    at: Instant,
}

impl SseEvent {
    fn json(&self) -> Option<Value> {
        (!self.data.is_empty()).then(|| serde_json::from_str(&self.data).expect("SSE data is JSON"))
    }
}

/// Incremental SSE parser: feed bytes as they arrive, get complete events out.
#[derive(Debug, Default)]
struct SseParser {
    buffer: String,
}

impl SseParser {
    fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buffer.push_str(std::str::from_utf8(chunk).expect("SSE is UTF-8"));
        let now = Instant::now();
        let mut events = Vec::new();
        while let Some(end) = self.buffer.find("\n\n") {
            let block: String = self.buffer.drain(..end + 2).collect();
            let mut event = SseEvent { id: None, data: String::new(), retry: None, at: now };
            let mut has_field = false;
            for line in block.lines() {
                if line.is_empty() || line.starts_with(':') {
                    continue; // comment (keep-alive)
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                has_field = true;
                match field {
                    "id" => event.id = Some(value.to_owned()),
                    "retry" => event.retry = value.parse().ok(),
                    "data" => {
                        if !event.data.is_empty() {
                            event.data.push('\n');
                        }
                        event.data.push_str(value);
                    }
                    _ => {}
                }
            }
            if has_field {
                events.push(event);
            }
        }
        events
    }
}

/// Reads a whole SSE body (the stream must end on its own), timing each event.
async fn read_sse<B>(mut body: B) -> Vec<SseEvent>
where
    B: axum::body::HttpBody<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    while let Some(frame) =
        tokio::time::timeout(Duration::from_secs(20), body.frame()).await.expect("SSE stream stalled")
    {
        if let Ok(data) = frame.expect("body frame").into_data() {
            events.extend(parser.feed(&data));
        }
    }
    events
}

/// The JSON-RPC messages carried by `events`, in order (priming events skipped).
fn rpc_messages(events: &[SseEvent]) -> Vec<Value> {
    events.iter().filter_map(SseEvent::json).collect()
}

/// The one JSON-RPC response (result or error) among `messages`.
fn response_of(messages: &[Value]) -> &Value {
    let responses: Vec<_> =
        messages.iter().filter(|message| message.get("id").is_some() && message.get("method").is_none()).collect();
    assert_eq!(responses.len(), 1, "exactly one response in {messages:#?}");
    responses[0]
}

fn content_type(headers: &HeaderMap) -> &str {
    headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or_default()
}

/// A POST to the MCP endpoint with the headers every era needs.
fn post() -> http::request::Builder {
    Request::post(MCP_PATH)
        .header(header::HOST, "127.0.0.1:8081")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, ACCEPT_BOTH)
}

fn finish(builder: http::request::Builder, body: &Value) -> Request<Full<Bytes>> {
    builder.body(Full::new(Bytes::from(body.to_string()))).expect("valid request")
}

async fn send(app: &axum::Router, request: Request<Full<Bytes>>) -> Response<Body> {
    app.clone().oneshot(request).await.expect("infallible")
}

async fn json_body(response: Response<Body>) -> Value {
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&bytes).expect("JSON body")
}

async fn text_body(response: Response<Body>) -> String {
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8(bytes.to_vec()).expect("UTF-8 body")
}

// ---------------------------------------------------------------- legacy era

fn initialize_body() -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": LEGACY,
            "capabilities": {},
            "clientInfo": { "name": "demo-test", "version": "0.0.0" }
        }
    })
}

/// Runs the legacy handshake; returns the session id.
async fn legacy_session(app: &axum::Router) -> String {
    let body = initialize_body();
    let response = send(app, finish(post(), &body)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(content_type(response.headers()), "text/event-stream");
    let session = response
        .headers()
        .get("mcp-session-id")
        .expect("initialize returns Mcp-Session-Id")
        .to_str()
        .expect("ASCII session id")
        .to_owned();
    let events = read_sse(response.into_body()).await;
    // rmcp primes the stream: an event with id "0", a retry hint and empty data.
    assert_eq!(events[0].id.as_deref(), Some("0"));
    assert!(events[0].retry.is_some());
    assert!(events[0].data.is_empty());
    let messages = rpc_messages(&events);
    let result = &response_of(&messages)["result"];
    assert_eq!(result["protocolVersion"], LEGACY);
    assert_eq!(result["serverInfo"]["name"], "mcp-enterprise-demo");
    assert_eq!(result["serverInfo"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(result["capabilities"]["tools"].is_object());
    assert!(result["capabilities"]["resources"].is_object());
    assert!(result["capabilities"]["prompts"].is_object());

    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let response = send(app, finish(legacy_headers(post(), &session), &initialized)).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    session
}

fn legacy_headers(builder: http::request::Builder, session: &str) -> http::request::Builder {
    builder.header("mcp-session-id", session).header("mcp-protocol-version", LEGACY)
}

/// Sends a legacy request in `session`; returns the SSE events of its response.
async fn legacy_call(app: &axum::Router, session: &str, body: &Value) -> Vec<SseEvent> {
    let response = send(app, finish(legacy_headers(post(), session), body)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(content_type(response.headers()), "text/event-stream");
    assert!(response.headers().get("mcp-session-id").is_none());
    read_sse(response.into_body()).await
}

#[tokio::test]
async fn legacy_initialize_returns_a_session_and_tools_list_lists_the_tools() {
    let app = router();
    let session = legacy_session(&app).await;

    let list = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" });
    let events = legacy_call(&app, &session, &list).await;
    let messages = rpc_messages(&events);
    let tools = response_of(&messages)["result"]["tools"].as_array().expect("tools array").clone();
    let mut names: Vec<_> = tools.iter().map(|tool| tool["name"].as_str().expect("name").to_owned()).collect();
    names.sort();
    assert_eq!(
        names,
        ["add", "delete_customer", "echo", "echo_headers", "lookup_customer", "run_query", "stream_progress", "whoami"]
    );
    let add = tools.iter().find(|tool| tool["name"] == "add").expect("add listed");
    assert_eq!(add["inputSchema"]["properties"]["a"]["type"], "number");
    assert_eq!(add["outputSchema"]["properties"]["sum"]["type"], "number");

    // Tool call in the session: structured and text content.
    let call = json!({
        "jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": { "name": "add", "arguments": { "a": 2, "b": 0.5 } }
    });
    let messages = rpc_messages(&legacy_call(&app, &session, &call).await);
    let result = &response_of(&messages)["result"];
    assert_eq!(result["structuredContent"], json!({ "sum": 2.5 }));
    assert_eq!(result["content"][0]["text"], r#"{"sum":2.5}"#);
    assert_eq!(result["isError"], false);
    // Legacy peers never see the 2026-07-28 resultType discriminator.
    assert!(result.get("resultType").is_none(), "{result}");

    // DELETE ends the session; the id is then unknown (404).
    let delete = Request::delete(MCP_PATH)
        .header(header::HOST, "localhost")
        .header("mcp-session-id", &session)
        .body(Full::new(Bytes::new()))
        .expect("valid request");
    assert_eq!(send(&app, delete).await.status(), StatusCode::ACCEPTED);
    let response = send(&app, finish(legacy_headers(post(), &session), &list)).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn legacy_requests_without_a_session_are_rejected() {
    let app = router();
    let list = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" });
    let response = send(&app, finish(post(), &list)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(text_body(response).await, "Bad Request: Session ID is required");

    let response = send(&app, finish(legacy_headers(post(), "no-such-session"), &list)).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn legacy_resources_and_prompts_work() {
    let app = router();
    let session = legacy_session(&app).await;

    let read = json!({
        "jsonrpc": "2.0", "id": 4, "method": "resources/read",
        "params": { "uri": "demo://readme" }
    });
    let messages = rpc_messages(&legacy_call(&app, &session, &read).await);
    let contents = &response_of(&messages)["result"]["contents"][0];
    assert_eq!(contents["uri"], "demo://readme");
    assert_eq!(contents["mimeType"], "text/markdown");
    assert!(contents["text"].as_str().expect("text").contains("stream_progress"));

    let missing = json!({
        "jsonrpc": "2.0", "id": 5, "method": "resources/read",
        "params": { "uri": "demo://nope" }
    });
    let messages = rpc_messages(&legacy_call(&app, &session, &missing).await);
    assert_eq!(response_of(&messages)["error"]["code"], -32002);

    let prompt = json!({
        "jsonrpc": "2.0", "id": 6, "method": "prompts/get",
        "params": { "name": "summarize", "arguments": { "topic": "tower layers" } }
    });
    let messages = rpc_messages(&legacy_call(&app, &session, &prompt).await);
    let result = &response_of(&messages)["result"];
    assert_eq!(result["messages"][0]["role"], "user");
    assert!(result["messages"][0]["content"]["text"].as_str().expect("text").contains("tower layers"));
}

// ---------------------------------------------------------------- modern era

fn modern_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {}
    })
}

fn modern_request(id: u64, method: &str, mut params: Value) -> Value {
    params["_meta"] = modern_meta();
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
}

fn modern_post(body: &Value, method: &str, name: Option<&str>) -> Request<Full<Bytes>> {
    let mut builder = post().header("mcp-protocol-version", MODERN).header("mcp-method", method);
    if let Some(name) = name {
        builder = builder.header("mcp-name", name);
    }
    finish(builder, body)
}

/// Sends a modern request; asserts the stateless SSE answer; returns its messages.
async fn modern_call(app: &axum::Router, request: Request<Full<Bytes>>) -> Vec<Value> {
    let response = send(app, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(content_type(response.headers()), "text/event-stream");
    assert!(response.headers().get("mcp-session-id").is_none());
    let events = read_sse(response.into_body()).await;
    // The stateless path sends no priming event: every event is a message.
    assert!(events.iter().all(|event| !event.data.is_empty()), "{events:?}");
    rpc_messages(&events)
}

async fn call_tool(app: &axum::Router, id: u64, name: &str, arguments: Value) -> Value {
    let body = modern_request(id, "tools/call", json!({ "name": name, "arguments": arguments }));
    let messages = modern_call(app, modern_post(&body, "tools/call", Some(name))).await;
    response_of(&messages)["result"].clone()
}

#[tokio::test]
async fn modern_server_discover_works_without_a_session() {
    let app = router();
    let body = modern_request(1, "server/discover", json!({}));
    let messages = modern_call(&app, modern_post(&body, "server/discover", None)).await;
    let result = &response_of(&messages)["result"];
    assert_eq!(result["resultType"], "complete");
    let versions = result["supportedVersions"].as_array().expect("versions");
    assert!(versions.contains(&json!(MODERN)), "{versions:?}");
    assert!(versions.contains(&json!(LEGACY)), "{versions:?}");
    assert_eq!(result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "mcp-enterprise-demo");
    assert!(result["capabilities"]["tools"].is_object());
}

#[tokio::test]
async fn modern_tools_call_echo_works() {
    let app = router();
    let result = call_tool(&app, 7, "echo", json!({ "text": "hello, 2026" })).await;
    assert_eq!(result["resultType"], "complete");
    assert_eq!(result["isError"], false);
    assert_eq!(result["content"][0]["type"], "text");
    assert_eq!(result["content"][0]["text"], "hello, 2026");
}

#[tokio::test]
async fn modern_tools_list_resources_and_prompts_work() {
    let app = router();
    let body = modern_request(1, "tools/list", json!({}));
    let messages = modern_call(&app, modern_post(&body, "tools/list", None)).await;
    assert_eq!(response_of(&messages)["result"]["tools"].as_array().expect("tools").len(), 8);

    // nothing verified the caller here; the header echo is off unless enabled
    let body = modern_request(5, "tools/call", json!({ "name": "whoami", "arguments": {} }));
    let messages = modern_call(&app, modern_post(&body, "tools/call", Some("whoami"))).await;
    assert_eq!(response_of(&messages)["result"]["structuredContent"], json!({ "verified": false }));
    let body = modern_request(6, "tools/call", json!({ "name": "echo_headers", "arguments": {} }));
    let messages = modern_call(&app, modern_post(&body, "tools/call", Some("echo_headers"))).await;
    assert_eq!(response_of(&messages)["result"]["isError"], true);
    let echoing = router_for(mcp_service_for(DemoServer::new().with_header_echo(), Default::default()));
    let messages = modern_call(&echoing, modern_post(&body, "tools/call", Some("echo_headers"))).await;
    let headers = &response_of(&messages)["result"]["structuredContent"]["headers"];
    assert_eq!(headers["mcp-name"], json!(["echo_headers"]), "{headers}");

    let body = modern_request(2, "resources/read", json!({ "uri": "demo://readme" }));
    let messages = modern_call(&app, modern_post(&body, "resources/read", Some("demo://readme"))).await;
    assert_eq!(response_of(&messages)["result"]["contents"][0]["uri"], "demo://readme");

    let body = modern_request(3, "prompts/get", json!({ "name": "summarize", "arguments": { "topic": "SSE" } }));
    let messages = modern_call(&app, modern_post(&body, "prompts/get", Some("summarize"))).await;
    assert_eq!(response_of(&messages)["result"]["messages"][0]["role"], "user");
}

#[tokio::test]
async fn delete_customer_of_an_unknown_id_is_a_tool_error() {
    let app = router();
    let result = call_tool(&app, 1, "delete_customer", json!({ "id": "c-999" })).await;
    assert_eq!(result["isError"], true);
    assert_eq!(result["content"][0]["text"], "no customer with id `c-999`");

    // A real delete is visible to later, independent (stateless) requests.
    let result = call_tool(&app, 2, "lookup_customer", json!({ "id": "c-002" })).await;
    assert_eq!(result["isError"], false);
    assert_eq!(result["structuredContent"]["name"], "Grace Hopper");
    let result = call_tool(&app, 3, "delete_customer", json!({ "id": "c-002" })).await;
    assert_eq!(result["isError"], false);
    assert_eq!(result["structuredContent"]["deleted"]["id"], "c-002");
    let result = call_tool(&app, 4, "lookup_customer", json!({ "id": "c-002" })).await;
    assert_eq!(result["isError"], true);
    let result = call_tool(&app, 5, "delete_customer", json!({ "id": "c-002" })).await;
    assert_eq!(result["isError"], true);
}

#[tokio::test]
async fn stream_progress_rejects_out_of_range_arguments_as_tool_errors() {
    let app = router();
    let result = call_tool(&app, 1, "stream_progress", json!({ "steps": 0, "interval_ms": 10 })).await;
    assert_eq!(result["isError"], true);
    let result = call_tool(&app, 2, "stream_progress", json!({ "steps": 1, "interval_ms": 5001 })).await;
    assert_eq!(result["isError"], true);
}

/// Progress notifications must reach the client as they are produced, each as its own
/// SSE event, before the final result.
fn assert_streamed_progress(events: &[SseEvent], steps: u64, interval: Duration, token: &Value) {
    let timed: Vec<(Instant, Value)> =
        events.iter().filter_map(|event| event.json().map(|message| (event.at, message))).collect();
    let (progress, rest): (Vec<_>, Vec<_>) =
        timed.iter().partition(|(_, message)| message["method"] == "notifications/progress");
    assert_eq!(progress.len() as u64, steps, "{timed:#?}");
    assert_eq!(rest.len(), 1, "only the final response follows: {rest:#?}");
    let (done_at, done) = rest[0];
    assert_eq!(done["result"]["content"][0]["text"], format!("done after {steps} steps"));
    for (index, (at, message)) in progress.iter().enumerate() {
        let params = &message["params"];
        assert_eq!(&params["progressToken"], token);
        assert_eq!(params["progress"], json!(index as f64 + 1.0));
        assert_eq!(params["total"], json!(steps as f64));
        assert!(*at <= *done_at);
    }
    // Streamed, not buffered: the first notification arrived long before the result.
    let first_at = progress[0].0;
    let spread = done_at.duration_since(first_at);
    let expected = interval * u32::try_from(steps).expect("small");
    assert!(spread >= expected.mul_f64(0.8), "progress arrived in a burst: {spread:?} between first event and result");
}

#[tokio::test]
async fn modern_stream_progress_streams_progress_events_before_the_result() {
    let app = router();
    let mut body = modern_request(
        9,
        "tools/call",
        json!({ "name": "stream_progress", "arguments": { "steps": 4, "interval_ms": 150 } }),
    );
    body["params"]["_meta"]["progressToken"] = json!("tok-modern");
    let response = send(&app, modern_post(&body, "tools/call", Some("stream_progress"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(content_type(response.headers()), "text/event-stream");
    let events = read_sse(response.into_body()).await;
    assert_streamed_progress(&events, 4, Duration::from_millis(150), &json!("tok-modern"));
}

#[tokio::test]
async fn legacy_stream_progress_streams_progress_events_before_the_result() {
    let app = router();
    let session = legacy_session(&app).await;
    let body = json!({
        "jsonrpc": "2.0", "id": 9, "method": "tools/call",
        "params": {
            "name": "stream_progress",
            "arguments": { "steps": 3, "interval_ms": 150 },
            "_meta": { "progressToken": 42 }
        }
    });
    let events = legacy_call(&app, &session, &body).await;
    assert_streamed_progress(&events, 3, Duration::from_millis(150), &json!(42));
}

#[tokio::test]
async fn stream_progress_without_a_token_only_answers() {
    let app = router();
    let body = modern_request(
        1,
        "tools/call",
        json!({ "name": "stream_progress", "arguments": { "steps": 2, "interval_ms": 10 } }),
    );
    let messages = modern_call(&app, modern_post(&body, "tools/call", Some("stream_progress"))).await;
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(response_of(&messages)["result"]["content"][0]["text"], "done after 2 steps");
}

// ------------------------------------------------------- rmcp's HTTP checks

#[tokio::test]
async fn modern_header_and_meta_errors_are_http_400_json() {
    let app = router();
    // Mcp-Name missing on tools/call.
    let body = modern_request(1, "tools/call", json!({ "name": "echo", "arguments": { "text": "x" } }));
    let response = send(&app, modern_post(&body, "tools/call", None)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(content_type(response.headers()), "application/json");
    assert_eq!(json_body(response).await["error"]["code"], -32020);

    // Mcp-Method missing.
    let request = finish(post().header("mcp-protocol-version", MODERN), &body);
    let response = send(&app, request).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_body(response).await["error"]["code"], -32020);

    // MCP-Protocol-Version header missing while _meta names a version.
    let request = finish(post().header("mcp-method", "tools/call"), &body);
    let response = send(&app, request).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_body(response).await["error"]["code"], -32020);

    // clientCapabilities missing from _meta.
    let mut body = body;
    body["params"]["_meta"].as_object_mut().expect("meta").remove("io.modelcontextprotocol/clientCapabilities");
    let response = send(&app, modern_post(&body, "tools/call", Some("echo"))).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_body(response).await["error"]["code"], -32602);

    // The 2026-07-28 header without any _meta.
    let body = json!({ "jsonrpc": "2.0", "id": 4, "method": "tools/list" });
    let response = send(&app, modern_post(&body, "tools/list", None)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_body(response).await["error"]["code"], -32602);

    // Unknown method: HTTP 404 with a JSON-RPC error.
    let body = modern_request(2, "no/such/method", json!({}));
    let response = send(&app, modern_post(&body, "no/such/method", None)).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(content_type(response.headers()), "application/json");
    assert_eq!(json_body(response).await["error"]["code"], -32601);

    // Unknown tool: -32602 in band, HTTP 200 over SSE.
    let body = modern_request(3, "tools/call", json!({ "name": "nope", "arguments": {} }));
    let messages = modern_call(&app, modern_post(&body, "tools/call", Some("nope"))).await;
    assert_eq!(response_of(&messages)["error"]["code"], -32602);
}

#[tokio::test]
async fn every_post_must_accept_json_and_event_stream() {
    let app = router();
    let body = modern_request(1, "server/discover", json!({}));
    for accept in ["application/json", "text/event-stream", "*/*"] {
        let mut request =
            finish(post().header("mcp-protocol-version", MODERN).header("mcp-method", "server/discover"), &body);
        request.headers_mut().insert(header::ACCEPT, accept.parse().expect("valid header"));
        let response = send(&app, request).await;
        assert_eq!(response.status(), StatusCode::NOT_ACCEPTABLE, "Accept: {accept}");
    }
    let mut request = finish(post(), &body);
    request.headers_mut().insert(header::CONTENT_TYPE, "text/plain".parse().expect("valid header"));
    assert_eq!(send(&app, request).await.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn only_loopback_hosts_are_served() {
    let app = router();
    let body = initialize_body();
    for (host, status) in [
        ("evil.example", StatusCode::FORBIDDEN),
        ("192.168.1.10:8081", StatusCode::FORBIDDEN),
        ("localhost:9", StatusCode::OK),
        ("[::1]:8081", StatusCode::OK),
    ] {
        let mut request = finish(post(), &body);
        request.headers_mut().insert(header::HOST, host.parse().expect("valid header"));
        assert_eq!(send(&app, request).await.status(), status, "Host: {host}");
    }
    let mut request = finish(post(), &body);
    request.headers_mut().remove(header::HOST);
    assert_eq!(send(&app, request).await.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn other_paths_are_not_found_and_get_needs_a_session() {
    let app = router();
    let request =
        Request::get("/other").header(header::HOST, "localhost").body(Full::new(Bytes::new())).expect("valid request");
    assert_eq!(send(&app, request).await.status(), StatusCode::NOT_FOUND);

    let request = Request::get(MCP_PATH)
        .header(header::HOST, "localhost")
        .header(header::ACCEPT, "text/event-stream")
        .body(Full::new(Bytes::new()))
        .expect("valid request");
    assert_eq!(send(&app, request).await.status(), StatusCode::BAD_REQUEST);

    let request =
        Request::put(MCP_PATH).header(header::HOST, "localhost").body(Full::new(Bytes::new())).expect("valid request");
    let response = send(&app, request).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers().get(header::ALLOW).expect("Allow"), "GET, POST, DELETE");

    // The modern era has no GET stream and no DELETE (no sessions, no event store).
    for method in [http::Method::GET, http::Method::DELETE] {
        let request = Request::builder()
            .method(method.clone())
            .uri(MCP_PATH)
            .header(header::HOST, "localhost")
            .header(header::ACCEPT, "text/event-stream")
            .header("mcp-protocol-version", MODERN)
            .body(Full::new(Bytes::new()))
            .expect("valid request");
        let response = send(&app, request).await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(response.headers()[header::ALLOW], "POST", "{method}");
    }
}

#[tokio::test]
async fn initialize_naming_2026_07_28_still_gets_a_legacy_session() {
    let app = router();
    let mut body = initialize_body();
    body["params"]["protocolVersion"] = json!(MODERN);
    let response = send(&app, finish(post(), &body)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("mcp-session-id"));
    let rpc_messages = rpc_messages(&read_sse(response.into_body()).await);
    assert_eq!(response_of(&rpc_messages)["result"]["protocolVersion"], LEGACY);
}

// ------------------------------------------------------------ real socket

type Client = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(address: std::net::SocketAddr) -> Client {
    let stream = tokio::net::TcpStream::connect(address).await.expect("connect");
    let (client, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn serve_streams_progress_over_a_real_socket_and_shuts_down() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, async move {
        let _ = stopped.await;
    }));

    // Modern, stateless: progress over the wire, event by event.
    let mut body = modern_request(
        1,
        "tools/call",
        json!({ "name": "stream_progress", "arguments": { "steps": 3, "interval_ms": 200 } }),
    );
    body["params"]["_meta"]["progressToken"] = json!("tok-wire");
    let request = Request::post(format!("http://{address}{MCP_PATH}"))
        .header(header::HOST, address.to_string())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, ACCEPT_BOTH)
        .header("mcp-protocol-version", MODERN)
        .header("mcp-method", "tools/call")
        .header("mcp-name", "stream_progress")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid request");
    let mut client = connect(address).await;
    let response = client.send_request(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["cache-control"], "no-cache");
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    let events = read_sse(response.into_body()).await;
    assert_streamed_progress(&events, 3, Duration::from_millis(200), &json!("tok-wire"));

    // Legacy: open a session and its standalone GET stream, which never ends by itself.
    let init = initialize_body();
    let request = Request::post(MCP_PATH)
        .header(header::HOST, address.to_string())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, ACCEPT_BOTH)
        .body(Full::new(Bytes::from(init.to_string())))
        .expect("valid request");
    let response = client.send_request(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let session = response.headers()["mcp-session-id"].clone();
    let _ = read_sse(response.into_body()).await;
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let request = Request::post(MCP_PATH)
        .header(header::HOST, address.to_string())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, ACCEPT_BOTH)
        .header("mcp-session-id", session.clone())
        .header("mcp-protocol-version", LEGACY)
        .body(Full::new(Bytes::from(initialized.to_string())))
        .expect("valid request");
    let response = client.send_request(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let mut get_client = connect(address).await;
    let request = Request::get(MCP_PATH)
        .header(header::HOST, address.to_string())
        .header(header::ACCEPT, "text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", LEGACY)
        .body(Full::new(Bytes::new()))
        .expect("valid request");
    let response = get_client.send_request(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");

    // Shutdown ends that stream, so graceful shutdown completes promptly.
    stop.send(()).expect("server running");
    let events = read_sse(response.into_body()).await;
    assert!(rpc_messages(&events).is_empty(), "{events:?}");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returned after shutdown")
        .expect("serve task")
        .expect("serve result");
}
