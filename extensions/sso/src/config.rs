//! Serde configuration (`deny_unknown_fields`: a typo is an error, never a silently ignored
//! setting) and [`SsoLayer::from_config`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::Algorithm;
pub use mcp_enterprise_core::jwks::JwksConfig;
use mcp_enterprise_core::jwks::JwksSettings;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::claims::ClaimMapping;
use crate::error::SsoConfigError;
use crate::issuer::{Introspection, Issuer, Keys, Secret, TypMode};
use crate::layer::{AdvertisedExtension, SsoLayer};
use crate::scopes::{ScopePolicy, ScopeRule};

/// The SSO layer's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SsoConfig {
    /// The MCP server's canonical URI; tokens must name it as audience (unless an issuer sets its own).
    #[cfg_attr(feature = "schemars", schemars(url))]
    pub resource: String,
    /// Trusted issuers.
    pub issuers: Vec<IssuerConfig>,
    /// Scope rules and hierarchy.
    #[serde(default)]
    pub scopes: ScopesConfig,
    /// Where principal parts are read from the claims.
    #[serde(default)]
    pub claims: ClaimsConfig,
    /// JWKS cache timing.
    #[serde(default)]
    pub jwks: JwksConfig,
    /// Validated tokens remembered (0 disables). Default 10 000.
    pub token_cache_capacity: Option<usize>,
    /// Largest accepted token in bytes. Default 16 384.
    pub max_token_bytes: Option<usize>,
    /// Timeout of each call to an IdP, seconds. Default 5.
    pub http_timeout_secs: Option<u64>,
    /// Official extensions to advertise.
    #[serde(default)]
    pub advertise: Vec<AdvertiseConfig>,
}

/// An extension to advertise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum AdvertiseConfig {
    /// `io.modelcontextprotocol/enterprise-managed-authorization`.
    EnterpriseManagedAuthorization,
    /// `io.modelcontextprotocol/oauth-client-credentials`.
    OauthClientCredentials,
}

/// One trusted issuer.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema), schemars(rename = "SsoIssuerConfig"))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct IssuerConfig {
    /// The exact issuer identifier.
    #[cfg_attr(feature = "schemars", schemars(url))]
    pub issuer: String,
    /// Accepted audiences (default: the resource).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Allowed algorithms (default RS256, PS256, ES256, ES384, EdDSA).
    pub algorithms: Option<Vec<String>>,
    /// Clock skew tolerated, seconds (default 60).
    pub leeway_secs: Option<u64>,
    /// `typ` strictness.
    pub typ: Option<TypConfig>,
    /// A JWKS URL (no discovery).
    #[cfg_attr(feature = "schemars", schemars(url))]
    pub jwks_uri: Option<String>,
    /// An inline JWKS.
    pub jwks: Option<Value>,
    /// A JWKS file.
    pub jwks_file: Option<PathBuf>,
    /// Introspection of opaque tokens.
    pub introspection: Option<IntrospectionConfig>,
    /// **Insecure**: accept HS256 tokens signed with this shared secret.
    #[cfg_attr(feature = "schemars", schemars(extend("writeOnly" = true)))]
    pub insecure_shared_secret: Option<String>,
    /// **Insecure**: allow a plain-http issuer on a non-loopback host.
    #[serde(default)]
    pub insecure_http: bool,
}

impl std::fmt::Debug for IssuerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerConfig")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("algorithms", &self.algorithms)
            .field("leeway_secs", &self.leeway_secs)
            .field("typ", &self.typ)
            .field("jwks_uri", &self.jwks_uri)
            .field("jwks", &self.jwks)
            .field("jwks_file", &self.jwks_file)
            .field("introspection", &self.introspection)
            .field("insecure_shared_secret", &self.insecure_shared_secret.as_ref().map(|_| "***"))
            .field("insecure_http", &self.insecure_http)
            .finish()
    }
}

/// `typ` strictness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum TypConfig {
    /// Only `at+jwt`.
    Strict,
    /// `at+jwt`, `JWT` or none.
    Lenient,
}

/// Introspection settings.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct IntrospectionConfig {
    /// The endpoint (default: from discovery).
    #[cfg_attr(feature = "schemars", schemars(url))]
    pub endpoint: Option<String>,
    /// The resource server's client id at the IdP.
    pub client_id: String,
    /// Its secret.
    #[cfg_attr(feature = "schemars", schemars(extend("writeOnly" = true)))]
    pub client_secret: String,
    /// Longest reuse of an active answer, seconds (default 60; never beyond `exp`).
    pub max_cache_ttl_secs: Option<u64>,
}

impl std::fmt::Debug for IntrospectionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectionConfig")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .finish()
    }
}

/// Scope rules and hierarchy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ScopesConfig {
    /// Rules; every matching rule's scopes are required.
    #[serde(default)]
    pub rules: Vec<ScopeRuleConfig>,
    /// `broad = [narrower, …]`.
    #[serde(default)]
    pub hierarchy: BTreeMap<String, Vec<String>>,
}

/// One scope rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ScopeRuleConfig {
    /// Method glob (`tools/call`, `*`): `*` any run of characters, `/` included; `?` one character.
    pub method: String,
    /// Tool/prompt name or resource URI glob (`delete_*`, `file:///docs/*`), as for `method`.
    pub name: Option<String>,
    /// Required scopes.
    pub scopes: Vec<String>,
}

/// Claim paths.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ClaimsConfig {
    /// Scope claims (default `scope`, `scp`).
    pub scope: Option<Vec<String>>,
    /// Client id claims (default `client_id`, `azp`).
    pub client_id: Option<Vec<String>>,
    /// Groups claim path (default `groups`).
    pub groups: Option<String>,
    /// Roles claim path (default `roles`).
    pub roles: Option<String>,
    /// Tenant claim path.
    pub tenant: Option<String>,
    /// Claims copied as they are.
    #[serde(default)]
    pub forward: Vec<String>,
    /// Workload subject prefixes (default `spiffe://`, `system:serviceaccount:`).
    pub workload_subject_prefixes: Option<Vec<String>>,
}

fn issuer_from(cfg: &IssuerConfig) -> Result<Issuer, SsoConfigError> {
    let err = |reason: String| SsoConfigError::Issuer { issuer: cfg.issuer.clone(), reason };
    let mut issuer = Issuer::new(&cfg.issuer);
    for aud in &cfg.audiences {
        issuer = issuer.audience(aud);
    }
    if let Some(names) = &cfg.algorithms {
        let algs = names
            .iter()
            .map(|n| n.parse::<Algorithm>().map_err(|_| err(format!("unknown algorithm {n:?}"))))
            .collect::<Result<Vec<_>, _>>()?;
        issuer = issuer.algorithms(&algs)?;
    }
    if let Some(secs) = cfg.leeway_secs {
        issuer = issuer.leeway(Duration::from_secs(secs))?;
    }
    if let Some(typ) = cfg.typ {
        issuer = issuer.typ(match typ {
            TypConfig::Strict => TypMode::Strict,
            TypConfig::Lenient => TypMode::Lenient,
        });
    }
    let sources = [cfg.jwks_uri.is_some(), cfg.jwks.is_some(), cfg.jwks_file.is_some()];
    if sources.iter().filter(|s| **s).count() > 1 {
        return Err(err("set at most one of jwks_uri, jwks and jwks_file".into()));
    }
    if let Some(url) = &cfg.jwks_uri {
        issuer = issuer.keys(Keys::JwksUri(url.clone()));
    }
    if let Some(doc) = &cfg.jwks {
        issuer = issuer.keys(Keys::Static(doc.clone()));
    }
    if let Some(path) = &cfg.jwks_file {
        let text = std::fs::read_to_string(path).map_err(|e| SsoConfigError::StaticJwks {
            issuer: cfg.issuer.clone(),
            reason: format!("{}: {e}", path.display()),
        })?;
        let doc: Value = serde_json::from_str(&text).map_err(|e| SsoConfigError::StaticJwks {
            issuer: cfg.issuer.clone(),
            reason: format!("{}: {e}", path.display()),
        })?;
        issuer = issuer.keys(Keys::Static(doc));
    }
    if let Some(i) = &cfg.introspection {
        let mut intro = Introspection::new(&i.client_id, Secret::new(&i.client_secret));
        if let Some(endpoint) = &i.endpoint {
            intro = intro.endpoint(endpoint);
        }
        if let Some(secs) = i.max_cache_ttl_secs {
            intro = intro.max_cache_ttl(Duration::from_secs(secs));
        }
        issuer = issuer.introspection(intro);
    }
    if let Some(secret) = &cfg.insecure_shared_secret {
        issuer = issuer.insecure_shared_secret(Secret::new(secret));
    }
    if cfg.insecure_http {
        issuer = issuer.insecure_http();
    }
    Ok(issuer)
}

impl SsoLayer {
    /// Builds the layer from its configuration.
    pub fn from_config(cfg: &SsoConfig) -> Result<Self, SsoConfigError> {
        Self::config_builder(cfg, SsoLayer::builder(&cfg.resource))?.build()
    }

    /// Builds the layer from its configuration, reaching identity providers through `egress`
    /// and trusting `tls`'s extra roots.
    pub fn from_config_outbound(
        cfg: &SsoConfig,
        egress: mcp_enterprise_core::outbound::Egress,
        tls: mcp_enterprise_core::outbound::TlsSettings,
    ) -> Result<Self, SsoConfigError> {
        Self::config_builder(cfg, SsoLayer::builder(&cfg.resource).outbound(egress, tls))?.build()
    }

    fn config_builder(
        cfg: &SsoConfig,
        mut b: crate::SsoLayerBuilder,
    ) -> Result<crate::SsoLayerBuilder, SsoConfigError> {
        for issuer in &cfg.issuers {
            b = b.issuer(issuer_from(issuer)?);
        }
        let rules =
            cfg.scopes.rules.iter().map(|r| ScopeRule::new(&r.method, r.name.as_deref(), r.scopes.clone())).collect();
        b = b.scope_policy(ScopePolicy::new(rules, cfg.scopes.hierarchy.clone())?);
        let d = ClaimMapping::default();
        let c = &cfg.claims;
        b = b.claims(ClaimMapping {
            scope: c.scope.clone().unwrap_or(d.scope),
            client_id: c.client_id.clone().unwrap_or(d.client_id),
            groups: c.groups.clone().or(d.groups),
            roles: c.roles.clone().or(d.roles),
            tenant: c.tenant.clone(),
            forward: c.forward.clone(),
            workload_subject_prefixes: c.workload_subject_prefixes.clone().unwrap_or(d.workload_subject_prefixes),
        });
        let jwks = cfg.jwks.settings(JwksSettings::default());
        b = b.jwks_min_refetch_interval(jwks.min_refetch_interval).jwks_max_stale(jwks.max_stale).jwks_ttl(
            jwks.default_ttl,
            jwks.min_ttl,
            jwks.max_ttl,
        );
        if let Some(n) = cfg.token_cache_capacity {
            b = b.token_cache_capacity(n);
        }
        if let Some(n) = cfg.max_token_bytes {
            b = b.max_token_bytes(n);
        }
        if let Some(s) = cfg.http_timeout_secs {
            b = b.http_timeout(Duration::from_secs(s));
        }
        for a in &cfg.advertise {
            b = b.advertise(match a {
                AdvertiseConfig::EnterpriseManagedAuthorization => AdvertisedExtension::EnterpriseManagedAuthorization,
                AdvertiseConfig::OauthClientCredentials => AdvertisedExtension::OauthClientCredentials,
            });
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESOURCE_FOR_TEST: &str = "https://mcp.example.com/mcp";

    #[tokio::test]
    async fn full_config_builds_and_typos_fail() {
        let cfg: SsoConfig = serde_json::from_value(serde_json::json!({
            "resource": "https://mcp.example.com/mcp",
            "issuers": [{"issuer": "https://idp.example.com", "algorithms": ["ES256"], "typ": "strict",
                "introspection": {"client_id": "rs", "client_secret": "s3cret"}}],
            "scopes": {"rules": [{"method": "tools/call", "name": "delete_*", "scopes": ["mcp:admin"]}],
                "hierarchy": {"mcp:admin": ["mcp:tools"]}},
            "claims": {"tenant": "tid"},
            "jwks": {"min_refetch_interval_secs": 1},
            "advertise": ["enterprise-managed-authorization"]
        }))
        .expect("valid");
        let layer = SsoLayer::from_config(&cfg).expect("builds");
        assert_eq!(layer.resource_metadata_url(), "https://mcp.example.com/.well-known/oauth-protected-resource/mcp");
        assert!(!format!("{cfg:?}").contains("s3cret"));
        assert!(!format!("{layer:?}").contains("s3cret"));
        let set = layer.add_extensions(mcp_enterprise_core::ExtensionSet::builder()).expect("ids").build();
        assert_eq!(
            set.advertised().get("io.modelcontextprotocol/enterprise-managed-authorization"),
            Some(&serde_json::json!({}))
        );
        let prm = layer.metadata_contribution();
        let doc = mcp_enterprise_core::ProtectedResourceMetadata::builder(RESOURCE_FOR_TEST)
            .expect("uri")
            .contribute(prm)
            .build();
        assert_eq!(doc.to_json()["authorization_servers"], serde_json::json!(["https://idp.example.com"]));
        assert_eq!(doc.to_json()["scopes_supported"], serde_json::json!(["mcp:admin", "mcp:tools"]));

        let typo = serde_json::from_value::<SsoConfig>(serde_json::json!({
            "resource": "https://mcp.example.com/mcp", "issuers": [{"issuer": "https://i", "audience": "x"}]}));
        assert!(typo.expect_err("typo").to_string().contains("unknown field `audience`"));
        let bad_alg: SsoConfig = serde_json::from_value(serde_json::json!({
            "resource": "https://mcp.example.com/mcp", "issuers": [{"issuer": "https://i", "algorithms": ["none"]}]}))
        .expect("parses");
        assert!(SsoLayer::from_config(&bad_alg).expect_err("none").to_string().contains("unknown algorithm"));
        let hs: SsoConfig = serde_json::from_value(serde_json::json!({
            "resource": "https://mcp.example.com/mcp", "issuers": [{"issuer": "https://i", "algorithms": ["HS256"]}]}))
        .expect("parses");
        assert!(SsoLayer::from_config(&hs).is_err());
        let two_sources: SsoConfig = serde_json::from_value(serde_json::json!({
            "resource": "https://mcp.example.com/mcp",
            "issuers": [{"issuer": "https://i", "jwks_uri": "https://i/jwks", "jwks": {"keys": []}}]}))
        .expect("parses");
        assert!(SsoLayer::from_config(&two_sources).is_err());
    }
}
