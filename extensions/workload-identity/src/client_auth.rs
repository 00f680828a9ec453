//! `private_key_jwt` client authentication at the token endpoint (RFC 7523 §2.2, RFC 7521 §4.2):
//! the client signs a short-lived JWT (`iss` = `sub` = its client id, `aud` this authorization
//! server's issuer or token endpoint, `exp`, a single-use `jti`) with a key whose public half is
//! registered here (a JWKS in the configuration, or its `jwks_uri`, fetched and cached like an
//! IdP's key set: through the pack's outbound client, bounded, refetched for an unknown `kid`).

use std::sync::Arc;
use std::time::Duration;

use mcp_enterprise_core::jwks::{self, Algorithm, JwksCache, KeyError, KeyQuery, VerifyKey};
use serde_json::Value;

use crate::error::{GrantError, WorkloadConfigError};
use crate::replay::ReplayStore;

/// The `client_assertion_type` of a JWT client assertion.
pub const JWT_CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Longest accepted client assertion lifetime (`exp - iat`, or `exp - now` without `iat`).
pub(crate) const MAX_CLIENT_ASSERTION_LIFETIME: Duration = Duration::from_secs(300);

/// A registered client's public keys (`private_key_jwt`).
#[derive(Clone)]
pub(crate) enum ClientKeys {
    /// Given in the configuration.
    Static(Arc<Vec<VerifyKey>>),
    /// Fetched from the client's `jwks_uri` (cached).
    Remote(Arc<JwksCache>),
}

impl ClientKeys {
    /// The usable public signature keys of a JWKS document (at least one).
    pub(crate) fn from_jwks(client: &str, jwks: &Value) -> Result<Self, WorkloadConfigError> {
        let keys = jwks::parse_jwks(jwks.to_string().as_bytes())
            .map_err(|e| WorkloadConfigError::Rule { rule: client.to_owned(), reason: format!("jwks: {e}") })?;
        if keys.is_empty() {
            return Err(WorkloadConfigError::Rule {
                rule: client.to_owned(),
                reason: "jwks: no usable public signature key".into(),
            });
        }
        Ok(Self::Static(Arc::new(keys)))
    }

    /// Whether the assertion's signature verifies with these keys.
    async fn verify(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
        signing_input: &str,
        signature: &str,
    ) -> Result<(), GrantError> {
        match self {
            Self::Static(keys) => {
                for key in keys.iter().filter(|k| k.fits(alg) && (kid.is_none() || k.kid() == kid)) {
                    if key.verify(alg, signing_input.as_bytes(), signature).unwrap_or(false) {
                        return Ok(());
                    }
                }
                Err(bad("the client assertion's signature does not verify with the client's keys"))
            }
            Self::Remote(cache) => match cache
                .verify(KeyQuery::new(kid, alg), signing_input.as_bytes(), signature)
                .await
            {
                Ok(()) => Ok(()),
                Err(KeyError::Unavailable) => Err(bad("the client's jwks_uri could not be fetched")),
                Err(KeyError::UnknownKey) => Err(bad("no key of the client's jwks_uri matches the client assertion")),
                Err(_) => Err(bad("the client assertion's signature does not verify with the client's keys")),
            },
        }
    }
}

/// What a client assertion must match.
pub(crate) struct AssertionExpect<'a> {
    pub(crate) audiences: &'a [String],
    pub(crate) now: Duration,
    pub(crate) leeway: Duration,
}

fn bad(reason: &'static str) -> GrantError {
    GrantError::InvalidClient(reason)
}

/// Checks a client assertion's header, signature and claims for `client_id` with `keys`; then
/// its `jti` single use in `replay` (until `exp` + leeway, scoped by the client).
pub(crate) async fn check_client_assertion(
    assertion: &str,
    client_id: &str,
    keys: &ClientKeys,
    expect: AssertionExpect<'_>,
    replay: &dyn ReplayStore,
) -> Result<(), GrantError> {
    let parts = jwks::split_compact(assertion).map_err(|_| bad("the client assertion is not a compact JWS"))?;
    let header = jwks::decode_object(parts.header, "", "").map_err(|_| bad("the client assertion is not a JWT"))?;
    if header.contains_key("crit") {
        return Err(bad("the client assertion has a crit header"));
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(|a| a.parse::<Algorithm>().ok())
        .filter(|a| !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
        .ok_or(bad("the client assertion's algorithm is not an allowed asymmetric one"))?;
    let kid = header.get("kid").and_then(Value::as_str);
    keys.verify(alg, kid, parts.signing_input, parts.signature).await?;
    let claims = jwks::decode_object(parts.payload, "", "").map_err(|_| bad("the client assertion is not a JWT"))?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("iss") != Some(client_id) || text("sub") != Some(client_id) {
        return Err(bad("the client assertion's iss and sub must be the client id"));
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => expect.audiences.contains(a),
        Some(Value::Array(list)) => {
            list.iter().filter_map(Value::as_str).any(|a| expect.audiences.iter().any(|x| x == a))
        }
        _ => false,
    };
    if !aud_ok {
        return Err(bad("the client assertion's aud is not this authorization server"));
    }
    let date = |name: &str| jwks::numeric_date(&claims, name);
    let now = expect.now.as_secs();
    let leeway = expect.leeway.as_secs();
    let exp = date("exp").ok().flatten().ok_or(bad("the client assertion has no valid exp"))?;
    let iat = date("iat").map_err(|_| bad("the client assertion's iat is not a number"))?;
    if now >= exp.saturating_add(leeway) {
        return Err(bad("the client assertion has expired"));
    }
    if let Ok(Some(nbf)) = date("nbf")
        && now.saturating_add(leeway) < nbf
    {
        return Err(bad("the client assertion is not yet valid"));
    }
    if iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
        return Err(bad("the client assertion is issued in the future"));
    }
    if exp.saturating_sub(iat.unwrap_or(now)) > MAX_CLIENT_ASSERTION_LIFETIME.as_secs() {
        return Err(bad("the client assertion lives longer than 300 s"));
    }
    let jti = text("jti").filter(|j| !j.is_empty() && j.len() <= 256).ok_or(bad("the client assertion has no jti"))?;
    // the length prefix keeps (client, jti) pairs apart whatever characters they hold
    let key = format!("client-assertion:{}:{client_id}{jti}", client_id.len());
    let until = Duration::from_secs(exp) + expect.leeway;
    match replay.check_and_insert(&key, expect.now, until).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(bad("the client assertion was already used (replayed jti)")),
        Err(e) => {
            tracing::warn!(error = %e, "client assertion replay store refused; failing closed");
            Err(GrantError::Unavailable)
        }
    }
}
