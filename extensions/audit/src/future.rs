//! The response future of [`Audit`](crate::Audit).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{HeaderValue, Request, Response, StatusCode, header};
use mcp_enterprise_core::jsonrpc::codes;
use mcp_enterprise_core::wiring::Miswired;
use mcp_enterprise_core::{Denial, JsonRpcError, McpBody, PackBody};
use pin_project_lite::pin_project;
use serde_json::json;
use tokio::sync::{AcquireError, OwnedSemaphorePermit};
use tower_service::Service;

use crate::body::{AuditBody, Pending};
use crate::layer::{Recorder, ResultMode};
use crate::record::Arrival;
use crate::service::X_REQUEST_ID;
use crate::{AuditRefusal, InvocationContext};

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

pin_project! {
    /// Response future of [`Audit`](crate::Audit).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
        recorder: Arc<Recorder>,
        arrival: Option<Arrival>,
    }

    impl<S, B> PinnedDrop for ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // dropped while the inner service had the call (the client went away, the server
            // stopped): no response will come, and the call still gets its record
            if let StateProj::Calling { permit, .. } = this.state.project()
                && let Some(arrival) = this.arrival.take()
            {
                let r = &**this.recorder;
                let mut cancelled = Response::builder().status(CLIENT_CLOSED_REQUEST).body(()).unwrap_or_default();
                // who it was, when a layer inside had authenticated the call by then
                if let Some(principal) = arrival.principal.get() {
                    cancelled.extensions_mut().insert(principal);
                }
                let departure = arrival.respond(
                    &cancelled,
                    &r.redaction,
                    r.invocation == InvocationContext::Record,
                    r.shared.record(),
                );
                r.shared.push(departure.finish(0, None, true, None), permit.take());
            }
        }
    }
}

/// The status recorded for a call cancelled before its response began (nginx's "client closed
/// request"): no response was sent.
const CLIENT_CLOSED_REQUEST: StatusCode = match StatusCode::from_u16(499) {
    Ok(status) => status,
    Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
};

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Waiting {
            acquire: Acquire,
            service: Option<S>,
            req: Option<Request<B>>,
        },
        Calling {
            #[pin]
            future: S::Future,
            permit: Option<OwnedSemaphorePermit>,
        },
        Refused {
            refusal: AuditRefusal,
        },
        Miswired {
            miswired: Option<Miswired>,
        },
    }
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn calling(
        future: S::Future,
        recorder: Arc<Recorder>,
        arrival: Arrival,
        permit: OwnedSemaphorePermit,
    ) -> Self {
        Self { state: State::Calling { future, permit: Some(permit) }, recorder, arrival: Some(arrival) }
    }

    pub(crate) fn unrecorded(future: S::Future, recorder: Arc<Recorder>) -> Self {
        Self { state: State::Calling { future, permit: None }, recorder, arrival: None }
    }

    pub(crate) fn waiting(service: S, req: Request<B>, recorder: Arc<Recorder>, arrival: Arrival) -> Self {
        let acquire = Box::pin(recorder.shared.permits.clone().acquire_owned());
        Self {
            state: State::Waiting { acquire, service: Some(service), req: Some(req) },
            recorder,
            arrival: Some(arrival),
        }
    }

    pub(crate) fn miswired(recorder: Arc<Recorder>, miswired: Miswired) -> Self {
        Self { state: State::Miswired { miswired: Some(miswired) }, recorder, arrival: None }
    }

    pub(crate) fn refused(recorder: Arc<Recorder>, refusal: AuditRefusal, arrival: Arrival) -> Self {
        Self { state: State::Refused { refusal }, recorder, arrival: Some(arrival) }
    }
}

impl<S, B, ResB> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResB::Error: Into<mcp_enterprise_core::BoxError>,
{
    type Output = Result<Response<PackBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Miswired { miswired } => {
                    let miswired = miswired.take().unwrap_or(Miswired::new("audit", "must be outermost"));
                    return Poll::Ready(Ok(miswired.into_response()));
                }
                StateProj::Refused { refusal } => {
                    let refusal = *refusal;
                    return Poll::Ready(Ok(refuse(this.recorder, refusal, this.arrival.take())));
                }
                StateProj::Waiting { acquire, service, req } => {
                    let permit = match ready!(acquire.as_mut().poll(cx)) {
                        Ok(permit) => permit,
                        Err(_) => {
                            let closed = State::Refused { refusal: AuditRefusal::Closed };
                            this.state.set(closed);
                            continue;
                        }
                    };
                    match (service.take(), req.take()) {
                        (Some(mut service), Some(req)) => {
                            State::Calling { future: service.call(req), permit: Some(permit) }
                        }
                        _ => State::Refused { refusal: AuditRefusal::Closed },
                    }
                }
                StateProj::Calling { future, permit } => {
                    let response = ready!(future.poll(cx))?;
                    let Some(arrival) = this.arrival.take() else {
                        return Poll::Ready(Ok(response.map(PackBody::new)));
                    };
                    let r = &**this.recorder;
                    let header = arrival.correlation_header();
                    let departure = arrival.respond(
                        &response,
                        &r.redaction,
                        r.invocation == InvocationContext::Record,
                        r.shared.record(),
                    );
                    let pending = Pending {
                        departure,
                        recorder: this.recorder.clone(),
                        permit: permit.take(),
                        bytes: 0,
                        tail: Vec::new(),
                        result_mac: (r.results == ResultMode::Digest).then(|| Box::new(r.redaction.context())),
                        // the parent of the enqueueing's step span, when step spans are kept
                        span: if tracing::enabled!(target: mcp_enterprise_core::trace::TARGET, tracing::Level::TRACE) {
                            tracing::Span::current()
                        } else {
                            tracing::Span::none()
                        },
                    };
                    let mut response = response.map(|b| PackBody::new(AuditBody::new(McpBody::new(b), Some(pending))));
                    if let Some(v) = header {
                        response.headers_mut().entry(&X_REQUEST_ID).or_insert(v);
                    }
                    return Poll::Ready(Ok(response));
                }
            };
            this.state.set(next);
        }
    }
}

fn refuse(recorder: &Recorder, refusal: AuditRefusal, arrival: Option<Arrival>) -> Response<PackBody> {
    recorder.shared.stats.refuse();
    tracing::warn!(reason = %refusal, "request refused: the audit trail cannot take its record");
    let status = StatusCode::SERVICE_UNAVAILABLE;
    let body = JsonRpcError::new(codes::INTERNAL_ERROR, format!("Service Unavailable: {refusal}"))
        .with_data(json!({ "status": status.as_u16() }));
    let mut response: Response<PackBody> = body.into_response(status);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    if let Some(v) = arrival.and_then(|a| a.correlation_header()) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    response
        .extensions_mut()
        .insert(Denial::new("audit", refusal.to_string()).with_jsonrpc_code(codes::INTERNAL_ERROR));
    response.extensions_mut().insert(refusal);
    response
}
