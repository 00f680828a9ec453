//! The demo server as an upstream that trusts only an mcp-enterprise gateway: every request must
//! carry the gateway's signed assertion (`upstream.propagation.mode = "signed_assertion"`),
//! verified with the `mcp-enterprise-sso` layer — the gateway as the one issuer, its keys found by
//! RFC 8414 discovery at the gateway, `typ` must be `at+jwt`, `aud` must be this server — and each
//! assertion is accepted once (its `jti` remembered until it expires, in the bounded replay store
//! of `mcp-enterprise-core`). The `whoami` tool then returns the verified caller.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use mcp_enterprise_demo_server::verified::{GatewayTrust, serve_verified};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8081").await?;
//! let trust = GatewayTrust::new("http://127.0.0.1:8787", "http://127.0.0.1:8081/mcp");
//! serve_verified(listener, mcp_enterprise_demo_server::DemoServer::new(), &trust, std::future::pending()).await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use mcp_enterprise_core::clock::{Clock, SystemClock};
use mcp_enterprise_core::replay::{MemoryReplayStore, ReplayError, ReplayStore};
use mcp_enterprise_core::{Challenge, Principal};
use mcp_enterprise_sso::{ClaimMapping, Issuer, Keys, SsoConfigError, SsoLayer, TypMode};
use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
use serde_json::Value;

use crate::DemoServer;

/// Which gateway this server trusts, and as whom it is addressed.
#[derive(Debug, Clone)]
#[must_use]
pub struct GatewayTrust {
    issuer: String,
    resource: String,
    leeway: Duration,
    keys: Keys,
    replay_capacity: usize,
}

impl GatewayTrust {
    /// Trusts assertions from `issuer` (the gateway's issuer URL) addressed to `resource` (this
    /// server's MCP endpoint URL, the gateway's upstream URL). Keys are discovered; no clock
    /// leeway; 100 000 remembered assertions.
    pub fn new(issuer: &str, resource: &str) -> Self {
        Self {
            issuer: issuer.to_owned(),
            resource: resource.to_owned(),
            leeway: Duration::ZERO,
            keys: Keys::Discover,
            replay_capacity: 100_000,
        }
    }

    /// Clock skew tolerated on `exp` and `iat`.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Where the keys come from (default: discovered at the issuer).
    pub fn keys(mut self, keys: Keys) -> Self {
        self.keys = keys;
        self
    }

    /// The SSO layer that verifies the assertions. The principal it sets keeps the assertion's
    /// `jti`, `exp`, `act`, `auth_method`, `idp` and `tenant`.
    pub fn sso_layer(&self) -> Result<SsoLayer, SsoConfigError> {
        let issuer = Issuer::new(&self.issuer).typ(TypMode::Strict).keys(self.keys.clone()).leeway(self.leeway)?;
        let claims = ClaimMapping {
            tenant: Some("tenant".into()),
            forward: ["jti", "exp", "act", "auth_method", "idp"].map(str::to_owned).to_vec(),
            ..ClaimMapping::default()
        };
        SsoLayer::builder(&self.resource).issuer(issuer).claims(claims).build()
    }

    /// The router: the demo MCP service at [`MCP_PATH`](crate::MCP_PATH) behind the assertion check
    /// and the `jti` replay check.
    pub fn router(
        &self,
        server: DemoServer,
        config: StreamableHttpServerConfig,
    ) -> Result<axum::Router, SsoConfigError> {
        let replay = Replay {
            store: Arc::new(MemoryReplayStore::new(self.replay_capacity)),
            clock: Arc::new(SystemClock),
            leeway: self.leeway,
            resource_metadata: format!("{}/.well-known/oauth-protected-resource", origin(&self.resource)),
        };
        let inner = crate::router_for(crate::mcp_service_for(server, config))
            .layer(middleware::from_fn_with_state(Arc::new(replay), refuse_replays));
        let sso = self.sso_layer()?;
        Ok(axum::Router::new().fallback_service(tower::ServiceBuilder::new().layer(sso).service(inner)))
    }
}

fn origin(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest)),
        None => url.to_owned(),
    }
}

/// Serves the demo server behind the check until `shutdown` resolves.
pub async fn serve_verified(
    listener: tokio::net::TcpListener,
    server: DemoServer,
    trust: &GatewayTrust,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = StreamableHttpServerConfig::default();
    let sessions = config.cancellation_token.clone();
    let app = trust.router(server, config).map_err(|e| std::io::Error::other(e.to_string()))?;
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            sessions.cancel();
        })
        .await
}

#[derive(Debug)]
struct Replay {
    store: Arc<dyn ReplayStore>,
    clock: Arc<dyn Clock>,
    leeway: Duration,
    resource_metadata: String,
}

/// Each assertion once: its `jti` is remembered (scoped by issuer) until it expires.
async fn refuse_replays(State(replay): State<Arc<Replay>>, req: Request, next: Next) -> Response {
    let Some(principal) = req.extensions().get::<Principal>() else {
        return refusal(&replay, StatusCode::UNAUTHORIZED, "no verified caller");
    };
    let claims = principal.claims();
    let (Some(jti), Some(exp)) = (claims.get("jti").and_then(Value::as_str), claims.get("exp").and_then(Value::as_u64))
    else {
        return refusal(&replay, StatusCode::UNAUTHORIZED, "the assertion has no jti or exp");
    };
    let key = format!("{}\u{0}{jti}", principal.issuer());
    let now = replay.clock.now();
    let until = Duration::from_secs(exp) + replay.leeway;
    match replay.store.check_and_insert(&key, now, until).await {
        Ok(true) => next.run(req).await,
        Ok(false) => refusal(&replay, StatusCode::UNAUTHORIZED, "the assertion was already used"),
        Err(ReplayError::Full) | Err(_) => {
            refusal(&replay, StatusCode::SERVICE_UNAVAILABLE, "the replay store cannot take the assertion")
        }
    }
}

fn refusal(replay: &Replay, status: StatusCode, why: &str) -> Response {
    let body = mcp_enterprise_core::JsonRpcError::new(mcp_enterprise_core::jsonrpc::codes::INVALID_REQUEST, why);
    let mut response =
        (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body.to_bytes())
            .into_response();
    if status == StatusCode::UNAUTHORIZED {
        let challenge = Challenge::bearer()
            .resource_metadata(&replay.resource_metadata)
            .error(mcp_enterprise_core::AuthErrorCode::InvalidToken)
            .error_description(why);
        response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge.to_header_value());
    }
    response
}
