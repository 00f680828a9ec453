//! Why a layer refused a request, as seen from outside that layer.

use std::borrow::Cow;

/// Which layer refused a request and why.
///
/// Every refusing layer of the pack puts one into the *response* extensions, next to its own typed
/// error, so that an outer layer (audit) can record the refusal without depending on that layer.
/// The reason is the layer's error message: it never contains tokens, proofs or secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    layer: Cow<'static, str>,
    reason: String,
    jsonrpc_code: Option<i64>,
}

impl Denial {
    /// A refusal by `layer` (for example `"sso"`) for `reason`.
    pub fn new(layer: impl Into<Cow<'static, str>>, reason: impl Into<String>) -> Self {
        Self { layer: layer.into(), reason: reason.into(), jsonrpc_code: None }
    }

    /// The JSON-RPC error code the refusal carries.
    #[must_use]
    pub fn with_jsonrpc_code(mut self, code: i64) -> Self {
        self.jsonrpc_code = Some(code);
        self
    }

    /// The refusing layer.
    pub fn layer(&self) -> &str {
        &self.layer
    }

    /// Why, in words.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The JSON-RPC error code of the refusal, when it has one.
    pub fn jsonrpc_code(&self) -> Option<i64> {
        self.jsonrpc_code
    }
}
