//! The authorization-server building block of SEP-1933: validating an RFC 7523 §2.1 jwt-bearer
//! **grant** (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`, `assertion=<workload
//! JWT>`, `resource`, optional `scope`; no client authentication).
//!
//! The assertion must pass the trust policy (trusted issuer, signature, `iat`/`exp`, lifetime,
//! `sub`, a matching workload rule), name this authorization server as its only audience (its
//! token endpoint URL or its issuer identifier, nothing else), and carry a `jti` not seen before
//! its expiry. The workload's rule must allow the requested resource and scopes. The decision, or
//! the OAuth error (`invalid_request`, `unsupported_grant_type`, `invalid_grant`,
//! `unauthorized_client`, `invalid_target`, `invalid_scope`), comes back as a value; every
//! decision is logged (never the assertion).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use mcp_enterprise_core::TokenFingerprint;

use crate::error::{GrantError, WorkloadConfigError, WorkloadError};
use crate::replay::{MemoryReplayStore, ReplayStore};
use crate::trust::{TrustPolicy, check_url};
use crate::verify::{Expect, check_replay};

/// Most parameters a token request may carry.
const MAX_FORM_PARAMETERS: usize = 32;

/// The RFC 7523 jwt-bearer grant type.
pub const JWT_BEARER_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// A grant request's parameters.
#[derive(Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct GrantRequest<'a> {
    /// The workload JWT.
    pub assertion: &'a str,
    /// The RFC 8707 resource indicator (the MCP server's canonical URI).
    pub resource: Option<&'a str>,
    /// The requested scopes, space-separated.
    pub scope: Option<&'a str>,
}

impl fmt::Debug for GrantRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantRequest")
            .field("assertion", &"***")
            .field("resource", &self.resource)
            .field("scope", &self.scope)
            .finish()
    }
}

impl<'a> GrantRequest<'a> {
    /// A request for `resource` with `assertion`.
    pub fn new(assertion: &'a str, resource: Option<&'a str>, scope: Option<&'a str>) -> Self {
        Self { assertion, resource, scope }
    }
}

/// A granted request: who the workload is and what it may get.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GrantDecision {
    /// The assertion's issuer (`spiffe://<td>` for a trust domain).
    pub issuer: String,
    /// The workload (`sub`).
    pub subject: String,
    /// The workload rule that matched.
    pub rule: String,
    /// The resource the token is for.
    pub resource: String,
    /// The granted scopes.
    pub scopes: Vec<String>,
    /// When the assertion expires (seconds since the epoch).
    pub assertion_expires_at: u64,
    /// The assertion's fingerprint (for audit; the assertion itself is never kept).
    pub assertion_fingerprint: TokenFingerprint,
}

pub(crate) struct GrantInner {
    pub(crate) trust: TrustPolicy,
    pub(crate) issuer: String,
    pub(crate) token_endpoint: String,
    audiences: Vec<String>,
    pub(crate) resources: Vec<String>,
    max_lifetime: Duration,
    leeway: Duration,
    /// `None`: an assertion may be presented again until it expires.
    replay: Option<Arc<dyn ReplayStore>>,
}

/// Validates jwt-bearer grants (see the module documentation). Cheap to clone.
#[derive(Clone)]
pub struct GrantValidator {
    pub(crate) inner: Arc<GrantInner>,
}

impl fmt::Debug for GrantValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantValidator")
            .field("issuer", &self.inner.issuer)
            .field("token_endpoint", &self.inner.token_endpoint)
            .field("resources", &self.inner.resources)
            .field("trust", &self.inner.trust)
            .finish_non_exhaustive()
    }
}

impl GrantValidator {
    /// Starts a validator for the authorization server `issuer` whose token endpoint is
    /// `token_endpoint` (the two values an assertion's `aud` may name).
    pub fn builder(trust: TrustPolicy, issuer: &str, token_endpoint: &str) -> GrantValidatorBuilder {
        GrantValidatorBuilder {
            trust,
            issuer: issuer.to_owned(),
            token_endpoint: token_endpoint.to_owned(),
            resources: Vec::new(),
            max_lifetime: Duration::from_secs(3600),
            leeway: Duration::from_secs(60),
            replay: None,
            allow_reuse: false,
            insecure_http_loopback: false,
        }
    }

    /// The authorization server's issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The token endpoint URL.
    pub fn token_endpoint(&self) -> &str {
        &self.inner.token_endpoint
    }

    /// The resources tokens may be issued for.
    pub fn resources(&self) -> &[String] {
        &self.inner.resources
    }

    /// Judges a grant from a token request's form parameters (`application/x-www-form-urlencoded`
    /// pairs): every parameter at most once (RFC 6749 §3.2), `grant_type` the jwt-bearer grant,
    /// an `assertion`, then [`validate`](Self::validate).
    pub async fn validate_form(&self, form: &[(String, String)]) -> Result<GrantDecision, GrantError> {
        check_form_shape(form)?;
        let get = |name: &str| form.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        let assertion =
            get("assertion").filter(|a| !a.is_empty()).ok_or(GrantError::InvalidRequest("assertion is required"))?;
        self.validate(GrantRequest::new(assertion, get("resource"), get("scope"))).await
    }

    /// Judges a grant (see the module documentation).
    pub async fn validate(&self, request: GrantRequest<'_>) -> Result<GrantDecision, GrantError> {
        let result = self.decide(request).await;
        match &result {
            Ok(d) => tracing::info!(issuer = %d.issuer, subject = %d.subject, rule = %d.rule, resource = %d.resource,
                scopes = %d.scopes.join(" "), assertion = %d.assertion_fingerprint, "workload grant issued"),
            Err(e) => tracing::info!(error = e.error_code(), reason = %e, "workload grant refused"),
        }
        result
    }

    async fn decide(&self, request: GrantRequest<'_>) -> Result<GrantDecision, GrantError> {
        let inner = &self.inner;
        let resource =
            request.resource.filter(|r| !r.is_empty()).ok_or(GrantError::InvalidRequest("resource is required"))?;
        if !inner.resources.iter().any(|r| r == resource) {
            return Err(GrantError::InvalidTarget);
        }
        let expect = Expect {
            audiences: &inner.audiences,
            max_lifetime: inner.max_lifetime,
            leeway: inner.leeway,
            require_jti: inner.replay.is_some(),
            typ: None,
        };
        let verified = inner.trust.verify(request.assertion, expect).await.map_err(invalid_grant)?;
        if !verified.rule.allows_resource(resource) {
            return Err(GrantError::UnauthorizedClient);
        }
        let granted = verified.rule.granted_scopes();
        let scopes = match request.scope.map(str::trim).filter(|s| !s.is_empty()) {
            None => granted.to_vec(),
            Some(requested) => {
                let mut scopes: Vec<String> = Vec::new();
                for scope in requested.split(' ') {
                    if scope.is_empty() {
                        return Err(GrantError::InvalidRequest("scope has an empty scope token"));
                    }
                    if !granted.iter().any(|g| g == scope) {
                        return Err(GrantError::InvalidScope(scope.chars().take(64).collect()));
                    }
                    if !scopes.iter().any(|s| s == scope) {
                        scopes.push(scope.to_owned());
                    }
                }
                scopes
            }
        };
        // consumed only once everything else is acceptable
        if let Some(store) = &inner.replay {
            let now = inner.trust.clock().now();
            check_replay(store.as_ref(), &verified, now, inner.leeway).await.map_err(invalid_grant)?;
        }
        Ok(GrantDecision {
            issuer: verified.issuer,
            subject: verified.subject,
            rule: verified.rule.name().to_owned(),
            resource: resource.to_owned(),
            scopes,
            assertion_expires_at: verified.exp,
            assertion_fingerprint: verified.fingerprint,
        })
    }
}

/// The shape every token request must have: a handful of parameters, each at most once (RFC
/// 6749 §3.2), and `grant_type` the jwt-bearer grant.
pub(crate) fn check_form_shape(form: &[(String, String)]) -> Result<(), GrantError> {
    // a token request has a handful of parameters; a flood of them is refused before the
    // (quadratic) repetition check
    if form.len() > MAX_FORM_PARAMETERS {
        return Err(GrantError::InvalidRequest("too many parameters"));
    }
    let mut names: Vec<&str> = Vec::with_capacity(form.len());
    for (name, _) in form {
        if names.contains(&name.as_str()) {
            return Err(GrantError::InvalidRequest("a parameter is repeated"));
        }
        names.push(name);
    }
    match form.iter().find(|(n, _)| n == "grant_type").map(|(_, v)| v.as_str()) {
        None | Some("") => Err(GrantError::InvalidRequest("grant_type is required")),
        Some(JWT_BEARER_GRANT_TYPE) => Ok(()),
        Some(_) => Err(GrantError::UnsupportedGrantType),
    }
}

fn invalid_grant(e: WorkloadError) -> GrantError {
    match e {
        WorkloadError::Unavailable => GrantError::Unavailable,
        other => GrantError::InvalidGrant(other),
    }
}

/// Builds a [`GrantValidator`].
#[must_use]
pub struct GrantValidatorBuilder {
    trust: TrustPolicy,
    issuer: String,
    token_endpoint: String,
    resources: Vec<String>,
    max_lifetime: Duration,
    leeway: Duration,
    replay: Option<Arc<dyn ReplayStore>>,
    allow_reuse: bool,
    insecure_http_loopback: bool,
}

impl fmt::Debug for GrantValidatorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantValidatorBuilder").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

impl GrantValidatorBuilder {
    /// A resource (an MCP server's canonical URI) tokens may be issued for. Repeatable; at least one.
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resources.push(resource.into());
        self
    }

    /// Longest accepted assertion lifetime (`exp - iat`), default 1 h, at most 24 h.
    pub fn max_assertion_lifetime(mut self, max: Duration) -> Self {
        self.max_lifetime = max;
        self
    }

    /// Clock skew tolerated, default 60 s, at most 300 s.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Where assertion `jti`s are remembered (default: in memory, 100 000 entries).
    pub fn replay_store(mut self, store: Arc<dyn ReplayStore>) -> Self {
        self.replay = Some(store);
        self
    }

    /// **Insecure**: lets an assertion be presented again until it expires (and accepts
    /// assertions without `jti`), as cloud STS services do. For workloads whose only credential is
    /// a projected token file that rotates more slowly than access tokens expire; a stolen
    /// assertion is then usable until its `exp`.
    pub fn insecure_allow_assertion_reuse(mut self) -> Self {
        self.allow_reuse = true;
        self
    }

    /// **Insecure**: allows a plain-http issuer and token endpoint on `127.0.0.1` (tests).
    pub fn insecure_http_loopback(mut self) -> Self {
        self.insecure_http_loopback = true;
        self
    }

    /// Checks and builds.
    pub fn build(self) -> Result<GrantValidator, WorkloadConfigError> {
        for (what, url) in [("authorization server issuer", &self.issuer), ("token endpoint", &self.token_endpoint)] {
            check_url(url, self.insecure_http_loopback).map_err(|reason| WorkloadConfigError::Url {
                what,
                value: url.clone(),
                reason,
            })?;
        }
        if self.resources.is_empty() {
            return Err(WorkloadConfigError::Limit { what: "resources", reason: "at least one resource is required" });
        }
        for r in &self.resources {
            let ok =
                r.parse::<http::Uri>().is_ok_and(|u| u.scheme().is_some() && u.host().is_some()) && !r.contains('#');
            if !ok {
                return Err(WorkloadConfigError::Url {
                    what: "resource",
                    value: r.clone(),
                    reason: "must be an absolute URI without fragment".into(),
                });
            }
        }
        if self.max_lifetime.is_zero() || self.max_lifetime > Duration::from_secs(24 * 3600) {
            return Err(WorkloadConfigError::Limit {
                what: "max_assertion_lifetime",
                reason: "must be between 1 second and 24 hours",
            });
        }
        if self.leeway > Duration::from_secs(300) {
            return Err(WorkloadConfigError::Limit { what: "leeway", reason: "at most 300 seconds" });
        }
        let audiences = vec![self.token_endpoint.clone(), self.issuer.clone()];
        Ok(GrantValidator {
            inner: Arc::new(GrantInner {
                trust: self.trust,
                issuer: self.issuer,
                token_endpoint: self.token_endpoint,
                audiences,
                resources: self.resources,
                max_lifetime: self.max_lifetime,
                leeway: self.leeway,
                replay: (!self.allow_reuse)
                    .then(|| self.replay.unwrap_or_else(|| Arc::new(MemoryReplayStore::new(100_000)))),
            }),
        })
    }
}
