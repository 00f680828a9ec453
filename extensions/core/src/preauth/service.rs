//! [`PreAuthLimit`], the service, and its [`ResponseFuture`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use pin_project_lite::pin_project;
use serde_json::json;
use tower_service::Service;

use super::layer::PreAuthLimitLayer;
use super::{PreAuthLimitError, RATE_LIMITED, address_key, retry_after_secs};
use crate::jsonrpc::codes;
use crate::limiter::Verdict;
use crate::{Denial, JsonRpcError};

/// The service made by [`PreAuthLimitLayer`].
#[derive(Clone, Debug)]
pub struct PreAuthLimit<S> {
    pub(crate) inner: S,
    pub(crate) layer: PreAuthLimitLayer,
}

pin_project! {
    /// Response future of [`PreAuthLimit`]: the inner service's, or the refusal.
    pub struct ResponseFuture<F, R> {
        #[pin]
        kind: Kind<F, R>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, R> {
        Inner { #[pin] future: F },
        Refused { response: Option<R> },
    }
}

impl<F, R> fmt::Debug for ResponseFuture<F, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, R, E> Future for ResponseFuture<F, R>
where
    F: Future<Output = Result<R, E>>,
{
    type Output = Result<R, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            // polled again after completion: stays pending (the contract allows any behaviour)
            KindProj::Refused { response } => response.take().map_or(Poll::Pending, |r| Poll::Ready(Ok(r))),
        }
    }
}

/// The refusal: `429` (`503` when the table is full), `Retry-After`, a JSON-RPC error (id `null`:
/// the body was not read), the typed reason and a [`Denial`] in the extensions.
fn refuse<B: From<Bytes>>(error: PreAuthLimitError) -> Response<B> {
    let (status, code, retry_after) = match &error {
        PreAuthLimitError::Exceeded { retry_after } => {
            (StatusCode::TOO_MANY_REQUESTS, RATE_LIMITED, retry_after_secs(*retry_after))
        }
        PreAuthLimitError::Full => (StatusCode::SERVICE_UNAVAILABLE, codes::INTERNAL_ERROR, 1),
    };
    let reason = status.canonical_reason().unwrap_or("refused");
    let body = JsonRpcError::new(code, format!("{reason}: {error}"))
        .with_data(json!({"status": status.as_u16(), "limit": "pre_auth_limit", "retry_after": retry_after}));
    let mut response: Response<B> = body.into_response(status);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response.extensions_mut().insert(Denial::new("pre_auth_limit", error.to_string()).with_jsonrpc_code(code));
    response.extensions_mut().insert(error);
    response
}

impl<S, B, ResB> Service<Request<B>> for PreAuthLimit<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: From<Bytes>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, Response<ResB>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let inner = &self.layer.inner;
        if let Some(client) = req.extensions().get::<crate::ClientAddress>() {
            let refusal = match inner.limiter.check(&address_key(client.ip, inner.v6_prefix)) {
                Verdict::Allowed => None,
                Verdict::Limited(retry_after) => Some(PreAuthLimitError::Exceeded { retry_after }),
                Verdict::Full => {
                    tracing::debug!(
                        "pre-authentication limit: address table full of active addresses; refusing a new one"
                    );
                    Some(PreAuthLimitError::Full)
                }
            };
            if let Some(error) = refusal {
                inner.refused.inc();
                tracing::debug!(%error, "pre-authentication limit refused a request");
                return ResponseFuture { kind: Kind::Refused { response: Some(refuse(error)) } };
            }
        }
        crate::wiring::visit(&mut req, "pre_auth_limit");
        ResponseFuture { kind: Kind::Inner { future: self.inner.call(req) } }
    }
}
