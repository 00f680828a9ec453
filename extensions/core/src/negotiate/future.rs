use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Response, header};
use http_body::Body;
use pin_project_lite::pin_project;

use super::rewrite::{Injector, JsonRewrite, SseRewrite};
use crate::body::{BoxError, PackBody};
use crate::error::Rejection;

pin_project! {
    /// Response future of [`Negotiate`](super::Negotiate).
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F> {
        Calling { #[pin] future: F, injector: Option<Injector>, limit: usize },
        Rejected { rejection: Option<Rejection> },
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn calling(future: F, injector: Option<Injector>, limit: usize) -> Self {
        Self { kind: Kind::Calling { future, injector, limit } }
    }

    pub(super) fn rejected(rejection: Rejection) -> Self {
        Self { kind: Kind::Rejected { rejection: Some(rejection) } }
    }
}

impl<F, ResB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
    ResB: Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Output = Result<Response<PackBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Rejected { rejection } => {
                let rejection = rejection.take().unwrap_or(Rejection::BodyRead);
                Poll::Ready(Ok(rejection.into_response()))
            }
            KindProj::Calling { future, injector, limit } => {
                let response = ready!(future.poll(cx))?;
                let Some(injector) = injector.take().filter(|_| response.status().is_success()) else {
                    return Poll::Ready(Ok(response.map(PackBody::new)));
                };
                let content_type = response
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
                let (mut parts, body) = response.into_parts();
                let body = match content_type.as_deref() {
                    Some("application/json") => PackBody::boxed(JsonRewrite::new(body, injector, *limit)),
                    Some("text/event-stream") => PackBody::boxed(SseRewrite::new(body, injector, *limit)),
                    _ => return Poll::Ready(Ok(Response::from_parts(parts, PackBody::new(body)))),
                };
                parts.headers.remove(header::CONTENT_LENGTH);
                Poll::Ready(Ok(Response::from_parts(parts, body)))
            }
        }
    }
}
