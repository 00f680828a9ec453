use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body::Body;
use mcp_enterprise_core::jsonrpc::codes;
use mcp_enterprise_core::wiring;
use mcp_enterprise_core::{BoxError, Denial, JsonRpcError, McpRequest, MessageKind, PackBody, Principal};
use serde_json::json;
use tower_service::Service;

use crate::engine::{Call, Decision, Reason};
use crate::error::PolicyDenied;
use crate::filter::{ListFilter, ListKind};
use crate::future::ResponseFuture;
use crate::layer::PolicyLayer;
use crate::model::{Action, CallContext};
use mcp_enterprise_core::list::{ListBody, is_sse, json_answer};

/// The service made by [`PolicyLayer`].
#[derive(Clone, Debug)]
pub struct Policy<S> {
    pub(crate) inner: S,
    pub(crate) layer: PolicyLayer,
}

/// The principal attribute names policies could see (never their values).
fn attribute_names(principal: Option<&Principal>) -> Vec<String> {
    let Some(p) = principal else { return vec!["kind".into()] };
    let mut names: Vec<String> =
        ["kind", "issuer", "subject", "authMethod", "scopes", "groups", "roles"].map(str::to_owned).to_vec();
    if p.client_id().is_some() {
        names.push("clientId".into());
    }
    names.extend(p.claims().keys().map(|k| if k == "tenant" { k.clone() } else { format!("tag:{k}") }));
    names.retain(|n| n != "tag:groups" && n != "tag:roles");
    names
}

fn refuse(
    mcp: &McpRequest,
    action: Action,
    target: &str,
    decision: &Decision,
    principal: Option<&Principal>,
) -> Response<PackBody> {
    let reasons: Vec<String> = decision.reasons().iter().map(Reason::id).collect();
    let denied = PolicyDenied {
        method: action.method().to_owned(),
        target: target.to_owned(),
        reasons: decision.reasons().to_vec(),
        errors: decision.errors().to_vec(),
        principal_attributes: attribute_names(principal),
    };
    tracing::info!(
        method = action.method(),
        target,
        reasons = %reasons.join(", "),
        errors = %decision.errors().join("; "),
        principal_attributes = %denied.principal_attributes.join(","),
        "denied by policy"
    );
    let body = JsonRpcError::new(
        codes::INVALID_REQUEST,
        format!("Forbidden: {} {target:?} is denied by policy", action.method()),
    )
    .with_id(mcp.id().cloned())
    .with_data(json!({ "status": 403, "reasons": reasons }));
    let mut response: Response<PackBody> = body.into_response(StatusCode::FORBIDDEN);
    let explanation = format!(
        "{denied}; errors: [{}]; principal attributes: [{}]",
        denied.errors.join("; "),
        denied.principal_attributes.join(", ")
    );
    response.extensions_mut().insert(Denial::new("policy", explanation).with_jsonrpc_code(codes::INVALID_REQUEST));
    response.extensions_mut().insert(denied);
    response
}

impl<S, B, ResB> Service<Request<B>> for Policy<S>
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
        // the decision is made on the parsed call: without inspection nothing would be decided
        if let Err(miswired) = wiring::enter_inspected(&mut req, "policy", "needs InspectLayer outside it") {
            return ResponseFuture::ok(miswired.into_response());
        }
        let clone = self.inner.clone();
        let mut service = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.inner.clone();
        // notifications are decided too: a `tools/call` without an id must not slip through
        let mcp = McpRequest::of(req.extensions()).filter(|m| m.kind() != MessageKind::Response).cloned();
        let principal = req.extensions().get::<Principal>().cloned();
        let method = mcp.as_ref().and_then(McpRequest::method);
        let action = method.and_then(Action::from_method);
        let list = method.and_then(ListKind::from_method);
        if let (Some(mcp), Some(action)) = (&mcp, action) {
            let context = CallContext::of_request(mcp, layer.clock.now_secs());
            let target = mcp.target().unwrap_or("");
            let call = Call { action, target, arguments: mcp.arguments() };
            let traced = mcp_enterprise_core::trace::Decision::start("policy");
            let decision =
                tracing::Span::in_scope(traced.span(), || layer.engine.authorize(principal.as_ref(), call, &context));
            if !decision.is_allowed() {
                layer.denied.inc();
                traced.deny("forbidden");
                let response = refuse(mcp, action, target, &decision, principal.as_ref());
                return ResponseFuture::ok(response);
            }
            layer.allowed.inc();
            traced.allow();
            tracing::debug!(method = action.method(), target, policies = %decision.determining_policies().join(","), "allowed by policy");
        }
        let filter = match (&mcp, list) {
            (Some(mcp), Some(kind)) if mcp.kind() == MessageKind::Request => {
                let context = CallContext::of_request(mcp, layer.clock.now_secs());
                Some(ListFilter::new(
                    layer.engine.clone(),
                    principal,
                    context,
                    kind,
                    mcp.id().cloned(),
                    layer.filter_lists,
                ))
            }
            _ => None,
        };
        let limit = layer.max_list_bytes;
        ResponseFuture::new(async move {
            let response = service.call(req).await?;
            let Some(filter) = filter else { return Ok(response.map(PackBody::new)) };
            if is_sse(response.headers()) {
                let (mut parts, body) = response.into_parts();
                // the length changes with filtering
                parts.headers.remove(header::CONTENT_LENGTH);
                return Ok(Response::from_parts(parts, PackBody::new(ListBody::sse(body, filter, limit))));
            }
            // any other successful answer is read as JSON: a list is never passed on unfiltered
            if response.status().is_success() {
                return Ok(json_answer(response, filter, limit).await);
            }
            Ok(response.map(PackBody::new))
        })
    }
}
