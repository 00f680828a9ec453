//! [`Pack`] and [`PackBuilder`]: every configured extension, joined once.

use mcp_enterprise_audit::AuditLayer;
use mcp_enterprise_core::auth::AuthChain;
use mcp_enterprise_core::metadata::ProtectedResourceMetadataBuilder;
use mcp_enterprise_core::preauth::PreAuthLimitLayer;
use mcp_enterprise_core::{ExtensionSet, ExtensionSetBuilder, InspectLayer, NegotiateLayer, ProtectedResourceMetadata};
use mcp_enterprise_dpop::{BearerMode, DpopLayer};
use mcp_enterprise_integrity::IntegrityLayer;
use mcp_enterprise_policy::PolicyLayer;
use mcp_enterprise_sso::SsoLayer;
use mcp_enterprise_workload_identity::{WorkloadIdentityLayer, WorkloadIdentitySetup};

use crate::error::PackError;
use crate::layer::PackLayer;

/// The authentication layers, outermost first: workload identity, DPoP, SSO; each armed to pass
/// the requests it does not handle to the next one only when that one authenticates.
pub(crate) type Auth = AuthChain<WorkloadIdentityLayer, AuthChain<DpopLayer, SsoLayer>>;

/// The pack: every configured extension, its advertised extensions and its RFC 9728 document,
/// composed once. Make its tower layer with [`layer`](Self::layer).
#[derive(Debug, Clone)]
pub struct Pack {
    pub(crate) inspect: InspectLayer,
    pub(crate) negotiate: NegotiateLayer,
    pub(crate) extensions: ExtensionSet,
    pub(crate) metadata: Option<ProtectedResourceMetadata>,
    pub(crate) auth: Auth,
    pub(crate) sso: Option<SsoLayer>,
    pub(crate) dpop: Option<DpopLayer>,
    pub(crate) workload_identity: Option<WorkloadIdentitySetup>,
    pub(crate) audit: Option<AuditLayer>,
    pub(crate) policy: Option<PolicyLayer>,
    pub(crate) integrity: Option<IntegrityLayer>,
    pub(crate) pre_auth_limit: Option<PreAuthLimitLayer>,
    pub(crate) mcp_path: String,
}

impl Pack {
    /// Starts a pack: inspection with its defaults, MCP at `/mcp`, no other layer.
    pub fn builder() -> PackBuilder {
        PackBuilder {
            mcp_path: "/mcp".to_owned(),
            inspect: InspectLayer::new(),
            extensions: ExtensionSet::builder(),
            required: Vec::new(),
            sso: None,
            dpop: None,
            workload_identity: None,
            audit: None,
            policy: None,
            integrity: None,
            pre_auth_limit: None,
        }
    }

    /// The tower layer putting the whole pack around a service, audit outermost.
    pub fn layer(&self) -> PackLayer {
        PackLayer::new(self.clone())
    }

    /// The extensions advertised in `initialize` / `server/discover`.
    pub fn extensions(&self) -> &ExtensionSet {
        &self.extensions
    }

    /// The RFC 9728 protected resource metadata (served by the layer), when an authentication
    /// layer is configured.
    pub fn metadata(&self) -> Option<&ProtectedResourceMetadata> {
        self.metadata.as_ref()
    }

    /// The path the MCP endpoint is served at.
    pub fn mcp_path(&self) -> &str {
        &self.mcp_path
    }

    /// The audit layer, when configured.
    pub fn audit(&self) -> Option<&AuditLayer> {
        self.audit.as_ref()
    }

    /// The SSO layer, when configured.
    pub fn sso(&self) -> Option<&SsoLayer> {
        self.sso.as_ref()
    }

    /// The DPoP layer, when configured.
    pub fn dpop(&self) -> Option<&DpopLayer> {
        self.dpop.as_ref()
    }

    /// The policy layer, when configured.
    pub fn policy(&self) -> Option<&PolicyLayer> {
        self.policy.as_ref()
    }

    /// The integrity layer, when configured.
    pub fn integrity(&self) -> Option<&IntegrityLayer> {
        self.integrity.as_ref()
    }

    /// The pre-authentication limit, when configured (an embedder serving more than this stack,
    /// such as the token endpoint beside it, puts it around those too).
    pub fn pre_auth_limit(&self) -> Option<&PreAuthLimitLayer> {
        self.pre_auth_limit.as_ref()
    }

    /// The workload identity setup (its SEP-1933 token endpoint is served beside the MCP
    /// endpoint, at [`TokenEndpoint::paths`](mcp_enterprise_workload_identity::TokenEndpoint::paths)).
    pub fn workload_identity(&self) -> Option<&WorkloadIdentitySetup> {
        self.workload_identity.as_ref()
    }

    /// Whether any authentication layer is configured.
    pub fn authenticates(&self) -> bool {
        mcp_enterprise_core::auth::Authenticator::authenticates(&self.auth)
    }
}

/// Builds a [`Pack`]. Each layer is optional; their order is fixed (see the crate docs).
#[derive(Debug)]
#[must_use]
pub struct PackBuilder {
    mcp_path: String,
    inspect: InspectLayer,
    extensions: ExtensionSetBuilder,
    required: Vec<String>,
    sso: Option<SsoLayer>,
    dpop: Option<DpopLayer>,
    workload_identity: Option<WorkloadIdentitySetup>,
    audit: Option<AuditLayer>,
    policy: Option<PolicyLayer>,
    integrity: Option<IntegrityLayer>,
    pre_auth_limit: Option<PreAuthLimitLayer>,
}

impl PackBuilder {
    /// The path the MCP endpoint is served at (default `/mcp`); names the resource in the
    /// metadata when DPoP is the only authentication layer.
    pub fn mcp_path(mut self, path: &str) -> Result<Self, PackError> {
        if !path.starts_with('/') || (path.len() > 1 && path.ends_with('/')) {
            return Err(PackError::InvalidPath(path.to_owned()));
        }
        path.clone_into(&mut self.mcp_path);
        Ok(self)
    }

    /// Replaces the inspection layer (body limit, session capacity).
    pub fn inspect(mut self, layer: InspectLayer) -> Self {
        self.inspect = layer;
        self
    }

    /// The extensions to advertise besides the layers' own (vendor prefix, extra extensions).
    pub fn extensions(mut self, base: ExtensionSetBuilder) -> Self {
        self.extensions = base;
        self
    }

    /// Marks an extension (one of the advertised ones) as required of clients.
    pub fn require(mut self, id: impl Into<String>) -> Self {
        self.required.push(id.into());
        self
    }

    /// OAuth 2.1 bearer tokens from enterprise IdPs.
    pub fn sso(mut self, layer: SsoLayer) -> Self {
        self.sso = Some(layer);
        self
    }

    /// Sender-constrained (DPoP) tokens; outside SSO.
    pub fn dpop(mut self, layer: DpopLayer) -> Self {
        self.dpop = Some(layer);
        self
    }

    /// Workload identity (direct mode and/or the SEP-1933 token endpoint's tokens); outermost of
    /// the authentication layers.
    pub fn workload_identity(mut self, setup: WorkloadIdentitySetup) -> Self {
        self.workload_identity = Some(setup);
        self
    }

    /// The tamper-evident trail; outermost of all.
    pub fn audit(mut self, layer: AuditLayer) -> Self {
        self.audit = Some(layer);
        self
    }

    /// Cedar authorization of calls and list filtering; inside authentication.
    pub fn policy(mut self, layer: PolicyLayer) -> Self {
        self.policy = Some(layer);
        self
    }

    /// Tool-definition integrity (list answers checked against a lock file, calls to changed
    /// definitions refused); inside policy, next to the service, so it sees the upstream's whole
    /// list answers.
    pub fn integrity(mut self, layer: IntegrityLayer) -> Self {
        self.integrity = Some(layer);
        self
    }

    /// Requests per client address, counted before any credential is looked at: right inside
    /// audit (which records each refusal), outside everything else.
    pub fn pre_auth_limit(mut self, layer: PreAuthLimitLayer) -> Self {
        self.pre_auth_limit = Some(layer);
        self
    }

    /// Composes the extension set, the RFC 9728 document and the authentication chain.
    pub fn build(self) -> Result<Pack, PackError> {
        if let Some(dpop) = &self.dpop
            && dpop.bearer_mode() == BearerMode::AlsoBearer
            && self.sso.is_none()
        {
            return Err(PackError::BearerWithoutSso);
        }
        if let Some(endpoint) = self.workload_identity.as_ref().and_then(WorkloadIdentitySetup::token_endpoint)
            && endpoint.paths().contains(&self.mcp_path.as_str())
        {
            return Err(PackError::TokenEndpointAtMcpPath(self.mcp_path));
        }
        let mut set = self.extensions;
        let mut metadata: Option<ProtectedResourceMetadataBuilder> = None;
        if let Some(sso) = &self.sso {
            set = sso.add_extensions(set).map_err(PackError::Sso)?;
            metadata = Some(
                ProtectedResourceMetadata::builder(sso.resource())
                    .map_err(PackError::Extensions)?
                    .contribute(sso.metadata_contribution()),
            );
        }
        if let Some(dpop) = &self.dpop {
            set = dpop.add_extensions(set).map_err(PackError::Dpop)?;
            let builder = match metadata {
                Some(b) => b,
                None => ProtectedResourceMetadata::builder(&format!("{}{}", dpop.origin(), self.mcp_path))
                    .map_err(PackError::Extensions)?,
            };
            metadata = Some(builder.contribute(dpop.metadata_contribution()));
        }
        if let Some(wi) = &self.workload_identity {
            set = wi.add_extensions(set).map_err(PackError::WorkloadIdentity)?;
            let builder = match metadata {
                Some(b) => b,
                None => ProtectedResourceMetadata::builder(wi.layer().resource()).map_err(PackError::Extensions)?,
            };
            metadata = Some(builder.contribute(wi.metadata_contribution()));
        }
        if let Some(audit) = &self.audit {
            set = audit.add_extensions(set).map_err(PackError::Extensions)?;
        }
        if let Some(policy) = &self.policy {
            set = policy.add_extensions(set).map_err(PackError::Extensions)?;
        }
        if let Some(integrity) = &self.integrity {
            set = integrity.add_extensions(set).map_err(PackError::Extensions)?;
        }
        for id in &self.required {
            set = set.require(id).map_err(PackError::Extensions)?;
        }
        let extensions = set.build();
        let auth = AuthChain::new(
            self.workload_identity.as_ref().map(|w| w.layer().clone()),
            Some(AuthChain::new(self.dpop.clone(), self.sso.clone())),
        );
        Ok(Pack {
            inspect: self.inspect,
            negotiate: NegotiateLayer::new(extensions.clone()),
            extensions,
            metadata: metadata.map(ProtectedResourceMetadataBuilder::build),
            auth,
            sso: self.sso,
            dpop: self.dpop,
            workload_identity: self.workload_identity,
            audit: self.audit,
            policy: self.policy,
            integrity: self.integrity,
            pre_auth_limit: self.pre_auth_limit,
            mcp_path: self.mcp_path,
        })
    }
}
