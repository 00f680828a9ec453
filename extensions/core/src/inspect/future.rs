use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::sessions::SessionStore;
use crate::body::{BodyTimeout, BoxError, McpBody, PackBody};
use crate::context::RequestContext;
use crate::error::Rejection;
use crate::headers;
use crate::message::{ClientDeclaration, Era, McpRequest, MessageKind};
use crate::trace::{ServerSpan, SpanIds};

/// Starts the server span the tracing layer asked for (see [`ServerSpan`]): disabled when there
/// is none or the request is not sampled.
fn start_span(parts: &mut Parts, mcp: Option<&McpRequest>) -> (tracing::Span, Option<SpanIds>) {
    match parts.extensions.get::<ServerSpan>().cloned() {
        Some(server) => {
            let started = server.start(parts, mcp);
            (started.span.clone(), started.ids)
        }
        None => (tracing::Span::none(), None),
    }
}

pin_project! {
    /// Response future of [`Inspect`](super::Inspect): reads the body, then calls the inner service.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<McpBody<B>>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<McpBody<B>>>,
    {
        Reading {
            #[pin]
            body: B,
            parts: Option<Parts>,
            // a body that arrives in one frame is kept as it is (no copy)
            first: Option<Bytes>,
            buf: BytesMut,
            limit: usize,
            service: Option<S>,
            sessions: Arc<SessionStore>,
        },
        Calling {
            #[pin]
            future: S::Future,
            after: After,
            mcp: Option<McpRequest>,
            // the server span (disabled when the request is not traced), entered while polling
            span: tracing::Span,
            ids: Option<SpanIds>,
        },
        Rejected {
            rejection: Option<Rejection>,
        },
    }
}

/// Bookkeeping on the legacy session map once the response is known.
enum After {
    Nothing,
    /// An `initialize`: remember the declaration under the session id the server assigns.
    Remember(Arc<SessionStore>, Arc<ClientDeclaration>),
    /// A request in a session: forget the session when the server ends it (`404`), or, for a
    /// `DELETE` (`on_success`), when the deletion succeeds.
    Forget {
        sessions: Arc<SessionStore>,
        session_id: String,
        on_success: bool,
    },
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<McpBody<B>>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<McpBody<B>>>,
{
    pub(super) fn passthrough(
        mut service: S,
        req: Request<McpBody<B>>,
        sessions: Arc<SessionStore>,
        forget: Option<String>,
    ) -> Self {
        let after =
            forget.map_or(After::Nothing, |session_id| After::Forget { sessions, session_id, on_success: true });
        let (mut parts, body) = req.into_parts();
        let (span, ids) = start_span(&mut parts, None);
        let req = Request::from_parts(parts, body);
        let future = span.in_scope(|| service.call(req));
        Self { state: State::Calling { future, after, mcp: None, span, ids } }
    }

    pub(super) fn rejected(rejection: Rejection) -> Self {
        Self { state: State::Rejected { rejection: Some(rejection) } }
    }

    pub(super) fn reading(service: S, req: Request<B>, limit: usize, sessions: Arc<SessionStore>) -> Self {
        let (parts, body) = req.into_parts();
        Self {
            state: State::Reading {
                body,
                parts: Some(parts),
                first: None,
                buf: BytesMut::new(),
                limit,
                service: Some(service),
                sessions,
            },
        }
    }
}

impl<S, B, ResB> Future for ResponseFuture<S, B>
where
    S: Service<Request<McpBody<B>>, Response = Response<ResB>>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    ResB: Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Output = Result<Response<PackBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Rejected { rejection } => {
                    let rejection = rejection.take().unwrap_or(Rejection::BodyRead);
                    return Poll::Ready(Ok(rejection.into_response()));
                }
                StateProj::Calling { future, after, mcp, span, ids } => {
                    let mut response = ready!(span.in_scope(|| future.poll(cx)))?;
                    after.apply(&response);
                    // outer layers (audit) see what was inspected, and the span's ids
                    if let Some(mcp) = mcp.take() {
                        response.extensions_mut().insert(mcp);
                    }
                    if let Some(ids) = ids.take() {
                        response.extensions_mut().insert(ids);
                    }
                    return Poll::Ready(Ok(response.map(PackBody::new)));
                }
                StateProj::Reading { mut body, parts, first, buf, limit, service, sessions } => {
                    let rejection = loop {
                        match ready!(body.as_mut().poll_frame(cx)) {
                            Some(Ok(frame)) => {
                                if let Ok(data) = frame.into_data() {
                                    let held = buf.len() + first.as_ref().map_or(0, Bytes::len);
                                    if held + data.len() > *limit {
                                        break Some(Rejection::BodyTooLarge { limit: *limit });
                                    }
                                    if held == 0 {
                                        *first = Some(data);
                                    } else {
                                        if let Some(f) = first.take() {
                                            buf.extend_from_slice(&f);
                                        }
                                        buf.extend_from_slice(&data);
                                    }
                                }
                            }
                            Some(Err(e)) => {
                                let e: BoxError = e.into();
                                break Some(if timed_out(&*e) { Rejection::BodyTimeout } else { Rejection::BodyRead });
                            }
                            None => break None,
                        }
                    };
                    match (rejection, parts.take(), service.take()) {
                        (None, Some(mut parts), Some(mut service)) => {
                            let bytes = match first.take() {
                                Some(only) => only,
                                None => buf.split().freeze(),
                            };
                            match McpRequest::parse(&parts.headers, &bytes, |sid| sessions.get(sid)) {
                                Ok(mcp) => {
                                    let after = after_for(&mcp, sessions);
                                    // traced: the sampling decision, on the message just parsed
                                    let (span, ids) = start_span(&mut parts, Some(&mcp));
                                    // the message and the visit in one extension (one box)
                                    let inner_mcp = mcp.clone();
                                    RequestContext::update(&mut parts.extensions, |c| {
                                        c.set_mcp(inner_mcp);
                                        c.visit("inspect");
                                    });
                                    let req = Request::from_parts(parts, McpBody::full(bytes));
                                    let future = span.in_scope(|| service.call(req));
                                    State::Calling { future, after, mcp: Some(mcp), span, ids }
                                }
                                Err(rejection) => State::Rejected { rejection: Some(rejection) },
                            }
                        }
                        (rejection, _, _) => {
                            State::Rejected { rejection: Some(rejection.unwrap_or(Rejection::BodyRead)) }
                        }
                    }
                }
            };
            this.state.set(next);
        }
    }
}

/// Whether a body error is (or wraps, e.g. inside `axum::Error`) a [`BodyTimeout`].
fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<BodyTimeout>() {
            return true;
        }
        current = e.source();
    }
    false
}

fn after_for(mcp: &McpRequest, sessions: &Arc<SessionStore>) -> After {
    if mcp.era() != Era::Legacy {
        return After::Nothing;
    }
    if mcp.kind() == MessageKind::Request
        && mcp.method() == Some("initialize")
        && let Some(decl) = mcp.client_arc()
    {
        return After::Remember(sessions.clone(), decl);
    }
    match mcp.session_id() {
        Some(sid) => After::Forget { sessions: sessions.clone(), session_id: sid.to_owned(), on_success: false },
        None => After::Nothing,
    }
}

impl After {
    fn apply<T>(&self, response: &Response<T>) {
        match self {
            Self::Nothing => {}
            Self::Remember(sessions, decl) => {
                if !response.status().is_success() {
                    return;
                }
                let sid = response.headers().get(&headers::MCP_SESSION_ID).and_then(|v| v.to_str().ok());
                if let Some(sid) = sid.filter(|s| !s.is_empty() && s.len() <= crate::message::MAX_SESSION_ID_LEN) {
                    sessions.insert(sid.to_owned(), decl.clone());
                }
            }
            Self::Forget { sessions, session_id, on_success } => {
                if response.status() == StatusCode::NOT_FOUND || (*on_success && response.status().is_success()) {
                    sessions.remove(session_id);
                }
            }
        }
    }
}
