//! What can be wrong: every problem of a document is a [`Diagnostic`] naming where it is
//! (`file:line:column` or the environment variable), the key path, what was expected and what was
//! found; [`ConfigError::Invalid`] carries all of them at once.

use std::fmt;
use std::path::PathBuf;

use crate::path::KeyPath;

/// Where a setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// A position in a file; `line` and `column` are 1-based, absent when the position is unknown.
    File {
        /// The file as given.
        path: PathBuf,
        /// 1-based line.
        line: Option<usize>,
        /// 1-based column.
        column: Option<usize>,
    },
    /// An environment variable.
    Env {
        /// Its name, e.g. `MCPE_AUDIT__DIRECTORY`.
        name: String,
    },
    /// Nowhere: the setting is missing from every source and has no default.
    Missing,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File { path, line: Some(line), column: Some(column) } => {
                write!(f, "{}:{line}:{column}", path.display())
            }
            Self::File { path, line: Some(line), column: None } => write!(f, "{}:{line}", path.display()),
            Self::File { path, .. } => write!(f, "{}", path.display()),
            Self::Env { name } => write!(f, "environment variable {name}"),
            Self::Missing => f.write_str("(no source)"),
        }
    }
}

/// The kind of a [`Diagnostic`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiagnosticKind {
    /// A file could not be read, or is not valid TOML/YAML/JSON.
    Syntax,
    /// A key no section knows (typos are errors, never silently ignored settings).
    UnknownKey,
    /// A required key is absent.
    MissingKey,
    /// A value of the wrong type (a string where a number belongs, …).
    WrongType,
    /// A value of the right type that is not acceptable (a bad URL, an unknown enum name, …).
    InvalidValue,
    /// Settings that cannot work together (DPoP without a token validator, …).
    Conflict,
    /// Something the settings point at is unusable (an unwritable directory, an unreadable key).
    Unusable,
    /// A `${env:…}` / `${file:…}` secret reference that cannot be resolved.
    Reference,
}

/// One problem of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Diagnostic {
    /// Where the offending setting is.
    pub location: Location,
    /// Its key path, e.g. `sso.issuers[0].jwks_uri`.
    pub path: KeyPath,
    /// What kind of problem.
    pub kind: DiagnosticKind,
    /// What was expected.
    pub expected: String,
    /// What was found (a secret is never shown: it reads as a redacted value).
    pub found: String,
}

impl Diagnostic {
    pub(crate) fn new(
        kind: DiagnosticKind,
        path: KeyPath,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        Self { location: Location::Missing, path, kind, expected: expected.into(), found: found.into() }
    }

    pub(crate) fn at(mut self, location: Location) -> Self {
        self.location = location;
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: expected {}, found {}", self.location, self.path, self.expected, self.found)
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The document has problems: all of them, in source order.
    #[error("{}", DiagnosticList(.0))]
    Invalid(Vec<Diagnostic>),
    /// No file was given.
    #[error("no configuration file given")]
    NoFiles,
    /// A configured layer could not be started (after the checks passed), e.g. the audit trail.
    #[error("{section}: {source}")]
    Start {
        /// The section, e.g. `audit`.
        section: &'static str,
        /// Why: the layer's own typed error.
        #[source]
        source: LayerError,
    },
}

/// The typed error of the layer a section configures, as that layer's crate reports it (match on
/// it to tell, e.g., a bad issuer from an unreadable key file, or read the key it names with
/// [`SsoConfigError::issuer`](mcp_enterprise_sso::SsoConfigError::issuer) and friends).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// From `core` (inspection, extension negotiation).
    #[error(transparent)]
    Core(#[from] mcp_enterprise_core::ConfigError),
    /// From the SSO layer.
    #[error(transparent)]
    Sso(#[from] mcp_enterprise_sso::SsoConfigError),
    /// Outbound connections: a CA, client certificate or key file, or the proxy setting.
    #[error(transparent)]
    Outbound(#[from] mcp_enterprise_core::outbound::OutboundError),
    /// From the DPoP layer.
    #[error(transparent)]
    Dpop(#[from] mcp_enterprise_dpop::DpopConfigError),
    /// From the workload identity layer or its token endpoint.
    #[error(transparent)]
    WorkloadIdentity(#[from] mcp_enterprise_workload_identity::WorkloadConfigError),
    /// From the audit layer (its trail could not be opened).
    #[error(transparent)]
    Audit(#[from] mcp_enterprise_audit::AuditError),
    /// From the policy layer.
    #[error(transparent)]
    Policy(#[from] mcp_enterprise_policy::PolicyConfigError),
    /// From the integrity layer (its lock file).
    #[error(transparent)]
    Integrity(#[from] mcp_enterprise_integrity::IntegrityConfigError),
    /// The layers do not fit together (the composition point refused them).
    #[error(transparent)]
    Pack(#[from] mcp_enterprise_stack::PackError),
    /// The `redis` section: a URL, certificate file or credentials Redis refuses.
    #[cfg(feature = "redis")]
    #[error(transparent)]
    Redis(#[from] mcp_enterprise_core::redis::RedisError),
}

impl ConfigError {
    /// The typed error of the layer that could not start ([`Start`](Self::Start)).
    pub fn layer_error(&self) -> Option<&LayerError> {
        match self {
            Self::Start { source, .. } => Some(source),
            _ => None,
        }
    }

    /// The diagnostics, when the document is invalid.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            Self::Invalid(list) => list,
            _ => &[],
        }
    }
}

struct DiagnosticList<'a>(&'a [Diagnostic]);

impl fmt::Display for DiagnosticList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} configuration error{}:", if n == 1 { "" } else { "s" })?;
        for d in self.0 {
            write!(f, "\n  {d}")?;
        }
        Ok(())
    }
}

/// Exporting or importing a client configuration failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientFormatError {
    /// The format name is not one of ours.
    #[error(
        "unknown client format {0:?}: expected one of mcp-json, vscode, claude, cursor, codex, windsurf, cline, roo-code, continue, zed, gemini-cli, copilot-cli, copilot-jetbrains, goose, lm-studio, kiro, amazon-q, opencode"
    )]
    UnknownFormat(String),
    /// The document is not valid for the format.
    #[error("{format}: {reason}")]
    Invalid {
        /// The format.
        format: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The entry cannot be expressed without leaking a secret, or at all, in this format.
    #[error("{format}: cannot export: {reason}")]
    Inexpressible {
        /// The format.
        format: &'static str,
        /// Why.
        reason: String,
    },
}
