//! The parsed view of one MCP message posted by a client, shared by every layer.
//!
//! [`McpRequest`] is produced once by the [`InspectLayer`](crate::InspectLayer) and stored in the
//! request extensions; later layers (auth, audit, policy, negotiation) read it instead of parsing
//! the body again. It is cheap to clone.

use std::borrow::Cow;
use std::sync::Arc;

use http::HeaderMap;
use serde_json::{Map, Value};
use smol_str::SmolStr;

use crate::error::Rejection;
use crate::headers::{self, HeaderValueError, decode_value_cow};
use crate::jsonrpc::JsonRpcId;

/// The first protocol revision of the modern (per-request `_meta`) era.
pub const MODERN_PROTOCOL_VERSION: &str = "2026-07-28";
/// The last protocol revision of the legacy (`initialize`) era.
pub const LEGACY_PROTOCOL_VERSION: &str = "2025-11-25";

/// `_meta` key carrying the protocol version of a modern request.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key carrying the client capabilities of a modern request.
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key carrying the (self-asserted) client info of a modern request.
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";

/// Which protocol era a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Era {
    /// 2025-11-25 and earlier: `initialize` handshake, capabilities remembered per `Mcp-Session-Id`.
    Legacy,
    /// 2026-07-28 and later: stateless, capabilities in every request's `_meta`.
    Modern,
}

/// What kind of JSON-RPC message the client posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageKind {
    /// A request (has `method` and `id`).
    Request,
    /// A notification (has `method`, no `id`).
    Notification,
    /// A response to a server-initiated request (legacy era).
    Response,
}

/// What a client declared about itself: capabilities and (unverified) client info.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientDeclaration {
    capabilities: Value,
    client_info: Option<UnverifiedClientInfo>,
}

impl ClientDeclaration {
    /// A declaration from a capabilities object and optional `clientInfo`.
    pub fn new(capabilities: Value, client_info: Option<&Value>) -> Self {
        Self { capabilities, client_info: client_info.map(UnverifiedClientInfo::from_value) }
    }

    /// The `ClientCapabilities` object (`Value::Null` when none was sent).
    pub fn capabilities(&self) -> &Value {
        &self.capabilities
    }

    /// The declared extensions: id → settings.
    pub fn extensions(&self) -> Option<&Map<String, Value>> {
        self.capabilities.get("extensions").and_then(Value::as_object)
    }

    /// The client's self-asserted identity. Never base a security decision on it.
    pub fn client_info(&self) -> Option<&UnverifiedClientInfo> {
        self.client_info.as_ref()
    }
}

/// `clientInfo` as the client asserted it. The name says it: log it, never trust it.
#[derive(Debug, Clone, PartialEq)]
pub struct UnverifiedClientInfo {
    name: Option<String>,
    version: Option<String>,
    raw: Value,
}

impl UnverifiedClientInfo {
    fn from_value(value: &Value) -> Self {
        let text = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_owned);
        Self { name: text("name"), version: text("version"), raw: value.clone() }
    }

    /// The claimed implementation name.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The claimed implementation version.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// The whole object as sent.
    pub fn raw(&self) -> &Value {
        &self.raw
    }
}

/// W3C trace context carried in `_meta` (SEP-414).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceContext {
    /// `traceparent`.
    pub traceparent: Option<String>,
    /// `tracestate`.
    pub tracestate: Option<String>,
    /// `baggage`.
    pub baggage: Option<String>,
}

#[derive(Debug)]
struct Inner {
    kind: MessageKind,
    id: Option<JsonRpcId>,
    /// The method: one of [`KNOWN_METHODS`] without a copy, any other as sent.
    method: Option<Cow<'static, str>>,
    // short names (most tool names, every protocol version) are held inline: no allocation
    name: Option<SmolStr>,
    uri: Option<SmolStr>,
    protocol_version: Option<SmolStr>,
    era: Era,
    client: Option<Arc<ClientDeclaration>>,
    trace: TraceContext,
    session_id: Option<String>,
    message: Value,
}

/// One parsed MCP message from a client.
#[derive(Debug, Clone)]
pub struct McpRequest(Arc<Inner>);

impl McpRequest {
    /// Parses and checks a posted message.
    ///
    /// `legacy_client` is consulted for legacy messages other than `initialize`: it maps the
    /// `Mcp-Session-Id` to what the client declared at `initialize`.
    pub fn parse(
        headers: &HeaderMap,
        body: &[u8],
        legacy_client: impl FnOnce(&str) -> Option<Arc<ClientDeclaration>>,
    ) -> Result<Self, Rejection> {
        let message: Value = serde_json::from_slice(body).map_err(|e| Rejection::Parse { detail: parse_detail(&e) })?;
        let invalid = |detail: &'static str, id: Option<JsonRpcId>| Rejection::InvalidMessage { detail, id };
        let obj = match &message {
            Value::Object(obj) => obj,
            Value::Array(_) => return Err(invalid("JSON-RPC batches are not supported by MCP", None)),
            _ => return Err(invalid("a JSON-RPC message must be an object", None)),
        };
        // the members looked at, in one pass over each object (a map's keys are unique, so this
        // finds what lookups by key would, without hashing every key looked up)
        let mut top = TopMembers::default();
        for (key, value) in obj {
            match key.as_str() {
                "id" => top.id = Some(value),
                "jsonrpc" => top.jsonrpc = Some(value),
                "method" => top.method = Some(value),
                "params" => top.params = Some(value),
                "result" | "error" => top.answer = true,
                _ => {}
            }
        }
        let id = match top.id {
            None => None,
            Some(v) => {
                Some(JsonRpcId::from_value(v).ok_or_else(|| invalid("the id must be a string or an integer", None))?)
            }
        };
        if top.jsonrpc.and_then(Value::as_str) != Some("2.0") {
            return Err(invalid("\"jsonrpc\" must be \"2.0\"", id));
        }
        let method = match top.method {
            None => None,
            Some(Value::String(m)) => Some(intern_method(m)),
            Some(_) => return Err(invalid("\"method\" must be a string", id)),
        };
        let kind = match (&method, &id) {
            (Some(_), Some(_)) => MessageKind::Request,
            (Some(_), None) => MessageKind::Notification,
            (None, Some(_)) if top.answer => MessageKind::Response,
            _ => return Err(invalid("a message needs a method, or an id with a result or error", id)),
        };
        let mut p = ParamMembers::default();
        match top.params {
            None => {}
            Some(Value::Object(params)) => {
                for (key, value) in params {
                    match key.as_str() {
                        "name" => p.name = value.as_str(),
                        "uri" => p.uri = value.as_str(),
                        "_meta" => p.meta = Some(value),
                        "protocolVersion" => p.protocol_version = value.as_str(),
                        "capabilities" => p.capabilities = Some(value),
                        "clientInfo" => p.client_info = Some(value),
                        _ => {}
                    }
                }
            }
            Some(_) => return Err(invalid("\"params\" must be an object", id)),
        }
        let has_params = top.params.is_some();
        let mut m = MetaMembers::default();
        let has_meta = match p.meta {
            None => false,
            Some(Value::Object(meta)) => {
                for (key, value) in meta {
                    match key.as_str() {
                        META_PROTOCOL_VERSION => m.protocol_version = value.as_str(),
                        META_CLIENT_CAPABILITIES => m.capabilities = Some(value),
                        META_CLIENT_INFO => m.client_info = Some(value),
                        "traceparent" => m.traceparent = value.as_str(),
                        "tracestate" => m.tracestate = value.as_str(),
                        "baggage" => m.baggage = value.as_str(),
                        _ => {}
                    }
                }
                true
            }
            Some(_) => return Err(invalid("\"params._meta\" must be an object", id)),
        };
        let (name, uri) = (p.name, p.uri);
        let meta_version = m.protocol_version;
        let h = McpHeaders::of(headers);

        let header_version = h.version.decode(&headers::MCP_PROTOCOL_VERSION, id.as_ref())?;
        let method_str = method.as_deref().unwrap_or("");
        let era = if method_str == "initialize" {
            Era::Legacy
        } else if let Some(v) = meta_version {
            if is_modern_version(v) { Era::Modern } else { Era::Legacy }
        } else if method_str == "server/discover" || header_version.as_deref().is_some_and(is_modern_version) {
            Era::Modern
        } else {
            Era::Legacy
        };

        let protocol_version = match era {
            Era::Modern => meta_version.map(SmolStr::new).or_else(|| header_version.as_deref().map(SmolStr::new)),
            Era::Legacy if method_str == "initialize" => p.protocol_version.map(SmolStr::new),
            Era::Legacy => header_version.as_deref().map(SmolStr::new),
        };

        let mismatch = |detail: String| Rejection::HeaderMismatch { detail, id: id.clone() };

        // SEP-2243: headers that are present must agree with the body in every era; in the modern
        // era the standard headers are also required.
        if era == Era::Modern && kind != MessageKind::Response {
            match (&header_version, meta_version) {
                (None, _) => return Err(mismatch("the MCP-Protocol-Version header is required".into())),
                (Some(_), None) => {
                    // a required _meta field is missing: Invalid params, as the spec says
                    return Err(Rejection::MissingMeta { field: META_PROTOCOL_VERSION, id: id.clone() });
                }
                (Some(h), Some(b)) if h != b => {
                    return Err(mismatch(format!("MCP-Protocol-Version header {h:?} does not match the body {b:?}")));
                }
                _ => {}
            }
        }
        let header_method = h.method.decode(&headers::MCP_METHOD, id.as_ref())?;
        match (&header_method, &method) {
            (Some(h), Some(m)) if h.as_ref() != m.as_ref() => {
                return Err(mismatch(format!("Mcp-Method header {h:?} does not match the body method {m:?}")));
            }
            (Some(_), None) => return Err(mismatch("Mcp-Method is set on a message that has no method".into())),
            (None, Some(_)) if era == Era::Modern && kind == MessageKind::Request => {
                return Err(mismatch("the Mcp-Method header is required".into()));
            }
            _ => {}
        }
        let body_name = match method_str {
            "tools/call" | "prompts/get" => Some(("params.name", name)),
            "resources/read" => Some(("params.uri", uri)),
            _ => None,
        };
        let header_name = h.name.decode(&headers::MCP_NAME, id.as_ref())?;
        match (&header_name, body_name) {
            (Some(h), Some((field, b))) if Some(h.as_ref()) != b => {
                return Err(mismatch(match b {
                    Some(b) => format!("Mcp-Name header {h:?} does not match {field} {b:?}"),
                    None => format!("Mcp-Name header {h:?} is set but the body has no {field}"),
                }));
            }
            (None, Some(_)) if era == Era::Modern && kind == MessageKind::Request => {
                return Err(mismatch(format!("the Mcp-Name header is required for {method_str}")));
            }
            _ => {}
        }
        if let Some((header_name, e)) = h.bad_param {
            return Err(mismatch(format!("{} header is malformed: {e}", header_name.as_str())));
        }

        let session_id = h
            .session_id
            .and_then(|v| v.to_str().ok())
            .filter(|s| !s.is_empty() && s.len() <= MAX_SESSION_ID_LEN)
            .map(str::to_owned);
        let client = match era {
            Era::Modern => has_meta.then(|| {
                Arc::new(ClientDeclaration::new(m.capabilities.cloned().unwrap_or(Value::Null), m.client_info))
            }),
            Era::Legacy if method_str == "initialize" => has_params.then(|| {
                Arc::new(ClientDeclaration::new(p.capabilities.cloned().unwrap_or(Value::Null), p.client_info))
            }),
            Era::Legacy => session_id.as_deref().and_then(legacy_client),
        };
        let trace = TraceContext {
            traceparent: m.traceparent.map(str::to_owned),
            tracestate: m.tracestate.map(str::to_owned),
            baggage: m.baggage.map(str::to_owned),
        };
        let (name, uri) = (name.map(SmolStr::new), uri.map(SmolStr::new));
        Ok(Self(Arc::new(Inner {
            kind,
            id,
            method,
            name,
            uri,
            protocol_version,
            era,
            client,
            trace,
            session_id,
            message,
        })))
    }

    /// The message kind.
    pub fn kind(&self) -> MessageKind {
        self.0.kind
    }

    /// The JSON-RPC id (requests and responses).
    pub fn id(&self) -> Option<&JsonRpcId> {
        self.0.id.as_ref()
    }

    /// The method (requests and notifications).
    pub fn method(&self) -> Option<&str> {
        self.0.method.as_deref()
    }

    /// `params.name` (the tool or prompt name), when present.
    pub fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }

    /// `params.uri` (the resource), when present.
    pub fn uri(&self) -> Option<&str> {
        self.0.uri.as_deref()
    }

    /// The target a `tools/call`, `prompts/get` or `resources/read` acts on (what `Mcp-Name` carries).
    pub fn target(&self) -> Option<&str> {
        match self.method()? {
            "tools/call" | "prompts/get" => self.name(),
            "resources/read" => self.uri(),
            _ => None,
        }
    }

    /// The protocol version this message was sent under, when known.
    pub fn protocol_version(&self) -> Option<&str> {
        self.0.protocol_version.as_deref()
    }

    /// The protocol era.
    pub fn era(&self) -> Era {
        self.0.era
    }

    /// What the client declared (modern: this request's `_meta`; legacy: its `initialize`).
    pub fn client(&self) -> Option<&ClientDeclaration> {
        self.0.client.as_deref()
    }

    /// The client's capabilities object, if known.
    pub fn client_capabilities(&self) -> Option<&Value> {
        self.client().map(ClientDeclaration::capabilities)
    }

    /// Trace context keys from `_meta`.
    pub fn trace(&self) -> &TraceContext {
        &self.0.trace
    }

    /// The legacy `Mcp-Session-Id` the client sent, if any.
    pub fn session_id(&self) -> Option<&str> {
        self.0.session_id.as_deref()
    }

    /// `params`, when present.
    pub fn params(&self) -> Option<&Map<String, Value>> {
        self.0.message.get("params").and_then(Value::as_object)
    }

    /// `params.arguments` of a `tools/call` or `prompts/get`.
    pub fn arguments(&self) -> Option<&Map<String, Value>> {
        self.params().and_then(|p| p.get("arguments")).and_then(Value::as_object)
    }

    /// The whole parsed message.
    pub fn message(&self) -> &Value {
        &self.0.message
    }

    pub(crate) fn client_arc(&self) -> Option<Arc<ClientDeclaration>> {
        self.0.client.clone()
    }
}

/// The methods of the MCP revisions this pack knows, kept without a copy when a message names
/// one (most do): no allocation for the method of a parsed message.
const KNOWN_METHODS: &[&str] = &[
    "tools/call",
    "tools/list",
    "resources/read",
    "resources/list",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/get",
    "prompts/list",
    "completion/complete",
    "logging/setLevel",
    "initialize",
    "ping",
    "server/discover",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
];

/// `method` as a static string when it is a known one, else a copy.
fn intern_method(method: &str) -> Cow<'static, str> {
    match KNOWN_METHODS.iter().find(|k| **k == method) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(method.to_owned()),
    }
}

/// Upper bound on a session id we remember (the value is client-controlled).
pub(crate) const MAX_SESSION_ID_LEN: usize = 256;

/// Whether a `YYYY-MM-DD` protocol version belongs to the modern era.
pub fn is_modern_version(version: &str) -> bool {
    let b = version.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && version >= MODERN_PROTOCOL_VERSION
}

/// The top-level members of a message that inspection reads.
#[derive(Default)]
struct TopMembers<'a> {
    id: Option<&'a Value>,
    jsonrpc: Option<&'a Value>,
    method: Option<&'a Value>,
    params: Option<&'a Value>,
    /// A `result` or an `error` member is present.
    answer: bool,
}

/// The members of `params` that inspection reads (strings only where only strings count).
#[derive(Default)]
struct ParamMembers<'a> {
    name: Option<&'a str>,
    uri: Option<&'a str>,
    meta: Option<&'a Value>,
    protocol_version: Option<&'a str>,
    capabilities: Option<&'a Value>,
    client_info: Option<&'a Value>,
}

/// The members of `params._meta` that inspection reads.
#[derive(Default)]
struct MetaMembers<'a> {
    protocol_version: Option<&'a str>,
    capabilities: Option<&'a Value>,
    client_info: Option<&'a Value>,
    traceparent: Option<&'a str>,
    tracestate: Option<&'a str>,
    baggage: Option<&'a str>,
}

/// A header that may appear at most once, as found.
#[derive(Default, Clone, Copy)]
enum Single<'a> {
    #[default]
    Absent,
    Once(&'a http::HeaderValue),
    Repeated,
}

impl<'a> Single<'a> {
    fn see(&mut self, value: &'a http::HeaderValue) {
        *self = match self {
            Self::Absent => Self::Once(value),
            _ => Self::Repeated,
        };
    }

    /// The value, decoding the SEP-2243 sentinel form; a repeated or malformed header is refused.
    fn decode(self, name: &http::HeaderName, id: Option<&JsonRpcId>) -> Result<Option<Cow<'a, str>>, Rejection> {
        let mismatch = |detail: String| Rejection::HeaderMismatch { detail, id: id.cloned() };
        match self {
            Self::Absent => Ok(None),
            Self::Repeated => Err(mismatch(format!("the {} header appears more than once", name.as_str()))),
            Self::Once(value) => decode_value_cow(value.as_bytes())
                .map(Some)
                .map_err(|e| mismatch(format!("the {} header is malformed: {e}", name.as_str()))),
        }
    }
}

/// The MCP headers of a request, found in one pass over the header map.
#[derive(Default)]
struct McpHeaders<'a> {
    version: Single<'a>,
    method: Single<'a>,
    name: Single<'a>,
    /// The first `Mcp-Session-Id`.
    session_id: Option<&'a http::HeaderValue>,
    /// The first `Mcp-Param-*` header that does not decode.
    bad_param: Option<(&'a http::HeaderName, HeaderValueError)>,
}

impl<'a> McpHeaders<'a> {
    fn of(map: &'a HeaderMap) -> Self {
        let mut found = Self::default();
        for (name, value) in map {
            let text = name.as_str();
            if !text.starts_with("mcp-") {
                continue;
            }
            match text {
                "mcp-protocol-version" => found.version.see(value),
                "mcp-method" => found.method.see(value),
                "mcp-name" => found.name.see(value),
                "mcp-session-id" => {
                    found.session_id.get_or_insert(value);
                }
                _ => {
                    if text.starts_with(headers::MCP_PARAM_PREFIX)
                        && found.bad_param.is_none()
                        && let Err(e) = decode_value_cow(value.as_bytes())
                    {
                        found.bad_param = Some((name, e));
                    }
                }
            }
        }
        found
    }
}

/// A parser message that says where, not what (never echo body content).
fn parse_detail(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of input",
        serde_json::error::Category::Syntax => "invalid JSON syntax",
        serde_json::error::Category::Data => "invalid JSON data",
        serde_json::error::Category::Io => "read error",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use serde_json::json;

    use super::*;
    use crate::jsonrpc::codes;

    fn modern_body(method: &str, params: Value) -> Vec<u8> {
        let mut params = params;
        params["_meta"] = json!({
            META_PROTOCOL_VERSION: "2026-07-28",
            META_CLIENT_CAPABILITIES: {"extensions": {"com.acme/x": {}}},
            META_CLIENT_INFO: {"name": "cli", "version": "1"},
            "traceparent": "00-abc-def-01",
        });
        serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})).expect("json")
    }

    fn modern_headers(method: &str, name: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(headers::MCP_PROTOCOL_VERSION, HeaderValue::from_static("2026-07-28"));
        h.insert(headers::MCP_METHOD, HeaderValue::from_str(method).expect("hv"));
        if let Some(n) = name {
            h.insert(headers::MCP_NAME, HeaderValue::from_str(&crate::headers::encode_value(n)).expect("hv"));
        }
        h
    }

    fn parse(h: &HeaderMap, body: &[u8]) -> Result<McpRequest, Rejection> {
        McpRequest::parse(h, body, |_| None)
    }

    fn code(r: Result<McpRequest, Rejection>) -> i64 {
        r.expect_err("must be rejected").to_jsonrpc().code()
    }

    #[test]
    fn modern_tools_call_is_parsed() {
        let body = modern_body("tools/call", json!({"name": "echo", "arguments": {"text": "hi"}}));
        let req = parse(&modern_headers("tools/call", Some("echo")), &body).expect("valid");
        assert_eq!(req.era(), Era::Modern);
        assert_eq!(req.kind(), MessageKind::Request);
        assert_eq!(req.id(), Some(&JsonRpcId::Number(1)));
        assert_eq!(req.method(), Some("tools/call"));
        assert_eq!(req.target(), Some("echo"));
        assert_eq!(req.protocol_version(), Some("2026-07-28"));
        assert_eq!(req.arguments().and_then(|a| a.get("text")), Some(&json!("hi")));
        let client = req.client().expect("declared");
        assert!(client.extensions().expect("ext").contains_key("com.acme/x"));
        assert_eq!(client.client_info().and_then(|c| c.name()), Some("cli"));
        assert_eq!(req.trace().traceparent.as_deref(), Some("00-abc-def-01"));
    }

    #[test]
    fn sentinel_encoded_name_matches() {
        let body = modern_body("tools/call", json!({"name": "héllo"}));
        assert!(parse(&modern_headers("tools/call", Some("héllo")), &body).is_ok());
        let body = modern_body("resources/read", json!({"uri": "file:///ünï"}));
        assert!(parse(&modern_headers("resources/read", Some("file:///ünï")), &body).is_ok());
    }

    #[test]
    fn modern_header_rules() {
        let body = modern_body("tools/call", json!({"name": "echo"}));
        // missing version header
        let mut h = modern_headers("tools/call", Some("echo"));
        h.remove(headers::MCP_PROTOCOL_VERSION);
        assert_eq!(code(parse(&h, &body)), codes::HEADER_MISMATCH);
        // version mismatch
        let mut h = modern_headers("tools/call", Some("echo"));
        h.insert(headers::MCP_PROTOCOL_VERSION, HeaderValue::from_static("2026-08-01"));
        assert_eq!(code(parse(&h, &body)), codes::HEADER_MISMATCH);
        // missing method
        let mut h = modern_headers("tools/call", Some("echo"));
        h.remove(headers::MCP_METHOD);
        assert_eq!(code(parse(&h, &body)), codes::HEADER_MISMATCH);
        // method mismatch
        assert_eq!(code(parse(&modern_headers("tools/list", Some("echo")), &body)), codes::HEADER_MISMATCH);
        // missing name
        assert_eq!(code(parse(&modern_headers("tools/call", None), &body)), codes::HEADER_MISMATCH);
        // name mismatch
        assert_eq!(code(parse(&modern_headers("tools/call", Some("other")), &body)), codes::HEADER_MISMATCH);
        // duplicate header
        let mut h = modern_headers("tools/call", Some("echo"));
        h.append(headers::MCP_METHOD, HeaderValue::from_static("tools/call"));
        assert_eq!(code(parse(&h, &body)), codes::HEADER_MISMATCH);
        // malformed sentinel
        let mut h = modern_headers("tools/call", None);
        h.insert(headers::MCP_NAME, HeaderValue::from_static("=?base64?***?="));
        assert_eq!(code(parse(&h, &body)), codes::HEADER_MISMATCH);
        // malformed Mcp-Param
        let mut h = modern_headers("tools/call", Some("echo"));
        h.insert("mcp-param-region", HeaderValue::from_bytes(b"\xffbad").expect("hv"));
        assert_eq!(code(parse(&h, &body)), codes::HEADER_MISMATCH);
        // header says modern but the body has no version in _meta: a missing required field
        let plain = serde_json::to_vec(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"})).expect("json");
        let err = parse(&modern_headers("tools/list", None), &plain).expect_err("missing _meta");
        assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
        assert_eq!(err.to_jsonrpc().code(), codes::INVALID_PARAMS);
        assert!(err.to_string().contains(META_PROTOCOL_VERSION), "{err}");
        // the rejection carries the request id
        let err = parse(&modern_headers("tools/list", Some("echo")), &body).expect_err("mismatch");
        assert_eq!(err.to_jsonrpc().to_value()["id"], json!(1));
    }

    #[test]
    fn legacy_initialize_and_session_lookup() {
        let body = serde_json::to_vec(&json!({"jsonrpc":"2.0","id":"a","method":"initialize","params":{
            "protocolVersion":"2025-11-25","capabilities":{"extensions":{"com.acme/x":{}}},"clientInfo":{"name":"old"}}}))
        .expect("json");
        let req = parse(&HeaderMap::new(), &body).expect("valid");
        assert_eq!(req.era(), Era::Legacy);
        assert_eq!(req.protocol_version(), Some("2025-11-25"));
        assert_eq!(req.client().and_then(|c| c.client_info()).and_then(|c| c.name()), Some("old"));

        let decl = req.client_arc().expect("declared");
        let mut h = HeaderMap::new();
        h.insert(headers::MCP_SESSION_ID, HeaderValue::from_static("s1"));
        h.insert(headers::MCP_PROTOCOL_VERSION, HeaderValue::from_static("2025-11-25"));
        let body = br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
        let req = McpRequest::parse(&h, body, |sid| (sid == "s1").then(|| decl.clone())).expect("valid");
        assert_eq!(req.era(), Era::Legacy);
        assert_eq!(req.session_id(), Some("s1"));
        assert!(req.client().is_some());
        // legacy requests need no Mcp-Method, but a present one must agree
        h.insert(headers::MCP_METHOD, HeaderValue::from_static("tools/call"));
        assert_eq!(code(parse(&h, body)), codes::HEADER_MISMATCH);
    }

    #[test]
    fn malformed_messages() {
        let h = HeaderMap::new();
        assert_eq!(code(parse(&h, b"{not json")), codes::PARSE_ERROR);
        assert_eq!(code(parse(&h, b"")), codes::PARSE_ERROR);
        assert_eq!(code(parse(&h, b"[]")), codes::INVALID_REQUEST);
        assert_eq!(code(parse(&h, b"42")), codes::INVALID_REQUEST);
        assert_eq!(code(parse(&h, br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#)), codes::INVALID_REQUEST);
        assert_eq!(code(parse(&h, br#"{"jsonrpc":"2.0","id":null,"method":"x"}"#)), codes::INVALID_REQUEST);
        assert_eq!(code(parse(&h, br#"{"jsonrpc":"2.0","id":1,"method":7}"#)), codes::INVALID_REQUEST);
        assert_eq!(code(parse(&h, br#"{"jsonrpc":"2.0","id":1}"#)), codes::INVALID_REQUEST);
        assert_eq!(code(parse(&h, br#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}"#)), codes::INVALID_REQUEST);
        assert_eq!(
            code(parse(&h, br#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":1}}"#)),
            codes::INVALID_REQUEST
        );
        // the parse error does not echo body content
        let err = parse(&h, b"{\"secret-token-abc\" 1}").expect_err("bad");
        assert!(!err.to_string().contains("secret-token-abc"));
    }

    #[test]
    fn notifications_and_responses() {
        let h = HeaderMap::new();
        let n = parse(&h, br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).expect("valid");
        assert_eq!(n.kind(), MessageKind::Notification);
        let r = parse(&h, br#"{"jsonrpc":"2.0","id":5,"result":{}}"#).expect("valid");
        assert_eq!(r.kind(), MessageKind::Response);
    }

    #[test]
    fn known_methods_are_not_copied_and_others_are_kept_as_sent() {
        let h = HeaderMap::new();
        let known = parse(&h, br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).expect("valid");
        assert!(matches!(known.0.method, Some(Cow::Borrowed("tools/list"))));
        let other = parse(&h, br#"{"jsonrpc":"2.0","id":1,"method":"x/tools/list"}"#).expect("valid");
        assert!(matches!(other.0.method, Some(Cow::Owned(ref m)) if m == "x/tools/list"));
        assert_eq!((known.method(), other.method()), (Some("tools/list"), Some("x/tools/list")));
    }

    #[test]
    fn version_classification() {
        assert!(is_modern_version("2026-07-28"));
        assert!(is_modern_version("2027-01-01"));
        assert!(!is_modern_version("2025-11-25"));
        assert!(!is_modern_version("2026-7-28"));
        assert!(!is_modern_version("9999-99-9x"));
    }
}
