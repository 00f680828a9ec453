//! `upstream.propagation`: what the gateway tells an upstream about the caller. The caller's own
//! credentials are never forwarded; the gateway presents one of its own instead (or nothing).
//!
//! It is a per-upstream setting (it lives under the upstream's section) so that several upstreams
//! can each choose their own mode.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How the caller's identity reaches the upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PropagationConfig {
    /// The mode. `none`: the upstream learns nothing about the caller; `signed_assertion`: a
    /// short-lived JWT minted by the gateway per request; `static`: the gateway's own credential
    /// for this upstream.
    #[serde(default)]
    pub mode: PropagationMode,
    /// Settings of `signed_assertion` (all have defaults).
    pub signed_assertion: Option<SignedAssertionConfig>,
    /// Settings of `static` (required in that mode).
    #[serde(rename = "static")]
    pub static_credential: Option<StaticCredentialConfig>,
}

/// The propagation modes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PropagationMode {
    /// Nothing: the upstream sees no credential at all.
    #[default]
    None,
    /// A JWT the gateway signs for each request (`iss` = the gateway, `aud` = the upstream,
    /// `sub`, `act`, scopes, tenant, auth method, `jti`, ≤ 60 s), sent as `Authorization: Bearer`;
    /// the gateway serves its JWKS and RFC 8414 metadata. Needs an authentication section.
    SignedAssertion,
    /// The gateway's own credential for the upstream (a header from a secret reference).
    Static,
}

/// The algorithm the gateway signs assertions with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[non_exhaustive]
pub enum AssertionAlgorithm {
    /// ECDSA P-256 with SHA-256.
    #[default]
    ES256,
    /// Ed25519.
    EdDSA,
}

/// `signed_assertion` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct SignedAssertionConfig {
    /// The gateway's issuer identifier (`iss`), an http(s) URL without query or fragment; its
    /// metadata is served at `/.well-known/oauth-authorization-server` + its path and its keys at
    /// `<issuer path>/.well-known/jwks.json`. Default: the origin of `resource`.
    #[schemars(url)]
    pub issuer: Option<String>,
    /// The audience (`aud`). Default: the upstream URL.
    pub audience: Option<String>,
    /// Signing algorithm.
    pub algorithm: AssertionAlgorithm,
    /// Lifetime of each assertion, 1–60 seconds.
    #[schemars(range(min = 1, max = 60))]
    pub lifetime_secs: u64,
    /// A PKCS#8 PEM private key (P-256 for ES256, Ed25519 for EdDSA). Absent: a key is generated
    /// at start and rotated every `rotation_secs`.
    pub key_file: Option<String>,
    /// How often a generated key is replaced, seconds (at least 60). The next key is published
    /// one rotation ahead, so verifiers know it before it signs.
    #[schemars(range(min = 60))]
    pub rotation_secs: u64,
    /// How long a replaced key stays published, seconds (at least the lifetime).
    pub rotation_grace_secs: u64,
}

impl Default for SignedAssertionConfig {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            algorithm: AssertionAlgorithm::ES256,
            lifetime_secs: 60,
            key_file: None,
            rotation_secs: 3600,
            rotation_grace_secs: 300,
        }
    }
}

/// `static` settings: one header the gateway adds to every upstream request.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StaticCredentialConfig {
    /// The header name (default `authorization`).
    #[serde(default = "default_static_header")]
    pub header: String,
    /// Its value, normally a secret reference such as `Bearer ${env:UPSTREAM_TOKEN}`.
    #[schemars(extend("writeOnly" = true))]
    pub value: String,
}

fn default_static_header() -> String {
    "authorization".to_owned()
}

impl std::fmt::Debug for StaticCredentialConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredentialConfig").field("header", &self.header).field("value", &"***").finish()
    }
}

impl StaticCredentialConfig {
    /// A header with a value.
    pub fn new(header: &str, value: &str) -> Self {
        Self { header: header.to_owned(), value: value.to_owned() }
    }
}

impl PropagationConfig {
    /// `signed_assertion` with default settings.
    pub fn signed_assertion(settings: SignedAssertionConfig) -> Self {
        Self { mode: PropagationMode::SignedAssertion, signed_assertion: Some(settings), static_credential: None }
    }

    /// `static` with this header.
    pub fn static_header(header: StaticCredentialConfig) -> Self {
        Self { mode: PropagationMode::Static, signed_assertion: None, static_credential: Some(header) }
    }
}
