//! The `audit` section of the configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::chain::CheckpointSigner;
use crate::error::AuditError;
use crate::layer::{AuditLayer, InvocationContext, ResultMode};
use crate::redact::{ArgumentMode, Redaction};
use crate::writer::{AuditTrail, FsyncPolicy, QueueFullPolicy, TracingSink};

/// How the audit trail is written and what it keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Directory of the JSON Lines trail (created if missing).
    pub directory: Option<PathBuf>,
    /// `every_record`, `interval` (see `fsync_interval_ms`) or `os`.
    #[serde(default)]
    pub fsync: FsyncMode,
    /// For `fsync = "interval"`: at most this many milliseconds between a write and its fsync.
    #[serde(default = "default_fsync_ms")]
    pub fsync_interval_ms: u64,
    /// Rotate a file when it reaches this size.
    #[serde(default = "default_rotate_bytes")]
    pub rotate_bytes: u64,
    /// Rotate a file after this many seconds (0: never by age).
    #[serde(default = "default_rotate_secs")]
    pub rotate_after_secs: u64,
    /// Records waiting to be written (including calls in flight), at most.
    #[serde(default = "default_capacity")]
    pub queue_capacity: usize,
    /// `backpressure` (no record ever lost) or `fail_closed` (refuse calls that cannot be recorded).
    #[serde(default)]
    pub on_full: OnFull,
    /// PKCS#8 Ed25519 private key (PEM or base64) that signs checkpoints.
    pub signing_key_file: Option<PathBuf>,
    /// A checkpoint after this many call records …
    #[serde(default = "default_checkpoint_records")]
    pub checkpoint_every_records: u64,
    /// … or after this many milliseconds, whichever comes first.
    #[serde(default = "default_checkpoint_ms")]
    pub checkpoint_interval_ms: u64,
    /// Secret for argument digests (raw bytes of the file); without it a random key per process.
    pub hmac_key_file: Option<PathBuf>,
    /// `digest` (default) or `names_only`.
    #[serde(default)]
    pub arguments: ArgumentMode,
    /// Per-tool exceptions: arguments kept in clear or always dropped.
    #[serde(default)]
    pub tools: BTreeMap<String, ToolRedaction>,
    /// Argument names dropped for every tool.
    #[serde(default)]
    pub drop_arguments: Vec<String>,
    /// `none` (default) or `digest`.
    #[serde(default)]
    pub results: ResultsMode,
    /// `record` (default) or `ignore` the client's SEP-2817 invocation context.
    #[serde(default)]
    pub invocation_context: InvocationMode,
    /// Retention hint advertised to clients (ISO 8601 duration, e.g. `P1Y`).
    pub retention: Option<String>,
    /// Also emit every record as a `tracing` event.
    #[serde(default)]
    pub tracing_sink: TracingSinkMode,
    /// Also export every record to this OpenTelemetry collector (OTLP/HTTP JSON, `https://` or
    /// `http://`, e.g. `https://otel.example.com:4318/v1/logs`; needs the `otlp` feature, on in
    /// the gateway).
    #[cfg_attr(feature = "schemars", schemars(url))]
    pub otlp_endpoint: Option<String>,
    /// HTTP headers sent with every OTLP export, e.g. an API key:
    /// `{"x-api-key" = "${env:OTEL_API_KEY}"}` (values are secret: never shown).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "schemars", schemars(extend("writeOnly" = true)))]
    pub otlp_headers: BTreeMap<String, String>,
    /// `service.name` of the exported logs.
    #[serde(default = "default_service")]
    pub otlp_service_name: String,
    /// A PEM bundle of CA certificates trusted for the OTLP collector besides the system's roots
    /// (a private CA). The export goes through the gateway's `egress` proxy when one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_ca_file: Option<String>,
}

/// Per-tool argument exceptions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ToolRedaction {
    /// Arguments kept in clear (never secret-looking names).
    #[serde(default)]
    pub clear: Vec<String>,
    /// Arguments always dropped.
    #[serde(default)]
    pub drop: Vec<String>,
}

/// `fsync` setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FsyncMode {
    /// After every record.
    EveryRecord,
    /// Within `fsync_interval_ms`.
    #[default]
    Interval,
    /// Left to the OS.
    Os,
}

/// `on_full` setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OnFull {
    /// Requests wait.
    #[default]
    Backpressure,
    /// Requests are refused with 503.
    FailClosed,
}

/// `results` setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ResultsMode {
    /// Not stored.
    #[default]
    None,
    /// Keyed digest of the response.
    Digest,
}

/// `invocation_context` setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum InvocationMode {
    /// Kept, marked client-asserted.
    #[default]
    Record,
    /// Not kept.
    Ignore,
}

/// `tracing_sink` setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TracingSinkMode {
    /// No tracing events.
    #[default]
    Off,
    /// One INFO event per record.
    On,
}

fn default_service() -> String {
    "mcp-enterprise".to_owned()
}
fn default_fsync_ms() -> u64 {
    10
}
fn default_rotate_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_rotate_secs() -> u64 {
    86_400
}
fn default_capacity() -> usize {
    8192
}
fn default_checkpoint_records() -> u64 {
    1000
}
fn default_checkpoint_ms() -> u64 {
    5000
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            directory: None,
            fsync: FsyncMode::Interval,
            fsync_interval_ms: default_fsync_ms(),
            rotate_bytes: default_rotate_bytes(),
            rotate_after_secs: default_rotate_secs(),
            queue_capacity: default_capacity(),
            on_full: OnFull::Backpressure,
            signing_key_file: None,
            checkpoint_every_records: default_checkpoint_records(),
            checkpoint_interval_ms: default_checkpoint_ms(),
            hmac_key_file: None,
            arguments: ArgumentMode::Digest,
            tools: BTreeMap::new(),
            drop_arguments: Vec::new(),
            results: ResultsMode::None,
            invocation_context: InvocationMode::Record,
            retention: None,
            tracing_sink: TracingSinkMode::Off,
            otlp_endpoint: None,
            otlp_service_name: default_service(),
            otlp_headers: BTreeMap::new(),
            otlp_ca_file: None,
        }
    }
}

/// How the OTLP export connects (nothing to say without the `otlp` feature).
#[cfg(feature = "otlp")]
type EgressSetting = mcp_enterprise_core::outbound::Egress;
#[cfg(not(feature = "otlp"))]
type EgressSetting = std::convert::Infallible;

impl AuditLayer {
    /// Builds the layer and starts the trail from configuration (key files are read now; an
    /// unusable directory or key is an error here, not at the first request).
    pub fn from_config(config: &AuditConfig) -> Result<(AuditLayer, AuditTrail), AuditError> {
        Self::build(config, None)
    }

    /// [`from_config`](Self::from_config), the OTLP export going out through `egress` (the
    /// gateway's `egress` section) instead of the proxy of the environment.
    #[cfg(feature = "otlp")]
    pub fn from_config_with_egress(
        config: &AuditConfig,
        egress: &mcp_enterprise_core::outbound::Egress,
    ) -> Result<(AuditLayer, AuditTrail), AuditError> {
        Self::build(config, Some(egress))
    }

    fn build(
        config: &AuditConfig,
        #[cfg_attr(not(feature = "otlp"), allow(unused_variables))] egress: Option<&EgressSetting>,
    ) -> Result<(AuditLayer, AuditTrail), AuditError> {
        let read = |path: &PathBuf| std::fs::read(path).map_err(|e| AuditError::io(path, e));
        let mut redaction = match &config.hmac_key_file {
            Some(path) => {
                let secret = read(path)?;
                if secret.len() < 16 {
                    return Err(AuditError::Config(format!(
                        "hmac_key_file {}: the key must be at least 16 bytes",
                        path.display()
                    )));
                }
                Redaction::new(&secret)
            }
            None => Redaction::random(),
        }
        .mode(config.arguments)
        .drop("*", config.drop_arguments.iter().cloned());
        for (tool, rule) in &config.tools {
            redaction = redaction.clear(tool, rule.clear.iter().cloned()).drop(tool, rule.drop.iter().cloned());
        }
        let fsync = match config.fsync {
            FsyncMode::EveryRecord => FsyncPolicy::EveryRecord,
            FsyncMode::Interval => FsyncPolicy::Interval(Duration::from_millis(config.fsync_interval_ms.max(1))),
            FsyncMode::Os => FsyncPolicy::Os,
        };
        let mut builder = AuditLayer::builder()
            .fsync(fsync)
            .rotation(
                config.rotate_bytes,
                (config.rotate_after_secs > 0).then(|| Duration::from_secs(config.rotate_after_secs)),
            )
            .queue_capacity(config.queue_capacity)
            .on_full(match config.on_full {
                OnFull::Backpressure => QueueFullPolicy::Backpressure,
                OnFull::FailClosed => QueueFullPolicy::FailClosed,
            })
            .checkpoints(config.checkpoint_every_records, Duration::from_millis(config.checkpoint_interval_ms))
            .redaction(redaction)
            .results(match config.results {
                ResultsMode::None => ResultMode::None,
                ResultsMode::Digest => ResultMode::Digest,
            })
            .invocation_context(match config.invocation_context {
                InvocationMode::Record => InvocationContext::Record,
                InvocationMode::Ignore => InvocationContext::Ignore,
            });
        if let Some(dir) = &config.directory {
            builder = builder.directory(dir);
        }
        if let Some(path) = &config.signing_key_file {
            builder = builder.signing_key(CheckpointSigner::from_pkcs8(&read(path)?)?);
        } else {
            tracing::warn!("audit: no signing_key_file; checkpoints are not signed");
        }
        if let Some(retention) = &config.retention {
            builder = builder.retention_hint(retention);
        }
        if config.tracing_sink == TracingSinkMode::On {
            builder = builder.sink(TracingSink);
        }
        if let Some(endpoint) = &config.otlp_endpoint {
            #[cfg(feature = "otlp")]
            {
                let mut tls = mcp_enterprise_core::outbound::TlsSettings::new();
                if let Some(ca) = &config.otlp_ca_file {
                    tls = tls
                        .with_ca_file(std::path::Path::new(ca))
                        .map_err(|e| AuditError::Config(format!("otlp_ca_file: {e}")))?;
                }
                let from_env;
                let egress = match egress {
                    Some(egress) => egress,
                    None => {
                        from_env = mcp_enterprise_core::outbound::Egress::from_env();
                        &from_env
                    }
                };
                let sink = crate::otlp::OtlpSink::with_outbound(
                    endpoint,
                    &config.otlp_service_name,
                    &config.otlp_headers,
                    egress,
                    &tls,
                )?;
                builder = builder.sink(sink);
            }
            #[cfg(not(feature = "otlp"))]
            return Err(AuditError::Config(format!(
                "otlp_endpoint {endpoint:?}: this build has no OTLP sink (enable the `otlp` feature)"
            )));
        }
        builder.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let c: AuditConfig = serde_json::from_str(r#"{"directory": "/tmp/x"}"#).expect("parse");
        assert_eq!(c.fsync, FsyncMode::Interval);
        assert_eq!(c.fsync_interval_ms, 10);
        assert_eq!(c.on_full, OnFull::Backpressure);
        assert_eq!(c.arguments, ArgumentMode::Digest);
        assert_eq!(AuditConfig::default().queue_capacity, 8192);
        let err = serde_json::from_str::<AuditConfig>(r#"{"directori": "/tmp/x"}"#).expect_err("unknown");
        assert!(err.to_string().contains("directori"), "{err}");
        let err = serde_json::from_str::<AuditConfig>(r#"{"fsync": "sometimes"}"#).expect_err("bad enum");
        assert!(err.to_string().contains("sometimes"), "{err}");
    }

    #[test]
    fn bad_keys_and_directories_fail_at_load() {
        let dir = tempfile::tempdir().expect("dir");
        let short = dir.path().join("short");
        std::fs::write(&short, b"tiny").expect("w");
        let c =
            AuditConfig { directory: Some(dir.path().join("t")), hmac_key_file: Some(short), ..AuditConfig::default() };
        assert!(matches!(AuditLayer::from_config(&c), Err(AuditError::Config(_))));
        let c = AuditConfig {
            directory: Some(dir.path().join("t")),
            signing_key_file: Some(dir.path().join("missing.pem")),
            ..AuditConfig::default()
        };
        assert!(matches!(AuditLayer::from_config(&c), Err(AuditError::Io { .. })));
        // a file where the directory should be
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").expect("w");
        let c = AuditConfig { directory: Some(file.join("sub")), ..AuditConfig::default() };
        assert!(matches!(AuditLayer::from_config(&c), Err(AuditError::Io { .. })));
        let c = AuditConfig::default();
        assert!(matches!(AuditLayer::from_config(&c), Err(AuditError::Config(_))), "no sink");
    }
}
