//! # mcp-enterprise-gateway
//!
//! A reverse proxy that puts the mcp-enterprise extension pack in front of any Streamable HTTP MCP
//! server. It is one user of the pack's composition point, `mcp-enterprise-stack`: each route's
//! extension layers are joined by [`Pack`]. Request path, outermost
//! first:
//!
//! 1. the audit layer (when configured), around every route;
//! 2. `Host` and `Origin` checks (DNS-rebinding defence required by the transport spec): a `Host`
//!    that is not an allowed name (default: loopback names) or a cross-origin `Origin` → `403`;
//!    the server card, the workload identity token endpoint and the signed-assertion JWKS beside;
//! 3. the pack without its audit layer (`PackLayer::without_audit`): the pre-authentication
//!    limit per client address (the connection's peer; also around the token endpoint), RFC 9728
//!    metadata, inspection, negotiation, workload identity, DPoP, SSO, policy;
//! 4. [`RateLimitLayer`](ratelimit::RateLimitLayer), the pack's inner layer, when configured:
//!    limits keyed by the principal and the parsed request, `429` when exceeded;
//! 5. [`Proxy`]: streams the request upstream and the response back (SSE unbuffered), never
//!    forwarding the caller's `Authorization` or `DPoP` headers.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use mcp_enterprise_gateway::Gateway;
//! let running = Gateway::builder()
//!     .upstream("http://127.0.0.1:8081/mcp")?
//!     .listen("127.0.0.1:0".parse()?)
//!     .build()?
//!     .spawn()
//!     .await?;
//! println!("MCP endpoint: {}", running.mcp_url());
//! running.shutdown().await;
//! # Ok(()) }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub mod admin;
mod builder;
pub mod card;
pub mod catalog;
pub mod configured;
mod correlation;
pub mod drain;
pub mod forwarded;
pub mod listener;
mod origin;
pub mod propagation;
pub mod proxy;
pub mod ratelimit;
mod routes;
mod running;
pub mod stdio;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::middleware::{self};
use axum::response::IntoResponse;
pub use builder::GatewayBuilder;
pub use card::{CardHeader, ServerCard};
use http::{StatusCode, Uri};
pub use listener::ListenerLimits;
use mcp_enterprise_stack::Pack;
pub use propagation::Propagation;
pub use proxy::Proxy;
pub use running::{Received, RunningGateway, Signals};
use tokio::net::TcpListener;

use crate::origin::{OriginPolicy, check_origin};

/// A gateway setting is wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The upstream URL is not usable.
    #[error("invalid upstream URL {url:?}: {reason}")]
    InvalidUpstream {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The MCP path is not usable.
    #[error("invalid MCP path {path:?}: it must start with '/' and not end with '/'")]
    InvalidPath {
        /// The path given.
        path: String,
    },
    /// No upstream was set.
    #[error("no upstream MCP server configured")]
    MissingUpstream,
    /// The upstream's TLS or egress settings are not usable (a CA, certificate or key file).
    #[error("upstream TLS: {0}")]
    UpstreamTls(#[from] mcp_enterprise_core::outbound::OutboundError),
    /// A core layer setting is wrong.
    #[error(transparent)]
    Core(#[from] mcp_enterprise_core::ConfigError),
    /// The pack's layers do not fit together.
    #[error(transparent)]
    Pack(#[from] mcp_enterprise_stack::PackError),
    /// A listener limit is out of range.
    #[error("listen.{what}: {reason}")]
    InvalidLimit {
        /// The limit.
        what: &'static str,
        /// The accepted range.
        reason: &'static str,
    },
    /// Two routes would serve the same path.
    #[error("two routes would both serve {path}: give each route a resource with its own path")]
    RouteClash {
        /// The path both would serve.
        path: String,
    },
    /// A rate-limit setting is wrong.
    #[error("rate limits: {0}")]
    RateLimit(#[from] ratelimit::RateLimitConfigError),
    /// The identity propagation setting is wrong.
    #[error(transparent)]
    Propagation(#[from] propagation::PropagationError),
}

pub use mcp_enterprise_config::compose::sso_token_validator;

/// The default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = mcp_enterprise_config::DEFAULT_LISTEN;

/// A configured gateway, ready to [`spawn`](Gateway::spawn).
#[derive(Debug, Clone)]
pub struct Gateway {
    upstream: Uri,
    /// Connections to the upstream: TLS settings, egress proxy, connect timeout.
    connector: mcp_enterprise_core::outbound::OutboundConnector,
    /// The egress proxy the upstream is reached through, if any (what readiness dials).
    upstream_proxy: Option<Uri>,
    /// The `Host` sent upstream instead of the URL's authority.
    upstream_host: Option<http::HeaderValue>,
    /// Whose `Forwarded`/`X-Forwarded-For` are believed (the audit record's client address).
    trusted_proxies: Arc<forwarded::TrustedProxies>,
    listen: SocketAddr,
    mcp_path: String,
    /// Every extension layer, composed by the one composition point.
    pack: Pack,
    origin_policy: Arc<OriginPolicy>,
    card: Option<ServerCard>,
    limits: ListenerLimits,
    /// More MCP servers behind the same listener, each at its own path (see `routes`).
    routes: Vec<Gateway>,
    rate_limit: Option<ratelimit::RateLimitLayer>,
    propagation: Propagation,
    upstream_timeout: Duration,
    shutdown_grace: Duration,
    admin: Option<SocketAddr>,
    redis: Option<mcp_enterprise_core::redis::RedisClient>,
    traces: Option<telemetry::TraceSettings>,
    /// A stdio MCP server bridged instead of the HTTP upstream.
    stdio: Option<stdio::StdioBridge>,
}

/// The default grace period of a stop: how long calls in flight may take to finish.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(mcp_enterprise_config::DEFAULT_SHUTDOWN_GRACE_SECS);

/// What a serving gateway's routers share: the stop signal and the metrics.
#[derive(Debug, Clone)]
pub(crate) struct Serving {
    pub(crate) drain: drain::Drain,
    pub(crate) metrics: Option<Arc<admin::Metrics>>,
}

/// Host names a gateway accepts by default: the loopback names.
pub const LOOPBACK_HOSTS: &[&str] = &["localhost", "127.0.0.1", "::1"];

impl Gateway {
    /// The upstream MCP endpoint.
    pub fn upstream(&self) -> &Uri {
        &self.upstream
    }

    /// The whole layer stack as an axum router (for embedding the gateway in another server):
    /// this server's stack and each route's, behind one audit layer.
    pub fn router(&self) -> Router {
        self.router_serving(&Serving { drain: drain::Drain::new(), metrics: None })
    }

    /// [`router`](Self::router), its proxied calls ended by `drain` when the gateway stops and
    /// counted by `metrics`.
    pub(crate) fn router_serving(&self, serving: &Serving) -> Router {
        let cards: Vec<&ServerCard> =
            self.card.iter().chain(self.routes.iter().filter_map(|r| r.card.as_ref())).collect();
        let catalog = card::catalog_document(&cards);
        let own = self.stack(catalog, serving);
        let router = if self.routes.is_empty() {
            own
        } else {
            let routes = self.routes.iter().map(|r| (routes::owned_paths(r), r.stack(None, serving))).collect();
            Router::new().fallback_service(routes::RouteTable::new(own, routes))
        };
        // outermost: the trail records every refusal by the layers inside, the Host check included
        let router = match self.pack.audit() {
            Some(audit) => router.layer(audit.clone()),
            None => router,
        };
        // around audit: the server span, its ids in the audit record
        let router = match self.traces {
            Some(settings) => router.layer(telemetry::TraceLayer::new(settings)),
            None => router,
        };
        // around audit: counts every request, refusals by the audit layer included
        match &serving.metrics {
            Some(metrics) => {
                let paths = std::iter::once(self).chain(&self.routes).map(|g| g.mcp_path.clone()).collect();
                router.layer(admin::metrics::MetricsLayer::new(metrics.clone(), paths))
            }
            None => router,
        }
    }

    /// What the admin listener's readiness checks for this gateway.
    pub(crate) fn targets(&self) -> admin::Targets {
        let all = || std::iter::once(self).chain(&self.routes);
        admin::Targets {
            upstreams: all()
                .filter(|g| g.stdio.is_none())
                .map(|g| (g.upstream.clone(), g.upstream_proxy.clone()))
                .collect(),
            stdio: all().filter_map(|g| g.stdio.clone()).collect(),
            audit: self.pack.audit().cloned(),
            rate_limits: all().filter_map(|g| g.rate_limit.clone()).collect(),
            sso: all().filter_map(|g| g.pack.sso().cloned()).collect(),
            redis: self.redis.clone(),
            instrumented: all()
                .flat_map(|g| {
                    type Shared = Arc<dyn mcp_enterprise_core::stats::Instrumented + Send + Sync>;
                    let sso = g.pack.sso().map(|l| Arc::new(l.clone()) as Shared);
                    let dpop = g.pack.dpop().map(|l| Arc::new(l.clone()) as Shared);
                    let policy = g.pack.policy().map(|l| Arc::new(l.clone()) as Shared);
                    [sso, dpop, policy].into_iter().flatten()
                })
                .chain(self.pack.pre_auth_limit().map(|l| Arc::new(l.clone()) as _))
                .collect(),
        }
    }

    /// The admin listener's address (`None`: no admin listener).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// This server's layers, proxy and discovery documents (the AI `catalog`, when given, is
    /// served too). The audit layer is put around all routes by [`router`](Self::router).
    fn stack(&self, catalog: Option<card::DiscoveryDocument>, serving: &Serving) -> Router {
        // innermost: limits need the parsed request and the authenticated principal (calls the
        // policies refuse are not counted)
        let pack = self.pack.layer().without_audit().inner(tower::util::option_layer(self.rate_limit.clone()));
        let router = match &self.stdio {
            // a stdio server: the same layers in front of the bridge
            Some(bridge) => {
                bridge.set_metrics(serving.metrics.clone(), &self.mcp_path);
                Router::new().fallback_service(tower_layer::Layer::layer(
                    &pack,
                    bridge.at(&self.mcp_path, serving.drain.clone()),
                ))
            }
            None => {
                let proxy = Proxy::with_connector(self.upstream.clone(), self.mcp_path.clone(), self.connector.clone())
                    .with_upstream_host(self.upstream_host.clone())
                    .with_propagation(self.propagation.clone())
                    .with_drain(serving.drain.clone())
                    .with_metrics(serving.metrics.clone())
                    .with_response_timeout(self.upstream_timeout);
                Router::new().fallback_service(tower_layer::Layer::layer(&pack, proxy))
            }
        };
        // the SEP-1933 token endpoint, its JWKS and its RFC 8414 metadata (paths checked in `build`)
        let router = match self.pack.workload_identity().and_then(|w| w.token_endpoint()) {
            // the pre-authentication limit counts its requests too (an assertion is checked there)
            Some(endpoint) => endpoint.paths().into_iter().fold(router, |r, path| {
                let limit = tower::util::option_layer(self.pack.pre_auth_limit().cloned());
                r.route_service(path, tower_layer::Layer::layer(&limit, endpoint.clone()))
            }),
            None => router,
        };
        // the signed assertions' JWKS and RFC 8414 metadata (paths checked in `build`)
        let router = match &self.propagation {
            Propagation::SignedAssertion(minter) => self.propagation.paths().into_iter().fold(router, |r, path| {
                let (minter, served) = (minter.clone(), path.clone());
                r.route(
                    &path,
                    axum::routing::get(move || {
                        let document = minter.document(&served);
                        async move {
                            document.map_or_else(|| StatusCode::NOT_FOUND.into_response(), IntoResponse::into_response)
                        }
                    }),
                )
            }),
            _ => router,
        };
        // CORS for the listed origins, inside the rebinding defence and outside authentication
        let router = match origin::cors(&self.origin_policy.origins) {
            Some(cors) => router.layer(cors).layer(middleware::map_response(origin::preflight_no_content)),
            None => router,
        };
        let router = router.layer(middleware::from_fn_with_state(self.origin_policy.clone(), check_origin));
        // public discovery documents: cross-origin reads allowed, the Host still checked
        if self.card.is_none() && catalog.is_none() {
            return router;
        }
        let public = Arc::new(OriginPolicy { any_origin: true, ..(*self.origin_policy).clone() });
        let mut documents = Router::new();
        if let Some(card) = &self.card {
            let (card_doc, _) = card.services(self.pack.extensions());
            let card_path = format!("{}/server-card", self.mcp_path.trim_end_matches('/'));
            documents = documents.route_service(&card_path, card_doc);
        }
        if let Some(catalog) = catalog {
            documents = documents.route_service(card::AI_CATALOG_PATH, catalog);
        }
        router.merge(documents.layer(middleware::from_fn_with_state(public, check_origin)))
    }

    /// Binds the listen address and serves on the current tokio runtime.
    pub async fn spawn(self) -> std::io::Result<RunningGateway> {
        let listener = listener::bind(self.listen)?;
        self.serve_on(listener)
    }

    /// Serves on an already bound listener (its address wins over the configured one), HTTP/1.1
    /// under the [`ListenerLimits`].
    pub fn serve_on(self, listener: TcpListener) -> std::io::Result<RunningGateway> {
        RunningGateway::serve(listener, self)
    }

    /// The grace period calls in flight get when the gateway stops.
    pub fn shutdown_grace(&self) -> Duration {
        self.shutdown_grace
    }

    /// The listener limits.
    pub fn limits(&self) -> ListenerLimits {
        self.limits
    }

    /// The MCP path.
    pub fn mcp_path(&self) -> &str {
        &self.mcp_path
    }

    /// The listen address.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// The stdio bridges of this server and its routes.
    pub fn stdio_bridges(&self) -> Vec<stdio::StdioBridge> {
        std::iter::once(self).chain(&self.routes).filter_map(|g| g.stdio.clone()).collect()
    }
}
