//! A gateway serving: the swappable router slot (reloads) and the handle that stops it.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::admin::{Admin, Metrics};
use crate::drain::Drain;
use crate::{Gateway, ListenerLimits, Serving};

/// The router new requests go to; requests in flight keep the one they started with.
#[derive(Clone)]
pub(crate) struct CurrentRouter(Arc<RwLock<Router>>);

impl tower_service::Service<Request> for CurrentRouter {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = tower::util::Oneshot<Router, Request>;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let router = self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        tower::ServiceExt::oneshot(router, req)
    }
}

/// A gateway serving in the background.
#[derive(Debug)]
pub struct RunningGateway {
    local_addr: SocketAddr,
    mcp_path: String,
    current: Arc<RwLock<Router>>,
    limits: ListenerLimits,
    /// The grace period of a stop (a reload may change it).
    grace: Arc<RwLock<Duration>>,
    serving: Serving,
    stop: Option<oneshot::Sender<Duration>>,
    task: JoinHandle<()>,
    admin: Option<AdminListener>,
    /// The stdio bridges serving now (their children are killed at shutdown).
    bridges: Arc<RwLock<Vec<crate::stdio::StdioBridge>>>,
}

/// The admin listener serving beside the gateway.
#[derive(Debug)]
struct AdminListener {
    local_addr: SocketAddr,
    admin: Admin,
    task: JoinHandle<()>,
}

impl RunningGateway {
    /// Serves `gateway` on `listener` (HTTP/1.1 under its limits) in the background.
    pub(crate) fn serve(listener: tokio::net::TcpListener, gateway: Gateway) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let drain = Drain::new();
        // the admin listener is bound first: a busy admin port fails the start, not a probe later
        let admin = match gateway.admin_addr() {
            Some(addr) => {
                let admin_listener = crate::listener::bind(addr)?;
                let admin_addr = admin_listener.local_addr()?;
                let admin = Admin::new(Arc::new(Metrics::new()), gateway.targets(), drain.clone());
                let router = admin.router();
                let task = tokio::spawn(async move {
                    if let Err(error) = axum::serve(admin_listener, router).await {
                        tracing::error!(%error, "the admin listener failed");
                    }
                });
                Some(AdminListener { local_addr: admin_addr, admin, task })
            }
            None => None,
        };
        let serving = Serving { drain: drain.clone(), metrics: admin.as_ref().map(|a| a.admin.metrics.clone()) };
        let current = Arc::new(RwLock::new(gateway.router_serving(&serving)));
        let (stop, stopped) = oneshot::channel::<Duration>();
        let limits = gateway.limits();
        let trusted = gateway.trusted_proxies.clone();
        let open = serving.metrics.as_ref().map(|m| m.open_connections());
        let listening = admin.as_ref().map(|a| a.admin.listening.clone());
        let router = CurrentRouter(current.clone());
        let task = tokio::spawn(async move {
            crate::listener::serve(listener, router, limits, stopped, drain, open, trusted).await;
            if let Some(listening) = listening {
                listening.store(false, std::sync::atomic::Ordering::SeqCst);
            }
        });
        Ok(Self {
            local_addr,
            mcp_path: gateway.mcp_path().to_owned(),
            current,
            limits,
            grace: Arc::new(RwLock::new(gateway.shutdown_grace())),
            serving,
            stop: Some(stop),
            task,
            admin,
            bridges: Arc::new(RwLock::new(gateway.stdio_bridges())),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The limits the listener enforces (fixed for the gateway's lifetime).
    pub fn limits(&self) -> ListenerLimits {
        self.limits
    }

    /// The proxied MCP endpoint, e.g. `http://127.0.0.1:8787/mcp`.
    pub fn mcp_url(&self) -> String {
        format!("http://{}{}", self.local_addr, self.mcp_path)
    }

    /// Serves `next`'s layer stack from now on: new requests go to it, requests in flight finish
    /// on the stack they started on (nothing is dropped). `next`'s listen address and listener
    /// limits are not used (the socket stays bound, the limits stay); its MCP path is, for routing ([`mcp_url`](Self::mcp_url) keeps naming the
    /// first one).
    /// Its shutdown grace period is used from now on too.
    pub fn replace(&self, next: &Gateway) {
        let router = next.router_serving(&self.serving);
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = router;
        if let Some(admin) = &self.admin {
            admin.admin.set_targets(next.targets());
        }
        *self.grace.write().unwrap_or_else(std::sync::PoisonError::into_inner) = next.shutdown_grace();
        // bridges the new configuration no longer uses end with their sessions
        let next_bridges = next.stdio_bridges();
        let old = std::mem::replace(
            &mut *self.bridges.write().unwrap_or_else(std::sync::PoisonError::into_inner),
            next_bridges.clone(),
        );
        for bridge in old.iter().filter(|b| !next_bridges.iter().any(|n| n.same(b))) {
            bridge.shutdown();
        }
    }

    /// The stdio bridges serving now.
    pub fn stdio_bridges(&self) -> Vec<crate::stdio::StdioBridge> {
        self.bridges.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The admin listener's address, when it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.local_addr)
    }

    /// The metrics, when the admin listener runs.
    pub fn metrics(&self) -> Option<&Arc<Metrics>> {
        self.serving.metrics.as_ref()
    }

    /// The grace period a [`shutdown`](Self::shutdown) gives the calls in flight.
    pub fn shutdown_grace(&self) -> Duration {
        *self.grace.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stops accepting connections and lets the calls in flight finish, streams included, for up
    /// to the [grace period](Self::shutdown_grace); then answers what remains with an error saying
    /// the gateway is stopping (see [`drain`](crate::drain)) and closes every connection.
    pub async fn shutdown(mut self) {
        let grace = self.shutdown_grace();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(grace);
        }
        // the listener ends by itself within grace + its flush time; this bound is a safety net
        if tokio::time::timeout(grace + Duration::from_secs(5), &mut self.task).await.is_err() {
            self.task.abort();
        }
        // the stdio children end with the calls they served
        for bridge in self.stdio_bridges() {
            bridge.shutdown_and_wait().await;
        }
        // the admin listener answered "stopping" meanwhile; it goes last
        if let Some(admin) = &self.admin {
            admin.task.abort();
        }
    }

    /// Waits until the server stops (it does not on its own unless it fails).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        for bridge in self.bridges.read().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            bridge.shutdown();
        }
        self.task.abort();
        if let Some(admin) = &self.admin {
            admin.task.abort();
        }
    }
}

/// The signals a serving process obeys, listened for from the moment this is made (make it before
/// announcing that the gateway is listening: a signal that comes earlier is not missed).
#[derive(Debug)]
pub struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

/// What a [`Signals`] received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Received {
    /// `SIGTERM` or `SIGINT`: stop.
    Stop,
    /// `SIGHUP`: reload.
    Reload,
}

impl Signals {
    /// Starts listening for `SIGTERM`, `SIGINT` and `SIGHUP`.
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// The next signal.
    pub async fn next(&mut self) -> Received {
        tokio::select! {
            _ = self.terminate.recv() => Received::Stop,
            _ = self.interrupt.recv() => Received::Stop,
            _ = self.hangup.recv() => Received::Reload,
        }
    }

    /// Waits for `SIGTERM` or `SIGINT` (a `SIGHUP` is ignored).
    pub async fn stop(&mut self) {
        while self.next().await != Received::Stop {}
    }
}
