//! `mcp-enterprise serve --config FILE…`: a gateway running exactly what a configuration document
//! says, reloaded on `SIGHUP`.
//!
//! A reload loads and checks the files again (with the same `MCPE_` environment). A document with
//! any problem is rejected — logged with every diagnostic — and the running configuration stays.
//! An accepted one replaces the layer stack for new requests; requests in flight finish on the stack
//! they started on, so nothing is dropped.
//!
//! Layers keep their state across reloads when their section (and every file it names) is
//! unchanged: the SSO JWKS and token caches, the DPoP replay cache, the workload identity replay
//! stores and token-endpoint key, the signing keys of `upstream.propagation`, the legacy session
//! map of `core`, the in-memory rate-limit counts (`rate_limits` and `redis` together), the Redis connection,
//! the tools the policy layer learned, what the integrity layer saw and reported (and its lock
//! file: a changed lock file is a changed section). A changed section gets a new layer with fresh state; a
//! changed `policy` section (or policy file) is validated against the tools the running layer
//! knows, and a policy file that does not parse or type-check rejects the reload: the old policy
//! set keeps running. Some settings cannot change without a restart and make a reload fail
//! (the old configuration keeps running): `listen.address` and the `admin` section (the sockets
//! stay bound), the listener limits, the `runtime` section (its threads start once) and the
//! `audit` section — one trail has one writer, and records of calls in flight must land in the
//! trail they started in, so the audit layer and its trail live as long as the process.

use std::net::SocketAddr;
use std::sync::Mutex;

use mcp_enterprise_audit::{AuditLayer, AuditTrail};
use mcp_enterprise_config::clients::{ClientEntry, HeaderValue};
use mcp_enterprise_config::compose::{self, GATEWAY_EXTENSION};
use mcp_enterprise_config::{LoadedConfig, Loader, PackConfig};
use mcp_enterprise_core::InspectLayer;
use mcp_enterprise_core::preauth::PreAuthLimitLayer;
use mcp_enterprise_dpop::DpopLayer;
use mcp_enterprise_integrity::IntegrityLayer;
use mcp_enterprise_policy::{Catalog, PolicyLayer};
use mcp_enterprise_sso::SsoLayer;
use mcp_enterprise_workload_identity::WorkloadIdentitySetup;
use serde::Serialize;
use serde_json::Value;

use crate::card::{CardHeader, ServerCard};
use crate::ratelimit::RateLimitLayer;
use crate::{Gateway, Propagation, RunningGateway};
use mcp_enterprise_core::redis::RedisClient;

/// Why a configured gateway could not start or reload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfiguredError {
    /// The document has problems (every one is listed).
    #[error(transparent)]
    Config(#[from] mcp_enterprise_config::ConfigError),
    /// The gateway refused a setting.
    #[error("gateway: {0}")]
    Gateway(#[from] crate::ConfigError),
    /// The server card is not acceptable.
    #[error(transparent)]
    Card(#[from] crate::card::CardError),
    /// A setting that needs a restart changed; the running configuration stays.
    #[error("{setting} changed, which needs a restart ({why}); the running configuration stays")]
    NeedsRestart {
        /// The setting.
        setting: &'static str,
        /// Why it cannot change live.
        why: &'static str,
    },
    /// The policy layer cannot start (its tools could not be fetched).
    #[error("policy: {0}")]
    Policy(String),
    /// Redis refused the configured credentials or certificate (the `redis` section).
    #[error("redis: {0}")]
    Redis(mcp_enterprise_core::redis::RedisError),
    /// The listen address cannot be bound.
    #[error("cannot listen on {address} (is it in use?): {source}")]
    Listen {
        /// The address.
        address: String,
        /// The error.
        source: std::io::Error,
    },
}

/// A section's identity for reuse across reloads: its settings and the contents of every file it
/// names (`*_file` keys).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint(Vec<u8>);

fn fingerprint<T: Serialize>(section: &T) -> Fingerprint {
    let value = serde_json::to_value(section).unwrap_or(Value::Null);
    let mut bytes = serde_json::to_vec(&value).unwrap_or_default();
    let mut files = Vec::new();
    named_files(&value, None, &mut files);
    for path in files {
        bytes.push(0);
        match std::fs::read(&path) {
            Ok(contents) => bytes.extend(contents),
            Err(e) => bytes.extend(e.kind().to_string().as_bytes()),
        }
    }
    Fingerprint(bytes)
}

fn named_files(value: &Value, key: Option<&str>, out: &mut Vec<String>) {
    match value {
        Value::String(s) if key.is_some_and(|k| k.ends_with("_file") || k.ends_with("_files")) => out.push(s.clone()),
        Value::Object(map) => map.iter().for_each(|(k, v)| named_files(v, Some(k), out)),
        Value::Array(items) => items.iter().for_each(|v| named_files(v, key, out)),
        _ => {}
    }
}

/// The layers of one configuration, each with the fingerprint it was built from.
struct Parts {
    listen: String,
    core: Fingerprint,
    inspect: InspectLayer,
    sso: Fingerprint,
    sso_layer: Option<SsoLayer>,
    dpop: Fingerprint,
    dpop_layer: Option<DpopLayer>,
    workload_identity: Fingerprint,
    workload_identity_setup: Option<WorkloadIdentitySetup>,
    audit: Fingerprint,
    audit_layer: Option<AuditLayer>,
    rate_limits: Fingerprint,
    rate_limit_layer: Option<RateLimitLayer>,
    /// The `redis` section's client, shared by every route (one connection).
    redis: Fingerprint,
    redis_client: Option<RedisClient>,
    /// `listen.pre_auth_limit`'s layer, shared by every route (one table of addresses).
    pre_auth_limit: Fingerprint,
    pre_auth_limit_layer: Option<PreAuthLimitLayer>,
    propagation: Fingerprint,
    propagation_mode: Propagation,
    policy: Fingerprint,
    policy_layer: Option<PolicyLayer>,
    integrity: Fingerprint,
    integrity_layer: Option<IntegrityLayer>,
    /// `upstream.command`'s bridge: its sessions and children live on across reloads that leave
    /// the `upstream` section unchanged.
    upstream: Fingerprint,
    stdio: Option<crate::stdio::StdioBridge>,
}

impl Parts {
    /// Builds the layers of `config`, reusing `previous`'s where their section is unchanged. The
    /// audit trail is started only without `previous` (and returned). A new policy layer is
    /// validated against `catalog` and the tools `previous`'s layer learned.
    fn build(
        config: &PackConfig,
        previous: Option<&Parts>,
        shared_audit: Option<&AuditLayer>,
        catalog: Catalog,
        redis_client: Option<&RedisClient>,
        pre_auth_limit_layer: Option<&PreAuthLimitLayer>,
        primary_workload_identity: Option<&WorkloadIdentitySetup>,
    ) -> Result<(Self, Option<AuditTrail>), ConfiguredError> {
        let core = fingerprint(&config.core);
        // the egress section reaches every identity provider and token endpoint
        let sso = fingerprint(&(&config.sso, &config.egress));
        let redis = fingerprint(&config.redis);
        let dpop = fingerprint(&(&config.dpop, &config.sso, &config.redis, &config.egress));
        let workload_identity = fingerprint(&(&config.workload_identity, &config.redis, &config.egress));
        let audit = fingerprint(&config.audit);
        let rate_limits = fingerprint(&(&config.rate_limits, &config.redis));
        // the defaults come from `resource` and the upstream URL
        let propagation = fingerprint(&(&config.upstream, &config.resource, &config.egress));
        let propagation_mode = match previous {
            // an unchanged section keeps its signing keys (verifiers' cached key sets stay valid)
            Some(p) if p.propagation == propagation => p.propagation_mode.clone(),
            _ => Propagation::from_config_outbound(
                &config.upstream.propagation,
                &config.resource,
                &config.upstream.url,
                &compose::egress(config)?,
                &compose::idp_tls(config)?,
            )
            .map_err(crate::ConfigError::from)?,
        };
        let policy = fingerprint(&config.policy);
        let integrity = fingerprint(&config.integrity);
        let inspect = match previous {
            Some(p) if p.core == core => p.inspect.clone(),
            _ => compose::inspect(&config.core)?,
        };
        let sso_layer = match previous {
            Some(p) if p.sso == sso => p.sso_layer.clone(),
            _ => compose::sso(config)?,
        };
        // a route without its own section accepts the top level's authorization server's tokens
        // (made anew: the top level's may have been rebuilt)
        let derived = compose::route_workload_identity(config, primary_workload_identity)?;
        let from_primary = derived.is_some();
        let workload_identity_setup = match previous {
            _ if from_primary => derived,
            Some(p) if p.workload_identity == workload_identity => p.workload_identity_setup.clone(),
            _ => compose::workload_identity_shared(config, redis_client)?,
        };
        // the DPoP layer also judges the DPoP-bound tokens of the workload identity token endpoint
        let dpop_layer = match previous {
            Some(p) if p.dpop == dpop && p.workload_identity == workload_identity && !from_primary => {
                p.dpop_layer.clone()
            }
            _ => compose::dpop_shared_with_issued(
                config,
                sso_layer.as_ref(),
                workload_identity_setup.as_ref(),
                redis_client,
            )?,
        };
        let policy_layer = match previous {
            Some(p) if p.policy == policy => p.policy_layer.clone(),
            _ => {
                let mut catalog = catalog;
                if let Some(learned) = previous.and_then(|p| p.policy_layer.as_ref()).map(|l| l.engine().catalog()) {
                    catalog = learned;
                }
                compose::policy(config, catalog)?
            }
        };
        let integrity_layer = match previous {
            Some(p) if p.integrity == integrity => p.integrity_layer.clone(),
            _ => compose::integrity(config)?,
        };
        let (audit_layer, trail) = match previous {
            // a route: recorded by the primary's trail
            _ if shared_audit.is_some() => (shared_audit.cloned(), None),
            Some(p) if p.audit == audit => (p.audit_layer.clone(), None),
            Some(_) => {
                return Err(ConfiguredError::NeedsRestart {
                    setting: "the audit section",
                    why: "one trail has one writer, and calls in flight are recorded in the trail they started in",
                });
            }
            None => match compose::audit(config)? {
                Some((layer, trail)) => (Some(layer), Some(trail)),
                None => (None, None),
            },
        };
        // unchanged limits keep their counts across a reload
        let rate_limit_layer = match previous {
            Some(p) if p.rate_limits == rate_limits => p.rate_limit_layer.clone(),
            _ => {
                let shared = config.redis.as_ref().and_then(|r| r.rate_limits.as_ref()).zip(redis_client);
                RateLimitLayer::from_config(&config.rate_limits, shared.map(|(u, c)| (c, u)))
                    .map_err(crate::ConfigError::RateLimit)?
            }
        };
        let upstream = fingerprint(&config.upstream);
        let stdio = match previous {
            Some(p) if p.upstream == upstream => p.stdio.clone(),
            _ => stdio_bridge(config),
        };
        let parts = Self {
            upstream,
            stdio,
            listen: config.listen.address.clone(),
            core,
            inspect,
            sso,
            sso_layer,
            dpop,
            dpop_layer,
            workload_identity,
            workload_identity_setup,
            audit,
            audit_layer,
            rate_limits,
            rate_limit_layer,
            redis,
            redis_client: redis_client.cloned(),
            pre_auth_limit: fingerprint(&config.listen.pre_auth_limit),
            pre_auth_limit_layer: pre_auth_limit_layer.cloned(),
            propagation,
            propagation_mode,
            policy,
            policy_layer,
            integrity,
            integrity_layer,
        };
        Ok((parts, trail))
    }

    /// The gateway these layers and `config` make.
    fn gateway(&self, config: &PackConfig) -> Result<Gateway, ConfiguredError> {
        Ok(self.builder(config)?.build()?)
    }

    /// [`gateway`](Self::gateway), not yet built.
    fn builder(&self, config: &PackConfig) -> Result<crate::GatewayBuilder, ConfiguredError> {
        // the layers' own extensions are added by the pack
        let extensions = config
            .core
            .extension_builder()
            .and_then(|b| b.with_own(GATEWAY_EXTENSION, Value::Object(serde_json::Map::new())))
            .map_err(crate::ConfigError::Core)?;
        let resource: http::Uri =
            config.resource.parse().map_err(|_| crate::ConfigError::InvalidPath { path: config.resource.clone() })?;
        let path = match resource.path() {
            "" => "/",
            p => p,
        };
        let listen: SocketAddr = config.listen.address.parse().map_err(|_| ConfiguredError::Listen {
            address: config.listen.address.clone(),
            source: std::io::ErrorKind::InvalidInput.into(),
        })?;
        let mut hosts: Vec<String> =
            resource.host().map(|h| h.trim_matches(['[', ']']).to_owned()).into_iter().collect();
        hosts.extend(config.listen.allowed_hosts.iter().cloned());
        let mut builder = Gateway::builder();
        builder = match &self.stdio {
            Some(bridge) => builder.stdio(bridge.clone()),
            None => builder.upstream(&config.upstream.url)?,
        };
        let mut builder = builder
            .listen(listen)
            .mcp_path(path)?
            .inspect(self.inspect.clone())
            .extensions(extensions)
            .allowed_hosts(hosts)
            .allowed_origins(config.listen.allowed_origins.iter().cloned())
            .trusted_proxies(crate::forwarded::TrustedProxies::parse(&config.listen.trusted_proxies).map_err(|e| {
                crate::ConfigError::from(mcp_enterprise_core::outbound::OutboundError::Setting(format!(
                    "listen.trusted_proxies: {e}"
                )))
            })?)
            .limits(crate::ListenerLimits::from_config(&config.listen)?)
            .propagation(self.propagation_mode.clone())
            .upstream_response_timeout(std::time::Duration::from_secs(config.upstream.response_timeout_secs))
            .upstream_tls(compose::upstream_tls(&config.upstream)?)
            .egress(compose::egress(config)?)
            .shutdown_grace(std::time::Duration::from_secs(config.listen.shutdown_grace_secs));
        if let Some(host) = &config.upstream.host {
            builder = builder.upstream_host(host)?;
        }
        if let Some(sso) = &self.sso_layer {
            builder = builder.sso(sso.clone());
        }
        if let Some(dpop) = &self.dpop_layer {
            builder = builder.dpop(dpop.clone());
        }
        if let Some(wi) = &self.workload_identity_setup {
            builder = builder.workload_identity(wi.clone());
        }
        if let Some(audit) = &self.audit_layer {
            builder = builder.audit(audit.clone());
        }
        if let Some(limits) = &self.rate_limit_layer {
            builder = builder.rate_limit(limits.clone());
        }
        if let Some(policy) = &self.policy_layer {
            // advertised by the gateway builder
            builder = builder.policy(policy.clone());
        }
        if let Some(integrity) = &self.integrity_layer {
            builder = builder.integrity(integrity.clone());
        }
        for id in &config.core.required_extensions {
            builder = builder.require(id.clone());
        }
        if let Some(card) = server_card(config)? {
            builder = builder.server_card(card);
        }
        if let Some(admin) = &config.admin {
            let address: SocketAddr = admin.address.parse().map_err(|_| ConfiguredError::Listen {
                address: admin.address.clone(),
                source: std::io::ErrorKind::InvalidInput.into(),
            })?;
            builder = builder.admin(address);
        }
        if let Some(redis) = &self.redis_client {
            builder = builder.redis(redis.clone());
        }
        if let Some(traces) = config.traces.as_ref().filter(|t| t.enabled) {
            builder = builder.traces(crate::telemetry::TraceSettings::from_config(traces));
        }
        if let Some(limit) = &self.pre_auth_limit_layer {
            builder = builder.pre_auth_limit(limit.clone());
        }
        Ok(builder)
    }
}

/// The bridge of a document's `upstream.command` (named after its resource's path in logs and
/// readiness), if it has one.
fn stdio_bridge(config: &PackConfig) -> Option<crate::stdio::StdioBridge> {
    let argv = config.upstream.command.as_ref()?;
    let mut command = crate::stdio::StdioCommand::new(argv)?;
    command.env = config.upstream.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    command.cwd = config.upstream.cwd.as_ref().map(std::path::PathBuf::from);
    let settings = config.upstream.stdio.clone().unwrap_or_default();
    command.inherit_env = settings.inherit_env.clone();
    let limits = crate::stdio::StdioLimits {
        max_sessions: settings.max_sessions,
        idle_timeout: std::time::Duration::from_secs(settings.idle_timeout_secs),
        max_line_bytes: settings.max_line_bytes,
        input_timeout: std::time::Duration::from_secs(settings.input_timeout_secs),
        spare_children: settings.spare_children,
    };
    let route =
        config.resource.parse::<http::Uri>().map(|u| u.path().to_owned()).unwrap_or_else(|_| config.resource.clone());
    Some(crate::stdio::StdioBridge::new(route, command, limits))
}

/// The layers of every server a document describes: the top level first (it alone starts the
/// audit trail), then each route, recorded by the same trail.
fn build_all(
    config: &PackConfig,
    previous: Option<&[Parts]>,
    catalogs: Vec<Catalog>,
) -> Result<(Vec<Parts>, Option<AuditTrail>), ConfiguredError> {
    let mut all: Vec<Parts> = Vec::new();
    let mut trail = None;
    let mut catalogs = catalogs.into_iter();
    // one Redis client (one multiplexed connection) for every route, kept across reloads while
    // the section is unchanged
    let redis_client = match previous.and_then(<[Parts]>::first) {
        Some(p) if p.redis == fingerprint(&config.redis) => p.redis_client.clone(),
        _ => compose::redis_client(config)?,
    };
    // one table of client addresses for every route, its counts kept across reloads while the
    // setting is unchanged
    let pre_auth_limit = match previous.and_then(<[Parts]>::first) {
        Some(p) if p.pre_auth_limit == fingerprint(&config.listen.pre_auth_limit) => p.pre_auth_limit_layer.clone(),
        _ => compose::pre_auth_limit(config)?,
    };
    for (i, document) in config.route_documents().iter().enumerate() {
        let shared = all.first().and_then(|primary| primary.audit_layer.as_ref());
        let primary_workload_identity = all.first().and_then(|primary| primary.workload_identity_setup.as_ref());
        let catalog = catalogs.next().unwrap_or_default();
        let (parts, started) = Parts::build(
            document,
            previous.and_then(|p| p.get(i)),
            shared,
            catalog,
            redis_client.as_ref(),
            pre_auth_limit.as_ref(),
            primary_workload_identity,
        )?;
        trail = trail.or(started);
        all.push(parts);
    }
    Ok((all, trail))
}

/// The gateway serving every server a document describes.
fn gateway_all(all: &[Parts], config: &PackConfig) -> Result<Gateway, ConfiguredError> {
    let documents = config.route_documents();
    let mut pairs = all.iter().zip(&documents);
    let (primary, document) = pairs.next().ok_or(crate::ConfigError::MissingUpstream)?;
    let mut builder = primary.builder(document)?;
    for (parts, document) in pairs {
        builder = builder.route(parts.gateway(document)?);
    }
    Ok(builder.build()?)
}

/// The server card of a document's `server_card` section; its headers are the `client` headers.
pub fn server_card(config: &PackConfig) -> Result<Option<ServerCard>, crate::card::CardError> {
    let Some(section) = &config.server_card else { return Ok(None) };
    let mut card = ServerCard::new(&section.name, &section.version, &section.description, &config.resource)?
        .max_age(std::time::Duration::from_secs(section.max_age_secs));
    if let Some(title) = &section.title {
        card = card.title(title);
    }
    if let Some(url) = &section.website_url {
        card = card.website_url(url);
    }
    if let Some(repo) = &section.repository {
        card = card.repository(&repo.url, &repo.source, repo.subfolder.as_deref());
    }
    if let Some(id) = &section.catalog_identifier {
        card = card.catalog_identifier(id);
    }
    for header in ClientEntry::from_config(config).headers {
        let described = match &header.value {
            HeaderValue::Constant(v) => CardHeader::fixed(&header.name, v),
            HeaderValue::Env(_) => CardHeader::secret(&header.name, header.description.as_deref()),
            _ => continue,
        };
        card = card.header(described);
    }
    Ok(Some(card))
}

struct State {
    loaded: LoadedConfig,
    /// The top level's, then each route's.
    parts: Vec<Parts>,
}

/// A gateway serving a configuration document, reloadable.
pub struct ConfiguredGateway {
    loader: Loader,
    running: RunningGateway,
    state: Mutex<State>,
    trail: Mutex<Option<AuditTrail>>,
}

impl std::fmt::Debug for ConfiguredGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfiguredGateway").field("running", &self.running).finish_non_exhaustive()
    }
}

impl ConfiguredGateway {
    /// Loads and checks the document, builds every layer, starts the audit trail and listens.
    pub async fn start(loader: Loader) -> Result<Self, ConfiguredError> {
        let loaded = loader.load()?;
        // each server's policy may fetch its upstream's tools before serving
        let mut catalogs = Vec::new();
        for document in loaded.config().route_documents() {
            catalogs.push(match &document.policy {
                Some(p) if p.fetch_tools_at_startup => {
                    let client = crate::catalog::UpstreamClient::new(
                        &compose::egress(&document)?,
                        &compose::upstream_tls(&document.upstream)?,
                    )
                    .map_err(crate::ConfigError::from)?;
                    crate::catalog::fetch_catalog_via(&client, &document.upstream.url)
                        .await
                        .map_err(|e| ConfiguredError::Policy(e.to_string()))?
                }
                _ => Catalog::default(),
            });
        }
        let (parts, trail) = build_all(loaded.config(), None, catalogs)?;
        // Redis refusing the credentials or presenting an untrusted certificate is a mistake to
        // report now, not at the first request; Redis merely down is what each use's
        // fail-open/fail-closed setting is for (the connection is retried with backoff)
        if let Some(client) = parts.first().and_then(|p| p.redis_client.as_ref()) {
            match client.check().await {
                Ok(()) => {}
                Err(e) if e.is_setup() => {
                    if let Some(trail) = trail {
                        let _ = tokio::task::spawn_blocking(move || trail.shutdown()).await;
                    }
                    return Err(ConfiguredError::Redis(e));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "redis is unreachable at start-up; its uses follow on_unavailable")
                }
            }
        }
        let gateway = match gateway_all(&parts, loaded.config()) {
            Ok(gateway) => gateway,
            Err(e) => {
                if let Some(trail) = trail {
                    let _ = tokio::task::spawn_blocking(move || trail.shutdown()).await;
                }
                return Err(e);
            }
        };
        let address = loaded.config().listen.address.clone();
        let running = match gateway.spawn().await {
            Ok(running) => running,
            Err(source) => {
                if let Some(trail) = trail {
                    let _ = tokio::task::spawn_blocking(move || trail.shutdown()).await;
                }
                return Err(ConfiguredError::Listen { address, source });
            }
        };
        Ok(Self { loader, running, state: Mutex::new(State { loaded, parts }), trail: Mutex::new(trail) })
    }

    /// The running gateway.
    pub fn running(&self) -> &RunningGateway {
        &self.running
    }

    /// The proxied MCP endpoint (the path of the running configuration's `resource`).
    pub fn mcp_url(&self) -> String {
        let path =
            self.lock().loaded.config().resource.parse::<http::Uri>().map(|u| u.path().to_owned()).unwrap_or_default();
        format!("http://{}{}", self.running.local_addr(), if path.is_empty() { "/" } else { &path })
    }

    /// The configuration running now, secrets redacted.
    pub fn redacted(&self) -> Value {
        self.lock().loaded.redacted()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Loads the files again and, when the document passes every check, serves it for new
    /// requests. On any error the running configuration stays.
    pub fn reload(&self) -> Result<(), ConfiguredError> {
        let result = self.try_reload();
        if let Some(metrics) = self.running.metrics() {
            metrics.reloaded(result.is_ok());
        }
        result
    }

    fn try_reload(&self) -> Result<(), ConfiguredError> {
        let loaded = self.loader.load()?;
        let mut state = self.lock();
        if state.parts.first().is_some_and(|p| loaded.config().listen.address != p.listen) {
            return Err(ConfiguredError::NeedsRestart { setting: "listen.address", why: "the socket stays bound" });
        }
        if loaded.config().admin.as_ref().map(|a| a.address.as_str())
            != state.loaded.config().admin.as_ref().map(|a| a.address.as_str())
        {
            return Err(ConfiguredError::NeedsRestart { setting: "the admin section", why: "its socket stays bound" });
        }
        if loaded.config().runtime != state.loaded.config().runtime {
            return Err(ConfiguredError::NeedsRestart {
                setting: "the runtime section",
                why: "the worker threads are started once",
            });
        }
        if crate::ListenerLimits::from_config(&loaded.config().listen)? != self.running.limits() {
            return Err(ConfiguredError::NeedsRestart {
                setting: "a listener limit (listen.header_read_timeout_secs, request_body_timeout_secs, max_connections or max_header_bytes)",
                why: "open connections were accepted under the old ones",
            });
        }
        let (parts, _) = build_all(loaded.config(), Some(&state.parts), Vec::new())?;
        let gateway = gateway_all(&parts, loaded.config())?;
        self.running.replace(&gateway);
        *state = State { loaded, parts };
        Ok(())
    }

    /// Serves until `SIGINT` or `SIGTERM`, reloading on `SIGHUP` (a rejected document is logged
    /// and the running configuration stays), then shuts down.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let signals = crate::Signals::install()?;
        self.run_until(signals).await;
        Ok(())
    }

    /// [`run_until_stopped`](Self::run_until_stopped) with signals installed earlier.
    pub async fn run_until(self, mut signals: crate::Signals) {
        while signals.next().await == crate::Received::Reload {
            match self.reload() {
                Ok(()) => tracing::info!(sources = ?self.lock().loaded.sources(), "configuration reloaded"),
                Err(e) => tracing::error!("configuration reload rejected; the running configuration stays:\n{e}"),
            }
        }
        self.shutdown().await;
    }

    /// Stops serving (calls in flight get `listen.shutdown_grace_secs`, see
    /// [`RunningGateway::shutdown`]) and seals the audit trail with its closing checkpoint.
    pub async fn shutdown(self) {
        let Self { running, trail, .. } = self;
        running.shutdown().await;
        let trail = trail.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(trail) = trail {
            // drains the queue and writes the closing checkpoint
            let _ = tokio::task::spawn_blocking(move || trail.shutdown()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_follow_named_files() {
        let dir = tempfile::tempdir().expect("dir");
        let key = dir.path().join("key");
        std::fs::write(&key, "one").expect("write");
        let section = serde_json::json!({"signing_key_file": key, "nested": [{"jwks_file": key}], "x": 1});
        let a = fingerprint(&section);
        assert_eq!(a, fingerprint(&section));
        std::fs::write(&key, "two").expect("write");
        assert_ne!(a, fingerprint(&section), "a changed key file is a changed section");
        assert_ne!(fingerprint(&serde_json::json!({"x": 2})), fingerprint(&serde_json::json!({"x": 1})));
    }

    #[test]
    fn a_stdio_upstreams_bounds_reach_its_bridge() {
        let text = "version = 1\nresource = \"http://127.0.0.1:8787/mcp\"\n[upstream]\ncommand = [\"cat\"]\n\
                    [upstream.stdio]\nmax_sessions = 5\nspare_children = 2\ninput_timeout_secs = 9\n";
        let loaded = mcp_enterprise_config::Loader::new()
            .text("gw.toml", mcp_enterprise_config::Format::Toml, text)
            .env(Vec::<(String, String)>::new())
            .load()
            .expect("loads");
        let bridge = stdio_bridge(loaded.config()).expect("a stdio upstream");
        let shown = format!("{bridge:?}");
        for part in ["route: \"/mcp\"", "max_sessions: 5", "spare_children: 2", "input_timeout: 9s"] {
            assert!(shown.contains(part), "{part} not in {shown}");
        }
    }
}
