//! [`Integrity`]: the service made by [`IntegrityLayer`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::BodyExt;
use mcp_enterprise_core::jsonrpc::codes;
use mcp_enterprise_core::list::{ListBody, ListKind, is_sse, json_answer};
use mcp_enterprise_core::wiring;
use mcp_enterprise_core::{BoxError, Denial, JsonRpcError, McpRequest, MessageKind, PackBody};
use serde_json::json;
use tower_service::Service;

use crate::body::{Check, Prefixed, Watch};
use crate::digest::DefinitionKind;
use crate::error::IntegrityDenied;
use crate::future::ResponseFuture;
use crate::layer::IntegrityLayer;

/// The service made by [`IntegrityLayer`].
#[derive(Clone, Debug)]
pub struct Integrity<S> {
    pub(crate) inner: S,
    pub(crate) layer: IntegrityLayer,
}

fn refuse(mcp: &McpRequest, denied: IntegrityDenied) -> Response<PackBody> {
    let reason = denied.reason_id();
    tracing::info!(kind = %denied.kind, name = denied.name, reason, "call refused by integrity");
    let body = JsonRpcError::new(codes::INVALID_REQUEST, format!("Forbidden: {denied}"))
        .with_id(mcp.id().cloned())
        .with_data(json!({ "status": 403, "reasons": [reason] }));
    let mut response: Response<PackBody> = body.into_response(StatusCode::FORBIDDEN);
    response
        .extensions_mut()
        .insert(Denial::new("integrity", denied.to_string()).with_jsonrpc_code(codes::INVALID_REQUEST));
    response.extensions_mut().insert(denied);
    response
}

/// The definition a call uses: `tools/call` and `prompts/get` by name.
fn called(mcp: &McpRequest) -> Option<(DefinitionKind, &str)> {
    match mcp.method()? {
        "tools/call" => Some((DefinitionKind::Tool, mcp.name().unwrap_or(""))),
        "prompts/get" => Some((DefinitionKind::Prompt, mcp.name().unwrap_or(""))),
        _ => None,
    }
}

impl<S, B, ResB> Service<Request<B>> for Integrity<S>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
    ResB: Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<PackBody>;
    type Error = S::Error;
    type Future = ResponseFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // the check reads the parsed call: without inspection nothing would be checked
        if let Err(miswired) = wiring::enter_inspected(&mut req, "integrity", "needs InspectLayer outside it") {
            return ResponseFuture::ok(miswired.into_response());
        }
        let clone = self.inner.clone();
        let mut service = std::mem::replace(&mut self.inner, clone);
        let shared = self.layer.shared.clone();
        // notifications are checked too: a `tools/call` without an id must not slip through
        let mcp = McpRequest::of(req.extensions()).filter(|m| m.kind() != MessageKind::Response).cloned();
        if let Some(mcp) = &mcp
            && let Some((kind, name)) = called(mcp)
            && let Some(reason) = shared.decide_call(kind, name)
        {
            return ResponseFuture::ok(refuse(mcp, IntegrityDenied { kind, name: name.to_owned(), reason }));
        }
        let check = mcp.as_ref().filter(|m| m.kind() == MessageKind::Request).and_then(|m| {
            let kind = m.method().and_then(ListKind::from_method).and_then(DefinitionKind::of_list)?;
            let first_page = m.params().and_then(|p| p.get("cursor")).is_none();
            shared.begin_listing(kind, first_page);
            Some(Check { shared: shared.clone(), kind, id: m.id().cloned(), events: Arc::new(Mutex::new(None)) })
        });
        let limit = shared.settings.max_list_bytes;
        ResponseFuture::new(async move {
            let response = service.call(req).await?;
            let sse = is_sse(response.headers());
            let Some(check) = check else {
                return Ok(if sse {
                    response.map(|b| PackBody::new(Watch::new(b, shared)))
                } else {
                    response.map(PackBody::new)
                });
            };
            let events = check.events.clone();
            if !sse {
                // any other successful answer is read as JSON: a list is never passed on unchecked
                if !response.status().is_success() {
                    return Ok(response.map(PackBody::new));
                }
                // read whole and checked before its head goes out: the events travel in it
                let mut response = json_answer(response, check, limit).await;
                for event in events.lock().unwrap_or_else(PoisonError::into_inner).take().unwrap_or_default() {
                    event.attach(&mut response);
                }
                return Ok(response);
            }
            let (mut parts, body) = response.into_parts();
            parts.headers.remove(header::CONTENT_LENGTH);
            let mut body = Box::pin(ListBody::sse(body, check, limit));
            // read ahead until the answer is checked, so its events travel in the response head
            let mut prefix = VecDeque::new();
            let mut held = 0;
            let mut ended = false;
            while events.lock().unwrap_or_else(PoisonError::into_inner).is_none() && held <= limit {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        held += frame.data_ref().map_or(0, Bytes::len);
                        prefix.push_back(Ok(frame));
                    }
                    Some(Err(e)) => {
                        prefix.push_back(Err(e));
                        ended = true;
                        break;
                    }
                    None => {
                        ended = true;
                        break;
                    }
                }
            }
            let mut response = Response::from_parts(parts, ());
            for event in events.lock().unwrap_or_else(PoisonError::into_inner).take().unwrap_or_default() {
                event.attach(&mut response);
            }
            let rest = (!ended).then_some(body);
            let body = Prefixed { prefix, rest };
            Ok(response.map(|()| PackBody::new(Watch::new(body, shared))))
        })
    }
}
