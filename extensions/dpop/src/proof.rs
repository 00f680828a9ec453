//! Validation of one DPoP proof (RFC 9449 §4.3), everything but the nonce and the token binding,
//! which the service checks with their own state.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::error::DpopError;
use crate::htu;
use crate::jwk::{JwkError, ProofAlg, ProofKey};

/// What the request says the proof must match.
#[derive(Debug)]
pub(crate) struct Expect<'a> {
    pub(crate) method: &'a str,
    pub(crate) htu: &'a str,
    pub(crate) access_token: &'a str,
    pub(crate) now: Duration,
    pub(crate) iat_window: Duration,
    pub(crate) max_bytes: usize,
}

/// A proof that passed every stateless check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValidProof {
    pub(crate) jkt: String,
    pub(crate) jti: String,
    pub(crate) iat: u64,
    pub(crate) nonce: Option<String>,
}

/// Base64url SHA-256 of the access token (`ath`).
pub fn access_token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()))
}

fn object(part: &str, what: &'static str) -> Result<Map<String, Value>, DpopError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| DpopError::InvalidProof(what))?;
    mcp_enterprise_core::json::unambiguous_object(&bytes).map_err(|e| match e {
        mcp_enterprise_core::json::ObjectError::DuplicateMember => {
            DpopError::InvalidProof("a member name appears twice in the proof's header or claims")
        }
        _ => DpopError::InvalidProof(what),
    })
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

pub(crate) fn validate(proof: &str, allowed: &[ProofAlg], e: &Expect<'_>) -> Result<ValidProof, DpopError> {
    use DpopError::InvalidProof as Bad;
    if proof.len() > e.max_bytes {
        return Err(Bad("the proof is too large"));
    }
    let mut parts = proof.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(Bad("not a compact JWS"));
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(Bad("not a compact JWS"));
    }
    let header = object(h, "the header is not a JSON object")?;
    let text = |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
    if !text(&header, "typ").is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt")) {
        return Err(Bad("typ must be dpop+jwt"));
    }
    let alg_name = text(&header, "alg").ok_or(Bad("no alg"))?;
    let alg = ProofAlg::parse(&alg_name)
        .filter(|a| allowed.contains(a))
        .ok_or(Bad("alg is not an allowed asymmetric algorithm"))?;
    if header.contains_key("crit") {
        return Err(Bad("crit is not supported"));
    }
    let jwk = header.get("jwk").and_then(Value::as_object).ok_or(Bad("no jwk"))?;
    let key = ProofKey::parse(jwk).map_err(|e| match e {
        JwkError::Private => Bad("the jwk contains private key material"),
        JwkError::Unsupported => Bad("unsupported jwk"),
        JwkError::Malformed => Bad("malformed jwk"),
    })?;
    if !key.fits(alg) {
        return Err(Bad("the jwk does not fit alg"));
    }
    let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| Bad("the signature is not base64url"))?;
    if !key.verify(alg, &proof.as_bytes()[..h.len() + 1 + p.len()], &sig) {
        return Err(Bad("the signature does not verify with the jwk"));
    }
    let claims = object(p, "the payload is not a JSON object")?;
    let jti = text(&claims, "jti").filter(|j| !j.is_empty() && j.len() <= 256).ok_or(Bad("missing or invalid jti"))?;
    let htm = text(&claims, "htm").ok_or(Bad("missing htm"))?;
    let htu_claim = text(&claims, "htu").ok_or(Bad("missing htu"))?;
    let iat = claims
        .get("iat")
        .and_then(Value::as_f64)
        .filter(|f| f.is_finite() && *f >= 0.0)
        .ok_or(Bad("missing or invalid iat"))? as u64;
    let ath = text(&claims, "ath").ok_or(Bad("missing ath"))?;
    if htm != e.method {
        return Err(Bad("htm does not match the request method"));
    }
    if !htu::matches(&htu_claim, e.htu) {
        return Err(Bad("htu does not match the request URI"));
    }
    let now = e.now.as_secs();
    if iat > now.saturating_add(e.iat_window.as_secs()) {
        return Err(Bad("iat is in the future"));
    }
    if iat.saturating_add(e.iat_window.as_secs()) < now {
        return Err(Bad("iat is too old"));
    }
    if !constant_time_eq(&ath, &access_token_hash(e.access_token)) {
        return Err(Bad("ath does not match the access token"));
    }
    let nonce = match claims.get("nonce") {
        None => None,
        Some(Value::String(n)) => Some(n.clone()),
        Some(_) => return Err(Bad("nonce must be a string")),
    };
    Ok(ValidProof { jkt: key.thumbprint().to_owned(), jti, iat, nonce })
}
