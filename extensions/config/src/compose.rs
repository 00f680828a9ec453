//! Building the layers a [`PackConfig`] describes.
//!
//! This crate is the *composition point* of the pack, not an extension layer: it may depend on
//! every extension crate (they never depend on each other) and joins them where one needs
//! another — e.g. the DPoP layer judges access tokens with the SSO layer's issuers.

use std::sync::Arc;

use mcp_enterprise_audit::{AuditLayer, AuditTrail};
use mcp_enterprise_core::preauth::PreAuthLimitLayer;
#[cfg(feature = "redis")]
use mcp_enterprise_core::redis::RedisClient;
use mcp_enterprise_core::{CoreConfig, InspectLayer};
use mcp_enterprise_dpop::{BoundToken, BoxFuture, DpopLayer, ReplayStore, TokenError, TokenValidator};
use mcp_enterprise_integrity::IntegrityLayer;
use mcp_enterprise_policy::{Catalog, PolicyLayer};
use mcp_enterprise_sso::SsoLayer;
use mcp_enterprise_stack::{Pack, PackBuilder};
use mcp_enterprise_workload_identity::{IssuedTokens, WorkloadIdentitySetup};
use serde_json::Value;

use mcp_enterprise_core::outbound;

use crate::error::{ConfigError, LayerError};
use crate::model::PackConfig;

fn start_error(section: &'static str, e: impl Into<LayerError>) -> ConfigError {
    ConfigError::Start { section, source: e.into() }
}

/// Lets the DPoP layer judge access tokens with the SSO layer's issuers, keys and audience rules
/// (the extensions stay independent; this crate joins them).
pub fn sso_token_validator(sso: &SsoLayer) -> Arc<dyn TokenValidator> {
    Arc::new(SsoValidator(sso.clone()))
}

#[derive(Debug)]
struct SsoValidator(SsoLayer);

impl TokenValidator for SsoValidator {
    fn validate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<BoundToken, TokenError>> {
        Box::pin(async move { bound(self.0.validate_for_dpop(token).await) })
    }

    fn validate_hashed<'a>(
        &'a self,
        token: &'a str,
        sha256: &'a [u8; 32],
    ) -> BoxFuture<'a, Result<BoundToken, TokenError>> {
        Box::pin(async move { bound(self.0.validate_hashed_for_dpop(token, sha256).await) })
    }

    fn issuers(&self) -> Vec<String> {
        self.0.issuers().map(str::to_owned).collect()
    }
}

/// Lets the DPoP layer judge the (DPoP-bound) access tokens the co-located token endpoint minted
/// for `resource`, and every other token with `others` (the SSO layer's, when present).
pub fn issued_token_validator(
    issued: IssuedTokens,
    resource: &str,
    others: Option<Arc<dyn TokenValidator>>,
) -> Arc<dyn TokenValidator> {
    Arc::new(IssuedValidator { issued, resource: resource.to_owned(), others })
}

#[derive(Debug)]
struct IssuedValidator {
    issued: IssuedTokens,
    resource: String,
    others: Option<Arc<dyn TokenValidator>>,
}

impl IssuedValidator {
    fn ours(&self, token: &str) -> Result<BoundToken, TokenError> {
        match self.issued.verify_bound(token, &self.resource) {
            Ok((principal, jkt)) => Ok(BoundToken::new(principal, jkt)),
            Err(e) => Err(TokenError::Invalid(e.to_string())),
        }
    }
}

impl TokenValidator for IssuedValidator {
    fn validate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<BoundToken, TokenError>> {
        Box::pin(async move {
            match &self.others {
                Some(others) if !self.issued.is_ours(token) => others.validate(token).await,
                _ => self.ours(token),
            }
        })
    }

    fn validate_hashed<'a>(
        &'a self,
        token: &'a str,
        sha256: &'a [u8; 32],
    ) -> BoxFuture<'a, Result<BoundToken, TokenError>> {
        Box::pin(async move {
            match &self.others {
                Some(others) if !self.issued.is_ours(token) => others.validate_hashed(token, sha256).await,
                _ => self.ours(token),
            }
        })
    }

    fn issuers(&self) -> Vec<String> {
        let mut issuers = vec![self.issued.issuer().to_owned()];
        for i in self.others.iter().flat_map(|o| o.issuers()) {
            if !issuers.contains(&i) {
                issuers.push(i);
            }
        }
        issuers
    }
}

fn bound(
    validated: Result<mcp_enterprise_sso::ValidatedToken, mcp_enterprise_sso::AuthError>,
) -> Result<BoundToken, TokenError> {
    match validated {
        Ok(v) => Ok(BoundToken::new(v.principal, v.jkt)),
        Err(mcp_enterprise_sso::AuthError::IdpUnavailable) => Err(TokenError::Unavailable),
        Err(e) => Err(TokenError::Invalid(e.to_string())),
    }
}

/// The inspection layer of the `core` section.
pub fn inspect(core: &CoreConfig) -> Result<InspectLayer, ConfigError> {
    core.inspect_layer().map_err(|e| start_error("core", e))
}

/// The SSO layer, when the `sso` section is present.
pub fn sso(config: &PackConfig) -> Result<Option<SsoLayer>, ConfigError> {
    let Some(section) = &config.sso else {
        return Ok(None);
    };
    let (egress, tls) = (egress(config)?, idp_tls(config)?);
    SsoLayer::from_config_outbound(section, egress, tls).map(Some).map_err(|e| start_error("sso", e))
}

/// The DPoP layer, when the `dpop` section is present: tokens are judged by `sso` (when given) unless
/// the section has a static validator; challenges name the SSO layer's metadata URL by default.
/// Proof `jti`s are remembered in memory; see [`dpop_shared`] for Redis.
pub fn dpop(config: &PackConfig, sso: Option<&SsoLayer>) -> Result<Option<DpopLayer>, ConfigError> {
    dpop_with_replay(config, sso, None, None)
}

/// [`dpop`], also accepting the DPoP-bound access tokens of the workload identity section's token
/// endpoint (`wi`), for the document's `resource`.
pub fn dpop_with_issued(
    config: &PackConfig,
    sso: Option<&SsoLayer>,
    wi: Option<&WorkloadIdentitySetup>,
) -> Result<Option<DpopLayer>, ConfigError> {
    dpop_with_replay(config, sso, wi, None)
}

fn dpop_with_replay(
    config: &PackConfig,
    sso: Option<&SsoLayer>,
    wi: Option<&WorkloadIdentitySetup>,
    replay: Option<Arc<dyn ReplayStore>>,
) -> Result<Option<DpopLayer>, ConfigError> {
    let Some(section) = &config.dpop else { return Ok(None) };
    let mut section = section.clone();
    if section.resource_metadata.is_none() {
        section.resource_metadata = sso.map(|s| s.resource_metadata_url().to_owned());
    }
    let mut validator = sso.map(sso_token_validator);
    if let Some(issued) = wi.and_then(WorkloadIdentitySetup::issued_tokens) {
        validator = Some(issued_token_validator(issued, wi_resource(config), validator));
    }
    DpopLayer::from_config_with_replay(&section, validator, replay).map(Some).map_err(|e| start_error("dpop", e))
}

/// The resource the workload identity section serves (the document's).
fn wi_resource(config: &PackConfig) -> &str {
    config.workload_identity.as_ref().map_or(config.resource.as_str(), |w| w.resource.as_str())
}

/// The workload identity setup (layer and token endpoint), when the section is present; `jti`s
/// in memory (see [`workload_identity_shared`] for Redis).
pub fn workload_identity(config: &PackConfig) -> Result<Option<WorkloadIdentitySetup>, ConfigError> {
    workload_identity_with_replay(config, None)
}

fn workload_identity_with_replay(
    config: &PackConfig,
    replay: Option<Arc<dyn ReplayStore>>,
) -> Result<Option<WorkloadIdentitySetup>, ConfigError> {
    config
        .workload_identity
        .as_ref()
        .map(|c| {
            WorkloadIdentitySetup::from_config_outbound(c, replay.clone(), egress(config)?, idp_tls(config)?)
                .map_err(|e| start_error("workload_identity", e))
        })
        .transpose()
}

/// A route's workload identity setup when the route has no `workload_identity` section but the
/// top level (`primary`) runs an authorization server: the route accepts that server's access
/// tokens for its own resource and names it in its RFC 9728 document (every route's resource is
/// one the server issues tokens for, see [`PackConfig::route_documents`]).
pub fn route_workload_identity(
    route: &PackConfig,
    primary: Option<&WorkloadIdentitySetup>,
) -> Result<Option<WorkloadIdentitySetup>, ConfigError> {
    if route.workload_identity.is_some() {
        return Ok(None);
    }
    let Some(endpoint) = primary.and_then(WorkloadIdentitySetup::token_endpoint) else { return Ok(None) };
    WorkloadIdentitySetup::for_issued_tokens(&route.resource, endpoint.issued_tokens())
        .map(Some)
        .map_err(|e| start_error("workload_identity", e))
}

/// The one Redis client of the `redis` section (nothing connects yet), when present.
#[cfg(feature = "redis")]
pub fn redis_client(config: &PackConfig) -> Result<Option<RedisClient>, ConfigError> {
    let Some(section) = &config.redis else { return Ok(None) };
    let settings = section.settings().map_err(|e| {
        start_error(
            "redis",
            mcp_enterprise_core::redis::RedisError::new(format!(
                "ca_file {}: {e}",
                section.ca_file.as_deref().unwrap_or_default()
            )),
        )
    })?;
    RedisClient::new(settings).map(Some).map_err(|e| start_error("redis", e))
}

/// The shared replay store of one use of Redis (`redis.dpop_replay`,
/// `redis.workload_identity_replay`), when configured.
#[cfg(feature = "redis")]
fn shared_replay(
    client: Option<&RedisClient>,
    use_: Option<&crate::RedisUseConfig>,
    default_prefix: &str,
) -> Option<Arc<dyn ReplayStore>> {
    let (client, use_) = (client?, use_?);
    let mode = match use_.on_unavailable {
        crate::OnUnavailable::FailOpen => mcp_enterprise_core::redis::Unavailable::FailOpen,
        _ => mcp_enterprise_core::redis::Unavailable::FailClosed,
    };
    let prefix = use_.prefix.clone().unwrap_or_else(|| default_prefix.to_owned());
    Some(Arc::new(
        mcp_enterprise_core::redis::RedisReplayStore::new(client.clone(), prefix)
            .on_unavailable(mode, mcp_enterprise_dpop::DEFAULT_REPLAY_CAPACITY),
    ))
}

/// [`dpop`], with proof `jti`s in Redis when `redis.dpop_replay` is configured (`client` from
/// [`redis_client`]).
#[cfg(feature = "redis")]
pub fn dpop_shared(
    config: &PackConfig,
    sso: Option<&SsoLayer>,
    client: Option<&RedisClient>,
) -> Result<Option<DpopLayer>, ConfigError> {
    dpop_shared_with_issued(config, sso, None, client)
}

/// [`dpop_shared`] also accepting the token endpoint's DPoP-bound tokens (see [`dpop_with_issued`]).
#[cfg(feature = "redis")]
pub fn dpop_shared_with_issued(
    config: &PackConfig,
    sso: Option<&SsoLayer>,
    wi: Option<&WorkloadIdentitySetup>,
    client: Option<&RedisClient>,
) -> Result<Option<DpopLayer>, ConfigError> {
    let use_ = config.redis.as_ref().and_then(|r| r.dpop_replay.as_ref());
    dpop_with_replay(config, sso, wi, shared_replay(client, use_, mcp_enterprise_core::redis::DPOP_REPLAY_PREFIX))
}

/// [`workload_identity`], with `jti`s in Redis when `redis.workload_identity_replay` is
/// configured.
#[cfg(feature = "redis")]
pub fn workload_identity_shared(
    config: &PackConfig,
    client: Option<&RedisClient>,
) -> Result<Option<WorkloadIdentitySetup>, ConfigError> {
    let use_ = config.redis.as_ref().and_then(|r| r.workload_identity_replay.as_ref());
    workload_identity_with_replay(
        config,
        shared_replay(client, use_, mcp_enterprise_core::redis::WORKLOAD_REPLAY_PREFIX),
    )
}

/// Starts the audit trail, when the `audit` section is present. Keep the [`AuditTrail`] alive while
/// serving and shut it down afterwards to seal the trail; one trail directory must have one writer.
pub fn audit(config: &PackConfig) -> Result<Option<(AuditLayer, AuditTrail)>, ConfigError> {
    let Some(section) = &config.audit else { return Ok(None) };
    // the OTLP export goes out through the `egress` proxy, as every other outbound call
    #[cfg(feature = "otlp")]
    let started = AuditLayer::from_config_with_egress(section, &egress(config)?);
    #[cfg(not(feature = "otlp"))]
    let started = AuditLayer::from_config(section);
    started.map(Some).map_err(|e| start_error("audit", e))
}

/// The policy layer, when the `policy` section is present, validated against `catalog` (tools
/// fetched from the upstream, or learned by the layer it replaces) and the section's snapshot.
pub fn policy(config: &PackConfig, catalog: Catalog) -> Result<Option<PolicyLayer>, ConfigError> {
    config
        .policy
        .as_ref()
        .map(|c| PolicyLayer::from_config_with_catalog(c, catalog).map_err(|e| start_error("policy", e)))
        .transpose()
}

/// The integrity layer, when the `integrity` section is present (its lock file read).
pub fn integrity(config: &PackConfig) -> Result<Option<IntegrityLayer>, ConfigError> {
    config
        .integrity
        .as_ref()
        .map(|c| IntegrityLayer::from_config(c).map_err(|e| start_error("integrity", e)))
        .transpose()
}

/// The pre-authentication limit of `listen.pre_auth_limit` (`None`: `insecure_disabled`).
pub fn pre_auth_limit(config: &PackConfig) -> Result<Option<PreAuthLimitLayer>, ConfigError> {
    config.listen.pre_auth_limit.layer().map_err(|e| start_error("listen.pre_auth_limit", e))
}

/// The pack a document describes, through the one composition point (`mcp-enterprise-stack`):
/// every layer built, the audit trail started (keep it alive while serving, shut it down after),
/// the extension set (the `core` vendor prefix, `own` markers of ours such as the gateway's, every
/// layer's, the required ones marked) and the RFC 9728 document composed once. Policies are
/// validated against `catalog`.
pub fn pack(config: &PackConfig, catalog: Catalog, own: &[&str]) -> Result<(Pack, Option<AuditTrail>), ConfigError> {
    let sso = sso(config)?;
    #[cfg(feature = "redis")]
    let (dpop, workload_identity) = {
        let redis = redis_client(config)?;
        let wi = workload_identity_shared(config, redis.as_ref())?;
        (dpop_shared_with_issued(config, sso.as_ref(), wi.as_ref(), redis.as_ref())?, wi)
    };
    #[cfg(not(feature = "redis"))]
    let (dpop, workload_identity) = {
        let wi = workload_identity(config)?;
        (dpop_with_issued(config, sso.as_ref(), wi.as_ref())?, wi)
    };
    let policy = policy(config, catalog)?;
    let integrity = integrity(config)?;
    let mut builder = base(config, own)?.inspect(inspect(&config.core)?);
    if let Some(layer) = pre_auth_limit(config)? {
        builder = builder.pre_auth_limit(layer);
    }
    if let Some(layer) = sso {
        builder = builder.sso(layer);
    }
    if let Some(layer) = dpop {
        builder = builder.dpop(layer);
    }
    if let Some(setup) = workload_identity {
        builder = builder.workload_identity(setup);
    }
    if let Some(layer) = policy {
        builder = builder.policy(layer);
    }
    if let Some(layer) = integrity {
        builder = builder.integrity(layer);
    }
    let trail = match audit(config)? {
        Some((layer, trail)) => {
            builder = builder.audit(layer);
            Some(trail)
        }
        None => None,
    };
    match builder.build() {
        Ok(pack) => Ok((pack, trail)),
        Err(e) => {
            if let Some(trail) = trail {
                trail.shutdown();
            }
            Err(start_error("core", e))
        }
    }
}

/// A pack builder with the document's extension base: the vendor prefix, `own` markers, the
/// required extensions.
fn base(config: &PackConfig, own: &[&str]) -> Result<PackBuilder, ConfigError> {
    let core = |e: mcp_enterprise_core::ConfigError| start_error("core", e);
    let mut set = config.core.extension_builder().map_err(core)?;
    for name in own {
        set = set.with_own(name, Value::Object(serde_json::Map::new())).map_err(core)?;
    }
    let mut builder = Pack::builder().extensions(set);
    for id in &config.core.required_extensions {
        builder = builder.require(id.clone());
    }
    Ok(builder)
}

/// The extension ids the sections of a (structurally valid) document would offer, with the
/// gateway's marker; `None` when the document does not deserialize or a layer does not build.
pub(crate) fn offered_extensions(doc: &Value) -> Option<Vec<String>> {
    let mut config: PackConfig = serde_json::from_value(doc.clone()).ok()?;
    let audit = config.audit.take().is_some();
    let policy = config.policy.take().is_some();
    let integrity = config.integrity.take().is_some();
    config.core.required_extensions.clear();
    let sso = sso(&config).ok()?;
    let wi = workload_identity(&config).ok()?;
    let issued = wi.as_ref().is_some_and(|w| w.token_endpoint().is_some());
    let dpop = if config.dpop.as_ref().is_some_and(|d| d.static_validator.is_some() || sso.is_some() || issued) {
        dpop_with_issued(&config, sso.as_ref(), wi.as_ref()).ok()?
    } else {
        None
    };
    let mut own = vec![GATEWAY_EXTENSION];
    if audit {
        own.push("audit");
    }
    if policy {
        own.push("policy");
    }
    if integrity {
        own.push("integrity");
    }
    let mut builder = base(&config, &own).ok()?;
    if let Some(layer) = sso {
        builder = builder.sso(layer);
    }
    if let Some(layer) = dpop {
        builder = builder.dpop(layer);
    }
    if let Some(setup) = wi {
        builder = builder.workload_identity(setup);
    }
    let pack = builder.build().ok()?;
    Some(pack.extensions().advertised().keys().cloned().collect())
}

/// The name (under the vendor prefix) of the marker extension the gateway advertises.
pub const GATEWAY_EXTENSION: &str = "gateway";

/// The TLS settings of `upstream.tls` (system roots only when absent).
pub fn upstream_tls(upstream: &crate::model::UpstreamConfig) -> Result<outbound::TlsSettings, ConfigError> {
    let up = |e| start_error("upstream", LayerError::Outbound(e));
    let mut tls = outbound::TlsSettings::new();
    let Some(config) = &upstream.tls else {
        return Ok(tls);
    };
    if let Some(ca) = &config.ca_file {
        tls = tls.with_ca_file(std::path::Path::new(ca)).map_err(up)?;
    }
    match (&config.client_certificate_file, &config.client_key_file) {
        (Some(cert), Some(key)) => {
            let identity =
                outbound::ClientIdentity::load(std::path::Path::new(cert), std::path::Path::new(key)).map_err(up)?;
            tls = tls.with_client_identity(identity);
        }
        (None, None) => {}
        _ => {
            return Err(up(outbound::OutboundError::Setting(
                "upstream.tls.client_certificate_file and client_key_file go together".to_owned(),
            )));
        }
    }
    if let Some(name) = &config.server_name {
        tls = tls.with_server_name(name).map_err(up)?;
    }
    Ok(tls)
}

/// The forward proxy of the `egress` section, else of the environment.
pub fn egress(config: &PackConfig) -> Result<outbound::Egress, ConfigError> {
    let eg = |e| start_error("egress", LayerError::Outbound(e));
    let Some(section) = &config.egress else {
        return Ok(outbound::Egress::from_env());
    };
    let mut egress = match section.proxy.as_deref() {
        None => outbound::Egress::from_env(),
        Some("") => outbound::Egress::direct(),
        Some(proxy) => outbound::Egress::proxy(proxy, section.no_proxy.as_deref().unwrap_or_default()).map_err(eg)?,
    };
    if let Some(credentials) = &section.proxy_credentials {
        let (user, password) = credentials.split_once(':').ok_or_else(|| {
            eg(outbound::OutboundError::Setting("egress.proxy_credentials must be `user:password`".to_owned()))
        })?;
        egress = egress.with_basic_auth(user, password).map_err(eg)?;
    }
    Ok(egress)
}

/// The TLS settings for identity providers: the system's roots plus `egress.ca_file`.
pub fn idp_tls(config: &PackConfig) -> Result<outbound::TlsSettings, ConfigError> {
    let tls = outbound::TlsSettings::new();
    match config.egress.as_ref().and_then(|e| e.ca_file.as_deref()) {
        Some(ca) => {
            tls.with_ca_file(std::path::Path::new(ca)).map_err(|e| start_error("egress", LayerError::Outbound(e)))
        }
        None => Ok(tls),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Format, Loader};

    fn load(text: &str) -> crate::LoadedConfig {
        Loader::new().text("pack.toml", Format::Toml, text).load().expect("a valid document")
    }

    const BASE: &str = r#"
version = 1
resource = "http://127.0.0.1:8787/mcp"
[upstream]
url = "http://127.0.0.1:9/mcp"
"#;

    #[test]
    fn a_document_becomes_one_pack() {
        let doc = format!("{BASE}\n[core]\nrequired_extensions = [\"io.github.mcp-enterprise/gateway\"]\n");
        let (pack, trail) = pack(load(&doc).config(), Catalog::default(), &[GATEWAY_EXTENSION]).expect("pack");
        assert!(trail.is_none(), "no audit section: no trail");
        assert!(pack.extensions().advertised().contains_key("io.github.mcp-enterprise/gateway"));
        assert_eq!(pack.extensions().required().len(), 1);
        assert!(!pack.authenticates() && pack.metadata().is_none());
    }

    #[test]
    fn an_integrity_section_becomes_the_packs_integrity_layer() {
        let dir = tempfile::tempdir().expect("dir");
        let lock = dir.path().join("tools.lock.json");
        std::fs::write(&lock, mcp_enterprise_integrity::LockFile::new().to_text()).expect("write");
        let doc = format!("{BASE}\n[integrity]\nlock_file = {:?}\non_new = \"warn\"\n", lock.display().to_string());
        let (pack, _) = pack(load(&doc).config(), Catalog::default(), &[]).expect("pack");
        let layer = pack.integrity().expect("integrity layer");
        assert_eq!(layer.on_new(), mcp_enterprise_integrity::OnNew::Warn);
        let advertised = pack.extensions().advertised();
        assert_eq!(advertised["io.github.mcp-enterprise/integrity"]["onNew"], "warn");
        let offered = offered_extensions(&serde_json::to_value(load(&doc).config()).expect("json")).expect("offered");
        assert!(offered.iter().any(|id| id == "io.github.mcp-enterprise/integrity"), "{offered:?}");
    }

    #[test]
    fn the_sections_layers_are_joined_once() {
        let doc = format!(
            "{BASE}\n[[sso.issuers]]\nissuer = \"https://idp.example.com\"\njwks_uri = \"https://idp.example.com/jwks\"\n\n[dpop]\naccept_bearer = true\n"
        );
        let (pack, _) = pack(load(&doc).config(), Catalog::default(), &[]).expect("pack");
        assert!(pack.authenticates());
        let ids: Vec<&String> = pack.extensions().advertised().keys().collect();
        assert!(ids.iter().any(|id| id.contains("dpop")), "{ids:?}");
        let metadata = pack.metadata().expect("RFC 9728 document");
        assert!(metadata.paths().iter().any(|p| p.ends_with("/mcp")));
    }
}
