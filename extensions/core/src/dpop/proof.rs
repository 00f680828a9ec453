//! Validation of one DPoP proof (RFC 9449 §4.3), everything but the nonce, the `jti` replay store
//! and the token binding, which the caller checks with its own state.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::htu;
use super::jwk::{JwkError, ProofAlg, ProofKey, ReadyKey};

/// Why a proof was refused: a fixed description that never contains proof contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid DPoP proof: {0}")]
pub struct ProofError(pub &'static str);

impl ProofError {
    /// The description.
    pub fn reason(&self) -> &'static str {
        self.0
    }
}

/// Proof headers already checked (`typ`, `alg`, no `crit`, a public `jwk` that fits `alg`), by
/// their exact base64url text, with the key parsed: a client signs every proof with one key, so
/// its header repeats and is parsed once. Entered only after a signature verified with it; the
/// checks are a function of the header text and the layer's fixed algorithms, so a hit decides
/// exactly as parsing again would.
pub type HeaderCache = quick_cache::sync::Cache<Box<str>, std::sync::Arc<CheckedHeader>>;

/// How many proof headers (client keys) [`HeaderCache`] holds.
pub const HEADER_CACHE_CAPACITY: usize = 4096;

/// Longest header text cached (a header with an RSA-4096 key is about 1 KiB).
const MAX_CACHED_HEADER: usize = 2048;

/// A proof header that passed every check.
#[derive(Debug)]
pub struct CheckedHeader {
    alg: ProofAlg,
    key: ReadyKey,
}

/// What the request says the proof must match.
#[derive(Debug)]
pub struct Expect<'a> {
    /// The request method (`htm`).
    pub method: &'a str,
    /// The request URI, without query and fragment (`htu`).
    pub htu: &'a str,
    /// `htu` is already in normal form: a claim equal to it matches without normalising either.
    pub htu_normalised: bool,
    /// The SHA-256 of the access token presented with the proof (its `ath` before encoding);
    /// `None` where no token is presented (the token endpoint, RFC 9449 §5), so `ath` is not
    /// required.
    pub access_token_sha256: Option<&'a [u8; 32]>,
    /// The time now, since the epoch.
    pub now: Duration,
    /// How far `iat` may be from `now`, either side.
    pub iat_window: Duration,
    /// The longest proof accepted.
    pub max_bytes: usize,
}

/// A proof that passed every stateless check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidProof {
    /// The RFC 7638 thumbprint of the proof key, base64url.
    pub jkt: String,
    /// The proof's `jti`.
    pub jti: String,
    /// The proof's `iat`.
    pub iat: u64,
    /// The proof's `nonce`, when it has one.
    pub nonce: Option<String>,
}

/// The SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref());
    out
}

/// Base64url SHA-256 of the access token (`ath`).
pub fn access_token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()))
}

fn object(part: &str, what: &'static str) -> Result<Map<String, Value>, ProofError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| ProofError(what))?;
    crate::json::unambiguous_object(&bytes).map_err(|e| match e {
        crate::json::ObjectError::DuplicateMember => {
            ProofError("a member name appears twice in the proof's header or claims")
        }
        _ => ProofError(what),
    })
}

/// The proof claims the checks read, each kept as parsed (a [`Value`], checked for repeated
/// member names at any depth like [`crate::json::unambiguous_object`]); every other member is
/// checked the same way and dropped, so no map of the whole payload is built per request.
#[derive(Default)]
struct Claims {
    jti: Option<Value>,
    htm: Option<Value>,
    htu: Option<Value>,
    iat: Option<Value>,
    ath: Option<Value>,
    nonce: Option<Value>,
}

impl<'de> serde::Deserialize<'de> for Claims {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Claims;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object without duplicate member names")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Claims, A::Error> {
                use crate::json::{Checked, Name, Seen, Unambiguous};
                let mut claims = Claims::default();
                let mut seen = Seen::new();
                while let Some(Name(name)) = map.next_key()? {
                    let slot = match &*name {
                        "jti" => Some(&mut claims.jti),
                        "htm" => Some(&mut claims.htm),
                        "htu" => Some(&mut claims.htu),
                        "iat" => Some(&mut claims.iat),
                        "ath" => Some(&mut claims.ath),
                        "nonce" => Some(&mut claims.nonce),
                        _ => None,
                    };
                    let slot = match slot {
                        Some(slot) => {
                            let Unambiguous(value) = map.next_value()?;
                            Some((slot, value))
                        }
                        None => {
                            let Checked = map.next_value()?;
                            None
                        }
                    };
                    if !seen.insert(name) {
                        return Err(Seen::duplicate());
                    }
                    if let Some((slot, value)) = slot {
                        *slot = Some(value);
                    }
                }
                Ok(claims)
            }
        }
        deserializer.deserialize_map(V)
    }
}

fn claims(part: &str) -> Result<Claims, ProofError> {
    const WHAT: &str = "the payload is not a JSON object";
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| ProofError(WHAT))?;
    serde_json::from_slice::<Claims>(&bytes).map_err(|e| {
        if crate::json::is_duplicate(&e) {
            ProofError("a member name appears twice in the proof's header or claims")
        } else {
            ProofError(WHAT)
        }
    })
}

/// The string in `value`, moved out.
fn string(value: Option<Value>) -> Option<String> {
    match value {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// Whether `ath` is the base64url (unpadded) encoding of `sha256`, compared in constant time.
/// Decoded on the stack rather than encoding the digest per request: the decoder refuses padding,
/// non-canonical trailing bits and any length but 43 characters, so exactly one text decodes to
/// each digest — the same decision as comparing the text with the encoded digest.
fn ath_matches(ath: &str, sha256: &[u8; 32]) -> bool {
    let mut decoded = [0u8; 33];
    ath.len() == 43
        && URL_SAFE_NO_PAD.decode_slice(ath, &mut decoded).is_ok_and(|n| n == 32)
        && aws_lc_rs::constant_time::verify_slices_are_equal(&decoded[..32], sha256).is_ok()
}

fn check_header(h: &str, allowed: &[ProofAlg]) -> Result<CheckedHeader, ProofError> {
    use ProofError as Bad;
    let header = object(h, "the header is not a JSON object")?;
    let text = |k: &str| header.get(k).and_then(Value::as_str);
    if !text("typ").is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt")) {
        return Err(Bad("typ must be dpop+jwt"));
    }
    let alg_name = text("alg").ok_or(Bad("no alg"))?;
    let alg = ProofAlg::parse(alg_name)
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
    Ok(CheckedHeader { alg, key: ReadyKey::new(key, alg) })
}

/// Checks one proof against what the request says (see the module documentation); `cache`
/// remembers checked headers.
pub fn validate(
    proof: &str,
    allowed: &[ProofAlg],
    e: &Expect<'_>,
    cache: Option<&HeaderCache>,
) -> Result<ValidProof, ProofError> {
    use ProofError as Bad;
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
    let cacheable = cache.filter(|_| h.len() <= MAX_CACHED_HEADER);
    let cached = cacheable.and_then(|c| c.get(h));
    let fresh = match cached {
        Some(_) => None,
        None => Some(check_header(h, allowed)?),
    };
    let header = cached.as_deref().or(fresh.as_ref()).ok_or(Bad("no header"))?;
    // EC and Ed25519 signatures (up to ES512's 132 bytes) are decoded on the stack; RSA ones,
    // longer, on the heap
    let mut small = [0u8; 132];
    let large;
    let sig: &[u8] = match URL_SAFE_NO_PAD.decode_slice(s, &mut small) {
        Ok(n) => &small[..n],
        Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
            large = URL_SAFE_NO_PAD.decode(s).map_err(|_| Bad("the signature is not base64url"))?;
            &large
        }
        Err(base64::DecodeSliceError::DecodeError(_)) => return Err(Bad("the signature is not base64url")),
    };
    if !header.key.verify(header.alg, &proof.as_bytes()[..h.len() + 1 + p.len()], sig) {
        return Err(Bad("the signature does not verify with the jwk"));
    }
    let claims = claims(p)?;
    let jti = string(claims.jti).filter(|j| !j.is_empty() && j.len() <= 256).ok_or(Bad("missing or invalid jti"))?;
    let htm = string(claims.htm).ok_or(Bad("missing htm"))?;
    let htu_claim = string(claims.htu).ok_or(Bad("missing htu"))?;
    let iat = claims
        .iat
        .as_ref()
        .and_then(Value::as_f64)
        .filter(|f| f.is_finite() && *f >= 0.0)
        .ok_or(Bad("missing or invalid iat"))? as u64;
    let ath = string(claims.ath);
    if htm != e.method {
        return Err(Bad("htm does not match the request method"));
    }
    // the usual case first: the claim is the expected URI already in normal form
    let htu_ok = (e.htu_normalised && htu_claim == e.htu) || htu::matches(&htu_claim, e.htu);
    if !htu_ok {
        return Err(Bad("htu does not match the request URI"));
    }
    let now = e.now.as_secs();
    if iat > now.saturating_add(e.iat_window.as_secs()) {
        return Err(Bad("iat is in the future"));
    }
    if iat.saturating_add(e.iat_window.as_secs()) < now {
        return Err(Bad("iat is too old"));
    }
    if let Some(token_sha256) = e.access_token_sha256 {
        let ath = ath.ok_or(Bad("missing ath"))?;
        if !ath_matches(&ath, token_sha256) {
            return Err(Bad("ath does not match the access token"));
        }
    }
    let nonce = match claims.nonce {
        None => None,
        Some(Value::String(n)) => Some(n),
        Some(_) => return Err(Bad("nonce must be a string")),
    };
    let jkt = header.key.key().thumbprint().to_owned();
    if let (Some(c), Some(fresh)) = (cacheable, fresh) {
        c.insert(h.into(), std::sync::Arc::new(fresh));
    }
    Ok(ValidProof { jkt, jti, iat, nonce })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ath` decides as comparing with the encoded digest did, for the right text and near misses.
    #[test]
    fn ath_decides_as_the_encoded_comparison() {
        let digest = sha256(b"an access token");
        let right = URL_SAFE_NO_PAD.encode(digest);
        let padded = base64::engine::general_purpose::URL_SAFE.encode(digest);
        let standard = base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest);
        let mut last = right.clone().into_bytes();
        // the last character carries 2 unused bits: a different character with the same 4 used bits
        last[42] = if last[42] == b'A' { b'B' } else { b'A' };
        let last = String::from_utf8(last).expect("ascii");
        let mut other = digest;
        other[0] ^= 1;
        for candidate in [
            right.clone(),
            padded,
            standard,
            last,
            URL_SAFE_NO_PAD.encode(other),
            right[..42].to_owned(),
            format!("{right}A"),
            String::new(),
            "!".repeat(43),
        ] {
            assert_eq!(
                ath_matches(&candidate, &digest),
                constant_time_eq(&candidate, &URL_SAFE_NO_PAD.encode(digest)),
                "{candidate}"
            );
        }
        assert!(ath_matches(&right, &digest));
    }

    /// The claims reader decides as the whole-object parse it replaced: the same refusals, the
    /// same values of the members it reads.
    #[test]
    fn claims_reader_agrees_with_the_object_parse() {
        let payloads = [
            r#"{"jti":"a","htm":"POST","htu":"https://x/mcp","iat":1,"ath":"h"}"#,
            r#"{"jti":"a","htm":"POST","htu":"https://x/mcp","iat":1.5,"nonce":null,"extra":{"k":[1,{"z":2}]}}"#,
            r#"{"jti":"a","jti":"b"}"#,
            r#"{"jti":"a","j\u0074i":"b"}"#,
            r#"{"x":1,"x":2}"#,
            r#"{"x":{"y":1,"y":2}}"#,
            r#"{"htu":[{"y":1,"y":2}]}"#,
            r#"{"nonce":{"a":1,"a":1}}"#,
            r#"{"iat":"1","htm":7,"jti":["a"]}"#,
            r#"{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"jti":"x","b":0}"#,
            r#"[1,2]"#,
            r#"null"#,
            r#""s""#,
            r#"{"jti":"a"} x"#,
            r#"{"jti":"a""#,
            r#"{}"#,
        ];
        for text in payloads {
            let part = URL_SAFE_NO_PAD.encode(text);
            let old = object(&part, "the payload is not a JSON object");
            let new = claims(&part);
            match (old, new) {
                (Ok(map), Ok(c)) => {
                    for (name, value) in [
                        ("jti", c.jti),
                        ("htm", c.htm),
                        ("htu", c.htu),
                        ("iat", c.iat),
                        ("ath", c.ath),
                        ("nonce", c.nonce),
                    ] {
                        assert_eq!(map.get(name).cloned(), value, "{text}: {name}");
                    }
                }
                (Err(a), Err(b)) => assert_eq!(a, b, "{text}"),
                (a, b) => panic!("{text}: object {:?} vs claims {:?}", a.map(|_| ()), b.map(|_| ())),
            }
        }
        assert_eq!(claims("!!").err(), Some(ProofError("the payload is not a JSON object")));
    }
}
