//! Enterprise-Managed Authorization (SEP-990): the authorization-server side of the ID-JAG
//! (Identity Assertion JWT Authorization Grant) profile of the RFC 7523 jwt-bearer grant.
//!
//! The employee signed in at the enterprise IdP; the client exchanged that sign-in (RFC 8693) for
//! an ID-JAG naming this authorization server as audience, and presents it here with
//! `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`, `assertion=<ID-JAG>`, authenticating
//! as a registered client (`client_secret_basic`, `client_secret_post` or `private_key_jwt`). [`IdJagValidator`]
//! makes every check of the extension's authorization-server MUSTs:
//!
//! - `typ` exactly `oauth-id-jag+jwt`; an asymmetric algorithm on the IdP's allow-list (never
//!   `none` or HMAC); the signature under the trusted IdP's key (discovery, JWKS URL or static);
//! - `iss` a trusted IdP; `aud` exactly this authorization server's issuer; `sub`; `iat`/`exp`
//!   inside their window and `exp - iat` at most the configured maximum;
//! - `resource` one of the resources this authorization server serves (and equal to the request's
//!   `resource` when it sends one); `client_id` the authenticated client;
//! - an IdP rule admitting the user (subject and claims such as `/groups`), which caps the
//!   resources and scopes; requested scopes must be in the ID-JAG (issued: the intersection of
//!   the ID-JAG's, the requested and the rule's);
//! - `jti` single use until `exp`, scoped by `iss` and `sub` (memory, or a shared store).
//!
//! Every refusal is `invalid_grant` with a precise `error_description`
//! ([`IdJagError`](crate::IdJagError)); client authentication failures are `invalid_client`.
//! Decisions are logged with the assertion's fingerprint, never the assertion.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use mcp_enterprise_core::TokenFingerprint;
use mcp_enterprise_core::clock::Clock;
use mcp_enterprise_core::jwks::{self, HttpClient, JwksCache, JwksFormat, JwksSettings, KeySource};
use serde_json::{Map, Value};

use crate::cimd::ClientIdMetadataDocuments;
use crate::client_auth::{AssertionExpect, ClientKeys, JWT_CLIENT_ASSERTION_TYPE, check_client_assertion};
use crate::error::{GrantError, IdJagError, WorkloadConfigError, WorkloadError};
use crate::replay::{MemoryReplayStore, ReplayStore};
use crate::trust::{TrustPolicy, check_url};
use crate::verify::{Expect, check_replay_scoped};

/// The JOSE `typ` of an ID-JAG.
pub const ID_JAG_TYP: &str = "oauth-id-jag+jwt";
/// The authorization grant profile advertised in `authorization_grant_profiles_supported`.
pub const ID_JAG_GRANT_PROFILE: &str = "urn:ietf:params:oauth:grant-profile:id-jag";
/// The RFC 8693 token type of an ID-JAG.
pub const ID_JAG_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id-jag";
/// The SEP-2133 extension id of Enterprise-Managed Authorization.
pub const EMA_EXTENSION_ID: &str = "io.modelcontextprotocol/enterprise-managed-authorization";

/// Claims of minted access tokens a forwarded IdP claim may not overwrite.
pub(crate) const RESERVED_CLAIMS: &[&str] =
    &["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "scope", "client_id", "cnf", "idp", "workload_issuer"];

/// A client registered at this authorization server, authenticating with a secret (only its
/// SHA-256 digest is kept) or with `private_key_jwt` (its public keys).
#[derive(Clone)]
pub struct RegisteredClient {
    id: String,
    secret_digest: Option<[u8; 32]>,
    keys: Option<ClientKeys>,
}

impl fmt::Debug for RegisteredClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisteredClient").field("id", &self.id).finish_non_exhaustive()
    }
}

impl RegisteredClient {
    /// The client `id` with the secret `secret` (`client_secret_basic` or `client_secret_post`).
    pub fn with_secret(id: impl Into<String>, secret: &str) -> Self {
        Self { id: id.into(), secret_digest: Some(jwks::sha256(secret.as_bytes())), keys: None }
    }

    /// The client `id` authenticating with `private_key_jwt` (RFC 7523 §2.2) under a key of
    /// `jwks` (a JWK Set of public keys).
    pub fn with_jwks(id: impl Into<String>, jwks: &Value) -> Result<Self, WorkloadConfigError> {
        let id = id.into();
        let keys = ClientKeys::from_jwks(&id, jwks)?;
        Ok(Self { id, secret_digest: None, keys: Some(keys) })
    }

    /// The client `id` authenticating with `private_key_jwt` under a key of the JWK Set at
    /// `jwks_uri` (https; plain http on loopback only with `insecure_http_loopback`), fetched
    /// with `http` when first needed, cached, refetched (rate-limited) for an unknown `kid`.
    pub fn with_jwks_uri(
        id: impl Into<String>,
        jwks_uri: &str,
        http: HttpClient,
        clock: Arc<dyn Clock>,
        insecure_http_loopback: bool,
    ) -> Result<Self, WorkloadConfigError> {
        let id = id.into();
        check_url(jwks_uri, insecure_http_loopback).map_err(|reason| WorkloadConfigError::Url {
            what: "client jwks_uri",
            value: jwks_uri.to_owned(),
            reason,
        })?;
        let cache = JwksCache::new(
            id.clone(),
            KeySource::Url(jwks_uri.to_owned()),
            http,
            clock,
            JwksSettings::default().format(JwksFormat::Jwks),
        );
        Ok(Self { id, secret_digest: None, keys: Some(ClientKeys::Remote(Arc::new(cache))) })
    }

    /// The client id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// An ID-JAG grant that passed: the employee, the client, and what the access token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdJagDecision {
    /// The enterprise IdP (the ID-JAG's `iss`).
    pub idp: String,
    /// The user at the IdP (`sub`): the subject of the access token.
    pub subject: String,
    /// The authenticated client (equal to the ID-JAG's `client_id`).
    pub client_id: String,
    /// The IdP rule that admitted the user.
    pub rule: String,
    /// The resource the access token is restricted to.
    pub resource: String,
    /// The granted scopes.
    pub scopes: Vec<String>,
    /// User claims carried into the access token and the principal (`email` and the IdP's
    /// forwarded claims such as `groups`).
    pub user_claims: Map<String, Value>,
    /// When the ID-JAG expires (seconds since the epoch).
    pub assertion_expires_at: u64,
    /// The ID-JAG's fingerprint (audit; the assertion itself is never kept).
    pub assertion_fingerprint: TokenFingerprint,
}

pub(crate) struct IdJagInner {
    pub(crate) idps: TrustPolicy,
    issuer: String,
    audiences: Vec<String>,
    pub(crate) resources: Vec<String>,
    clients: Vec<RegisteredClient>,
    cimd: Option<Arc<ClientIdMetadataDocuments>>,
    /// What a client assertion's `aud` may be: the issuer, and the token endpoint when known.
    client_assertion_audiences: Vec<String>,
    max_lifetime: Duration,
    leeway: Duration,
    replay: Arc<dyn ReplayStore>,
}

/// Validates ID-JAG grants (see the module documentation). Cheap to clone.
#[derive(Clone)]
pub struct IdJagValidator {
    pub(crate) inner: Arc<IdJagInner>,
}

impl fmt::Debug for IdJagValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdJagValidator")
            .field("issuer", &self.inner.issuer)
            .field("resources", &self.inner.resources)
            .field("idps", &self.inner.idps)
            .field("clients", &self.inner.clients)
            .finish_non_exhaustive()
    }
}

/// Whether a token request is meant for the ID-JAG profile: the client authenticates (the
/// workload profile has no client authentication), or the assertion says it is an ID-JAG.
pub(crate) fn is_id_jag_request(headers: &HeaderMap, form: &[(String, String)]) -> bool {
    let has = |name: &str| form.iter().any(|(n, _)| n == name);
    if headers.contains_key(http::header::AUTHORIZATION) || has("client_id") || has("client_secret") {
        return true;
    }
    let Some((_, assertion)) = form.iter().find(|(n, _)| n == "assertion") else { return false };
    let Ok(parts) = jwks::split_compact(assertion) else { return false };
    jwks::decode_object(parts.header, "", "")
        .ok()
        .and_then(|h| h.get("typ").and_then(Value::as_str).map(str::to_ascii_lowercase))
        .is_some_and(|t| t.strip_prefix("application/").unwrap_or(&t) == ID_JAG_TYP)
}

/// `%`-decoding of a `client_secret_basic` part (RFC 6749 §2.3.1: form-urlencoded).
fn form_unescape(part: &str) -> Option<String> {
    let pairs = jwks::form_decode(format!("v={part}").as_bytes())?;
    pairs.into_iter().next().map(|(_, v)| v)
}

impl IdJagValidator {
    /// Starts a validator for the authorization server `issuer` (the ID-JAG's required `aud`),
    /// trusting the enterprise IdPs of `idps` (whose rules admit users).
    pub fn builder(idps: TrustPolicy, issuer: &str) -> IdJagValidatorBuilder {
        IdJagValidatorBuilder {
            idps,
            issuer: issuer.to_owned(),
            resources: Vec::new(),
            clients: Vec::new(),
            cimd: None,
            max_lifetime: Duration::from_secs(300),
            leeway: Duration::from_secs(60),
            replay: None,
            token_endpoint: None,
            insecure_http_loopback: false,
        }
    }

    /// The authorization server's issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The resources tokens may be issued for.
    pub fn resources(&self) -> &[String] {
        &self.inner.resources
    }

    /// The scopes the IdP rules can grant (for `scopes_supported`).
    pub fn rule_scopes(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for idp in &self.inner.idps.inner.issuers {
            for rule in &idp.rules {
                for s in rule.granted_scopes() {
                    if !out.contains(s) {
                        out.push(s.clone());
                    }
                }
            }
        }
        out
    }

    /// Authenticates the client of a token request: `client_secret_basic` (the `Authorization`
    /// header) or `client_secret_post` (`client_id` + `client_secret`), exactly one of them.
    /// Returns the client id.
    pub fn authenticate_client(&self, headers: &HeaderMap, form: &[(String, String)]) -> Result<String, GrantError> {
        let get = |name: &str| form.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        let basic = match headers.get(http::header::AUTHORIZATION) {
            None => None,
            Some(value) => {
                let value = value.to_str().map_err(|_| GrantError::InvalidClient("malformed Authorization header"))?;
                let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
                if !scheme.eq_ignore_ascii_case("basic") {
                    return Err(GrantError::InvalidClient("only Basic client authentication is supported"));
                }
                let decoded = STANDARD
                    .decode(rest.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or(GrantError::InvalidClient("malformed Basic credentials"))?;
                let (id, secret) =
                    decoded.split_once(':').ok_or(GrantError::InvalidClient("malformed Basic credentials"))?;
                let id = form_unescape(id).ok_or(GrantError::InvalidClient("malformed Basic credentials"))?;
                let secret = form_unescape(secret).ok_or(GrantError::InvalidClient("malformed Basic credentials"))?;
                Some((id, secret))
            }
        };
        let (id, secret) = match (basic, get("client_secret")) {
            (Some(_), Some(_)) => {
                return Err(GrantError::InvalidRequest("more than one client authentication method"));
            }
            (Some((id, secret)), None) => {
                if get("client_id").is_some_and(|c| c != id) {
                    return Err(GrantError::InvalidRequest("client_id differs from the authenticated client"));
                }
                (id, secret)
            }
            (None, Some(secret)) => {
                let id = get("client_id").ok_or(GrantError::InvalidRequest("client_secret without client_id"))?;
                (id.to_owned(), secret.to_owned())
            }
            (None, None) => return Err(GrantError::InvalidClient("the client must authenticate (client secret)")),
        };
        let digest = jwks::sha256(secret.as_bytes());
        let mut ok = false;
        for client in &self.inner.clients {
            // every registered secret is compared, in constant time
            let Some(registered) = &client.secret_digest else { continue };
            let same_secret = aws_lc_rs::constant_time::verify_slices_are_equal(registered, &digest).is_ok();
            ok |= client.id == id && same_secret;
        }
        if ok { Ok(id) } else { Err(GrantError::InvalidClient("unknown client or wrong secret")) }
    }

    /// Authenticates the client of a token request by `private_key_jwt` (RFC 7523 §2.2):
    /// `client_assertion_type` the JWT type, one `client_assertion` signed by a registered key of
    /// the client its `iss`/`sub` name, `aud` this issuer or token endpoint, a short `exp`, a
    /// `jti` never seen before; no other authentication method beside it. Returns the client id.
    pub async fn authenticate_client_assertion(
        &self,
        headers: &HeaderMap,
        form: &[(String, String)],
    ) -> Result<String, GrantError> {
        let all = |name: &str| form.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
        if headers.contains_key(http::header::AUTHORIZATION) || !all("client_secret").is_empty() {
            return Err(GrantError::InvalidRequest("more than one client authentication method"));
        }
        let (types, assertions) = (all("client_assertion_type"), all("client_assertion"));
        let ([kind], [assertion]) = (types.as_slice(), assertions.as_slice()) else {
            return Err(GrantError::InvalidRequest(
                "exactly one client_assertion_type and client_assertion are required",
            ));
        };
        if *kind != JWT_CLIENT_ASSERTION_TYPE {
            return Err(GrantError::InvalidClient("unsupported client_assertion_type"));
        }
        // the client named by the assertion (verified below), or by client_id
        let claimed = jwks::split_compact(assertion)
            .ok()
            .and_then(|p| jwks::decode_object(p.payload, "", "").ok())
            .and_then(|c| c.get("sub").and_then(Value::as_str).map(str::to_owned))
            .ok_or(GrantError::InvalidClient("the client assertion is not a JWT"))?;
        if let [id] = all("client_id").as_slice()
            && *id != claimed
        {
            return Err(GrantError::InvalidRequest("client_id differs from the authenticated client"));
        }
        let registered = self.inner.clients.iter().find(|c| c.id == claimed);
        let fetched;
        let keys = match (registered, &self.inner.cimd) {
            (Some(c), _) => c.keys.as_ref().ok_or(GrantError::InvalidClient("unknown client or no registered keys"))?,
            (None, Some(cimd)) if claimed.contains("://") => {
                fetched = cimd.keys(&claimed).await?;
                &fetched
            }
            (None, None) if claimed.contains("://") => {
                return Err(GrantError::InvalidClient("URL client ids (client metadata documents) are not enabled"));
            }
            (None, _) => return Err(GrantError::InvalidClient("unknown client or no registered keys")),
        };
        let expect = AssertionExpect {
            audiences: &self.inner.client_assertion_audiences,
            now: self.inner.idps.clock().now(),
            leeway: self.inner.leeway,
        };
        check_client_assertion(assertion, &claimed, keys, expect, self.inner.replay.as_ref()).await?;
        Ok(claimed)
    }

    /// Judges a token request's form (with its headers, for client authentication): one
    /// `grant_type` (jwt-bearer), one `assertion`, the client authenticated, then the ID-JAG.
    pub async fn validate_form(
        &self,
        headers: &HeaderMap,
        form: &[(String, String)],
    ) -> Result<IdJagDecision, GrantError> {
        crate::grant::check_form_shape(form)?;
        let get = |name: &str| form.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        let client_id = if get("client_assertion_type").is_some() || get("client_assertion").is_some() {
            self.authenticate_client_assertion(headers, form).await?
        } else {
            self.authenticate_client(headers, form)?
        };
        let assertion =
            get("assertion").filter(|a| !a.is_empty()).ok_or(GrantError::InvalidRequest("assertion is required"))?;
        self.validate(assertion, &client_id, get("resource"), get("scope")).await
    }

    /// Judges an ID-JAG presented by the authenticated `client_id` (see the module documentation).
    pub async fn validate(
        &self,
        assertion: &str,
        client_id: &str,
        resource: Option<&str>,
        scope: Option<&str>,
    ) -> Result<IdJagDecision, GrantError> {
        let result = self.decide(assertion, client_id, resource, scope).await;
        match &result {
            Ok(d) => tracing::info!(idp = %d.idp, subject = %d.subject, client_id = %d.client_id, rule = %d.rule,
                resource = %d.resource, scopes = %d.scopes.join(" "), assertion = %d.assertion_fingerprint,
                "ID-JAG grant issued"),
            Err(e) => tracing::info!(error = e.error_code(), reason = %e, client_id = %client_id.escape_debug(),
                "ID-JAG grant refused"),
        }
        result
    }

    async fn decide(
        &self,
        assertion: &str,
        client_id: &str,
        requested_resource: Option<&str>,
        scope: Option<&str>,
    ) -> Result<IdJagDecision, GrantError> {
        let inner = &self.inner;
        let refuse = |e: IdJagError| GrantError::InvalidIdJag(e);
        let expect = Expect {
            audiences: &inner.audiences,
            max_lifetime: inner.max_lifetime,
            leeway: inner.leeway,
            require_jti: true,
            typ: Some(ID_JAG_TYP),
        };
        let verified = inner.idps.verify(assertion, expect).await.map_err(|e| match e {
            WorkloadError::Unavailable => GrantError::Unavailable,
            other => refuse(other.into()),
        })?;
        let claims = &verified.claims;
        match claims.get("client_id") {
            None => return Err(refuse(IdJagError::MissingClientId)),
            Some(Value::String(c)) if c == client_id => {}
            Some(_) => return Err(refuse(IdJagError::ClientMismatch)),
        }
        let resource = match claims.get("resource") {
            Some(Value::String(r)) if !r.is_empty() => r.as_str(),
            _ => return Err(refuse(IdJagError::MissingResource)),
        };
        if requested_resource.is_some_and(|r| r != resource) {
            return Err(refuse(IdJagError::ResourceMismatch));
        }
        if !inner.resources.iter().any(|r| r == resource) {
            return Err(refuse(IdJagError::UnknownResource));
        }
        if !verified.rule.allows_resource(resource) {
            return Err(refuse(IdJagError::ResourceNotAllowed));
        }
        let in_jag: Vec<&str> = match claims.get("scope") {
            None => Vec::new(),
            Some(Value::String(s)) => s.split(' ').filter(|s| !s.is_empty()).collect(),
            Some(_) => return Err(refuse(IdJagError::Jwt(jwks::JwtError::BadClaim("scope")))),
        };
        let ceiling = verified.rule.granted_scopes();
        let scopes = match scope.map(str::trim).filter(|s| !s.is_empty()) {
            None => in_jag.iter().filter(|s| ceiling.iter().any(|c| c == *s)).map(|s| (*s).to_owned()).collect(),
            Some(requested) => {
                let mut scopes: Vec<String> = Vec::new();
                for s in requested.split(' ') {
                    if s.is_empty() {
                        return Err(GrantError::InvalidRequest("scope has an empty scope token"));
                    }
                    if !in_jag.contains(&s) {
                        return Err(refuse(IdJagError::ScopeNotInIdJag(s.chars().take(64).collect())));
                    }
                    if !ceiling.iter().any(|c| c == s) {
                        return Err(refuse(IdJagError::ScopeNotAllowed(s.chars().take(64).collect())));
                    }
                    if !scopes.iter().any(|x| x == s) {
                        scopes.push(s.to_owned());
                    }
                }
                scopes
            }
        };
        let mut user_claims = verified.forwarded.clone();
        if let Some(email) = claims.get("email").filter(|v| v.is_string()) {
            user_claims.entry("email").or_insert_with(|| email.clone());
        }
        // consumed only once everything else is acceptable
        let now = inner.idps.clock().now();
        check_replay_scoped(inner.replay.as_ref(), &verified, true, now, inner.leeway).await.map_err(|e| match e {
            WorkloadError::Unavailable => GrantError::Unavailable,
            other => refuse(other.into()),
        })?;
        Ok(IdJagDecision {
            idp: verified.issuer,
            subject: verified.subject,
            client_id: client_id.to_owned(),
            rule: verified.rule.name().to_owned(),
            resource: resource.to_owned(),
            scopes,
            user_claims,
            assertion_expires_at: verified.exp,
            assertion_fingerprint: verified.fingerprint,
        })
    }
}

/// Builds an [`IdJagValidator`].
#[must_use]
pub struct IdJagValidatorBuilder {
    idps: TrustPolicy,
    issuer: String,
    resources: Vec<String>,
    clients: Vec<RegisteredClient>,
    cimd: Option<ClientIdMetadataDocuments>,
    max_lifetime: Duration,
    leeway: Duration,
    replay: Option<Arc<dyn ReplayStore>>,
    insecure_http_loopback: bool,
    token_endpoint: Option<String>,
}

impl fmt::Debug for IdJagValidatorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdJagValidatorBuilder").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

impl IdJagValidatorBuilder {
    /// A resource (an MCP server's canonical URI) tokens may be issued for. Repeatable; at least one.
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resources.push(resource.into());
        self
    }

    /// A registered client. Repeatable; at least one.
    pub fn client(mut self, client: RegisteredClient) -> Self {
        self.clients.push(client);
        self
    }

    /// Accepts URL client ids (`private_key_jwt` only) whose Client ID Metadata Documents
    /// `documents` allows.
    pub fn client_id_metadata_documents(mut self, documents: ClientIdMetadataDocuments) -> Self {
        self.cimd = Some(documents);
        self
    }

    /// Longest accepted ID-JAG lifetime (`exp - iat`), default 5 minutes, at most 1 hour.
    pub fn max_assertion_lifetime(mut self, max: Duration) -> Self {
        self.max_lifetime = max;
        self
    }

    /// Clock skew tolerated, default 60 s, at most 300 s.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The token endpoint URL, also accepted as a client assertion's `aud`.
    pub fn token_endpoint(mut self, url: impl Into<String>) -> Self {
        self.token_endpoint = Some(url.into());
        self
    }

    /// Where ID-JAG `jti`s are remembered (default: in memory, 100 000 entries).
    pub fn replay_store(mut self, store: Arc<dyn ReplayStore>) -> Self {
        self.replay = Some(store);
        self
    }

    /// **Insecure**: allows a plain-http issuer on `127.0.0.1` (tests).
    pub fn insecure_http_loopback(mut self) -> Self {
        self.insecure_http_loopback = true;
        self
    }

    /// Checks and builds.
    pub fn build(self) -> Result<IdJagValidator, WorkloadConfigError> {
        check_url(&self.issuer, self.insecure_http_loopback).map_err(|reason| WorkloadConfigError::Url {
            what: "authorization server issuer",
            value: self.issuer.clone(),
            reason,
        })?;
        if self.resources.is_empty() {
            return Err(WorkloadConfigError::Limit { what: "resources", reason: "at least one resource is required" });
        }
        if self.clients.is_empty() && self.cimd.is_none() {
            return Err(WorkloadConfigError::Limit {
                what: "id_jag.clients",
                reason: "at least one registered client (or client_id_metadata_documents) is required",
            });
        }
        for (i, c) in self.clients.iter().enumerate() {
            if c.id.is_empty() || self.clients[..i].iter().any(|o| o.id == c.id) {
                return Err(WorkloadConfigError::Rule {
                    rule: c.id.clone(),
                    reason: "client ids must be non-empty and unique".into(),
                });
            }
        }
        for idp in &self.idps.inner.issuers {
            if idp.trust_domain().is_some() {
                return Err(WorkloadConfigError::Issuer {
                    issuer: idp.id.clone(),
                    reason: "an enterprise IdP is an https issuer, not a SPIFFE trust domain".into(),
                });
            }
            if let Some(name) = idp.forward_claims.iter().find(|n| RESERVED_CLAIMS.contains(&n.as_str())) {
                return Err(WorkloadConfigError::Issuer {
                    issuer: idp.id.clone(),
                    reason: format!("forward_claims: {name:?} is a claim the access token sets itself"),
                });
            }
        }
        if self.max_lifetime.is_zero() || self.max_lifetime > Duration::from_secs(3600) {
            return Err(WorkloadConfigError::Limit {
                what: "id_jag.max_lifetime",
                reason: "must be between 1 second and 1 hour",
            });
        }
        if self.leeway > Duration::from_secs(300) {
            return Err(WorkloadConfigError::Limit { what: "leeway", reason: "at most 300 seconds" });
        }
        Ok(IdJagValidator {
            inner: Arc::new(IdJagInner {
                idps: self.idps,
                audiences: vec![self.issuer.clone()],
                client_assertion_audiences: std::iter::once(self.issuer.clone()).chain(self.token_endpoint).collect(),
                issuer: self.issuer,
                resources: self.resources,
                clients: self.clients,
                cimd: self.cimd.map(Arc::new),
                max_lifetime: self.max_lifetime,
                leeway: self.leeway,
                replay: self.replay.unwrap_or_else(|| Arc::new(MemoryReplayStore::new(100_000))),
            }),
        })
    }
}
