//! The stdio bridge: a route whose MCP server is a local process speaking newline-delimited
//! JSON-RPC on stdin/stdout (`upstream.command`), served to clients as Streamable HTTP.
//!
//! - **A transparent relay.** Messages pass through as JSON values: nothing is typed, renamed or
//!   filtered, so any method, field or extension the child and the client know works. The pack's
//!   layers sit in front of the bridge exactly as they sit in front of the HTTP [`Proxy`](crate::Proxy).
//! - **Sessions.** An `initialize` POST opens a session (`Mcp-Session-Id`, 128 random bits) with a
//!   child of its own; every later request of the session goes to that child; `DELETE` ends it.
//!   At most `max_sessions` children run per route; an `initialize` beyond is refused (`503`,
//!   JSON-RPC `-32000`). A session with nothing in flight, no open `GET` stream and no request
//!   for `idle_timeout` is ended. Ending a session kills its child's whole process group.
//! - **Streams.** Each POST carrying requests gets an SSE stream with their answers and, while
//!   they run, the child's progress (matched by `progressToken`), notifications and requests
//!   (sampling, elicitation, roots); the client's answers to those are written back. With no
//!   request in flight, the child's messages go to the `GET` stream (a bounded backlog waits for
//!   one). A client closing a stream early cancels its requests at the child
//!   (`notifications/cancelled`).
//! - **2026-07-28 clients** (sessionless) are served by a translation: a pool of children the
//!   bridge initialises itself, ids remapped, `resultType` added, `server/discover` answered from
//!   the child's `initialize`, the child's requests turned into `input_required` results (MRTR);
//!   see `modern.rs`, `pool.rs` and `mrtr.rs`.
//! - **Crashes.** When a child exits, its calls in flight are answered with JSON-RPC `-32603`;
//!   the next message starts a new child, which gets the client's `initialize` replayed. Restarts
//!   back off (none for the first crash, then 250 ms doubling to 30 s); five crashes of a route's
//!   children within a minute are a crash loop: logged as an error and reported by readiness.
//! - **Isolation.** A child starts with an empty environment plus the names in `inherit_env`
//!   (default `PATH`, `HOME`, `LANG`, `TZ`, `TMPDIR`) and the configured `env`: it never inherits
//!   the gateway's secrets, and the caller's token is never given to it. Its stderr is logged at
//!   debug level with the route's name.
//! - **Spares** (`spare_children`, default none). Children started ahead of need, with nothing
//!   written to them: a session (or pooled child, or restart) that needs a child takes a spare
//!   that has already loaded, and another is started in its place. Spares count against
//!   `max_sessions`; one that exited before it was taken is discarded. See `spare.rs`.
//! - **Bounded.** Lines from the child are capped (`max_line_bytes`, longer ones dropped with a
//!   warning); every queue is bounded (a slow client slows its own child only); output that is
//!   not JSON is logged and dropped.

mod child;
mod modern;
mod mrtr;
mod pool;
mod session;
mod spare;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use mcp_enterprise_core::{BoxError, McpBody, McpRequest};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tower_service::Service;

use session::{SendError, Session};

use crate::admin::Metrics;
use crate::drain::{Drain, DrainBody};

/// Crashes counted for backoff and crash-loop detection are those within this window.
pub(crate) const CRASH_WINDOW: Duration = Duration::from_secs(60);
/// This many crashes of a route's children within a minute are a crash loop.
pub const CRASH_LOOP: usize = 5;
/// The protocol versions of the session era the bridge accepts in `MCP-Protocol-Version`.
const SUPPORTED_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05", "2024-10-07"];
/// The environment a child inherits by default.
pub use mcp_enterprise_config::stdio::DEFAULT_INHERIT_ENV;

/// The process to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StdioCommand {
    /// The program (looked up in the child's `PATH`).
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Variables set for it (secrets resolved).
    pub env: Vec<(String, String)>,
    /// Variables copied from the gateway's environment (when set there).
    pub inherit_env: Vec<String>,
    /// Its working directory (default: the gateway's).
    pub cwd: Option<PathBuf>,
}

impl StdioCommand {
    /// `argv[0]` with its arguments, the default inherited names, no `env`, no `cwd`.
    pub fn new(argv: &[String]) -> Option<Self> {
        let (program, args) = argv.split_first()?;
        Some(Self {
            program: program.clone(),
            args: args.to_vec(),
            env: Vec::new(),
            inherit_env: DEFAULT_INHERIT_ENV.iter().map(|s| (*s).to_owned()).collect(),
            cwd: None,
        })
    }
}

/// The bounds of one route's children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StdioLimits {
    /// Sessions (children) at once.
    pub max_sessions: usize,
    /// A session unused this long is ended.
    pub idle_timeout: Duration,
    /// The longest line read from a child.
    pub max_line_bytes: usize,
    /// How long a 2026-07-28 call waits, parked at its child, for the client to retry it with the
    /// input it was asked for (`input_required`); then it is abandoned.
    pub input_timeout: Duration,
    /// Children started ahead of need: a session that needs a child takes one instead of waiting
    /// for a process to start. They count against `max_sessions`. Default: 0.
    pub spare_children: usize,
}

impl Default for StdioLimits {
    fn default() -> Self {
        Self {
            max_sessions: 16,
            idle_timeout: Duration::from_secs(600),
            max_line_bytes: 4 * 1024 * 1024,
            input_timeout: Duration::from_secs(120),
            spare_children: 0,
        }
    }
}

pub(crate) struct Inner {
    pub(crate) route: Arc<str>,
    pub(crate) command: StdioCommand,
    pub(crate) limits: StdioLimits,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Recent crashes of any child of the route, for readiness.
    crashes: Mutex<Vec<Instant>>,
    restarts: AtomicU64,
    /// The gateway's metrics and the route's label (its MCP path), once served.
    metrics: std::sync::RwLock<Option<(Arc<Metrics>, Arc<String>)>>,
    /// Numbers the ids of 2026-07-28 calls at the children.
    next_call: AtomicU64,
    /// 2026-07-28 calls parked for input, by `requestState`.
    parked: Mutex<HashMap<String, mrtr::Parked>>,
    /// Children started ahead of need, not yet taken.
    spares: Mutex<Vec<spare::Spare>>,
}

impl Inner {
    /// A child crashed; `recent` crashes of its session's children are within the window.
    pub(crate) fn crashed(&self, recent: usize, status: &str) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
        let mut crashes = self.crashes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        crashes.retain(|t| t.elapsed() < CRASH_WINDOW);
        crashes.push(Instant::now());
        let total = crashes.len().max(recent);
        if total >= CRASH_LOOP {
            tracing::error!(route = %self.route, %status, crashes = total, window_secs = CRASH_WINDOW.as_secs(), "stdio server crash loop: its children keep exiting");
        } else {
            tracing::warn!(route = %self.route, %status, "stdio server exited; calls in flight were answered with an error, the next call restarts it");
        }
    }

    /// The child answered a request `took` after it was written (`mcpe_upstream_duration_seconds`).
    pub(crate) fn answered(&self, took: Duration) {
        if let Some((metrics, route)) = &*self.metrics.read().unwrap_or_else(std::sync::PoisonError::into_inner) {
            metrics.upstream_answered(route, took.as_secs_f64());
        }
    }

    /// `calls` calls failed for `kind` (`mcpe_upstream_errors_total`).
    pub(crate) fn failed(&self, kind: &'static str, calls: usize) {
        if let Some((metrics, route)) = &*self.metrics.read().unwrap_or_else(std::sync::PoisonError::into_inner) {
            for _ in 0..calls {
                metrics.upstream_failed(route, kind);
            }
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn parked(&self) -> std::sync::MutexGuard<'_, HashMap<String, mrtr::Parked>> {
        self.parked.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn next_call(&self) -> u64 {
        self.next_call.fetch_add(1, Ordering::Relaxed)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for session in self.sessions().values() {
            drop(session.close());
        }
    }
}

/// One route's bridge (cloning shares its sessions and children).
#[derive(Clone)]
pub struct StdioBridge {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StdioBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioBridge")
            .field("route", &self.inner.route)
            .field("program", &self.inner.command.program)
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

impl StdioBridge {
    /// A bridge for `command`, named `route` in logs and readiness. Starts its idle reaper on the
    /// current tokio runtime when there is one.
    pub fn new(route: impl Into<String>, command: StdioCommand, limits: StdioLimits) -> Self {
        let inner = Arc::new(Inner {
            route: Arc::from(route.into()),
            command,
            limits,
            sessions: Mutex::new(HashMap::new()),
            crashes: Mutex::new(Vec::new()),
            restarts: AtomicU64::new(0),
            metrics: std::sync::RwLock::new(None),
            next_call: AtomicU64::new(1),
            parked: Mutex::new(HashMap::new()),
            spares: Mutex::new(Vec::new()),
        });
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(reap_idle(Arc::downgrade(&inner)));
        }
        Self { inner }
    }

    /// The route's name.
    pub fn route(&self) -> &str {
        &self.inner.route
    }

    /// Sessions (children) open now: client sessions and pooled children of 2026-07-28 clients.
    pub fn sessions(&self) -> usize {
        self.inner.sessions().len()
    }

    /// Pooled children (serving 2026-07-28 clients) open now.
    pub fn pooled(&self) -> usize {
        self.inner.sessions().values().filter(|s| s.pool.is_some()).count()
    }

    /// 2026-07-28 calls parked for the client's input now.
    pub fn parked(&self) -> usize {
        self.inner.parked().len()
    }

    /// The process ids of the running children of sessions (spares not included).
    pub fn child_pids(&self) -> Vec<i32> {
        self.inner.sessions().values().filter_map(|s| s.child_pid()).collect()
    }

    /// The process ids of the spare children (started ahead of need, not yet taken).
    pub fn spare_pids(&self) -> Vec<i32> {
        self.inner.spare_pids()
    }

    /// Readiness: an error while the route's children are in a crash loop.
    pub fn health(&self) -> Result<(), String> {
        let mut crashes = self.inner.crashes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        crashes.retain(|t| t.elapsed() < CRASH_WINDOW);
        if crashes.len() >= CRASH_LOOP {
            Err(format!(
                "crash loop: its stdio server exited {} times in the last {} s",
                crashes.len(),
                CRASH_WINDOW.as_secs()
            ))
        } else {
            Ok(())
        }
    }

    /// Ends every session, killing every child.
    pub fn shutdown(&self) {
        self.close_all();
    }

    fn close_all(&self) -> Vec<Arc<child::Child>> {
        let sessions: Vec<Arc<Session>> = self.inner.sessions().drain().map(|(_, s)| s).collect();
        let mut children: Vec<_> = sessions.iter().filter_map(|s| s.close()).collect();
        children.extend(self.inner.drain_spares());
        children
    }

    /// Ends every session and waits (up to 5 s) until every child has exited and been reaped.
    pub async fn shutdown_and_wait(&self) {
        let children = self.close_all();
        let deadline = Instant::now() + Duration::from_secs(5);
        while children.iter().any(|c| !c.has_exited()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether two handles share one bridge.
    pub fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// Ends sessions idle for the idle timeout.
async fn reap_idle(inner: Weak<Inner>) {
    let period = match inner.upgrade() {
        Some(i) => (i.limits.idle_timeout.min(i.limits.input_timeout) / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(30)),
        None => return,
    };
    loop {
        tokio::time::sleep(period).await;
        let Some(inner) = inner.upgrade() else { return };
        let idle: Vec<Arc<Session>> = {
            let mut sessions = inner.sessions();
            let ids: Vec<String> = sessions
                .iter()
                .filter(|(_, s)| s.idle_for(inner.limits.idle_timeout))
                .map(|(k, _)| k.clone())
                .collect();
            ids.iter().filter_map(|k| sessions.remove(k)).collect()
        };
        for session in idle {
            tracing::debug!(route = %inner.route, "stdio session idle; ended and its server stopped");
            drop(session.close());
        }
        for (session, call) in inner.expired_parked() {
            let session = inner.sessions().get(&session).cloned();
            if let Some(session) = session {
                tracing::debug!(route = %inner.route, "a call waiting for the client's input expired; abandoned");
                session.abandon(&call, "the client did not give the input in time").await;
            }
        }
    }
}

/// An SSE event carrying one message (with an id on resumable streams).
pub(crate) fn sse_event(id: Option<&str>, message: &Value) -> Bytes {
    let mut out = b"event: message\n".to_vec();
    if let Some(id) = id {
        out.extend_from_slice(format!("id: {id}\n").as_bytes());
    }
    out.extend_from_slice(b"data: ");
    out.extend(serde_json::to_vec(message).unwrap_or_default());
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The body of a streamed answer: the SSE events of one stream.
#[derive(Debug)]
pub struct StreamBody {
    rx: mpsc::Receiver<Bytes>,
    /// Told when the client goes away before the stream ended.
    owner: Option<(Weak<Session>, u64)>,
    /// An event already taken from `rx`, sent first.
    first: Option<Bytes>,
}

impl Body for StreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(bytes)) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
            Poll::Ready(None) => {
                self.owner = None;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for StreamBody {
    fn drop(&mut self) {
        if let Some((session, stream)) = self.owner.take()
            && let Some(session) = session.upgrade()
        {
            session.stream_dropped(stream);
        }
    }
}

/// The body the bridge makes: a stream of events or a whole answer.
type Plain = http_body_util::Either<StreamBody, http_body_util::Full<Bytes>>;

/// The body of a bridged answer (ended by the gateway's stop like a proxied one, see
/// [`drain`](crate::drain)).
pub type BridgeBody = McpBody<DrainBody<Plain>>;

/// An answer the bridge makes itself, boxed (it travels in `Err` variants).
type Refusal = Box<Response<Plain>>;

fn error(status: StatusCode, code: i64, message: &str, id: Option<&Value>) -> Response<Plain> {
    let body = json!({"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": id.cloned().unwrap_or(Value::Null)});
    let mut response =
        Response::new(http_body_util::Either::Right(http_body_util::Full::new(Bytes::from(body.to_string()))));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn empty(status: StatusCode) -> Response<Plain> {
    let mut response = Response::new(http_body_util::Either::Right(http_body_util::Full::new(Bytes::new())));
    *response.status_mut() = status;
    response
}

fn sse(body: StreamBody, session: Option<&str>) -> Response<Plain> {
    let mut response = Response::new(http_body_util::Either::Left(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-transform"));
    if let Some(v) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
        headers.insert("mcp-session-id", v);
    }
    response
}

fn new_session_id() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).unwrap_or_default();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn header_str<'a>(parts: &'a http::request::Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

/// A JSON-RPC message: an object with `method` (request or notification) or with `id` and
/// `result` or `error` (an answer).
fn is_message(v: &Value) -> bool {
    v.get("jsonrpc").and_then(Value::as_str) == Some("2.0")
        && (v.get("method").is_some_and(Value::is_string)
            || (v.get("id").is_some() && (v.get("result").is_some() || v.get("error").is_some())))
}

fn is_request(v: &Value) -> bool {
    v.get("method").is_some() && v.get("id").is_some()
}

impl StdioBridge {
    fn session(&self, parts: &http::request::Parts) -> Result<Arc<Session>, Refusal> {
        let Some(id) = header_str(parts, "mcp-session-id") else {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                -32000,
                "Bad Request: No valid session ID provided",
                None,
            )));
        };
        match self.inner.sessions().get(id) {
            // a pooled child is never a client's session
            Some(s) if s.pool.is_none() => Ok(s.clone()),
            _ => Err(Box::new(error(StatusCode::NOT_FOUND, -32001, "Session not found", None))),
        }
    }

    fn check_version(parts: &http::request::Parts) -> Result<(), Refusal> {
        match header_str(parts, "mcp-protocol-version") {
            Some(v) if !SUPPORTED_VERSIONS.contains(&v) => Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                -32000,
                &format!(
                    "Bad Request: Unsupported protocol version: {v} (supported versions: {})",
                    SUPPORTED_VERSIONS.join(", ")
                ),
                None,
            ))),
            _ => Ok(()),
        }
    }

    async fn handle<B>(self, req: Request<B>) -> Response<Plain>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = req.into_parts();
        if matches!(parts.method, Method::GET | Method::DELETE)
            && let Some(response) = modern::method_not_allowed(&parts)
        {
            return response;
        }
        match parts.method {
            Method::POST => self.post(parts, body).await,
            Method::GET => self.get(&parts),
            Method::DELETE => match self.session(&parts).and_then(|s| Self::check_version(&parts).map(|()| s)) {
                Ok(session) => {
                    self.inner.sessions().remove(&session.id);
                    drop(session.close());
                    empty(StatusCode::OK)
                }
                Err(response) => *response,
            },
            _ => {
                let mut r = error(StatusCode::METHOD_NOT_ALLOWED, -32000, "Method not allowed.", None);
                r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
                r
            }
        }
    }

    fn get(&self, parts: &http::request::Parts) -> Response<Plain> {
        if !header_str(parts, "accept").is_some_and(|a| a.contains("text/event-stream")) {
            return error(
                StatusCode::NOT_ACCEPTABLE,
                -32000,
                "Not Acceptable: Client must accept text/event-stream",
                None,
            );
        }
        let session = match self.session(parts).and_then(|s| Self::check_version(parts).map(|()| s)) {
            Ok(s) => s,
            Err(r) => return *r,
        };
        session.touch();
        if let Some(last) = header_str(parts, "last-event-id") {
            return match session.resume(last) {
                Some(rx) => sse(StreamBody { rx, owner: None, first: None }, Some(&session.id)),
                None => error(StatusCode::BAD_REQUEST, -32000, "Invalid event ID format", None),
            };
        }
        match session.open_get() {
            Some(rx) => sse(StreamBody { rx, owner: None, first: None }, Some(&session.id)),
            None => error(StatusCode::CONFLICT, -32000, "Conflict: Only one SSE stream is allowed per session", None),
        }
    }

    async fn post<B>(&self, parts: http::request::Parts, body: B) -> Response<Plain>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let accept = header_str(&parts, "accept").unwrap_or_default();
        if !(accept.contains("application/json") && accept.contains("text/event-stream")) {
            return error(
                StatusCode::NOT_ACCEPTABLE,
                -32000,
                "Not Acceptable: Client must accept both application/json and text/event-stream",
                None,
            );
        }
        let json_type = header_str(&parts, "content-type")
            .and_then(|c| c.split(';').next())
            .is_some_and(|c| c.trim().eq_ignore_ascii_case("application/json"));
        if !json_type {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                -32000,
                "Unsupported Media Type: Content-Type must be application/json",
                None,
            );
        }
        let limit = self.inner.limits.max_line_bytes;
        let bytes = match http_body_util::Limited::new(body, limit).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    -32000,
                    "Payload Too Large: the body exceeds the limit",
                    None,
                );
            }
        };
        let Ok(raw) = serde_json::from_slice::<Value>(&bytes) else {
            return error(StatusCode::BAD_REQUEST, -32700, "Parse error: Invalid JSON", None);
        };
        if raw.is_object() {
            match modern::modern_request(&parts, &raw, &bytes) {
                Ok(Some(request)) => return self.modern_post(&parts, request).await,
                Ok(None) => {}
                Err(response) => return *response,
            }
        }
        let messages: Vec<Value> = match raw {
            Value::Array(items) => items,
            other => vec![other],
        };
        if messages.is_empty() || !messages.iter().all(is_message) {
            return error(StatusCode::BAD_REQUEST, -32700, "Parse error: Invalid JSON-RPC message", None);
        }
        let initialize = messages.iter().find(|m| m.get("method").and_then(Value::as_str) == Some("initialize"));
        let session = if let Some(init) = initialize {
            if header_str(&parts, "mcp-session-id").is_some() {
                return match self.session(&parts) {
                    Ok(_) => {
                        error(StatusCode::BAD_REQUEST, -32600, "Invalid Request: Server already initialized", None)
                    }
                    Err(r) => *r,
                };
            }
            if messages.len() > 1 {
                return error(
                    StatusCode::BAD_REQUEST,
                    -32600,
                    "Invalid Request: Only one initialization request is allowed",
                    None,
                );
            }
            if self.inner.sessions().len() >= self.inner.limits.max_sessions {
                self.evict_idle_pooled();
            }
            let session = {
                let mut sessions = self.inner.sessions();
                if sessions.len() >= self.inner.limits.max_sessions {
                    tracing::warn!(route = %self.inner.route, max = self.inner.limits.max_sessions, "stdio session refused: the limit of children is reached");
                    let mut r = error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        -32000,
                        &format!(
                            "too many sessions: this MCP server runs at most {} at once; retry later",
                            self.inner.limits.max_sessions
                        ),
                        init.get("id"),
                    );
                    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                    return r;
                }
                let session = Session::new(new_session_id(), Arc::downgrade(&self.inner), None);
                sessions.insert(session.id.clone(), session.clone());
                session
            };
            session.set_initialize(init);
            session
        } else {
            match self.session(&parts).and_then(|s| Self::check_version(&parts).map(|()| s)) {
                Ok(s) => s,
                Err(r) => return *r,
            }
        };
        session.touch();
        let requests: Vec<(Value, Option<String>)> = messages
            .iter()
            .filter(|m| is_request(m))
            .map(|m| {
                let id = m.get("id").cloned().unwrap_or(Value::Null);
                let token = m.pointer("/params/_meta/progressToken").map(Value::to_string);
                (id, token)
            })
            .collect();
        // a stream is resumable (a priming event first, ids on its events) from 2025-11-25 on
        let version = initialize
            .and_then(|i| i.pointer("/params/protocolVersion"))
            .and_then(Value::as_str)
            .or_else(|| header_str(&parts, "mcp-protocol-version"))
            .unwrap_or("2025-03-26");
        let resumable = version >= "2025-11-25";
        let stream = (!requests.is_empty()).then(|| session.open_stream(&requests, resumable));
        for message in &messages {
            if let Err(e) = session.send(message).await {
                if let Some((n, _)) = &stream {
                    session.forget_stream(*n);
                }
                if initialize.is_some() {
                    self.inner.sessions().remove(&session.id);
                    drop(session.close());
                }
                let message = match e {
                    SendError::Closed => "the session ended".to_owned(),
                    SendError::Spawn => {
                        self.inner.failed("spawn", requests.len().max(1));
                        format!("the stdio MCP server of {} cannot be started", self.inner.route)
                    }
                };
                let id = messages.iter().find(|m| is_request(m)).and_then(|m| m.get("id"));
                return error(StatusCode::BAD_GATEWAY, -32603, &message, id);
            }
        }
        match stream {
            None => empty(StatusCode::ACCEPTED),
            Some((n, rx)) => {
                sse(StreamBody { rx, owner: Some((Arc::downgrade(&session), n)), first: None }, Some(&session.id))
            }
        }
    }
}

/// A bridge serving at one MCP path (other paths: `404`).
#[derive(Debug, Clone)]
pub struct StdioRoute {
    bridge: StdioBridge,
    path: Arc<str>,
    drain: Drain,
}

impl StdioBridge {
    /// This bridge serving at `path`; its streams end when `drain` says so (a gateway's stop).
    pub fn at(&self, path: &str, drain: Drain) -> StdioRoute {
        // served from now on: its spares are started
        self.inner.fill_spares();
        StdioRoute { bridge: self.clone(), path: Arc::from(path), drain }
    }

    /// Records the children's latency and failures in `metrics`, labelled `route` (the MCP path).
    pub(crate) fn set_metrics(&self, metrics: Option<Arc<Metrics>>, route: &str) {
        *self.inner.metrics.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
            metrics.map(|m| (m, Arc::new(route.to_owned())));
    }
}

impl<B> Service<Request<B>> for StdioRoute
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<BridgeBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let drain = self.drain.clone();
        if req.uri().path() != &*self.path {
            let response = error(StatusCode::NOT_FOUND, -32601, "no MCP endpoint at this path", None);
            return Box::pin(std::future::ready(Ok(response.map(|b| McpBody::new(DrainBody::new(b, drain, None))))));
        }
        let bridge = self.bridge.clone();
        // a POST stream answers its first request; a GET stream answers none
        let id = McpRequest::of(req.extensions()).and_then(|m| m.id().cloned());
        let get = req.method() == Method::GET;
        Box::pin(async move {
            let response = bridge.handle(req).await;
            let streamed = matches!(response.body(), http_body_util::Either::Left(_));
            let sse = streamed.then_some(if get { None } else { id });
            Ok(response.map(|b| McpBody::new(DrainBody::new(b, drain, sse))))
        })
    }
}
