//! Serde configuration for the core layers (`deny_unknown_fields`: a typo is an error, not a
//! silently ignored setting).

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::extensions::{DEFAULT_VENDOR_PREFIX, ExtensionSet, ExtensionSetBuilder};
use crate::inspect::{DEFAULT_MAX_BODY_BYTES, DEFAULT_SESSION_CAPACITY, InspectLayer};

/// Settings of the inspection and negotiation layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct CoreConfig {
    /// Largest accepted request body in bytes (default 4 MiB).
    pub max_body_bytes: usize,
    /// How many legacy sessions' `initialize` declarations are remembered (default 10 000).
    pub legacy_session_capacity: usize,
    /// Vendor prefix of our own extension ids (default `io.github.mcp-enterprise`).
    pub vendor_prefix: String,
    /// Extension ids that modern clients must declare (each must be offered by an enabled layer).
    pub required_extensions: Vec<String>,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            legacy_session_capacity: DEFAULT_SESSION_CAPACITY,
            vendor_prefix: DEFAULT_VENDOR_PREFIX.to_owned(),
            required_extensions: Vec::new(),
        }
    }
}

impl CoreConfig {
    /// The inspection layer these settings describe.
    pub fn inspect_layer(&self) -> Result<InspectLayer, ConfigError> {
        InspectLayer::new().max_body_bytes(self.max_body_bytes)?.session_capacity(self.legacy_session_capacity)
    }

    /// An extension set builder with the configured vendor prefix; layers add their extensions,
    /// then [`finish_extensions`](Self::finish_extensions) marks the required ones.
    pub fn extension_builder(&self) -> Result<ExtensionSetBuilder, ConfigError> {
        ExtensionSet::builder().vendor_prefix(&self.vendor_prefix)
    }

    /// Marks the configured required extensions and builds the set.
    pub fn finish_extensions(&self, mut builder: ExtensionSetBuilder) -> Result<ExtensionSet, ConfigError> {
        for id in &self.required_extensions {
            builder = builder.require(id)?;
        }
        Ok(builder.build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<CoreConfig>(r#"{"max_body_byte": 10}"#).expect_err("typo");
        assert!(err.to_string().contains("unknown field `max_body_byte`"), "{err}");
        let cfg: CoreConfig = serde_json::from_str(r#"{"max_body_bytes": 10}"#).expect("valid");
        assert_eq!(cfg.max_body_bytes, 10);
        assert_eq!(cfg.legacy_session_capacity, DEFAULT_SESSION_CAPACITY);
        assert!(CoreConfig { max_body_bytes: 0, ..CoreConfig::default() }.inspect_layer().is_err());
        let cfg = CoreConfig { required_extensions: vec!["com.acme/x".into()], ..CoreConfig::default() };
        let b = cfg.extension_builder().expect("prefix");
        assert!(matches!(cfg.finish_extensions(b), Err(ConfigError::RequiredNotOffered { .. })));
    }
}
