//! # mcp-enterprise-dpop
//!
//! RFC 9449 DPoP for MCP resource servers (SEP-1932): sender-constrained access tokens, so a stolen
//! token is useless without the client's private key.
//!
//! **Guarantee**: a request reaches the inner service only with `Authorization: DPoP <token>` and
//! exactly one `DPoP` proof that is a compact JWS with `typ` `dpop+jwt`, an allowed asymmetric
//! `alg`, a public `jwk` (no private parts) that fits the algorithm and verifies the signature,
//! `jti`/`htm`/`htu`/`iat`/`ath` present, `htm` = the method, `htu` = the external request URI
//! (RFC 3986-normalised, query and fragment ignored), `iat` within the window (±300 s at most),
//! `ath` = SHA-256 of the token, a valid server nonce when nonces are required, a `jti` not seen
//! before (a bounded memory store by default; shared through Redis with feature `redis`) — and a token that the [`TokenValidator`] accepts (issuer,
//! audience, lifetime) whose `cnf.jkt` is the proof key's RFC 7638 thumbprint.
//!
//! Every refusal is `401` with `WWW-Authenticate: DPoP error="invalid_dpop_proof" | "invalid_token"
//! | "use_dpop_nonce", algs="…", resource_metadata="…"` (and `DPoP-Nonce` where due); every response
//! carries `Date`.
//!
//! Nonces are stateless (AES-256-GCM-sealed timestamps, rotating keys), so replicas sharing the
//! key accept each other's nonces with no shared store. The client side ([`DpopSigner`],
//! [`DpopClientLayer`]) signs a fresh proof per request and follows server nonces.
//!
//! ```
//! use std::sync::Arc;
//! use mcp_enterprise_dpop::{DpopLayer, DpopSigner, ClientKeyAlg, ExternalOrigin, StaticKeyValidator, SystemClock};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // tokens from one issuer whose public keys are known; proofs for https://mcp.example.com
//! let issuer_key = DpopSigner::generate(ClientKeyAlg::Es256)?; // stands in for the IdP's key here
//! let jwks = serde_json::json!({"keys": [issuer_key.public_jwk()]});
//! let validator = StaticKeyValidator::new(
//!     "https://idp.example.com", vec!["https://mcp.example.com/mcp".into()], &jwks, Arc::new(SystemClock))?;
//! let dpop = DpopLayer::builder(Arc::new(validator), ExternalOrigin::Fixed("https://mcp.example.com".into())).build()?;
//! assert_eq!(dpop.metadata_contribution(), mcp_enterprise_core::MetadataContribution::new()
//!     .dpop_algs(dpop.algorithms().iter().map(|a| a.as_str())).dpop_required(true)
//!     .authorization_server("https://idp.example.com"));
//!
//! // the client side: a fresh proof for every request
//! let client = DpopSigner::generate(ClientKeyAlg::Es256)?;
//! let proof = client.proof("POST", "https://mcp.example.com/mcp", Some("the-access-token"), None)?;
//! assert_eq!(proof.split('.').count(), 3);
//! # Ok(()) }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

mod client;
mod clock;
mod config;
mod error;
mod future;
/// `htu` normalisation: core's.
mod htu {
    pub(crate) use mcp_enterprise_core::dpop::htu::{is_normal_origin, is_plain_path, normalize};
}
/// Proof keys: core's.
mod jwk {
    pub(crate) use mcp_enterprise_core::dpop::jwk::{ProofAlg, ProofKey, jwk_thumbprint};
}
mod layer;
mod nonce;
mod proof;
mod replay;
mod service;
mod validator;

pub use client::{ClientKeyAlg, DpopClient, DpopClientLayer, DpopSigner, SignError};
pub use config::{DpopConfig, NonceConfig, NonceModeConfig, StaticValidatorConfig};
pub use error::{DpopConfigError, DpopError};
pub use future::ResponseFuture;
pub use layer::{
    BearerMode, DEFAULT_EXTENSION_ID, DEFAULT_REPLAY_CAPACITY, DpopLayer, DpopLayerBuilder, ExternalOrigin, NonceMode,
};
pub use mcp_enterprise_core::clock::{Clock, ManualClock, SystemClock};
pub use mcp_enterprise_core::dpop::htu::{matches as htu_matches, normalize as normalize_htu};
pub use mcp_enterprise_core::dpop::jwk::{ProofAlg, jwk_thumbprint};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use mcp_enterprise_core::redis::{
    DPOP_REPLAY_PREFIX as DEFAULT_REDIS_PREFIX, RedisClient, RedisReplayStore, RedisSettings, Unavailable,
};
pub use nonce::{NonceError, NonceKey, NonceKeys};
pub use proof::access_token_hash;
pub use replay::{BoxFuture, MemoryReplayStore, ReplayError, ReplayStore};
pub use service::Dpop;
pub use validator::{BoundToken, StaticKeyValidator, TokenError, TokenValidator};

#[cfg(test)]
mod tests;
