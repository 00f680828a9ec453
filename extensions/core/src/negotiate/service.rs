use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, header};
use http_body::Body;
use tower_service::Service;

use super::future::ResponseFuture;
use super::layer::NegotiateLayer;
use super::rewrite::Injector;
use crate::body::{BoxError, PackBody};
use crate::error::Rejection;
use crate::message::{Era, McpRequest, MessageKind};

/// The service made by [`NegotiateLayer`].
#[derive(Debug, Clone)]
pub struct Negotiate<S> {
    pub(super) inner: S,
    pub(super) layer: NegotiateLayer,
}

impl<S, B, ResB> Service<Request<B>> for Negotiate<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<PackBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        crate::wiring::visit(&mut req, "negotiate");
        let Some(mcp) = McpRequest::of(req.extensions()).cloned() else {
            return ResponseFuture::calling(self.inner.call(req), None, self.layer.max_rewrite_bytes);
        };
        let set = &self.layer.extensions;
        let negotiated = set.negotiate(mcp.client_capabilities());
        let method = mcp.method().unwrap_or_default();
        if mcp.era() == Era::Modern && mcp.kind() == MessageKind::Request && method != "server/discover" {
            let missing = set.missing_required(&negotiated);
            if !missing.is_empty() {
                return ResponseFuture::rejected(Rejection::MissingRequiredExtension {
                    missing: missing.iter().map(ToString::to_string).collect(),
                    id: mcp.id().cloned(),
                });
            }
        }
        crate::context::RequestContext::update(req.extensions_mut(), |c| c.set_negotiated(negotiated));
        let advertise = mcp.kind() == MessageKind::Request
            && !set.is_empty()
            && matches!((mcp.era(), method), (Era::Legacy, "initialize") | (Era::Modern, "server/discover"));
        let injector = match (advertise, mcp.id()) {
            (true, Some(id)) => {
                // the result must be readable to be rewritten
                req.headers_mut().remove(header::ACCEPT_ENCODING);
                Some(Injector::new(id.clone(), set.clone()))
            }
            _ => None,
        };
        ResponseFuture::calling(self.inner.call(req), injector, self.layer.max_rewrite_bytes)
    }
}
