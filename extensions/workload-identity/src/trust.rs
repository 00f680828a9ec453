//! The trust policy shared by every role of this crate: which issuers (OIDC issuers such as a
//! Kubernetes cluster's service-account issuer, or SPIFFE trust domains) are trusted, where their
//! keys come from, and which of their workloads are accepted.
//!
//! - OIDC issuers: keys by OpenID Connect Discovery (`{iss}/.well-known/openid-configuration`,
//!   the document's `issuer` compared exactly, its `jwks_uri` https only), or a configured JWKS URL,
//!   or a static JWKS.
//! - SPIFFE trust domains: a trust bundle (static, or fetched from an https bundle endpoint); only
//!   its `jwt-svid` keys verify. A JWT-SVID names its trust domain in `sub` (and in `iss` when it
//!   has one): a `spiffe://` issuer cannot be discovered, so without a bundle it is refused.
//! - Every URL is https; plain http is allowed only for `127.0.0.1` and only with
//!   [`TrustedIssuer::insecure_http_loopback`] (tests with a loopback issuer).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use mcp_enterprise_core::clock::{Clock, SystemClock};
use mcp_enterprise_core::jwks::{
    DiscoveryOrder, HttpClient, JwksCache, JwksFormat, JwksSettings, JwtError, KeySource, UriRule, parse_jwks_as,
};
use mcp_enterprise_core::outbound::{Egress, TlsSettings};
use serde_json::{Map, Value};

use crate::error::{WorkloadConfigError, WorkloadError};
use crate::rules::{WorkloadRule, first_match};

/// Algorithms accepted by default: the asymmetric ones Kubernetes, SPIRE and cloud workload
/// identity providers sign with. `none` and HMAC never are.
pub const DEFAULT_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Where an issuer's (or trust domain's) keys come from.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum IssuerKeys {
    /// OpenID Connect Discovery of an https issuer (its `jwks_uri` must be https too).
    Discover,
    /// This key set URL: a JWKS for an issuer, a SPIFFE bundle endpoint for a trust domain.
    Url(String),
    /// This key set document: a JWKS for an issuer, a SPIFFE trust bundle for a trust domain.
    Static(Value),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Name {
    Url(String),
    TrustDomain(String),
}

/// One trusted issuer or SPIFFE trust domain, its keys, algorithms and workload rules.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct TrustedIssuer {
    name: Name,
    keys: IssuerKeys,
    algorithms: Vec<Algorithm>,
    rules: Vec<WorkloadRule>,
    forward_claims: Vec<String>,
    insecure_http_loopback: bool,
}

impl TrustedIssuer {
    /// Trusts the https issuer `issuer` (its exact `iss`), keys by OpenID Connect Discovery.
    pub fn oidc(issuer: impl Into<String>) -> Self {
        Self::new(issuer, IssuerKeys::Discover)
    }

    /// Trusts the issuer `issuer` with keys from `keys`.
    pub fn new(issuer: impl Into<String>, keys: IssuerKeys) -> Self {
        Self {
            name: Name::Url(issuer.into()),
            keys,
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            rules: Vec::new(),
            forward_claims: Vec::new(),
            insecure_http_loopback: false,
        }
    }

    /// Trusts the SPIFFE trust domain `trust_domain` (e.g. `prod.example.org`) with its trust
    /// bundle: [`IssuerKeys::Static`] (the bundle document) or [`IssuerKeys::Url`] (an https
    /// bundle endpoint). Discovery is refused when building: `spiffe://` cannot be resolved.
    pub fn spiffe(trust_domain: impl Into<String>, bundle: IssuerKeys) -> Self {
        Self { name: Name::TrustDomain(trust_domain.into()), ..Self::new(String::new(), bundle) }
    }

    /// Adds a workload rule (the first matching rule wins). An issuer without rules accepts no
    /// workload.
    pub fn rule(mut self, rule: WorkloadRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Replaces the allowed algorithms (asymmetric only).
    pub fn algorithms(mut self, algorithms: &[Algorithm]) -> Result<Self, WorkloadConfigError> {
        if algorithms.is_empty() {
            return Err(self.error("at least one algorithm is required"));
        }
        if algorithms.iter().any(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)) {
            return Err(self.error("HMAC algorithms are not allowed for workload tokens"));
        }
        self.algorithms = algorithms.to_vec();
        Ok(self)
    }

    /// Copies this top-level claim (e.g. `kubernetes.io`) into the principal's claims.
    pub fn forward_claim(mut self, name: impl Into<String>) -> Self {
        self.forward_claims.push(name.into());
        self
    }

    /// **Insecure**: allows plain-http URLs on `127.0.0.1` (issuer, discovery, keys) — for tests
    /// with a loopback issuer. Any other http URL is refused regardless.
    pub fn insecure_http_loopback(mut self) -> Self {
        self.insecure_http_loopback = true;
        self
    }

    /// The issuer (or `spiffe://<trust domain>`).
    pub fn id(&self) -> String {
        match &self.name {
            Name::Url(u) => u.clone(),
            Name::TrustDomain(td) => format!("spiffe://{td}"),
        }
    }

    fn error(&self, reason: &str) -> WorkloadConfigError {
        WorkloadConfigError::Issuer { issuer: self.id(), reason: reason.to_owned() }
    }

    fn check(&self) -> Result<(), WorkloadConfigError> {
        match &self.name {
            Name::Url(url) => {
                if url.starts_with("spiffe://") {
                    return Err(self.error(
                        "a spiffe:// issuer cannot be discovered or fetched: trust it as a SPIFFE trust domain \
                         with its bundle",
                    ));
                }
                check_url(url, self.insecure_http_loopback).map_err(|r| WorkloadConfigError::Url {
                    what: "issuer",
                    value: url.clone(),
                    reason: r,
                })?;
            }
            Name::TrustDomain(td) => {
                if !is_trust_domain(td) {
                    return Err(self.error("not a SPIFFE trust domain name (lowercase letters, digits, '.', '-', '_')"));
                }
                if self.keys == IssuerKeys::Discover {
                    return Err(self.error("a SPIFFE trust domain needs a trust bundle (static or a bundle endpoint)"));
                }
            }
        }
        if let IssuerKeys::Url(url) = &self.keys {
            check_url(url, self.insecure_http_loopback).map_err(|r| WorkloadConfigError::Url {
                what: "key set URL",
                value: url.clone(),
                reason: r,
            })?;
        }
        let mut names: Vec<&str> = Vec::new();
        for rule in &self.rules {
            if names.contains(&rule.name()) {
                return Err(self.error(&format!("rule name {:?} is used twice", rule.name())));
            }
            names.push(rule.name());
        }
        Ok(())
    }
}

/// An issuer or identity-provider URL must be https, or http on `127.0.0.1` with the insecure
/// switch; no query, fragment or credentials.
pub(crate) fn check_url(url: &str, insecure_http_loopback: bool) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|_| "not a valid URL".to_owned())?;
    let host = uri.host().ok_or("no host")?;
    if url.contains('#') || uri.query().is_some() {
        return Err("must not have a query or fragment".into());
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err("must not carry credentials".into());
    }
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if insecure_http_loopback && host == "127.0.0.1" => Ok(()),
        Some("http") => Err("must be https (plain http only for 127.0.0.1 with insecure_http_loopback)".into()),
        _ => Err("must be an https URL".into()),
    }
}

/// SPIFFE trust domain name: lowercase letters, digits, dots, dashes and underscores.
pub(crate) fn is_trust_domain(td: &str) -> bool {
    !td.is_empty()
        && td.len() <= 255
        && td.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'))
}

/// The trust domain of a SPIFFE ID `spiffe://<td>[/<path>]`, and whether it has a path.
pub(crate) fn spiffe_trust_domain(id: &str) -> Option<(&str, &str)> {
    let rest = id.strip_prefix("spiffe://")?;
    let (td, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    is_trust_domain(td).then_some((td, path))
}

/// Whether `id` is a workload SPIFFE ID of `trust_domain` (SPIFFE ID §2: a non-empty path of
/// non-empty segments of letters, digits, `.`, `-`, `_`, never `.` or `..`).
pub(crate) fn is_workload_spiffe_id(id: &str, trust_domain: &str) -> bool {
    let Some((td, path)) = spiffe_trust_domain(id) else { return false };
    td == trust_domain
        && path.len() > 1
        && path[1..].split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        })
}

/// A trusted issuer with its live key cache.
#[derive(Debug)]
pub(crate) struct LiveIssuer {
    pub(crate) id: String,
    trust_domain: Option<String>,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) rules: Vec<WorkloadRule>,
    pub(crate) forward_claims: Vec<String>,
    pub(crate) keys: Arc<JwksCache>,
}

impl LiveIssuer {
    pub(crate) fn trust_domain(&self) -> Option<&str> {
        self.trust_domain.as_deref()
    }

    pub(crate) fn first_rule(&self, subject: &str, claims: &Map<String, Value>) -> Option<&WorkloadRule> {
        first_match(&self.rules, subject, claims)
    }
}

pub(crate) struct PolicyInner {
    pub(crate) issuers: Vec<LiveIssuer>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) max_token_bytes: usize,
}

/// The built trust policy: trusted issuers and trust domains with their live key caches. Cheap
/// to clone; the server layer and the grant validator can share one (and its caches).
#[derive(Clone)]
pub struct TrustPolicy {
    pub(crate) inner: Arc<PolicyInner>,
}

impl fmt::Debug for TrustPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustPolicy")
            .field("issuers", &self.inner.issuers.iter().map(|i| i.id.as_str()).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl TrustPolicy {
    /// Starts a policy.
    pub fn builder() -> TrustPolicyBuilder {
        TrustPolicyBuilder {
            issuers: Vec::new(),
            clock: Arc::new(SystemClock),
            http_timeout: Duration::from_secs(5),
            jwks: JwksSettings::default(),
            max_token_bytes: 16 * 1024,
            outbound: None,
        }
    }

    /// The trusted issuers (`spiffe://<td>` for trust domains).
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.inner.issuers.iter().map(|i| i.id.as_str())
    }

    /// The clock the policy judges time with.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// The issuer a token's claims claim: an OIDC issuer by exact `iss`; a trust domain by a
    /// `spiffe://` `iss`, or, without `iss`, by a SPIFFE `sub`.
    pub(crate) fn locate(&self, claims: &Map<String, Value>) -> Result<&LiveIssuer, WorkloadError> {
        let by_domain = |td: &str| {
            self.inner.issuers.iter().find(|i| i.trust_domain() == Some(td)).ok_or_else(|| {
                tracing::info!(trust_domain = %td.escape_debug().to_string().chars().take(64).collect::<String>(),
                    "no trust bundle for the token's SPIFFE trust domain");
                WorkloadError::NoTrustBundle
            })
        };
        match claims.get("iss") {
            Some(Value::String(iss)) if iss.starts_with("spiffe://") => {
                let (td, path) = spiffe_trust_domain(iss).ok_or(JwtError::BadClaim("iss"))?;
                if !matches!(path, "" | "/") {
                    return Err(JwtError::BadClaim("iss").into());
                }
                by_domain(td)
            }
            Some(Value::String(iss)) => self
                .inner
                .issuers
                .iter()
                .find(|i| i.trust_domain.is_none() && i.id == *iss)
                .ok_or(WorkloadError::Jwt(JwtError::UntrustedIssuer)),
            Some(_) => Err(WorkloadError::Jwt(JwtError::BadClaim("iss"))),
            None => match claims.get("sub").and_then(Value::as_str).and_then(spiffe_trust_domain) {
                Some((td, _)) => by_domain(td),
                None => Err(WorkloadError::Jwt(JwtError::MissingIssuer)),
            },
        }
    }
}

/// Builds a [`TrustPolicy`].
#[must_use]
pub struct TrustPolicyBuilder {
    issuers: Vec<TrustedIssuer>,
    clock: Arc<dyn Clock>,
    http_timeout: Duration,
    jwks: JwksSettings,
    max_token_bytes: usize,
    outbound: Option<(Egress, TlsSettings)>,
}

impl fmt::Debug for TrustPolicyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustPolicyBuilder").field("issuers", &self.issuers.len()).finish_non_exhaustive()
    }
}

impl TrustPolicyBuilder {
    /// Trusts an issuer or trust domain. Repeatable.
    pub fn issuer(mut self, issuer: TrustedIssuer) -> Self {
        self.issuers.push(issuer);
        self
    }

    /// The clock (tests inject a manual one).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Timeout of each fetch (discovery, keys), default 5 s.
    pub fn http_timeout(mut self, timeout: Duration) -> Self {
        self.http_timeout = timeout;
        self
    }

    /// Reaches issuers (discovery, keys) through `egress`, trusting `tls`'s extra roots (default:
    /// the environment's proxy, the system's roots).
    pub fn outbound(mut self, egress: Egress, tls: TlsSettings) -> Self {
        self.outbound = Some((egress, tls));
        self
    }

    /// Key cache timing (TTL bounds, refetch interval, staleness); format and URL rules are set
    /// per issuer.
    pub fn jwks(mut self, settings: JwksSettings) -> Self {
        self.jwks = settings;
        self
    }

    /// Largest accepted token in bytes (default 16 KiB).
    pub fn max_token_bytes(mut self, bytes: usize) -> Self {
        self.max_token_bytes = bytes;
        self
    }

    /// Checks everything and builds. Nothing is fetched yet: keys are fetched when a token needs them.
    pub fn build(self) -> Result<TrustPolicy, WorkloadConfigError> {
        if self.issuers.is_empty() {
            return Err(WorkloadConfigError::NoIssuers);
        }
        self.build_allow_empty()
    }

    /// [`build`](Self::build) that accepts no issuer at all (a policy trusting nobody: an
    /// authorization server for ID-JAGs only has no workload issuer).
    pub(crate) fn build_allow_empty(self) -> Result<TrustPolicy, WorkloadConfigError> {
        if self.max_token_bytes < 256 {
            return Err(WorkloadConfigError::Limit { what: "max_token_bytes", reason: "must be at least 256" });
        }
        let http = match &self.outbound {
            Some((egress, tls)) => HttpClient::with_outbound(self.http_timeout, egress, tls),
            None => HttpClient::new(self.http_timeout),
        }
        .map_err(|e| WorkloadConfigError::Http(e.to_string()))?;
        let mut live: Vec<LiveIssuer> = Vec::new();
        for issuer in self.issuers {
            issuer.check()?;
            let id = issuer.id();
            if live.iter().any(|l| l.id == id) {
                return Err(WorkloadConfigError::DuplicateIssuer(id));
            }
            let (trust_domain, format) = match &issuer.name {
                Name::Url(_) => (None, JwksFormat::Jwks),
                Name::TrustDomain(td) => (Some(td.clone()), JwksFormat::SpiffeBundle),
            };
            let source = match &issuer.keys {
                IssuerKeys::Discover => KeySource::Discover(DiscoveryOrder::OpenIdConnect),
                IssuerKeys::Url(url) => KeySource::Url(url.clone()),
                IssuerKeys::Static(doc) => {
                    let keys = parse_jwks_as(doc.to_string().as_bytes(), format)
                        .map_err(|reason| WorkloadConfigError::Issuer { issuer: id.clone(), reason })?;
                    if keys.is_empty() {
                        return Err(WorkloadConfigError::Issuer {
                            issuer: id,
                            reason: match format {
                                JwksFormat::SpiffeBundle => "the bundle has no jwt-svid key".into(),
                                _ => "the JWKS has no usable public signature key".into(),
                            },
                        });
                    }
                    KeySource::Static(keys.into_iter().map(Arc::new).collect())
                }
            };
            let rule = if issuer.insecure_http_loopback { UriRule::HttpsOrLoopbackHttp } else { UriRule::HttpsOnly };
            let settings = self.jwks.format(format).discovered_uri(rule);
            let cache = JwksCache::new(id.clone(), source, http.clone(), self.clock.clone(), settings);
            live.push(LiveIssuer {
                id,
                trust_domain,
                algorithms: issuer.algorithms,
                rules: issuer.rules,
                forward_claims: issuer.forward_claims,
                keys: Arc::new(cache),
            });
        }
        Ok(TrustPolicy {
            inner: Arc::new(PolicyInner { issuers: live, clock: self.clock, max_token_bytes: self.max_token_bytes }),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::pattern::Pattern;

    const X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    fn bundle() -> Value {
        json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "b", "x": X, "y": Y, "use": "jwt-svid"}]})
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn urls() {
        assert!(check_url("https://k8s.example.com", false).is_ok());
        assert!(check_url("http://127.0.0.1:8080", true).is_ok());
        assert!(check_url("http://127.0.0.1:8080", false).is_err(), "needs the insecure switch");
        assert!(check_url("http://localhost:8080", true).is_err(), "only 127.0.0.1");
        assert!(check_url("http://10.0.0.1", true).is_err());
        assert!(check_url("https://a@k8s.example.com", false).is_err());
        assert!(check_url("https://k8s.example.com/?x=1", false).is_err());
        assert!(check_url("spiffe://td", false).is_err());
    }

    #[test]
    fn spiffe_ids() {
        assert!(is_workload_spiffe_id("spiffe://prod.example.org/ns/a/sa/b", "prod.example.org"));
        assert!(!is_workload_spiffe_id("spiffe://prod.example.org/ns/a/sa/b", "other.org"));
        assert!(!is_workload_spiffe_id("spiffe://prod.example.org", "prod.example.org"), "no path");
        assert!(!is_workload_spiffe_id("spiffe://prod.example.org/", "prod.example.org"));
        assert!(!is_workload_spiffe_id("spiffe://prod.example.org/a//b", "prod.example.org"));
        assert!(!is_workload_spiffe_id("spiffe://prod.example.org/a/../b", "prod.example.org"));
        assert!(!is_workload_spiffe_id("spiffe://Prod.example.org/a", "Prod.example.org"), "lowercase td");
        assert!(!is_workload_spiffe_id("spiffe://prod.example.org/a?b", "prod.example.org"));
        assert_eq!(spiffe_trust_domain("spiffe://td/x"), Some(("td", "/x")));
        assert_eq!(spiffe_trust_domain("https://td/x"), None);
    }

    #[tokio::test]
    async fn building_refuses_what_cannot_work() {
        let build = |i: TrustedIssuer| TrustPolicy::builder().issuer(i).build();
        let err = build(TrustedIssuer::oidc("spiffe://prod.example.org")).expect_err("spiffe issuer");
        assert!(err.to_string().contains("SPIFFE trust domain"), "{err}");
        assert!(build(TrustedIssuer::spiffe("prod.example.org", IssuerKeys::Discover)).is_err(), "no bundle");
        assert!(build(TrustedIssuer::spiffe("Prod", IssuerKeys::Static(bundle()))).is_err());
        assert!(build(TrustedIssuer::oidc("http://k8s.example.com")).is_err());
        assert!(build(TrustedIssuer::oidc("http://127.0.0.1:9")).is_err());
        assert!(build(TrustedIssuer::oidc("http://127.0.0.1:9").insecure_http_loopback()).is_ok());
        assert!(build(TrustedIssuer::new("https://i", IssuerKeys::Url("http://i/jwks".into()))).is_err());
        let no_jwt_svid = json!({"keys": [{"kty": "EC", "crv": "P-256", "x": X, "y": Y, "use": "x509-svid"}]});
        assert!(build(TrustedIssuer::spiffe("td", IssuerKeys::Static(no_jwt_svid))).is_err());
        assert!(TrustedIssuer::oidc("https://i").algorithms(&[Algorithm::HS256]).is_err());
        let twice = TrustPolicy::builder()
            .issuer(TrustedIssuer::oidc("https://i"))
            .issuer(TrustedIssuer::oidc("https://i"))
            .build();
        assert!(matches!(twice, Err(WorkloadConfigError::DuplicateIssuer(_))));
        let dup_rule = TrustedIssuer::oidc("https://i")
            .rule(WorkloadRule::new("r", Pattern::exact("a")))
            .rule(WorkloadRule::new("r", Pattern::exact("b")));
        assert!(build(dup_rule).is_err());
        assert!(matches!(TrustPolicy::builder().build(), Err(WorkloadConfigError::NoIssuers)));
    }

    #[tokio::test]
    async fn locating_the_issuer() {
        let policy = TrustPolicy::builder()
            .issuer(TrustedIssuer::oidc("https://k8s.example.com"))
            .issuer(TrustedIssuer::spiffe("prod.example.org", IssuerKeys::Static(bundle())))
            .build()
            .expect("policy");
        let id = |c: Value| policy.locate(&claims(c)).map(|i| i.id.clone());
        assert_eq!(id(json!({"iss": "https://k8s.example.com"})), Ok("https://k8s.example.com".into()));
        assert_eq!(
            id(json!({"iss": "https://k8s.example.com/"})),
            Err(WorkloadError::Jwt(JwtError::UntrustedIssuer)),
            "exact"
        );
        assert_eq!(id(json!({"sub": "spiffe://prod.example.org/a"})), Ok("spiffe://prod.example.org".into()));
        assert_eq!(id(json!({"iss": "spiffe://prod.example.org"})), Ok("spiffe://prod.example.org".into()));
        assert_eq!(
            id(json!({"iss": "spiffe://other.org", "sub": "spiffe://other.org/a"})),
            Err(WorkloadError::NoTrustBundle)
        );
        assert_eq!(id(json!({"sub": "spiffe://other.org/a"})), Err(WorkloadError::NoTrustBundle));
        assert_eq!(
            id(json!({"iss": "spiffe://prod.example.org/x"})),
            Err(WorkloadError::Jwt(JwtError::BadClaim("iss")))
        );
        assert_eq!(id(json!({"sub": "system:serviceaccount:a:b"})), Err(WorkloadError::Jwt(JwtError::MissingIssuer)));
        assert_eq!(id(json!({"iss": 7})), Err(WorkloadError::Jwt(JwtError::BadClaim("iss"))));
        assert_eq!(id(json!({"iss": "https://evil.example.com"})), Err(WorkloadError::Jwt(JwtError::UntrustedIssuer)));
    }
}
