//! Identity propagation downstream: what the upstream learns about the caller.
//!
//! The caller's own credentials — `Authorization`, `DPoP`, `Cookie`, `Proxy-Authorization` — are
//! never forwarded, in any mode (token passthrough is forbidden by the MCP authorization spec, and
//! the upstream is not the audience of the caller's token). Per upstream, one of:
//!
//! - [`Propagation::None`]: the upstream sees no credential at all;
//! - [`Propagation::SignedAssertion`] ([`signed_assertion`]): a JWT minted by the gateway for each
//!   request (`iss` = the gateway, `aud` = the upstream, `sub`, `act`, scopes, tenant, auth method,
//!   `jti`, ≤ 60 s), sent as `Authorization: Bearer`; the gateway serves the JWKS and RFC 8414
//!   metadata that verify it;
//! - [`Propagation::TokenExchange`] ([`token_exchange`]): RFC 8693 at an authorization server,
//!   the caller's validated token as `subject_token`, the upstream as `resource`;
//! - [`Propagation::Static`] ([`static_header`]): the gateway's own credential for the upstream.
//!
//! A credential that cannot be produced fails the call with a JSON-RPC `-32603` error and the
//! status of [`PropagationError::status`] (`500` for the gateway's own faults, `503` when the
//! authorization server is unavailable, `502` when it answers unusably or refuses the gateway,
//! `403` when it refuses the caller): the call never goes upstream without its credential.
//!
//! ```
//! use mcp_enterprise_core::{AuthMethod, Principal, PrincipalKind};
//! use mcp_enterprise_gateway::propagation::{Propagation, SignedAssertion};
//!
//! let minter = SignedAssertion::builder("https://gateway.example.com", "http://10.0.0.5:8081/mcp").build()?;
//! let propagation = Propagation::SignedAssertion(minter);
//! let alice = Principal::builder("https://login.example.com", "alice", PrincipalKind::User, AuthMethod::Bearer)
//!     .client_id("vscode")
//!     .build();
//! # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
//! let headers = http::HeaderMap::new();
//! let (name, value) = propagation.credential(Some(&alice), None, &headers).await?.expect("an assertion");
//! assert_eq!(name, "authorization");
//! assert!(value.to_str()?.starts_with("Bearer ey"));
//! // an assertion speaks for an authenticated caller: without one the call fails
//! assert!(propagation.credential(None, None, &headers).await.is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod signed_assertion;
pub mod static_header;
pub mod token_exchange;

use std::time::Duration;

use http::StatusCode;
use http::{HeaderName, HeaderValue, header};
use mcp_enterprise_config::{PropagationConfig, PropagationMode};
use mcp_enterprise_core::outbound::{Egress, TlsSettings};
use mcp_enterprise_core::{McpRequest, Principal};
pub use signed_assertion::{KeyError, SignedAssertion, SignedAssertionBuilder};
pub use static_header::{ClientCredentials, StaticHeader};
pub use token_exchange::TokenExchange;

/// The caller's credential headers: removed from every upstream request.
pub const INBOUND_CREDENTIALS: &[&str] = &["authorization", "dpop", "cookie", "proxy-authorization"];

/// Why a propagation setting or a credential failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PropagationError {
    /// A setting is wrong.
    #[error("propagation: {0}")]
    Config(String),
    /// The signing key is not usable.
    #[error("propagation: {0}")]
    Key(#[from] KeyError),
    /// The mode speaks for a caller and the request has none (an authentication layer is missing).
    #[error("no authenticated caller to speak for")]
    NoCaller,
    /// Signing failed.
    #[error("the assertion could not be signed")]
    Signing,
    /// The request carries no token the authentication layer validated (token exchange).
    #[error("no validated caller token to exchange")]
    NoSubjectToken,
    /// The authorization server is unreachable, timed out or answered 5xx.
    #[error("the token exchange is unavailable: {0}")]
    ExchangeUnavailable(String),
    /// The authorization server refused the exchange for the caller (its OAuth error code).
    #[error("the token exchange was refused: {0}")]
    ExchangeRefused(String),
    /// The authorization server refused the gateway or answered something unusable.
    #[error("the token exchange failed: {0}")]
    ExchangeFailed(String),
}

impl PropagationError {
    /// The HTTP status a call failing for this reason gets.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::ExchangeUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::ExchangeRefused(_) => StatusCode::FORBIDDEN,
            Self::ExchangeFailed(_) => StatusCode::BAD_GATEWAY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the caller is told (never a token or secret).
    pub fn public_message(&self) -> &'static str {
        match self {
            Self::ExchangeUnavailable(_) => "the authorization server for the upstream is unavailable; try again later",
            Self::ExchangeRefused(_) => "the authorization server refused a token for the upstream to this caller",
            Self::ExchangeFailed(_) => "the gateway could not obtain a token for the upstream",
            _ => "the gateway cannot present a credential to the upstream MCP server",
        }
    }
}

/// What one upstream learns about the caller.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum Propagation {
    /// Nothing.
    #[default]
    None,
    /// A JWT minted by the gateway per request.
    SignedAssertion(SignedAssertion),
    /// The gateway's own credential: a fixed header.
    Static(StaticHeader),
    /// The gateway's own credential: a client-credentials token (mode `static`).
    ClientCredentials(ClientCredentials),
    /// RFC 8693 token exchange.
    TokenExchange(TokenExchange),
}

impl Propagation {
    /// Builds the configured mode. `resource` is the gateway's canonical resource URI (its origin
    /// is the default issuer), `upstream` the upstream URL (the default audience).
    pub fn from_config(config: &PropagationConfig, resource: &str, upstream: &str) -> Result<Self, PropagationError> {
        Self::build(config, resource, upstream, None)
    }

    /// Like [`from_config`](Self::from_config), with token endpoints (`token_exchange`, `static`'s
    /// client credentials) reached through `egress` and trusted with `tls`'s extra roots.
    pub fn from_config_outbound(
        config: &PropagationConfig,
        resource: &str,
        upstream: &str,
        egress: &Egress,
        tls: &TlsSettings,
    ) -> Result<Self, PropagationError> {
        Self::build(config, resource, upstream, Some((egress, tls)))
    }

    fn build(
        config: &PropagationConfig,
        resource: &str,
        upstream: &str,
        outbound: Option<(&Egress, &TlsSettings)>,
    ) -> Result<Self, PropagationError> {
        Ok(match config.mode {
            PropagationMode::SignedAssertion => {
                let settings = config.signed_assertion.clone().unwrap_or_default();
                let issuer = match &settings.issuer {
                    Some(issuer) => issuer.clone(),
                    None => origin_of(resource)
                        .ok_or_else(|| PropagationError::Config(format!("no origin in resource {resource:?}")))?,
                };
                let audience = settings.audience.as_deref().unwrap_or(upstream);
                let mut builder = SignedAssertion::builder(&issuer, audience)
                    .algorithm(settings.algorithm)
                    .lifetime(Duration::from_secs(settings.lifetime_secs))?
                    .rotation(
                        Duration::from_secs(settings.rotation_secs),
                        Duration::from_secs(settings.rotation_grace_secs),
                    );
                if let Some(file) = &settings.key_file {
                    builder = builder.key_file(file);
                }
                Self::SignedAssertion(builder.build()?)
            }
            PropagationMode::TokenExchange => {
                let settings = config.token_exchange.as_ref().ok_or_else(|| {
                    PropagationError::Config("mode token_exchange needs the token_exchange settings".into())
                })?;
                Self::TokenExchange(match outbound {
                    Some((egress, tls)) => TokenExchange::from_config_outbound(settings, upstream, egress, tls)?,
                    None => TokenExchange::from_config(settings, upstream)?,
                })
            }
            PropagationMode::Static => {
                let settings = config
                    .static_credential
                    .as_ref()
                    .ok_or_else(|| PropagationError::Config("mode static needs the static settings".into()))?;
                match (&settings.value, &settings.client_credentials) {
                    (Some(value), None) => Self::Static(StaticHeader::new(&settings.header, value)?),
                    (None, Some(grant)) => Self::ClientCredentials(match outbound {
                        Some((egress, tls)) => ClientCredentials::from_config_outbound(grant, upstream, egress, tls)?,
                        None => ClientCredentials::from_config(grant, upstream)?,
                    }),
                    _ => {
                        return Err(PropagationError::Config(
                            "static needs exactly one of value and client_credentials".into(),
                        ));
                    }
                }
            }
            _ => Self::None,
        })
    }

    /// The mode's name, as configured.
    pub fn mode(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::SignedAssertion(_) => "signed_assertion",
            Self::Static(_) | Self::ClientCredentials(_) => "static",
            Self::TokenExchange(_) => "token_exchange",
        }
    }

    /// The header to add to the upstream request for this caller, if any. `call` is the parsed
    /// request (scopes of a token exchange), `headers` the inbound ones (the validated token).
    pub async fn credential(
        &self,
        caller: Option<&Principal>,
        call: Option<&McpRequest>,
        headers: &http::HeaderMap,
    ) -> Result<Option<(HeaderName, HeaderValue)>, PropagationError> {
        match self {
            Self::TokenExchange(exchange) => {
                let token = exchange.token(caller, call, headers).await?;
                let mut value = HeaderValue::try_from(format!("Bearer {token}"))
                    .map_err(|_| PropagationError::ExchangeFailed("the issued token is not header-safe".into()))?;
                value.set_sensitive(true);
                Ok(Some((header::AUTHORIZATION, value)))
            }
            Self::None => Ok(None),
            Self::Static(fixed) => Ok(Some(fixed.header())),
            Self::ClientCredentials(grant) => grant.header().await.map(Some),
            Self::SignedAssertion(minter) => {
                let principal = caller.ok_or(PropagationError::NoCaller)?;
                let assertion = minter.mint(principal)?;
                let mut value =
                    HeaderValue::try_from(format!("Bearer {assertion}")).map_err(|_| PropagationError::Signing)?;
                value.set_sensitive(true);
                Ok(Some((header::AUTHORIZATION, value)))
            }
        }
    }

    /// The paths the gateway serves for this mode (JWKS and metadata of `signed_assertion`).
    pub fn paths(&self) -> Vec<String> {
        match self {
            Self::SignedAssertion(minter) => vec![minter.jwks_path(), minter.metadata_path()],
            _ => Vec::new(),
        }
    }
}

/// `scheme://authority` of a URL.
fn origin_of(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    Some(format!("{}://{}", uri.scheme_str()?, uri.authority()?))
}

/// Removes the caller's credential headers.
pub(crate) fn strip_inbound_credentials(headers: &mut http::HeaderMap) {
    // the names made once (a `&str` name is parsed on every lookup)
    const NAMES: [http::HeaderName; 4] = [
        http::header::AUTHORIZATION,
        http::HeaderName::from_static("dpop"),
        http::header::COOKIE,
        http::header::PROXY_AUTHORIZATION,
    ];
    debug_assert!(NAMES.iter().map(http::HeaderName::as_str).eq(INBOUND_CREDENTIALS.iter().copied()));
    for name in NAMES {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use mcp_enterprise_config::{SignedAssertionConfig, StaticCredentialConfig};

    use super::*;

    #[test]
    fn from_config_and_modes() {
        let none = Propagation::from_config(&PropagationConfig::default(), "https://gw/mcp", "http://up/mcp");
        assert!(matches!(none, Ok(Propagation::None)));
        let signed = Propagation::from_config(
            &PropagationConfig::signed_assertion(SignedAssertionConfig::default()),
            "https://gw.example:8443/mcp",
            "http://up/mcp",
        )
        .expect("signed");
        let Propagation::SignedAssertion(minter) = &signed else { panic!("mode") };
        assert_eq!(minter.issuer(), "https://gw.example:8443");
        assert_eq!(minter.audience(), "http://up/mcp");
        assert_eq!(signed.paths(), ["/.well-known/jwks.json", "/.well-known/oauth-authorization-server"]);
        let no_headers = http::HeaderMap::new();
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        assert!(matches!(rt.block_on(signed.credential(None, None, &no_headers)), Err(PropagationError::NoCaller)));
        let fixed = Propagation::from_config(
            &PropagationConfig::static_header(StaticCredentialConfig::new("x-api-key", "k")),
            "https://gw/mcp",
            "http://up/mcp",
        )
        .expect("static");
        let (name, value) = rt.block_on(fixed.credential(None, None, &no_headers)).expect("ok").expect("header");
        assert_eq!((name.as_str(), value.to_str().expect("ascii")), ("x-api-key", "k"));
        assert_eq!(fixed.mode(), "static");
    }

    #[test]
    fn inbound_credentials_are_removed() {
        let mut h = http::HeaderMap::new();
        for name in INBOUND_CREDENTIALS {
            h.insert(*name, HeaderValue::from_static("secret"));
        }
        h.insert("mcp-method", HeaderValue::from_static("tools/call"));
        strip_inbound_credentials(&mut h);
        assert_eq!(h.len(), 1);
    }
}
