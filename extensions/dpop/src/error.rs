//! [`DpopConfigError`] for a bad setup, [`DpopError`] for a refused request.

use http::StatusCode;
use mcp_enterprise_core::AuthErrorCode;

/// The DPoP layer was configured wrongly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopConfigError {
    /// The external origin is not an absolute http(s) origin.
    #[error("invalid external origin {0:?}: expected e.g. https://mcp.example.com (no path)")]
    ExternalOrigin(String),
    /// No algorithm allowed.
    #[error("at least one proof algorithm must be allowed")]
    NoAlgorithms,
    /// Unknown algorithm name.
    #[error("unknown or non-asymmetric proof algorithm {0:?}")]
    Algorithm(String),
    /// The `iat` window is wider than the MCP profile allows.
    #[error("the iat window may be at most 300 seconds")]
    IatWindow,
    /// A nonce secret is not 32 bytes of base64url.
    #[error("nonce key {0}: the secret must be 32 bytes, base64url-encoded")]
    NonceKey(usize),
    /// Nonces are on but no key was given.
    #[error("nonces are enabled but no nonce key is configured")]
    NoNonceKey,
    /// The extension id is not valid.
    #[error(transparent)]
    Extension(#[from] mcp_enterprise_core::ConfigError),
    /// The static token validator is misconfigured.
    #[error("token validator: {0}")]
    Validator(String),
}

/// Why a request was refused. Descriptions never contain token or proof contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopError {
    /// No credentials at all.
    #[error("no DPoP-bound access token")]
    MissingToken,
    /// The proof fails a check.
    #[error("invalid DPoP proof: {0}")]
    InvalidProof(&'static str),
    /// The proof reuses a `jti`.
    #[error("invalid DPoP proof: replayed jti")]
    Replayed,
    /// A (fresh) server nonce is required.
    #[error("a fresh DPoP nonce is required")]
    UseNonce,
    /// The access token is not acceptable (includes a key-binding mismatch).
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// A dependency (token validator, replay store) is unavailable.
    #[error("authentication is temporarily unavailable")]
    Unavailable,
}

impl DpopError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The OAuth error code of the DPoP challenge.
    pub fn code(&self) -> Option<AuthErrorCode> {
        match self {
            Self::MissingToken | Self::Unavailable => None,
            Self::InvalidProof(_) | Self::Replayed => Some(AuthErrorCode::InvalidDpopProof),
            Self::UseNonce => Some(AuthErrorCode::UseDpopNonce),
            Self::InvalidToken(_) => Some(AuthErrorCode::InvalidToken),
        }
    }
}
