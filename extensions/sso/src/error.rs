//! [`SsoConfigError`] for a bad setup, [`AuthError`] for a refused request.

use http::StatusCode;
use mcp_enterprise_core::AuthErrorCode;
use mcp_enterprise_core::jwks::JwtError;

/// The SSO layer was configured wrongly. Returned when building; never a panic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SsoConfigError {
    /// No trusted issuer was configured.
    #[error("at least one trusted issuer is required")]
    NoIssuers,
    /// An issuer setting is wrong.
    #[error("issuer {issuer:?}: {reason}")]
    Issuer {
        /// The issuer.
        issuer: String,
        /// What is wrong.
        reason: String,
    },
    /// Two issuers have the same identifier.
    #[error("issuer {0:?} is configured twice")]
    DuplicateIssuer(String),
    /// More than one issuer introspects opaque tokens: an opaque token names no issuer, so it
    /// would be sent to every one of them.
    #[error("only one issuer may introspect opaque tokens; {0:?} and {1:?} both do")]
    AmbiguousIntrospection(String, String),
    /// The resource (canonical server URI) is not usable.
    #[error("invalid resource URI {value:?}: {reason}")]
    InvalidResource {
        /// The value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// A scope rule is wrong.
    #[error("scope rule {index}: {reason}")]
    ScopeRule {
        /// Position of the rule.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A static JWKS could not be read or parsed.
    #[error("static JWKS for issuer {issuer:?}: {reason}")]
    StaticJwks {
        /// The issuer.
        issuer: String,
        /// What is wrong.
        reason: String,
    },
    /// The TLS client could not be set up.
    #[error("TLS client setup failed: {0}")]
    Tls(String),
    /// A core setting is wrong.
    #[error(transparent)]
    Core(#[from] mcp_enterprise_core::ConfigError),
}

impl SsoConfigError {
    /// The issuer the error is about, when it is about one (for pointing at its configuration).
    pub fn issuer(&self) -> Option<&str> {
        match self {
            Self::Issuer { issuer, .. } | Self::StaticJwks { issuer, .. } | Self::DuplicateIssuer(issuer) => {
                Some(issuer)
            }
            // the first of the two, as configured
            Self::AmbiguousIntrospection(first, _) => Some(first),
            _ => None,
        }
    }
}

/// Why a request was refused. Descriptions never contain token contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A check every JWT consumer makes failed (signature, issuer, lifetime, claims).
    #[error(transparent)]
    Jwt(#[from] JwtError),
    /// No `Authorization: Bearer` credential.
    #[error("no bearer token")]
    MissingToken,
    /// The `Authorization` header is malformed or uses another scheme.
    #[error("malformed Authorization header: {0}")]
    MalformedHeader(&'static str),
    /// The token is larger than the configured limit.
    #[error("the token is larger than {0} bytes")]
    TokenTooLarge(usize),
    /// The `typ` header is not accepted.
    #[error("token type {0:?} is not an access token type")]
    WrongType(String),
    /// The audience is not this resource.
    #[error("the token is not meant for this resource")]
    WrongAudience,
    /// The token is sender-constrained (`cnf.jkt`) but was presented as a bearer token.
    #[error("a DPoP-bound token was presented as a bearer token")]
    DpopBoundToken,
    /// Introspection says the token is not active.
    #[error("the token is not active")]
    Inactive,
    /// Opaque tokens cannot be checked (no introspection configured).
    #[error("opaque tokens are not accepted")]
    OpaqueNotAccepted,
    /// The identity provider could not be reached and nothing cached can decide.
    #[error("the identity provider is unavailable")]
    IdpUnavailable,
    /// The token lacks scopes the operation needs.
    #[error("insufficient scope: the operation needs {}", .required.join(" "))]
    InsufficientScope {
        /// Every scope the operation needs.
        required: Vec<String>,
        /// The ones the token lacks.
        missing: Vec<String>,
        /// The rules that asked for them.
        rules: Vec<String>,
    },
}

impl AuthError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            Self::IdpUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::MalformedHeader(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// A low-cardinality class of the refusal (a trace's `error.type`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::IdpUnavailable => "idp_unavailable",
            _ => self.code().map_or("invalid_token", AuthErrorCode::as_str),
        }
    }

    /// The OAuth error code for the challenge (`None`: no `error` parameter, e.g. no token at all).
    pub fn code(&self) -> Option<AuthErrorCode> {
        match self {
            Self::MissingToken | Self::IdpUnavailable => None,
            Self::MalformedHeader(_) => Some(AuthErrorCode::InvalidRequest),
            Self::InsufficientScope { .. } => Some(AuthErrorCode::InsufficientScope),
            _ => Some(AuthErrorCode::InvalidToken),
        }
    }
}
