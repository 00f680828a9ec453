//! `token_exchange`: RFC 8693 at an authorization server. For each call the gateway presents
//! the caller's validated access token and receives a token for the upstream:
//!
//! ```text
//! POST <token_endpoint>
//! grant_type=urn:ietf:params:oauth:grant-type:token-exchange
//! &subject_token=<the caller's token>&subject_token_type=urn:ietf:params:oauth:token-type:access_token
//! &requested_token_type=<configured, default ...:access_token>
//! &resource=<the upstream URL>[&audience=<configured>][&scope=<derived from the call>]
//! + client authentication: client_secret_basic | client_secret_post | private_key_jwt (RFC 7523)
//!   | workload_assertion (the platform's workload JWT as the RFC 7523 client assertion)
//! ```
//!
//! - The subject token is the one the authentication layer validated: it is read from the
//!   request's `Authorization` header (`Bearer` or `DPoP` scheme) and used only when its SHA-256
//!   fingerprint equals the [`Principal`]'s `token_fingerprint` — a token no layer vouched for is
//!   never sent anywhere.
//! - Issued tokens are cached per (SHA-256 of the subject token, scopes) — the audience is fixed
//!   per upstream — until `refresh_before` (at most half the token's life) before `expires_in`
//!   runs out; a response without `expires_in` is not cached. The cache is bounded (expired
//!   entries are dropped first; when it is still full the new token is simply not cached).
//! - Single flight: concurrent calls needing the same token wait for one exchange.
//! - Failures never fall back to sending the call without a credential: the authorization server
//!   unreachable, timing out or answering 5xx → `503`; it refuses for the caller's sake
//!   (`invalid_grant`, `invalid_scope`, `invalid_target`, `access_denied`) → `403`; it refuses the
//!   gateway itself (`invalid_client`, `unauthorized_client`, `unsupported_grant_type`,
//!   `invalid_request`) or answers something unusable → `502`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::header;
use mcp_enterprise_config::{ClientAuthMethod, ClientCredentialsConfig, ScopeMappingConfig, TokenExchangeConfig};
use mcp_enterprise_core::clock::{Clock, SystemClock};
use mcp_enterprise_core::glob::Glob;
use mcp_enterprise_core::jwks::{FetchError, HttpClient, form_encode, form_request};
use mcp_enterprise_core::outbound::{Egress, TlsSettings};
use mcp_enterprise_core::{McpRequest, Principal};
use mcp_enterprise_workload_identity::AssertionFile;
use serde_json::{Value, json};

use super::PropagationError;

/// The token-exchange grant type.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The subject token type the gateway sends.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How the gateway authenticates at the token endpoint (no `Debug`: it holds the secret or key).
enum ClientAuth {
    SecretBasic(String),
    SecretPost(String),
    PrivateKeyJwt(EcdsaKeyPair),
    /// The platform's workload JWT (SEP-1933), read from its file for every request.
    WorkloadAssertion(AssertionFile),
}

/// How to reach and authenticate at a token endpoint: what both configuration sections share.
pub(crate) struct ClientSettings<'a> {
    endpoint: &'a str,
    client_id: &'a str,
    method: ClientAuthMethod,
    secret: Option<&'a str>,
    key_file: Option<&'a str>,
    assertion_file: Option<&'a str>,
    timeout: Duration,
    /// The egress proxy and the trusted roots the endpoint is reached with (default: the
    /// environment's proxy, the system's roots).
    outbound: Option<(&'a Egress, &'a TlsSettings)>,
}

impl<'a> ClientSettings<'a> {
    /// These settings, reaching the endpoint through `egress` and trusting `tls`.
    pub(crate) fn via(mut self, outbound: Option<(&'a Egress, &'a TlsSettings)>) -> Self {
        self.outbound = outbound;
        self
    }
}

/// Both configuration sections name their token endpoint client with the same fields.
macro_rules! client_settings_from {
    ($($config:ty),+) => {$(
        impl<'a> From<&'a $config> for ClientSettings<'a> {
            fn from(c: &'a $config) -> Self {
                Self {
                    endpoint: &c.token_endpoint,
                    client_id: &c.client_id,
                    method: c.client_auth,
                    secret: c.client_secret.as_deref(),
                    key_file: c.private_key_file.as_deref(),
                    assertion_file: c.assertion_file.as_deref(),
                    timeout: Duration::from_secs(c.timeout_secs),
                    outbound: None,
                }
            }
        }
    )+};
}

client_settings_from!(TokenExchangeConfig, ClientCredentialsConfig);

/// A cached exchanged token.
#[derive(Clone)]
struct Issued {
    token: Arc<str>,
    use_until: Duration,
}

type Key = ([u8; 32], String);

/// Exchanges callers' tokens for one upstream. Cheap to clone.
#[derive(Clone)]
pub struct TokenExchange {
    inner: Arc<Inner>,
}

struct Inner {
    client: TokenClient,
    resource: String,
    audience: Option<String>,
    requested_token_type: String,
    scopes: Vec<ScopeMappingConfig>,
    default_scopes: Vec<String>,
    capacity: usize,
    refresh_before: Duration,
    clock: Arc<dyn Clock>,
    cache: Mutex<HashMap<Key, Issued>>,
    flights: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
}

/// A client of one OAuth token endpoint: its authentication, a bounded HTTP client, the mapping
/// of answers to [`PropagationError`]s. Shared by `token_exchange` and `static`'s
/// client-credentials grant.
pub(crate) struct TokenClient {
    endpoint: String,
    client_id: String,
    auth: ClientAuth,
    http: HttpClient,
    clock: Arc<dyn Clock>,
    rng: SystemRandom,
}

impl TokenClient {
    /// A client of `settings.endpoint` (https, or http on loopback) authenticating as
    /// `settings.client_id`.
    pub(crate) fn new(settings: ClientSettings<'_>, clock: Arc<dyn Clock>) -> Result<Self, PropagationError> {
        let ClientSettings { endpoint, client_id, method, secret, key_file, assertion_file, timeout, outbound } =
            settings;
        let uri: http::Uri = endpoint.parse().map_err(|_| config_error("token_endpoint is not a URL"))?;
        let loopback = matches!(uri.host(), Some("127.0.0.1" | "localhost" | "[::1]" | "::1"));
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") if loopback => {}
            _ => return Err(config_error("token_endpoint must be https (http only on a loopback host)")),
        }
        let secret =
            || secret.map(str::to_owned).ok_or_else(|| config_error("client_secret is required for this client_auth"));
        let auth = match method {
            ClientAuthMethod::ClientSecretPost => ClientAuth::SecretPost(secret()?),
            ClientAuthMethod::PrivateKeyJwt => {
                let path = key_file.ok_or_else(|| config_error("private_key_file is required for private_key_jwt"))?;
                let der = super::signed_assertion::read_pkcs8(std::path::Path::new(path))?;
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                    .map_err(|_| config_error(format!("{path}: not a PKCS#8 P-256 private key")))?;
                ClientAuth::PrivateKeyJwt(pair)
            }
            ClientAuthMethod::WorkloadAssertion => {
                let path =
                    assertion_file.ok_or_else(|| config_error("assertion_file is required for workload_assertion"))?;
                let file = AssertionFile::new(path);
                // the platform writes it before the workload starts: a missing file is a mistake
                file.read_blocking().map_err(|e| config_error(e.to_string()))?;
                ClientAuth::WorkloadAssertion(file)
            }
            _ => ClientAuth::SecretBasic(secret()?),
        };
        let timeout = timeout.max(Duration::from_secs(1));
        let http = match outbound {
            Some((egress, tls)) => HttpClient::with_outbound(timeout, egress, tls),
            None => HttpClient::new(timeout),
        }
        .map_err(|e| config_error(e.to_string()))?;
        Ok(Self {
            endpoint: endpoint.to_owned(),
            client_id: client_id.to_owned(),
            auth,
            http,
            clock,
            rng: SystemRandom::new(),
        })
    }

    /// The endpoint.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The client id.
    pub(crate) fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Posts `form` with the client's authentication; the issued bearer token and its lifetime.
    /// A refusal is [`PropagationError::ExchangeRefused`] only for codes about the subject
    /// (`caller_errors`), else [`PropagationError::ExchangeFailed`].
    pub(crate) async fn request(
        &self,
        mut form: Vec<(&str, String)>,
        caller_errors: bool,
    ) -> Result<(Arc<str>, Option<Duration>), PropagationError> {
        match &self.auth {
            ClientAuth::SecretPost(secret) => {
                form.push(("client_id", self.client_id.clone()));
                form.push(("client_secret", secret.clone()));
            }
            ClientAuth::PrivateKeyJwt(pair) => {
                form.push(("client_id", self.client_id.clone()));
                form.push(("client_assertion_type", CLIENT_ASSERTION_TYPE.to_owned()));
                form.push(("client_assertion", self.client_assertion(pair)?));
            }
            ClientAuth::WorkloadAssertion(file) => {
                form.push(("client_id", self.client_id.clone()));
                form.push(("client_assertion_type", CLIENT_ASSERTION_TYPE.to_owned()));
                form.push(("client_assertion", self.workload_assertion(file).await?));
            }
            ClientAuth::SecretBasic(_) => {}
        }
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut req = form_request(&self.endpoint, &pairs).map_err(|_| config_error("token_endpoint is not a URL"))?;
        if let ClientAuth::SecretBasic(secret) = &self.auth {
            let credentials = format!("{}:{}", form_encode(&self.client_id), form_encode(secret));
            let mut value = http::HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(credentials)))
                .map_err(|_| config_error("client credentials are not header-safe"))?;
            value.set_sensitive(true);
            req.headers_mut().insert(header::AUTHORIZATION, value);
        }
        let response = self.http.request(req).await.map_err(|e| match e {
            FetchError::TooLarge => PropagationError::ExchangeFailed("the token response is too large".into()),
            other => PropagationError::ExchangeUnavailable(other.to_string()),
        })?;
        let status = response.status();
        let body: Value = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
        if status.is_server_error() {
            return Err(PropagationError::ExchangeUnavailable(format!("the token endpoint answered {status}")));
        }
        if !status.is_success() {
            let code = body.get("error").and_then(Value::as_str).unwrap_or("").chars().take(64).collect::<String>();
            return Err(match code.as_str() {
                "invalid_grant" | "invalid_scope" | "invalid_target" | "access_denied" if caller_errors => {
                    PropagationError::ExchangeRefused(code)
                }
                "temporarily_unavailable" => PropagationError::ExchangeUnavailable(code),
                _ => PropagationError::ExchangeFailed(format!("the token endpoint answered {status} {code}")),
            });
        }
        let token = body.get("access_token").and_then(Value::as_str).filter(|t| !t.is_empty());
        let token_type = body.get("token_type").and_then(Value::as_str).unwrap_or("");
        let Some(token) = token.filter(|t| mcp_enterprise_core::headers::is_b64token(t)) else {
            return Err(PropagationError::ExchangeFailed("the token response has no usable access_token".into()));
        };
        // a DPoP-bound token needs a proof the gateway cannot make; N_A: not an access token
        if !(token_type.eq_ignore_ascii_case("bearer") || token_type.eq_ignore_ascii_case("n_a")) {
            return Err(PropagationError::ExchangeFailed(format!(
                "the issued token_type {:?} is not usable as a bearer token",
                token_type.chars().take(16).collect::<String>()
            )));
        }
        let lifetime = body.get("expires_in").and_then(Value::as_u64).map(Duration::from_secs);
        Ok((Arc::from(token), lifetime))
    }

    /// The platform's current workload JWT. Unreadable, or expired (the platform stopped
    /// rotating it) → unavailable (503): the gateway cannot authenticate until the platform acts,
    /// and the token endpoint is not asked in vain.
    async fn workload_assertion(&self, file: &AssertionFile) -> Result<String, PropagationError> {
        let assertion = file.read().await.map_err(|e| {
            tracing::error!(error = %e, "token endpoint client: the workload assertion is unusable");
            PropagationError::ExchangeUnavailable(e.to_string())
        })?;
        if let Some(exp) = unverified_exp(&assertion)
            && exp <= self.clock.now().as_secs()
        {
            tracing::error!(file = %file.path().display(), exp, "token endpoint client: the workload assertion has expired");
            return Err(PropagationError::ExchangeUnavailable(format!(
                "the workload assertion in {} expired at {exp}",
                file.path().display()
            )));
        }
        Ok(assertion)
    }

    /// An RFC 7523 client assertion: `iss` = `sub` = the client id, `aud` = the token endpoint.
    fn client_assertion(&self, pair: &EcdsaKeyPair) -> Result<String, PropagationError> {
        let now = self.clock.now().as_secs();
        let mut jti = [0u8; 16];
        self.rng.fill(&mut jti).map_err(|_| PropagationError::Signing)?;
        let header = json!({"alg": "ES256", "typ": "JWT"});
        let claims = json!({"iss": self.client_id, "sub": self.client_id, "aud": self.endpoint,
            "jti": URL_SAFE_NO_PAD.encode(jti), "iat": now, "exp": now + 60});
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature = pair.sign(&self.rng, input.as_bytes()).map_err(|_| PropagationError::Signing)?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref())))
    }
}

impl std::fmt::Debug for TokenExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenExchange")
            .field("endpoint", &self.inner.client.endpoint())
            .field("client_id", &self.inner.client.client_id())
            .field("resource", &self.inner.resource)
            .finish_non_exhaustive()
    }
}

fn config_error(message: impl Into<String>) -> PropagationError {
    PropagationError::Config(format!("token_exchange: {}", message.into()))
}

impl TokenExchange {
    /// Builds the exchange for the upstream `upstream` (the default `resource`).
    pub fn from_config(config: &TokenExchangeConfig, upstream: &str) -> Result<Self, PropagationError> {
        Self::with_clock(config, upstream, Arc::new(SystemClock))
    }

    /// Like [`from_config`](Self::from_config), reaching the token endpoint through `egress` and
    /// trusting `tls`'s extra roots (the `egress` section).
    pub fn from_config_outbound(
        config: &TokenExchangeConfig,
        upstream: &str,
        egress: &Egress,
        tls: &TlsSettings,
    ) -> Result<Self, PropagationError> {
        Self::build(config, upstream, Arc::new(SystemClock), Some((egress, tls)))
    }

    /// Like [`from_config`](Self::from_config), with a clock (tests).
    pub fn with_clock(
        config: &TokenExchangeConfig,
        upstream: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, PropagationError> {
        Self::build(config, upstream, clock, None)
    }

    fn build(
        config: &TokenExchangeConfig,
        upstream: &str,
        clock: Arc<dyn Clock>,
        outbound: Option<(&Egress, &TlsSettings)>,
    ) -> Result<Self, PropagationError> {
        let client = TokenClient::new(ClientSettings::from(config).via(outbound), clock.clone())?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                resource: config.resource.clone().unwrap_or_else(|| upstream.to_owned()),
                audience: config.audience.clone(),
                requested_token_type: config.requested_token_type.clone(),
                scopes: config.scopes.clone(),
                default_scopes: config.default_scopes.clone(),
                capacity: config.cache_capacity.max(1),
                refresh_before: Duration::from_secs(config.refresh_before_secs),
                clock,
                cache: Mutex::new(HashMap::new()),
                flights: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The scopes requested for this call (space-separated; empty: none).
    pub fn scopes_for(&self, mcp: Option<&McpRequest>) -> String {
        let method = mcp.and_then(McpRequest::method);
        let name = mcp.and_then(McpRequest::target);
        let rule = self.inner.scopes.iter().find(|rule| {
            (rule.method == "*" || method.is_some_and(|m| Glob::new(rule.method.as_str()).matches(m)))
                && rule.name.as_deref().is_none_or(|pattern| name.is_some_and(|n| Glob::new(pattern).matches(n)))
        });
        rule.map_or(&self.inner.default_scopes, |r| &r.scopes).join(" ")
    }

    /// How many exchanged tokens are cached now.
    pub fn cached(&self) -> usize {
        self.inner.cache.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// The token for the upstream: cached, or exchanged now (once for concurrent callers).
    pub async fn token(
        &self,
        principal: Option<&Principal>,
        mcp: Option<&McpRequest>,
        headers: &http::HeaderMap,
    ) -> Result<Arc<str>, PropagationError> {
        let principal = principal.ok_or(PropagationError::NoCaller)?;
        let subject = validated_token(principal, headers)?;
        let key: Key = (sha256(subject.as_bytes()), self.scopes_for(mcp));
        if let Some(hit) = self.lookup(&key) {
            return Ok(hit);
        }
        let flight = {
            let mut flights = self.inner.flights.lock().unwrap_or_else(PoisonError::into_inner);
            flights.entry(key.clone()).or_default().clone()
        };
        let result = {
            let _turn = flight.lock().await;
            match self.lookup(&key) {
                Some(hit) => Ok(hit),
                None => self.exchange(&subject, &key).await,
            }
        };
        {
            let mut flights = self.inner.flights.lock().unwrap_or_else(PoisonError::into_inner);
            if flights.get(&key).is_some_and(|f| Arc::ptr_eq(f, &flight) && Arc::strong_count(f) <= 2) {
                flights.remove(&key);
            }
        }
        result
    }

    fn lookup(&self, key: &Key) -> Option<Arc<str>> {
        let now = self.inner.clock.now();
        let cache = self.inner.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.get(key).filter(|issued| issued.use_until > now).map(|issued| issued.token.clone())
    }

    fn remember(&self, key: Key, issued: Issued) {
        let now = self.inner.clock.now();
        let mut cache = self.inner.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= self.inner.capacity && !cache.contains_key(&key) {
            cache.retain(|_, i| i.use_until > now);
            if cache.len() >= self.inner.capacity {
                return;
            }
        }
        cache.insert(key, issued);
    }

    async fn exchange(&self, subject: &str, key: &Key) -> Result<Arc<str>, PropagationError> {
        let inner = &self.inner;
        let mut form: Vec<(&str, String)> = vec![
            ("grant_type", GRANT_TYPE.to_owned()),
            ("subject_token", subject.to_owned()),
            ("subject_token_type", ACCESS_TOKEN_TYPE.to_owned()),
            ("requested_token_type", inner.requested_token_type.clone()),
            ("resource", inner.resource.clone()),
        ];
        if let Some(audience) = &inner.audience {
            form.push(("audience", audience.clone()));
        }
        if !key.1.is_empty() {
            form.push(("scope", key.1.clone()));
        }
        let (token, lifetime) = inner.client.request(form, true).await?;
        if let Some(lifetime) = lifetime {
            let margin = inner.refresh_before.min(lifetime / 2);
            let use_until = inner.clock.now() + lifetime - margin;
            self.remember(key.clone(), Issued { token: token.clone(), use_until });
        }
        Ok(token)
    }
}

/// The `exp` of a compact JWT's claims, read without verifying (the token endpoint verifies).
fn unverified_exp(jwt: &str) -> Option<u64> {
    let claims = URL_SAFE_NO_PAD.decode(jwt.split('.').nth(1)?).ok()?;
    serde_json::from_slice::<Value>(&claims).ok()?.get("exp")?.as_u64()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The caller's access token from `Authorization` (`Bearer` or `DPoP`), only when it is the one
/// the authentication layer validated (same fingerprint as the principal's).
fn validated_token(principal: &Principal, headers: &http::HeaderMap) -> Result<String, PropagationError> {
    let expected = principal.token_fingerprint().ok_or(PropagationError::NoSubjectToken)?;
    let Ok(Some((scheme, Some(token)))) = mcp_enterprise_core::headers::authorization(headers) else {
        return Err(PropagationError::NoSubjectToken);
    };
    if !(scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("dpop")) {
        return Err(PropagationError::NoSubjectToken);
    }
    let fingerprint = mcp_enterprise_core::TokenFingerprint::from_sha256(&sha256(token.as_bytes()));
    // fingerprints are digests of the token: comparing them leaks nothing about it
    if fingerprint != expected {
        return Err(PropagationError::NoSubjectToken);
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use mcp_enterprise_core::{AuthMethod, PrincipalKind, TokenFingerprint};

    use super::*;

    fn principal_for(token: &str) -> Principal {
        Principal::builder("https://idp", "alice", PrincipalKind::User, AuthMethod::Bearer)
            .token_fingerprint(TokenFingerprint::from_sha256(&sha256(token.as_bytes())))
            .build()
    }

    fn headers(value: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().expect("hv"));
        h
    }

    #[test]
    fn only_the_validated_token_is_used() {
        let p = principal_for("tok-1");
        assert_eq!(validated_token(&p, &headers("Bearer tok-1")).expect("same"), "tok-1");
        assert_eq!(validated_token(&p, &headers("DPoP tok-1")).expect("dpop scheme"), "tok-1");
        assert!(validated_token(&p, &headers("Bearer tok-2")).is_err(), "another token");
        assert!(validated_token(&p, &headers("Basic tok-1")).is_err());
        assert!(validated_token(&p, &http::HeaderMap::new()).is_err());
        let without = Principal::builder("i", "s", PrincipalKind::User, AuthMethod::Bearer).build();
        assert!(validated_token(&without, &headers("Bearer tok-1")).is_err(), "no fingerprint");
    }

    #[test]
    fn scope_mapping_first_match_wins() {
        let mut config = TokenExchangeConfig::new("https://as.example/token", "gw");
        config.client_secret = Some("s".into());
        config.scopes = vec![
            ScopeMappingConfig::new("tools/call", Some("delete_*"), &["crm:admin"]),
            ScopeMappingConfig::new("tools/call", None, &["crm:write", "crm:read"]),
            ScopeMappingConfig::new("*", Some("demo://*"), &["docs"]),
        ];
        config.default_scopes = vec!["crm:read".into()];
        let te = TokenExchange::from_config(&config, "http://up/mcp").expect("config");
        let call = |body: Value| {
            McpRequest::parse(&http::HeaderMap::new(), &serde_json::to_vec(&body).expect("json"), |_| None)
                .expect("parsed")
        };
        let tool =
            |name: &str| call(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name}}));
        assert_eq!(te.scopes_for(Some(&tool("delete_customer"))), "crm:admin");
        assert_eq!(te.scopes_for(Some(&tool("echo"))), "crm:write crm:read");
        let read =
            call(json!({"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": "demo://readme"}}));
        assert_eq!(te.scopes_for(Some(&read)), "docs");
        let list = call(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}));
        assert_eq!(te.scopes_for(Some(&list)), "crm:read");
        assert_eq!(te.scopes_for(None), "crm:read");
    }

    #[test]
    fn settings_are_checked() {
        let mut config = TokenExchangeConfig::new("http://as.example/token", "gw");
        config.client_secret = Some("s".into());
        assert!(TokenExchange::from_config(&config, "u").is_err(), "plain http off loopback");
        config.token_endpoint = "http://127.0.0.1:9/token".into();
        assert!(TokenExchange::from_config(&config, "u").is_ok());
        config.client_secret = None;
        assert!(TokenExchange::from_config(&config, "u").is_err(), "no secret");
        config.client_auth = ClientAuthMethod::PrivateKeyJwt;
        assert!(TokenExchange::from_config(&config, "u").is_err(), "no key");
        config.private_key_file = Some("/nonexistent/key.pem".into());
        assert!(TokenExchange::from_config(&config, "u").is_err(), "unreadable key");
        let mut secret = TokenExchangeConfig::new("https://a/t", "gw");
        secret.client_secret = Some("top-secret".into());
        let te = TokenExchange::from_config(&secret, "u").expect("ok");
        assert!(!format!("{te:?}").contains("top-secret"));
    }
}
