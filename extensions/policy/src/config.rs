//! The `policy` section of the configuration.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::engine::{Catalog, DefaultDecision, Policies, ValidationLevel};
use crate::error::PolicyConfigError;
use crate::layer::PolicyLayer;

/// Cedar authorization of tool calls, resource reads and prompt gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Cedar policy files (`.cedar`), read in order. A policy's id is its `@id("…")` annotation,
    /// or `<file stem>:<n>`.
    pub policy_files: Vec<PathBuf>,
    /// What happens when no policy decides: `deny` (default) or `insecure_allow` (the policies
    /// become a deny list).
    #[serde(default)]
    pub default_decision: DefaultDecisionConfig,
    /// A policy that does not type-check against the upstream's tools: `error` (refuse to load)
    /// or `warning` (log and use it).
    #[serde(default)]
    pub validation: ValidationConfig,
    /// Filter `tools/list`, `resources/list`, `resources/templates/list` and `prompts/list` so a
    /// caller sees only what it may use.
    #[serde(default = "yes")]
    pub filter_lists: bool,
    /// Fetch `tools/list` (and `prompts/list`) from the upstream at start-up, to validate the
    /// policies before serving.
    #[serde(default)]
    pub fetch_tools_at_startup: bool,
    /// A saved `tools/list` result (JSON) to validate the policies against at start-up.
    pub tools_snapshot_file: Option<PathBuf>,
    /// Largest list response filtered, in bytes; a larger one is refused (never shown unfiltered).
    #[serde(default = "default_max_list_bytes")]
    pub max_list_bytes: usize,
}

fn yes() -> bool {
    true
}

fn default_max_list_bytes() -> usize {
    crate::layer::DEFAULT_MAX_LIST_BYTES
}

/// `deny` or `insecure_allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DefaultDecisionConfig {
    /// Deny unless a `permit` matches.
    #[default]
    Deny,
    /// Allow unless a `forbid` matches.
    InsecureAllow,
}

/// `error` or `warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ValidationConfig {
    /// Refuse to load.
    #[default]
    Error,
    /// Log and use.
    Warning,
}

impl PolicyConfig {
    /// A section with these policy files and every other setting at its default.
    pub fn new(policy_files: Vec<PathBuf>) -> Self {
        Self {
            policy_files,
            default_decision: DefaultDecisionConfig::Deny,
            validation: ValidationConfig::Error,
            filter_lists: true,
            fetch_tools_at_startup: false,
            tools_snapshot_file: None,
            max_list_bytes: default_max_list_bytes(),
        }
    }

    /// The catalog of the tools snapshot file, when set.
    pub fn snapshot_catalog(&self) -> Result<Catalog, PolicyConfigError> {
        let Some(path) = &self.tools_snapshot_file else { return Ok(Catalog::default()) };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| PolicyConfigError::Read { file: shown.clone(), reason: e.to_string() })?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| PolicyConfigError::Parse {
            file: shown,
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        Ok(Catalog::from_listing(&value))
    }
}

impl PolicyLayer {
    /// Builds the layer a `policy` section describes, validated against the snapshot file when
    /// set (tools fetched from the upstream are added by the caller with
    /// [`from_config_with_catalog`](Self::from_config_with_catalog)).
    pub fn from_config(config: &PolicyConfig) -> Result<Self, PolicyConfigError> {
        Self::from_config_with_catalog(config, Catalog::default())
    }

    /// As [`from_config`](Self::from_config), with tools already known (e.g. fetched).
    pub fn from_config_with_catalog(config: &PolicyConfig, mut catalog: Catalog) -> Result<Self, PolicyConfigError> {
        if config.policy_files.is_empty() {
            return Err(PolicyConfigError::Invalid("policy.policy_files must name at least one file".into()));
        }
        if config.max_list_bytes == 0 {
            return Err(PolicyConfigError::Invalid("policy.max_list_bytes must be at least 1".into()));
        }
        let snapshot = config.snapshot_catalog()?;
        catalog.tools.extend(snapshot.tools);
        catalog.prompts.extend(snapshot.prompts);
        let policies = Policies::from_files(&config.policy_files)?;
        PolicyLayer::builder(policies)
            .catalog(catalog)
            .default_decision(match config.default_decision {
                DefaultDecisionConfig::Deny => DefaultDecision::Deny,
                DefaultDecisionConfig::InsecureAllow => DefaultDecision::InsecureAllow,
            })
            .validation(match config.validation {
                ValidationConfig::Error => ValidationLevel::Error,
                ValidationConfig::Warning => ValidationLevel::Warning,
            })
            .filter_lists(config.filter_lists)
            .max_list_bytes(config.max_list_bytes)
            .build()
    }
}
