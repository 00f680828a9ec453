use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use mcp_enterprise_core::clock::{Clock, SystemClock};
use mcp_enterprise_core::{ExtensionId, ExtensionSetBuilder, MetadataContribution};
use tower_layer::Layer;

use crate::error::DpopConfigError;
use crate::jwk::ProofAlg;
use crate::nonce::NonceKeys;
use crate::replay::ReplayStore;
use crate::service::Dpop;
use crate::validator::TokenValidator;
use mcp_enterprise_core::stats::{Count, Instrumented, Reading};

/// The de-facto extension id used by the conformance suite and SDKs.
pub const DEFAULT_EXTENSION_ID: &str = "io.modelcontextprotocol/auth/dpop";

/// Server nonces.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum NonceMode {
    /// No nonces (the ±5 minute `iat` window and the `jti` replay store defend against replay).
    #[default]
    Off,
    /// Nonces are issued on responses and checked when a proof carries one.
    Optional(NonceKeys),
    /// Every proof must carry a valid nonce (`401 use_dpop_nonce` + `DPoP-Nonce` otherwise).
    Required(NonceKeys),
}

/// Whether plain bearer tokens are also accepted (by an inner layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BearerMode {
    /// Only DPoP: a bearer token is refused here.
    #[default]
    DpopOnly,
    /// Bearer requests pass to the authentication layer inside (e.g. SSO); the DPoP challenge is
    /// added to its 401s. Takes effect once the layer is armed by
    /// [`AuthChain`](mcp_enterprise_core::auth::AuthChain) around a layer that authenticates;
    /// unarmed, such requests are refused with `500` (nothing inside would authenticate them).
    AlsoBearer,
}

/// How the external request URI (for `htu`) is known.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExternalOrigin {
    /// A fixed origin, e.g. `https://mcp.example.com` (the request path is appended).
    Fixed(String),
    /// **Insecure unless a trusted proxy sets them**: `X-Forwarded-Proto` and `X-Forwarded-Host`,
    /// falling back to the fixed origin.
    InsecureTrustForwardedHeaders(String),
}

pub(crate) struct Inner {
    pub(crate) validator: Arc<dyn TokenValidator>,
    pub(crate) origin: ExternalOrigin,
    pub(crate) algorithms: Vec<ProofAlg>,
    pub(crate) iat_window: Duration,
    pub(crate) nonce: NonceMode,
    pub(crate) replay: Option<Arc<dyn ReplayStore>>,
    pub(crate) bearer: BearerMode,
    pub(crate) resource_metadata: Option<String>,
    pub(crate) extension_id: ExtensionId,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) max_proof_bytes: usize,
    /// The origin is fixed and in normal form (the `htu` fast path applies).
    pub(crate) origin_normalised: bool,
    /// Proof headers already checked, by their text (see [`crate::proof::HeaderCache`]).
    pub(crate) headers: crate::proof::HeaderCache,
    /// Proofs refused because their `jti` was seen before.
    pub(crate) replays: Count,
    /// `use_dpop_nonce` challenges sent.
    pub(crate) nonce_challenges: Count,
}

/// Requires DPoP-bound access tokens (RFC 9449 / SEP-1932) on every request and runs every §4.3
/// proof check; inserts the [`Principal`](mcp_enterprise_core::Principal) (auth method DPoP).
#[derive(Clone)]
#[must_use]
pub struct DpopLayer {
    pub(crate) inner: Arc<Inner>,
    /// An authentication layer sits inside (see [`BearerMode::AlsoBearer`]).
    pub(crate) armed: bool,
}

impl mcp_enterprise_core::auth::Authenticator for DpopLayer {}

impl mcp_enterprise_core::auth::PassesOn for DpopLayer {
    fn pass_on(mut self, _: mcp_enterprise_core::auth::InnerAuthenticator) -> Self {
        self.armed = true;
        self
    }
}

impl fmt::Debug for DpopLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopLayer")
            .field("origin", &self.inner.origin)
            .field("algorithms", &self.inner.algorithms)
            .field("iat_window", &self.inner.iat_window)
            .field("bearer", &self.inner.bearer)
            .field("replay", &self.inner.replay.is_some())
            .finish_non_exhaustive()
    }
}

impl Instrumented for DpopLayer {
    fn readings(&self, out: &mut Vec<Reading>) {
        out.push(Reading::counter(
            "mcpe_dpop_replays",
            "DPoP proofs refused because their jti was used before (replay)",
            Vec::new(),
            self.inner.replays.get(),
        ));
        out.push(Reading::counter(
            "mcpe_dpop_nonce_challenges",
            "DPoP requests answered 401 use_dpop_nonce with a fresh DPoP-Nonce",
            Vec::new(),
            self.inner.nonce_challenges.get(),
        ));
    }
}

impl DpopLayer {
    /// Starts a layer: `validator` judges the access tokens, `origin` is the external origin
    /// clients address (`https://mcp.example.com`).
    pub fn builder(validator: Arc<dyn TokenValidator>, origin: ExternalOrigin) -> DpopLayerBuilder {
        DpopLayerBuilder {
            validator,
            origin,
            algorithms: crate::jwk::ProofAlg::ALL.to_vec(),
            iat_window: Duration::from_secs(300),
            nonce: NonceMode::Off,
            replay: None,
            insecure_no_replay_check: false,
            bearer: BearerMode::DpopOnly,
            resource_metadata: None,
            extension_id: DEFAULT_EXTENSION_ID.to_owned(),
            clock: Arc::new(SystemClock),
            max_proof_bytes: 4096,
        }
    }

    /// Whether plain Bearer requests are left to an authentication layer inside.
    pub fn bearer_mode(&self) -> BearerMode {
        self.inner.bearer
    }

    /// The external origin (fixed part).
    pub fn origin(&self) -> &str {
        match &self.inner.origin {
            ExternalOrigin::Fixed(o) | ExternalOrigin::InsecureTrustForwardedHeaders(o) => o,
        }
    }

    /// The accepted proof algorithms.
    pub fn algorithms(&self) -> &[ProofAlg] {
        &self.inner.algorithms
    }

    /// This layer's part of the RFC 9728 metadata.
    pub fn metadata_contribution(&self) -> MetadataContribution {
        let mut c = MetadataContribution::new()
            .dpop_algs(self.inner.algorithms.iter().map(|a| a.as_str()))
            .dpop_required(self.inner.bearer == BearerMode::DpopOnly);
        for issuer in self.inner.validator.issuers() {
            c = c.authorization_server(issuer);
        }
        c
    }

    /// Adds the DPoP extension (settings `{}`) to an extension set.
    pub fn add_extensions(&self, set: ExtensionSetBuilder) -> Result<ExtensionSetBuilder, DpopConfigError> {
        Ok(set.with(self.inner.extension_id.clone(), serde_json::Value::Object(serde_json::Map::new()))?)
    }
}

impl<S> Layer<S> for DpopLayer {
    type Service = Dpop<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Dpop { inner, layer: self.clone() }
    }
}

/// Proof `jti`s the default replay store remembers at once (bounded: when all are live, new
/// proofs are refused rather than a replay let through).
pub const DEFAULT_REPLAY_CAPACITY: usize = 100_000;

/// Builds a [`DpopLayer`].
#[must_use]
pub struct DpopLayerBuilder {
    validator: Arc<dyn TokenValidator>,
    origin: ExternalOrigin,
    algorithms: Vec<ProofAlg>,
    iat_window: Duration,
    nonce: NonceMode,
    replay: Option<Arc<dyn ReplayStore>>,
    /// Set only by [`DpopLayerBuilder::insecure_without_replay_check`].
    insecure_no_replay_check: bool,
    bearer: BearerMode,
    resource_metadata: Option<String>,
    extension_id: String,
    clock: Arc<dyn Clock>,
    max_proof_bytes: usize,
}

impl fmt::Debug for DpopLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopLayerBuilder").field("origin", &self.origin).finish_non_exhaustive()
    }
}

impl DpopLayerBuilder {
    /// The accepted proof algorithms (default: all asymmetric ones).
    pub fn algorithms(mut self, algorithms: &[ProofAlg]) -> Self {
        self.algorithms = algorithms.to_vec();
        self
    }

    /// The `iat` window, at most (and by default) ±300 s.
    pub fn iat_window(mut self, window: Duration) -> Self {
        self.iat_window = window;
        self
    }

    /// Server nonces.
    pub fn nonce(mut self, mode: NonceMode) -> Self {
        self.nonce = mode;
        self
    }

    /// Where each proof's `jti` is remembered for its window, so reuse is refused (default: a
    /// bounded in-memory store of [`DEFAULT_REPLAY_CAPACITY`] entries for this replica; a shared
    /// store such as `RedisReplayStore` for several replicas).
    pub fn replay_store(mut self, store: Arc<dyn ReplayStore>) -> Self {
        self.replay = Some(store);
        self
    }

    /// Remember no proof `jti`s: a captured proof is accepted again within its `iat` window.
    /// Insecure; only for measuring the other checks' cost (the load harness) or where every
    /// proof carries a server nonce that is itself single use.
    pub fn insecure_without_replay_check(mut self) -> Self {
        self.insecure_no_replay_check = true;
        self
    }

    /// Whether bearer tokens may pass to an inner layer.
    pub fn bearer(mut self, mode: BearerMode) -> Self {
        self.bearer = mode;
        self
    }

    /// The RFC 9728 metadata URL for challenges.
    pub fn resource_metadata(mut self, url: impl Into<String>) -> Self {
        self.resource_metadata = Some(url.into());
        self
    }

    /// The advertised extension id (default `io.modelcontextprotocol/auth/dpop`).
    pub fn extension_id(mut self, id: impl Into<String>) -> Self {
        self.extension_id = id.into();
        self
    }

    /// The clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Largest accepted proof (default 4 KiB, enough for an RSA-4096 `jwk`).
    pub fn max_proof_bytes(mut self, bytes: usize) -> Self {
        self.max_proof_bytes = bytes;
        self
    }

    /// Checks and builds.
    pub fn build(self) -> Result<DpopLayer, DpopConfigError> {
        let origin_ok = |o: &str| {
            let uri: Result<http::Uri, _> = o.parse();
            uri.is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https"))
                    && u.authority().is_some()
                    && matches!(u.path(), "" | "/")
                    && u.query().is_none()
            })
        };
        let fixed = match &self.origin {
            ExternalOrigin::Fixed(o) | ExternalOrigin::InsecureTrustForwardedHeaders(o) => o,
        };
        if !origin_ok(fixed) {
            return Err(DpopConfigError::ExternalOrigin(fixed.clone()));
        }
        if self.algorithms.is_empty() {
            return Err(DpopConfigError::NoAlgorithms);
        }
        if self.iat_window > Duration::from_secs(300) {
            return Err(DpopConfigError::IatWindow);
        }
        let extension_id =
            ExtensionId::new(&self.extension_id).or_else(|_| ExtensionId::de_facto(&self.extension_id))?;
        let origin = match self.origin {
            ExternalOrigin::Fixed(o) => ExternalOrigin::Fixed(o.trim_end_matches('/').to_owned()),
            ExternalOrigin::InsecureTrustForwardedHeaders(o) => {
                ExternalOrigin::InsecureTrustForwardedHeaders(o.trim_end_matches('/').to_owned())
            }
        };
        let origin_normalised = match &origin {
            ExternalOrigin::Fixed(o) => crate::htu::is_normal_origin(o),
            ExternalOrigin::InsecureTrustForwardedHeaders(_) => false,
        };
        Ok(DpopLayer {
            inner: Arc::new(Inner {
                origin_normalised,
                headers: crate::proof::HeaderCache::new(crate::proof::HEADER_CACHE_CAPACITY),
                replays: Count::default(),
                nonce_challenges: Count::default(),
                validator: self.validator,
                origin,
                algorithms: self.algorithms,
                iat_window: self.iat_window,
                nonce: self.nonce,
                replay: match (self.replay, self.insecure_no_replay_check) {
                    (_, true) => None,
                    (Some(store), false) => Some(store),
                    (None, false) => Some(Arc::new(crate::replay::MemoryReplayStore::new(DEFAULT_REPLAY_CAPACITY))),
                },
                bearer: self.bearer,
                resource_metadata: self.resource_metadata,
                extension_id,
                clock: self.clock,
                max_proof_bytes: self.max_proof_bytes,
            }),
            armed: false,
        })
    }
}
