use tower_layer::Layer;

use super::service::Negotiate;
use crate::error::ConfigError;
use crate::extensions::ExtensionSet;
use crate::inspect::DEFAULT_MAX_BODY_BYTES;

/// Advertises an [`ExtensionSet`] and enforces its required extensions. See the [module
/// docs](crate::negotiate).
#[derive(Debug, Clone)]
#[must_use]
pub struct NegotiateLayer {
    pub(crate) extensions: ExtensionSet,
    pub(crate) max_rewrite_bytes: usize,
}

impl NegotiateLayer {
    /// Advertises `extensions`. A response larger than 4 MiB (JSON body or one SSE event) is passed
    /// through without advertising, with a warning.
    pub fn new(extensions: ExtensionSet) -> Self {
        Self { extensions, max_rewrite_bytes: DEFAULT_MAX_BODY_BYTES }
    }

    /// Sets the largest response (JSON body, or one SSE event) that is rewritten.
    pub fn max_rewrite_bytes(mut self, limit: usize) -> Result<Self, ConfigError> {
        if limit == 0 {
            return Err(ConfigError::InvalidLimit { what: "max_rewrite_bytes", reason: "must be at least 1 byte" });
        }
        self.max_rewrite_bytes = limit;
        Ok(self)
    }

    /// The advertised set.
    pub fn extensions(&self) -> &ExtensionSet {
        &self.extensions
    }
}

impl<S> Layer<S> for NegotiateLayer {
    type Service = Negotiate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Negotiate { inner, layer: self.clone() }
    }
}
