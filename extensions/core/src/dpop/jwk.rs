//! Public JWKs from proofs: parsing (refusing private parts), signature verification with
//! aws-lc-rs, and RFC 7638 thumbprints.

use aws_lc_rs::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// A JWS algorithm allowed for DPoP proofs: asymmetric only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProofAlg {
    /// ECDSA P-256 SHA-256.
    Es256,
    /// ECDSA P-384 SHA-384.
    Es384,
    /// ECDSA P-521 SHA-512.
    Es512,
    /// RSASSA-PKCS1-v1_5 SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 SHA-512.
    Rs512,
    /// RSASSA-PSS SHA-256.
    Ps256,
    /// RSASSA-PSS SHA-384.
    Ps384,
    /// RSASSA-PSS SHA-512.
    Ps512,
    /// Ed25519, under its classic name `EdDSA`.
    EdDsa,
    /// Ed25519, under its fully-specified name `Ed25519` (RFC 9864).
    Ed25519,
}

impl ProofAlg {
    /// Every supported algorithm.
    pub const ALL: [Self; 11] = [
        Self::Es256,
        Self::Es384,
        Self::Es512,
        Self::Rs256,
        Self::Rs384,
        Self::Rs512,
        Self::Ps256,
        Self::Ps384,
        Self::Ps512,
        Self::EdDsa,
        Self::Ed25519,
    ];

    /// The JWS name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::Es512 => "ES512",
            Self::Rs256 => "RS256",
            Self::Rs384 => "RS384",
            Self::Rs512 => "RS512",
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
            Self::EdDsa => "EdDSA",
            Self::Ed25519 => "Ed25519",
        }
    }

    /// Parses a JWS name (exact, case-sensitive as JOSE requires).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

/// A proof's public key, checked.
#[derive(Debug, Clone)]
pub struct ProofKey {
    kind: KeyKind,
    thumbprint: String,
}

/// A [`ProofKey`] parsed once for the algorithm it is used with (EC and Ed25519 keys: the curve
/// point is decoded and checked once, not on every verification), for keys seen again.
pub struct ReadyKey {
    key: ProofKey,
    parsed: Option<signature::ParsedPublicKey>,
}

impl std::fmt::Debug for ReadyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadyKey").field("key", &self.key).field("parsed", &self.parsed.is_some()).finish()
    }
}

impl ReadyKey {
    /// `key`, parsed for `alg` when it is an EC or Ed25519 key that fits it.
    pub fn new(key: ProofKey, alg: ProofAlg) -> Self {
        let algorithm: Option<&'static dyn VerificationAlgorithm> = match (&key.kind, alg) {
            (KeyKind::Ec { .. }, ProofAlg::Es256) => Some(&signature::ECDSA_P256_SHA256_FIXED),
            (KeyKind::Ec { .. }, ProofAlg::Es384) => Some(&signature::ECDSA_P384_SHA384_FIXED),
            (KeyKind::Ec { .. }, ProofAlg::Es512) => Some(&signature::ECDSA_P521_SHA512_FIXED),
            (KeyKind::Ed25519 { .. }, ProofAlg::EdDsa | ProofAlg::Ed25519) => Some(&signature::ED25519),
            _ => None,
        };
        let bytes = match &key.kind {
            KeyKind::Ec { point, .. } => point.as_slice(),
            KeyKind::Ed25519 { x } => x.as_slice(),
            KeyKind::Rsa { .. } => &[],
        };
        let parsed = algorithm.filter(|_| key.fits(alg)).and_then(|a| signature::ParsedPublicKey::new(a, bytes).ok());
        Self { key, parsed }
    }

    /// The key.
    pub fn key(&self) -> &ProofKey {
        &self.key
    }

    /// Verifies a JWS signature over `message` with `alg` (the one the key was made ready for).
    pub fn verify(&self, alg: ProofAlg, message: &[u8], sig: &[u8]) -> bool {
        match &self.parsed {
            Some(parsed) => parsed.verify_sig(message, sig).is_ok(),
            None => self.key.verify(alg, message, sig),
        }
    }
}

#[derive(Debug, Clone)]
enum KeyKind {
    Ec { crv: &'static str, point: Vec<u8> },
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ed25519 { x: Vec<u8> },
}

/// Why a `jwk` header is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwkError {
    /// It holds private key material.
    Private,
    /// A key type or curve not supported.
    Unsupported,
    /// Missing or badly encoded members.
    Malformed,
}

const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

fn b64(value: Option<&Value>) -> Result<Vec<u8>, JwkError> {
    let text = value.and_then(Value::as_str).ok_or(JwkError::Malformed)?;
    URL_SAFE_NO_PAD.decode(text).map_err(|_| JwkError::Malformed)
}

/// RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace. Written
/// straight into the hash: the names are fixed ASCII and the values base64url (checked by their
/// decoding before), so no character needs escaping; one that would is escaped by serde_json.
fn thumbprint(members: &[(&str, &str)]) -> String {
    fn put(ctx: &mut aws_lc_rs::digest::Context, text: &str) {
        if text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            ctx.update(b"\"");
            ctx.update(text.as_bytes());
            ctx.update(b"\"");
        } else {
            ctx.update(Value::String(text.to_owned()).to_string().as_bytes());
        }
    }
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(b"{");
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            ctx.update(b",");
        }
        put(&mut ctx, k);
        ctx.update(b":");
        put(&mut ctx, v);
    }
    ctx.update(b"}");
    URL_SAFE_NO_PAD.encode(ctx.finish())
}

impl ProofKey {
    /// Parses the `jwk` header of a proof.
    pub fn parse(jwk: &Map<String, Value>) -> Result<Self, JwkError> {
        if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
            return Err(JwkError::Private);
        }
        let text = |k: &str| jwk.get(k).and_then(Value::as_str).ok_or(JwkError::Malformed);
        match text("kty")? {
            "EC" => {
                let crv = match text("crv")? {
                    "P-256" => "P-256",
                    "P-384" => "P-384",
                    "P-521" => "P-521",
                    _ => return Err(JwkError::Unsupported),
                };
                let (x, y) = (b64(jwk.get("x"))?, b64(jwk.get("y"))?);
                let len = match crv {
                    "P-256" => 32,
                    "P-384" => 48,
                    _ => 66,
                };
                if x.len() != len || y.len() != len {
                    return Err(JwkError::Malformed);
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                let tp = thumbprint(&[("crv", crv), ("kty", "EC"), ("x", text("x")?), ("y", text("y")?)]);
                Ok(Self { kind: KeyKind::Ec { crv, point }, thumbprint: tp })
            }
            "RSA" => {
                let (n, e) = (b64(jwk.get("n"))?, b64(jwk.get("e"))?);
                if n.len() < 256 {
                    return Err(JwkError::Unsupported); // below 2048 bits
                }
                let tp = thumbprint(&[("e", text("e")?), ("kty", "RSA"), ("n", text("n")?)]);
                Ok(Self { kind: KeyKind::Rsa { n, e }, thumbprint: tp })
            }
            "OKP" => {
                if text("crv")? != "Ed25519" {
                    return Err(JwkError::Unsupported);
                }
                let x = b64(jwk.get("x"))?;
                if x.len() != 32 {
                    return Err(JwkError::Malformed);
                }
                let tp = thumbprint(&[("crv", "Ed25519"), ("kty", "OKP"), ("x", text("x")?)]);
                Ok(Self { kind: KeyKind::Ed25519 { x }, thumbprint: tp })
            }
            _ => Err(JwkError::Unsupported),
        }
    }

    /// The RFC 7638 SHA-256 thumbprint, base64url.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// Whether the key type fits the algorithm.
    pub fn fits(&self, alg: ProofAlg) -> bool {
        match (&self.kind, alg) {
            (KeyKind::Ec { crv, .. }, ProofAlg::Es256) => *crv == "P-256",
            (KeyKind::Ec { crv, .. }, ProofAlg::Es384) => *crv == "P-384",
            (KeyKind::Ec { crv, .. }, ProofAlg::Es512) => *crv == "P-521",
            (KeyKind::Rsa { .. }, a) => matches!(
                a,
                ProofAlg::Rs256
                    | ProofAlg::Rs384
                    | ProofAlg::Rs512
                    | ProofAlg::Ps256
                    | ProofAlg::Ps384
                    | ProofAlg::Ps512
            ),
            (KeyKind::Ed25519 { .. }, ProofAlg::EdDsa | ProofAlg::Ed25519) => true,
            _ => false,
        }
    }

    /// Verifies a JWS signature over `message`.
    pub fn verify(&self, alg: ProofAlg, message: &[u8], sig: &[u8]) -> bool {
        match &self.kind {
            KeyKind::Ec { point, .. } => {
                let algorithm: &dyn VerificationAlgorithm = match alg {
                    ProofAlg::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
                    ProofAlg::Es384 => &signature::ECDSA_P384_SHA384_FIXED,
                    ProofAlg::Es512 => &signature::ECDSA_P521_SHA512_FIXED,
                    _ => return false,
                };
                UnparsedPublicKey::new(algorithm, point).verify(message, sig).is_ok()
            }
            KeyKind::Rsa { n, e } => {
                let params = match alg {
                    ProofAlg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    ProofAlg::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    ProofAlg::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    ProofAlg::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
                    ProofAlg::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
                    ProofAlg::Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
                    _ => return false,
                };
                RsaPublicKeyComponents { n: n.as_slice(), e: e.as_slice() }.verify(params, message, sig).is_ok()
            }
            KeyKind::Ed25519 { x } => {
                matches!(alg, ProofAlg::EdDsa | ProofAlg::Ed25519)
                    && UnparsedPublicKey::new(&signature::ED25519, x).verify(message, sig).is_ok()
            }
        }
    }
}

/// The RFC 7638 thumbprint of a public JWK given as JSON (for clients and tests).
pub fn jwk_thumbprint(jwk: &Value) -> Option<String> {
    ProofKey::parse(jwk.as_object()?).ok().map(|k| k.thumbprint)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rfc7638_example_thumbprint() {
        // RFC 7638 §3.1
        let jwk = json!({"kty": "RSA", "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"});
        assert_eq!(jwk_thumbprint(&jwk).as_deref(), Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"));
    }

    #[test]
    fn private_and_unsupported_keys() {
        let ec = json!({"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
        let key = ProofKey::parse(ec.as_object().expect("obj")).expect("public EC key");
        assert!(key.fits(ProofAlg::Es256) && !key.fits(ProofAlg::Es384) && !key.fits(ProofAlg::Rs256));
        let mut private = ec.clone();
        private["d"] = json!("jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI");
        assert_eq!(ProofKey::parse(private.as_object().expect("obj")).map(|_| ()), Err(JwkError::Private));
        let oct = json!({"kty": "oct", "k": "c2VjcmV0"});
        assert_eq!(ProofKey::parse(oct.as_object().expect("obj")).map(|_| ()), Err(JwkError::Private));
        let short = json!({"kty": "EC", "crv": "P-256", "x": "AQAB", "y": "AQAB"});
        assert_eq!(ProofKey::parse(short.as_object().expect("obj")).map(|_| ()), Err(JwkError::Malformed));
        let weird = json!({"kty": "EC", "crv": "secp256k1", "x": "AQAB", "y": "AQAB"});
        assert_eq!(ProofKey::parse(weird.as_object().expect("obj")).map(|_| ()), Err(JwkError::Unsupported));
        assert_eq!(ProofAlg::parse("ES512"), Some(ProofAlg::Es512));
        assert_eq!(ProofAlg::parse("HS256"), None);
        assert_eq!(ProofAlg::parse("none"), None);
    }
}
