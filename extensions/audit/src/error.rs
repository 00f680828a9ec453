//! Audit errors.

use std::path::PathBuf;

/// What can go wrong setting up or running the audit trail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A signing or verification key is unusable.
    #[error("audit key: {0}")]
    Key(String),
    /// The trail directory or one of its files cannot be used.
    #[error("audit trail {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration is inconsistent.
    #[error("audit configuration: {0}")]
    Config(String),
    /// The writer thread could not be started.
    #[error("audit writer: {0}")]
    Writer(String),
}

impl AuditError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}

/// Why a request was refused by the audit layer itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditRefusal {
    /// The record queue is full and the policy is to fail closed.
    #[error("the audit queue is full")]
    QueueFull,
    /// The writer cannot write (disk full, directory gone) and the policy is to fail closed.
    #[error("the audit trail cannot be written")]
    WriterFailing,
    /// The audit trail was shut down.
    #[error("the audit trail is closed")]
    Closed,
}
