//! The document: [`PackConfig`] and the sections that belong to no single extension.
//!
//! Each extension section *is* that crate's own configuration type (`mcp_enterprise_sso::SsoConfig`
//! and so on), composed here and never redeclared; the schema, the errors and the reference
//! documentation all come from those types.

use mcp_enterprise_audit::AuditConfig;
use mcp_enterprise_core::CoreConfig;
use mcp_enterprise_dpop::DpopConfig;
use mcp_enterprise_integrity::IntegrityConfig;
use mcp_enterprise_policy::PolicyConfig;
use mcp_enterprise_sso::SsoConfig;
use mcp_enterprise_workload_identity::WorkloadIdentityConfig;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::propagation::PropagationConfig;

/// The document format version this crate reads.
pub const CURRENT_VERSION: u32 = 1;

/// The prefix of environment variables that override the files.
pub const ENV_PREFIX: &str = "MCPE_";

/// Separates nesting levels in environment variable names: `MCPE_AUDIT__QUEUE_CAPACITY` sets
/// `audit.queue_capacity` (a single `_` stays part of the key).
pub const ENV_SEPARATOR: &str = "__";

/// The default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";

/// Default `admin.address`: loopback, port 9464.
pub const DEFAULT_ADMIN_ADDRESS: &str = "127.0.0.1:9464";

/// Default `listen.header_read_timeout_secs`.
pub const DEFAULT_HEADER_READ_TIMEOUT_SECS: u64 = 10;
/// Default `listen.request_body_timeout_secs`.
pub const DEFAULT_REQUEST_BODY_TIMEOUT_SECS: u64 = 30;
/// Default `listen.max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default `listen.shutdown_grace_secs`: below Kubernetes' default 30 s termination grace period,
/// so the gateway seals its audit trail before it would be killed.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 20;
/// Default `listen.max_header_bytes`: 32 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;

/// The whole pack, configured by one document (TOML, YAML or JSON; one schema).
///
/// Sections left out are off. `sso.resource` and `workload_identity.resource` default to the
/// top-level [`resource`](Self::resource), and `dpop.origin` to its origin.
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "mcp-enterprise configuration")]
#[non_exhaustive]
pub struct PackConfig {
    /// Version of this document's format. Must be `1`.
    pub version: u32,
    /// The server's canonical resource URI: the MCP endpoint URL clients use, e.g.
    /// `https://mcp.example.com/mcp`. Tokens must name it as their audience (RFC 8707), the server
    /// card and the client configurations point at it, and the gateway serves MCP at its path.
    #[schemars(url)]
    pub resource: String,
    /// The MCP server the gateway fronts.
    pub upstream: UpstreamConfig,
    /// Where and for whom the gateway listens.
    #[serde(default)]
    pub listen: ListenConfig,
    /// Inspection and SEP-2133 negotiation (the core layers).
    #[serde(default)]
    pub core: CoreConfig,
    /// OAuth 2.1 bearer tokens from enterprise identity providers (`mcp-enterprise-sso`). Absent: off.
    pub sso: Option<SsoConfig>,
    /// DPoP-bound tokens, RFC 9449 / SEP-1932 (`mcp-enterprise-dpop`). Absent: off. Tokens are judged
    /// by the `sso` section, or by `dpop.static_validator`.
    pub dpop: Option<DpopConfig>,
    /// Workload identity, SEP-1933 (`mcp-enterprise-workload-identity`). Absent: off.
    pub workload_identity: Option<WorkloadIdentityConfig>,
    /// The tamper-evident audit trail (`mcp-enterprise-audit`). Absent: off.
    pub audit: Option<AuditConfig>,
    /// Cedar authorization of tool calls, resource reads and prompt gets, with list filtering
    /// (`mcp-enterprise-policy`). Absent: off.
    pub policy: Option<PolicyConfig>,
    /// Tool-definition integrity: the upstream's tools, prompts and resource templates compared
    /// with a lock file; silent changes refused (`mcp-enterprise-integrity`). Absent: off.
    pub integrity: Option<IntegrityConfig>,
    /// The server card served at `<resource>/server-card` and listed in
    /// `/.well-known/ai-catalog.json`. Absent: no card.
    pub server_card: Option<ServerCardConfig>,
    /// What MCP clients need to connect (`mcp-enterprise config export`). Absent: derived from
    /// `resource` and the `sso` scopes.
    pub client: Option<ClientConfig>,
    /// More MCP servers behind the same listener, each at the path of its own `resource`, with its
    /// own upstream and layers (a route's sections are its own: nothing is inherited from the top
    /// level but `listen` and `audit`, which all routes share).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteConfig>,
    /// Rate limits and quotas, enforced by the gateway after authentication (a request must pass
    /// every limit that applies to it; exceeded: `429` with `Retry-After`). Empty: none.
    #[serde(default)]
    pub rate_limits: Vec<crate::rate_limit::RateLimitConfig>,
    /// The admin listener: `/healthz`, `/readyz` and `/metrics` (Prometheus) on a socket of their
    /// own, without the `Host`/`Origin` checks of the MCP listener. Absent: off.
    pub admin: Option<AdminConfig>,
    /// What the gateway logs (stderr) and how. Absent: text lines at `info`.
    pub logging: Option<LoggingConfig>,
    /// The async runtime the gateway runs on. Absent: one worker thread per CPU the process may
    /// use (a cgroup CPU quota, e.g. a Kubernetes CPU limit, counts).
    pub runtime: Option<RuntimeConfig>,
    /// OpenTelemetry traces of every MCP request, exported over OTLP/HTTP. Absent: off.
    pub traces: Option<crate::traces::TracesConfig>,
    /// Redis shared by the replicas: DPoP and workload-identity `jti`s and rate-limit counts,
    /// each use with its own prefix and fail-open/fail-closed setting. Absent: every replica keeps
    /// its own state in memory.
    pub redis: Option<crate::redis::RedisConfig>,
    /// Outbound connections: the forward proxy for every outbound call (identity providers,
    /// token endpoints, workload issuers, upstreams) and CA roots for identity providers and
    /// token endpoints. Absent: the environment's proxy (`HTTPS_PROXY`, `NO_PROXY`), the system's
    /// roots.
    pub egress: Option<EgressConfig>,
    /// The settings whose values came from secret references (set by the loader; not part of the
    /// document): `Debug` never shows them.
    #[serde(skip)]
    #[schemars(skip)]
    pub(crate) secret_paths: SecretPaths,
}

/// Key paths of secrets; never affects equality.
#[derive(Debug, Clone, Default)]
pub(crate) struct SecretPaths(pub(crate) std::sync::Arc<std::collections::BTreeSet<crate::path::KeyPath>>);

impl PartialEq for SecretPaths {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for PackConfig {
    /// Debug output never shows a secret — a setting marked `writeOnly` in the schema or a value
    /// that came from a secret reference: it is the redacted document.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = serde_json::to_value(self).map_err(|_| std::fmt::Error)?;
        let redacted = crate::secret::redact(value, &self.secret_paths.0);
        f.debug_tuple("PackConfig").field(&redacted).finish()
    }
}

/// The fronted MCP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct UpstreamConfig {
    /// Its Streamable HTTP endpoint, an absolute `http://` or `https://` URL without credentials,
    /// e.g. `http://127.0.0.1:8081/mcp` or `https://mcp.vendor.example/mcp` (TLS: `tls`). The
    /// caller's token is never forwarded to it. Exactly one of `url` and `command` is set.
    #[schemars(url)]
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// A local MCP server to run instead, speaking newline-delimited JSON-RPC on stdin/stdout:
    /// the program and its arguments, e.g. `["npx", "-y", "@modelcontextprotocol/server-everything", "stdio"]`.
    /// One child per client session (see `stdio` and docs/stdio.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Variables set for the child (values may be secret references such as `${env:API_KEY}`).
    /// Nothing else reaches it but the names in `stdio.inherit_env`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub env: std::collections::BTreeMap<String, String>,
    /// The child's working directory, an existing directory. Default: the gateway's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Bounds of the children of `command`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdio: Option<crate::stdio::StdioConfig>,
    /// What the upstream learns about the caller (the caller's `Authorization`, `DPoP`,
    /// `Cookie` and `Proxy-Authorization` headers are never forwarded). Default: `none`.
    #[serde(default)]
    pub propagation: PropagationConfig,
    /// How long the upstream may take to start its answer (status and headers), in seconds
    /// (1 to 86400); then the call fails with `504` and the upstream request is dropped. A
    /// streamed (SSE) answer is not cut once it has started.
    #[serde(default = "default_response_timeout")]
    pub response_timeout_secs: u64,
    /// TLS to an `https://` upstream: extra CA bundle, client certificate (mTLS), server name.
    /// Absent: the system's roots, no client certificate. Only with an `https://` URL.
    pub tls: Option<UpstreamTlsConfig>,
    /// The `Host` header sent upstream instead of the URL's authority (e.g. when the URL names an
    /// address and the server routes by name).
    pub host: Option<String>,
}

/// TLS settings of an `https://` upstream (rustls on aws-lc-rs; HTTP/2 or HTTP/1.1 by ALPN).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct UpstreamTlsConfig {
    /// A PEM bundle of CA certificates trusted for this upstream besides the system's roots
    /// (a private CA).
    pub ca_file: Option<String>,
    /// A PEM certificate chain (leaf first) presented when the upstream asks for a client
    /// certificate (mTLS). Needs `client_key_file`.
    pub client_certificate_file: Option<String>,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of `client_certificate_file`.
    pub client_key_file: Option<String>,
    /// The name sent as SNI and checked in the upstream's certificate, instead of the URL's host.
    pub server_name: Option<String>,
}

/// Outbound connections (identity providers, introspection, token exchange, HTTPS upstreams):
/// the forward proxy and extra CA roots. Absent: `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` from the
/// environment, the system's roots.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct EgressConfig {
    /// The forward proxy, `http://host:port`; overrides `HTTPS_PROXY`/`HTTP_PROXY`. Every proxied
    /// connection is an HTTP `CONNECT` tunnel. `""`: no proxy, whatever the environment says.
    pub proxy: Option<String>,
    /// Hosts reached directly, comma-separated (`NO_PROXY` syntax: `localhost,.corp.example,10.0.0.0/8`);
    /// overrides `NO_PROXY`. Only with `proxy`.
    pub no_proxy: Option<String>,
    /// `user:password` for the proxy (sent as `Proxy-Authorization: Basic` on each `CONNECT`;
    /// never logged). Use a secret reference, e.g. `${file:/run/secrets/proxy}`.
    #[schemars(extend("writeOnly" = true))]
    pub proxy_credentials: Option<String>,
    /// A PEM bundle of CA certificates trusted for identity providers and authorization servers
    /// besides the system's roots (replaces the undocumented `SSL_CERT_FILE`).
    pub ca_file: Option<String>,
}

impl UpstreamConfig {
    /// What the gateway fronts, for humans: the URL, or `stdio: ` and the command.
    pub fn target(&self) -> String {
        match &self.command {
            Some(argv) => format!("stdio: {}", argv.join(" ")),
            None => self.url.clone(),
        }
    }
}

fn default_response_timeout() -> u64 {
    300
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines (colour only on a terminal, and not with `NO_COLOR`).
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`, and the request's
    /// `span` with `request_id` and `trace_id` on every line about a request).
    Json,
}

/// The least severe level logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// What the gateway does (the default).
    #[default]
    Info,
    /// Details of every request.
    Debug,
    /// Everything.
    Trace,
}

/// The `logging` section. `RUST_LOG`, when set, overrides `level` (with any filter directive).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct LoggingConfig {
    /// `text` (default) or `json`.
    pub format: LogFormat,
    /// `error`, `warn`, `info` (default), `debug` or `trace`.
    pub level: LogLevel,
}

/// The `runtime` section: the threads that serve requests. Read once at start: a reload that
/// changes it is refused (the running configuration stays).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RuntimeConfig {
    /// Worker threads serving connections. Absent: one per CPU the process may use. Where the
    /// gateway shares its CPUs with busy neighbours (a sidecar beside its MCP server, a small VM),
    /// fewer workers than CPUs wake each other less: see `docs/performance.md`, "Worker threads".
    #[schemars(range(min = 1, max = 1024))]
    pub worker_threads: Option<usize>,
}

/// The admin listener (`/healthz`, `/readyz`, `/metrics`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AdminConfig {
    /// Socket address (`host:port`) of the admin listener. Loopback by default; a Kubernetes
    /// `httpGet` probe reaches the pod IP, so there use `0.0.0.0:9464` (it serves no MCP and
    /// takes no credentials, but the metrics show traffic volumes: keep it off public networks).
    pub address: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { address: DEFAULT_ADMIN_ADDRESS.to_owned() }
    }
}

/// Where and for whom the gateway listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ListenConfig {
    /// Socket address to listen on (`host:port`). A non-loopback address needs an authentication
    /// section (`sso`, `dpop` or `workload_identity`) or `insecure_listen_any`.
    pub address: String,
    /// Extra names accepted in the `Host` header, besides the loopback names and the host of
    /// `resource` (DNS-rebinding defence: any other `Host` is refused with 403).
    pub allowed_hosts: Vec<String>,
    /// Browser origins allowed to call the MCP endpoint, e.g. `https://app.example.com`: CORS
    /// (preflights answered before authentication; `Mcp-Session-Id`, `WWW-Authenticate` and
    /// `DPoP-Nonce` exposed). Any other cross-origin request is refused with 403.
    pub allowed_origins: Vec<String>,
    /// Load balancers and reverse proxies (CIDR networks or addresses, e.g. `10.0.0.0/8`) whose
    /// `Forwarded`/`X-Forwarded-For` headers are believed for the client address in the audit
    /// record (`src_endpoint`). Default: none — the TCP peer is the client.
    pub trusted_proxies: Vec<String>,
    /// **Insecure**: listen on a non-loopback address without any authentication section, exposing
    /// the upstream server unauthenticated.
    pub insecure_listen_any: bool,
    /// Seconds a connection may take to send a complete request head (request line and headers),
    /// counted from when it starts waiting for a request (so also while idle between keep-alive
    /// requests); then it is closed without a response (slowloris defence).
    #[schemars(range(min = 1, max = 3600))]
    pub header_read_timeout_secs: u64,
    /// Seconds a request body may take to arrive completely, from the end of its head; then
    /// `408` (slow-body defence).
    #[schemars(range(min = 1, max = 3600))]
    pub request_body_timeout_secs: u64,
    /// Connections open at once. At the limit the gateway stops accepting: new connections wait
    /// in the kernel's accept queue until one closes. Keep it well below the open-file limit
    /// (`ulimit -n`): every proxied request also holds an upstream connection.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_connections: usize,
    /// Largest request head (request line and header fields) in bytes; larger → `431`.
    #[schemars(range(min = 1024, max = 1_048_576))]
    pub max_header_bytes: usize,
    /// Seconds the calls in flight, streamed (SSE) answers included, may take to finish when the
    /// gateway stops (`SIGTERM`, `SIGINT`); it stops accepting connections at once. Then what
    /// remains is answered with a JSON-RPC error saying the gateway is stopping (`503`, or the
    /// last event of a stream), and the audit trail is sealed. `0`: end them at once.
    #[schemars(range(min = 0, max = 3600))]
    pub shutdown_grace_secs: u64,
    /// Requests per client address (the connection's peer), counted before any credential is
    /// checked: a flood of bad tokens is refused with `429` before any signature check. On by
    /// default; shared by every route.
    pub pre_auth_limit: mcp_enterprise_core::preauth::PreAuthLimitConfig,
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            address: DEFAULT_LISTEN.to_owned(),
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            insecure_listen_any: false,
            header_read_timeout_secs: DEFAULT_HEADER_READ_TIMEOUT_SECS,
            request_body_timeout_secs: DEFAULT_REQUEST_BODY_TIMEOUT_SECS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            shutdown_grace_secs: DEFAULT_SHUTDOWN_GRACE_SECS,
            pre_auth_limit: mcp_enterprise_core::preauth::PreAuthLimitConfig::default(),
        }
    }
}

/// One more MCP server behind the gateway: the document's per-server sections, at the path of
/// its own `resource`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RouteConfig {
    /// This server's canonical resource URI, e.g. `https://mcp.example.com/jira/mcp`: its tokens'
    /// audience, and the path the gateway serves it at (distinct from every other route's).
    #[schemars(url)]
    pub resource: String,
    /// The MCP server this route fronts.
    pub upstream: UpstreamConfig,
    /// Inspection and SEP-2133 negotiation for this route.
    #[serde(default)]
    pub core: CoreConfig,
    /// This route's OAuth 2.1 bearer tokens. Absent: off.
    pub sso: Option<SsoConfig>,
    /// This route's DPoP-bound tokens. Absent: off.
    pub dpop: Option<DpopConfig>,
    /// This route's workload identity. Absent: off.
    pub workload_identity: Option<WorkloadIdentityConfig>,
    /// This route's server card, served at `<resource>/server-card`. Absent: no card.
    pub server_card: Option<ServerCardConfig>,
    /// This route's rate limits and quotas (names unique in the whole document: replicas sharing
    /// `redis.rate_limits` count by name). Empty: none.
    #[serde(default)]
    pub rate_limits: Vec<crate::rate_limit::RateLimitConfig>,
    /// This route's Cedar policies (its upstream's tools). Absent: off.
    pub policy: Option<PolicyConfig>,
    /// This route's tool-definition integrity (its upstream's lock file). Absent: off.
    pub integrity: Option<IntegrityConfig>,
}

/// The keys of a [`RouteConfig`]: the per-server sections of a document.
pub const ROUTE_KEYS: &[&str] = &[
    "resource",
    "upstream",
    "core",
    "sso",
    "dpop",
    "workload_identity",
    "server_card",
    "rate_limits",
    "policy",
    "integrity",
];

/// The server card (experimental MCP Server Card, SEP-2127): identity and connection facts served
/// before any connection. It never holds credentials or the upstream address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ServerCardConfig {
    /// Reverse-DNS server name with exactly one `/`, e.g. `com.example/weather`
    /// (`^[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+$`, 3–200 characters).
    #[schemars(length(min = 3, max = 200), regex(pattern = r"^[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+$"))]
    pub name: String,
    /// The server's version (semantic versioning recommended; ranges are refused).
    #[schemars(length(min = 1, max = 255))]
    pub version: String,
    /// What the server does, 1–100 characters.
    #[schemars(length(min = 1, max = 100))]
    pub description: String,
    /// Display name, 1–100 characters.
    #[schemars(length(min = 1, max = 100))]
    pub title: Option<String>,
    /// Homepage or documentation.
    #[schemars(url)]
    pub website_url: Option<String>,
    /// Source repository.
    pub repository: Option<RepositoryConfig>,
    /// The AI Catalog entry identifier (default `urn:air:{host of resource}:{name after the /}`).
    pub catalog_identifier: Option<String>,
    /// `max-age` of `Cache-Control`, seconds.
    #[serde(default = "default_card_max_age")]
    pub max_age_secs: u64,
}

fn default_card_max_age() -> u64 {
    3600
}

/// A source repository of the server card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RepositoryConfig {
    /// Repository URL.
    #[schemars(url)]
    pub url: String,
    /// Hosting service, e.g. `github`.
    pub source: String,
    /// Path of the server inside the repository.
    pub subfolder: Option<String>,
}

/// What MCP clients need to connect — never a secret: values a client must supply come from its
/// own environment (`env`), and OAuth needs only the public client id and scopes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The entry's name in client configurations (`^[a-zA-Z0-9_\[\]-]+$`; default: derived from
    /// the server card name or the host of `resource`).
    pub name: Option<String>,
    /// Display title.
    pub title: Option<String>,
    /// One-line description.
    pub description: Option<String>,
    /// OAuth hints for clients that register statically with the identity provider.
    pub oauth: Option<ClientOAuthConfig>,
    /// HTTP headers clients send.
    #[serde(default)]
    pub headers: Vec<ClientHeaderConfig>,
}

/// OAuth hints for clients.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ClientOAuthConfig {
    /// The public OAuth client id registered at the identity provider.
    pub client_id: Option<String>,
    /// Scopes to request (default: every scope the `sso` scope rules name).
    pub scopes: Option<Vec<String>>,
    /// The redirect URI registered for the client.
    #[schemars(url)]
    pub redirect_uri: Option<String>,
}

/// One HTTP header a client sends: a constant `value`, or the client's own environment variable
/// `env` (for a secret the client holds; it never passes through this file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ClientHeaderConfig {
    /// Header name.
    pub name: String,
    /// A constant, non-secret value.
    pub value: Option<String>,
    /// The client-side environment variable holding the value.
    pub env: Option<String>,
    /// What the value is, for people configuring the client.
    pub description: Option<String>,
}

impl PackConfig {
    /// A document with every optional section off.
    pub fn new(resource: &str, upstream: &str) -> Self {
        Self {
            version: CURRENT_VERSION,
            resource: resource.to_owned(),
            upstream: UpstreamConfig {
                url: upstream.to_owned(),
                command: None,
                env: std::collections::BTreeMap::new(),
                cwd: None,
                stdio: None,
                propagation: PropagationConfig::default(),
                response_timeout_secs: default_response_timeout(),
                tls: None,
                host: None,
            },
            listen: ListenConfig::default(),
            core: CoreConfig::default(),
            sso: None,
            dpop: None,
            workload_identity: None,
            audit: None,
            policy: None,
            integrity: None,
            server_card: None,
            client: None,
            routes: Vec::new(),
            rate_limits: Vec::new(),
            admin: None,
            logging: None,
            runtime: None,
            traces: None,
            redis: None,
            egress: None,
            secret_paths: SecretPaths::default(),
        }
    }

    /// One document per served MCP server: this one without its routes (the first), then one per
    /// route — this document with the route's sections in place of its own, sharing `listen` and
    /// `audit` (each route's own `sso.resource` and `dpop.origin` are filled in when loaded). The
    /// top level's authorization server (`workload_identity.authorization_server`) serves every
    /// route's resource: they are added to its `resources`.
    pub fn route_documents(&self) -> Vec<PackConfig> {
        let mut primary = Self { routes: Vec::new(), ..self.clone() };
        // the top level's authorization server issues tokens for every route's resource
        if let Some(server) = primary.workload_identity.as_mut().and_then(|w| w.authorization_server.as_mut()) {
            for route in &self.routes {
                if !server.resources.contains(&route.resource) {
                    server.resources.push(route.resource.clone());
                }
            }
        }
        let mut documents = vec![primary.clone()];
        for (i, route) in self.routes.iter().enumerate() {
            let secrets = crate::routes::to_route(i, &self.secret_paths.0);
            documents.push(Self {
                resource: route.resource.clone(),
                upstream: route.upstream.clone(),
                core: route.core.clone(),
                sso: route.sso.clone(),
                dpop: route.dpop.clone(),
                workload_identity: route.workload_identity.clone(),
                server_card: route.server_card.clone(),
                rate_limits: route.rate_limits.clone(),
                policy: route.policy.clone(),
                integrity: route.integrity.clone(),
                client: None,
                secret_paths: SecretPaths(std::sync::Arc::new(secrets)),
                ..primary.clone()
            });
        }
        documents
    }
}

impl ClientHeaderConfig {
    /// A header with a constant value.
    pub fn constant(name: &str, value: &str) -> Self {
        Self { name: name.to_owned(), value: Some(value.to_owned()), env: None, description: None }
    }

    /// A header whose value the client reads from its environment variable `env`.
    pub fn from_env(name: &str, env: &str) -> Self {
        Self { name: name.to_owned(), value: None, env: Some(env.to_owned()), description: None }
    }
}
