//! Helpers shared by the integration tests: an HTTP client, MCP request builders, SSE reading,
//! and starting the demo upstream and the gateway on loopback.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use mcp_enterprise_core::ExtensionSet;
use mcp_enterprise_gateway::{Gateway, RunningGateway};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

pub const MODERN: &str = "2026-07-28";
pub const LEGACY: &str = "2025-11-25";

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// A running demo MCP server (rmcp) on loopback; stops on drop.
pub struct Upstream {
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Upstream {
    /// Fails if the server task has ended (it should serve until dropped).
    pub fn check_running(&self) -> Result<(), String> {
        if self.task.is_finished() {
            Err(format!("the demo server at {} has stopped serving", self.url))
        } else {
            Ok(())
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts the demo server with an rmcp configuration.
pub async fn demo_upstream_with(
    config: rmcp::transport::streamable_http_server::StreamableHttpServerConfig,
) -> Upstream {
    demo_upstream_serving(mcp_enterprise_demo_server::DemoServer::new(), config).await
}

/// Starts a given demo server (e.g. one declaring extensions).
pub async fn demo_upstream_serving(
    server: mcp_enterprise_demo_server::DemoServer,
    config: rmcp::transport::streamable_http_server::StreamableHttpServerConfig,
) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(mcp_enterprise_demo_server::serve_server(listener, server, config, async move {
        let _ = stopped.await;
    }));
    Upstream { url: format!("http://{addr}/mcp"), stop: Some(stop), task }
}

pub async fn demo_upstream() -> Upstream {
    demo_upstream_with(Default::default()).await
}

pub fn extensions() -> ExtensionSet {
    ExtensionSet::builder()
        .with_own("audit", json!({"chain": "sha-256"}))
        .and_then(|b| b.with_own("dpop", json!({})))
        .expect("valid extensions")
        .build()
}

pub async fn gateway(upstream: &str, extensions: ExtensionSet) -> RunningGateway {
    Gateway::builder()
        .upstream(upstream)
        .expect("upstream")
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .extensions(extensions.to_builder())
        .build()
        .expect("gateway")
        .spawn()
        .await
        .expect("spawn gateway")
}

/// `_meta` of a modern request.
pub fn modern_meta(extensions: Value) -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {"extensions": extensions},
        "io.modelcontextprotocol/clientInfo": {"name": "it", "version": "1"},
    })
}

/// A modern request with matching SEP-2243 headers.
pub fn modern(url: &str, id: i64, method: &str, mut params: Value, client_extensions: Value) -> Request<Full<Bytes>> {
    params["_meta"] = modern_meta(client_extensions);
    let name = match method {
        "tools/call" | "prompts/get" => params["name"].as_str().map(str::to_owned),
        "resources/read" => params["uri"].as_str().map(str::to_owned),
        _ => None,
    };
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let mut req = post(url, &body);
    let h = req.headers_mut();
    h.insert("mcp-protocol-version", MODERN.parse().expect("hv"));
    h.insert("mcp-method", method.parse().expect("hv"));
    if let Some(name) = name {
        h.insert("mcp-name", mcp_enterprise_core::headers::encode_value(&name).parse().expect("hv"));
    }
    req
}

/// A POST of a JSON body with the Accept header MCP requires.
pub fn post(url: &str, body: &Value) -> Request<Full<Bytes>> {
    post_raw(url, Bytes::from(body.to_string()))
}

pub fn post_raw(url: &str, body: Bytes) -> Request<Full<Bytes>> {
    Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(Full::new(body))
        .expect("request")
}

pub fn legacy_initialize(url: &str, capabilities: Value) -> Request<Full<Bytes>> {
    post(
        url,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": LEGACY, "capabilities": capabilities, "clientInfo": {"name": "it", "version": "1"}}}),
    )
}

pub async fn send(req: Request<Full<Bytes>>) -> Response<Incoming> {
    client().request(req).await.expect("request sent")
}

/// Sends and reads the whole response; returns status, headers and the JSON-RPC message (from a
/// JSON body, or the last SSE event carrying an id).
pub async fn call(req: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, Value) {
    let res = send(req).await;
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    let value = parse_message(&parts.headers, &bytes);
    (parts.status, parts.headers, value)
}

pub fn parse_message(headers: &HeaderMap, bytes: &[u8]) -> Value {
    let is_sse = headers.get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !is_sse {
        return if bytes.is_empty() { Value::Null } else { serde_json::from_slice(bytes).expect("JSON body") };
    }
    let text = std::str::from_utf8(bytes).expect("utf8 SSE");
    sse_messages(text).into_iter().rev().find(|m| m.get("id").is_some()).unwrap_or(Value::Null)
}

/// The JSON data of each SSE event.
pub fn sse_messages(text: &str) -> Vec<Value> {
    let text = text.replace("\r\n", "\n");
    text.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:").map(|d| d.strip_prefix(' ').unwrap_or(d)))
                .collect();
            let data = data.join("\n");
            serde_json::from_str(&data).ok()
        })
        .collect()
}

/// Reads SSE events from a streaming response as they arrive, with their arrival time.
pub struct SseReader {
    body: Incoming,
    buf: String,
}

impl SseReader {
    pub fn new(res: Response<Incoming>) -> Self {
        Self { body: res.into_body(), buf: String::new() }
    }

    /// The next event's JSON data (comments and empty events are skipped); `None` at the end.
    pub async fn next(&mut self) -> Option<(Instant, Value)> {
        loop {
            let normalized = self.buf.replace("\r\n", "\n");
            if let Some(end) = normalized.find("\n\n") {
                let event = normalized[..end].to_owned();
                self.buf = normalized[end + 2..].to_owned();
                if let Some(v) = sse_messages(&event).pop() {
                    return Some((Instant::now(), v));
                }
                continue;
            }
            let frame = self.body.frame().await?.expect("stream frame");
            if let Ok(data) = frame.into_data() {
                self.buf.push_str(std::str::from_utf8(&data).expect("utf8"));
            }
        }
    }
}

/// A streaming body fed from a channel, which records when it is dropped (the reader went away).
pub struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
    dropped: Arc<AtomicBool>,
}

impl ChannelBody {
    pub fn new(capacity: usize) -> (mpsc::Sender<Bytes>, Self, Arc<AtomicBool>) {
        let (tx, rx) = mpsc::channel(capacity);
        let dropped = Arc::new(AtomicBool::new(false));
        (tx, Self { rx, dropped: dropped.clone() }, dropped)
    }
}

impl Drop for ChannelBody {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// The test's end of a [`ChannelBody`] served by a fixture upstream.
pub struct StreamHandle {
    pub tx: mpsc::Sender<Bytes>,
    pub dropped: Arc<AtomicBool>,
}

/// Waits until `cond` holds, up to `timeout`.
pub async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// An upstream that records the headers it receives and streams an SSE body fed by the test.
pub async fn recording_upstream() -> (String, Arc<Mutex<Vec<HeaderMap>>>, tokio::sync::mpsc::Receiver<StreamHandle>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (streams_tx, streams_rx) = tokio::sync::mpsc::channel(4);
    let app = {
        let seen = seen.clone();
        axum::Router::new().fallback(move |req: axum::extract::Request| {
            let seen = seen.clone();
            let streams_tx = streams_tx.clone();
            async move {
                seen.lock().unwrap().push(req.headers().clone());
                let (tx, body, dropped) = ChannelBody::new(16);
                let _ = streams_tx.send(StreamHandle { tx, dropped }).await;
                http::Response::builder()
                    .header("content-type", "text/event-stream")
                    .header("mcp-session-id", "upstream-session")
                    .body(axum::body::Body::new(body))
                    .unwrap()
            }
        })
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/upstream/mcp"), seen, streams_rx)
}

/// The MCP call records (`type: "mcp"`) of the audit trail in `dir`, in order.
pub fn call_records(dir: &std::path::Path) -> Vec<Value> {
    mcp_enterprise_audit::trail_files(dir)
        .unwrap()
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f).unwrap().lines().filter_map(|l| serde_json::from_str(l).ok()).collect::<Vec<_>>()
        })
        .filter(|r: &Value| r["type"] == "mcp")
        .collect()
}
pub mod tls;

/// `@modelcontextprotocol/server-everything` as a stdio server (`node dist/index.js stdio`, with the
/// loopback preload and the test-process watchdog).
pub fn server_everything_stdio(
    peers: &mcp_enterprise_tests::peers::Peers,
) -> mcp_enterprise_gateway::stdio::StdioCommand {
    let entry = peers.package_dir("@modelcontextprotocol/server-everything").join("dist").join("index.js");
    let argv = vec![
        peers.node().display().to_string(),
        "-r".to_owned(),
        peers.loopback_preload().display().to_string(),
        entry.display().to_string(),
        "stdio".to_owned(),
    ];
    let mut command = mcp_enterprise_gateway::stdio::StdioCommand::new(&argv).expect("a command");
    command.env = vec![
        ("MCP_TEST_PARENT_PID".to_owned(), std::process::id().to_string()),
        ("NO_COLOR".to_owned(), "1".to_owned()),
    ];
    command.cwd = Some(peers.dir().to_path_buf());
    command
}

/// A gateway on loopback fronting `bridge` (no other layers).
pub async fn stdio_gateway(bridge: mcp_enterprise_gateway::stdio::StdioBridge) -> RunningGateway {
    Gateway::builder()
        .stdio(bridge)
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .build()
        .expect("gateway")
        .spawn()
        .await
        .expect("spawn gateway")
}
