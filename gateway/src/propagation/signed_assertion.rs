//! `signed_assertion`: the gateway mints a short-lived JWT per upstream request and serves the
//! public keys that verify it.
//!
//! - Header: `alg` (`ES256` or `EdDSA`), `typ: at+jwt` (RFC 9068, so resource servers that insist
//!   on access-token typing — our `sso` crate in strict mode — accept it), `kid` (the RFC 7638
//!   thumbprint of the key).
//! - Claims: `iss` (the gateway), `aud` (the upstream), `sub` (the caller's subject), `client_id`
//!   and `act: {"sub": <client id>}` (RFC 8693 §4.1: the calling client acts for the subject),
//!   `scope`, `tenant` (when the caller has one), `auth_method` (`bearer`, `dpop`, `workload`),
//!   `idp` (the caller's own issuer: `sub` is unique only within it), `jti` (128 random bits),
//!   `iat`, `exp` (`iat` + at most 60 s).
//! - **No caching**: every request gets a fresh assertion with its own `jti`, so an upstream that
//!   refuses replays (remembers each `jti` until `exp`) works, and a stolen assertion is good for
//!   one request within its lifetime. An ES256 signature costs tens of microseconds.
//! - Keys: generated at start (or one PKCS#8 key from a file). Generated keys rotate every
//!   `rotation` period; the *next* key is published one period before it signs, and a replaced key
//!   stays published for the grace period, so a verifier's cached JWKS always knows the key of any
//!   live assertion.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use mcp_enterprise_config::AssertionAlgorithm;
use mcp_enterprise_core::Principal;
use mcp_enterprise_core::clock::{Clock, SystemClock};
use serde_json::{Map, Value, json};

use super::PropagationError;

/// The JWKS path under the issuer's path.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// The RFC 8414 metadata path (followed by the issuer's path).
pub const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";
/// The longest lifetime an assertion may have.
pub const MAX_LIFETIME: Duration = Duration::from_secs(60);

/// One signing key.
struct SigningKey {
    kid: String,
    pair: KeyPairKind,
    jwk: Value,
}

enum KeyPairKind {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// Why a signing key cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The file cannot be read.
    #[error("cannot read the key file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key is not a PKCS#8 key of the configured algorithm.
    #[error("{0}")]
    Invalid(String),
}

impl SigningKey {
    fn generate(alg: AssertionAlgorithm) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let failed = |_| KeyError::Invalid("key generation failed".into());
        let der = match alg {
            AssertionAlgorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng).map_err(failed)?.as_ref().to_vec(),
            _ => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).map_err(failed)?.as_ref().to_vec()
            }
        };
        Self::from_pkcs8(alg, &der)
    }

    fn from_pkcs8(alg: AssertionAlgorithm, der: &[u8]) -> Result<Self, KeyError> {
        let (pair, mut jwk) = match alg {
            AssertionAlgorithm::EdDSA => {
                let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                    .map_err(|_| KeyError::Invalid("not a PKCS#8 Ed25519 private key (algorithm EdDSA)".into()))?;
                let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
                (KeyPairKind::Ed(pair), json!({"crv": "Ed25519", "kty": "OKP", "x": x}))
            }
            _ => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|_| KeyError::Invalid("not a PKCS#8 P-256 private key (algorithm ES256)".into()))?;
                let point = pair.public_key().as_ref();
                let (x, y) = (URL_SAFE_NO_PAD.encode(&point[1..33]), URL_SAFE_NO_PAD.encode(&point[33..65]));
                (KeyPairKind::Ec(pair), json!({"crv": "P-256", "kty": "EC", "x": x, "y": y}))
            }
        };
        // RFC 7638: the thumbprint of the required members in lexicographic order (json! keeps
        // insertion order, which is already lexicographic above)
        let kid =
            URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, jwk.to_string().as_bytes()));
        jwk["kid"] = Value::String(kid.clone());
        jwk["alg"] = Value::String(alg_name(alg).to_owned());
        jwk["use"] = Value::String("sig".to_owned());
        Ok(Self { kid, pair, jwk })
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, PropagationError> {
        match &self.pair {
            KeyPairKind::Ec(pair) => pair
                .sign(&SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| PropagationError::Signing),
            KeyPairKind::Ed(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }
}

fn alg_name(alg: AssertionAlgorithm) -> &'static str {
    match alg {
        AssertionAlgorithm::EdDSA => "EdDSA",
        _ => "ES256",
    }
}

/// Reads a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) or DER file.
pub(crate) fn read_pkcs8(path: &std::path::Path) -> Result<Vec<u8>, KeyError> {
    let bytes = std::fs::read(path).map_err(|source| KeyError::Read { path: path.display().to_string(), source })?;
    let Ok(text) = std::str::from_utf8(&bytes) else { return Ok(bytes) };
    let Some(start) = text.find("-----BEGIN PRIVATE KEY-----") else {
        return Err(KeyError::Invalid(format!("{}: not a PKCS#8 PEM private key (BEGIN PRIVATE KEY)", path.display())));
    };
    let body = &text[start + "-----BEGIN PRIVATE KEY-----".len()..];
    let end = body
        .find("-----END PRIVATE KEY-----")
        .ok_or_else(|| KeyError::Invalid(format!("{}: the PEM block has no END PRIVATE KEY line", path.display())))?;
    let b64: String = body[..end].chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD.decode(b64).map_err(|_| KeyError::Invalid(format!("{}: the PEM body is not base64", path.display())))
}

/// The current key, the next one (published, not yet signing) and replaced ones still published.
#[derive(Debug)]
struct KeyRing {
    current: Arc<SigningKey>,
    since: Duration,
    next: Option<Arc<SigningKey>>,
    retired: Vec<(Arc<SigningKey>, Duration)>,
}

/// Mints assertions for one upstream. Cheap to clone.
#[derive(Clone)]
pub struct SignedAssertion {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    audience: String,
    algorithm: AssertionAlgorithm,
    lifetime: Duration,
    rotation: Option<Duration>,
    grace: Duration,
    ring: RwLock<KeyRing>,
    clock: Arc<dyn Clock>,
    rng: SystemRandom,
}

impl std::fmt::Debug for SignedAssertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedAssertion")
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .field("algorithm", &self.inner.algorithm)
            .field("lifetime", &self.inner.lifetime)
            .finish_non_exhaustive()
    }
}

/// Builds a [`SignedAssertion`].
#[derive(Debug)]
#[must_use]
pub struct SignedAssertionBuilder {
    issuer: String,
    audience: String,
    algorithm: AssertionAlgorithm,
    lifetime: Duration,
    rotation: Duration,
    grace: Duration,
    key_file: Option<std::path::PathBuf>,
    clock: Arc<dyn Clock>,
}

impl SignedAssertion {
    /// Assertions from `issuer` (the gateway's issuer URL) for `audience` (the upstream): ES256,
    /// 60 s, a generated key rotated hourly with 5 minutes of grace.
    pub fn builder(issuer: &str, audience: &str) -> SignedAssertionBuilder {
        SignedAssertionBuilder {
            issuer: issuer.trim_end_matches('/').to_owned(),
            audience: audience.to_owned(),
            algorithm: AssertionAlgorithm::ES256,
            lifetime: MAX_LIFETIME,
            rotation: Duration::from_secs(3600),
            grace: Duration::from_secs(300),
            key_file: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// The issuer identifier (`iss`).
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The audience (`aud`).
    pub fn audience(&self) -> &str {
        &self.inner.audience
    }

    /// The path of the issuer URL (`""` for an origin).
    fn issuer_path(&self) -> &str {
        let rest = self.inner.issuer.split_once("://").map_or("", |(_, r)| r);
        rest.find('/').map_or("", |i| &rest[i..])
    }

    /// Where the JWKS is served (a path on the gateway).
    pub fn jwks_path(&self) -> String {
        format!("{}{JWKS_PATH}", self.issuer_path())
    }

    /// Where the RFC 8414 metadata is served (a path on the gateway).
    pub fn metadata_path(&self) -> String {
        format!("{METADATA_PATH}{}", self.issuer_path())
    }

    /// The `kid` signing now.
    pub fn current_kid(&self) -> String {
        self.rotate_if_due();
        self.read().current.kid.clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, KeyRing> {
        self.inner.ring.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces the signing key now: the published next key signs from now on, a new next key is
    /// made, and the replaced key stays published for the grace period. A key loaded from a file
    /// is never replaced (returns `false`).
    pub fn rotate(&self) -> bool {
        if self.inner.rotation.is_none() {
            return false;
        }
        let now = self.inner.clock.now();
        let Ok(fresh) = SigningKey::generate(self.inner.algorithm) else { return false };
        let mut ring = self.inner.ring.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let next = ring.next.replace(Arc::new(fresh));
        if let Some(next) = next {
            let old = std::mem::replace(&mut ring.current, next);
            ring.retired.push((old, now));
        }
        ring.since = now;
        let grace = self.inner.grace;
        ring.retired.retain(|(_, at)| *at + grace > now);
        true
    }

    fn rotate_if_due(&self) {
        let Some(period) = self.inner.rotation else { return };
        let due = self.read().since + period <= self.inner.clock.now();
        if due {
            self.rotate();
        }
    }

    /// The public JWK Set: the signing key, the next one and replaced ones within their grace.
    pub fn jwks(&self) -> Value {
        self.rotate_if_due();
        let now = self.inner.clock.now();
        let ring = self.read();
        let mut keys = vec![ring.current.jwk.clone()];
        keys.extend(ring.next.iter().map(|k| k.jwk.clone()));
        keys.extend(ring.retired.iter().filter(|(_, at)| *at + self.inner.grace > now).map(|(k, _)| k.jwk.clone()));
        json!({ "keys": keys })
    }

    /// The RFC 8414 metadata naming the JWKS.
    pub fn metadata(&self) -> Value {
        let origin = match self.inner.issuer.split_once("://") {
            Some((scheme, rest)) => format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest)),
            None => self.inner.issuer.clone(),
        };
        json!({
            "issuer": self.inner.issuer,
            "jwks_uri": format!("{origin}{}", self.jwks_path()),
            "response_types_supported": [],
            "grant_types_supported": [],
            "token_endpoint_auth_methods_supported": ["none"],
        })
    }

    /// Mints the assertion for `principal`.
    pub fn mint(&self, principal: &Principal) -> Result<String, PropagationError> {
        self.rotate_if_due();
        let now = self.inner.clock.now().as_secs();
        let mut jti = [0u8; 16];
        self.inner.rng.fill(&mut jti).map_err(|_| PropagationError::Signing)?;
        let key = self.read().current.clone();
        let header = json!({"alg": alg_name(self.inner.algorithm), "typ": "at+jwt", "kid": key.kid});
        let mut claims = Map::new();
        claims.insert("iss".into(), self.inner.issuer.clone().into());
        claims.insert("aud".into(), self.inner.audience.clone().into());
        claims.insert("sub".into(), principal.subject().into());
        let client = principal.client_id().unwrap_or(principal.subject());
        claims.insert("client_id".into(), client.into());
        if let Some(client_id) = principal.client_id() {
            claims.insert("act".into(), json!({ "sub": client_id }));
        }
        if !principal.scopes().is_empty() {
            claims.insert("scope".into(), principal.scopes().join(" ").into());
        }
        if let Some(tenant) = principal.claims().get("tenant") {
            claims.insert("tenant".into(), tenant.clone());
        }
        claims.insert("auth_method".into(), principal.auth_method().as_str().into());
        claims.insert("idp".into(), principal.issuer().into());
        claims.insert("jti".into(), URL_SAFE_NO_PAD.encode(jti).into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), (now + self.inner.lifetime.as_secs()).into());
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string())
        );
        let signature = key.sign(signing_input.as_bytes())?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    /// The HTTP answer for a GET of the JWKS or the metadata (`None` for another path).
    pub(crate) fn document(&self, path: &str) -> Option<Response<Full<Bytes>>> {
        let (doc, max_age) = if path == self.jwks_path() {
            // short, so verifiers see the next key well before it signs
            (self.jwks(), 300)
        } else if path == self.metadata_path() {
            (self.metadata(), 3600)
        } else {
            return None;
        };
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CACHE_CONTROL, format!("public, max-age={max_age}"))
            .body(Full::new(Bytes::from(doc.to_string())))
            .ok()
    }
}

impl SignedAssertionBuilder {
    /// The signing algorithm (default ES256).
    pub fn algorithm(mut self, algorithm: AssertionAlgorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// The lifetime of each assertion, 1 s to 60 s (default 60 s).
    pub fn lifetime(mut self, lifetime: Duration) -> Result<Self, KeyError> {
        if lifetime < Duration::from_secs(1) || lifetime > MAX_LIFETIME {
            return Err(KeyError::Invalid("the assertion lifetime must be 1 to 60 seconds".into()));
        }
        self.lifetime = lifetime;
        Ok(self)
    }

    /// How often a generated key is replaced, and how long a replaced key stays published (at
    /// least the lifetime).
    pub fn rotation(mut self, every: Duration, grace: Duration) -> Self {
        self.rotation = every;
        self.grace = grace;
        self
    }

    /// Signs with this PKCS#8 key (PEM or DER) instead of generated, rotating keys.
    pub fn key_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.key_file = Some(path.into());
        self
    }

    /// The clock (tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Loads or makes the keys.
    pub fn build(self) -> Result<SignedAssertion, KeyError> {
        if self.grace < self.lifetime {
            return Err(KeyError::Invalid("the rotation grace must be at least the assertion lifetime".into()));
        }
        if self.rotation.is_zero() {
            return Err(KeyError::Invalid("the rotation period must not be zero".into()));
        }
        let (current, next, rotation) = match &self.key_file {
            Some(path) => (SigningKey::from_pkcs8(self.algorithm, &read_pkcs8(path)?)?, None, None),
            None => (
                SigningKey::generate(self.algorithm)?,
                Some(Arc::new(SigningKey::generate(self.algorithm)?)),
                Some(self.rotation),
            ),
        };
        let ring = KeyRing { current: Arc::new(current), since: self.clock.now(), next, retired: Vec::new() };
        Ok(SignedAssertion {
            inner: Arc::new(Inner {
                issuer: self.issuer,
                audience: self.audience,
                algorithm: self.algorithm,
                lifetime: self.lifetime,
                rotation,
                grace: self.grace,
                ring: RwLock::new(ring),
                clock: self.clock,
                rng: SystemRandom::new(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    use mcp_enterprise_core::clock::ManualClock;
    use mcp_enterprise_core::{AuthMethod, PrincipalKind};

    use super::*;

    fn alice() -> Principal {
        Principal::builder("https://idp.example", "alice", PrincipalKind::User, AuthMethod::Dpop)
            .client_id("app-1")
            .scopes(["mcp", "mcp:read"])
            .claim("tenant", json!("t-9"))
            .build()
    }

    fn decode(token: &str, jwks: &Value, alg: Algorithm) -> Result<Value, jsonwebtoken::errors::Error> {
        let header = jsonwebtoken::decode_header(token)?;
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).expect("jwks");
        let jwk = set
            .find(header.kid.as_deref().unwrap_or_default())
            .ok_or(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat)?;
        let mut validation = Validation::new(alg);
        validation.set_audience(&["http://up.example/mcp"]);
        validation.set_issuer(&["https://gw.example"]);
        validation.leeway = 0;
        Ok(jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk)?, &validation)?.claims)
    }

    #[test]
    fn claims_header_and_unique_jti() {
        for (alg, name) in
            [(AssertionAlgorithm::ES256, Algorithm::ES256), (AssertionAlgorithm::EdDSA, Algorithm::EdDSA)]
        {
            let minter = SignedAssertion::builder("https://gw.example/", "http://up.example/mcp")
                .algorithm(alg)
                .lifetime(Duration::from_secs(30))
                .expect("lifetime")
                .build()
                .expect("keys");
            let token = minter.mint(&alice()).expect("mint");
            let header = jsonwebtoken::decode_header(&token).expect("header");
            assert_eq!(header.typ.as_deref(), Some("at+jwt"));
            assert_eq!(header.kid, Some(minter.current_kid()));
            let claims = decode(&token, &minter.jwks(), name).expect("verifies");
            assert_eq!(claims["iss"], "https://gw.example");
            assert_eq!(claims["aud"], "http://up.example/mcp");
            assert_eq!(claims["sub"], "alice");
            assert_eq!(claims["act"], json!({"sub": "app-1"}));
            assert_eq!(claims["client_id"], "app-1");
            assert_eq!(claims["scope"], "mcp mcp:read");
            assert_eq!(claims["tenant"], "t-9");
            assert_eq!(claims["auth_method"], "dpop");
            assert_eq!(claims["idp"], "https://idp.example");
            assert_eq!(claims["exp"].as_u64().expect("exp") - claims["iat"].as_u64().expect("iat"), 30);
            let again = decode(&minter.mint(&alice()).expect("mint"), &minter.jwks(), name).expect("verifies");
            assert_ne!(claims["jti"], again["jti"], "every assertion has its own jti");
        }
    }

    #[test]
    fn no_client_means_no_act() {
        let minter = SignedAssertion::builder("https://gw.example", "http://up.example/mcp").build().expect("keys");
        let p = Principal::builder("https://idp", "svc", PrincipalKind::ServiceClient, AuthMethod::Bearer).build();
        let claims = decode(&minter.mint(&p).expect("mint"), &minter.jwks(), Algorithm::ES256).expect("verifies");
        assert!(claims.get("act").is_none() && claims.get("scope").is_none() && claims.get("tenant").is_none());
        assert_eq!(claims["client_id"], "svc");
    }

    #[test]
    fn rotation_publishes_next_and_keeps_previous_for_the_grace() {
        let clock = ManualClock::at(1_000_000);
        let minter = SignedAssertion::builder("https://gw.example", "http://up.example/mcp")
            .lifetime(Duration::from_secs(60))
            .expect("lifetime")
            .rotation(Duration::from_secs(600), Duration::from_secs(120))
            .clock(Arc::new(clock.clone()))
            .build()
            .expect("keys");
        let kids = |m: &SignedAssertion| -> Vec<String> {
            m.jwks()["keys"]
                .as_array()
                .expect("keys")
                .iter()
                .map(|k| k["kid"].as_str().expect("kid").to_owned())
                .collect()
        };
        let first = minter.current_kid();
        let published = kids(&minter);
        assert_eq!(published.len(), 2, "current and next");
        let old_token = minter.mint(&alice()).expect("mint");
        clock.advance(Duration::from_secs(599));
        assert_eq!(minter.current_kid(), first);
        clock.advance(Duration::from_secs(1));
        let second = minter.current_kid();
        assert_ne!(second, first);
        assert_eq!(second, published[1], "the published next key signs after rotation");
        let now = kids(&minter);
        assert_eq!(now.len(), 3, "current, next and the replaced key");
        assert!(now.contains(&first));
        // a verifier's key set fetched now still verifies the assertion signed before the rotation
        let jwks = minter.jwks();
        let header = jsonwebtoken::decode_header(&old_token).expect("header");
        assert_eq!(header.kid.as_deref(), Some(first.as_str()));
        assert!(jwks["keys"].as_array().expect("keys").iter().any(|k| k["kid"] == first.as_str()));
        clock.advance(Duration::from_secs(120));
        assert!(!kids(&minter).contains(&first), "gone after the grace");
    }

    #[test]
    fn key_files_and_bad_settings() {
        let dir = tempfile::tempdir().expect("dir");
        let rng = SystemRandom::new();
        let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
        let pem =
            format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", STANDARD.encode(der.as_ref()));
        let path = dir.path().join("key.pem");
        std::fs::write(&path, pem).expect("write");
        let minter = SignedAssertion::builder("https://gw.example", "http://up.example/mcp")
            .key_file(&path)
            .build()
            .expect("pem");
        assert_eq!(minter.jwks()["keys"].as_array().map(Vec::len), Some(1));
        assert!(!minter.rotate(), "a key from a file is never replaced");
        decode(&minter.mint(&alice()).expect("mint"), &minter.jwks(), Algorithm::ES256).expect("verifies");
        // wrong algorithm for the key, a missing file, a non-key
        let wrong = SignedAssertion::builder("https://gw.example", "x")
            .algorithm(AssertionAlgorithm::EdDSA)
            .key_file(&path)
            .build();
        assert!(wrong.expect_err("EdDSA with a P-256 key").to_string().contains("Ed25519"));
        let missing = SignedAssertion::builder("https://gw.example", "x").key_file(dir.path().join("nope")).build();
        assert!(matches!(missing, Err(KeyError::Read { .. })));
        std::fs::write(&path, "hello").expect("write");
        assert!(SignedAssertion::builder("https://gw.example", "x").key_file(&path).build().is_err());
        assert!(SignedAssertion::builder("https://gw.example", "x").lifetime(Duration::from_secs(61)).is_err());
        assert!(SignedAssertion::builder("https://gw.example", "x").lifetime(Duration::ZERO).is_err());
        let short_grace = SignedAssertion::builder("https://gw.example", "x")
            .rotation(Duration::from_secs(600), Duration::from_secs(10))
            .build();
        assert!(short_grace.is_err());
    }

    #[test]
    fn documents_and_paths() {
        let minter = SignedAssertion::builder("http://127.0.0.1:9/gw", "x").build().expect("keys");
        assert_eq!(minter.jwks_path(), "/gw/.well-known/jwks.json");
        assert_eq!(minter.metadata_path(), "/.well-known/oauth-authorization-server/gw");
        assert_eq!(minter.metadata()["jwks_uri"], "http://127.0.0.1:9/gw/.well-known/jwks.json");
        assert_eq!(minter.metadata()["issuer"], "http://127.0.0.1:9/gw");
        assert!(minter.document("/gw/.well-known/jwks.json").is_some());
        assert!(minter.document("/elsewhere").is_none());
        let root = SignedAssertion::builder("http://127.0.0.1:9", "x").build().expect("keys");
        assert_eq!(root.metadata_path(), METADATA_PATH);
        assert_eq!(root.jwks_path(), JWKS_PATH);
    }
}
