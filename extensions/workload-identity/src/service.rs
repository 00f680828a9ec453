use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use mcp_enterprise_core::jsonrpc::codes;
use mcp_enterprise_core::wiring::{self, Miswired};
use mcp_enterprise_core::{
    AuthMethod, BoxError, Challenge, Denial, JsonRpcError, McpRequest, PackBody, Principal, PrincipalKind,
};
use serde_json::{Value, json};
use tower_service::Service;

use crate::error::WorkloadError;
use crate::future::ResponseFuture;
use crate::layer::{Inner, OtherTokens, WorkloadIdentityLayer};
use crate::verify::{Expect, Verified, check_replay, peek_claims};

/// The service made by [`WorkloadIdentityLayer`].
#[derive(Clone)]
pub struct WorkloadIdentity<S> {
    pub(crate) inner: S,
    pub(crate) layer: WorkloadIdentityLayer,
}

impl<S: std::fmt::Debug> std::fmt::Debug for WorkloadIdentity<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadIdentity").field("inner", &self.inner).field("layer", &self.layer).finish()
    }
}

/// The bearer token of a request, or why there is none usable. Other schemes count as no token.
pub(crate) fn bearer(headers: &http::HeaderMap) -> Result<&str, WorkloadError> {
    let Some((scheme, token)) =
        mcp_enterprise_core::headers::authorization(headers).map_err(WorkloadError::MalformedHeader)?
    else {
        return Err(WorkloadError::MissingToken);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(WorkloadError::MissingToken);
    }
    let token = token.unwrap_or("");
    if !mcp_enterprise_core::headers::is_b64token(token) {
        return Err(WorkloadError::MalformedHeader("the bearer token is not a b64token"));
    }
    Ok(token)
}

/// What the layer decided.
enum Judged {
    Accept(Principal),
    Pass,
    /// Refused, with the workload when it was identified (e.g. a replayed assertion).
    Refuse(WorkloadError, Option<Principal>),
}

impl Inner {
    async fn judge(&self, headers: &http::HeaderMap, others: OtherTokens) -> Judged {
        let pass = others == OtherTokens::PassToInner;
        let token = match bearer(headers) {
            Ok(t) => t,
            Err(WorkloadError::MissingToken) if pass => return Judged::Pass,
            Err(e) => return Judged::Refuse(e, None),
        };
        let claims = peek_claims(token);
        let iss = claims.as_ref().and_then(|c| c.get("iss")).and_then(Value::as_str);
        if let Some(issued) = &self.issued
            && iss == Some(issued.issuer())
        {
            return match issued.verify(token, &self.resource) {
                Ok(p) => Judged::Accept(p),
                Err(e) => Judged::Refuse(e, None),
            };
        }
        let Some(direct) = &self.direct else {
            return if pass {
                Judged::Pass
            } else {
                Judged::Refuse(WorkloadError::Jwt(mcp_enterprise_core::jwks::JwtError::UntrustedIssuer), None)
            };
        };
        if pass && claims.as_ref().is_none_or(|c| direct.trust.locate(c).is_err()) {
            // not a token of a trusted workload issuer: another layer's business
            return Judged::Pass;
        }
        let expect = Expect {
            audiences: &self.audiences,
            max_lifetime: direct.max_lifetime,
            leeway: direct.leeway,
            require_jti: direct.replay.is_some(),
            typ: None,
        };
        let verified = match direct.trust.verify(token, expect).await {
            Ok(v) => v,
            Err(e) => return Judged::Refuse(e, None),
        };
        if let Some(store) = &direct.replay {
            let now = direct.trust.clock().now();
            if let Err(e) = check_replay(store.as_ref(), &verified, now, direct.leeway).await {
                return Judged::Refuse(e, Some(principal(verified)));
            }
        }
        Judged::Accept(principal(verified))
    }
}

fn principal(v: Verified) -> Principal {
    let mut b = Principal::builder(v.issuer, v.subject, PrincipalKind::Workload, AuthMethod::Workload)
        .scopes(v.rule.granted_scopes().iter().cloned())
        .token_fingerprint(v.fingerprint)
        .claim("workload_rule", Value::String(v.rule.name().to_owned()));
    for (name, value) in v.forwarded {
        b = b.claim(name, value);
    }
    b.build()
}

/// The refusal: status, challenge, JSON-RPC body; the typed reason in the extensions.
fn refuse(inner: &Inner, error: WorkloadError, mcp: Option<&McpRequest>) -> Response<PackBody> {
    let status = error.status();
    let body = JsonRpcError::new(
        codes::INVALID_REQUEST,
        format!("{}: {error}", status.canonical_reason().unwrap_or("refused")),
    )
    .with_id(mcp.and_then(|m| m.id().cloned()))
    .with_data(json!({ "status": status.as_u16() }));
    let mut response: Response<PackBody> = body.into_response(status);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    } else {
        let mut challenge = Challenge::bearer().resource_metadata(&inner.metadata_url);
        if let Some(code) = error.code() {
            challenge = challenge.error(code).error_description(&error.to_string());
        }
        response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge.to_header_value());
    }
    let method = mcp.and_then(McpRequest::method).unwrap_or("-");
    match &error {
        WorkloadError::MissingToken => tracing::debug!(method, "workload identity: no token"),
        other => tracing::info!(method, reason = %other, "workload identity: refused"),
    }
    response
        .extensions_mut()
        .insert(Denial::new("workload_identity", error.to_string()).with_jsonrpc_code(codes::INVALID_REQUEST));
    response.extensions_mut().insert(error);
    response
}

impl<S, B, ResB> Service<Request<B>> for WorkloadIdentity<S>
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
        wiring::visit(&mut req, "workload_identity");
        let clone = self.inner.clone();
        let mut service = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        ResponseFuture::new(async move {
            if req.extensions().get::<Principal>().is_some() {
                return Ok(service.call(req).await?.map(PackBody::new));
            }
            let decision = mcp_enterprise_core::trace::Decision::start("workload_identity");
            let judged = tracing::Instrument::instrument(
                layer.inner.judge(req.headers(), layer.others),
                decision.span().clone(),
            )
            .await;
            match &judged {
                Judged::Pass => decision.pass(),
                Judged::Accept(_) => decision.allow(),
                Judged::Refuse(error, _) => decision.deny(error.code().map_or("workload_identity", |c| c.as_str())),
            }
            match judged {
                Judged::Pass if !layer.armed => Ok(Miswired::new(
                    "workload_identity",
                    "passes tokens of other issuers on and needs an authentication layer inside it (join them with AuthChain)",
                )
                .into_response()),
                Judged::Pass => Ok(service.call(req).await?.map(PackBody::new)),
                Judged::Accept(principal) => {
                    mcp_enterprise_core::PrincipalSlot::fill(req.extensions(), &principal);
                    req.extensions_mut().insert(principal.clone());
                    let mut response = service.call(req).await?.map(PackBody::new);
                    // outer layers (audit) see who was let in
                    response.extensions_mut().insert(principal);
                    Ok(response)
                }
                Judged::Refuse(error, known) => {
                    let mcp = McpRequest::of(req.extensions());
                    let mut response = refuse(&layer.inner, error, mcp);
                    if let Some(principal) = known {
                        response.extensions_mut().insert(principal);
                    }
                    Ok(response)
                }
            }
        })
    }
}

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
        assert_eq!(bearer(&headers(&[])), Err(WorkloadError::MissingToken));
        assert_eq!(bearer(&headers(&["DPoP abc"])), Err(WorkloadError::MissingToken));
        assert!(matches!(bearer(&headers(&["Bearer a", "Bearer b"])), Err(WorkloadError::MalformedHeader(_))));
        assert!(matches!(bearer(&headers(&["Bearer "])), Err(WorkloadError::MalformedHeader(_))));
        assert!(matches!(bearer(&headers(&["Bearer a\"b"])), Err(WorkloadError::MalformedHeader(_))));
        let mut h = http::HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_bytes(b"Bearer \xff").expect("hv"));
        assert!(matches!(bearer(&h), Err(WorkloadError::MalformedHeader(_))));
    }
}
