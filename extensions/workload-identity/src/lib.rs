//! # mcp-enterprise-workload-identity
//!
//! Workload identity for MCP (SEP-1933): Kubernetes pods, SPIFFE services and other workloads
//! already hold short-lived JWTs signed by their platform; this crate lets them use those instead
//! of client secrets. SEP-1933 adds no duty to the MCP server itself, so the crate serves the three
//! places where workload tokens are actually judged or used:
//!
//! 1. **[`TrustPolicy`]**, shared by the roles below: trusted issuers — https OIDC issuers whose
//!    keys come from OpenID Connect Discovery (or a JWKS URL, or a static JWKS), and SPIFFE trust
//!    domains with their trust bundle — each with [`WorkloadRule`]s over `sub` and other claims
//!    ([`Pattern`]: exact, prefix, glob such as `system:serviceaccount:payments:*` or
//!    `spiffe://prod.example.org/ns/*/sa/agent`). Keys are cached by the core JWKS cache (lazy,
//!    single-flight, rate-limited refetch, bounded staleness).
//! 2. **Direct mode, [`WorkloadIdentityLayer`]**: a server layer accepting a workload JWT as the
//!    bearer credential when its only audience is exactly this server's canonical URI — a vendor
//!    extension (`io.github.mcp-enterprise/workload-identity`), *not* SEP-1933. It also accepts the
//!    access tokens of a co-located token endpoint.
//! 3. **[`GrantValidator`]**: the authorization-server building block — an RFC 7523 §2.1
//!    jwt-bearer grant judged per SEP-1933 with the OAuth error codes; and **[`TokenEndpoint`]**, a
//!    minimal token endpoint minting short-lived, audience-bound ES256 `at+jwt` access tokens, so a
//!    cluster without an enterprise authorization server can use SEP-1933 end to end (advertised as
//!    `io.modelcontextprotocol/auth/wif`).
//! 4. **[`WorkloadTokenSource`] and [`WorkloadTokenLayer`]**: the client side — read the projected
//!    token / JWT-SVID file (again on rotation), make the grant, cache the access token until
//!    shortly before it expires, attach it to outgoing requests. Composes with the `dpop` crate's
//!    client layer (see [`WorkloadTokenLayer`]).
//!
//! **Guarantee** (server layer): a request reaches the inner service only with a token whose
//! signature verifies under a trusted issuer's key of a type fitting its asymmetric, allowed
//! algorithm (`none`, HMAC and `crit` refused; keys never from the token), whose only audience is
//! this server, which is inside `exp`/`nbf`/`iat` (with leeway), lives no longer than the maximum,
//! whose subject matches a workload rule, and whose `jti` was not seen before — or with an access
//! token the co-located token endpoint minted for this server. Refusals are `401` with a `Bearer`
//! challenge and a JSON-RPC error body; the typed [`WorkloadError`] is in the response extensions.
//!
//! 5. **Enterprise-Managed Authorization (SEP-990)** on the same token endpoint:
//!    [`IdJagValidator`] judges ID-JAGs (`typ` `oauth-id-jag+jwt`) from trusted enterprise IdPs
//!    presented by registered clients, and the endpoint mints access tokens for the *employee*
//!    (a `user` principal with `email`, groups...); [`IdJagTokenSource`] and [`IdJagTokenLayer`]
//!    are the client side. The ID-JAG profile lives here, not in a crate of its own, because it
//!    is another assertion profile of the one jwt-bearer token endpoint this crate serves, and it
//!    shares its trust machinery (issuers, key caches, rules, replay store, signing key);
//!    extensions never depend on each other, so a separate crate could not grow this endpoint.
//!
//! A token request with a DPoP proof (RFC 9449 §5, checked by core's `dpop` module: `htm` POST,
//! `htu` the token endpoint, fresh `iat`, single-use `jti`) gets a `DPoP` token bound to the
//! proof's key (`cnf.jkt`); the server layer refuses such a token as a bearer token, and
//! [`IssuedTokens::verify_bound`] lets a DPoP layer judge it.
//!
//! Registered clients authenticate with a secret or with `private_key_jwt` (RFC 7523 §2.2, their
//! public keys registered as a JWKS or a `jwks_uri`; [`JWT_CLIENT_ASSERTION_TYPE`]); opt-in, URL
//! client ids resolve to Client ID Metadata Documents ([`ClientIdMetadataDocuments`]).
//!
//! Out of scope: user tokens from an IdP (the `sso` crate), DPoP proofs at the resource (the
//! `dpop` crate), refresh tokens issued by this authorization server.
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use mcp_enterprise_workload_identity::{
//!     GrantValidator, IssuerKeys, Pattern, TokenEndpoint, TrustPolicy, TrustedIssuer, WorkloadError,
//!     WorkloadIdentityLayer, WorkloadRule,
//! };
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! // trust one Kubernetes cluster (keys by OIDC discovery) and its `payments` service accounts
//! let trust = TrustPolicy::builder()
//!     .issuer(
//!         TrustedIssuer::oidc("https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE")
//!             .rule(WorkloadRule::new("payments", Pattern::glob("system:serviceaccount:payments:*")?)
//!                 .scopes(["mcp:tools"])?)
//!             .forward_claim("kubernetes.io"),
//!     )
//!     .build()?;
//!
//! // the SEP-1933 side: a token endpoint for the MCP server at https://mcp.example.com/mcp
//! let grants = GrantValidator::builder(trust.clone(), "https://mcp.example.com", "https://mcp.example.com/oauth/token")
//!     .resource("https://mcp.example.com/mcp")
//!     .build()?;
//! let token_endpoint = TokenEndpoint::builder(grants).access_token_ttl(Duration::from_secs(300)).build()?;
//!
//! // the server layer: direct mode plus the token endpoint's access tokens
//! let layer = WorkloadIdentityLayer::builder("https://mcp.example.com/mcp")
//!     .trust(trust)
//!     .accept_issued_tokens(token_endpoint.issued_tokens())
//!     .build()?;
//! let mcp_server = ServiceBuilder::new().layer(layer).service(service_fn(|_req: Request<Full<Bytes>>| async {
//!     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
//! }));
//!
//! // no token: 401 with a Bearer challenge pointing at the RFC 9728 metadata
//! let res = mcp_server.clone().oneshot(Request::post("/mcp").body(Full::new(Bytes::new()))?).await?;
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(
//!     res.headers()["www-authenticate"],
//!     r#"Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp""#
//! );
//! assert_eq!(res.extensions().get::<WorkloadError>(), Some(&WorkloadError::MissingToken));
//!
//! // a token endpoint answers the jwt-bearer grant with RFC 6749 errors
//! let grant = Request::post("https://mcp.example.com/oauth/token")
//!     .header("content-type", "application/x-www-form-urlencoded")
//!     .body(Full::new(Bytes::from("grant_type=client_credentials")))?;
//! let res = token_endpoint.oneshot(grant).await?;
//! assert_eq!(res.status(), StatusCode::BAD_REQUEST);
//! # let _ = IssuerKeys::Discover;
//! # Ok(()) }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

mod cimd;
mod client;
mod client_auth;
mod config;
mod config_id_jag;
mod endpoint;
mod error;
mod future;
mod grant;
mod id_jag;
mod id_jag_client;
mod layer;
mod pattern;
mod replay;
mod rules;
mod service;
mod signing;
mod token_cache;
mod trust;
mod verify;

pub use cimd::ClientIdMetadataDocuments;
pub use client::{
    AccessToken, AssertionFile, ServiceTransport, TokenSourceError, TokenTransport, WorkloadToken, WorkloadTokenLayer,
    WorkloadTokenSource, WorkloadTokenSourceBuilder,
};
pub use client_auth::JWT_CLIENT_ASSERTION_TYPE;
pub use config::{
    AuthorizationServerConfig, CimdConfig, DirectConfig, IdJagClientConfig, IdJagConfig, IssuerConfig, JwksConfig,
    PatternConfig, RuleConfig, TokenSourceConfig, WorkloadIdentityConfig, WorkloadIdentitySetup,
};
pub use endpoint::{DEFAULT_WIF_EXTENSION_ID, IssuedTokens, TokenEndpoint, TokenEndpointBuilder};
pub use error::{GrantError, IdJagError, WorkloadConfigError, WorkloadError};
pub use future::ResponseFuture;
pub use grant::{GrantDecision, GrantRequest, GrantValidator, GrantValidatorBuilder, JWT_BEARER_GRANT_TYPE};
pub use id_jag::{
    EMA_EXTENSION_ID, ID_JAG_GRANT_PROFILE, ID_JAG_TOKEN_TYPE, ID_JAG_TYP, IdJagDecision, IdJagValidator,
    IdJagValidatorBuilder, RegisteredClient,
};
pub use id_jag_client::{
    ClientCredentials, IdJagToken, IdJagTokenLayer, IdJagTokenSource, IdJagTokenSourceBuilder, IdpSubject,
};
pub use jsonwebtoken::Algorithm;
pub use layer::{DEFAULT_EXTENSION_NAME, OtherTokens, WorkloadIdentityLayer, WorkloadIdentityLayerBuilder};
pub use mcp_enterprise_core::clock::{Clock, ManualClock, SystemClock};
pub use mcp_enterprise_core::glob::SegmentGlob;
pub use mcp_enterprise_core::jwks::JwtError;
pub use pattern::Pattern;
pub use replay::{BoxFuture, MemoryReplayStore, ReplayError, ReplayStore};
pub use rules::WorkloadRule;
pub use service::WorkloadIdentity;
pub use signing::SigningKey;
pub use trust::{DEFAULT_ALGORITHMS, IssuerKeys, TrustPolicy, TrustPolicyBuilder, TrustedIssuer};

#[cfg(test)]
mod tests;
