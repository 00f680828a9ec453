//! JSON-RPC 2.0 identifiers, error codes and error bodies.
//!
//! Every rejection a layer of this pack makes over HTTP carries a JSON-RPC error body so MCP clients
//! can surface it; the HTTP status and (for auth) `WWW-Authenticate` carry the machine-readable part.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Map, Value};

/// A JSON-RPC request id: MCP allows strings and integers (never `null`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JsonRpcId {
    /// A numeric id. MCP ids are integers; fractional ids are rejected when parsing.
    Number(i64),
    /// A string id.
    String(String),
}

impl JsonRpcId {
    /// Reads an id from a JSON value; `None` for anything that is not a string or an integer.
    pub fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::String(s) => Some(Self::String(s.clone())),
            Value::Number(n) => n.as_i64().map(Self::Number),
            _ => None,
        }
    }

    /// The id as a JSON value.
    pub fn to_value(&self) -> Value {
        match self {
            Self::Number(n) => Value::from(*n),
            Self::String(s) => Value::String(s.clone()),
        }
    }

    /// Whether `value` (an `id` member of a JSON-RPC message) is this id.
    pub fn matches(&self, value: &Value) -> bool {
        match (self, value) {
            (Self::Number(a), Value::Number(b)) => b.as_i64() == Some(*a),
            (Self::String(a), Value::String(b)) => a == b,
            _ => false,
        }
    }
}

impl std::fmt::Display for JsonRpcId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::String(s) => write!(f, "{s:?}"),
        }
    }
}

/// JSON-RPC error codes used by this pack.
///
/// Codes in `-32020..=-32099` belong to the MCP specification; this pack only emits the ones the
/// specification defines and never invents codes in that range.
pub mod codes {
    /// Invalid JSON was received.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON sent is not a valid JSON-RPC request.
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method does not exist.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Invalid method parameters (also: a required `_meta` field is missing).
    pub const INVALID_PARAMS: i64 = -32602;
    /// Internal JSON-RPC error.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// MCP `HeaderMismatch`: a required standard header is missing, malformed or disagrees with the body.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// MCP `MissingRequiredClientCapability`.
    pub const MISSING_REQUIRED_CLIENT_CAPABILITY: i64 = -32021;
    /// MCP `UnsupportedProtocolVersion`.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
}

/// A JSON-RPC error response body.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct JsonRpcError {
    id: Option<JsonRpcId>,
    code: i64,
    message: String,
    data: Option<Value>,
}

impl JsonRpcError {
    /// An error with `code` and a human-readable `message`.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self { id: None, code, message: message.into(), data: None }
    }

    /// Sets the id of the request this answers (`null` when unknown).
    pub fn with_id(mut self, id: Option<JsonRpcId>) -> Self {
        self.id = id;
        self
    }

    /// Sets the `data` member.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// The error code.
    pub fn code(&self) -> i64 {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The `data` member, if any.
    pub fn data(&self) -> Option<&Value> {
        self.data.as_ref()
    }

    /// The JSON value of the whole response object.
    pub fn to_value(&self) -> Value {
        let mut error = Map::new();
        error.insert("code".into(), Value::from(self.code));
        error.insert("message".into(), Value::String(self.message.clone()));
        if let Some(data) = &self.data {
            error.insert("data".into(), data.clone());
        }
        let mut obj = Map::new();
        obj.insert("jsonrpc".into(), Value::from("2.0"));
        obj.insert("id".into(), self.id.as_ref().map_or(Value::Null, JsonRpcId::to_value));
        obj.insert("error".into(), Value::Object(error));
        Value::Object(obj)
    }

    /// The serialized response body.
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(self.to_value().to_string())
    }

    /// An HTTP response with `status` and this error as an `application/json` body.
    pub fn into_response<B: From<Bytes>>(self, status: StatusCode) -> Response<B> {
        let mut response = Response::new(B::from(self.to_bytes()));
        *response.status_mut() = status;
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

impl std::fmt::Display for JsonRpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JSON-RPC error {}: {}", self.code, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_match() {
        let n = JsonRpcId::from_value(&Value::from(7)).expect("number id");
        assert!(n.matches(&Value::from(7)));
        assert!(!n.matches(&Value::from("7")));
        let s = JsonRpcId::from_value(&Value::from("a")).expect("string id");
        assert!(s.matches(&Value::from("a")));
        assert_eq!(JsonRpcId::from_value(&Value::Null), None);
        assert_eq!(JsonRpcId::from_value(&serde_json::json!(1.5)), None);
        assert_eq!(JsonRpcId::from_value(&serde_json::json!({})), None);
    }

    #[test]
    fn error_body_shape() {
        let err = JsonRpcError::new(codes::HEADER_MISMATCH, "bad")
            .with_id(Some(JsonRpcId::Number(3)))
            .with_data(serde_json::json!({"x": 1}));
        let v: Value = serde_json::from_slice(&err.to_bytes()).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"jsonrpc":"2.0","id":3,"error":{"code":-32020,"message":"bad","data":{"x":1}}})
        );
        let resp: Response<Bytes> = JsonRpcError::new(codes::PARSE_ERROR, "p").into_response(StatusCode::BAD_REQUEST);
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let v: Value = serde_json::from_slice(resp.body()).expect("json");
        assert_eq!(v["id"], Value::Null);
    }
}
