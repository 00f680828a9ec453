use std::sync::Arc;

use tower_layer::Layer;

use super::service::Inspect;
use super::sessions::SessionStore;
use crate::error::ConfigError;

/// Default request body limit: 4 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Default number of legacy sessions whose `initialize` declaration is remembered.
pub const DEFAULT_SESSION_CAPACITY: usize = 10_000;

/// Reads each posted JSON-RPC message once (bounded), checks it (JSON, JSON-RPC shape, SEP-2243
/// headers against the body) and stores an [`McpRequest`](crate::McpRequest) in the request's
/// [`RequestContext`](crate::RequestContext) (read it with
/// [`McpRequest::of`](crate::McpRequest::of)) and in the response extensions, for the layers
/// outside. The body is handed on byte for byte.
///
/// Rejections: over-limit body → `413`; malformed JSON → `400` + `-32700`; not JSON-RPC → `400` +
/// `-32600`; header mismatch → `400` + `-32020`. Requests other than `POST` pass through untouched.
#[derive(Debug, Clone)]
#[must_use]
pub struct InspectLayer {
    pub(crate) max_body_bytes: usize,
    pub(crate) sessions: Arc<SessionStore>,
}

impl Default for InspectLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl InspectLayer {
    /// A layer with secure defaults (4 MiB body limit, 10 000 remembered legacy sessions).
    pub fn new() -> Self {
        Self { max_body_bytes: DEFAULT_MAX_BODY_BYTES, sessions: Arc::new(SessionStore::new(DEFAULT_SESSION_CAPACITY)) }
    }

    /// Sets the request body limit in bytes (at least 1).
    pub fn max_body_bytes(mut self, limit: usize) -> Result<Self, ConfigError> {
        if limit == 0 {
            return Err(ConfigError::InvalidLimit { what: "max_body_bytes", reason: "must be at least 1 byte" });
        }
        self.max_body_bytes = limit;
        Ok(self)
    }

    /// Sets how many legacy sessions are remembered (at least 1); the oldest is forgotten first.
    pub fn session_capacity(mut self, capacity: usize) -> Result<Self, ConfigError> {
        if capacity == 0 {
            return Err(ConfigError::InvalidLimit { what: "session_capacity", reason: "must be at least 1" });
        }
        self.sessions = Arc::new(SessionStore::new(capacity));
        Ok(self)
    }
}

impl<S> Layer<S> for InspectLayer {
    type Service = Inspect<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Inspect { inner, layer: self.clone() }
    }
}
