//! The workload JWT check shared by direct mode and the grant validator: structure, header,
//! issuer, signature, audience, lifetime, subject, workload rule. Replay (`jti`) is judged by the
//! caller with its own store, after everything else passed.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use mcp_enterprise_core::TokenFingerprint;
use mcp_enterprise_core::jwks::{self, JwtError, KeyQuery};
use serde_json::{Map, Value};

use crate::error::WorkloadError;
use crate::replay::ReplayStore;
use crate::rules::WorkloadRule;
use crate::trust::{TrustPolicy, is_workload_spiffe_id};

/// What the caller expects of a workload token.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expect<'a> {
    /// Accepted values of the (single) audience.
    pub(crate) audiences: &'a [String],
    /// Longest allowed `exp - iat`.
    pub(crate) max_lifetime: Duration,
    /// Clock skew tolerated on `exp`, `nbf`, `iat`.
    pub(crate) leeway: Duration,
    /// Whether `jti` must be present.
    pub(crate) require_jti: bool,
    /// The `typ` header required: `None` for workload tokens (none, `JWT`, `JOSE`), else exactly
    /// this media type (case-insensitive, `application/` prefix allowed).
    pub(crate) typ: Option<&'static str>,
}

/// A workload token that passed every check but replay.
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    /// The issuer, or `spiffe://<trust domain>`.
    pub(crate) issuer: String,
    pub(crate) subject: String,
    pub(crate) rule: WorkloadRule,
    /// The claims the issuer forwards to the principal.
    pub(crate) forwarded: Map<String, Value>,
    pub(crate) exp: u64,
    pub(crate) jti: Option<String>,
    pub(crate) fingerprint: TokenFingerprint,
    /// Every claim of the token (its payload), for profiles that read more than the subject.
    pub(crate) claims: Map<String, Value>,
}

/// Unverified claims of a token, to decide which layer judges it. `None` when it is not a JWT.
pub(crate) fn peek_claims(token: &str) -> Option<Map<String, Value>> {
    let parts = jwks::split_compact(token).ok()?;
    jwks::decode_object(parts.payload, "", "").ok()
}

/// The `typ` values a workload token may carry: none, `JWT` or `JOSE` (JWT-SVID §3). Any other
/// type (an access token `at+jwt`, a DPoP proof, an ID-JAG) is another kind of token.
pub(crate) fn workload_typ(typ: Option<&str>) -> bool {
    let typ = typ.map(|t| t.to_ascii_lowercase());
    matches!(typ.as_deref().map(|t| t.strip_prefix("application/").unwrap_or(t)), None | Some("jwt" | "jose"))
}

pub(crate) fn header_alg(header: &Map<String, Value>) -> Result<Algorithm, WorkloadError> {
    let name = header.get("alg").and_then(Value::as_str).ok_or(JwtError::Malformed("no alg"))?;
    let alg: Algorithm =
        name.parse().map_err(|_| WorkloadError::Jwt(JwtError::DisallowedAlgorithm(name.chars().take(16).collect())))?;
    if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
        return Err(JwtError::DisallowedAlgorithm(name.to_owned()).into());
    }
    Ok(alg)
}

pub(crate) fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, WorkloadError> {
    jwks::numeric_date(claims, name).map_err(|()| WorkloadError::Jwt(JwtError::BadClaim(name)))
}

/// The single audience of a token: a string, or an array of exactly one string.
pub(crate) fn single_audience(claims: &Map<String, Value>) -> Result<&str, WorkloadError> {
    match claims.get("aud") {
        None => Err(WorkloadError::Jwt(JwtError::MissingAudience)),
        Some(Value::String(a)) => Ok(a),
        Some(Value::Array(list)) => match list.as_slice() {
            [] => Err(WorkloadError::Jwt(JwtError::MissingAudience)),
            [Value::String(a)] => Ok(a),
            [_] => Err(WorkloadError::Jwt(JwtError::BadClaim("aud"))),
            _ => Err(WorkloadError::Jwt(JwtError::MultipleAudiences)),
        },
        Some(_) => Err(WorkloadError::Jwt(JwtError::BadClaim("aud"))),
    }
}

/// `exp` (required), `nbf`, `iat` (required) against `now` with `leeway`, and `exp - iat`
/// against `max_lifetime`. Returns `exp`.
pub(crate) fn check_times(
    claims: &Map<String, Value>,
    now: u64,
    leeway: u64,
    max_lifetime: Duration,
) -> Result<u64, WorkloadError> {
    let exp = numeric_date(claims, "exp")?.ok_or(JwtError::MissingExpiry)?;
    if now >= exp.saturating_add(leeway) {
        return Err(JwtError::Expired.into());
    }
    if let Some(nbf) = numeric_date(claims, "nbf")?
        && now.saturating_add(leeway) < nbf
    {
        return Err(JwtError::NotYetValid.into());
    }
    let iat = numeric_date(claims, "iat")?.ok_or(JwtError::MissingIssuedAt)?;
    if now.saturating_add(leeway) < iat {
        return Err(JwtError::IssuedInFuture.into());
    }
    let lifetime = exp.saturating_sub(iat);
    if lifetime > max_lifetime.as_secs() {
        return Err(JwtError::TooLongLived { lifetime, max: max_lifetime.as_secs() }.into());
    }
    Ok(exp)
}

impl TrustPolicy {
    /// Checks a workload token against the policy and `expect` (not replay).
    pub(crate) async fn verify(&self, token: &str, expect: Expect<'_>) -> Result<Verified, WorkloadError> {
        let max = self.inner.max_token_bytes;
        if token.len() > max {
            return Err(WorkloadError::TokenTooLarge(max));
        }
        let parts = jwks::split_compact(token).map_err(JwtError::Malformed)?;
        let header = jwks::decode_object(parts.header, "header is not base64url", "header is not a JSON object")
            .map_err(JwtError::Malformed)?;
        let alg = header_alg(&header)?;
        if header.contains_key("crit") {
            return Err(JwtError::CriticalHeader.into());
        }
        let typ = header.get("typ").and_then(Value::as_str);
        let typ_ok = match expect.typ {
            None => workload_typ(typ),
            Some(want) => typ.is_some_and(|t| {
                let t = t.to_ascii_lowercase();
                t.strip_prefix("application/").unwrap_or(&t) == want
            }),
        };
        if !typ_ok {
            return Err(WorkloadError::WrongType(typ.unwrap_or_default().chars().take(32).collect()));
        }
        // keys come only from the issuer's configured or discovered key set: `jku`, `x5u`, `x5c`
        // and an embedded `jwk` are never used
        let claims = jwks::decode_object(parts.payload, "payload is not base64url", "payload is not a JSON object")
            .map_err(JwtError::Malformed)?;
        let issuer = self.locate(&claims)?;
        if !issuer.algorithms.contains(&alg) {
            return Err(JwtError::DisallowedAlgorithm(format!("{alg:?}")).into());
        }
        let kid = header.get("kid").and_then(Value::as_str);
        issuer.keys.verify(KeyQuery::new(kid, alg), parts.signing_input.as_bytes(), parts.signature).await?;

        let audience = single_audience(&claims)?;
        if !expect.audiences.iter().any(|a| a == audience) {
            return Err(WorkloadError::WrongAudience);
        }
        let now = self.inner.clock.now().as_secs();
        let exp = check_times(&claims, now, expect.leeway.as_secs(), expect.max_lifetime)?;
        let subject = match claims.get("sub") {
            None => return Err(WorkloadError::Jwt(JwtError::MissingSubject)),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => return Err(WorkloadError::Jwt(JwtError::BadClaim("sub"))),
        };
        if let Some(td) = issuer.trust_domain()
            && !is_workload_spiffe_id(&subject, td)
        {
            return Err(WorkloadError::InvalidSpiffeId);
        }
        let rule = issuer.first_rule(&subject, &claims).ok_or(WorkloadError::NoMatchingRule)?.clone();
        let jti = match claims.get("jti") {
            None if expect.require_jti => return Err(WorkloadError::Jwt(JwtError::MissingJti)),
            None => None,
            Some(Value::String(j)) if !j.is_empty() && j.len() <= 256 => Some(j.clone()),
            Some(_) => return Err(WorkloadError::Jwt(JwtError::BadClaim("jti"))),
        };
        let forwarded = issuer
            .forward_claims
            .iter()
            .filter_map(|name| claims.get(name).map(|v| (name.clone(), v.clone())))
            .collect();
        let fingerprint = TokenFingerprint::from_sha256(&jwks::sha256(token.as_bytes()));
        Ok(Verified { issuer: issuer.id.clone(), subject, rule, forwarded, exp, jti, fingerprint, claims })
    }
}

/// Records the token's `jti` (scoped by issuer) until it expires (plus leeway); a second use is
/// [`WorkloadError::Replayed`]. A store that cannot answer fails closed.
pub(crate) async fn check_replay(
    store: &dyn ReplayStore,
    verified: &Verified,
    now: Duration,
    leeway: Duration,
) -> Result<(), WorkloadError> {
    check_replay_scoped(store, verified, false, now, leeway).await
}

/// [`check_replay`], the `jti` scoped by issuer and, with `by_subject`, by subject too (ID-JAG:
/// "scoped by iss/sub"); the key space is separate from the issuer-only one.
pub(crate) async fn check_replay_scoped(
    store: &dyn ReplayStore,
    verified: &Verified,
    by_subject: bool,
    now: Duration,
    leeway: Duration,
) -> Result<(), WorkloadError> {
    let Some(jti) = &verified.jti else { return Err(WorkloadError::Jwt(JwtError::MissingJti)) };
    // iss and jti are hashed together: fixed-size keys, and no separator an issuer could forge
    let mut material = Vec::with_capacity(verified.issuer.len() + verified.subject.len() + jti.len() + 24);
    material.extend_from_slice(verified.issuer.as_bytes());
    material.push(0);
    if by_subject {
        // a separate key space, each part length-prefixed (a subject may contain any character)
        material.extend_from_slice(b"id-jag");
        for part in [&verified.subject, jti] {
            material.extend_from_slice(&(part.len() as u64).to_be_bytes());
            material.extend_from_slice(part.as_bytes());
        }
    } else {
        material.extend_from_slice(jti.as_bytes());
    }
    let key = TokenFingerprint::from_sha256(&jwks::sha256(&material)).to_string();
    let until = Duration::from_secs(verified.exp) + leeway;
    match store.check_and_insert(&key, now, until).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(WorkloadError::Replayed),
        Err(e) => {
            tracing::warn!(error = %e, "workload replay store refused; failing closed");
            Err(WorkloadError::Unavailable)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn typ_values() {
        assert!(workload_typ(None) && workload_typ(Some("JWT")) && workload_typ(Some("jose")));
        assert!(workload_typ(Some("application/jwt")));
        assert!(!workload_typ(Some("at+jwt")) && !workload_typ(Some("dpop+jwt")));
        assert!(!workload_typ(Some("oauth-id-jag+jwt")));
    }

    #[test]
    fn audiences() {
        assert_eq!(single_audience(&claims(json!({"aud": "a"}))), Ok("a"));
        assert_eq!(single_audience(&claims(json!({"aud": ["a"]}))), Ok("a"));
        assert_eq!(
            single_audience(&claims(json!({"aud": ["a", "b"]}))),
            Err(WorkloadError::Jwt(JwtError::MultipleAudiences))
        );
        assert_eq!(single_audience(&claims(json!({"aud": []}))), Err(WorkloadError::Jwt(JwtError::MissingAudience)));
        assert_eq!(single_audience(&claims(json!({}))), Err(WorkloadError::Jwt(JwtError::MissingAudience)));
        assert_eq!(single_audience(&claims(json!({"aud": [1]}))), Err(WorkloadError::Jwt(JwtError::BadClaim("aud"))));
        assert_eq!(single_audience(&claims(json!({"aud": 1}))), Err(WorkloadError::Jwt(JwtError::BadClaim("aud"))));
    }

    #[test]
    fn times() {
        let max = Duration::from_secs(3600);
        let ok = claims(json!({"exp": 1100, "iat": 1000, "nbf": 1000}));
        assert_eq!(check_times(&ok, 1050, 0, max), Ok(1100));
        assert_eq!(check_times(&ok, 1100, 0, max), Err(WorkloadError::Jwt(JwtError::Expired)));
        assert_eq!(check_times(&ok, 1100, 30, max), Ok(1100), "leeway");
        assert_eq!(check_times(&ok, 990, 0, max), Err(WorkloadError::Jwt(JwtError::NotYetValid)));
        let no_exp = claims(json!({"iat": 1000}));
        assert_eq!(check_times(&no_exp, 1000, 0, max), Err(WorkloadError::Jwt(JwtError::MissingExpiry)));
        let no_iat = claims(json!({"exp": 1100}));
        assert_eq!(check_times(&no_iat, 1000, 0, max), Err(WorkloadError::Jwt(JwtError::MissingIssuedAt)));
        let future = claims(json!({"exp": 1100, "iat": 1060}));
        assert_eq!(check_times(&future, 1000, 30, max), Err(WorkloadError::Jwt(JwtError::IssuedInFuture)));
        let long = claims(json!({"exp": 1000 + 3601, "iat": 1000}));
        assert_eq!(
            check_times(&long, 1000, 0, max),
            Err(WorkloadError::Jwt(JwtError::TooLongLived { lifetime: 3601, max: 3600 }))
        );
        let exactly = claims(json!({"exp": 1000 + 3600, "iat": 1000}));
        assert!(check_times(&exactly, 1000, 0, max).is_ok(), "the limit itself is allowed");
        let bad = claims(json!({"exp": "soon", "iat": 1000}));
        assert_eq!(check_times(&bad, 1000, 0, max), Err(WorkloadError::Jwt(JwtError::BadClaim("exp"))));
    }

    #[test]
    fn algorithms() {
        let h = |alg: &str| claims(json!({"alg": alg}));
        assert_eq!(header_alg(&h("ES256")), Ok(Algorithm::ES256));
        assert!(matches!(header_alg(&h("none")), Err(WorkloadError::Jwt(JwtError::DisallowedAlgorithm(_)))));
        assert!(matches!(header_alg(&h("HS256")), Err(WorkloadError::Jwt(JwtError::DisallowedAlgorithm(_)))));
        assert_eq!(header_alg(&claims(json!({}))), Err(WorkloadError::Jwt(JwtError::Malformed("no alg"))));
    }
}
