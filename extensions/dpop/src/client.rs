//! The client side: a key that signs a fresh proof per request, and a tower layer for outgoing
//! requests that adds proofs, learns server nonces and retries once when told to use one.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, Request, Response, StatusCode, header};
use mcp_enterprise_core::clock::{Clock, SystemClock};
use mcp_enterprise_core::headers::{DPOP, DPOP_NONCE};
use serde_json::{Value, json};
use tower_layer::Layer;
use tower_service::Service;

use crate::htu;
use crate::jwk::jwk_thumbprint;
use crate::proof::access_token_hash;
use crate::replay::BoxFuture;

/// The client key type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientKeyAlg {
    /// ECDSA P-256 (the default, as SEP-1932 recommends).
    #[default]
    Es256,
    /// Ed25519.
    EdDsa,
}

enum Key {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

/// A DPoP key pair that signs proofs.
pub struct DpopSigner {
    key: Key,
    jwk: Value,
    thumbprint: String,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for DpopSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopSigner").field("jkt", &self.thumbprint).finish_non_exhaustive()
    }
}

/// Why a key could not be made or a proof signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DPoP signing failed: {0}")]
pub struct SignError(&'static str);

impl DpopSigner {
    /// A new random key.
    pub fn generate(alg: ClientKeyAlg) -> Result<Self, SignError> {
        let rng = SystemRandom::new();
        let (key, jwk) = match alg {
            ClientKeyAlg::Es256 => {
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| SignError("key generation"))?;
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
                    .map_err(|_| SignError("key generation"))?;
                let p = pair.public_key().as_ref();
                let jwk = json!({"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..65])});
                (Key::Es256(pair), jwk)
            }
            ClientKeyAlg::EdDsa => {
                let pair = Ed25519KeyPair::generate().map_err(|_| SignError("key generation"))?;
                let jwk =
                    json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref())});
                (Key::EdDsa(pair), jwk)
            }
        };
        let thumbprint = jwk_thumbprint(&jwk).ok_or(SignError("thumbprint"))?;
        Ok(Self { key, jwk, thumbprint, clock: Arc::new(SystemClock) })
    }

    /// Uses another clock (tests).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The public JWK.
    pub fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    /// The RFC 7638 thumbprint (what an AS puts in `cnf.jkt`).
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// Signs an arbitrary JWS with this key (`alg` is set to the key's algorithm).
    pub fn sign_jws(&self, header: &Value, claims: &Value) -> Result<String, SignError> {
        let mut header = header.clone();
        header["alg"] = json!(match self.key {
            Key::Es256(_) => "ES256",
            Key::EdDsa(_) => "EdDSA",
        });
        let message =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let rng = SystemRandom::new();
        let sig = match &self.key {
            Key::Es256(pair) => {
                pair.sign(&rng, message.as_bytes()).map_err(|_| SignError("signing"))?.as_ref().to_vec()
            }
            Key::EdDsa(pair) => pair.sign(message.as_bytes()).as_ref().to_vec(),
        };
        Ok(format!("{message}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }

    /// A proof for `method` `url` (query and fragment are dropped from `htu`), bound to
    /// `access_token` (`ath`) when given, carrying `nonce` when given. Every call has a new `jti`.
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<String, SignError> {
        let htu = htu::normalize(url).ok_or(SignError("the URL is not an absolute http(s) URL"))?;
        let mut jti = [0u8; 16];
        SystemRandom::new().fill(&mut jti).map_err(|_| SignError("randomness"))?;
        let header = json!({"typ": "dpop+jwt", "jwk": self.jwk});
        let mut claims =
            json!({"jti": URL_SAFE_NO_PAD.encode(jti), "htm": method, "htu": htu, "iat": self.clock.now().as_secs()});
        if let Some(token) = access_token {
            claims["ath"] = json!(access_token_hash(token));
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        self.sign_jws(&header, &claims)
    }
}

/// Adds DPoP proofs to outgoing requests. A request carrying `Authorization: DPoP <token>` gets a
/// proof with `ath`; others (e.g. a token request) get one without.
#[derive(Clone, Debug)]
#[must_use]
pub struct DpopClientLayer {
    signer: Arc<DpopSigner>,
    nonces: Arc<Mutex<HashMap<String, String>>>,
}

impl DpopClientLayer {
    /// Signs with `signer`.
    pub fn new(signer: Arc<DpopSigner>) -> Self {
        Self { signer, nonces: Arc::new(Mutex::new(HashMap::new())) }
    }
}

impl<S> Layer<S> for DpopClientLayer {
    type Service = DpopClient<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DpopClient { inner, signer: self.signer.clone(), nonces: self.nonces.clone() }
    }
}

/// The service made by [`DpopClientLayer`]. Request bodies must be `Clone` (a request told to use
/// a nonce is sent again once).
#[derive(Clone, Debug)]
pub struct DpopClient<S> {
    inner: S,
    signer: Arc<DpopSigner>,
    nonces: Arc<Mutex<HashMap<String, String>>>,
}

fn origin_of(uri: &http::Uri) -> String {
    format!("{}://{}", uri.scheme_str().unwrap_or("https"), uri.authority().map(|a| a.as_str()).unwrap_or(""))
}

impl<S, B, ResB> Service<Request<B>> for DpopClient<S>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: From<SignError>,
    B: Clone + Send + 'static,
    ResB: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<ResB>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut service = std::mem::replace(&mut self.inner, clone);
        let signer = self.signer.clone();
        let nonces = self.nonces.clone();
        Box::pin(async move {
            let origin = origin_of(req.uri());
            let url = req.uri().to_string();
            let token = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
                v.split_once(' ').filter(|(s, _)| s.eq_ignore_ascii_case("dpop")).map(|(_, t)| t.trim().to_owned())
            });
            let sign = |req: &mut Request<B>, nonce: Option<&str>| -> Result<(), SignError> {
                let proof = signer.proof(req.method().as_str(), &url, token.as_deref(), nonce)?;
                let value = HeaderValue::from_str(&proof).map_err(|_| SignError("header"))?;
                req.headers_mut().insert(DPOP, value);
                Ok(())
            };
            let remember = |res: &Response<ResB>| -> Option<String> {
                let nonce = res.headers().get(DPOP_NONCE).and_then(|v| v.to_str().ok())?.to_owned();
                nonces.lock().unwrap_or_else(PoisonError::into_inner).insert(origin.clone(), nonce.clone());
                Some(nonce)
            };
            let sent_nonce = nonces.lock().unwrap_or_else(PoisonError::into_inner).get(&origin).cloned();
            let mut first = req.clone();
            sign(&mut first, sent_nonce.as_deref())?;
            let response = service.call(first).await?;
            let learned = remember(&response);
            let told_to_retry = matches!(response.status(), StatusCode::UNAUTHORIZED | StatusCode::BAD_REQUEST)
                && learned.is_some()
                && learned != sent_nonce;
            if !told_to_retry {
                return Ok(response);
            }
            let mut retry = req;
            sign(&mut retry, learned.as_deref())?;
            let response = service.call(retry).await?;
            remember(&response);
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwk::ProofAlg;
    use crate::proof::{Expect, validate};

    #[test]
    fn our_proofs_pass_our_validator() {
        for alg in [ClientKeyAlg::Es256, ClientKeyAlg::EdDsa] {
            let signer = DpopSigner::generate(alg).expect("key");
            let now = SystemClock.now();
            let proof =
                signer.proof("POST", "https://MCP.example.com:443/mcp?x=1", Some("tok"), Some("n1")).expect("proof");
            let sha256 = crate::proof::sha256(b"tok");
            let expect = Expect {
                method: "POST",
                htu: "https://mcp.example.com/mcp",
                htu_normalised: true,
                access_token_sha256: Some(&sha256),
                now,
                iat_window: std::time::Duration::from_secs(300),
                max_bytes: 4096,
            };
            let cache = crate::proof::HeaderCache::new(16);
            let valid = validate(&proof, &ProofAlg::ALL, &expect, Some(&cache)).expect("valid");
            assert_eq!(valid.jkt, signer.thumbprint());
            assert_eq!(valid.nonce.as_deref(), Some("n1"));
            assert_eq!(cache.len(), 1, "the checked header is remembered");
            let again = signer.proof("POST", "https://mcp.example.com/mcp", Some("tok"), None).expect("proof");
            assert_eq!(validate(&again, &ProofAlg::ALL, &expect, None).expect("valid").jkt, valid.jkt, "uncached");
            // a remembered header still needs a signature that verifies, and every claim checked
            let (head, rest) = again.split_once('.').expect("jws");
            let (payload, sig) = rest.rsplit_once('.').expect("jws");
            let mut bad_sig = sig.to_owned().into_bytes();
            bad_sig[3] = if bad_sig[3] == b'A' { b'B' } else { b'A' };
            let forged = format!("{head}.{payload}.{}", String::from_utf8(bad_sig).expect("ascii"));
            assert!(validate(&forged, &ProofAlg::ALL, &expect, Some(&cache)).is_err(), "signature checked on a hit");
            let other = crate::proof::sha256(b"other");
            let wrong_token = Expect { access_token_sha256: Some(&other), ..expect };
            assert!(validate(&again, &ProofAlg::ALL, &wrong_token, Some(&cache)).is_err(), "ath checked on a hit");
            let elsewhere = Expect { htu: "https://mcp.example.com/other", ..expect };
            assert!(validate(&again, &ProofAlg::ALL, &elsewhere, Some(&cache)).is_err(), "htu checked on a hit");
            let only_rsa = [ProofAlg::Rs256];
            let uncached = crate::proof::HeaderCache::new(16);
            assert!(validate(&again, &only_rsa, &expect, Some(&uncached)).is_err(), "alg allow-list");
            assert_eq!(uncached.len(), 0, "a refused header is not remembered");
            assert_ne!(
                validate(&again, &ProofAlg::ALL, &expect, Some(&cache)).expect("valid").jti,
                valid.jti,
                "fresh jti per proof"
            );
        }
    }
}
