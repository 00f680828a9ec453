//! A trusted issuer: who it is, which audiences and algorithms it may use, where its keys are,
//! and (optionally) how to introspect its opaque tokens.

use std::fmt;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::Value;

use crate::error::SsoConfigError;

/// Algorithms accepted by default. `none` and HMAC never are, unless an explicit insecure
/// shared-secret mode is configured.
pub const DEFAULT_ALGORITHMS: &[Algorithm] =
    &[Algorithm::RS256, Algorithm::PS256, Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA];

/// How strictly the JWT `typ` header is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TypMode {
    /// Only RFC 9068 access tokens: `at+jwt` (or `application/at+jwt`).
    Strict,
    /// `at+jwt`, `JWT` or no `typ` (many enterprise IdPs issue `JWT`); any other type — an ID
    /// token profile, a DPoP proof, an ID-JAG — is refused so tokens cannot be confused.
    #[default]
    Lenient,
}

impl TypMode {
    pub(crate) fn accepts(self, typ: Option<&str>) -> bool {
        let typ = typ.map(str::to_ascii_lowercase);
        matches!(
            (self, typ.as_deref()),
            (_, Some("at+jwt" | "application/at+jwt")) | (Self::Lenient, None | Some("jwt" | "application/jwt"))
        )
    }
}

/// A secret that never shows in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where an issuer's signing keys come from.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Keys {
    /// Discover the metadata (RFC 8414 / OIDC, MCP order) and use its `jwks_uri`.
    Discover,
    /// Fetch this JWKS URL (no discovery).
    JwksUri(String),
    /// Use this JWKS document (from a file or inline configuration).
    Static(Value),
}

/// RFC 7662 introspection of opaque tokens, with client authentication.
#[derive(Debug, Clone, PartialEq)]
pub struct Introspection {
    pub(crate) endpoint: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_secret: Secret,
    pub(crate) max_cache_ttl: Duration,
}

impl Introspection {
    /// Introspection authenticated as `client_id` (HTTP Basic). The endpoint comes from the
    /// discovered metadata unless set.
    pub fn new(client_id: impl Into<String>, client_secret: Secret) -> Self {
        Self { endpoint: None, client_id: client_id.into(), client_secret, max_cache_ttl: Duration::from_secs(60) }
    }

    /// Sets the endpoint explicitly.
    #[must_use]
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Longest time an active answer is reused (never beyond the token's `exp`). Default 60 s.
    #[must_use]
    pub fn max_cache_ttl(mut self, ttl: Duration) -> Self {
        self.max_cache_ttl = ttl;
        self
    }
}

/// One trusted issuer.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct Issuer {
    pub(crate) issuer: String,
    pub(crate) audiences: Vec<String>,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) leeway: Duration,
    pub(crate) typ: TypMode,
    pub(crate) keys: Keys,
    pub(crate) introspection: Option<Introspection>,
    pub(crate) shared_secret: Option<Secret>,
    pub(crate) insecure_http: bool,
}

impl Issuer {
    /// Trusts `issuer` (its exact identifier, e.g. `https://login.example.com/tenant`). The audience
    /// defaults to the layer's resource URI; keys are discovered; 60 s leeway; lenient `typ`.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences: Vec::new(),
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            leeway: Duration::from_secs(60),
            typ: TypMode::default(),
            keys: Keys::Discover,
            introspection: None,
            shared_secret: None,
            insecure_http: false,
        }
    }

    /// Accepts tokens for this audience (default: the resource URI). Repeatable.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Replaces the allowed algorithms. HMAC algorithms are refused here: see
    /// [`insecure_shared_secret`](Self::insecure_shared_secret).
    pub fn algorithms(mut self, algorithms: &[Algorithm]) -> Result<Self, SsoConfigError> {
        if algorithms.is_empty() {
            return Err(self.error("at least one algorithm is required"));
        }
        if algorithms.iter().any(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)) {
            return Err(self.error("HMAC algorithms need insecure_shared_secret"));
        }
        self.algorithms = algorithms.to_vec();
        Ok(self)
    }

    /// Clock skew tolerated on `exp`, `nbf` and `iat` (default 60 s, at most 5 minutes).
    pub fn leeway(mut self, leeway: Duration) -> Result<Self, SsoConfigError> {
        if leeway > Duration::from_secs(300) {
            return Err(self.error("leeway above 300 seconds is not allowed"));
        }
        self.leeway = leeway;
        Ok(self)
    }

    /// How strictly `typ` is judged.
    pub fn typ(mut self, mode: TypMode) -> Self {
        self.typ = mode;
        self
    }

    /// Where the keys come from.
    pub fn keys(mut self, keys: Keys) -> Self {
        self.keys = keys;
        self
    }

    /// Introspects opaque tokens.
    pub fn introspection(mut self, introspection: Introspection) -> Self {
        self.introspection = Some(introspection);
        self
    }

    /// **Insecure**: also accepts HS256 tokens signed with a shared secret. Anyone holding the
    /// secret can mint tokens; use only where the IdP offers nothing else.
    pub fn insecure_shared_secret(mut self, secret: Secret) -> Self {
        self.shared_secret = Some(secret);
        if !self.algorithms.contains(&Algorithm::HS256) {
            self.algorithms.push(Algorithm::HS256);
        }
        self
    }

    /// **Insecure**: allows a plain-http issuer on a non-loopback host (metadata, keys and
    /// introspection would travel unprotected).
    pub fn insecure_http(mut self) -> Self {
        self.insecure_http = true;
        self
    }

    /// The issuer identifier.
    pub fn id(&self) -> &str {
        &self.issuer
    }

    fn error(&self, reason: &str) -> SsoConfigError {
        SsoConfigError::Issuer { issuer: self.issuer.clone(), reason: reason.to_owned() }
    }

    /// Checks the settings; fills the default audience.
    pub(crate) fn finish(mut self, resource: &str) -> Result<Self, SsoConfigError> {
        check_url(&self.issuer, self.insecure_http).map_err(|r| self.error(&format!("issuer: {r}")))?;
        if self.audiences.is_empty() {
            self.audiences.push(resource.to_owned());
        }
        if let Keys::JwksUri(url) = &self.keys {
            check_url(url, self.insecure_http).map_err(|r| self.error(&format!("jwks_uri: {r}")))?;
        }
        if let Some(endpoint) = self.introspection.as_ref().and_then(|i| i.endpoint.as_ref()) {
            check_url(endpoint, self.insecure_http).map_err(|r| self.error(&format!("introspection endpoint: {r}")))?;
        }
        Ok(self)
    }
}

/// An identity provider URL must be https, or http on a loopback host (or explicitly insecure).
pub(crate) fn check_url(url: &str, insecure_http: bool) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|_| "not a valid URL".to_owned())?;
    let host = uri.host().ok_or("no host")?;
    if url.contains('#') || uri.query().is_some() {
        return Err("must not have a query or fragment".into());
    }
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if insecure_http || matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1") => Ok(()),
        Some("http") => Err("plain http is only allowed for loopback hosts (or with insecure_http)".into()),
        _ => Err("must be an https URL".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typ_modes() {
        assert!(TypMode::Strict.accepts(Some("at+jwt")));
        assert!(TypMode::Strict.accepts(Some("application/AT+JWT")));
        assert!(!TypMode::Strict.accepts(Some("JWT")));
        assert!(!TypMode::Strict.accepts(None));
        assert!(TypMode::Lenient.accepts(Some("JWT")) && TypMode::Lenient.accepts(None));
        assert!(!TypMode::Lenient.accepts(Some("dpop+jwt")));
        assert!(!TypMode::Lenient.accepts(Some("oauth-id-jag+jwt")));
    }

    #[test]
    fn issuer_rules() {
        assert!(Issuer::new("https://idp").finish("https://mcp/x").is_ok());
        assert!(Issuer::new("http://127.0.0.1:9").finish("https://mcp/x").is_ok());
        assert!(Issuer::new("http://idp.example.com").finish("r").is_err());
        assert!(Issuer::new("http://idp.example.com").insecure_http().finish("r").is_ok());
        assert!(Issuer::new("ftp://idp").finish("r").is_err());
        assert!(Issuer::new("https://idp").algorithms(&[Algorithm::HS256]).is_err());
        assert!(Issuer::new("https://idp").algorithms(&[]).is_err());
        assert!(Issuer::new("https://idp").leeway(Duration::from_secs(3600)).is_err());
        let i = Issuer::new("https://idp").finish("https://mcp/x").expect("ok");
        assert_eq!(i.audiences, ["https://mcp/x"]);
        assert_eq!(format!("{:?}", Secret::new("s3cret")), "Secret(***)");
    }
}
