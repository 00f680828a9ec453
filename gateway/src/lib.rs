//! # mcp-enterprise-gateway
//!
//! A reverse proxy that puts the mcp-enterprise extension pack in front of any Streamable HTTP MCP
//! server. Request path, outermost first:
//!
//! 1. `Origin` check (DNS-rebinding defence required by the transport spec) → `403`;
//! 2. [`InspectLayer`]: one bounded read and parse of each posted JSON-RPC message, SEP-2243
//!    header/body checks (`-32020`), legacy session bookkeeping;
//! 3. [`NegotiateLayer`]: SEP-2133 extensions advertised in `initialize` / `server/discover`;
//! 4. [`Proxy`]: streams the request upstream and the response back (SSE unbuffered), never
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

pub mod proxy;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http::{StatusCode, Uri, header};
use mcp_enterprise_core::jsonrpc::codes;
use mcp_enterprise_core::{ExtensionSet, InspectLayer, JsonRpcError, NegotiateLayer};
pub use proxy::Proxy;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::ServiceBuilder;

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
    /// A core layer setting is wrong.
    #[error(transparent)]
    Core(#[from] mcp_enterprise_core::ConfigError),
}

/// The default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";

/// A configured gateway, ready to [`spawn`](Gateway::spawn).
#[derive(Debug, Clone)]
pub struct Gateway {
    upstream: Uri,
    listen: SocketAddr,
    mcp_path: String,
    inspect: InspectLayer,
    extensions: ExtensionSet,
    allowed_origins: Arc<[String]>,
}

/// Builds a [`Gateway`].
#[derive(Debug)]
#[must_use]
pub struct GatewayBuilder {
    upstream: Option<Uri>,
    listen: SocketAddr,
    mcp_path: String,
    inspect: InspectLayer,
    extensions: ExtensionSet,
    allowed_origins: Vec<String>,
}

impl Gateway {
    /// Starts a builder: listen on `127.0.0.1:8787`, serve MCP at `/mcp`, no extra origins allowed.
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder {
            upstream: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            mcp_path: "/mcp".to_owned(),
            inspect: InspectLayer::new(),
            extensions: ExtensionSet::default(),
            allowed_origins: Vec::new(),
        }
    }

    /// The upstream MCP endpoint.
    pub fn upstream(&self) -> &Uri {
        &self.upstream
    }

    /// The whole layer stack as an axum router (for embedding the gateway in another server).
    pub fn router(&self) -> Router {
        let proxy = Proxy::new(self.upstream.clone(), self.mcp_path.clone());
        let stack = ServiceBuilder::new()
            .layer(self.inspect.clone())
            .layer(NegotiateLayer::new(self.extensions.clone()))
            .service(proxy);
        Router::new()
            .fallback_service(stack)
            .layer(middleware::from_fn_with_state(self.allowed_origins.clone(), check_origin))
    }

    /// Binds the listen address and serves on the current tokio runtime.
    pub async fn spawn(self) -> std::io::Result<RunningGateway> {
        let listener = TcpListener::bind(self.listen).await?;
        let local_addr = listener.local_addr()?;
        let router = self.router();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "gateway server failed");
            }
        });
        Ok(RunningGateway { local_addr, mcp_path: self.mcp_path, stop: Some(stop), task })
    }
}

impl GatewayBuilder {
    /// Sets the upstream MCP endpoint, e.g. `http://127.0.0.1:8081/mcp`.
    pub fn upstream(mut self, url: &str) -> Result<Self, ConfigError> {
        let invalid = |reason| ConfigError::InvalidUpstream { url: url.to_owned(), reason };
        let uri: Uri = url.parse().map_err(|_| invalid("not a valid URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(invalid("https upstreams are not supported yet; use http on a trusted network"));
            }
            _ => return Err(invalid("must be an absolute http:// URL")),
        }
        let authority = uri.authority().ok_or_else(|| invalid("must name a host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("must not carry credentials"));
        }
        self.upstream = Some(uri);
        Ok(self)
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
        self.inspect = layer;
        self
    }

    /// Sets the extensions the gateway advertises.
    pub fn extensions(mut self, extensions: ExtensionSet) -> Self {
        self.extensions = extensions;
        self
    }

    /// Allows browser requests from these origins (e.g. `https://app.example.com`), in addition to
    /// same-origin requests.
    pub fn allowed_origins<I: IntoIterator<Item = String>>(mut self, origins: I) -> Self {
        self.allowed_origins.extend(origins);
        self
    }

    /// Finishes the gateway.
    pub fn build(self) -> Result<Gateway, ConfigError> {
        Ok(Gateway {
            upstream: self.upstream.ok_or(ConfigError::MissingUpstream)?,
            listen: self.listen,
            mcp_path: self.mcp_path,
            inspect: self.inspect,
            extensions: self.extensions,
            allowed_origins: self.allowed_origins.into(),
        })
    }
}

/// Rejects cross-origin browser requests (`Origin` present, neither same-origin nor allowed).
async fn check_origin(State(allowed): State<Arc<[String]>>, req: Request, next: Next) -> Response {
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok());
        let ok = origin.to_str().is_ok_and(|o| {
            allowed.iter().any(|a| a == o)
                || host.is_some_and(|h| {
                    o.strip_prefix("http://").or_else(|| o.strip_prefix("https://")).is_some_and(|rest| rest == h)
                })
        });
        if !ok {
            let body = JsonRpcError::new(codes::INVALID_REQUEST, "cross-origin request refused: Origin is not allowed");
            return (StatusCode::FORBIDDEN, [(header::CONTENT_TYPE, "application/json")], body.to_bytes())
                .into_response();
        }
    }
    next.run(req).await
}

/// A gateway serving in the background.
#[derive(Debug)]
pub struct RunningGateway {
    local_addr: SocketAddr,
    mcp_path: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl RunningGateway {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The proxied MCP endpoint, e.g. `http://127.0.0.1:8787/mcp`.
    pub fn mcp_url(&self) -> String {
        format!("http://{}{}", self.local_addr, self.mcp_path)
    }

    /// Stops accepting connections and waits (at most 5 s) for open requests, then stops hard.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(Duration::from_secs(5), &mut self.task).await.is_err() {
            self.task.abort();
        }
    }

    /// Waits until the server stops (it does not on its own unless it fails).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}
