//! A minimal SEP-1933 authorization server, so a cluster without an enterprise AS can still use
//! workload identity federation end to end: a tower service answering
//!
//! - `POST <token path>`: the jwt-bearer grant, judged by a [`GrantValidator`]; success mints a
//!   short-lived (default 5 minutes), audience-bound RFC 9068 access token (`typ: at+jwt`, ES256,
//!   `iss`, `sub` = the workload, `aud` = the resource, `client_id`, `scope`, `jti`, `iat`,
//!   `exp`); refusals are RFC 6749 §5.2 error bodies;
//! - `GET <jwks path>`: the public signing key;
//! - `GET /.well-known/oauth-authorization-server[<issuer path>]`: RFC 8414 metadata with
//!   `grant_types_supported: [jwt-bearer]` and `token_endpoint_auth_methods_supported: [none]`;
//!
//! and `404` for anything else. [`IssuedTokens`] lets the [`WorkloadIdentityLayer`](crate::WorkloadIdentityLayer)
//! accept the tokens it mints without any network round trip.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use mcp_enterprise_core::clock::Clock;
use mcp_enterprise_core::jwks::{self, Algorithm, JwtError, VerifyKey, form_decode, parse_jwks};
use mcp_enterprise_core::{
    AuthMethod, BoxError, ExtensionId, ExtensionSetBuilder, MetadataContribution, Principal, PrincipalKind,
    TokenFingerprint,
};
use serde_json::{Value, json};
use tower_service::Service;

use crate::error::{GrantError, WorkloadConfigError, WorkloadError};
use crate::grant::{GrantDecision, GrantValidator, JWT_BEARER_GRANT_TYPE};
use crate::id_jag::{EMA_EXTENSION_ID, ID_JAG_GRANT_PROFILE, IdJagDecision, IdJagValidator, is_id_jag_request};
use crate::replay::{BoxFuture, MemoryReplayStore, ReplayStore};
use crate::signing::SigningKey;
use crate::verify::{check_times, single_audience};
use mcp_enterprise_core::dpop::{Expect as ProofExpect, ProofAlg};

/// The de-facto extension id the conformance suite and the TypeScript SDK use for SEP-1933.
pub const DEFAULT_WIF_EXTENSION_ID: &str = "io.modelcontextprotocol/auth/wif";

/// The RFC 8414 well-known prefix.
const AS_METADATA_PREFIX: &str = "/.well-known/oauth-authorization-server";

/// DPoP at the token endpoint (RFC 9449 §5): a request with a valid proof gets a token bound to
/// the proof's key.
struct DpopBinding {
    algorithms: Vec<ProofAlg>,
    iat_window: Duration,
    replay: Arc<dyn ReplayStore>,
}

/// Longest DPoP proof accepted at the token endpoint.
const MAX_PROOF_BYTES: usize = 8 * 1024;

struct EndpointInner {
    validator: GrantValidator,
    dpop: DpopBinding,
    id_jag: Option<IdJagValidator>,
    key: SigningKey,
    issued: IssuedTokens,
    token_path: String,
    jwks_path: String,
    metadata_path: String,
    ttl: Duration,
    extension_id: ExtensionId,
    max_body_bytes: usize,
    metadata: Bytes,
    jwks: Bytes,
}

/// The token endpoint service (see the module documentation). Cheap to clone.
#[derive(Clone)]
pub struct TokenEndpoint {
    inner: Arc<EndpointInner>,
}

impl fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEndpoint")
            .field("issuer", &self.inner.validator.issuer())
            .field("token_endpoint", &self.inner.validator.token_endpoint())
            .field("kid", &self.inner.key.kid())
            .field("ttl", &self.inner.ttl)
            .finish_non_exhaustive()
    }
}

/// `scheme://authority` and path of an absolute URL.
fn origin_and_path(url: &str) -> Option<(String, String)> {
    let uri: http::Uri = url.parse().ok()?;
    let origin = format!("{}://{}", uri.scheme_str()?, uri.authority()?.as_str());
    let path = uri.path().trim_end_matches('/').to_owned();
    Some((origin, path))
}

impl TokenEndpoint {
    /// Starts an endpoint around `validator`: it serves the validator's token endpoint URL (whose
    /// origin must be the issuer's).
    pub fn builder(validator: GrantValidator) -> TokenEndpointBuilder {
        TokenEndpointBuilder {
            validator,
            id_jag: None,
            jwks_path: "/oauth/jwks".to_owned(),
            key: None,
            ttl: Duration::from_secs(300),
            extension_id: DEFAULT_WIF_EXTENSION_ID.to_owned(),
            max_body_bytes: 64 * 1024,
            dpop_iat_window: Duration::from_secs(60),
            dpop_replay: None,
        }
    }

    /// The issuer identifier.
    pub fn issuer(&self) -> &str {
        self.inner.validator.issuer()
    }

    /// The token endpoint URL.
    pub fn token_endpoint_url(&self) -> &str {
        self.inner.validator.token_endpoint()
    }

    /// The paths this service answers: token endpoint, JWKS, RFC 8414 metadata.
    pub fn paths(&self) -> [&str; 3] {
        [&self.inner.token_path, &self.inner.jwks_path, &self.inner.metadata_path]
    }

    /// The grant validator.
    pub fn grant_validator(&self) -> &GrantValidator {
        &self.inner.validator
    }

    /// The verifier of the tokens this endpoint mints, for the server layer.
    pub fn issued_tokens(&self) -> IssuedTokens {
        self.inner.issued.clone()
    }

    /// The RFC 8414 metadata document.
    pub fn metadata(&self) -> Value {
        serde_json::from_slice(&self.inner.metadata).unwrap_or(Value::Null)
    }

    /// The ID-JAG validator, when Enterprise-Managed Authorization is enabled.
    pub fn id_jag_validator(&self) -> Option<&IdJagValidator> {
        self.inner.id_jag.as_ref()
    }

    /// Adds the WIF extension (settings `{}`) to an extension set: clients learn that this
    /// server's authorization server accepts workload identity grants; with ID-JAGs also
    /// Enterprise-Managed Authorization (`io.modelcontextprotocol/enterprise-managed-authorization`).
    pub fn add_extensions(&self, set: ExtensionSetBuilder) -> Result<ExtensionSetBuilder, WorkloadConfigError> {
        let mut set = set.with(self.inner.extension_id.clone(), Value::Object(serde_json::Map::new()))?;
        if self.inner.id_jag.is_some() {
            set = set.with(ExtensionId::new(EMA_EXTENSION_ID)?, Value::Object(serde_json::Map::new()))?;
        }
        Ok(set)
    }

    /// This authorization server, for the RFC 9728 metadata of the resources it serves.
    pub fn metadata_contribution(&self) -> MetadataContribution {
        MetadataContribution::new().authorization_server(self.issuer())
    }

    fn mint(&self, decision: &GrantDecision, jkt: Option<&str>) -> Result<(String, u64), WorkloadConfigError> {
        let now = self.inner.validator.inner.trust.clock().now().as_secs();
        let ttl = self.inner.ttl.as_secs();
        let mut jti = [0u8; 16];
        SystemRandom::new()
            .fill(&mut jti)
            .map_err(|_| WorkloadConfigError::SigningKey("randomness unavailable".into()))?;
        let mut claims = json!({
            "iss": self.issuer(),
            "sub": decision.subject,
            "aud": decision.resource,
            "client_id": decision.subject,
            "iat": now,
            "exp": now + ttl,
            "jti": URL_SAFE_NO_PAD.encode(jti),
            "workload_issuer": decision.issuer,
        });
        if !decision.scopes.is_empty() {
            claims["scope"] = json!(decision.scopes.join(" "));
        }
        if let Some(jkt) = jkt {
            claims["cnf"] = json!({ "jkt": jkt });
        }
        Ok((self.inner.key.sign(&json!({"typ": "at+jwt"}), &claims)?, ttl))
    }

    /// An access token for the employee of an ID-JAG: `sub` the user, `aud` the resource,
    /// `client_id` the client, `idp` the enterprise IdP, the user claims (`email`, groups...).
    fn mint_user(&self, decision: &IdJagDecision, jkt: Option<&str>) -> Result<(String, u64), WorkloadConfigError> {
        let now = self.inner.validator.inner.trust.clock().now().as_secs();
        let ttl = self.inner.ttl.as_secs();
        let mut jti = [0u8; 16];
        SystemRandom::new()
            .fill(&mut jti)
            .map_err(|_| WorkloadConfigError::SigningKey("randomness unavailable".into()))?;
        let mut claims = serde_json::Map::new();
        for (name, value) in &decision.user_claims {
            claims.insert(name.clone(), value.clone());
        }
        for (name, value) in [
            ("iss", json!(self.issuer())),
            ("sub", json!(decision.subject)),
            ("aud", json!(decision.resource)),
            ("client_id", json!(decision.client_id)),
            ("idp", json!(decision.idp)),
            ("iat", json!(now)),
            ("exp", json!(now + ttl)),
            ("jti", json!(URL_SAFE_NO_PAD.encode(jti))),
        ] {
            claims.insert(name.to_owned(), value);
        }
        if !decision.scopes.is_empty() {
            claims.insert("scope".to_owned(), json!(decision.scopes.join(" ")));
        }
        if let Some(jkt) = jkt {
            claims.insert("cnf".to_owned(), json!({ "jkt": jkt }));
        }
        Ok((self.inner.key.sign(&json!({"typ": "at+jwt"}), &Value::Object(claims))?, ttl))
    }

    fn issued(
        &self,
        token: Result<(String, u64), WorkloadConfigError>,
        scopes: &[String],
        bound: bool,
    ) -> Response<Full<Bytes>> {
        match token {
            Ok((token, ttl)) => {
                let token_type = if bound { "DPoP" } else { "Bearer" };
                let mut body = json!({"access_token": token, "token_type": token_type, "expires_in": ttl});
                if !scopes.is_empty() {
                    body["scope"] = json!(scopes.join(" "));
                }
                json_response(StatusCode::OK, body.to_string().into())
            }
            Err(e) => {
                tracing::error!(error = %e, "minting an access token failed");
                grant_error(GrantError::Unavailable)
            }
        }
    }

    async fn token<B>(self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let form_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
        if !form_type {
            return grant_error(GrantError::InvalidRequest("the body must be application/x-www-form-urlencoded"));
        }
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, self.inner.max_body_bytes).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return grant_error(GrantError::InvalidRequest("the body is unreadable or too large")),
        };
        let Some(form) = form_decode(&body) else {
            return grant_error(GrantError::InvalidRequest("the body is not a valid form"));
        };
        let jkt = match self.dpop_proof(&parts).await {
            Ok(jkt) => jkt,
            Err(e) => return grant_error(e),
        };
        let jkt = jkt.as_deref();
        if let Some(id_jag) = &self.inner.id_jag
            && is_id_jag_request(&parts.headers, &form)
        {
            return match id_jag.validate_form(&parts.headers, &form).await {
                Ok(decision) => {
                    let mut res = self.issued(self.mint_user(&decision, jkt), &decision.scopes, jkt.is_some());
                    res.extensions_mut().insert(decision);
                    res
                }
                Err(e) => grant_error(e),
            };
        }
        let decision = match self.inner.validator.validate_form(&form).await {
            Ok(d) => d,
            Err(e) => return grant_error(e),
        };
        let mut res = self.issued(self.mint(&decision, jkt), &decision.scopes, jkt.is_some());
        res.extensions_mut().insert(decision);
        res
    }
}

impl TokenEndpoint {
    /// The key thumbprint of the request's DPoP proof (RFC 9449 §5), `None` without one: exactly
    /// one proof, `htm` POST, `htu` the token endpoint, `iat` within the window, an allowed
    /// asymmetric key, its `jti` never seen before.
    async fn dpop_proof(&self, parts: &http::request::Parts) -> Result<Option<String>, GrantError> {
        use GrantError::InvalidDpopProof as Bad;
        let mut proofs = parts.headers.get_all(mcp_enterprise_core::headers::DPOP).iter();
        let proof = match (proofs.next(), proofs.next()) {
            (None, _) => return Ok(None),
            (Some(p), None) => p,
            (Some(_), Some(_)) => return Err(Bad("exactly one DPoP header is required")),
        };
        let proof = proof.to_str().map_err(|_| Bad("the DPoP header is not ASCII"))?;
        if proof.contains(',') {
            return Err(Bad("exactly one DPoP header is required"));
        }
        let binding = &self.inner.dpop;
        let now = self.inner.validator.inner.trust.clock().now();
        let expect = ProofExpect {
            method: "POST",
            htu: self.token_endpoint_url(),
            htu_normalised: false,
            access_token_sha256: None,
            now,
            iat_window: binding.iat_window,
            max_bytes: MAX_PROOF_BYTES,
        };
        let valid = mcp_enterprise_core::dpop::validate(proof, &binding.algorithms, &expect, None)
            .map_err(|e| Bad(e.reason()))?;
        let key = format!("dpop-as:{}:{}", valid.jkt, valid.jti);
        let until = Duration::from_secs(valid.iat) + binding.iat_window + Duration::from_secs(1);
        match binding.replay.check_and_insert(&key, now, until).await {
            Ok(true) => Ok(Some(valid.jkt)),
            Ok(false) => Err(Bad("replayed jti")),
            Err(e) => {
                tracing::warn!(error = %e, "DPoP replay store refused at the token endpoint; failing closed");
                Err(GrantError::Unavailable)
            }
        }
    }
}

fn json_response(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

/// An RFC 6749 §5.2 error response; the typed error is in the response extensions.
fn grant_error(error: GrantError) -> Response<Full<Bytes>> {
    let mut res = json_response(error.status(), error.to_json().to_string().into());
    if error.status() == StatusCode::SERVICE_UNAVAILABLE {
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    if error.status() == StatusCode::UNAUTHORIZED {
        // RFC 6749 §5.2: invalid_client answers with the authentication scheme the client can use
        res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"token\""));
    }
    res.extensions_mut().insert(error);
    res
}

fn plain(status: StatusCode) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = status;
    res
}

impl<B> Service<Request<B>> for TokenEndpoint
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let path = req.uri().path();
            let inner = &this.inner;
            let res = if path == inner.token_path {
                if req.method() == Method::POST {
                    this.clone().token(req).await
                } else {
                    let mut res = plain(StatusCode::METHOD_NOT_ALLOWED);
                    res.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
                    res
                }
            } else if path == inner.jwks_path || path == inner.metadata_path {
                if matches!(*req.method(), Method::GET | Method::HEAD) {
                    let body = if path == inner.jwks_path { inner.jwks.clone() } else { inner.metadata.clone() };
                    let mut res = json_response(StatusCode::OK, body);
                    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
                    res.headers_mut().remove(header::PRAGMA);
                    res
                } else {
                    let mut res = plain(StatusCode::METHOD_NOT_ALLOWED);
                    res.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                    res
                }
            } else {
                plain(StatusCode::NOT_FOUND)
            };
            Ok(res)
        })
    }
}

/// Builds a [`TokenEndpoint`].
#[must_use]
pub struct TokenEndpointBuilder {
    validator: GrantValidator,
    id_jag: Option<IdJagValidator>,
    jwks_path: String,
    key: Option<SigningKey>,
    ttl: Duration,
    extension_id: String,
    max_body_bytes: usize,
    dpop_iat_window: Duration,
    dpop_replay: Option<Arc<dyn ReplayStore>>,
}

impl fmt::Debug for TokenEndpointBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEndpointBuilder").field("validator", &self.validator).finish_non_exhaustive()
    }
}

impl TokenEndpointBuilder {
    /// Also accepts ID-JAGs (Enterprise-Managed Authorization, SEP-990) at the token endpoint:
    /// a jwt-bearer request whose client authenticates, or whose assertion is typed
    /// `oauth-id-jag+jwt`, is judged by `validator` (whose issuer must be this endpoint's).
    pub fn id_jag(mut self, validator: IdJagValidator) -> Self {
        self.id_jag = Some(validator);
        self
    }

    /// Where the public key is served (default `/oauth/jwks`).
    pub fn jwks_path(mut self, path: impl Into<String>) -> Self {
        self.jwks_path = path.into();
        self
    }

    /// The signing key (default: a new random one).
    pub fn signing_key(mut self, key: SigningKey) -> Self {
        self.key = Some(key);
        self
    }

    /// Lifetime of minted access tokens: default 5 minutes, between 10 seconds and 1 hour.
    pub fn access_token_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The advertised extension id (default `io.modelcontextprotocol/auth/wif`).
    pub fn extension_id(mut self, id: impl Into<String>) -> Self {
        self.extension_id = id.into();
        self
    }

    /// How far a DPoP proof's `iat` may be from now at the token endpoint (default 60 seconds,
    /// at most 300).
    pub fn dpop_iat_window(mut self, window: Duration) -> Self {
        self.dpop_iat_window = window;
        self
    }

    /// Where DPoP proof `jti`s are remembered (each single use; default a memory store of
    /// 100 000), e.g. the replicas' shared Redis store.
    pub fn dpop_replay_store(mut self, store: Arc<dyn ReplayStore>) -> Self {
        self.dpop_replay = Some(store);
        self
    }

    /// Largest accepted token request body (default 64 KiB).
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Checks and builds.
    pub fn build(self) -> Result<TokenEndpoint, WorkloadConfigError> {
        let issuer = self.validator.issuer().to_owned();
        let token_url = self.validator.token_endpoint().to_owned();
        let bad = |what, value: &str, reason: &str| WorkloadConfigError::Url {
            what,
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let (origin, issuer_path) = origin_and_path(&issuer).ok_or_else(|| bad("issuer", &issuer, "not a URL"))?;
        let (token_origin, token_path) =
            origin_and_path(&token_url).ok_or_else(|| bad("token endpoint", &token_url, "not a URL"))?;
        if token_origin != origin {
            return Err(bad("token endpoint", &token_url, "must be served on the issuer's origin"));
        }
        let metadata_path = format!("{AS_METADATA_PREFIX}{issuer_path}");
        // plain paths only (unreserved characters and '/'), so routers never read them as patterns
        let valid_path = |p: &str| {
            p.starts_with('/')
                && p.len() > 1
                && !p.ends_with('/')
                && !p.contains("//")
                && p.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'.' | b'_' | b'~'))
        };
        if !valid_path(&self.jwks_path) {
            return Err(bad("jwks path", &self.jwks_path, "must be a plain absolute path such as /oauth/jwks"));
        }
        if !valid_path(&token_path) {
            return Err(bad("token endpoint", &token_url, "must have a plain path such as /oauth/token"));
        }
        if !valid_path(&metadata_path) {
            return Err(bad("issuer", &issuer, "its path must be plain (letters, digits, '-', '.', '_', '~')"));
        }
        let paths = [&token_path, &self.jwks_path, &metadata_path];
        if paths[0] == paths[1] || paths[0] == paths[2] || paths[1] == paths[2] {
            return Err(bad("jwks path", &self.jwks_path, "token, JWKS and metadata paths must differ"));
        }
        if self.ttl < Duration::from_secs(10) || self.ttl > Duration::from_secs(3600) {
            return Err(WorkloadConfigError::Limit {
                what: "access_token_ttl",
                reason: "must be between 10 seconds and 1 hour",
            });
        }
        if self.dpop_iat_window < Duration::from_secs(1) || self.dpop_iat_window > Duration::from_secs(300) {
            return Err(WorkloadConfigError::Limit {
                what: "dpop_iat_window",
                reason: "must be between 1 and 300 seconds",
            });
        }
        if self.max_body_bytes < 1024 {
            return Err(WorkloadConfigError::Limit { what: "max_body_bytes", reason: "must be at least 1024" });
        }
        let extension_id =
            ExtensionId::new(&self.extension_id).or_else(|_| ExtensionId::de_facto(&self.extension_id))?;
        let key = match self.key {
            Some(k) => k,
            None => SigningKey::generate()?,
        };
        let jwks_doc = json!({"keys": [key.public_jwk()]});
        let verify_key = parse_jwks(jwks_doc.to_string().as_bytes())
            .ok()
            .and_then(|mut keys| keys.pop())
            .ok_or_else(|| WorkloadConfigError::SigningKey("the public key does not parse".into()))?;
        let mut scopes: Vec<String> = Vec::new();
        for issuer in &self.validator.inner.trust.inner.issuers {
            for rule in &issuer.rules {
                for s in rule.granted_scopes() {
                    if !scopes.contains(s) {
                        scopes.push(s.clone());
                    }
                }
            }
        }
        let mut metadata = json!({
            "issuer": issuer,
            "token_endpoint": token_url,
            "jwks_uri": format!("{origin}{}", self.jwks_path),
            "grant_types_supported": [JWT_BEARER_GRANT_TYPE],
            "token_endpoint_auth_methods_supported": ["none"],
            "dpop_signing_alg_values_supported": ProofAlg::ALL.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        });
        if let Some(id_jag) = &self.id_jag {
            if id_jag.issuer() != issuer {
                return Err(bad("issuer", id_jag.issuer(), "the ID-JAG validator must have the endpoint's issuer"));
            }
            for s in id_jag.rule_scopes() {
                if !scopes.contains(&s) {
                    scopes.push(s);
                }
            }
            metadata["authorization_grant_profiles_supported"] = json!([ID_JAG_GRANT_PROFILE]);
            metadata["token_endpoint_auth_methods_supported"] =
                json!(["none", "client_secret_basic", "client_secret_post", "private_key_jwt"]);
            metadata["token_endpoint_auth_signing_alg_values_supported"] =
                json!(["ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"]);
        }
        if !scopes.is_empty() {
            metadata["scopes_supported"] = json!(scopes);
        }
        let issued = IssuedTokens {
            inner: Arc::new(IssuedInner {
                issuer: issuer.clone(),
                kid: key.kid().to_owned(),
                key: verify_key,
                clock: self.validator.inner.trust.clock().clone(),
                max_lifetime: self.ttl,
            }),
        };
        Ok(TokenEndpoint {
            inner: Arc::new(EndpointInner {
                validator: self.validator,
                dpop: DpopBinding {
                    algorithms: ProofAlg::ALL.to_vec(),
                    iat_window: self.dpop_iat_window,
                    replay: self.dpop_replay.unwrap_or_else(|| Arc::new(MemoryReplayStore::new(100_000))),
                },
                id_jag: self.id_jag,
                key,
                issued,
                token_path,
                jwks_path: self.jwks_path,
                metadata_path,
                ttl: self.ttl,
                extension_id,
                max_body_bytes: self.max_body_bytes,
                metadata: Bytes::from(metadata.to_string()),
                jwks: Bytes::from(jwks_doc.to_string()),
            }),
        })
    }
}

struct IssuedInner {
    issuer: String,
    kid: String,
    key: VerifyKey,
    clock: Arc<dyn Clock>,
    max_lifetime: Duration,
}

/// Verifies the access tokens a [`TokenEndpoint`] minted (its public key in memory, no fetch).
#[derive(Clone)]
pub struct IssuedTokens {
    inner: Arc<IssuedInner>,
}

impl fmt::Debug for IssuedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedTokens").field("issuer", &self.inner.issuer).field("kid", &self.inner.kid).finish()
    }
}

/// Clock skew tolerated on issued tokens (they are minted by a clock of this deployment).
const ISSUED_LEEWAY_SECS: u64 = 30;

impl IssuedTokens {
    /// The issuer whose tokens these are.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// Judges one of our access tokens presented as a bearer token for `resource`: ES256 under
    /// our key, `at+jwt`, our `iss`, `aud` = `resource`, inside its lifetime, and not DPoP-bound
    /// (a token with `cnf` is refused: RFC 9449 §7.2, no downgrade to bearer use).
    pub(crate) fn verify(&self, token: &str, resource: &str) -> Result<Principal, WorkloadError> {
        match self.judge(token, resource)? {
            (principal, None) => Ok(principal),
            // sender-constrained tokens are judged by the DPoP layer, never as bearer tokens here
            (_, Some(_)) => Err(WorkloadError::Jwt(JwtError::BadClaim("cnf"))),
        }
    }

    /// Whether `token` names this authorization server as its issuer (unverified: which verifier
    /// to ask).
    pub fn is_ours(&self, token: &str) -> bool {
        crate::verify::peek_claims(token)
            .is_some_and(|c| c.get("iss").and_then(Value::as_str) == Some(self.inner.issuer.as_str()))
    }

    /// Judges one of our access tokens presented with a DPoP proof for `resource` (the checks of
    /// bearer use, bound or not): the principal and the `cnf.jkt` the proof key must have, which
    /// the DPoP layer compares (`None`: not bound, which that layer refuses).
    pub fn verify_bound(&self, token: &str, resource: &str) -> Result<(Principal, Option<String>), WorkloadError> {
        self.judge(token, resource)
    }

    fn judge(&self, token: &str, resource: &str) -> Result<(Principal, Option<String>), WorkloadError> {
        let parts = jwks::split_compact(token).map_err(JwtError::Malformed)?;
        let header = jwks::decode_object(parts.header, "header is not base64url", "header is not a JSON object")
            .map_err(JwtError::Malformed)?;
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or_default();
        if alg != "ES256" {
            return Err(JwtError::DisallowedAlgorithm(alg.chars().take(16).collect()).into());
        }
        if header.contains_key("crit") {
            return Err(JwtError::CriticalHeader.into());
        }
        let typ = header.get("typ").and_then(Value::as_str).unwrap_or_default();
        if !typ.eq_ignore_ascii_case("at+jwt") {
            return Err(WorkloadError::WrongType(typ.chars().take(32).collect()));
        }
        if header.get("kid").and_then(Value::as_str) != Some(self.inner.kid.as_str()) {
            return Err(JwtError::UnknownKey.into());
        }
        if !self.inner.key.verify(Algorithm::ES256, parts.signing_input.as_bytes(), parts.signature)? {
            return Err(JwtError::BadSignature.into());
        }
        let claims = jwks::decode_object(parts.payload, "payload is not base64url", "payload is not a JSON object")
            .map_err(JwtError::Malformed)?;
        if claims.get("iss").and_then(Value::as_str) != Some(self.inner.issuer.as_str()) {
            return Err(JwtError::UntrustedIssuer.into());
        }
        if single_audience(&claims)? != resource {
            return Err(WorkloadError::WrongAudience);
        }
        let now = self.inner.clock.now().as_secs();
        check_times(&claims, now, ISSUED_LEEWAY_SECS, self.inner.max_lifetime)?;
        let text = |name| claims.get(name).and_then(Value::as_str);
        let subject = text("sub").filter(|s| !s.is_empty()).ok_or(JwtError::MissingSubject)?;
        let scopes = text("scope").map(|s| s.split(' ').filter(|s| !s.is_empty()).collect::<Vec<_>>());
        let jkt = match claims.get("cnf") {
            None => None,
            Some(cnf) => Some(
                cnf.get("jkt").and_then(Value::as_str).filter(|j| !j.is_empty()).ok_or(JwtError::BadClaim("cnf"))?,
            ),
        };
        // a token minted from an ID-JAG is the employee's (`idp` names the enterprise IdP)
        let kind =
            if claims.get("idp").is_some_and(Value::is_string) { PrincipalKind::User } else { PrincipalKind::Workload };
        let mut builder = Principal::builder(&self.inner.issuer, subject, kind, AuthMethod::Bearer)
            .scopes(scopes.unwrap_or_default())
            .token_fingerprint(TokenFingerprint::from_sha256(&jwks::sha256(token.as_bytes())));
        if let Some(client) = text("client_id") {
            builder = builder.client_id(client);
        }
        // everything but the registered claims: `workload_issuer`, or `idp`, `email`, groups...
        for (name, value) in &claims {
            if !matches!(
                name.as_str(),
                "iss" | "sub" | "aud" | "exp" | "iat" | "nbf" | "jti" | "scope" | "client_id" | "cnf"
            ) {
                builder = builder.claim(name.clone(), value.clone());
            }
        }
        Ok((builder.build(), jkt.map(str::to_owned)))
    }
}
