//! [`WorkloadConfigError`] for a bad setup; [`WorkloadError`] for a refused workload token (or
//! access token) at the server layer; [`GrantError`] for a refused jwt-bearer grant, with its OAuth
//! error code.

use http::StatusCode;
use mcp_enterprise_core::AuthErrorCode;
use mcp_enterprise_core::jwks::JwtError;

/// Something was configured wrongly. Returned when building; never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WorkloadConfigError {
    /// No trusted issuer or trust domain was configured where one is needed.
    #[error("at least one trusted issuer or SPIFFE trust domain is required")]
    NoIssuers,
    /// An issuer or trust domain setting is wrong.
    #[error("issuer {issuer:?}: {reason}")]
    Issuer {
        /// The issuer or trust domain.
        issuer: String,
        /// What is wrong.
        reason: String,
    },
    /// The same issuer or trust domain is configured twice.
    #[error("issuer {0:?} is configured twice")]
    DuplicateIssuer(String),
    /// A subject or claim pattern is not usable.
    #[error("pattern {pattern:?}: {reason}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A workload rule is not usable.
    #[error("rule {rule:?}: {reason}")]
    Rule {
        /// The rule name.
        rule: String,
        /// What is wrong.
        reason: String,
    },
    /// A URL setting is not acceptable.
    #[error("{what} {value:?}: {reason}")]
    Url {
        /// Which setting.
        what: &'static str,
        /// The value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// A duration or size limit is out of range.
    #[error("{what}: {reason}")]
    Limit {
        /// Which setting.
        what: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// Neither direct mode nor authorization-server tokens are enabled, so nothing would be accepted.
    #[error("enable direct mode (a trust policy) or accept the token endpoint's access tokens")]
    NothingAccepted,
    /// The signing key could not be made or read.
    #[error("signing key: {0}")]
    SigningKey(String),
    /// A file could not be read.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What happened.
        reason: String,
    },
    /// The HTTP client could not be set up.
    #[error("HTTP client: {0}")]
    Http(String),
    /// An extension id or another core setting is wrong.
    #[error(transparent)]
    Core(#[from] mcp_enterprise_core::ConfigError),
}

impl WorkloadConfigError {
    /// The issuer or SPIFFE trust domain the error is about, when it is about one (for pointing at
    /// its configuration).
    pub fn issuer(&self) -> Option<&str> {
        match self {
            Self::Issuer { issuer, .. } | Self::DuplicateIssuer(issuer) => Some(issuer),
            Self::Url { what: "issuer", value, .. } => Some(value),
            _ => None,
        }
    }
}

/// Why a workload token (or an access token from the token endpoint) was refused. Descriptions
/// never contain token contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WorkloadError {
    /// A check every JWT consumer makes failed (signature, issuer, lifetime, claims).
    #[error(transparent)]
    Jwt(#[from] JwtError),
    /// No `Authorization: Bearer` credential.
    #[error("no bearer token")]
    MissingToken,
    /// The `Authorization` header is malformed.
    #[error("malformed Authorization header: {0}")]
    MalformedHeader(&'static str),
    /// The token is larger than the configured limit.
    #[error("the token is larger than {0} bytes")]
    TokenTooLarge(usize),
    /// The `typ` header names another kind of token.
    #[error("token type {0:?} is not a workload identity token")]
    WrongType(String),
    /// A `spiffe://` issuer (or JWT-SVID subject) whose trust domain has no configured bundle.
    #[error("no trust bundle is configured for the token's SPIFFE trust domain")]
    NoTrustBundle,
    /// The audience is not the one expected here.
    #[error("the token is not meant for this audience")]
    WrongAudience,
    /// A SPIFFE subject is not a SPIFFE ID of the issuing trust domain.
    #[error("the subject is not a SPIFFE ID of the issuing trust domain")]
    InvalidSpiffeId,
    /// No workload rule of the issuer matches the token.
    #[error("no workload rule matches the token")]
    NoMatchingRule,
    /// The `jti` was used before.
    #[error("the token was already used (replayed jti)")]
    Replayed,
    /// Keys or the replay store are unavailable and nothing cached can decide.
    #[error("workload identity verification is temporarily unavailable")]
    Unavailable,
}

impl WorkloadError {
    /// The HTTP status at the server layer.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::MalformedHeader(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The OAuth error code of the challenge (`None`: no `error` parameter, e.g. no token at all).
    pub fn code(&self) -> Option<AuthErrorCode> {
        match self {
            Self::MissingToken | Self::Unavailable => None,
            Self::MalformedHeader(_) => Some(AuthErrorCode::InvalidRequest),
            _ => Some(AuthErrorCode::InvalidToken),
        }
    }
}

impl From<mcp_enterprise_core::jwks::KeyError> for WorkloadError {
    fn from(e: mcp_enterprise_core::jwks::KeyError) -> Self {
        use mcp_enterprise_core::jwks::KeyError;
        match e {
            KeyError::UnknownKey => Self::Jwt(JwtError::UnknownKey),
            KeyError::KeyMismatch => Self::Jwt(JwtError::KeyMismatch),
            KeyError::BadSignature => Self::Jwt(JwtError::BadSignature),
            _ => Self::Unavailable,
        }
    }
}

/// Why a jwt-bearer grant (RFC 7523 §2.1, SEP-1933) was refused, with its OAuth error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    /// The request is malformed (`invalid_request`): a missing or repeated parameter, a bad body.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// The grant type is not `urn:ietf:params:oauth:grant-type:jwt-bearer` (`unsupported_grant_type`).
    #[error("only the jwt-bearer grant is supported")]
    UnsupportedGrantType,
    /// The assertion is not acceptable (`invalid_grant`): signature, issuer, audience, lifetime,
    /// replay, or no workload rule matches it.
    #[error("invalid assertion: {0}")]
    InvalidGrant(WorkloadError),
    /// The workload is known but not allowed to obtain tokens for the requested resource
    /// (`unauthorized_client`).
    #[error("the workload may not obtain tokens for this resource")]
    UnauthorizedClient,
    /// The resource is not one this authorization server issues tokens for (`invalid_target`,
    /// RFC 8707).
    #[error("unknown resource")]
    InvalidTarget,
    /// A requested scope is not granted to the workload (`invalid_scope`).
    #[error("scope {0:?} is not granted to this workload")]
    InvalidScope(String),
    /// Keys or the replay store are unavailable (`temporarily_unavailable`, 503).
    #[error("the authorization server is temporarily unavailable")]
    Unavailable,
    /// An ID-JAG (SEP-990) is not acceptable (`invalid_grant`), with the precise reason.
    #[error("invalid ID-JAG: {0}")]
    InvalidIdJag(IdJagError),
    /// The client did not authenticate, or its credentials are wrong (`invalid_client`, 401).
    #[error("client authentication failed: {0}")]
    InvalidClient(&'static str),
    /// The request's DPoP proof (RFC 9449 §5) is not acceptable (`invalid_dpop_proof`), with the
    /// reason; never the proof itself.
    #[error("invalid DPoP proof: {0}")]
    InvalidDpopProof(&'static str),
}

impl GrantError {
    /// The OAuth error code (RFC 6749 §5.2, RFC 8707).
    pub fn error_code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::InvalidTarget => "invalid_target",
            Self::InvalidScope(_) => "invalid_scope",
            Self::Unavailable => "temporarily_unavailable",
            Self::InvalidIdJag(_) => "invalid_grant",
            Self::InvalidClient(_) => "invalid_client",
            Self::InvalidDpopProof(_) => "invalid_dpop_proof",
        }
    }

    /// The HTTP status of the error response.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::InvalidClient(_) => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The RFC 6749 §5.2 error body.
    pub fn to_json(&self) -> serde_json::Value {
        // error_description: printable ASCII without '"' and '\' (RFC 6749 §5.2)
        let description: String =
            self.to_string().chars().filter(|c| matches!(*c as u32, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e)).collect();
        serde_json::json!({ "error": self.error_code(), "error_description": description })
    }
}

/// Why an ID-JAG (Identity Assertion JWT Authorization Grant, SEP-990) was refused: every reason
/// is `invalid_grant`, the description says which check failed (never token contents).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdJagError {
    /// The `typ` header is not `oauth-id-jag+jwt`.
    #[error("typ {0:?} is not oauth-id-jag+jwt")]
    WrongType(String),
    /// A check every JWT consumer makes failed (signature, algorithm, issuer, lifetime, claims).
    #[error(transparent)]
    Jwt(JwtError),
    /// `aud` is not this authorization server's issuer identifier.
    #[error("aud is not this authorization server's issuer")]
    WrongAudience,
    /// No `resource` claim.
    #[error("the ID-JAG has no resource claim")]
    MissingResource,
    /// `resource` is not a resource this authorization server issues tokens for.
    #[error("resource is not served by this authorization server")]
    UnknownResource,
    /// The request's `resource` parameter names another resource than the ID-JAG.
    #[error("the resource parameter differs from the ID-JAG's resource")]
    ResourceMismatch,
    /// No `client_id` claim.
    #[error("the ID-JAG has no client_id claim")]
    MissingClientId,
    /// `client_id` is not the client that authenticated.
    #[error("client_id is not the authenticated client")]
    ClientMismatch,
    /// A requested scope is not among the ID-JAG's.
    #[error("requested scope {0:?} is not granted by the ID-JAG")]
    ScopeNotInIdJag(String),
    /// A requested scope is in the ID-JAG but this IdP's rule for the user does not allow it.
    #[error("scope {0:?} is not allowed for this user by the identity provider's rules")]
    ScopeNotAllowed(String),
    /// No rule of the identity provider admits the user.
    #[error("no rule of the identity provider admits this user")]
    NoMatchingRule,
    /// The user's rule does not allow the resource.
    #[error("the identity provider's rules do not allow this user tokens for this resource")]
    ResourceNotAllowed,
    /// The `jti` was presented before (scoped by `iss` and `sub`).
    #[error("the ID-JAG was already used (replayed jti)")]
    Replayed,
    /// Another defect of the token.
    #[error("{0}")]
    Token(WorkloadError),
}

impl From<WorkloadError> for IdJagError {
    fn from(e: WorkloadError) -> Self {
        match e {
            WorkloadError::Jwt(j) => Self::Jwt(j),
            WorkloadError::WrongType(t) => Self::WrongType(t),
            WorkloadError::WrongAudience => Self::WrongAudience,
            WorkloadError::NoMatchingRule => Self::NoMatchingRule,
            WorkloadError::Replayed => Self::Replayed,
            other => Self::Token(other),
        }
    }
}
