//! Token validation: JWTs against the issuer's keys, opaque tokens by introspection, then
//! claims → principal. Every failure is an [`AuthError`] that never carries token contents.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey};
use mcp_enterprise_core::clock::Clock;
use mcp_enterprise_core::jwks::{self, DiscoveryOrder, HttpClient, JwksCache, JwtError, KeyError, KeyQuery, KeySource};
use mcp_enterprise_core::{Principal, TokenFingerprint};
use serde_json::{Map, Value};

use crate::cache::TokenCache;
use crate::claims::{ClaimMapping, TokenForm};
use crate::error::AuthError;
use crate::issuer::{Issuer, Keys};

/// An issuer with its live key cache.
#[derive(Debug)]
pub(crate) struct TrustedIssuer {
    pub(crate) config: Issuer,
    pub(crate) jwks: Arc<JwksCache>,
    hmac: Option<Arc<VerifyKeyHmac>>,
}

struct VerifyKeyHmac(DecodingKey);

impl std::fmt::Debug for VerifyKeyHmac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerifyKeyHmac(***)")
    }
}

impl TrustedIssuer {
    pub(crate) fn new(config: Issuer, cache: JwksCache) -> Self {
        let hmac = config
            .shared_secret
            .as_ref()
            .map(|s| Arc::new(VerifyKeyHmac(DecodingKey::from_secret(s.expose().as_bytes()))));
        Self { config, jwks: Arc::new(cache), hmac }
    }
}

/// A validated token: who presented it, and the key it is bound to (`cnf.jkt`), if any.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ValidatedToken {
    /// The caller.
    pub principal: Principal,
    /// The DPoP key thumbprint the token is bound to.
    pub jkt: Option<String>,
}

/// Everything needed to judge a token.
#[derive(Debug)]
pub(crate) struct Verifier {
    pub(crate) issuers: Vec<TrustedIssuer>,
    pub(crate) claims: ClaimMapping,
    pub(crate) cache: TokenCache,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) max_token_bytes: usize,
    pub(crate) http: HttpClient,
    /// Validated-token cache hits and misses (for metrics).
    pub(crate) cache_hits: mcp_enterprise_core::stats::Count,
    pub(crate) cache_misses: mcp_enterprise_core::stats::Count,
}

fn json_object(bytes: &[u8], what: &'static str) -> Result<Map<String, Value>, AuthError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(AuthError::Jwt(JwtError::Malformed(what))),
    }
}

/// A NumericDate claim in whole seconds.
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, AuthError> {
    jwks::numeric_date(claims, name).map_err(|()| AuthError::Jwt(JwtError::BadClaim(name)))
}

impl From<KeyError> for AuthError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::UnknownKey => Self::Jwt(JwtError::UnknownKey),
            KeyError::KeyMismatch => Self::Jwt(JwtError::KeyMismatch),
            KeyError::BadSignature => Self::Jwt(JwtError::BadSignature),
            _ => Self::IdpUnavailable,
        }
    }
}

impl Verifier {
    fn now(&self) -> Duration {
        self.clock.now()
    }

    /// Judges a token; the result is cached until the token expires (a JWT: at most until its
    /// issuer's key set goes stale). A sender-constrained token
    /// (`cnf.jkt`) is refused unless `allow_bound` (only a DPoP layer, which checks the proof,
    /// may pass it).
    pub(crate) async fn authenticate(&self, token: &str, allow_bound: bool) -> Result<Arc<ValidatedToken>, AuthError> {
        self.authenticate_hashed(token, jwks::sha256(token.as_bytes()), allow_bound).await
    }

    /// [`authenticate`](Self::authenticate), `digest` being the token's SHA-256.
    pub(crate) async fn authenticate_hashed(
        &self,
        token: &str,
        digest: [u8; 32],
        allow_bound: bool,
    ) -> Result<Arc<ValidatedToken>, AuthError> {
        let validated = self.validate(token, digest).await?;
        if validated.jkt.is_some() && !allow_bound {
            return Err(AuthError::DpopBoundToken);
        }
        Ok(validated)
    }

    async fn validate(&self, token: &str, digest: [u8; 32]) -> Result<Arc<ValidatedToken>, AuthError> {
        if token.len() > self.max_token_bytes {
            return Err(AuthError::TokenTooLarge(self.max_token_bytes));
        }
        if let Some(hit) = self.cache.get(&digest, self.now()) {
            self.cache_hits.inc();
            tracing::Span::current().record("mcp_enterprise.cache", "hit");
            return Ok(hit);
        }
        self.cache_misses.inc();
        tracing::Span::current().record("mcp_enterprise.cache", "miss");
        let fingerprint = TokenFingerprint::from_sha256(&digest);
        let (validated, expires_at) = if token.bytes().filter(|b| *b == b'.').count() == 2 {
            self.verify_jwt(token, fingerprint).await?
        } else {
            self.introspect(token, fingerprint).await?
        };
        let validated = Arc::new(validated);
        self.cache.insert(digest, validated.clone(), expires_at, self.now());
        Ok(validated)
    }

    async fn verify_jwt(
        &self,
        token: &str,
        fingerprint: TokenFingerprint,
    ) -> Result<(ValidatedToken, Duration), AuthError> {
        let parts = jwks::split_compact(token).map_err(JwtError::Malformed)?;
        let header = jwks::decode_object(parts.header, "header is not base64url", "header is not a JSON object")
            .map_err(JwtError::Malformed)?;
        let alg_name = header.get("alg").and_then(Value::as_str).ok_or(JwtError::Malformed("no alg"))?;
        let alg: Algorithm = alg_name
            .parse()
            .map_err(|_| AuthError::Jwt(JwtError::DisallowedAlgorithm(alg_name.chars().take(16).collect())))?;
        if header.contains_key("crit") {
            return Err(JwtError::CriticalHeader.into());
        }
        // `jku`, `x5u`, `x5c` and an embedded `jwk` are never used: keys come only from the
        // issuer's configured or discovered JWKS.
        let claims = jwks::decode_object(parts.payload, "payload is not base64url", "payload is not a JSON object")
            .map_err(JwtError::Malformed)?;
        let iss = claims.get("iss").and_then(Value::as_str).ok_or(JwtError::UntrustedIssuer)?;
        let issuer = self.issuers.iter().find(|i| i.config.issuer == iss).ok_or(JwtError::UntrustedIssuer)?;
        let typ = header.get("typ").and_then(Value::as_str);
        if !issuer.config.typ.accepts(typ) {
            return Err(AuthError::WrongType(typ.unwrap_or("").chars().take(32).collect()));
        }
        if !issuer.config.algorithms.contains(&alg) {
            return Err(JwtError::DisallowedAlgorithm(alg_name.to_owned()).into());
        }
        let message = parts.signing_input;
        if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            let key = issuer
                .hmac
                .as_ref()
                .ok_or_else(|| AuthError::Jwt(JwtError::DisallowedAlgorithm(alg_name.to_owned())))?;
            if !jsonwebtoken::crypto::verify(parts.signature, message.as_bytes(), &key.0, alg).unwrap_or(false) {
                return Err(JwtError::BadSignature.into());
            }
        } else {
            // the IdP may have re-keyed under the same kid: the cache refetches once (rate-limited)
            let kid = header.get("kid").and_then(Value::as_str);
            issuer.jwks.verify(KeyQuery::new(kid, alg), message.as_bytes(), parts.signature).await?;
        }
        self.check_claims(issuer, &claims)?;
        let exp = numeric_date(&claims, "exp")?.ok_or(JwtError::MissingExpiry)?;
        let principal = self
            .claims
            .principal(&issuer.config.issuer, &claims, fingerprint, TokenForm::Jwt)
            .ok_or(JwtError::BadClaim("sub"))?;
        // cached no longer than the key set it was checked against is known current, so a key the
        // IdP withdraws stops vouching for cached tokens at the next refresh
        let until = Duration::from_secs(exp).min(issuer.jwks.fresh_until());
        Ok((ValidatedToken { principal, jkt: jkt_of(&claims)? }, until))
    }

    fn check_claims(&self, issuer: &TrustedIssuer, claims: &Map<String, Value>) -> Result<(), AuthError> {
        let now = self.now().as_secs();
        let leeway = issuer.config.leeway.as_secs();
        match claims.get("aud") {
            None => return Err(AuthError::Jwt(JwtError::MissingAudience)),
            Some(Value::String(a)) if issuer.config.audiences.contains(a) => {}
            Some(Value::Array(list))
                if list.iter().filter_map(Value::as_str).any(|a| issuer.config.audiences.iter().any(|x| x == a)) => {}
            Some(Value::String(_) | Value::Array(_)) => return Err(AuthError::WrongAudience),
            Some(_) => return Err(AuthError::Jwt(JwtError::BadClaim("aud"))),
        }
        let exp = numeric_date(claims, "exp")?.ok_or(JwtError::MissingExpiry)?;
        if now >= exp.saturating_add(leeway) {
            return Err(JwtError::Expired.into());
        }
        if let Some(nbf) = numeric_date(claims, "nbf")?
            && now.saturating_add(leeway) < nbf
        {
            return Err(JwtError::NotYetValid.into());
        }
        if let Some(iat) = numeric_date(claims, "iat")?
            && now.saturating_add(leeway) < iat
        {
            return Err(JwtError::IssuedInFuture.into());
        }
        Ok(())
    }

    async fn introspect(
        &self,
        token: &str,
        fingerprint: TokenFingerprint,
    ) -> Result<(ValidatedToken, Duration), AuthError> {
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(JwtError::Malformed("not a token").into());
        }
        let Some((issuer, settings)) =
            self.issuers.iter().find_map(|i| i.config.introspection.as_ref().map(|s| (i, s)))
        else {
            return Err(AuthError::OpaqueNotAccepted);
        };
        let endpoint = match &settings.endpoint {
            Some(e) => e.clone(),
            None => issuer
                .jwks
                .metadata()
                .await
                .map_err(|e| {
                    tracing::warn!(issuer = %issuer.config.issuer, error = %e, "discovery for introspection failed");
                    AuthError::IdpUnavailable
                })?
                .introspection_endpoint
                .clone()
                .ok_or_else(|| {
                    tracing::warn!(issuer = %issuer.config.issuer, "the metadata has no introspection_endpoint");
                    AuthError::IdpUnavailable
                })?,
        };
        let form = [("token", token), ("token_type_hint", "access_token")];
        let fetched =
            self.http.post_form(&endpoint, &settings.client_id, settings.client_secret.expose(), &form).await.map_err(
                |e| {
                    tracing::warn!(issuer = %issuer.config.issuer, error = %e, "introspection failed");
                    AuthError::IdpUnavailable
                },
            )?;
        let claims = json_object(&fetched.body, "introspection response is not a JSON object").map_err(|_| {
            tracing::warn!(issuer = %issuer.config.issuer, "introspection response is not a JSON object");
            AuthError::IdpUnavailable
        })?;
        if claims.get("active") != Some(&Value::Bool(true)) {
            return Err(AuthError::Inactive);
        }
        if let Some(iss) = claims.get("iss").and_then(Value::as_str)
            && iss != issuer.config.issuer
        {
            return Err(JwtError::UntrustedIssuer.into());
        }
        self.check_claims(issuer, &claims)?;
        let jkt = jkt_of(&claims)?;
        if jkt.is_none()
            && claims.get("token_type").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case("dpop"))
        {
            // bound, but the key is not disclosed: no proof can ever match
            return Err(AuthError::DpopBoundToken);
        }
        let exp = Duration::from_secs(numeric_date(&claims, "exp")?.ok_or(JwtError::MissingExpiry)?);
        let until = exp.min(self.now() + settings.max_cache_ttl);
        let principal = self
            .claims
            .principal(&issuer.config.issuer, &claims, fingerprint, TokenForm::Introspected)
            .ok_or(JwtError::BadClaim("sub"))?;
        Ok((ValidatedToken { principal, jkt }, until))
    }
}

/// The `cnf.jkt` claim, if the token is sender-constrained.
fn jkt_of(claims: &Map<String, Value>) -> Result<Option<String>, AuthError> {
    match claims.get("cnf").map(|c| c.get("jkt")) {
        None | Some(None) => Ok(None),
        Some(Some(Value::String(jkt))) => Ok(Some(jkt.clone())),
        Some(Some(_)) => Err(AuthError::Jwt(JwtError::BadClaim("cnf"))),
    }
}

/// The key source a configured [`Keys`] becomes.
pub(crate) fn key_source(issuer: &Issuer) -> Result<KeySource, String> {
    Ok(match &issuer.keys {
        Keys::Discover => KeySource::Discover(DiscoveryOrder::Mcp),
        Keys::JwksUri(url) => KeySource::Url(url.clone()),
        Keys::Static(doc) => {
            let keys = jwks::parse_jwks(doc.to_string().as_bytes())?;
            if keys.is_empty() {
                return Err("no usable public signature key".into());
            }
            KeySource::Static(keys.into_iter().map(Arc::new).collect())
        }
    })
}
