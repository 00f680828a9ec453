//! The listener: HTTP/1.1 connections accepted and served under [`ListenerLimits`], the defence
//! against slow and greedy clients (slowloris, connection floods, oversized headers).
//!
//! | limit | what happens when it is hit |
//! |---|---|
//! | [`header_read_timeout`](ListenerLimits::header_read_timeout) | a connection that has not sent a complete request head within it — counted from when the connection starts waiting for a request, so also while idle between keep-alive requests — is closed without a response |
//! | [`max_header_bytes`](ListenerLimits::max_header_bytes) | `431 Request Header Fields Too Large`, connection closed; also for more than [`MAX_HEADERS`] header fields |
//! | [`request_body_timeout`](ListenerLimits::request_body_timeout) | the body of a request must arrive completely within it from the end of its head; later → `408` with a JSON-RPC error (`-32600`) for an inspected `POST`, a failed request otherwise |
//! | [`max_connections`](ListenerLimits::max_connections) | at the limit the listener stops accepting: new connections wait in the kernel's accept queue (not refused) until an open one closes; when that queue is full the kernel drops further connection attempts, which clients retry |
//!
//! The body *size* limit is the inspection layer's (`core.max_body_bytes`, `413`). Only HTTP/1.1
//! is served (no h2c); every accepted socket gets `TCP_NODELAY`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use mcp_enterprise_core::BoxError;
use mcp_enterprise_core::body::BodyTimeout;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt as _;

use crate::ConfigError;
use crate::drain::{Drain, Phase};

/// Header fields accepted in one request; more → `431`.
pub const MAX_HEADERS: usize = 100;

/// Connections the kernel queues while the gateway is at [`ListenerLimits::max_connections`]
/// (capped by `net.core.somaxconn`).
pub const ACCEPT_BACKLOG: u32 = 4096;

/// hyper's smallest read buffer; the buffer also bounds a request head.
const MIN_READ_BUFFER: usize = 8192;

/// How long the accept loop pauses after an accept error (e.g. out of file descriptors), so that
/// it does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Limits of the gateway's listener. The defaults are secure; see the [module docs](self) for what
/// each limit does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct ListenerLimits {
    header_read_timeout: Duration,
    request_body_timeout: Duration,
    max_connections: usize,
    max_header_bytes: usize,
}

impl ListenerLimits {
    /// Default [`header_read_timeout`](Self::header_read_timeout): 10 s.
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration =
        Duration::from_secs(mcp_enterprise_config::DEFAULT_HEADER_READ_TIMEOUT_SECS);
    /// Default [`request_body_timeout`](Self::request_body_timeout): 30 s.
    pub const DEFAULT_REQUEST_BODY_TIMEOUT: Duration =
        Duration::from_secs(mcp_enterprise_config::DEFAULT_REQUEST_BODY_TIMEOUT_SECS);
    /// Default [`max_connections`](Self::max_connections): 4096.
    pub const DEFAULT_MAX_CONNECTIONS: usize = mcp_enterprise_config::DEFAULT_MAX_CONNECTIONS;
    /// Default [`max_header_bytes`](Self::max_header_bytes): 32 KiB.
    pub const DEFAULT_MAX_HEADER_BYTES: usize = mcp_enterprise_config::DEFAULT_MAX_HEADER_BYTES;
    /// The smallest accepted [`max_header_bytes`](Self::max_header_bytes).
    pub const MIN_HEADER_BYTES: usize = 1024;
    /// The largest accepted [`max_header_bytes`](Self::max_header_bytes).
    pub const MAX_HEADER_BYTES: usize = 1024 * 1024;

    /// The defaults.
    pub const fn new() -> Self {
        Self {
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
            request_body_timeout: Self::DEFAULT_REQUEST_BODY_TIMEOUT,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            max_header_bytes: Self::DEFAULT_MAX_HEADER_BYTES,
        }
    }

    /// How long a connection may take to send a complete request head (non-zero).
    pub fn header_read_timeout(mut self, timeout: Duration) -> Result<Self, ConfigError> {
        if timeout.is_zero() {
            return Err(ConfigError::InvalidLimit { what: "header_read_timeout", reason: "must not be zero" });
        }
        self.header_read_timeout = timeout;
        Ok(self)
    }

    /// How long a request's body may take to arrive, from the end of its head (non-zero).
    pub fn request_body_timeout(mut self, timeout: Duration) -> Result<Self, ConfigError> {
        if timeout.is_zero() {
            return Err(ConfigError::InvalidLimit { what: "request_body_timeout", reason: "must not be zero" });
        }
        self.request_body_timeout = timeout;
        Ok(self)
    }

    /// How many connections may be open at once (at least 1). Keep it well below the process's
    /// open-file limit: every proxied request also holds a connection to the upstream.
    pub fn max_connections(mut self, max: usize) -> Result<Self, ConfigError> {
        if max == 0 || max > Semaphore::MAX_PERMITS {
            return Err(ConfigError::InvalidLimit { what: "max_connections", reason: "must be at least 1" });
        }
        self.max_connections = max;
        Ok(self)
    }

    /// The largest request head (request line and header fields) in bytes, 1 KiB to 1 MiB.
    pub fn max_header_bytes(mut self, max: usize) -> Result<Self, ConfigError> {
        if !(Self::MIN_HEADER_BYTES..=Self::MAX_HEADER_BYTES).contains(&max) {
            return Err(ConfigError::InvalidLimit { what: "max_header_bytes", reason: "must be from 1 KiB to 1 MiB" });
        }
        self.max_header_bytes = max;
        Ok(self)
    }

    /// The header read timeout.
    pub fn header_read_timeout_value(&self) -> Duration {
        self.header_read_timeout
    }

    /// The request body timeout.
    pub fn request_body_timeout_value(&self) -> Duration {
        self.request_body_timeout
    }

    /// The connection limit.
    pub fn max_connections_value(&self) -> usize {
        self.max_connections
    }

    /// The request head size limit.
    pub fn max_header_bytes_value(&self) -> usize {
        self.max_header_bytes
    }

    /// The limits a configuration document's `listen` section sets.
    pub fn from_config(config: &mcp_enterprise_config::ListenConfig) -> Result<Self, ConfigError> {
        Self::new()
            .header_read_timeout(Duration::from_secs(config.header_read_timeout_secs))?
            .request_body_timeout(Duration::from_secs(config.request_body_timeout_secs))?
            .max_connections(config.max_connections)?
            .max_header_bytes(config.max_header_bytes)
    }

    fn http1(&self) -> http1::Builder {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .max_header_size(self.max_header_bytes)
            .max_headers(MAX_HEADERS)
            .keep_alive(true);
        // hyper's default read buffer (~400 KiB) already holds the largest allowed head
        if self.max_header_bytes > 400 * 1024 {
            builder.max_buf_size(self.max_header_bytes.max(MIN_READ_BUFFER));
        }
        builder
    }
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self::new()
    }
}

/// Binds `addr` with [`ACCEPT_BACKLOG`] (and `SO_REUSEADDR`, like `std`).
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// How long the answers the stop gives (see [`drain`](crate::drain)) have to go out after the grace
/// period before the remaining connections are closed.
const FLUSH_AFTER_GRACE: Duration = Duration::from_secs(1);

/// Accepts and serves connections until `stop` fires with the grace period, then lets open
/// requests finish (connections are closed after their response in progress) for up to that
/// period, ends what remains through `drain`, and closes every connection. Dropping the returned
/// future closes every connection at once.
pub(crate) async fn serve<S>(
    listener: TcpListener,
    service: S,
    limits: ListenerLimits,
    stop: oneshot::Receiver<Duration>,
    drain: Drain,
    open: Option<prometheus_client::metrics::gauge::Gauge>,
    trusted: Arc<crate::forwarded::TrustedProxies>,
) where
    S: tower_service::Service<Request, Response = axum::response::Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let builder = limits.http1();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    // owns every connection task: dropped (the gateway stopped hard) → all aborted
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    let mut grace = Duration::ZERO;
    loop {
        while connections.try_join_next().is_some() {}
        // at the limit, wait here: new connections queue in the kernel's backlog
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            stopped = &mut stop => {
                grace = stopped.unwrap_or_default();
                break;
            }
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // per-connection errors (reset before accept) and resource exhaustion (EMFILE):
                    // keep serving, without spinning
                    tracing::debug!(%error, "accept failed");
                    drop(permit);
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            stopped = &mut stop => {
                grace = stopped.unwrap_or_default();
                break;
            }
        };
        // without TCP_NODELAY a small SSE event waits for the client's delayed ACK (~40 ms)
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let service = service.clone();
        let body_timeout = limits.request_body_timeout;
        let trusted = trusted.clone();
        let hyper_service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let deadline = Instant::now() + body_timeout;
            let mut req = req.map(|body| axum::body::Body::new(DeadlineBody::new(body, deadline)));
            // what the audit trail records and the pre-authentication limit counts on
            let client = trusted.client(peer, req.headers());
            req.extensions_mut().insert(client);
            let span = crate::correlation::request_span(&mut req);
            tracing::Instrument::instrument(service.clone().oneshot(req), span)
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(tcp), hyper_service));
        let open = open.clone();
        if let Some(open) = &open {
            open.inc();
        }
        connections.spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            if let Some(open) = &open {
                open.dec();
            }
            drop(permit);
        });
    }
    drop(listener);
    drain.set(Phase::Stopping);
    tracing::info!(grace_secs = grace.as_secs_f64(), "stopping: no new connections; calls in flight may finish");
    let closed = graceful.shutdown();
    tokio::pin!(closed);
    if tokio::time::timeout(grace, &mut closed).await.is_err() {
        tracing::warn!("stopping: the grace period is over; the calls still open are ended");
        drain.set(Phase::Expired);
        let _ = tokio::time::timeout(FLUSH_AFTER_GRACE, &mut closed).await;
    }
}

/// A request body that fails with [`BodyTimeout`] when it has not ended by its deadline.
#[derive(Debug)]
pub(crate) struct DeadlineBody<B> {
    inner: B,
    deadline: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    timed_out: bool,
}

impl<B> DeadlineBody<B> {
    pub(crate) fn new(inner: B, deadline: Instant) -> Self {
        Self { inner, deadline, sleep: None, timed_out: false }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.timed_out {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        // the timer exists only for bodies that make a reader wait
        let deadline = this.deadline;
        let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.timed_out = true;
                Poll::Ready(Some(Err(Box::new(BodyTimeout))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.timed_out || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked_when_set() {
        let limits = ListenerLimits::new();
        assert!(limits.header_read_timeout(Duration::ZERO).is_err());
        assert!(limits.request_body_timeout(Duration::ZERO).is_err());
        assert!(limits.max_connections(0).is_err());
        assert!(limits.max_header_bytes(1023).is_err());
        assert!(limits.max_header_bytes(1024 * 1024 + 1).is_err());
        let set = limits
            .header_read_timeout(Duration::from_secs(1))
            .and_then(|l| l.request_body_timeout(Duration::from_secs(2)))
            .and_then(|l| l.max_connections(3))
            .and_then(|l| l.max_header_bytes(4096))
            .expect("valid limits");
        assert_eq!(set.header_read_timeout_value(), Duration::from_secs(1));
        assert_eq!(set.request_body_timeout_value(), Duration::from_secs(2));
        assert_eq!(set.max_connections_value(), 3);
        assert_eq!(set.max_header_bytes_value(), 4096);
        assert_eq!(ListenerLimits::default(), ListenerLimits::new());
        // the configuration document's defaults are these defaults
        let config = mcp_enterprise_config::ListenConfig::default();
        assert_eq!(ListenerLimits::from_config(&config).expect("defaults"), ListenerLimits::new());
    }

    /// A body that never ends.
    struct Stalled;

    impl Body for Stalled {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn a_stalled_body_fails_with_body_timeout_at_its_deadline() {
        use http_body_util::BodyExt as _;
        let body = DeadlineBody::new(Stalled, Instant::now() + Duration::from_millis(20));
        let error = body.collect().await.expect_err("the body times out");
        assert!(error.is::<BodyTimeout>(), "{error}");
        // a body that is complete is never cut
        let full = DeadlineBody::new(http_body_util::Full::new(Bytes::from_static(b"{}")), Instant::now());
        assert_eq!(full.collect().await.expect("complete").to_bytes(), Bytes::from_static(b"{}"));
    }
}
