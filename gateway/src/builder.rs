//! [`GatewayBuilder`]: a gateway's settings; its extension layers go to the one composition
//! point, `mcp-enterprise-stack`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use mcp_enterprise_audit::AuditLayer;
use mcp_enterprise_core::outbound::{self, Egress, TlsSettings};
use mcp_enterprise_core::{ExtensionSetBuilder, InspectLayer};
use mcp_enterprise_dpop::DpopLayer;
use mcp_enterprise_integrity::IntegrityLayer;
use mcp_enterprise_policy::PolicyLayer;
use mcp_enterprise_sso::SsoLayer;
use mcp_enterprise_stack::{Pack, PackBuilder};
use mcp_enterprise_workload_identity::WorkloadIdentitySetup;

use crate::origin::OriginPolicy;
use crate::{
    ConfigError, Gateway, LOOPBACK_HOSTS, ListenerLimits, Propagation, ServerCard, propagation, proxy, ratelimit,
    routes,
};

impl Gateway {
    /// Starts a builder: listen on `127.0.0.1:8787`, serve MCP at `/mcp`, no extra origins allowed.
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder {
            upstream: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            mcp_path: "/mcp".to_owned(),
            pack: Pack::builder(),
            allowed_hosts: LOOPBACK_HOSTS.iter().map(|h| (*h).to_owned()).collect(),
            allowed_origins: Vec::new(),
            card: None,
            limits: ListenerLimits::new(),
            routes: Vec::new(),
            rate_limit: None,
            propagation: Propagation::None,
            upstream_timeout: proxy::DEFAULT_RESPONSE_TIMEOUT,
            shutdown_grace: crate::DEFAULT_SHUTDOWN_GRACE,
            admin: None,
            redis: None,
            traces: None,
            upstream_tls: TlsSettings::new(),
            upstream_host: None,
            egress: None,
            trusted_proxies: crate::forwarded::TrustedProxies::default(),
            stdio: None,
        }
    }
}

/// Builds a [`Gateway`].
#[derive(Debug)]
#[must_use]
pub struct GatewayBuilder {
    upstream: Option<Uri>,
    listen: SocketAddr,
    mcp_path: String,
    /// The extension layers, joined by the one composition point when built.
    pack: PackBuilder,
    allowed_hosts: Vec<String>,
    allowed_origins: Vec<String>,
    card: Option<ServerCard>,
    limits: ListenerLimits,
    routes: Vec<Gateway>,
    rate_limit: Option<ratelimit::RateLimitLayer>,
    propagation: Propagation,
    upstream_timeout: Duration,
    shutdown_grace: Duration,
    admin: Option<SocketAddr>,
    redis: Option<mcp_enterprise_core::redis::RedisClient>,
    traces: Option<crate::telemetry::TraceSettings>,
    upstream_tls: TlsSettings,
    upstream_host: Option<http::HeaderValue>,
    egress: Option<Egress>,
    trusted_proxies: crate::forwarded::TrustedProxies,
    stdio: Option<crate::stdio::StdioBridge>,
}

impl GatewayBuilder {
    /// Fronts a local stdio MCP server instead of an HTTP upstream (see [`stdio`](crate::stdio)).
    pub fn stdio(mut self, bridge: crate::stdio::StdioBridge) -> Self {
        self.stdio = Some(bridge);
        self
    }

    /// Sets the upstream MCP endpoint, e.g. `http://127.0.0.1:8081/mcp` or
    /// `https://mcp.vendor.example/mcp` (TLS settings: [`upstream_tls`](Self::upstream_tls)).
    pub fn upstream(mut self, url: &str) -> Result<Self, ConfigError> {
        let invalid = |reason| ConfigError::InvalidUpstream { url: url.to_owned(), reason };
        let uri: Uri = url.parse().map_err(|_| invalid("not a valid URL"))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err(invalid("must be an absolute http:// or https:// URL")),
        }
        let authority = uri.authority().ok_or_else(|| invalid("must name a host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("must not carry credentials"));
        }
        self.upstream = Some(uri);
        Ok(self)
    }

    /// How an `https://` upstream is authenticated and what the gateway presents to it: extra CA
    /// roots (besides the system's), a client certificate (mTLS), a server-name override (SNI and
    /// the name checked in its certificate). Default: system roots only.
    pub fn upstream_tls(mut self, tls: TlsSettings) -> Self {
        self.upstream_tls = tls;
        self
    }

    /// Sends this `Host` to the upstream instead of the authority of its URL.
    pub fn upstream_host(mut self, host: &str) -> Result<Self, ConfigError> {
        let value = http::HeaderValue::from_str(host).ok().filter(|_| host.parse::<http::uri::Authority>().is_ok());
        self.upstream_host = Some(value.ok_or_else(|| ConfigError::InvalidUpstream {
            url: host.to_owned(),
            reason: "the upstream Host override must be a host name with an optional port",
        })?);
        Ok(self)
    }

    /// Where connections to the upstream go (default: the proxy of the environment,
    /// `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`, see [`Egress::from_env`]).
    pub fn egress(mut self, egress: Egress) -> Self {
        self.egress = Some(egress);
        self
    }

    /// Believes `Forwarded`/`X-Forwarded-For` from these proxies (load balancers) when recording
    /// the client's address; default: none (the TCP peer is the client).
    pub fn trusted_proxies(mut self, proxies: crate::forwarded::TrustedProxies) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// Sets the listen address.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Sets the path the MCP endpoint is served at (default `/mcp`).
    pub fn mcp_path(mut self, path: &str) -> Result<Self, ConfigError> {
        if !path.starts_with('/') || (path.len() > 1 && path.ends_with('/')) {
            return Err(ConfigError::InvalidPath { path: path.to_owned() });
        }
        self.mcp_path = path.to_owned();
        Ok(self)
    }

    /// Replaces the inspection layer (body limit, session capacity).
    pub fn inspect(mut self, layer: InspectLayer) -> Self {
        self.pack = self.pack.inspect(layer);
        self
    }

    /// Sets the extensions the gateway advertises besides its layers' own (vendor prefix, the
    /// gateway's marker); the layers' are added by the pack.
    pub fn extensions(mut self, base: ExtensionSetBuilder) -> Self {
        self.pack = self.pack.extensions(base);
        self
    }

    /// Marks an advertised extension as required of clients.
    pub fn require(mut self, id: impl Into<String>) -> Self {
        self.pack = self.pack.require(id);
        self
    }

    /// Requires OAuth 2.1 bearer tokens (SSO). The gateway then also serves the RFC 9728
    /// protected resource metadata and advertises the layer's extensions.
    pub fn sso(mut self, sso: SsoLayer) -> Self {
        self.pack = self.pack.sso(sso);
        self
    }

    /// Requires DPoP-bound tokens (RFC 9449). With [`sso`](Self::sso) too, build the layer with
    /// [`sso_token_validator`](crate::sso_token_validator) and `BearerMode::AlsoBearer` to accept both schemes.
    pub fn dpop(mut self, dpop: DpopLayer) -> Self {
        self.pack = self.pack.dpop(dpop);
        self
    }

    /// Records every request, and every refusal by the layers inside, to a tamper-evident trail.
    /// Keep the [`AuditTrail`](mcp_enterprise_audit::AuditTrail) the layer came with alive while serving, and shut it down after the
    /// gateway to seal the trail.
    pub fn audit(mut self, audit: AuditLayer) -> Self {
        self.pack = self.pack.audit(audit);
        self
    }

    /// Authorizes `tools/call`, `resources/read` and `prompts/get` with Cedar policies and filters
    /// list results. The layer sits inside the authentication layers (it reads their
    /// `Principal`) and inside audit (which records its refusals); it is advertised as
    /// `io.github.mcp-enterprise/policy`.
    pub fn policy(mut self, policy: PolicyLayer) -> Self {
        self.pack = self.pack.policy(policy);
        self
    }

    /// Checks the upstream's tool, prompt and resource template definitions against a lock file:
    /// changed or unapproved ones are removed from list answers and refused when called. The layer
    /// sits inside policy, next to the upstream (it sees the upstream's whole list answers); it is
    /// advertised as `io.github.mcp-enterprise/integrity`.
    pub fn integrity(mut self, integrity: IntegrityLayer) -> Self {
        self.pack = self.pack.integrity(integrity);
        self
    }

    /// Accepts workload identity (direct mode and/or the tokens of the SEP-1933 token endpoint,
    /// which the gateway then serves). With [`sso`](Self::sso) or [`dpop`](Self::dpop) too, tokens
    /// of other issuers pass on to those layers.
    pub fn workload_identity(mut self, setup: WorkloadIdentitySetup) -> Self {
        self.pack = self.pack.workload_identity(setup);
        self
    }

    /// Sets every extension layer at once (replacing those set so far), e.g. a builder made by
    /// the configuration's composition; the MCP path is this gateway's.
    pub fn pack(mut self, pack: PackBuilder) -> Self {
        self.pack = pack;
        self
    }

    /// Accepts these host names in `Host` (any port), in addition to the loopback names. A gateway
    /// reachable under a DNS name must list it: any other `Host` is refused with `403`, which is
    /// what defeats DNS rebinding.
    pub fn allowed_hosts<I: IntoIterator<Item = String>>(mut self, hosts: I) -> Self {
        self.allowed_hosts.extend(hosts.into_iter().map(|h| h.to_ascii_lowercase()));
        self
    }

    /// Allows browser requests from these origins (e.g. `https://app.example.com`), in addition to
    /// same-origin requests.
    pub fn allowed_origins<I: IntoIterator<Item = String>>(mut self, origins: I) -> Self {
        self.allowed_origins.extend(origins);
        self
    }

    /// Serves a server card at `<mcp path>/server-card` and an AI Catalog listing it at
    /// `/.well-known/ai-catalog.json`; the card's `_meta` lists the advertised extensions.
    pub fn server_card(mut self, card: ServerCard) -> Self {
        self.card = Some(card);
        self
    }

    /// Sets the listener limits (header and body timeouts, connection and header size limits).
    pub fn limits(mut self, limits: ListenerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Serves `route` — a gateway built for another MCP server — on the same listener, at the paths
    /// of its own resource (its MCP path, metadata, server card and token endpoint); its listen
    /// address and audit layer are not used (this gateway's are).
    pub fn route(mut self, route: Gateway) -> Self {
        self.routes.push(route);
        self
    }

    /// Enforces rate limits and quotas, inside inspection and authentication (they key on the
    /// parsed request and the principal) and inside audit (which records each refusal).
    pub fn rate_limit(mut self, layer: ratelimit::RateLimitLayer) -> Self {
        self.rate_limit = Some(layer);
        self
    }

    /// Counts requests per client address (the connection's peer) before any credential is
    /// looked at, inside audit and outside every other layer, the token endpoint included.
    pub fn pre_auth_limit(mut self, layer: mcp_enterprise_core::preauth::PreAuthLimitLayer) -> Self {
        self.pack = self.pack.pre_auth_limit(layer);
        self
    }

    /// What the upstream learns about the caller (default [`Propagation::None`]). The caller's
    /// own credentials are never forwarded in any mode.
    pub fn propagation(mut self, propagation: Propagation) -> Self {
        self.propagation = propagation;
        self
    }

    /// How long the upstream may take to start its answer (status and headers) before the call
    /// fails with `504` (default 300 s). A streamed answer is not cut once it has started.
    pub fn upstream_response_timeout(mut self, timeout: Duration) -> Self {
        self.upstream_timeout = timeout;
        self
    }

    /// How long calls in flight, streams included, may take to finish when the gateway stops
    /// (default 20 s); then what remains is answered with an error (see [`drain`](crate::drain)).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Serves `/healthz`, `/readyz` and `/metrics` on `addr`, a listener of their own (see
    /// [`admin`](crate::admin)); off by default.
    pub fn admin(mut self, addr: SocketAddr) -> Self {
        self.admin = Some(addr);
        self
    }

    /// The Redis the layers share (DPoP and workload-identity replay, rate limits): the admin
    /// listener's readiness asks it for `PING`.
    pub fn redis(mut self, client: mcp_enterprise_core::redis::RedisClient) -> Self {
        self.redis = Some(client);
        self
    }

    /// Puts a server span around every request and continues the caller's trace to the upstream
    /// (see [`telemetry`](crate::telemetry)); the spans are exported by the process' `tracing`
    /// subscriber with [`subscriber_layer`](crate::telemetry::subscriber_layer). Off by default.
    pub fn traces(mut self, settings: crate::telemetry::TraceSettings) -> Self {
        self.traces = Some(settings);
        self
    }

    /// Finishes the gateway; fails when two of its routes would serve the same path.
    pub fn build(self) -> Result<Gateway, ConfigError> {
        let pack = self.pack.mcp_path(&self.mcp_path)?.build()?;
        let taken: Vec<String> = pack
            .workload_identity()
            .and_then(|w| w.token_endpoint())
            .map(|e| e.paths().iter().map(|p| (*p).to_owned()).collect())
            .unwrap_or_default();
        for path in self.propagation.paths() {
            if path == self.mcp_path || taken.contains(&path) {
                return Err(ConfigError::Propagation(propagation::PropagationError::Config(format!(
                    "the signed assertion documents' path {path} is already served (MCP path or token endpoint); set upstream.propagation.signed_assertion.issuer to an URL with a path"
                ))));
            }
        }
        let egress = self.egress.unwrap_or_else(Egress::from_env);
        let connector = outbound::connector(&egress, &self.upstream_tls, proxy::DEFAULT_CONNECT_TIMEOUT, true)?;
        let upstream = match (self.upstream, &self.stdio) {
            (Some(uri), _) => uri,
            // not dialled: the bridge serves the route
            (None, Some(_)) => Uri::from_static("stdio://child"),
            (None, None) => return Err(ConfigError::MissingUpstream),
        };
        let upstream_proxy = egress.proxy_for(&upstream).and_then(|p| p.parse().ok());
        Ok(Gateway {
            upstream,
            connector,
            upstream_proxy,
            upstream_host: self.upstream_host,
            trusted_proxies: Arc::new(self.trusted_proxies),
            listen: self.listen,
            mcp_path: self.mcp_path,
            pack,
            origin_policy: Arc::new(OriginPolicy {
                hosts: self.allowed_hosts,
                origins: self.allowed_origins,
                any_origin: false,
            }),
            card: self.card,
            limits: self.limits,
            routes: Vec::new(),
            rate_limit: self.rate_limit,
            propagation: self.propagation,
            upstream_timeout: self.upstream_timeout,
            shutdown_grace: self.shutdown_grace,
            admin: self.admin,
            redis: self.redis,
            traces: self.traces,
            stdio: self.stdio,
        })
        .and_then(|mut gateway| {
            let mut all = vec![&gateway];
            all.extend(self.routes.iter());
            if let Some(path) = routes::clash(&all) {
                return Err(ConfigError::RouteClash { path });
            }
            gateway.routes = self.routes;
            Ok(gateway)
        })
    }
}
