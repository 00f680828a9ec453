//! [`Audit`]: the service the layer makes.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, Request, Response};
use tokio::sync::TryAcquireError;
use tower_service::Service;

use crate::AuditRefusal;
use crate::future::ResponseFuture;
use crate::layer::Recorder;
use crate::record::Arrival;
use crate::writer::QueueFullPolicy;
use mcp_enterprise_core::wiring::{self, Miswired};

pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Records each call passing through it; see [`AuditLayer`](crate::AuditLayer).
#[derive(Clone)]
pub struct Audit<S> {
    pub(crate) inner: S,
    pub(crate) recorder: Arc<Recorder>,
}

impl<S> std::fmt::Debug for Audit<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit").finish_non_exhaustive()
    }
}

impl<S, B, ResB> Service<Request<B>> for Audit<S>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
    B: Send + 'static,
    ResB: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResB::Error: Into<mcp_enterprise_core::BoxError>,
{
    type Response = Response<mcp_enterprise_core::PackBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let recorder = self.recorder.clone();
        // the trail records every refusal of the layers inside: a pack layer outside it would
        // refuse unrecorded
        if !wiring::visited(&req).is_empty() {
            return ResponseFuture::miswired(
                recorder,
                Miswired::new("audit", "must be outermost (a pack layer sits outside it)"),
            );
        }
        if recorder.skip_prefixes.iter().any(|p| req.uri().path().starts_with(p.as_str())) {
            return ResponseFuture::unrecorded(self.inner.call(req), recorder);
        }
        let arrival = Arrival::new(recorder.clock.now(), req.method(), req.uri(), req.headers())
            .with_client(req.extensions().get::<mcp_enterprise_core::ClientAddress>().copied())
            .with_span(req.extensions().get::<mcp_enterprise_core::trace::SpanIds>().copied());
        // the auth layers inside say who it was, even if no response comes back
        req.extensions_mut().insert(arrival.principal.clone());
        if !req.headers().contains_key(&X_REQUEST_ID)
            && let Some(v) = arrival.correlation_header()
        {
            // the upstream sees the id the record carries
            req.headers_mut().insert(X_REQUEST_ID.clone(), v);
        }
        let shared = &recorder.shared;
        if shared.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return ResponseFuture::refused(recorder, AuditRefusal::Closed, arrival);
        }
        if recorder.on_full == QueueFullPolicy::FailClosed && shared.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return ResponseFuture::refused(recorder, AuditRefusal::WriterFailing, arrival);
        }
        match shared.permits.clone().try_acquire_owned() {
            Ok(permit) => ResponseFuture::calling(self.inner.call(req), recorder, arrival, permit),
            Err(TryAcquireError::Closed) => ResponseFuture::refused(recorder, AuditRefusal::Closed, arrival),
            Err(TryAcquireError::NoPermits) => match recorder.on_full {
                QueueFullPolicy::FailClosed => ResponseFuture::refused(recorder, AuditRefusal::QueueFull, arrival),
                _ => {
                    let clone = self.inner.clone();
                    let service = std::mem::replace(&mut self.inner, clone);
                    ResponseFuture::waiting(service, req, recorder, arrival)
                }
            },
        }
    }
}
