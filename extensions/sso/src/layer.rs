use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use mcp_enterprise_core::{ExtensionSetBuilder, MetadataContribution, ProtectedResourceMetadata};
use tower_layer::Layer;

use crate::cache::TokenCache;
use crate::claims::ClaimMapping;
use mcp_enterprise_core::clock::{Clock, SystemClock};
use mcp_enterprise_core::jwks::{HttpClient, JwksCache, JwksSettings, KeySetState};
use mcp_enterprise_core::outbound::{Egress, TlsSettings};
use mcp_enterprise_core::stats::{Count, Instrumented, Reading};

use crate::error::SsoConfigError;
use crate::issuer::Issuer;
use crate::scopes::ScopePolicy;
use crate::service::Sso;
use crate::verify::{TrustedIssuer, Verifier, key_source};

/// Official extensions this layer can advertise through core negotiation (settings `{}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AdvertisedExtension {
    /// `io.modelcontextprotocol/enterprise-managed-authorization` (ID-JAG / SEP-990).
    EnterpriseManagedAuthorization,
    /// `io.modelcontextprotocol/oauth-client-credentials` (SEP-1046).
    OauthClientCredentials,
}

impl AdvertisedExtension {
    /// The extension id.
    pub fn id(self) -> &'static str {
        match self {
            Self::EnterpriseManagedAuthorization => "io.modelcontextprotocol/enterprise-managed-authorization",
            Self::OauthClientCredentials => "io.modelcontextprotocol/oauth-client-credentials",
        }
    }
}

pub(crate) struct Inner {
    pub(crate) verifier: Verifier,
    pub(crate) scopes: ScopePolicy,
    pub(crate) resource: String,
    pub(crate) metadata_url: String,
    pub(crate) advertise: Vec<AdvertisedExtension>,
}

/// An OAuth 2.1 resource server for MCP: every request must carry a valid bearer access token
/// from a trusted issuer, for this resource, with the scopes the MCP operation needs. Inserts a
/// [`Principal`](mcp_enterprise_core::Principal) into the request extensions.
///
/// Place it inside [`InspectLayer`](mcp_enterprise_core::InspectLayer) (scope rules read the
/// parsed method and tool name). A request that already carries a `Principal` (set by an outer
/// DPoP or workload-identity layer) is only checked for scopes.
#[derive(Clone)]
#[must_use]
pub struct SsoLayer {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for SsoLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // secrets (introspection credentials, shared secrets) stay out of the output
        f.debug_struct("SsoLayer")
            .field("resource", &self.inner.resource)
            .field("issuers", &self.inner.verifier.issuers.iter().map(|i| i.config.id()).collect::<Vec<_>>())
            .field("scopes", &self.inner.scopes)
            .finish_non_exhaustive()
    }
}

impl SsoLayer {
    /// Each trusted issuer with the state of its key set (readiness: keys loaded and within
    /// their staleness bound); keys too stale are refetched first (see `JwksCache::probe`).
    pub async fn probe_key_sets(&self) -> Vec<(String, KeySetState)> {
        let mut out = Vec::new();
        for issuer in &self.inner.verifier.issuers {
            out.push((issuer.config.id().to_owned(), issuer.jwks.probe().await));
        }
        out
    }

    /// Starts a layer protecting the MCP server whose canonical URI (RFC 8707 resource, the
    /// audience tokens must name) is `resource`, e.g. `https://mcp.example.com/mcp`.
    pub fn builder(resource: &str) -> SsoLayerBuilder {
        SsoLayerBuilder {
            resource: resource.to_owned(),
            issuers: Vec::new(),
            scopes: ScopePolicy::default(),
            claims: ClaimMapping::default(),
            clock: Arc::new(SystemClock),
            token_cache_capacity: 10_000,
            max_token_bytes: 16 * 1024,
            http_timeout: Duration::from_secs(5),
            jwks: JwksSettings::default(),
            advertise: Vec::new(),
            outbound: None,
        }
    }

    /// Validates an access token without the bearer-only rule: sender-constrained (`cnf.jkt`) tokens
    /// are returned with their key thumbprint. For a DPoP layer, which checks the proof; never use
    /// it to accept a token presented as `Bearer`.
    pub async fn validate_for_dpop(&self, token: &str) -> Result<crate::verify::ValidatedToken, crate::AuthError> {
        if token.len() > self.inner.verifier.max_token_bytes {
            return Err(crate::AuthError::TokenTooLarge(self.inner.verifier.max_token_bytes));
        }
        self.inner.verifier.authenticate(token, true).await.map(|v| (*v).clone())
    }

    /// [`validate_for_dpop`](Self::validate_for_dpop) with the token's SHA-256 already computed
    /// by the caller (the DPoP layer hashes it for `ath`): the cache key, not hashed again.
    /// `sha256` must be the SHA-256 of `token` — it keys the validated-token cache.
    pub async fn validate_hashed_for_dpop(
        &self,
        token: &str,
        sha256: &[u8; 32],
    ) -> Result<crate::verify::ValidatedToken, crate::AuthError> {
        debug_assert_eq!(*sha256, mcp_enterprise_core::jwks::sha256(token.as_bytes()), "the token's digest");
        if token.len() > self.inner.verifier.max_token_bytes {
            return Err(crate::AuthError::TokenTooLarge(self.inner.verifier.max_token_bytes));
        }
        self.inner.verifier.authenticate_hashed(token, *sha256, true).await.map(|v| (*v).clone())
    }

    /// The trusted issuers.
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.inner.verifier.issuers.iter().map(|i| i.config.id())
    }

    /// The canonical resource URI.
    pub fn resource(&self) -> &str {
        &self.inner.resource
    }

    /// The URL of the protected resource metadata (for `resource_metadata` in challenges).
    pub fn resource_metadata_url(&self) -> &str {
        &self.inner.metadata_url
    }

    /// This layer's part of the RFC 9728 metadata: the issuers, the scopes the rules use
    /// (`offline_access` never), bearer in the header.
    pub fn metadata_contribution(&self) -> MetadataContribution {
        let mut c = MetadataContribution::new().scopes(self.inner.scopes.all_scopes());
        for issuer in &self.inner.verifier.issuers {
            c = c.authorization_server(issuer.config.id());
        }
        c
    }

    /// Adds the configured official extensions (settings `{}`) to an extension set.
    pub fn add_extensions(&self, mut set: ExtensionSetBuilder) -> Result<ExtensionSetBuilder, SsoConfigError> {
        for ext in &self.inner.advertise {
            set = set.with_id(ext.id(), serde_json::Value::Object(serde_json::Map::new()))?;
        }
        Ok(set)
    }
}

impl<S> Layer<S> for SsoLayer {
    type Service = Sso<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Sso { inner, layer: self.clone() }
    }
}

/// Builds an [`SsoLayer`].
#[must_use]
pub struct SsoLayerBuilder {
    resource: String,
    issuers: Vec<Issuer>,
    scopes: ScopePolicy,
    claims: ClaimMapping,
    clock: Arc<dyn Clock>,
    token_cache_capacity: usize,
    max_token_bytes: usize,
    http_timeout: Duration,
    jwks: JwksSettings,
    advertise: Vec<AdvertisedExtension>,
    outbound: Option<(Egress, TlsSettings)>,
}

impl fmt::Debug for SsoLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SsoLayerBuilder")
            .field("resource", &self.resource)
            .field("issuers", &self.issuers.len())
            .finish_non_exhaustive()
    }
}

impl Instrumented for SsoLayer {
    fn readings(&self, out: &mut Vec<Reading>) {
        let v = &self.inner.verifier;
        out.push(Reading::counter(
            "mcpe_sso_token_cache_hits",
            "Tokens found in the validated-token cache (no signature check)",
            Vec::new(),
            v.cache_hits.get(),
        ));
        out.push(Reading::counter(
            "mcpe_sso_token_cache_misses",
            "Tokens not in the validated-token cache (verified or introspected)",
            Vec::new(),
            v.cache_misses.get(),
        ));
        for issuer in &v.issuers {
            issuer.jwks.readings(out);
        }
    }
}

impl SsoLayerBuilder {
    /// Trusts an issuer. Repeatable (multi-tenant).
    pub fn issuer(mut self, issuer: Issuer) -> Self {
        self.issuers.push(issuer);
        self
    }

    /// The scope rules.
    pub fn scope_policy(mut self, policy: ScopePolicy) -> Self {
        self.scopes = policy;
        self
    }

    /// Where principal parts are read from the claims.
    pub fn claims(mut self, mapping: ClaimMapping) -> Self {
        self.claims = mapping;
        self
    }

    /// The clock (tests inject a manual one).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How many validated tokens are remembered (0 disables the cache). Default 10 000.
    pub fn token_cache_capacity(mut self, capacity: usize) -> Self {
        self.token_cache_capacity = capacity;
        self
    }

    /// Largest accepted token in bytes (default 16 KiB).
    pub fn max_token_bytes(mut self, bytes: usize) -> Self {
        self.max_token_bytes = bytes;
        self
    }

    /// How identity providers are reached: the forward proxy and extra CA roots (default: the
    /// environment's proxy, `HTTPS_PROXY`/`NO_PROXY`, and the system's roots).
    pub fn outbound(mut self, egress: Egress, tls: TlsSettings) -> Self {
        self.outbound = Some((egress, tls));
        self
    }

    /// Timeout of each call to an identity provider (default 5 s).
    pub fn http_timeout(mut self, timeout: Duration) -> Self {
        self.http_timeout = timeout;
        self
    }

    /// Shortest time between two JWKS fetches caused by unknown kids or failed signatures
    /// (default 10 s).
    pub fn jwks_min_refetch_interval(mut self, interval: Duration) -> Self {
        self.jwks = self.jwks.min_refetch_interval(interval);
        self
    }

    /// How long expired keys keep serving while the IdP is unreachable (default 1 h).
    pub fn jwks_max_stale(mut self, max_stale: Duration) -> Self {
        self.jwks = self.jwks.max_stale(max_stale);
        self
    }

    /// JWKS lifetime when the IdP sends no `Cache-Control: max-age` (default 5 min), and the
    /// bounds any `max-age` is clamped to (default 30 s … 24 h).
    pub fn jwks_ttl(mut self, default: Duration, min: Duration, max: Duration) -> Self {
        self.jwks = self.jwks.ttl(default, min, max);
        self
    }

    /// Advertises an official extension through core negotiation.
    pub fn advertise(mut self, extension: AdvertisedExtension) -> Self {
        if !self.advertise.contains(&extension) {
            self.advertise.push(extension);
        }
        self
    }

    /// Checks everything and builds the layer. Nothing is fetched yet: keys and metadata are
    /// fetched lazily by the first request that needs them.
    pub fn build(self) -> Result<SsoLayer, SsoConfigError> {
        let metadata = ProtectedResourceMetadata::builder(&self.resource)
            .map_err(|e| SsoConfigError::InvalidResource { value: self.resource.clone(), reason: e.to_string() })?
            .build();
        if self.issuers.is_empty() {
            return Err(SsoConfigError::NoIssuers);
        }
        let http = match &self.outbound {
            Some((egress, tls)) => HttpClient::with_outbound(self.http_timeout, egress, tls),
            None => HttpClient::new(self.http_timeout),
        }
        .map_err(|e| SsoConfigError::Tls(e.0))?;
        let mut trusted: Vec<TrustedIssuer> = Vec::new();
        let mut introspecting: Option<String> = None;
        for issuer in self.issuers {
            let issuer = issuer.finish(&self.resource)?;
            if trusted.iter().any(|t| t.config.id() == issuer.id()) {
                return Err(SsoConfigError::DuplicateIssuer(issuer.id().to_owned()));
            }
            if issuer.introspection.is_some() {
                if let Some(first) = &introspecting {
                    return Err(SsoConfigError::AmbiguousIntrospection(first.clone(), issuer.id().to_owned()));
                }
                introspecting = Some(issuer.id().to_owned());
            }
            let source = key_source(&issuer)
                .map_err(|reason| SsoConfigError::StaticJwks { issuer: issuer.id().to_owned(), reason })?;
            let cache = JwksCache::new(issuer.id().to_owned(), source, http.clone(), self.clock.clone(), self.jwks);
            trusted.push(TrustedIssuer::new(issuer, cache));
        }
        let verifier = Verifier {
            issuers: trusted,
            claims: self.claims,
            cache: TokenCache::new(self.token_cache_capacity),
            clock: self.clock,
            max_token_bytes: self.max_token_bytes,
            http,
            cache_hits: Count::default(),
            cache_misses: Count::default(),
        };
        Ok(SsoLayer {
            inner: Arc::new(Inner {
                verifier,
                scopes: self.scopes,
                resource: self.resource,
                metadata_url: metadata.metadata_url().to_owned(),
                advertise: self.advertise,
            }),
        })
    }
}
