//! Request inspection: read a posted JSON-RPC message once, check it, and store an
//! [`McpRequest`](crate::McpRequest) in the request's [`RequestContext`](crate::RequestContext)
//! (read it with [`McpRequest::of`](crate::McpRequest::of)) and, for the layers outside, in the
//! response extensions.
//!
//! ```
//! use mcp_enterprise_core::{InspectLayer, McpBody, McpRequest};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use bytes::Bytes;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let svc = ServiceBuilder::new()
//!     .layer(InspectLayer::new())
//!     .service(service_fn(|req: Request<McpBody<Full<Bytes>>>| async move {
//!         let mcp = McpRequest::of(req.extensions()).expect("inspected");
//!         Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(mcp.method().unwrap_or("").to_owned()))))
//!     }));
//! let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
//! let req = Request::post("/mcp").body(Full::new(Bytes::from(body)))?;
//! let res = svc.oneshot(req).await?;
//! assert_eq!(res.status(), 200);
//! # Ok(()) }
//! ```

mod future;
mod layer;
mod service;
mod sessions;

pub use future::ResponseFuture;
pub use layer::{DEFAULT_MAX_BODY_BYTES, DEFAULT_SESSION_CAPACITY, InspectLayer};
pub use service::Inspect;

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use http::{Request, Response, StatusCode};
    use http_body::{Body, Frame};
    use http_body_util::{BodyExt, Full};
    use serde_json::{Value, json};
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    use super::InspectLayer;
    use crate::{ExtensionSet, McpBody, McpRequest, NegotiateLayer, NegotiatedExtensions, RequestContext};

    /// A body with no size hint that yields its chunks one by one.
    struct Chunks(VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    type Seen = Arc<Mutex<Vec<(Bytes, Option<McpRequest>, Option<NegotiatedExtensions>)>>>;

    /// A service that records what it receives and answers like an MCP server would.
    fn recorder(
        seen: Seen,
    ) -> impl tower::Service<
        Request<McpBody<Chunks>>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future = impl Send,
    > + Clone {
        service_fn(move |req: Request<McpBody<Chunks>>| {
            let seen = seen.clone();
            async move {
                let mcp = McpRequest::of(req.extensions()).cloned();
                let negotiated = NegotiatedExtensions::of(req.extensions()).cloned();
                let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                seen.lock().expect("lock").push((body, mcp.clone(), negotiated));
                let mut res = Response::new(Full::new(Bytes::from_static(b"{}")));
                if mcp.as_ref().and_then(McpRequest::method) == Some("initialize") {
                    res.headers_mut().insert("mcp-session-id", "sess-1".parse().expect("hv"));
                }
                Ok::<_, Infallible>(res)
            }
        })
    }

    fn chunked(parts: &[&[u8]]) -> Chunks {
        Chunks(parts.iter().map(|p| Bytes::copy_from_slice(p)).collect())
    }

    #[tokio::test]
    async fn body_is_handed_on_byte_for_byte() {
        let seen = Seen::default();
        let svc = ServiceBuilder::new().layer(InspectLayer::new()).service(recorder(seen.clone()));
        let raw: &[u8] = b"{ \"jsonrpc\" : \"2.0\",\n \"id\": 1, \"method\": \"tools/list\" }  ";
        let res = svc.oneshot(Request::post("/mcp").body(chunked(&[&raw[..10], &raw[10..]])).expect("req")).await;
        assert_eq!(res.expect("ok").status(), StatusCode::OK);
        let seen = seen.lock().expect("lock");
        assert_eq!(&seen[0].0[..], raw);
        assert_eq!(seen[0].1.as_ref().and_then(McpRequest::method), Some("tools/list"));
    }

    #[tokio::test]
    async fn the_request_carries_one_extension_and_the_response_the_message() {
        let extensions = ExtensionSet::builder().with_own("audit", json!({})).expect("ext").build();
        let inner = service_fn(|req: Request<McpBody<Chunks>>| async move {
            // the message, the visits and the negotiation: one entry (one box) in the request
            assert_eq!(req.extensions().len(), 1);
            let context = RequestContext::get(req.extensions()).expect("a context");
            assert_eq!(context.visited().layers(), ["inspect", "negotiate"]);
            assert_eq!(context.mcp().and_then(McpRequest::method), Some("tools/list"));
            assert!(context.negotiated().is_some_and(|n| n.ids().next().is_none()));
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        });
        let svc =
            ServiceBuilder::new().layer(InspectLayer::new()).layer(NegotiateLayer::new(extensions)).service(inner);
        let list = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        let res = svc.oneshot(Request::post("/mcp").body(chunked(&[list])).expect("req")).await.expect("ok");
        assert_eq!(res.status(), StatusCode::OK);
        // the layers outside read the message from the response
        assert_eq!(res.extensions().get::<McpRequest>().and_then(McpRequest::method), Some("tools/list"));
        assert_eq!(McpRequest::of(res.extensions()).and_then(McpRequest::method), Some("tools/list"));
    }

    #[tokio::test]
    async fn over_limit_bodies_get_413_without_reaching_the_service() {
        let seen = Seen::default();
        let layer = InspectLayer::new().max_body_bytes(16).expect("limit");
        // streamed, no Content-Length
        let svc = ServiceBuilder::new().layer(layer.clone()).service(recorder(seen.clone()));
        let res =
            svc.oneshot(Request::post("/mcp").body(chunked(&[b"{\"jsonrpc\":", b"\"2.0\",\"id\":1}"])).expect("req"));
        let res = res.await.expect("ok");
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(matches!(
            res.extensions().get::<crate::Rejection>(),
            Some(crate::Rejection::BodyTooLarge { limit: 16 })
        ));
        // declared Content-Length: refused before reading
        let svc = ServiceBuilder::new().layer(layer).service(recorder(seen.clone()));
        let req = Request::post("/mcp").header("content-length", "1000000").body(chunked(&[])).expect("req");
        assert_eq!(svc.oneshot(req).await.expect("ok").status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(seen.lock().expect("lock").is_empty());
    }

    /// A body that yields one chunk, then fails like a server's body reader does.
    struct Failing(Option<Bytes>, fn() -> crate::BoxError);

    impl Body for Failing {
        type Data = Bytes;
        type Error = crate::BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, crate::BoxError>>> {
            Poll::Ready(Some(match self.0.take() {
                Some(chunk) => Ok(Frame::data(chunk)),
                None => Err((self.1)()),
            }))
        }
    }

    #[tokio::test]
    async fn a_body_timeout_is_408_and_other_read_errors_400() {
        let echo = service_fn(|req: Request<McpBody<Failing>>| async move {
            let _ = req.into_body().collect().await;
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        });
        let svc = ServiceBuilder::new().layer(InspectLayer::new()).service(echo);
        let timeout = || -> crate::BoxError { Box::new(crate::body::BodyTimeout) };
        let req = Request::post("/mcp").body(Failing(Some(Bytes::from_static(b"{\"json")), timeout)).expect("req");
        let res = svc.clone().oneshot(req).await.expect("ok");
        assert_eq!(res.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(res.extensions().get::<crate::Rejection>(), Some(&crate::Rejection::BodyTimeout));
        let body: Value = serde_json::from_slice(&res.into_body().collect().await.expect("body").to_bytes())
            .expect("a JSON-RPC error");
        assert_eq!(body["error"]["code"], -32600);
        // wrapped by a framework's error type, it is still a timeout
        #[derive(Debug, thiserror::Error)]
        #[error("body error")]
        struct Wrapped(#[source] crate::body::BodyTimeout);
        let wrapped = || -> crate::BoxError { Box::new(Wrapped(crate::body::BodyTimeout)) };
        let req = Request::post("/mcp").body(Failing(None, wrapped)).expect("req");
        assert_eq!(svc.clone().oneshot(req).await.expect("ok").status(), StatusCode::REQUEST_TIMEOUT);
        let reset = || -> crate::BoxError { "connection reset".into() };
        let req = Request::post("/mcp").body(Failing(None, reset)).expect("req");
        let res = svc.oneshot(req).await.expect("ok");
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(res.extensions().get::<crate::Rejection>(), Some(&crate::Rejection::BodyRead));
    }

    #[tokio::test]
    async fn non_post_requests_pass_through_uninspected() {
        let seen = Seen::default();
        let svc = ServiceBuilder::new().layer(InspectLayer::new()).service(recorder(seen.clone()));
        let res = svc.oneshot(Request::get("/mcp").body(chunked(&[])).expect("req")).await.expect("ok");
        assert_eq!(res.status(), StatusCode::OK);
        assert!(seen.lock().expect("lock")[0].1.is_none());
    }

    #[tokio::test]
    async fn legacy_declaration_is_remembered_per_session() {
        let seen = Seen::default();
        let extensions = ExtensionSet::builder().with_own("audit", json!({})).expect("ext").build();
        let svc = ServiceBuilder::new()
            .layer(InspectLayer::new())
            .layer(NegotiateLayer::new(extensions))
            .service(recorder(seen.clone()));
        let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25",
            "capabilities":{"extensions":{"io.github.mcp-enterprise/audit":{"level":2}}},"clientInfo":{"name":"c"}}});
        let req = Request::post("/mcp").body(chunked(&[init.to_string().as_bytes()])).expect("req");
        svc.clone().oneshot(req).await.expect("ok");
        let list = br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
        let in_session =
            |sid: &str| Request::post("/mcp").header("mcp-session-id", sid).body(chunked(&[list])).expect("req");
        svc.clone().oneshot(in_session("sess-1")).await.expect("ok");
        svc.clone().oneshot(in_session("other")).await.expect("ok");
        // the session ends: its declaration is forgotten
        let delete = Request::delete("/mcp").header("mcp-session-id", "sess-1").body(chunked(&[])).expect("req");
        svc.clone().oneshot(delete).await.expect("ok");
        svc.clone().oneshot(in_session("sess-1")).await.expect("ok");

        let seen = seen.lock().expect("lock");
        let negotiated = |i: usize| seen[i].2.clone().expect("negotiated");
        assert!(negotiated(0).contains("io.github.mcp-enterprise/audit"));
        let in_sess = &seen[1];
        let client = in_sess.1.as_ref().and_then(|m| m.client()).expect("remembered");
        assert_eq!(client.client_info().and_then(|c| c.name()), Some("c"));
        assert_eq!(negotiated(1).client_settings("io.github.mcp-enterprise/audit"), Some(&json!({"level": 2})));
        assert!(seen[2].1.as_ref().and_then(|m| m.client()).is_none(), "unknown session");
        assert!(!negotiated(2).contains("io.github.mcp-enterprise/audit"));
        assert!(seen[4].1.as_ref().and_then(|m| m.client()).is_none(), "forgotten after DELETE");
    }

    #[tokio::test]
    async fn rejections_never_panic_on_hostile_input() {
        let seen = Seen::default();
        let svc = ServiceBuilder::new().layer(InspectLayer::new()).service(recorder(seen.clone()));
        for body in
            [&b""[..], b"\xff\xfe", b"{", b"null", b"{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"x\"}", &[b'['; 10_000]]
        {
            let res =
                svc.clone().oneshot(Request::post("/mcp").body(chunked(&[body])).expect("req")).await.expect("ok");
            assert_eq!(res.status(), StatusCode::BAD_REQUEST);
            let bytes = res.into_body().collect().await.expect("body").to_bytes();
            let v: Value = serde_json::from_slice(&bytes).expect("JSON-RPC error body");
            assert!(v["error"]["code"].as_i64().is_some());
        }
        assert!(seen.lock().expect("lock").is_empty());
    }
}
