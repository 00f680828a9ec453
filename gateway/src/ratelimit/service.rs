//! [`RateLimit`], the service, and its [`ResponseFuture`].

use mcp_enterprise_core::trace::Decision as Traced;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use mcp_enterprise_core::jsonrpc::codes;
use mcp_enterprise_core::limiter::LimitKey;
use mcp_enterprise_core::{Denial, JsonRpcError, JsonRpcId, McpRequest, Principal};
use pin_project_lite::pin_project;
use serde_json::json;
use tower_service::Service;

use super::layer::{Backend, RateLimitLayer};
use super::limit::Counted;
use super::store::Decision;
use super::{OnUnavailable, RATE_LIMITED, RateLimitError, retry_after_secs};

/// The service made by [`RateLimitLayer`].
#[derive(Clone, Debug)]
pub struct RateLimit<S> {
    pub(crate) inner: S,
    pub(crate) layer: RateLimitLayer,
}

pin_project! {
    /// Response future of [`RateLimit`]: the inner service's future (counted in memory), an
    /// immediate refusal, or the shared check followed by the inner call (boxed).
    pub struct ResponseFuture<F, R, E> {
        #[pin]
        kind: Kind<F, R, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, R, E> {
        Inner { #[pin] future: F },
        Refused { response: Option<R> },
        Shared { future: Pin<Box<dyn Future<Output = Result<R, E>> + Send>> },
    }
}

impl<F, R, E> fmt::Debug for ResponseFuture<F, R, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, R, E> Future for ResponseFuture<F, R, E>
where
    F: Future<Output = Result<R, E>>,
{
    type Output = Result<R, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            // polled again after completion: a misuse the future contract allows to panic on;
            // we answer with the refusal once and stay pending afterwards
            KindProj::Refused { response } => response.take().map_or(Poll::Pending, |r| Poll::Ready(Ok(r))),
            KindProj::Shared { future } => future.as_mut().poll(cx),
        }
    }
}

/// The refusal: `429` (or `503`), `Retry-After`, a JSON-RPC error with the request's id, and the
/// typed reason plus a [`Denial`] naming the limit in the extensions.
fn refuse<B: From<Bytes>>(error: RateLimitError, id: Option<JsonRpcId>) -> Response<B> {
    let (status, code, retry_after) = match &error {
        RateLimitError::Exceeded { retry_after, .. } => {
            (StatusCode::TOO_MANY_REQUESTS, RATE_LIMITED, retry_after_secs(*retry_after))
        }
        _ => (StatusCode::SERVICE_UNAVAILABLE, codes::INTERNAL_ERROR, 1),
    };
    let reason = status.canonical_reason().unwrap_or("refused");
    let body = JsonRpcError::new(code, format!("{reason}: {error}")).with_id(id).with_data(json!({
        "status": status.as_u16(),
        "limit": error.limit(),
        "retry_after": retry_after,
    }));
    let mut response: Response<B> = body.into_response(status);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response.extensions_mut().insert(Denial::new("ratelimit", error.to_string()).with_jsonrpc_code(code));
    response.extensions_mut().insert(error);
    response
}

/// What a decision means for the request: `None` to go on, or the refusal.
fn judge(decision: Decision, limit: &super::Limit, on_unavailable: OnUnavailable) -> Option<RateLimitError> {
    if decision == Decision::Allowed {
        return None;
    }
    let name = limit.name.clone();
    match decision {
        Decision::Allowed => None,
        Decision::Limited(retry_after) => {
            tracing::debug!(limit = %name, "rate limited");
            Some(RateLimitError::Exceeded { limit: name, retry_after })
        }
        Decision::Full => {
            tracing::warn!(limit = %name, "rate limit key table full of active keys; refusing new requests");
            Some(RateLimitError::Full { limit: name })
        }
        Decision::Unavailable(why) => match on_unavailable {
            OnUnavailable::FailOpen => {
                tracing::warn!(limit = %name, error = %why, "rate limit store unavailable; request let through uncounted (fail_open)");
                None
            }
            _ => {
                tracing::warn!(limit = %name, error = %why, "rate limit store unavailable; request refused (fail_closed)");
                Some(RateLimitError::Unavailable { limit: name })
            }
        },
    }
}

impl<S, B, ResB> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    ResB: From<Bytes> + Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, Response<ResB>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let inner = &self.layer.inner;
        let mcp = McpRequest::of(req.extensions());
        let principal = req.extensions().get::<Principal>();
        let id = || mcp.and_then(|m| m.id().cloned());
        match &inner.backend {
            Backend::Local(tables) => {
                let traced = Traced::start("rate_limit");
                // what the limits read, found once; one clock reading for every check
                let mut counted = Counted::new(mcp, principal);
                let mut now = None;
                for (limit, table) in inner.limits.iter().zip(tables) {
                    if !limit.applies_to(&counted) {
                        continue;
                    }
                    let at = *now.get_or_insert_with(|| table.now());
                    let decision = table.check_at(limit.key_for(&mut counted), at);
                    if decision == Decision::Allowed {
                        continue;
                    }
                    if let Some(error) = judge(decision, limit, OnUnavailable::FailClosed) {
                        traced.deny("rate_limited");
                        return ResponseFuture { kind: Kind::Refused { response: Some(refuse(error, id())) } };
                    }
                }
                traced.allow();
                ResponseFuture { kind: Kind::Inner { future: self.inner.call(req) } }
            }
            Backend::Shared { .. } => {
                let mut counted = Counted::new(mcp, principal);
                let mut keys: Vec<(usize, LimitKey)> = Vec::new();
                for (i, limit) in inner.limits.iter().enumerate() {
                    if limit.applies_to(&counted) {
                        keys.push((i, *limit.key_for(&mut counted)));
                    }
                }
                if keys.is_empty() {
                    return ResponseFuture { kind: Kind::Inner { future: self.inner.call(req) } };
                }
                let id = id();
                let layer = self.layer.clone();
                // the service that was polled ready goes into the future; a clone stays
                let clone = self.inner.clone();
                let mut service = std::mem::replace(&mut self.inner, clone);
                let future = Box::pin(async move {
                    let Backend::Shared { store, on_unavailable } = &layer.inner.backend else {
                        return service.call(req).await;
                    };
                    let traced = Traced::start("rate_limit");
                    for (i, key) in keys {
                        let limit = &layer.inner.limits[i];
                        let checked =
                            tracing::Instrument::instrument(store.check(limit, key.as_bytes()), traced.span().clone());
                        if let Some(error) = judge(checked.await, limit, *on_unavailable) {
                            traced.deny("rate_limited");
                            return Ok(refuse(error, id));
                        }
                    }
                    traced.allow();
                    service.call(req).await
                });
                ResponseFuture { kind: Kind::Shared { future } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::time::Duration;

    use mcp_enterprise_core::clock::ManualClock;
    use mcp_enterprise_core::{AuthMethod, PrincipalKind};
    use tower::ServiceExt as _;

    use super::*;
    use crate::ratelimit::{KeyPart, Limit};

    fn request(sub: &str, tool: &str) -> Request<()> {
        let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": tool}});
        let mcp = McpRequest::parse(&http::HeaderMap::new(), body.to_string().as_bytes(), |_| None).expect("parse");
        let mut req = Request::new(());
        mcp_enterprise_core::RequestContext::get_or_default(req.extensions_mut()).set_mcp(mcp);
        req.extensions_mut()
            .insert(Principal::builder("https://idp", sub, PrincipalKind::User, AuthMethod::Bearer).build());
        req
    }

    #[tokio::test]
    async fn refusals_are_429_with_retry_after_an_id_and_a_denial() {
        let clock = ManualClock::at(1_800_000_000);
        let layer = RateLimitLayer::builder()
            .clock(Arc::new(clock.clone()))
            .limit(Limit::new("per-user", 2, Duration::from_secs(3)).expect("limit").key([KeyPart::Principal]))
            .build()
            .expect("layer");
        let svc = tower::ServiceBuilder::new()
            .layer(layer)
            .service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(Bytes::from_static(b"ok"))) });
        for _ in 0..2 {
            let res = svc.clone().oneshot(request("alice", "t")).await.expect("infallible");
            assert_eq!(res.status(), StatusCode::OK);
        }
        let res = svc.clone().oneshot(request("alice", "t")).await.expect("infallible");
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(res.headers()[header::RETRY_AFTER], "2", "1.5 s rounded up");
        let denial = res.extensions().get::<Denial>().expect("denial");
        assert_eq!((denial.layer(), denial.jsonrpc_code()), ("ratelimit", Some(RATE_LIMITED)));
        assert!(denial.reason().contains("\"per-user\""), "{}", denial.reason());
        assert_eq!(res.extensions().get::<RateLimitError>().map(RateLimitError::limit), Some("per-user"));
        let body: serde_json::Value = serde_json::from_slice(res.body()).expect("json");
        assert_eq!(body["id"], 7);
        assert_eq!(body["error"]["code"], RATE_LIMITED);
        assert_eq!(body["error"]["data"], json!({"status": 429, "limit": "per-user", "retry_after": 2}));
        // another principal has its own bucket
        let res = svc.clone().oneshot(request("bob", "t")).await.expect("infallible");
        assert_eq!(res.status(), StatusCode::OK);
        clock.advance(Duration::from_millis(1500));
        let res = svc.clone().oneshot(request("alice", "t")).await.expect("infallible");
        assert_eq!(res.status(), StatusCode::OK, "refilled");
    }

    fn client(addr: &str, password: Option<&str>) -> mcp_enterprise_core::redis::RedisClient {
        let mut settings = mcp_enterprise_core::redis::RedisSettings::new(addr);
        settings.password = password.map(str::to_owned);
        mcp_enterprise_core::redis::RedisClient::new(settings).expect("client")
    }

    #[tokio::test]
    async fn an_unreachable_shared_store_fails_as_configured() {
        let port = {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            l.local_addr().expect("addr").port()
        };
        for (mode, status) in
            [(OnUnavailable::FailClosed, StatusCode::SERVICE_UNAVAILABLE), (OnUnavailable::FailOpen, StatusCode::OK)]
        {
            let layer = RateLimitLayer::builder()
                .limit(Limit::new("shared", 1, Duration::from_secs(60)).expect("limit"))
                .shared(
                    crate::ratelimit::SharedStore::redis(client(&format!("127.0.0.1:{port}"), None))
                        .on_unavailable(mode),
                )
                .build()
                .expect("layer");
            let svc = tower::ServiceBuilder::new()
                .layer(layer)
                .service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(Bytes::new())) });
            for _ in 0..2 {
                let res = svc.clone().oneshot(request("alice", "t")).await.expect("infallible");
                assert_eq!(res.status(), status, "{mode:?}");
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    assert_eq!(res.headers()[header::RETRY_AFTER], "1");
                    assert_eq!(res.extensions().get::<Denial>().map(Denial::layer), Some("ratelimit"));
                }
            }
        }
    }

    #[test]
    fn builds_refuse_duplicates_and_nothing() {
        let l = || Limit::new("a", 1, Duration::from_secs(1)).expect("limit");
        assert!(matches!(
            RateLimitLayer::builder().limit(l()).limit(l()).build(),
            Err(crate::ratelimit::RateLimitConfigError::DuplicateName(n)) if n == "a"
        ));
        assert!(RateLimitLayer::builder().build().is_err());
        let shown = format!(
            "{:?}",
            RateLimitLayer::builder()
                .limit(l())
                .shared(crate::ratelimit::SharedStore::redis(client("h:1", Some("hunter2"))))
                .build()
                .expect("layer")
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
