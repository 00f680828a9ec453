//! Public verification keys from a JWKS (or a SPIFFE trust bundle), and the signature check that
//! insists the key type fits the algorithm.

use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// Key families, with the curve where it matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    P256,
    P384,
    Ed25519,
}

/// What a key set is, which decides the `use` its keys must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum JwksFormat {
    /// An RFC 7517 JWK Set: keys with `use` `sig` or without `use`.
    #[default]
    Jwks,
    /// A SPIFFE trust bundle (SPIFFE Trust Domain and Bundle §4): only keys with `use`
    /// `jwt-svid` verify JWTs; `x509-svid` keys (and keys without `use`) are skipped.
    SpiffeBundle,
}

/// Why a key or signature cannot vouch for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// No published key fits the token (unknown `kid`, or no single key for a kid-less token).
    #[error("no trusted key matches the token")]
    UnknownKey,
    /// The key selected by `kid` does not fit the algorithm (type, curve, or its own `alg`).
    #[error("the key does not fit the algorithm")]
    KeyMismatch,
    /// The signature does not verify.
    #[error("the signature does not verify")]
    BadSignature,
    /// The key set could not be fetched and nothing cached may be used.
    #[error("the key set is unavailable")]
    Unavailable,
}

/// One public verification key.
pub struct VerifyKey {
    kid: Option<String>,
    family: Family,
    alg: Option<Algorithm>,
    key: DecodingKey,
    /// EC and Ed25519 keys parsed once for the one algorithm their family verifies (the curve
    /// point decoded and checked when the key set is loaded, not on every token); RSA keys, and
    /// a point aws-lc refuses, go through `key` (which then refuses every signature as before).
    parsed: Option<ParsedPublicKey>,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .field("alg", &self.alg)
            .finish()
    }
}

impl VerifyKey {
    /// The key id.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Whether this key may verify a token signed with `alg`: the key type (and curve) must fit the
    /// algorithm, and a key that names its algorithm only verifies that one. HMAC never fits.
    pub fn fits(&self, alg: Algorithm) -> bool {
        let family_fits = match alg {
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => self.family == Family::Rsa,
            Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512 => self.family == Family::Rsa,
            Algorithm::ES256 => self.family == Family::P256,
            Algorithm::ES384 => self.family == Family::P384,
            Algorithm::EdDSA => self.family == Family::Ed25519,
            // HMAC (and anything newer) never verifies with a published key
            _ => false,
        };
        family_fits && self.alg.is_none_or(|a| a == alg)
    }

    /// Verifies the base64url `signature` over `signing_input` (`header.payload`) with `alg`.
    /// `Ok(false)`: a well-formed key that the signature does not match.
    pub fn verify(&self, alg: Algorithm, signing_input: &[u8], signature: &str) -> Result<bool, KeyError> {
        if !self.fits(alg) {
            return Err(KeyError::KeyMismatch);
        }
        if let Some(parsed) = &self.parsed {
            // the family fixes the algorithm (`fits`): the same check jsonwebtoken makes, without
            // parsing the key, cloning it and boxing a verifier per token
            let mut sig = [0u8; MAX_PARSED_SIGNATURE];
            return Ok(match URL_SAFE_NO_PAD.decode_slice(signature, &mut sig) {
                Ok(n) => parsed.verify_sig(signing_input, &sig[..n]).is_ok(),
                Err(_) => false,
            });
        }
        Ok(jsonwebtoken::crypto::verify(signature, signing_input, &self.key, alg).unwrap_or(false))
    }
}

/// The longest signature of a parsed key's algorithm (ES384: 96 bytes, Ed25519: 64): a longer
/// one does not fit the buffer and is refused, as aws-lc would refuse it.
const MAX_PARSED_SIGNATURE: usize = 96;

/// The key of `family` parsed for its one algorithm, from the JWK's base64url coordinates.
fn parse_public(family: Family, x: &str, y: Option<&str>) -> Option<ParsedPublicKey> {
    let (algorithm, len): (&'static dyn VerificationAlgorithm, usize) = match family {
        Family::P256 => (&signature::ECDSA_P256_SHA256_FIXED, 32),
        Family::P384 => (&signature::ECDSA_P384_SHA384_FIXED, 48),
        Family::Ed25519 => (&signature::ED25519, 32),
        Family::Rsa => return None,
    };
    let x = URL_SAFE_NO_PAD.decode(x).ok().filter(|x| x.len() == len)?;
    let bytes = match y {
        Some(y) => {
            let y = URL_SAFE_NO_PAD.decode(y).ok().filter(|y| y.len() == len)?;
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            point
        }
        None => x,
    };
    ParsedPublicKey::new(algorithm, bytes).ok()
}

/// Parses a JWK Set, keeping the public signature keys it can use. Keys with private material,
/// symmetric keys, encryption keys and unknown types are skipped (with a warning).
pub fn parse_jwks(body: &[u8]) -> Result<Vec<VerifyKey>, String> {
    parse_jwks_as(body, JwksFormat::Jwks)
}

/// [`parse_jwks`] for a given [`JwksFormat`].
pub fn parse_jwks_as(body: &[u8], format: JwksFormat) -> Result<Vec<VerifyKey>, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let keys = doc.get("keys").and_then(Value::as_array).ok_or("no \"keys\" array")?;
    let mut out = Vec::new();
    for jwk in keys {
        match parse_jwk(jwk, format) {
            Ok(Some(key)) => out.push(key),
            Ok(None) => {}
            Err(reason) => {
                let kid = jwk.get("kid").and_then(Value::as_str).unwrap_or("-");
                tracing::warn!(kid, reason, "skipping unusable key in JWKS");
            }
        }
    }
    Ok(out)
}

fn parse_jwk(jwk: &Value, format: JwksFormat) -> Result<Option<VerifyKey>, &'static str> {
    let text = |k: &str| jwk.get(k).and_then(Value::as_str);
    let usable = match format {
        JwksFormat::Jwks => text("use").is_none_or(|u| u == "sig"),
        JwksFormat::SpiffeBundle => text("use") == Some("jwt-svid"),
    };
    if !usable {
        return Ok(None);
    }
    if ["d", "p", "q", "dp", "dq", "qi", "k"].iter().any(|k| jwk.get(*k).is_some()) {
        return Err("contains private or symmetric key material");
    }
    let alg = match text("alg") {
        None => None,
        Some(a) => Some(a.parse::<Algorithm>().map_err(|_| "unsupported alg")?),
    };
    let (family, key, parsed) = match (text("kty"), text("crv")) {
        (Some("RSA"), _) => {
            let (n, e) = text("n").zip(text("e")).ok_or("RSA key without n/e")?;
            (Family::Rsa, DecodingKey::from_rsa_components(n, e).map_err(|_| "invalid RSA key")?, None)
        }
        (Some("EC"), Some(crv @ ("P-256" | "P-384"))) => {
            let (x, y) = text("x").zip(text("y")).ok_or("EC key without x/y")?;
            let family = if crv == "P-256" { Family::P256 } else { Family::P384 };
            let key = DecodingKey::from_ec_components(x, y).map_err(|_| "invalid EC key")?;
            (family, key, parse_public(family, x, Some(y)))
        }
        (Some("OKP"), Some("Ed25519")) => {
            let x = text("x").ok_or("OKP key without x")?;
            let key = DecodingKey::from_ed_components(x).map_err(|_| "invalid Ed25519 key")?;
            (Family::Ed25519, key, parse_public(Family::Ed25519, x, None))
        }
        _ => return Err("unsupported key type or curve"),
    };
    Ok(Some(VerifyKey { kid: text("kid").map(str::to_owned), family, alg, key, parsed }))
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    pub(crate) const P256_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    pub(crate) const P256_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    pub(crate) fn ec(kid: &str) -> Value {
        json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": P256_X, "y": P256_Y})
    }

    pub(crate) fn key(jwk: &Value) -> VerifyKey {
        parse_jwk(jwk, JwksFormat::Jwks).expect("ok").expect("usable")
    }

    /// The parsed-key path decides every signature as jsonwebtoken's per-token parse does: real
    /// ES256, ES384 and Ed25519 signatures verify, a changed signature or message does not, nor
    /// does a signature that is not base64url or too long.
    #[test]
    fn parsed_keys_decide_as_jsonwebtoken() {
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{
            ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
        };
        let rng = SystemRandom::new();
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let message = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0";
        let mut cases = Vec::new();
        for (signing, alg, crv, len) in [
            (&ECDSA_P256_SHA256_FIXED_SIGNING, Algorithm::ES256, "P-256", 32),
            (&ECDSA_P384_SHA384_FIXED_SIGNING, Algorithm::ES384, "P-384", 48),
        ] {
            let pair = EcdsaKeyPair::generate(signing).expect("key");
            let point = pair.public_key().as_ref();
            let jwk = json!({"kty": "EC", "crv": crv, "x": b64(&point[1..1 + len]), "y": b64(&point[1 + len..])});
            cases.push((jwk, alg, pair.sign(&rng, message).expect("sign").as_ref().to_vec()));
        }
        let ed = Ed25519KeyPair::generate().expect("key");
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(ed.public_key().as_ref())});
        cases.push((jwk, Algorithm::EdDSA, ed.sign(message).as_ref().to_vec()));
        for (jwk, alg, sig) in cases {
            let k = key(&jwk);
            assert!(k.parsed.is_some(), "{alg:?}: parsed once");
            let mut flipped = sig.clone();
            flipped[3] ^= 1;
            let mut long = sig.clone();
            long.extend_from_slice(&[0; 64]);
            let other_message = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ2In0";
            for (m, s, expected) in [
                (&message[..], b64(&sig), true),
                (&message[..], b64(&flipped), false),
                (&other_message[..], b64(&sig), false),
                (&message[..], b64(&long), false),
                (&message[..], format!("{}=", b64(&sig)), false),
                (&message[..], "not*base64".to_owned(), false),
                (&message[..], String::new(), false),
            ] {
                let old = jsonwebtoken::crypto::verify(&s, m, &k.key, alg).unwrap_or(false);
                assert_eq!(old, expected, "{alg:?}: jsonwebtoken");
                assert_eq!(k.verify(alg, m, &s), Ok(expected), "{alg:?}: parsed key");
            }
        }
        // a point off the curve is not parsed, and fails as before
        let bad = key(&json!({"kty": "EC", "crv": "P-256", "x": P256_X, "y": P256_X}));
        assert!(bad.parsed.is_none());
        assert_eq!(bad.verify(Algorithm::ES256, message, "AAAA"), Ok(false));
    }

    #[test]
    fn jwks_parsing_skips_unusable_keys() {
        let doc = json!({"keys": [
            ec("a"),
            {"kty": "EC", "crv": "P-256", "kid": "priv", "x": P256_X, "y": P256_Y, "d": "secret"},
            {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
            {"kty": "EC", "crv": "P-256", "kid": "enc", "use": "enc", "x": P256_X, "y": P256_Y},
            {"kty": "EC", "crv": "P-521", "kid": "p521", "x": P256_X, "y": P256_Y},
            {"kty": "RSA", "kid": "r", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        ]});
        let keys = parse_jwks(doc.to_string().as_bytes()).expect("parsed");
        let kids: Vec<_> = keys.iter().map(|k| k.kid().unwrap_or_default().to_owned()).collect();
        assert_eq!(kids, ["a", "r", "ed"]);
        assert!(keys[0].fits(Algorithm::ES256) && !keys[0].fits(Algorithm::ES384) && !keys[0].fits(Algorithm::RS256));
        assert!(keys[1].fits(Algorithm::RS256) && keys[1].fits(Algorithm::PS256) && !keys[1].fits(Algorithm::HS256));
        assert!(keys[2].fits(Algorithm::EdDSA) && !keys[2].fits(Algorithm::ES256));
        assert!(parse_jwks(b"{}").is_err());
        assert!(parse_jwks(b"nope").is_err());
    }

    #[test]
    fn spiffe_bundles_keep_only_jwt_svid_keys() {
        let mut svid = ec("jwt");
        svid["use"] = json!("jwt-svid");
        let mut x509 = ec("x509");
        x509["use"] = json!("x509-svid");
        let doc = json!({"keys": [svid, x509, ec("no-use")], "spiffe_sequence": 7, "spiffe_refresh_hint": 300});
        let keys = parse_jwks_as(doc.to_string().as_bytes(), JwksFormat::SpiffeBundle).expect("bundle");
        assert_eq!(keys.iter().map(|k| k.kid()).collect::<Vec<_>>(), [Some("jwt")]);
        // a JWKS reader never uses jwt-svid keys as generic signature keys
        let keys = parse_jwks(doc.to_string().as_bytes()).expect("jwks");
        assert_eq!(keys.iter().map(|k| k.kid()).collect::<Vec<_>>(), [Some("no-use")]);
    }

    #[test]
    fn a_key_naming_its_alg_verifies_only_that_alg() {
        let mut jwk = ec("a");
        jwk["alg"] = json!("ES256");
        let k = key(&jwk);
        assert!(k.fits(Algorithm::ES256));
        let jwk = json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "alg": "PS256", "kid": "r"});
        let k = key(&jwk);
        assert!(k.fits(Algorithm::PS256) && !k.fits(Algorithm::RS256));
        assert_eq!(k.verify(Algorithm::RS256, b"a.b", "c"), Err(KeyError::KeyMismatch));
        assert_eq!(k.verify(Algorithm::PS256, b"a.b", "not-a-signature"), Ok(false));
    }
}
