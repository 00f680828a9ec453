//! Serving 2026-07-28 ("modern", sessionless) clients from a session-era stdio server: a
//! translation, not a relay.
//!
//! - A modern request (core's era detection: per-request `_meta`, `MCP-Protocol-Version:
//!   2026-07-28`) goes to a child of the route's **pool**: children the bridge initialises itself
//!   (session-era `initialize` + `notifications/initialized`, with the capabilities of the
//!   request's `_meta`). Requests of the same capabilities (and the same authenticated principal)
//!   share children; see [`pool`](super::pool) for the bounds.
//! - The request id is replaced by a bridge-unique one (`mcpe-<n>`, so concurrent requests never
//!   collide at a child), and so is its `progressToken`; both are put back on what the child sends.
//! - Results get `resultType: "complete"`, `_meta["io.modelcontextprotocol/serverInfo"]` and, on
//!   list results, the caching hints `ttlMs: 0`, `cacheScope: "private"`.
//! - `server/discover` is answered from the child's `initialize` result.
//! - A request the child sends while handling a call (sampling, elicitation, roots) ends the call's
//!   stream with `resultType: "input_required"` (see [`mrtr`](super::mrtr)).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use mcp_enterprise_core::message::{MODERN_PROTOCOL_VERSION, is_modern_version};
use mcp_enterprise_core::{McpRequest, MessageKind, Principal, Rejection};
use serde_json::{Map, Value, json};

use super::session::{INIT_WAIT, SendError, State, key};
use super::{Plain, Refusal, SUPPORTED_VERSIONS, StdioBridge, StreamBody, error, sse};

/// `_meta` key of the server's (self-asserted) info on results.
pub(crate) const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
/// Methods whose results are cacheable (they get caching hints).
const CACHEABLE: &[&str] =
    &["tools/list", "resources/list", "resources/templates/list", "prompts/list", "resources/read"];
/// Session-era methods 2026-07-28 removed: `404`, JSON-RPC `-32601`, never relayed.
const REMOVED: &[&str] = &["initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"];

/// Which pooled children a request may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pool {
    /// The principal and the canonical client capabilities.
    pub(crate) key: String,
    /// The capabilities let the child ask the client (sampling, elicitation, roots): such a child
    /// serves one call at a time, so a request it sends belongs to that call.
    pub(crate) exclusive: bool,
}

impl Pool {
    fn of(caps: &Value, principal: Option<&Principal>) -> Self {
        let canonical = String::from_utf8(mcp_enterprise_core::canonical::to_vec(caps)).unwrap_or_default();
        let who = principal.map(|p| format!("{}\u{0}{}", p.issuer(), p.subject())).unwrap_or_default();
        let exclusive = ["sampling", "elicitation", "roots"].iter().any(|c| caps.get(c).is_some());
        Self { key: format!("{who}\u{0}{canonical}"), exclusive }
    }
}

/// A 2026-07-28 call in flight at a pooled child.
#[derive(Debug)]
pub(crate) struct ModernCall {
    /// The id the client gave it (the id of its latest retry).
    pub(crate) client_id: Value,
    /// The client's progress token, when it asked for progress.
    pub(crate) client_token: Option<Value>,
    /// Its method.
    pub(crate) method: String,
    /// What `Mcp-Name` names (a tool, prompt or resource).
    pub(crate) target: Option<String>,
    /// Who made it (issuer and subject), when authenticated.
    pub(crate) principal: Option<String>,
    /// The stream the client waits on (`None` while it is parked for input).
    pub(crate) stream: Option<u64>,
    /// Requests of the child not yet shown to the client: (key, child's id, `{method, params}`).
    pub(crate) pending: Vec<(String, Value, Value)>,
    /// Requests shown to the client, waiting for its `inputResponses`: (key, child's id).
    pub(crate) asked: Vec<(String, Value)>,
}

/// The principal's identity as kept with a parked call.
pub(crate) fn principal_of(parts: &http::request::Parts) -> Option<String> {
    parts.extensions.get::<Principal>().map(|p| format!("{}\u{0}{}", p.issuer(), p.subject()))
}

/// The session-era `initialize` the bridge writes to a pooled child.
pub(crate) fn initialize_for(caps: &Value) -> Value {
    json!({"jsonrpc": "2.0", "id": super::session::REINIT_ID, "method": "initialize", "params": {
        "protocolVersion": SUPPORTED_VERSIONS[0],
        "capabilities": caps,
        "clientInfo": {"name": "mcp-enterprise-stdio-bridge", "version": env!("CARGO_PKG_VERSION")},
    }})
}

/// The stream a pooled child's notification goes to: progress to the call whose (bridge) token it
/// carries; a log message to the only call in flight (an exclusive child has at most one; on a
/// shared one it is only attributable while one call runs); nothing else (list changes, resource
/// updates: no call's business), and nowhere when unattributable.
pub(crate) fn notification_stream(state: &State, _pool: &Pool, message: &Value) -> Option<u64> {
    let method = message.get("method").and_then(Value::as_str).unwrap_or_default();
    if method == "notifications/progress" {
        let token = message.pointer("/params/progressToken").map(Value::to_string)?;
        let stream = state.requests.values().find(|(_, t)| t.as_deref() == Some(token.as_str())).map(|r| r.0)?;
        return state.streams.contains_key(&stream).then_some(stream);
    }
    if method != "notifications/message" {
        // list changes and resource updates belong to no call (2026-07-28: subscriptions/listen)
        return None;
    }
    let mut open = state.modern.values().filter_map(|c| c.stream).filter(|n| state.streams.contains_key(n));
    match (open.next(), open.next()) {
        (Some(n), None) => Some(n),
        _ => None,
    }
}

/// What the client of call `call` gets for `message` from the child: ids and progress tokens put
/// back, results completed with the 2026-07-28 fields. A final answer ends the call.
pub(crate) fn outgoing(state: &mut State, call: &str, message: &Value, is_response: bool) -> Value {
    let mut m = message.clone();
    if is_response {
        let server_info = state.init_result.as_ref().and_then(|r| r.pointer("/result/serverInfo")).cloned();
        let Some(c) = state.modern.remove(call) else { return m };
        m["id"] = c.client_id;
        if let Some(result) = m.get_mut("result").and_then(Value::as_object_mut) {
            complete(result, &c.method, server_info);
        }
        // 2026-07-28 moved resource-not-found from -32002 to -32602
        if c.method == "resources/read" && m.pointer("/error/code").and_then(Value::as_i64) == Some(-32002) {
            m["error"]["code"] = json!(-32602);
        }
    } else if message.get("method").and_then(Value::as_str) == Some("notifications/progress")
        && let Some(token) = state.modern.get(call).and_then(|c| c.client_token.clone())
        && let Some(params) = m.get_mut("params").and_then(Value::as_object_mut)
    {
        params.insert("progressToken".into(), token);
    }
    m
}

/// Adds the fields a 2026-07-28 result carries (unless the child set them).
fn complete(result: &mut Map<String, Value>, method: &str, server_info: Option<Value>) {
    result.entry("resultType").or_insert_with(|| json!("complete"));
    if CACHEABLE.contains(&method) {
        result.entry("ttlMs").or_insert_with(|| json!(0));
        result.entry("cacheScope").or_insert_with(|| json!("private"));
    }
    if let Some(info) = server_info
        && let Some(meta) = result.entry("_meta").or_insert_with(|| json!({})).as_object_mut()
    {
        meta.entry(META_SERVER_INFO).or_insert(info);
    }
}

/// The JSON-RPC message of an SSE event the bridge made (`data: <json>`).
fn event_message(event: &Bytes) -> Option<Value> {
    let text = std::str::from_utf8(event).ok()?;
    let data = text.lines().find_map(|l| l.strip_prefix("data: "))?;
    serde_json::from_str(data).ok()
}

fn rejection(r: &Rejection) -> Response {
    let mut response = error(r.status(), 0, "", None);
    *response.body_mut() = json_body(&r.to_jsonrpc().to_value());
    response
}

type Response = http::Response<Plain>;

fn json_body(value: &Value) -> Plain {
    http_body_util::Either::Right(http_body_util::Full::new(Bytes::from(value.to_string())))
}

/// A JSON-RPC error answer with `data`.
pub(crate) fn error_with(status: StatusCode, code: i64, message: &str, id: Option<&Value>, data: Value) -> Response {
    let mut response = error(status, code, message, id);
    let body = json!({"jsonrpc": "2.0", "error": {"code": code, "message": message, "data": data},
        "id": id.cloned().unwrap_or(Value::Null)});
    *response.body_mut() = json_body(&body);
    response
}

/// Whether a POST is a 2026-07-28 one, by core's inspection (the gateway's inspection layer put it
/// in the extensions; parsed here otherwise), or one that looks modern but is refused: core's
/// refusals (`-32020`, `-32602`), a version in `_meta` the bridge does not know (`-32022`), a
/// removed method (`404`).
pub(crate) fn modern_request(
    parts: &http::request::Parts,
    raw: &Value,
    bytes: &[u8],
) -> Result<Option<McpRequest>, Refusal> {
    let header = parts.headers.get("mcp-protocol-version").and_then(|v| v.to_str().ok());
    let meta_version = raw.pointer("/params/_meta/io.modelcontextprotocol~1protocolVersion").and_then(Value::as_str);
    let method = raw.get("method").and_then(Value::as_str).unwrap_or_default();
    let id = raw.get("id").filter(|i| i.is_string() || i.is_number());
    let looks_modern = header.is_some_and(is_modern_version)
        || meta_version.is_some_and(is_modern_version)
        || method == "server/discover";
    if method == "initialize" && header.is_some_and(is_modern_version) {
        return Err(Box::new(not_found(method, id)));
    }
    if let (Some(h), Some(b)) = (header, meta_version)
        && h != b
        && (looks_modern || is_modern_version(h))
    {
        let message = format!("Header mismatch: MCP-Protocol-Version header {h:?} does not match the body {b:?}");
        return Err(Box::new(error(StatusCode::BAD_REQUEST, -32020, &message, id)));
    }
    // a `_meta` version that is neither era's: the modern client's probe gets the versions
    if let Some(v) = meta_version
        && method != "initialize"
        && !is_modern_version(v)
        && !SUPPORTED_VERSIONS.contains(&v)
    {
        return Err(Box::new(unsupported(v, id)));
    }
    let request = match McpRequest::of(&parts.extensions) {
        Some(request) => request.clone(),
        None => match McpRequest::parse(&parts.headers, bytes, |_| None) {
            Ok(request) => request,
            Err(r) if looks_modern => return Err(Box::new(rejection(&r))),
            Err(_) => return Ok(None),
        },
    };
    if request.era() != mcp_enterprise_core::Era::Modern {
        return Ok(None);
    }
    if REMOVED.contains(&method) {
        return Err(Box::new(not_found(method, id)));
    }
    Ok(Some(request))
}

fn not_found(method: &str, id: Option<&Value>) -> Response {
    error(StatusCode::NOT_FOUND, -32601, &format!("Method not found: {method} (removed in 2026-07-28)"), id)
}

fn unsupported(version: &str, id: Option<&Value>) -> Response {
    let mut supported = vec![MODERN_PROTOCOL_VERSION];
    supported.extend_from_slice(SUPPORTED_VERSIONS);
    error_with(
        StatusCode::BAD_REQUEST,
        -32022,
        &format!("Unsupported protocol version: {version} (supported: {})", supported.join(", ")),
        id,
        json!({"supported": supported, "requested": version}),
    )
}

/// `405` for a `GET` or `DELETE` of a 2026-07-28 client (there is no stream or session to get or end).
pub(crate) fn method_not_allowed(parts: &http::request::Parts) -> Option<Response> {
    let modern = parts.headers.get("mcp-protocol-version").and_then(|v| v.to_str().ok()).is_some_and(is_modern_version);
    modern.then(|| {
        let mut r =
            error(StatusCode::METHOD_NOT_ALLOWED, -32000, "Method not allowed: a 2026-07-28 client only POSTs", None);
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        r
    })
}

impl StdioBridge {
    /// Serves one 2026-07-28 request.
    pub(crate) async fn modern_post(&self, parts: &http::request::Parts, request: McpRequest) -> Response {
        let id = request.id().map(mcp_enterprise_core::JsonRpcId::to_value);
        let version = request.protocol_version().unwrap_or_default();
        if version != MODERN_PROTOCOL_VERSION {
            return unsupported(version, id.as_ref());
        }
        match request.kind() {
            MessageKind::Request => {}
            MessageKind::Notification => return super::empty(StatusCode::ACCEPTED),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    -32600,
                    "Invalid Request: a 2026-07-28 client sends no responses",
                    None,
                );
            }
        }
        let caps = request.message().pointer("/params/_meta/io.modelcontextprotocol~1clientCapabilities");
        let Some(caps) = caps.filter(|c| c.is_object()).cloned() else {
            return error(
                StatusCode::BAD_REQUEST,
                -32602,
                "Invalid params: _meta[\"io.modelcontextprotocol/clientCapabilities\"] is required (an object)",
                id.as_ref(),
            );
        };
        let pool = Pool::of(&caps, parts.extensions.get::<Principal>());
        let method = request.method().unwrap_or_default().to_owned();
        if method == "server/discover" {
            return self.discover(&pool, &caps, id.as_ref()).await;
        }
        if let Some(responses) = request.params().and_then(|p| p.get("inputResponses"))
            && !responses.is_object()
        {
            return error(
                StatusCode::BAD_REQUEST,
                -32602,
                "Invalid params: inputResponses must be an object",
                id.as_ref(),
            );
        }
        if let Some((key, _)) = request
            .params()
            .and_then(|p| p.get("inputResponses"))
            .and_then(Value::as_object)
            .and_then(|r| r.iter().find(|(_, v)| !v.is_object()))
        {
            let message = format!("Invalid params: inputResponses[{key:?}] must be a result object");
            return error(StatusCode::BAD_REQUEST, -32602, &message, id.as_ref());
        }
        if request.params().is_some_and(|p| p.contains_key("requestState")) {
            return self.retry(parts, &request, id).await;
        }
        self.call(parts, &request, &pool, &caps, id).await
    }

    /// A call written to a pooled child.
    async fn call(
        &self,
        parts: &http::request::Parts,
        request: &McpRequest,
        pool: &Pool,
        caps: &Value,
        id: Option<Value>,
    ) -> Response {
        let call_id = Value::String(format!("mcpe-{}", self.inner.next_call()));
        let ck = key(&call_id);
        let mut message = request.message().clone();
        message["id"] = call_id.clone();
        let client_token = message.pointer("/params/_meta/progressToken").cloned();
        if client_token.is_some() {
            message["params"]["_meta"]["progressToken"] = call_id.clone();
        }
        if let Some(params) = message.get_mut("params").and_then(Value::as_object_mut) {
            params.remove("inputResponses");
        }
        let call = ModernCall {
            client_id: id.clone().unwrap_or(Value::Null),
            client_token: client_token.clone(),
            method: request.method().unwrap_or_default().to_owned(),
            target: request.target().map(str::to_owned),
            principal: principal_of(parts),
            stream: None,
            pending: Vec::new(),
            asked: Vec::new(),
        };
        let token = client_token.is_some().then(|| ck.clone());
        let (session, (n, rx)) = match self.acquire(pool, caps, |s| s.open_modern(ck.clone(), call, token)) {
            Ok(x) => x,
            Err(r) => return *r,
        };
        session.touch();
        if let Err(e) = session.send(&message).await {
            session.forget_stream(n);
            let message = match e {
                SendError::Closed => "the stdio MCP server's pooled child ended; retry".to_owned(),
                SendError::Spawn => {
                    self.inner.failed("spawn", 1);
                    format!("the stdio MCP server of {} cannot be started", self.inner.route)
                }
            };
            return error(StatusCode::BAD_GATEWAY, -32603, &message, id.as_ref());
        }
        answer(StreamBody { rx, owner: Some((Arc::downgrade(&session), n)), first: None }).await
    }

    /// `server/discover`, from a pooled child's `initialize` result.
    async fn discover(&self, pool: &Pool, caps: &Value, id: Option<&Value>) -> Response {
        let session = match self.acquire(pool, caps, |_| ()) {
            Ok((s, ())) => s,
            Err(r) => return *r,
        };
        session.touch();
        if session.child().await.is_err() {
            self.inner.failed("spawn", 1);
            let message = format!("the stdio MCP server of {} cannot be started", self.inner.route);
            return error(StatusCode::BAD_GATEWAY, -32603, &message, id);
        }
        let Some(init) = session.init_result(INIT_WAIT).await else {
            let message = "the stdio MCP server did not answer its initialize in time";
            return error(StatusCode::GATEWAY_TIMEOUT, -32603, message, id);
        };
        let Some(init) = init.get("result").and_then(Value::as_object) else {
            let message =
                format!("the stdio MCP server refused initialize: {}", init.get("error").cloned().unwrap_or_default());
            return error(StatusCode::BAD_GATEWAY, -32603, &message, id);
        };
        let mut supported = vec![MODERN_PROTOCOL_VERSION];
        supported.extend_from_slice(SUPPORTED_VERSIONS);
        let mut result = Map::new();
        result.insert("supportedVersions".into(), json!(supported));
        result.insert("capabilities".into(), advertised(init.get("capabilities")));
        if let Some(instructions) = init.get("instructions") {
            result.insert("instructions".into(), instructions.clone());
        }
        result.insert("ttlMs".into(), json!(0));
        result.insert("cacheScope".into(), json!("private"));
        complete(&mut result, "server/discover", init.get("serverInfo").cloned());
        let body = json!({"jsonrpc": "2.0", "id": id.cloned().unwrap_or(Value::Null), "result": result});
        let mut response = error(StatusCode::OK, 0, "", None);
        *response.body_mut() = json_body(&body);
        response
    }
}

/// The child's capabilities as the bridge serves them to 2026-07-28 clients: without
/// `listChanged` and resource `subscribe` (their notifications have no call to ride on and the
/// bridge has no `subscriptions/listen`).
fn advertised(caps: Option<&Value>) -> Value {
    let mut caps = caps.cloned().unwrap_or_else(|| json!({}));
    if let Some(map) = caps.as_object_mut() {
        for feature in map.values_mut() {
            if let Some(f) = feature.as_object_mut() {
                f.remove("listChanged");
                f.remove("subscribe");
            }
        }
    }
    caps
}

/// The answer to a modern call: held until the child's first message (so an unknown method can
/// still be a `404`), then an SSE stream scoped to the call.
pub(crate) async fn answer(mut body: StreamBody) -> Response {
    let Some(first) = body.rx.recv().await else {
        return error(
            StatusCode::BAD_GATEWAY,
            -32603,
            "the stdio MCP server's pooled child ended before answering",
            None,
        );
    };
    if let Some(message) = event_message(&first)
        && message.get("method").is_none()
        && message.pointer("/error/code").and_then(Value::as_i64) == Some(-32601)
    {
        let mut response = error(StatusCode::NOT_FOUND, -32601, "", None);
        *response.body_mut() = json_body(&message);
        return response;
    }
    body.first = Some(first);
    let mut response = sse(body, None);
    response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(method: &str, token: Option<Value>) -> ModernCall {
        ModernCall {
            client_id: json!("client-1"),
            client_token: token,
            method: method.to_owned(),
            target: None,
            principal: None,
            stream: Some(0),
            pending: Vec::new(),
            asked: Vec::new(),
        }
    }

    #[test]
    fn answers_get_the_client_id_and_the_2026_fields() {
        let mut state = State::default();
        state.init_result = Some(json!({"result": {"serverInfo": {"name": "child"}}}));
        state.modern.insert("\"mcpe-1\"".into(), call("tools/list", None));
        let out = outgoing(
            &mut state,
            "\"mcpe-1\"",
            &json!({"jsonrpc": "2.0", "id": "mcpe-1", "result": {"tools": []}}),
            true,
        );
        assert_eq!(out["id"], "client-1");
        assert_eq!(out["result"]["resultType"], "complete");
        assert_eq!(out["result"]["ttlMs"], 0);
        assert_eq!(out["result"]["cacheScope"], "private");
        assert_eq!(out["result"]["_meta"][META_SERVER_INFO]["name"], "child");
        assert!(state.modern.is_empty(), "the answer ends the call");
        // a result the child completed itself is kept as it is
        state.modern.insert("\"mcpe-2\"".into(), call("tools/call", None));
        let out = outgoing(
            &mut state,
            "\"mcpe-2\"",
            &json!({"id": "mcpe-2", "result": {"resultType": "complete", "ttlMs": 5, "content": []}}),
            true,
        );
        assert_eq!(out["result"]["ttlMs"], 5);
        // the resource-not-found code of 2026-07-28
        state.modern.insert("\"mcpe-3\"".into(), call("resources/read", None));
        let out = outgoing(
            &mut state,
            "\"mcpe-3\"",
            &json!({"id": "mcpe-3", "error": {"code": -32002, "message": "x"}}),
            true,
        );
        assert_eq!(out["error"]["code"], -32602);
        assert_eq!(out["id"], "client-1");
    }

    #[test]
    fn progress_gets_the_client_token_back() {
        let mut state = State::default();
        state.modern.insert("\"mcpe-1\"".into(), call("tools/call", Some(json!(42))));
        let note = json!({"method": "notifications/progress", "params": {"progressToken": "mcpe-1", "progress": 1}});
        let out = outgoing(&mut state, "\"mcpe-1\"", &note, false);
        assert_eq!(out["params"]["progressToken"], 42);
        assert_eq!(state.modern.len(), 1, "a notification does not end the call");
    }

    #[test]
    fn discover_advertises_no_subscriptions() {
        let caps = json!({"tools": {"listChanged": true}, "resources": {"subscribe": true, "listChanged": true}, "logging": {}});
        assert_eq!(advertised(Some(&caps)), json!({"tools": {}, "resources": {}, "logging": {}}));
        assert_eq!(advertised(None), json!({}));
    }

    #[test]
    fn pools_are_keyed_by_canonical_capabilities_and_asking_ones_are_exclusive() {
        let a = Pool::of(&json!({"sampling": {}, "experimental": {"x": {}}}), None);
        let b = Pool::of(&json!({"experimental": {"x": {}}, "sampling": {}}), None);
        assert_eq!(a, b, "member order does not matter");
        assert!(a.exclusive);
        let c = Pool::of(&json!({"experimental": {"x": {}}}), None);
        assert!(!c.exclusive);
        assert_ne!(a.key, c.key);
    }
}
