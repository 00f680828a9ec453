//! Serde configuration (`deny_unknown_fields`: a typo is an error, never a silently ignored
//! setting) and the `from_config` builders.
//!
//! ```json
//! {
//!   "resource": "https://mcp.example.com/mcp",
//!   "issuers": [
//!     {"issuer": "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC",
//!      "rules": [{"name": "payments-agents", "subject": {"glob": "system:serviceaccount:payments:*"},
//!                 "claims": {"/kubernetes.io/namespace": {"exact": "payments"}}, "scopes": ["mcp:tools"]}],
//!      "forward_claims": ["kubernetes.io"]},
//!     {"spiffe_trust_domain": "prod.example.org", "bundle_file": "/etc/spiffe/bundle.jwks",
//!      "rules": [{"name": "agents", "subject": {"glob": "spiffe://prod.example.org/ns/*/sa/agent"}}]}
//!   ],
//!   "direct": {"max_token_lifetime_secs": 3600},
//!   "authorization_server": {"issuer": "https://mcp.example.com", "token_path": "/oauth/token"}
//! }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
pub use mcp_enterprise_core::jwks::JwksConfig;
use mcp_enterprise_core::jwks::JwksSettings;
use mcp_enterprise_core::outbound::{Egress, TlsSettings};
use mcp_enterprise_core::{ExtensionSetBuilder, MetadataContribution};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::WorkloadTokenSource;
use crate::endpoint::{IssuedTokens, TokenEndpoint};
use crate::error::WorkloadConfigError;
use crate::grant::GrantValidator;
use crate::layer::{OtherTokens, WorkloadIdentityLayer};
use crate::pattern::Pattern;
use crate::replay::MemoryReplayStore;
use crate::rules::WorkloadRule;
use crate::signing::SigningKey;
use crate::trust::{IssuerKeys, TrustPolicy, TrustedIssuer};

/// The egress proxy and extra trusted roots issuers are reached with.
pub(crate) type Outbound = (Egress, TlsSettings);

/// The server side: trust policy, direct mode, and the optional token endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct WorkloadIdentityConfig {
    /// The fronted MCP server's canonical URI: direct-mode tokens and minted tokens name it as
    /// their audience.
    #[cfg_attr(feature = "schemars", schemars(url))]
    pub resource: String,
    /// Trusted issuers and SPIFFE trust domains, with their workload rules.
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
    /// Direct mode (workload JWTs as bearer credentials); absent: off.
    pub direct: Option<DirectConfig>,
    /// The SEP-1933 token endpoint; absent: off.
    pub authorization_server: Option<AuthorizationServerConfig>,
    /// Key cache timing.
    #[serde(default)]
    pub jwks: JwksConfig,
    /// Timeout of each fetch (discovery, keys), seconds. Default 5.
    pub http_timeout_secs: Option<u64>,
    /// Clock skew tolerated, seconds. Default 60.
    pub leeway_secs: Option<u64>,
    /// Largest accepted workload token, bytes. Default 16 384.
    pub max_token_bytes: Option<usize>,
}

/// One trusted issuer (`issuer`) or SPIFFE trust domain (`spiffe_trust_domain`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema), schemars(rename = "WorkloadIssuerConfig"))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct IssuerConfig {
    /// An https issuer (exact `iss`). Keys: OIDC discovery unless `jwks_uri`, `jwks` or
    /// `jwks_file` is set.
    #[cfg_attr(feature = "schemars", schemars(url))]
    pub issuer: Option<String>,
    /// A SPIFFE trust domain (e.g. `prod.example.org`); needs `bundle`, `bundle_file` or
    /// `bundle_endpoint`.
    pub spiffe_trust_domain: Option<String>,
    /// A JWKS URL (no discovery).
    #[cfg_attr(feature = "schemars", schemars(url))]
    pub jwks_uri: Option<String>,
    /// An inline JWKS.
    pub jwks: Option<Value>,
    /// A JWKS file.
    pub jwks_file: Option<PathBuf>,
    /// An inline SPIFFE trust bundle.
    pub bundle: Option<Value>,
    /// A SPIFFE trust bundle file.
    pub bundle_file: Option<PathBuf>,
    /// An https SPIFFE bundle endpoint.
    #[cfg_attr(feature = "schemars", schemars(url))]
    pub bundle_endpoint: Option<String>,
    /// Allowed algorithms (default RS/PS 256-512, ES256, ES384, EdDSA).
    pub algorithms: Option<Vec<String>>,
    /// Workload rules; the first match wins. None: no workload of this issuer is accepted.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Top-level claims copied into the principal (e.g. `kubernetes.io`).
    #[serde(default)]
    pub forward_claims: Vec<String>,
    /// **Insecure**: allow plain http on `127.0.0.1` (tests).
    #[serde(default)]
    pub insecure_http_loopback: bool,
}

/// One workload rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema), schemars(rename = "WorkloadRuleConfig"))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RuleConfig {
    /// The rule's name.
    pub name: String,
    /// The subject pattern.
    pub subject: PatternConfig,
    /// Other claims by JSON Pointer (e.g. `/kubernetes.io/namespace`) and their patterns.
    #[serde(default)]
    pub claims: BTreeMap<String, PatternConfig>,
    /// Scopes granted.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Resources tokens may be granted for (default: all of the authorization server's).
    #[serde(default)]
    pub resources: Vec<String>,
}

/// A pattern: `{"exact": "…"}`, `{"prefix": "…"}` or `{"glob": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema), schemars(rename = "WorkloadPatternConfig"))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PatternConfig {
    /// Equal to.
    Exact(String),
    /// Starting with.
    Prefix(String),
    /// Matching the glob (`*` one segment, `**` anything, `?` one character other than `/` and
    /// `:`; see `mcp_enterprise_core::glob::SegmentGlob`).
    Glob(String),
    /// `"any"`: every value (an explicit choice; e.g. every user of an IdP, narrowed by `claims`).
    Any,
}

/// Direct mode.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema), schemars(rename = "WorkloadDirectConfig"))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DirectConfig {
    /// Longest accepted `exp - iat`, seconds. Default 3600.
    pub max_token_lifetime_secs: Option<u64>,
    /// `jti`s remembered at once. Default 100 000.
    pub replay_capacity: Option<usize>,
    /// **Insecure**: a token may be presented again until it expires.
    #[serde(default)]
    pub insecure_allow_token_reuse: bool,
    /// The extension name under the vendor prefix. Default `workload-identity`.
    pub extension_name: Option<String>,
}

/// The token endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AuthorizationServerConfig {
    /// The issuer identifier (the origin the endpoint is served on, e.g. `https://mcp.example.com`).
    #[cfg_attr(feature = "schemars", schemars(url))]
    pub issuer: String,
    /// Token endpoint path. Default `/oauth/token`.
    pub token_path: Option<String>,
    /// JWKS path. Default `/oauth/jwks`.
    pub jwks_path: Option<String>,
    /// Access token lifetime, seconds. Default 300.
    pub access_token_ttl_secs: Option<u64>,
    /// Longest accepted assertion lifetime, seconds. Default 3600.
    pub max_assertion_lifetime_secs: Option<u64>,
    /// A PEM PKCS#8 P-256 signing key (default: a new key at start-up).
    pub signing_key_file: Option<PathBuf>,
    /// Assertion `jti`s remembered at once. Default 100 000.
    pub replay_capacity: Option<usize>,
    /// The advertised extension id. Default `io.modelcontextprotocol/auth/wif`.
    pub extension_id: Option<String>,
    /// **Insecure**: an assertion may be presented again until it expires (workload assertions;
    /// never ID-JAGs).
    #[serde(default)]
    pub insecure_allow_assertion_reuse: bool,
    /// **Insecure**: allow a plain-http issuer on `127.0.0.1` (tests).
    #[serde(default)]
    pub insecure_http_loopback: bool,
    /// More resources tokens may be issued for; `resource` always is one, and so is every
    /// route's resource when this is the top level's authorization server (routes need not be
    /// listed: a route without a `workload_identity` section accepts this server's tokens and
    /// names it in its RFC 9728 document).
    #[serde(default)]
    pub resources: Vec<String>,
    /// Enterprise-Managed Authorization (SEP-990): ID-JAGs from enterprise IdPs at this token
    /// endpoint; absent: off.
    pub id_jag: Option<IdJagConfig>,
    /// How far the `iat` of a token request's DPoP proof (RFC 9449 §5: the issued token is then
    /// bound to the proof's key) may be from now, seconds. Default 60, at most 300.
    pub dpop_proof_window_secs: Option<u64>,
}

/// Enterprise-Managed Authorization: which enterprise IdPs' ID-JAGs are accepted, for which
/// users, and which clients may present them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct IdJagConfig {
    /// Trusted enterprise IdPs: `issuer` (https; keys by OIDC discovery unless `jwks_uri`, `jwks`
    /// or `jwks_file`), `algorithms`, `rules` over users (`subject`, `claims` such as
    /// `{"/groups": {"exact": "mcp-users"}}`, capping `resources` and `scopes`; no rule: no user),
    /// `forward_claims` (user claims such as `groups` carried into access tokens; `email` always is).
    pub idps: Vec<IssuerConfig>,
    /// Clients registered at this authorization server (client_secret_basic /
    /// client_secret_post / private_key_jwt). May be empty with `client_id_metadata_documents`.
    #[serde(default)]
    pub clients: Vec<IdJagClientConfig>,
    /// Opt-in: URL client ids (Client ID Metadata Documents) for `private_key_jwt`. Off by default.
    pub client_id_metadata_documents: Option<CimdConfig>,
    /// Longest accepted ID-JAG lifetime (`exp - iat`), seconds. Default 300, at most 3600.
    pub max_lifetime_secs: Option<u64>,
    /// ID-JAG `jti`s remembered at once (without a shared Redis store). Default 100 000.
    pub replay_capacity: Option<usize>,
}

/// Client ID Metadata Documents (CIMD): a client id that is an https URL under one of
/// `allowed_prefixes` is resolved by fetching the JSON document at that URL (through the
/// outbound client: egress, CA bundle, 10 s timeout); its `client_id` must equal the URL, and its
/// `jwks` or `jwks_uri` (https) give the keys for the `private_key_jwt` client assertion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CimdConfig {
    /// Where URL client ids may point: https URL prefixes ending in `/` after the host (e.g.
    /// `https://clients.acme.example/`); at least one. No prefix, no fetch: a URL elsewhere is
    /// refused without a request.
    pub allowed_prefixes: Vec<String>,
    /// Largest document accepted, bytes. Default 5120, 256..=65536.
    pub max_bytes: Option<usize>,
    /// How long a fetched document is used, seconds. Default 300, at most 86400.
    pub cache_ttl_secs: Option<u64>,
    /// Documents kept at once. Default 1000, at most 100 000.
    pub cache_capacity: Option<usize>,
}

/// A client registered for the ID-JAG grant.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct IdJagClientConfig {
    /// The client id (the ID-JAG's `client_id` must equal it).
    pub client_id: String,
    /// Its secret, for `client_secret_basic` / `client_secret_post` (use a `${env:…}` or
    /// `${file:…}` reference; only a digest is kept). Exactly one of `client_secret`, `jwks` and
    /// `jwks_uri`.
    #[cfg_attr(feature = "schemars", schemars(extend("writeOnly" = true)))]
    pub client_secret: Option<String>,
    /// Its public keys (a JWK Set), for `private_key_jwt` (RFC 7523 §2.2): the client signs a
    /// short-lived assertion (`iss` = `sub` = the client id, `aud` this issuer or the token
    /// endpoint, `exp` at most 300 s after `iat`, a single-use `jti`).
    pub jwks: Option<serde_json::Value>,
    /// Where its public keys are published (https; plain http on loopback only with the
    /// authorization server's `insecure_http_loopback`), for `private_key_jwt` like `jwks`:
    /// fetched through the outbound client (egress, CA bundle) when first needed, cached per
    /// the response's caching headers, refetched (rate-limited) for an unknown `kid`.
    #[cfg_attr(feature = "schemars", schemars(url))]
    pub jwks_uri: Option<String>,
}

impl std::fmt::Debug for IdJagClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdJagClientConfig").field("client_id", &self.client_id).finish_non_exhaustive()
    }
}

/// The client side: the token source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TokenSourceConfig {
    /// The workload JWT file (projected service-account token, JWT-SVID).
    pub token_file: PathBuf,
    /// The authorization server's token endpoint.
    #[cfg_attr(feature = "schemars", schemars(url))]
    pub token_endpoint: String,
    /// The MCP server's canonical URI.
    #[cfg_attr(feature = "schemars", schemars(url))]
    pub resource: String,
    /// Scopes to request.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Seconds before expiry a new token is fetched. Default 30.
    pub refresh_margin_secs: Option<u64>,
    /// Timeout of the token request, seconds. Default 10.
    pub http_timeout_secs: Option<u64>,
    /// **Insecure**: allow a plain-http token endpoint on `127.0.0.1` (tests).
    #[serde(default)]
    pub insecure_http_loopback: bool,
}

impl PatternConfig {
    fn pattern(&self) -> Result<Pattern, WorkloadConfigError> {
        match self {
            Self::Exact(s) => Ok(Pattern::exact(s)),
            Self::Prefix(s) => Pattern::prefix(s),
            Self::Glob(s) => Pattern::glob(s),
            Self::Any => Ok(Pattern::any()),
        }
    }
}

fn read_json(path: &Path) -> Result<Value, WorkloadConfigError> {
    let err = |reason: String| WorkloadConfigError::File { path: path.display().to_string(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| err(e.to_string()))
}

impl RuleConfig {
    fn rule(&self) -> Result<WorkloadRule, WorkloadConfigError> {
        let mut rule = WorkloadRule::new(&self.name, self.subject.pattern()?);
        for (pointer, pattern) in &self.claims {
            rule = rule.claim(pointer, pattern.pattern()?)?;
        }
        Ok(rule.scopes(self.scopes.iter().cloned())?.resources(self.resources.iter().cloned()))
    }
}

impl IssuerConfig {
    fn trusted(&self) -> Result<TrustedIssuer, WorkloadConfigError> {
        let name = self.issuer.clone().or_else(|| self.spiffe_trust_domain.clone()).unwrap_or_default();
        let err = |reason: &str| WorkloadConfigError::Issuer { issuer: name.clone(), reason: reason.to_owned() };
        let jwks_sources = [self.jwks_uri.is_some(), self.jwks.is_some(), self.jwks_file.is_some()];
        let bundle_sources = [self.bundle.is_some(), self.bundle_file.is_some(), self.bundle_endpoint.is_some()];
        let count = |s: &[bool]| s.iter().filter(|b| **b).count();
        let mut issuer = match (&self.issuer, &self.spiffe_trust_domain) {
            (Some(iss), None) => {
                if count(&bundle_sources) > 0 {
                    return Err(err("bundle settings belong to a spiffe_trust_domain"));
                }
                if count(&jwks_sources) > 1 {
                    return Err(err("set at most one of jwks_uri, jwks and jwks_file"));
                }
                let keys = if let Some(url) = &self.jwks_uri {
                    IssuerKeys::Url(url.clone())
                } else if let Some(doc) = &self.jwks {
                    IssuerKeys::Static(doc.clone())
                } else if let Some(path) = &self.jwks_file {
                    IssuerKeys::Static(read_json(path)?)
                } else {
                    IssuerKeys::Discover
                };
                TrustedIssuer::new(iss, keys)
            }
            (None, Some(td)) => {
                if count(&jwks_sources) > 0 {
                    return Err(err("a SPIFFE trust domain takes bundle, bundle_file or bundle_endpoint"));
                }
                let keys = match (&self.bundle, &self.bundle_file, &self.bundle_endpoint) {
                    (Some(doc), None, None) => IssuerKeys::Static(doc.clone()),
                    (None, Some(path), None) => IssuerKeys::Static(read_json(path)?),
                    (None, None, Some(url)) => IssuerKeys::Url(url.clone()),
                    (None, None, None) => return Err(err("a SPIFFE trust domain needs its trust bundle")),
                    _ => return Err(err("set exactly one of bundle, bundle_file and bundle_endpoint")),
                };
                TrustedIssuer::spiffe(td, keys)
            }
            _ => return Err(err("set exactly one of issuer and spiffe_trust_domain")),
        };
        if let Some(names) = &self.algorithms {
            let algs = names
                .iter()
                .map(|n| n.parse::<Algorithm>().map_err(|_| err(&format!("unknown algorithm {n:?}"))))
                .collect::<Result<Vec<_>, _>>()?;
            issuer = issuer.algorithms(&algs)?;
        }
        for rule in &self.rules {
            issuer = issuer.rule(rule.rule()?);
        }
        for claim in &self.forward_claims {
            issuer = issuer.forward_claim(claim);
        }
        if self.insecure_http_loopback {
            issuer = issuer.insecure_http_loopback();
        }
        Ok(issuer)
    }
}

impl TrustPolicy {
    /// The trust policy of a configuration.
    pub fn from_config(cfg: &WorkloadIdentityConfig) -> Result<Self, WorkloadConfigError> {
        Self::from_issuers(cfg, &cfg.issuers, None)
    }

    /// A policy trusting no workload issuer (with the timing settings of `cfg`).
    fn empty(cfg: &WorkloadIdentityConfig, outbound: Option<&Outbound>) -> Result<Self, WorkloadConfigError> {
        let mut b = TrustPolicy::builder().jwks(cfg.jwks.settings(JwksSettings::default()));
        if let Some((egress, tls)) = outbound {
            b = b.outbound(egress.clone(), tls.clone());
        }
        if let Some(s) = cfg.http_timeout_secs {
            b = b.http_timeout(Duration::from_secs(s));
        }
        b.build_allow_empty()
    }

    /// A trust policy over `issuers` with the timing settings of `cfg`.
    pub(crate) fn from_issuers(
        cfg: &WorkloadIdentityConfig,
        issuers: &[IssuerConfig],
        outbound: Option<&Outbound>,
    ) -> Result<Self, WorkloadConfigError> {
        let mut b = TrustPolicy::builder();
        if let Some((egress, tls)) = outbound {
            b = b.outbound(egress.clone(), tls.clone());
        }
        for issuer in issuers {
            b = b.issuer(issuer.trusted()?);
        }
        b = b.jwks(cfg.jwks.settings(JwksSettings::default()));
        if let Some(s) = cfg.http_timeout_secs {
            b = b.http_timeout(Duration::from_secs(s));
        }
        if let Some(n) = cfg.max_token_bytes {
            b = b.max_token_bytes(n);
        }
        b.build()
    }
}

/// What a [`WorkloadIdentityConfig`] builds: the server layer and, when configured, the token
/// endpoint (which the layer trusts).
#[derive(Debug, Clone)]
pub struct WorkloadIdentitySetup {
    layer: WorkloadIdentityLayer,
    token_endpoint: Option<TokenEndpoint>,
}

impl WorkloadIdentitySetup {
    /// Builds everything a configuration describes (`jti`s remembered in memory).
    pub fn from_config(cfg: &WorkloadIdentityConfig) -> Result<Self, WorkloadConfigError> {
        Self::from_config_with_replay(cfg, None)
    }

    /// [`from_config`](Self::from_config) with the `jti`s of direct tokens and grant assertions
    /// remembered in `replay` (e.g. a shared `RedisReplayStore` of `core`, so single use holds
    /// across replicas) instead of memory.
    pub fn from_config_with_replay(
        cfg: &WorkloadIdentityConfig,
        replay: Option<Arc<dyn crate::replay::ReplayStore>>,
    ) -> Result<Self, WorkloadConfigError> {
        Self::build(cfg, replay, None)
    }

    /// [`from_config_with_replay`](Self::from_config_with_replay) reaching issuers and IdPs
    /// (discovery, keys) through `egress`, trusting `tls`'s extra roots (the pack's `egress`
    /// section).
    pub fn from_config_outbound(
        cfg: &WorkloadIdentityConfig,
        replay: Option<Arc<dyn crate::replay::ReplayStore>>,
        egress: Egress,
        tls: TlsSettings,
    ) -> Result<Self, WorkloadConfigError> {
        Self::build(cfg, replay, Some(&(egress, tls)))
    }

    fn build(
        cfg: &WorkloadIdentityConfig,
        replay: Option<Arc<dyn crate::replay::ReplayStore>>,
        outbound: Option<&Outbound>,
    ) -> Result<Self, WorkloadConfigError> {
        if cfg.direct.is_none() && cfg.authorization_server.is_none() {
            return Err(WorkloadConfigError::NothingAccepted);
        }
        // an authorization server for ID-JAGs only needs no workload issuer
        let id_jag_only = cfg.issuers.is_empty()
            && cfg.direct.is_none()
            && cfg.authorization_server.as_ref().is_some_and(|a| a.id_jag.is_some());
        let trust = if id_jag_only {
            TrustPolicy::empty(cfg, outbound)?
        } else {
            TrustPolicy::from_issuers(cfg, &cfg.issuers, outbound)?
        };
        let leeway = Duration::from_secs(cfg.leeway_secs.unwrap_or(60));
        let token_endpoint = match &cfg.authorization_server {
            None => None,
            Some(a) => {
                let token_path = a.token_path.as_deref().unwrap_or("/oauth/token");
                let token_url = format!("{}{token_path}", a.issuer.trim_end_matches('/'));
                let mut g = GrantValidator::builder(trust.clone(), &a.issuer, &token_url)
                    .resource(&cfg.resource)
                    .leeway(leeway)
                    .max_assertion_lifetime(Duration::from_secs(a.max_assertion_lifetime_secs.unwrap_or(3600)));
                if let Some(store) = &replay {
                    g = g.replay_store(store.clone());
                } else if let Some(n) = a.replay_capacity {
                    g = g.replay_store(Arc::new(MemoryReplayStore::new(n)));
                }
                if a.insecure_http_loopback {
                    g = g.insecure_http_loopback();
                }
                if a.insecure_allow_assertion_reuse {
                    g = g.insecure_allow_assertion_reuse();
                }
                for r in &a.resources {
                    g = g.resource(r);
                }
                let mut e = TokenEndpoint::builder(g.build()?)
                    .access_token_ttl(Duration::from_secs(a.access_token_ttl_secs.unwrap_or(300)));
                if let Some(p) = &a.jwks_path {
                    e = e.jwks_path(p);
                }
                if let Some(path) = &a.signing_key_file {
                    let pem = std::fs::read_to_string(path).map_err(|err| WorkloadConfigError::File {
                        path: path.display().to_string(),
                        reason: err.to_string(),
                    })?;
                    e = e.signing_key(SigningKey::from_pkcs8_pem(&pem)?);
                }
                if let Some(id) = &a.extension_id {
                    e = e.extension_id(id);
                }
                if let Some(j) = &a.id_jag {
                    e = e.id_jag(crate::config_id_jag::id_jag_validator(cfg, a, j, leeway, replay.clone(), outbound)?);
                }
                if let Some(secs) = a.dpop_proof_window_secs {
                    e = e.dpop_iat_window(Duration::from_secs(secs));
                }
                if let Some(store) = &replay {
                    e = e.dpop_replay_store(store.clone());
                }
                Some(e.build()?)
            }
        };
        let mut b = WorkloadIdentityLayer::builder(&cfg.resource).leeway(leeway);
        if let Some(d) = &cfg.direct {
            b = b.trust(trust).max_token_lifetime(Duration::from_secs(d.max_token_lifetime_secs.unwrap_or(3600)));
            if let Some(store) = &replay {
                b = b.replay_store(store.clone());
            } else if let Some(n) = d.replay_capacity {
                b = b.replay_store(Arc::new(MemoryReplayStore::new(n)));
            }
            if d.insecure_allow_token_reuse {
                b = b.insecure_allow_token_reuse();
            }
            if let Some(name) = &d.extension_name {
                b = b.extension_name(name);
            }
        }
        if let Some(e) = &token_endpoint {
            b = b.accept_issued_tokens(e.issued_tokens());
        }
        Ok(Self { layer: b.build()?, token_endpoint })
    }

    /// For a server without a section of its own that another server's authorization server
    /// issues tokens for (a route of the same gateway): a layer accepting that server's access
    /// tokens for `resource` (and naming it in the RFC 9728 metadata), no token endpoint.
    pub fn for_issued_tokens(resource: &str, issued: IssuedTokens) -> Result<Self, WorkloadConfigError> {
        let layer = WorkloadIdentityLayer::builder(resource).accept_issued_tokens(issued).build()?;
        Ok(Self { layer, token_endpoint: None })
    }

    /// The authorization server whose access tokens the layer accepts (its own token endpoint's,
    /// or another server's), when it accepts any.
    pub fn issued_tokens(&self) -> Option<IssuedTokens> {
        self.layer.inner.issued.clone()
    }

    /// The server layer.
    pub fn layer(&self) -> &WorkloadIdentityLayer {
        &self.layer
    }

    /// The token endpoint, when the authorization server side is enabled.
    pub fn token_endpoint(&self) -> Option<&TokenEndpoint> {
        self.token_endpoint.as_ref()
    }

    /// The same with another [`OtherTokens`] mode for the layer (an embedding server with an
    /// inner SSO layer passes other tokens on).
    #[must_use]
    pub fn with_other_tokens(mut self, mode: OtherTokens) -> Self {
        self.layer = self.layer.with_other_tokens(mode);
        self
    }

    /// Adds the direct-mode extension (vendor prefix) and, with the token endpoint, the WIF
    /// extension.
    pub fn add_extensions(&self, mut set: ExtensionSetBuilder) -> Result<ExtensionSetBuilder, WorkloadConfigError> {
        set = self.layer.add_extensions(set)?;
        if let Some(e) = &self.token_endpoint {
            set = e.add_extensions(set)?;
        }
        Ok(set)
    }

    /// The RFC 9728 metadata contribution (the token endpoint's issuer as authorization server).
    pub fn metadata_contribution(&self) -> MetadataContribution {
        self.layer.metadata_contribution()
    }
}

impl WorkloadTokenSource {
    /// Builds a token source from its configuration.
    pub fn from_config(cfg: &TokenSourceConfig) -> Result<Self, WorkloadConfigError> {
        let mut b = WorkloadTokenSource::builder(&cfg.token_file, &cfg.token_endpoint, &cfg.resource);
        for scope in &cfg.scopes {
            b = b.scope(scope);
        }
        if let Some(s) = cfg.refresh_margin_secs {
            b = b.refresh_margin(Duration::from_secs(s));
        }
        if let Some(s) = cfg.http_timeout_secs {
            b = b.http_timeout(Duration::from_secs(s));
        }
        if cfg.insecure_http_loopback {
            b = b.insecure_http_loopback();
        }
        b.build()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    fn full() -> Value {
        json!({
            "resource": "https://mcp.example.com/mcp",
            "issuers": [
                {"issuer": "https://k8s.example.com", "forward_claims": ["kubernetes.io"],
                 "rules": [{"name": "payments", "subject": {"glob": "system:serviceaccount:payments:*"},
                            "claims": {"/kubernetes.io/namespace": {"exact": "payments"}}, "scopes": ["mcp:tools"]}]},
                {"spiffe_trust_domain": "prod.example.org",
                 "bundle": {"keys": [{"kty": "EC", "crv": "P-256", "kid": "b", "x": X, "y": Y, "use": "jwt-svid"}]},
                 "rules": [{"name": "agents", "subject": {"glob": "spiffe://prod.example.org/ns/*/sa/agent"}}]}
            ],
            "direct": {"max_token_lifetime_secs": 600},
            "authorization_server": {"issuer": "https://mcp.example.com", "access_token_ttl_secs": 120}
        })
    }

    #[tokio::test]
    async fn a_full_config_builds() {
        let cfg: WorkloadIdentityConfig = serde_json::from_value(full()).expect("valid");
        let wi = WorkloadIdentitySetup::from_config(&cfg).expect("builds");
        assert!(wi.layer().direct_mode());
        let endpoint = wi.token_endpoint().expect("token endpoint");
        assert_eq!(endpoint.token_endpoint_url(), "https://mcp.example.com/oauth/token");
        assert_eq!(endpoint.paths(), ["/oauth/token", "/oauth/jwks", "/.well-known/oauth-authorization-server"]);
        let meta = endpoint.metadata();
        assert_eq!(meta["grant_types_supported"], json!(["urn:ietf:params:oauth:grant-type:jwt-bearer"]));
        assert_eq!(meta["token_endpoint_auth_methods_supported"], json!(["none"]));
        assert_eq!(meta["jwks_uri"], json!("https://mcp.example.com/oauth/jwks"));
        assert_eq!(meta["scopes_supported"], json!(["mcp:tools"]));
        let set = wi.add_extensions(mcp_enterprise_core::ExtensionSet::builder()).expect("ids").build();
        assert_eq!(set.advertised().get("io.modelcontextprotocol/auth/wif"), Some(&json!({})));
        assert_eq!(
            set.advertised().get("io.github.mcp-enterprise/workload-identity"),
            Some(&json!({"issuers": ["https://k8s.example.com", "spiffe://prod.example.org"]}))
        );
        let prm = mcp_enterprise_core::ProtectedResourceMetadata::builder(&cfg.resource)
            .expect("uri")
            .contribute(wi.metadata_contribution())
            .build();
        assert_eq!(prm.to_json()["authorization_servers"], json!(["https://mcp.example.com"]));
    }

    fn refused(mut v: Value, edit: impl FnOnce(&mut Value)) -> String {
        edit(&mut v);
        match serde_json::from_value::<WorkloadIdentityConfig>(v) {
            Err(e) => e.to_string(),
            Ok(cfg) => WorkloadIdentitySetup::from_config(&cfg).expect_err("refused").to_string(),
        }
    }

    #[tokio::test]
    async fn mistakes_are_refused() {
        let e = refused(full(), |v| v["issuers"][0]["audience"] = json!("x"));
        assert!(e.contains("unknown field `audience`"), "{e}");
        let e = refused(full(), |v| v["issuers"][0]["rules"][0]["subject"] = json!({"regex": ".*"}));
        assert!(e.contains("unknown variant `regex`"), "{e}");
        let e = refused(full(), |v| v["issuers"][0]["rules"][0]["subject"] = json!({"glob": "**"}));
        assert!(e.contains("only of wildcards"), "{e}");
        let e = refused(full(), |v| v["issuers"][0]["issuer"] = json!("spiffe://prod.example.org"));
        assert!(e.contains("SPIFFE trust domain"), "{e}");
        let e = refused(full(), |v| v["issuers"][1]["bundle"] = Value::Null);
        assert!(e.contains("needs its trust bundle"), "{e}");
        let e = refused(full(), |v| v["issuers"][0]["spiffe_trust_domain"] = json!("x.org"));
        assert!(e.contains("exactly one of issuer and spiffe_trust_domain"), "{e}");
        let e = refused(full(), |v| v["issuers"][0]["algorithms"] = json!(["none"]));
        assert!(e.contains("unknown algorithm"), "{e}");
        let e = refused(full(), |v| v["issuers"][0]["algorithms"] = json!(["HS256"]));
        assert!(e.contains("HMAC"), "{e}");
        let e = refused(full(), |v| v["issuers"][0]["issuer"] = json!("http://k8s.example.com"));
        assert!(e.contains("https"), "{e}");
        let e = refused(full(), |v| {
            v.as_object_mut().map(|o| (o.remove("direct"), o.remove("authorization_server")));
        });
        assert!(e.contains("enable direct mode"), "{e}");
        let e = refused(full(), |v| v["authorization_server"]["access_token_ttl_secs"] = json!(86_400));
        assert!(e.contains("access_token_ttl"), "{e}");
        let e = refused(full(), |v| v["direct"]["max_token_lifetime_secs"] = json!(0));
        assert!(e.contains("max_token_lifetime"), "{e}");
        let e = refused(full(), |v| v["authorization_server"]["issuer"] = json!("http://mcp.example.com"));
        assert!(e.contains("authorization server issuer"), "{e}");
        let e = refused(full(), |v| {
            v["issuers"][0]["rules"][0]["claims"] = json!({"kubernetes.io.namespace": {"exact": "x"}})
        });
        assert!(e.contains("JSON Pointer"), "{e}");
    }

    fn id_jag_only() -> Value {
        json!({
            "resource": "https://mcp.example.com/mcp",
            "authorization_server": {
                "issuer": "https://mcp.example.com", "resources": ["https://mcp.example.com/crm"],
                "id_jag": {
                    "idps": [{"issuer": "https://acme.okta.com", "algorithms": ["RS256"], "forward_claims": ["groups"],
                              "rules": [{"name": "eng", "subject": "any", "claims": {"/groups": {"exact": "eng"}},
                                         "scopes": ["mcp:tools"]}]}],
                    "clients": [{"client_id": "agent", "client_secret": "s3cret"}]
                }
            }
        })
    }

    #[tokio::test]
    async fn an_id_jag_only_authorization_server_builds_and_advertises() {
        let cfg: WorkloadIdentityConfig = serde_json::from_value(id_jag_only()).expect("valid");
        let wi = WorkloadIdentitySetup::from_config(&cfg).expect("builds without workload issuers");
        let endpoint = wi.token_endpoint().expect("token endpoint");
        let v = endpoint.id_jag_validator().expect("ID-JAG validator");
        assert_eq!(v.resources(), ["https://mcp.example.com/mcp", "https://mcp.example.com/crm"]);
        let meta = endpoint.metadata();
        assert_eq!(
            meta["authorization_grant_profiles_supported"],
            json!(["urn:ietf:params:oauth:grant-profile:id-jag"])
        );
        assert_eq!(meta["scopes_supported"], json!(["mcp:tools"]));
        let set = wi.add_extensions(mcp_enterprise_core::ExtensionSet::builder()).expect("ids").build();
        assert_eq!(set.advertised().get(crate::EMA_EXTENSION_ID), Some(&json!({})));
        // the secret never shows in Debug output
        assert!(!format!("{cfg:?}").contains("s3cret"));
    }

    #[tokio::test]
    async fn id_jag_mistakes_are_refused() {
        let refused_jag = |edit: &dyn Fn(&mut Value)| refused(id_jag_only(), |v| edit(v));
        let e = refused_jag(&|v| v["authorization_server"]["id_jag"]["clients"] = json!([]));
        assert!(e.contains("registered client"), "{e}");
        let e = refused_jag(&|v| v["authorization_server"]["id_jag"]["idps"] = json!([]));
        assert!(e.contains("enterprise IdP"), "{e}");
        let e = refused_jag(&|v| v["authorization_server"]["id_jag"]["idps"][0]["forward_claims"] = json!(["sub"]));
        assert!(e.contains("\"sub\""), "{e}");
        let e = refused_jag(&|v| v["authorization_server"]["id_jag"]["idps"][0]["algorithms"] = json!(["HS256"]));
        assert!(e.contains("HMAC"), "{e}");
        let e = refused_jag(&|v| v["authorization_server"]["id_jag"]["max_lifetime_secs"] = json!(7200));
        assert!(e.contains("max_lifetime"), "{e}");
        let e = refused_jag(&|v| v["authorization_server"]["id_jag"]["audience"] = json!("x"));
        assert!(e.contains("unknown field `audience`"), "{e}");
        let e = refused_jag(&|v| {
            v["authorization_server"]["id_jag"]["idps"][0] =
                json!({"spiffe_trust_domain": "prod.example.org", "bundle": {"keys": []}})
        });
        assert!(e.contains("bundle") || e.contains("SPIFFE"), "{e}");
    }

    #[tokio::test]
    async fn token_source_config() {
        let cfg: TokenSourceConfig = serde_json::from_value(json!({
            "token_file": "/var/run/secrets/tokens/mcp", "token_endpoint": "https://mcp.example.com/oauth/token",
            "resource": "https://mcp.example.com/mcp", "scopes": ["mcp:tools"]}))
        .expect("valid");
        assert!(WorkloadTokenSource::from_config(&cfg).is_ok());
        let http = TokenSourceConfig { token_endpoint: "http://mcp.example.com/token".into(), ..cfg.clone() };
        assert!(WorkloadTokenSource::from_config(&http).is_err());
        let bad_scope = TokenSourceConfig { scopes: vec!["a b".into()], ..cfg };
        assert!(WorkloadTokenSource::from_config(&bad_scope).is_err());
        assert!(
            serde_json::from_value::<TokenSourceConfig>(json!({"token_file": "f", "token_endpoint": "e",
            "resource": "r", "scope": "x"}))
            .is_err()
        );
    }
}
