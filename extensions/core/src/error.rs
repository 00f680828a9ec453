//! Error types: [`ConfigError`] for a bad setup, [`Rejection`] for a refused request.

use http::StatusCode;
use serde_json::Value;

use crate::jsonrpc::{JsonRpcError, JsonRpcId, codes};

/// A layer was configured wrongly. Returned by builders; never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// An extension id does not follow the SEP-2133 grammar.
    #[error("invalid extension id {id:?}: {reason}")]
    InvalidExtensionId {
        /// The offending id.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The vendor prefix is not valid or is reserved.
    #[error("invalid vendor prefix {prefix:?}: {reason}")]
    InvalidVendorPrefix {
        /// The offending prefix.
        prefix: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Extension settings must be a JSON object.
    #[error("settings for extension {id:?} must be a JSON object ({{}} means 'supported, no settings')")]
    SettingsNotObject {
        /// The extension id.
        id: String,
    },
    /// An extension was marked required but is not offered.
    #[error("extension {id:?} is marked required but is not offered; add it first")]
    RequiredNotOffered {
        /// The extension id.
        id: String,
    },
    /// A URI setting is not acceptable.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidUri {
        /// Which setting.
        what: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A numeric limit is out of range.
    #[error("invalid {what}: {reason}")]
    InvalidLimit {
        /// Which setting.
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Why a request was refused before reaching the inner service.
///
/// The rejecting layer turns it into an HTTP response with a JSON-RPC error body, and also puts a
/// clone into the *response* extensions so that outer layers (audit) can record the typed reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The body is not valid JSON.
    #[error("parse error: {detail}")]
    Parse {
        /// Parser message (no body content).
        detail: String,
    },
    /// The JSON is not a valid JSON-RPC message.
    #[error("invalid JSON-RPC message: {detail}")]
    InvalidMessage {
        /// What is wrong.
        detail: &'static str,
        /// The request id, when one could be read.
        id: Option<JsonRpcId>,
    },
    /// The body is larger than the configured limit.
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body could not be read.
    #[error("failed to read the request body")]
    BodyRead,
    /// The body did not arrive in time (the server's body read timeout, signalled by a
    /// [`BodyTimeout`](crate::body::BodyTimeout) error from the body): `408`.
    #[error("the request body was not received in time")]
    BodyTimeout,
    /// A standard MCP header is missing, malformed or disagrees with the body (`-32020`).
    #[error("header mismatch: {detail}")]
    HeaderMismatch {
        /// Which header and how.
        detail: String,
        /// The request id.
        id: Option<JsonRpcId>,
    },
    /// A modern request lacks a required `_meta` field (`-32602`).
    #[error("invalid params: request _meta is missing the required field {field}")]
    MissingMeta {
        /// The missing `_meta` key.
        field: &'static str,
        /// The request id.
        id: Option<JsonRpcId>,
    },
    /// The client did not declare an extension this server requires (`-32021`).
    #[error("missing required client capability: {}", .missing.join(", "))]
    MissingRequiredExtension {
        /// The required extension ids the client did not declare.
        missing: Vec<String>,
        /// The request id.
        id: Option<JsonRpcId>,
    },
}

impl Rejection {
    /// The HTTP status for this rejection.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The JSON-RPC error body for this rejection.
    pub fn to_jsonrpc(&self) -> JsonRpcError {
        match self {
            Self::Parse { .. } => JsonRpcError::new(codes::PARSE_ERROR, self.to_string()),
            Self::InvalidMessage { id, .. } => {
                JsonRpcError::new(codes::INVALID_REQUEST, self.to_string()).with_id(id.clone())
            }
            Self::BodyTooLarge { .. } | Self::BodyRead | Self::BodyTimeout => {
                JsonRpcError::new(codes::INVALID_REQUEST, self.to_string())
            }
            Self::MissingMeta { id, .. } => {
                JsonRpcError::new(codes::INVALID_PARAMS, self.to_string()).with_id(id.clone())
            }
            Self::HeaderMismatch { id, .. } => {
                JsonRpcError::new(codes::HEADER_MISMATCH, self.to_string()).with_id(id.clone())
            }
            Self::MissingRequiredExtension { missing, id } => {
                let extensions: serde_json::Map<String, Value> =
                    missing.iter().map(|m| (m.clone(), Value::Object(Default::default()))).collect();
                JsonRpcError::new(codes::MISSING_REQUIRED_CLIENT_CAPABILITY, self.to_string())
                    .with_id(id.clone())
                    .with_data(serde_json::json!({ "requiredCapabilities": { "extensions": extensions } }))
            }
        }
    }

    /// The HTTP response for this rejection; the rejection itself is placed in the response extensions.
    pub fn into_response<B: From<bytes::Bytes>>(self) -> http::Response<B> {
        let error = self.to_jsonrpc();
        let denial = crate::Denial::new("core", self.to_string()).with_jsonrpc_code(error.code());
        let mut response = error.into_response(self.status());
        response.extensions_mut().insert(denial);
        response.extensions_mut().insert(self);
        response
    }
}
