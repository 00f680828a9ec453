//! The client side of Enterprise-Managed Authorization (SEP-990): [`IdJagTokenSource`] turns the
//! employee's sign-in at the enterprise IdP ([`IdpSubject`]: an ID token, or a refresh token) into
//! access tokens for one MCP server, and [`IdJagTokenLayer`] attaches them.
//!
//! 0. With a refresh token only: the IdP's `refresh_token` grant (same client authentication)
//!    for a fresh ID token (the refresh token must carry `openid`); a rotated refresh token in
//!    the answer replaces the old one at once. A refusal is [`TokenSourceError::RefreshRefused`].
//! 1. Discovery (unless configured): the MCP server's RFC 9728 metadata names its authorization
//!    server; that server's RFC 8414 metadata gives its issuer (compared exactly) and token
//!    endpoint.
//! 2. RFC 8693 at the IdP: `grant_type=…:token-exchange`, `requested_token_type=…:id-jag`,
//!    `subject_token` (the ID token, `subject_token_type=…:id_token`), `audience` = the
//!    authorization server's issuer, `resource`, `scope`, client authentication
//!    (`client_secret_basic`, or `client_id` alone for a public IdP client). The answer must be
//!    `issued_token_type=…:id-jag`.
//! 3. RFC 7523 at the authorization server: `grant_type=…:jwt-bearer`, `assertion` = the ID-JAG,
//!    `resource`, `scope`, `client_secret_basic`.
//!
//! The access token is cached until shortly before it expires (single flight); when it is due,
//! the whole flow runs again (with a refresh token: a new refresh first). A refusal is not
//! retried with the same sign-in (only a new one, [`IdJagTokenSource::set_subject`], helps);
//! transport failures are retried after a pause. With DPoP, pass a transport wrapped in the `dpop`
//! crate's client layer (see [`ServiceTransport`](crate::ServiceTransport)): both requests then
//! carry proofs, and a `token_type: DPoP` answer is attached as `Authorization: DPoP`. Tokens and
//! assertions are never logged.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use mcp_enterprise_core::clock::{Clock, SystemClock};
use mcp_enterprise_core::jwks::{self, HttpClient, form_encode, form_request};
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;

use crate::client::{AccessToken, TokenSourceError, TokenTransport, parse_token_response, refusal, says_invalid_token};
use crate::error::WorkloadConfigError;
use crate::grant::JWT_BEARER_GRANT_TYPE;
use crate::id_jag::ID_JAG_TOKEN_TYPE;
use crate::replay::BoxFuture;
use crate::token_cache::TokenCache;

/// An https URL; with the insecure switch also plain http on a loopback name (`127.0.0.1`,
/// `localhost`, `[::1]`), as local test servers are reached.
fn check_url(url: &str, insecure_http_loopback: bool) -> Result<(), String> {
    if insecure_http_loopback
        && let Ok(uri) = url.parse::<http::Uri>()
        && uri.scheme_str() == Some("http")
        && matches!(uri.host(), Some("localhost" | "[::1]"))
    {
        return crate::trust::check_url(&url.replacen(uri.host().unwrap_or_default(), "127.0.0.1", 1), true);
    }
    crate::trust::check_url(url, insecure_http_loopback)
}

const REFRESH_TOKEN_GRANT: &str = "refresh_token";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";

/// A client's credentials at a token endpoint (`client_secret_basic`; no secret: `client_id`
/// in the form, a public client).
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    id: String,
    secret: Option<String>,
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials").field("id", &self.id).finish_non_exhaustive()
    }
}

impl ClientCredentials {
    /// A confidential client (`client_secret_basic`).
    pub fn secret(id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self { id: id.into(), secret: Some(secret.into()) }
    }

    /// A public client (only `client_id`).
    pub fn public(id: impl Into<String>) -> Self {
        Self { id: id.into(), secret: None }
    }

    /// A form POST to `url` authenticated as this client.
    fn request(&self, url: &str, form: &[(&str, &str)]) -> Result<Request<Full<Bytes>>, TokenSourceError> {
        let mut pairs = form.to_vec();
        if self.secret.is_none() {
            pairs.push(("client_id", self.id.as_str()));
        }
        let mut req =
            form_request(url, &pairs).map_err(|_| TokenSourceError::Transport("invalid token endpoint URL".into()))?;
        if let Some(secret) = &self.secret {
            // RFC 6749 §2.3.1: both parts form-urlencoded before base64
            let raw = format!("{}:{}", form_encode(&self.id), form_encode(secret));
            let mut value = HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(raw)))
                .map_err(|_| TokenSourceError::Transport("unusable client credentials".into()))?;
            value.set_sensitive(true);
            req.headers_mut().insert(header::AUTHORIZATION, value);
        }
        Ok(req)
    }
}

/// The MCP server's authorization server: its issuer (the ID-JAG's audience) and token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AuthorizationServer {
    issuer: String,
    token_endpoint: String,
}

/// The employee's sign-in at the enterprise IdP, as the token source holds it.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdpSubject {
    /// An ID token for the IdP client, exchanged as it is (until it expires; then a new sign-in).
    IdToken(String),
    /// A refresh token of the IdP client (scope `openid`, e.g. from `offline_access`): redeemed
    /// at the IdP for a fresh ID token before each exchange, rotated when the IdP rotates it.
    RefreshToken(String),
}

impl IdpSubject {
    fn secret(&self) -> &str {
        match self {
            Self::IdToken(t) | Self::RefreshToken(t) => t,
        }
    }
}

impl fmt::Debug for IdpSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::IdToken(_) => "IdToken(…)",
            Self::RefreshToken(_) => "RefreshToken(…)",
        })
    }
}

#[derive(Debug, Default)]
struct State {
    /// The current subject (a refresh token rotates) and the sign-in it came from: the
    /// credential a refusal stands for.
    subject: Option<(IdpSubject, String)>,
    server: Option<AuthorizationServer>,
}

struct Inner {
    idp_token_endpoint: String,
    idp_client: ClientCredentials,
    client: ClientCredentials,
    resource: String,
    scope: Option<String>,
    refresh_margin: Duration,
    insecure_http_loopback: bool,
    transport: Arc<dyn TokenTransport>,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    cache: TokenCache,
}

/// Obtains access tokens through ID-JAGs (see the module documentation). Cheap to clone.
#[derive(Clone)]
pub struct IdJagTokenSource {
    inner: Arc<Inner>,
}

impl fmt::Debug for IdJagTokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdJagTokenSource")
            .field("idp_token_endpoint", &self.inner.idp_token_endpoint)
            .field("resource", &self.inner.resource)
            .field("client", &self.inner.client)
            .finish_non_exhaustive()
    }
}

impl IdJagTokenSource {
    /// A source for the MCP server `resource` (its canonical URI), exchanging at the IdP token
    /// endpoint `idp_token_endpoint` as `idp_client`, granting at the MCP authorization server as
    /// `client`.
    pub fn builder(
        resource: &str,
        idp_token_endpoint: &str,
        idp_client: ClientCredentials,
        client: ClientCredentials,
    ) -> IdJagTokenSourceBuilder {
        IdJagTokenSourceBuilder {
            resource: resource.to_owned(),
            idp_token_endpoint: idp_token_endpoint.to_owned(),
            idp_client,
            client,
            server: None,
            scopes: Vec::new(),
            subject: None,
            refresh_margin: Duration::from_secs(30),
            retry_pause: Duration::from_secs(5),
            http_timeout: Duration::from_secs(10),
            transport: None,
            clock: Arc::new(SystemClock),
            insecure_http_loopback: false,
        }
    }

    /// The employee signed in (again): the ID token to exchange from now on. Forgets the cached
    /// access token and any refusal.
    pub fn set_id_token(&self, id_token: impl Into<String>) {
        self.set_subject(IdpSubject::IdToken(id_token.into()));
    }

    /// The employee signed in (again): the refresh token to redeem from now on. Forgets the
    /// cached access token and any refusal.
    pub fn set_refresh_token(&self, refresh_token: impl Into<String>) {
        self.set_subject(IdpSubject::RefreshToken(refresh_token.into()));
    }

    /// The employee signed in (again). Forgets the cached access token and any refusal.
    pub fn set_subject(&self, subject: IdpSubject) {
        self.lock().subject = Some(signed_in(subject));
        self.inner.cache.clear();
    }

    /// An access token: the cached one while it is fresh, otherwise (with a refresh token, a
    /// refresh first) a new exchange and grant.
    pub async fn token(&self) -> Result<AccessToken, TokenSourceError> {
        let sign_in = async {
            self.lock().subject.as_ref().map(|(_, sign_in)| sign_in.clone()).ok_or_else(|| {
                TokenSourceError::Assertion("no ID token: the employee has not signed in at the IdP".into())
            })
        };
        let resource = &self.inner.resource;
        self.inner
            .cache
            .get(
                sign_in,
                |sign_in| async move { self.obtain(&sign_in).await },
                |error| {
                    tracing::warn!(%error, resource = %resource, "ID-JAG token source failed");
                },
            )
            .await
    }

    /// Forgets the cached access token if it is `token`.
    pub fn invalidate(&self, token: &AccessToken) {
        self.inner.cache.invalidate(token);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn get_json(&self, url: &str) -> Result<Value, TokenSourceError> {
        let req = Request::get(url)
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|_| TokenSourceError::Transport(format!("invalid URL {url}")))?;
        let res = self.inner.transport.send(req).await?;
        if res.status() != StatusCode::OK {
            return Err(TokenSourceError::Transport(format!("{url}: HTTP status {}", res.status().as_u16())));
        }
        serde_json::from_slice(res.body())
            .map_err(|_| TokenSourceError::InvalidResponse("a metadata document is not JSON"))
    }

    /// The authorization server, by RFC 9728 then RFC 8414 discovery (once).
    async fn server(&self) -> Result<AuthorizationServer, TokenSourceError> {
        if let Some(s) = self.lock().server.clone() {
            return Ok(s);
        }
        let insecure = self.inner.insecure_http_loopback;
        let uri: http::Uri =
            self.inner.resource.parse().map_err(|_| TokenSourceError::InvalidResponse("bad resource"))?;
        let origin =
            format!("{}://{}", uri.scheme_str().unwrap_or("https"), uri.authority().map_or("", |a| a.as_str()));
        let path = uri.path().trim_end_matches('/');
        let prm = self.get_json(&format!("{origin}/.well-known/oauth-protected-resource{path}")).await?;
        if prm.get("resource").and_then(Value::as_str) != Some(self.inner.resource.as_str()) {
            return Err(TokenSourceError::InvalidResponse("the protected resource metadata names another resource"));
        }
        let issuer = prm
            .get("authorization_servers")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .filter(|i| check_url(i, insecure).is_ok())
            .ok_or(TokenSourceError::InvalidResponse("no usable authorization server in the resource metadata"))?
            .to_owned();
        let iuri: http::Uri = issuer.parse().map_err(|_| TokenSourceError::InvalidResponse("bad issuer"))?;
        let iorigin =
            format!("{}://{}", iuri.scheme_str().unwrap_or("https"), iuri.authority().map_or("", |a| a.as_str()));
        let ipath = iuri.path().trim_end_matches('/');
        let meta = self.get_json(&format!("{iorigin}/.well-known/oauth-authorization-server{ipath}")).await?;
        if meta.get("issuer").and_then(Value::as_str) != Some(issuer.as_str()) {
            return Err(TokenSourceError::InvalidResponse("the authorization server metadata names another issuer"));
        }
        let token_endpoint = meta
            .get("token_endpoint")
            .and_then(Value::as_str)
            .filter(|t| check_url(t, insecure).is_ok())
            .ok_or(TokenSourceError::InvalidResponse("no usable token_endpoint in the authorization server metadata"))?
            .to_owned();
        let server = AuthorizationServer { issuer, token_endpoint };
        self.lock().server = Some(server.clone());
        Ok(server)
    }

    /// The IdP's `refresh_token` grant: a fresh ID token; a rotated refresh token replaces the
    /// old one (unless the employee signed in anew meanwhile).
    async fn refresh(&self, refresh_token: &str, sign_in: &str) -> Result<String, TokenSourceError> {
        let inner = &self.inner;
        let form = [("grant_type", REFRESH_TOKEN_GRANT), ("refresh_token", refresh_token)];
        let res = inner.transport.send(inner.idp_client.request(&inner.idp_token_endpoint, &form)?).await?;
        if res.status() != StatusCode::OK {
            return Err(match refusal(&res) {
                TokenSourceError::Rejected { status, error, description } => {
                    TokenSourceError::RefreshRefused { status, error, description }
                }
                other => other,
            });
        }
        let body: Value = serde_json::from_slice(res.body())
            .map_err(|_| TokenSourceError::InvalidResponse("the IdP's refresh answer is not JSON"))?;
        if let Some(rotated) = body.get("refresh_token") {
            let rotated = rotated
                .as_str()
                .filter(|t| !t.is_empty() && t.len() <= 4096 && t.bytes().all(|b| b.is_ascii_graphic()))
                .ok_or(TokenSourceError::InvalidResponse("the IdP's rotated refresh_token is not usable"))?;
            let mut st = self.lock();
            if let Some((subject @ IdpSubject::RefreshToken(_), current)) = &mut st.subject
                && current == sign_in
            {
                *subject = IdpSubject::RefreshToken(rotated.to_owned());
            }
        }
        body.get("id_token")
            .and_then(Value::as_str)
            .filter(|t| jwks::split_compact(t).is_ok())
            .map(str::to_owned)
            .ok_or(TokenSourceError::InvalidResponse("the IdP's refresh answer has no ID token (is openid granted?)"))
    }

    async fn obtain(&self, sign_in: &str) -> Result<(AccessToken, Duration), TokenSourceError> {
        let inner = &self.inner;
        let server = self.server().await?;
        let subject = self.lock().subject.as_ref().map(|(s, _)| s.clone());
        let id_token = match subject {
            Some(IdpSubject::IdToken(t)) => t,
            Some(IdpSubject::RefreshToken(rt)) => self.refresh(&rt, sign_in).await?,
            None => return Err(TokenSourceError::Assertion("the employee has not signed in at the IdP".into())),
        };
        let id_token = id_token.as_str();
        // RFC 8693 at the IdP: the ID token for an ID-JAG naming the authorization server
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE),
            ("requested_token_type", ID_JAG_TOKEN_TYPE),
            ("subject_token", id_token),
            ("subject_token_type", ID_TOKEN_TYPE),
            ("audience", server.issuer.as_str()),
            ("resource", inner.resource.as_str()),
        ];
        if let Some(scope) = &inner.scope {
            form.push(("scope", scope));
        }
        let res = inner.transport.send(inner.idp_client.request(&inner.idp_token_endpoint, &form)?).await?;
        if res.status() != StatusCode::OK {
            return Err(refusal(&res));
        }
        let body: Value = serde_json::from_slice(res.body())
            .map_err(|_| TokenSourceError::InvalidResponse("the IdP answer is not JSON"))?;
        if body.get("issued_token_type").and_then(Value::as_str) != Some(ID_JAG_TOKEN_TYPE) {
            return Err(TokenSourceError::InvalidResponse("the IdP did not issue an ID-JAG"));
        }
        let id_jag = body
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| jwks::split_compact(t).is_ok())
            .ok_or(TokenSourceError::InvalidResponse("the ID-JAG is not a compact JWT"))?;
        // RFC 7523 at the authorization server
        let mut form =
            vec![("grant_type", JWT_BEARER_GRANT_TYPE), ("assertion", id_jag), ("resource", inner.resource.as_str())];
        if let Some(scope) = &inner.scope {
            form.push(("scope", scope));
        }
        let res = inner.transport.send(inner.client.request(&server.token_endpoint, &form)?).await?;
        parse_token_response(&res, inner.clock.now(), inner.refresh_margin)
    }
}

/// A subject and the sign-in it stands for (its kind and first value).
fn signed_in(subject: IdpSubject) -> (IdpSubject, String) {
    let kind = match subject {
        IdpSubject::IdToken(_) => "id_token ",
        IdpSubject::RefreshToken(_) => "refresh_token ",
    };
    let sign_in = format!("{kind}{}", subject.secret());
    (subject, sign_in)
}

/// Builds an [`IdJagTokenSource`].
#[must_use]
pub struct IdJagTokenSourceBuilder {
    resource: String,
    idp_token_endpoint: String,
    idp_client: ClientCredentials,
    client: ClientCredentials,
    server: Option<AuthorizationServer>,
    scopes: Vec<String>,
    subject: Option<IdpSubject>,
    refresh_margin: Duration,
    retry_pause: Duration,
    http_timeout: Duration,
    transport: Option<Arc<dyn TokenTransport>>,
    clock: Arc<dyn Clock>,
    insecure_http_loopback: bool,
}

impl fmt::Debug for IdJagTokenSourceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdJagTokenSourceBuilder").field("resource", &self.resource).finish_non_exhaustive()
    }
}

impl IdJagTokenSourceBuilder {
    /// A scope to request. Repeatable.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// The employee's ID token at the IdP (also later with [`IdJagTokenSource::set_id_token`]).
    pub fn id_token(mut self, id_token: impl Into<String>) -> Self {
        self.subject = Some(IdpSubject::IdToken(id_token.into()));
        self
    }

    /// The employee's refresh token at the IdP (also later with
    /// [`IdJagTokenSource::set_refresh_token`]).
    pub fn refresh_token(mut self, refresh_token: impl Into<String>) -> Self {
        self.subject = Some(IdpSubject::RefreshToken(refresh_token.into()));
        self
    }

    /// The employee's sign-in at the IdP (either kind).
    pub fn subject(mut self, subject: IdpSubject) -> Self {
        self.subject = Some(subject);
        self
    }

    /// The authorization server's issuer and token endpoint (default: discovered from the
    /// resource's metadata).
    pub fn authorization_server(mut self, issuer: &str, token_endpoint: &str) -> Self {
        self.server =
            Some(AuthorizationServer { issuer: issuer.to_owned(), token_endpoint: token_endpoint.to_owned() });
        self
    }

    /// How long before expiry a new token is obtained (default 30 s, at most half its lifetime).
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// Pause after a transport failure (default 5 s).
    pub fn retry_pause(mut self, pause: Duration) -> Self {
        self.retry_pause = pause;
        self
    }

    /// Timeout of each HTTP request with the default transport (default 10 s).
    pub fn http_timeout(mut self, timeout: Duration) -> Self {
        self.http_timeout = timeout;
        self
    }

    /// The HTTP transport (e.g. through a DPoP client layer).
    pub fn transport(mut self, transport: Arc<dyn TokenTransport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// The clock (tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// **Insecure**: allows plain-http URLs on `127.0.0.1` (tests).
    pub fn insecure_http_loopback(mut self) -> Self {
        self.insecure_http_loopback = true;
        self
    }

    /// Checks and builds.
    pub fn build(self) -> Result<IdJagTokenSource, WorkloadConfigError> {
        let insecure = self.insecure_http_loopback;
        let mut urls = vec![("resource", &self.resource), ("IdP token endpoint", &self.idp_token_endpoint)];
        if let Some(s) = &self.server {
            urls.push(("authorization server issuer", &s.issuer));
            urls.push(("token endpoint", &s.token_endpoint));
        }
        for (what, url) in urls {
            check_url(url, insecure).map_err(|reason| WorkloadConfigError::Url { what, value: url.clone(), reason })?;
        }
        for scope in &self.scopes {
            if !mcp_enterprise_core::challenge::is_scope_token(scope) {
                return Err(WorkloadConfigError::Rule {
                    rule: "scopes".into(),
                    reason: format!("{scope:?} is not a valid scope"),
                });
            }
        }
        let transport = match self.transport {
            Some(t) => t,
            None => Arc::new(HttpClient::new(self.http_timeout).map_err(|e| WorkloadConfigError::Http(e.to_string()))?),
        };
        Ok(IdJagTokenSource {
            inner: Arc::new(Inner {
                idp_token_endpoint: self.idp_token_endpoint,
                idp_client: self.idp_client,
                client: self.client,
                resource: self.resource,
                scope: (!self.scopes.is_empty()).then(|| self.scopes.join(" ")),
                refresh_margin: self.refresh_margin,
                cache: TokenCache::new(self.clock.clone(), self.retry_pause),
                insecure_http_loopback: insecure,
                transport,
                clock: self.clock,
                state: Mutex::new(State { subject: self.subject.map(signed_in), server: self.server }),
            }),
        })
    }
}

/// Attaches the access tokens of an [`IdJagTokenSource`] to outgoing requests (`Authorization:
/// Bearer|DPoP`), and forgets a token the server answers `invalid_token` for.
#[derive(Clone, Debug)]
#[must_use]
pub struct IdJagTokenLayer {
    source: IdJagTokenSource,
}

impl IdJagTokenLayer {
    /// Attaches tokens from `source`.
    pub fn new(source: IdJagTokenSource) -> Self {
        Self { source }
    }
}

impl<S> Layer<S> for IdJagTokenLayer {
    type Service = IdJagToken<S>;

    fn layer(&self, inner: S) -> Self::Service {
        IdJagToken { inner, source: self.source.clone() }
    }
}

/// The service made by [`IdJagTokenLayer`]; its error type must absorb [`TokenSourceError`].
#[derive(Clone, Debug)]
pub struct IdJagToken<S> {
    inner: S,
    source: IdJagTokenSource,
}

impl<S, B, ResB> Service<Request<B>> for IdJagToken<S>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: From<TokenSourceError>,
    B: Send + 'static,
    ResB: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<ResB>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut service = std::mem::replace(&mut self.inner, clone);
        let source = self.source.clone();
        Box::pin(async move {
            let token = source.token().await?;
            let value =
                token.authorization().ok_or(TokenSourceError::InvalidResponse("token not usable in a header"))?;
            req.headers_mut().insert(header::AUTHORIZATION, value);
            let response = service.call(req).await?;
            if response.status() == StatusCode::UNAUTHORIZED && says_invalid_token(response.headers()) {
                source.invalidate(&token);
            }
            Ok(response)
        })
    }
}
