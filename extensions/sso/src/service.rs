use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use mcp_enterprise_core::auth::Authenticator;
use mcp_enterprise_core::jsonrpc::codes;
use mcp_enterprise_core::wiring::{self, Miswired};
use mcp_enterprise_core::{BoxError, Challenge, Denial, JsonRpcError, McpRequest, PackBody, Principal};
use mcp_enterprise_core::{headers, trace};
use serde_json::json;
use tower_service::Service;

use crate::error::AuthError;
use crate::future::ResponseFuture;
use crate::layer::{Inner, SsoLayer};

/// The service made by [`SsoLayer`].
#[derive(Clone)]
pub struct Sso<S> {
    pub(crate) inner: S,
    pub(crate) layer: SsoLayer,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Sso<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sso").field("inner", &self.inner).field("layer", &self.layer).finish()
    }
}

/// The bearer token of a request, or why there is none usable.
fn bearer(req_headers: &http::HeaderMap) -> Result<&str, AuthError> {
    let Some((scheme, token)) = headers::authorization(req_headers).map_err(AuthError::MalformedHeader)? else {
        return Err(AuthError::MissingToken);
    };
    if scheme.eq_ignore_ascii_case("dpop") {
        // sender-constrained tokens belong to the DPoP layer
        return Err(AuthError::DpopBoundToken);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::MissingToken);
    }
    let token = token.unwrap_or("");
    if !headers::is_b64token(token) {
        return Err(AuthError::MalformedHeader("the bearer token is not a b64token"));
    }
    Ok(token)
}

/// The refusal response: status, challenge, JSON-RPC body; the typed reason in the extensions.
fn refuse(inner: &Inner, error: AuthError, mcp: Option<&McpRequest>) -> Response<PackBody> {
    let (required, _) = inner.scopes.required(mcp.and_then(McpRequest::method), mcp.and_then(McpRequest::target));
    let mut challenge = Challenge::bearer().resource_metadata(&inner.metadata_url);
    if !required.is_empty() && matches!(error, AuthError::MissingToken | AuthError::InsufficientScope { .. }) {
        challenge = challenge.scope(&required);
    }
    if let Some(code) = error.code() {
        challenge = challenge.error(code).error_description(&error.to_string());
    }
    let status = error.status();
    let body = JsonRpcError::new(
        codes::INVALID_REQUEST,
        format!("{}: {error}", status.canonical_reason().unwrap_or("refused")),
    )
    .with_id(mcp.and_then(|m| m.id().cloned()))
    .with_data(json!({ "status": status.as_u16() }));
    let mut response: Response<PackBody> = body.into_response(status);
    let headers = response.headers_mut();
    if status == http::StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    } else {
        headers.insert(header::WWW_AUTHENTICATE, challenge.to_header_value());
    }
    response.extensions_mut().insert(Denial::new("sso", error.to_string()).with_jsonrpc_code(codes::INVALID_REQUEST));
    response.extensions_mut().insert(error);
    response
}

fn log_denial(error: &AuthError, mcp: Option<&McpRequest>) {
    let method = mcp.and_then(McpRequest::method).unwrap_or("-");
    let target = mcp.and_then(McpRequest::target).unwrap_or("-");
    match error {
        AuthError::InsufficientScope { missing, rules, .. } => {
            tracing::info!(method, target, missing = %missing.join(" "), rules = %rules.join("; "), "denied: insufficient scope");
        }
        AuthError::MissingToken => tracing::debug!(method, target, "denied: no token"),
        other => tracing::info!(method, target, reason = %other, "denied: invalid token"),
    }
}

impl<S, B, ResB> Service<Request<B>> for Sso<S>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<PackBody>;
    type Error = S::Error;
    type Future = ResponseFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // per-method scope rules decide on the parsed call: without inspection they would be skipped
        if !self.layer.inner.scopes.is_empty() && !wiring::has_visited(&req, "inspect") {
            return ResponseFuture::ok(
                Miswired::new("sso", "has per-method scope rules and needs InspectLayer outside it").into_response(),
            );
        }
        wiring::visit(&mut req, "sso");
        let clone = self.inner.clone();
        let mut service = std::mem::replace(&mut self.inner, clone);
        let inner = self.layer.inner.clone();
        ResponseFuture::new(async move {
            let mcp = McpRequest::of(req.extensions()).cloned();
            let decision = trace::Decision::start("sso");
            // authenticated by an outer layer (DPoP, workload identity): already in the extensions
            let outer = req.extensions().get::<Principal>().cloned();
            let from_outer = outer.is_some();
            let principal = match outer {
                Some(p) => Ok(Arc::new(p)),
                None => match bearer(req.headers()) {
                    Ok(token) => {
                        let token = token.to_owned();
                        let verify = inner.verifier.authenticate(&token, false);
                        tracing::Instrument::instrument(verify, decision.span().clone())
                            .await
                            .map(|v| Arc::new(v.principal.clone()))
                    }
                    Err(e) => Err(e),
                },
            };
            // who was refused, when the token was good but the scopes were not
            let known = principal.as_ref().ok().cloned();
            let checked = principal.and_then(|p| {
                inner
                    .scopes
                    .check(
                        p.scopes(),
                        mcp.as_ref().and_then(McpRequest::method),
                        mcp.as_ref().and_then(McpRequest::target),
                    )
                    .map(|()| p)
            });
            match &checked {
                Ok(_) => decision.allow(),
                Err(error) => decision.deny(error.kind()),
            }
            match checked {
                Ok(principal) => {
                    if !from_outer {
                        // an outer layer that may see no response (audit) learns who it was now
                        // (an outer auth layer filled it already)
                        mcp_enterprise_core::PrincipalSlot::fill(req.extensions(), &principal);
                        req.extensions_mut().insert(Principal::clone(&principal));
                    }
                    let mut response = service.call(req).await?;
                    // outer layers (audit) see who was let in
                    response.extensions_mut().insert(Principal::clone(&principal));
                    Ok(response.map(PackBody::new))
                }
                Err(error) => {
                    log_denial(&error, mcp.as_ref());
                    let mut response = refuse(&inner, error, mcp.as_ref());
                    if let Some(principal) = known {
                        response.extensions_mut().insert(Principal::clone(&principal));
                    }
                    Ok(response)
                }
            }
        })
    }
}

/// SSO refuses every request it cannot authenticate.
impl Authenticator for crate::SsoLayer {}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for v in values {
            h.append(header::AUTHORIZATION, HeaderValue::from_str(v).expect("hv"));
        }
        h
    }

    #[test]
    fn bearer_extraction() {
        assert_eq!(bearer(&headers(&["Bearer abc.def-_~+/="])), Ok("abc.def-_~+/="));
        assert_eq!(bearer(&headers(&["bearer  abc"])), Ok("abc"));
        assert_eq!(bearer(&headers(&[])), Err(AuthError::MissingToken));
        assert_eq!(bearer(&headers(&["Basic dXNlcjpwYXNz"])), Err(AuthError::MissingToken));
        assert_eq!(bearer(&headers(&["DPoP abc"])), Err(AuthError::DpopBoundToken));
        assert!(matches!(bearer(&headers(&["Bearer a", "Bearer b"])), Err(AuthError::MalformedHeader(_))));
        assert!(matches!(bearer(&headers(&["Bearer "])), Err(AuthError::MalformedHeader(_))));
        assert!(matches!(bearer(&headers(&["Bearer a\"b"])), Err(AuthError::MalformedHeader(_))));
        let mut h = http::HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_bytes(b"Bearer \xff").expect("hv"));
        assert!(matches!(bearer(&h), Err(AuthError::MalformedHeader(_))));
    }
}
