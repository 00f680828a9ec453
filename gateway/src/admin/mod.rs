//! The admin listener: `/healthz`, `/readyz` and `/metrics` on a socket of their own (loopback
//! by default), so probes and scrapers need no `Host` the MCP listener accepts and no token.
//!
//! - `GET /healthz`: `200 ok` while the process serves (also while it stops).
//! - `GET /readyz`: `200` when every check passes, else `503`; the JSON body names each check and
//!   why it fails: `listener` (accepting, not stopping), `upstream` (each upstream's address
//!   accepts a TCP connection within 1 s), `idp` (each trusted issuer's keys: not past their
//!   staleness bound — keys not fetched yet are fetched by the first token, so they do not hold
//!   traffic back), `audit` (the trail's writer can write), `redis` (each
//!   Redis of the rate limits answers `PING` within 1 s).
//! - `GET /metrics`: every [`Metrics`] metric in the Prometheus text format (0.0.4).

pub mod metrics;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, Uri, header};
use mcp_enterprise_audit::AuditLayer;
pub use metrics::Metrics;
use serde_json::{Value, json};

use mcp_enterprise_core::jwks::KeySetState;

use crate::drain::{Drain, Phase};
use crate::ratelimit::RateLimitLayer;

/// The default admin address: loopback, the port commonly used by exporters of this kind.
pub const DEFAULT_ADMIN_ADDRESS: &str = mcp_enterprise_config::DEFAULT_ADMIN_ADDRESS;

/// How long one readiness check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// What readiness checks: taken from the gateway serving now (a reload replaces it).
#[derive(Debug, Clone, Default)]
pub(crate) struct Targets {
    /// Each HTTP upstream and the egress proxy it is reached through, if any.
    pub(crate) upstreams: Vec<(Uri, Option<Uri>)>,
    pub(crate) audit: Option<AuditLayer>,
    pub(crate) rate_limits: Vec<RateLimitLayer>,
    pub(crate) sso: Vec<mcp_enterprise_sso::SsoLayer>,
    /// The Redis shared by the layers, when configured.
    pub(crate) redis: Option<mcp_enterprise_core::redis::RedisClient>,
    /// The layers that keep their own counters (SSO, DPoP, policy, the pre-authentication limit),
    /// read at each scrape.
    pub(crate) instrumented: Vec<Arc<dyn mcp_enterprise_core::stats::Instrumented + Send + Sync>>,
    /// The stdio bridges (a crash loop makes the gateway not ready).
    pub(crate) stdio: Vec<crate::stdio::StdioBridge>,
}

/// The admin listener's state.
#[derive(Debug, Clone)]
pub(crate) struct Admin {
    pub(crate) metrics: Arc<Metrics>,
    targets: Arc<RwLock<Targets>>,
    drain: Drain,
    pub(crate) listening: Arc<AtomicBool>,
}

impl Admin {
    pub(crate) fn new(metrics: Arc<Metrics>, targets: Targets, drain: Drain) -> Self {
        metrics.set_audit(targets.audit.clone());
        metrics.set_layers(targets.instrumented.clone());
        Self { metrics, targets: Arc::new(RwLock::new(targets)), drain, listening: Arc::new(AtomicBool::new(true)) }
    }

    pub(crate) fn set_targets(&self, targets: Targets) {
        self.metrics.set_audit(targets.audit.clone());
        self.metrics.set_layers(targets.instrumented.clone());
        *self.targets.write().unwrap_or_else(std::sync::PoisonError::into_inner) = targets;
    }

    pub(crate) fn router(&self) -> Router {
        Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(ready))
            .route("/metrics", get(scrape))
            .with_state(self.clone())
    }

    /// Every check, failing ones with their reason.
    async fn readiness(&self) -> (bool, Value) {
        let targets = self.targets.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let mut checks = Vec::new();
        let listener = if !self.listening.load(Ordering::SeqCst) {
            Err("the listener is not accepting connections".to_owned())
        } else if self.drain.phase() != Phase::Serving {
            Err("the gateway is stopping".to_owned())
        } else {
            Ok(())
        };
        checks.push(("listener".to_owned(), listener));
        for (upstream, proxy) in &targets.upstreams {
            // through an egress proxy, the proxy is what the gateway dials
            checks.push(match proxy {
                Some(proxy) => (format!("upstream {upstream} via proxy {proxy}"), reachable(proxy).await),
                None => (format!("upstream {upstream}"), reachable(upstream).await),
            });
        }
        for bridge in &targets.stdio {
            checks.push((format!("stdio {}", bridge.route()), bridge.health()));
        }
        if let Some(audit) = &targets.audit {
            let healthy = if audit.is_failing() {
                Err("the audit writer cannot write (disk full or I/O error); it retries".to_owned())
            } else {
                Ok(())
            };
            checks.push(("audit".to_owned(), healthy));
        }
        for sso in &targets.sso {
            let Ok(probed) = tokio::time::timeout(CHECK_TIMEOUT * 2, sso.probe_key_sets()).await else {
                checks.push(("idp".to_owned(), Err("the key sets could not be checked in time".to_owned())));
                continue;
            };
            for (issuer, state) in probed {
                let usable = match state {
                    KeySetState::TooStale => {
                        Err("the keys could not be refreshed for longer than their staleness bound".to_owned())
                    }
                    // fetched when the first token needs them: nothing to hold traffic back for
                    _ => Ok(()),
                };
                checks.push((format!("idp {issuer}"), usable));
            }
        }
        if let Some(redis) = &targets.redis {
            let answer = match tokio::time::timeout(CHECK_TIMEOUT, redis.ping()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {} ms", CHECK_TIMEOUT.as_millis())),
            };
            checks.push((format!("redis {}", redis.target()), answer));
        } else {
            // a rate-limit layer given its own Redis through the library API
            for limits in &targets.rate_limits {
                if let Some((addr, answer)) = limits.ping(CHECK_TIMEOUT).await {
                    checks.push((format!("redis {addr}"), answer));
                }
            }
        }
        let ready = checks.iter().all(|(_, r)| r.is_ok());
        let body = json!({
            "ready": ready,
            "checks": checks.iter().map(|(name, r)| match r {
                Ok(()) => json!({"check": name, "ready": true}),
                Err(reason) => json!({"check": name, "ready": false, "reason": reason}),
            }).collect::<Vec<_>>(),
            "not_ready": checks.iter().filter(|(_, r)| r.is_err()).map(|(name, _)| name).collect::<Vec<_>>(),
        });
        (ready, body)
    }
}

/// Whether `uri`'s host and port accept a TCP connection in time.
async fn reachable(uri: &Uri) -> Result<(), String> {
    let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
    let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
    match tokio::time::timeout(CHECK_TIMEOUT, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("unreachable: {e}")),
        Err(_) => Err(format!("no connection within {} s", CHECK_TIMEOUT.as_secs())),
    }
}

async fn ready(State(admin): State<Admin>) -> Response {
    let (ready, body) = admin.readiness().await;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn scrape(State(admin): State<Admin>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], admin.metrics.encode()).into_response()
}
