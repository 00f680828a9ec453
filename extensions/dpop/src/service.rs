use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use mcp_enterprise_core::headers::{DPOP, DPOP_NONCE};
use mcp_enterprise_core::jsonrpc::codes;
use mcp_enterprise_core::wiring::{self, Miswired};
use mcp_enterprise_core::{AuthMethod, BoxError, Challenge, Denial, JsonRpcError, McpRequest, PackBody, Principal};
use serde_json::json;
use tower_service::Service;

use crate::clock::http_date;
use crate::error::DpopError;
use crate::future::ResponseFuture;
use crate::layer::{BearerMode, DpopLayer, ExternalOrigin, Inner, NonceMode};
use crate::proof::{self, Expect};

/// The service made by [`DpopLayer`].
#[derive(Clone)]
pub struct Dpop<S> {
    pub(crate) inner: S,
    pub(crate) layer: DpopLayer,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Dpop<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dpop").field("inner", &self.inner).field("layer", &self.layer).finish()
    }
}

/// What the `Authorization` header holds.
enum Credentials<'a> {
    None,
    Dpop(&'a str),
    Other,
    Malformed,
}

fn credentials(headers: &http::HeaderMap) -> Credentials<'_> {
    match mcp_enterprise_core::headers::authorization(headers) {
        Err(_) => Credentials::Malformed,
        Ok(None) => Credentials::None,
        Ok(Some((scheme, Some(token)))) if scheme.eq_ignore_ascii_case("dpop") => {
            if mcp_enterprise_core::headers::is_b64token(token) {
                Credentials::Dpop(token)
            } else {
                Credentials::Malformed
            }
        }
        Ok(Some(_)) => Credentials::Other,
    }
}

impl Inner {
    fn nonce_keys(&self) -> Option<&crate::nonce::NonceKeys> {
        match &self.nonce {
            NonceMode::Off => None,
            NonceMode::Optional(k) | NonceMode::Required(k) => Some(k),
        }
    }

    fn challenge(&self, error: Option<&DpopError>) -> Challenge {
        let mut c = Challenge::dpop().algs(self.algorithms.iter().map(|a| a.as_str()));
        if let Some(url) = &self.resource_metadata {
            c = c.resource_metadata(url);
        }
        if let Some(e) = error
            && let Some(code) = e.code()
        {
            c = c.error(code).error_description(&e.to_string());
        }
        c
    }

    fn expected_htu(&self, req: &http::request::Parts) -> String {
        let path = req.uri.path();
        let origin = match &self.origin {
            ExternalOrigin::Fixed(o) => {
                // one allocation of the right size, no formatting machinery (every request)
                let mut htu = String::with_capacity(o.len() + path.len());
                htu.push_str(o);
                htu.push_str(path);
                return htu;
            }
            ExternalOrigin::InsecureTrustForwardedHeaders(fallback) => {
                let h = |n: &str| req.headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
                match (h("x-forwarded-proto"), h("x-forwarded-host")) {
                    (Some(proto), Some(host)) if matches!(proto.as_str(), "http" | "https") => {
                        format!("{proto}://{host}")
                    }
                    _ => fallback.clone(),
                }
            }
        };
        format!("{origin}{path}")
    }

    /// Checks everything; returns the principal and whether a fresh nonce should go out.
    async fn authenticate(&self, req: &http::request::Parts, token: &str) -> Result<(Principal, bool), DpopError> {
        let mut proofs = req.headers.get_all(DPOP).iter();
        let (Some(proof), None) = (proofs.next(), proofs.next()) else {
            return Err(DpopError::InvalidProof("exactly one DPoP header is required"));
        };
        let proof = proof.to_str().map_err(|_| DpopError::InvalidProof("the DPoP header is not ASCII"))?;
        if proof.contains(',') {
            // folded duplicate headers
            return Err(DpopError::InvalidProof("exactly one DPoP header is required"));
        }
        let now = self.clock.now();
        let htu = self.expected_htu(req);
        // hashed once: `ath` and the validator's cache key
        let token_sha256 = crate::proof::sha256(token.as_bytes());
        let expect = Expect {
            method: req.method.as_str(),
            htu: &htu,
            htu_normalised: self.origin_normalised && crate::htu::is_plain_path(req.uri.path()),
            access_token_sha256: Some(&token_sha256),
            now,
            iat_window: self.iat_window,
            max_bytes: self.max_proof_bytes,
        };
        let valid = proof::validate(proof, &self.algorithms, &expect, Some(&self.headers))?;
        let mut fresh_nonce = false;
        if let Some(keys) = self.nonce_keys() {
            match (&valid.nonce, &self.nonce) {
                (Some(n), _) => {
                    let issued = keys.check(n, now).map_err(|_| DpopError::UseNonce)?;
                    fresh_nonce = now.saturating_sub(issued) > keys.lifetime() / 2;
                }
                (None, NonceMode::Required(_)) => return Err(DpopError::UseNonce),
                (None, _) => fresh_nonce = true,
            }
        }
        let bound = self.validator.validate_hashed(token, &token_sha256).await.map_err(|e| match e {
            crate::validator::TokenError::Invalid(m) => DpopError::InvalidToken(m),
            _ => DpopError::Unavailable,
        })?;
        match &bound.jkt {
            Some(jkt) if jkt == &valid.jkt => {}
            Some(_) => return Err(DpopError::InvalidToken("the token is bound to another key".into())),
            None => return Err(DpopError::InvalidToken("the token is not DPoP-bound".into())),
        }
        if let Some(store) = &self.replay {
            // unique per key; remembered until the proof's window closes
            let key = format!("{}:{}", valid.jkt, valid.jti);
            let until = Duration::from_secs(valid.iat) + self.iat_window + Duration::from_secs(1);
            match store.check_and_insert(&key, now, until).await {
                Ok(true) => {}
                Ok(false) => return Err(DpopError::Replayed),
                Err(e) => {
                    tracing::warn!(error = %e, "DPoP replay store refused; failing closed");
                    return Err(DpopError::Unavailable);
                }
            }
        }
        Ok((bound.principal.with_auth_method(AuthMethod::Dpop), fresh_nonce))
    }

    fn decorate<B>(&self, response: &mut Response<B>, nonce: bool) {
        let now = self.clock.now();
        if !response.headers().contains_key(header::DATE)
            && let Ok(date) = HeaderValue::from_str(&http_date(now))
        {
            response.headers_mut().insert(header::DATE, date);
        }
        if nonce
            && let Some(keys) = self.nonce_keys()
            && let Ok(value) = HeaderValue::from_str(&keys.issue(now))
        {
            response.headers_mut().insert(DPOP_NONCE, value);
        }
    }

    fn refuse(&self, error: DpopError, mcp: Option<&McpRequest>) -> Response<PackBody> {
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
            response.headers_mut().insert(header::WWW_AUTHENTICATE, self.challenge(Some(&error)).to_header_value());
        }
        let nonce = matches!(error, DpopError::UseNonce);
        match error {
            DpopError::UseNonce => self.nonce_challenges.inc(),
            DpopError::Replayed => self.replays.inc(),
            _ => {}
        }
        self.decorate(&mut response, nonce);
        tracing::info!(reason = %error, "DPoP request refused");
        response
            .extensions_mut()
            .insert(Denial::new("dpop", error.to_string()).with_jsonrpc_code(codes::INVALID_REQUEST));
        response.extensions_mut().insert(error);
        response
    }
}

impl<S, B, ResB> Service<Request<B>> for Dpop<S>
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
        wiring::visit(&mut req, "dpop");
        let clone = self.inner.clone();
        let mut service = std::mem::replace(&mut self.inner, clone);
        let inner = self.layer.inner.clone();
        let armed = self.layer.armed;
        ResponseFuture::new(async move {
            // authenticated by an outer layer of the chain (workload identity): not ours to judge
            // (an unarmed also_bearer layer still reports that it is miswired)
            if req.extensions().get::<Principal>().is_some() && (armed || inner.bearer != BearerMode::AlsoBearer) {
                return Ok(service.call(req).await?.map(PackBody::new));
            }
            let mcp = McpRequest::of(req.extensions()).cloned();
            let decision = mcp_enterprise_core::trace::Decision::start("dpop");
            // the token is read in place (no copy of it per request): the parts are taken apart
            // first and put together again only on the paths that pass the request on unchecked
            let (mut parts, body) = req.into_parts();
            let checked = match credentials(&parts.headers) {
                Credentials::Dpop(token) => {
                    tracing::Instrument::instrument(inner.authenticate(&parts, token), decision.span().clone()).await
                }
                Credentials::Malformed => {
                    return Ok(
                        inner.refuse(DpopError::InvalidToken("malformed Authorization header".into()), mcp.as_ref())
                    );
                }
                Credentials::None | Credentials::Other if inner.bearer == BearerMode::AlsoBearer && !armed => {
                    return Ok(Miswired::new(
                            "dpop",
                            "has bearer_mode = also_bearer and needs an authentication layer inside it (join them with AuthChain)",
                        )
                        .into_response());
                }
                Credentials::None | Credentials::Other if inner.bearer == BearerMode::AlsoBearer => {
                    // another scheme's layer decides; add our challenge to its refusals
                    decision.pass();
                    let req = Request::from_parts(parts, body);
                    let mut response = service.call(req).await?.map(PackBody::new);
                    if response.status() == StatusCode::UNAUTHORIZED {
                        response
                            .headers_mut()
                            .append(header::WWW_AUTHENTICATE, inner.challenge(None).to_header_value());
                    }
                    inner.decorate(&mut response, false);
                    return Ok(response);
                }
                Credentials::None => return Ok(inner.refuse(DpopError::MissingToken, mcp.as_ref())),
                Credentials::Other => {
                    return Ok(inner
                        .refuse(DpopError::InvalidToken("only DPoP-bound tokens are accepted".into()), mcp.as_ref()));
                }
            };
            match &checked {
                Ok(_) => decision.allow(),
                Err(error) => decision.deny(error.code().map_or("dpop_unavailable", |c| c.as_str())),
            }
            match checked {
                Ok((principal, nonce)) => {
                    mcp_enterprise_core::PrincipalSlot::fill(&parts.extensions, &principal);
                    parts.extensions.insert(principal.clone());
                    let req = Request::from_parts(parts, body);
                    let mut response = service.call(req).await?.map(PackBody::new);
                    inner.decorate(&mut response, nonce);
                    // outer layers (audit) see who was let in
                    response.extensions_mut().insert(principal);
                    Ok(response)
                }
                Err(error) => Ok(inner.refuse(error, mcp.as_ref())),
            }
        })
    }
}
