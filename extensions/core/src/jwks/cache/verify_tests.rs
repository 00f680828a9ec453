//! Signature checks through the cache and discovery-based key sources, against a loopback
//! server that routes by path.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::EncodingKey;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::clock::ManualClock;

type Routes = Arc<Mutex<HashMap<String, String>>>;

/// Serves `routes[path]` with 200 (404 otherwise); counts requests.
async fn serve(routes: Routes) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let routes = routes.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut read = 0;
                while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let head = String::from_utf8_lossy(&buf[..read]).to_string();
                let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                let answer = routes.lock().expect("lock").get(&path).cloned();
                let (status, body) = answer.map_or((404, String::new()), |b| (200, b));
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(body.as_bytes()).await;
            });
        }
    });
    (base, hits)
}

struct Signer {
    pkcs8: Vec<u8>,
    x: String,
    y: String,
}

fn signer() -> Signer {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).expect("gen");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).expect("pair");
    let p = pair.public_key().as_ref().to_vec();
    Signer {
        pkcs8: pkcs8.as_ref().to_vec(),
        x: URL_SAFE_NO_PAD.encode(&p[1..33]),
        y: URL_SAFE_NO_PAD.encode(&p[33..65]),
    }
}

impl Signer {
    fn jwk(&self, kid: &str) -> Value {
        json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": self.x, "y": self.y})
    }
    /// `(signing input, signature)` of a token under `kid`.
    fn sign(&self, kid: &str) -> (String, String) {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "kid": kid}).to_string()),
            URL_SAFE_NO_PAD.encode(r#"{"sub":"x"}"#)
        );
        let sig =
            jsonwebtoken::crypto::sign(input.as_bytes(), &EncodingKey::from_ec_der(&self.pkcs8), Algorithm::ES256)
                .expect("sign");
        (input, sig)
    }
}

fn cache(issuer: &str, source: KeySource, clock: &ManualClock, settings: JwksSettings) -> Arc<JwksCache> {
    let http = HttpClient::new(Duration::from_secs(2)).expect("client");
    Arc::new(JwksCache::new(issuer.into(), source, http, Arc::new(clock.clone()), settings))
}

#[tokio::test]
async fn a_failed_signature_refetches_once_and_picks_up_a_rekeyed_kid() {
    let (old, new) = (signer(), signer());
    let routes: Routes = Arc::default();
    routes.lock().expect("lock").insert("/jwks".into(), json!({"keys": [old.jwk("a")]}).to_string());
    let (base, hits) = serve(routes.clone()).await;
    let clock = ManualClock::at(1000);
    let c = cache("https://idp", KeySource::Url(format!("{base}/jwks")), &clock, JwksSettings::default());
    let q = KeyQuery::new(Some("a"), Algorithm::ES256);
    let (input, sig) = old.sign("a");
    assert_eq!(c.verify(q, input.as_bytes(), &sig).await, Ok(()));
    // the IdP re-keys under the same kid
    routes.lock().expect("lock").insert("/jwks".into(), json!({"keys": [new.jwk("a")]}).to_string());
    let (input, sig) = new.sign("a");
    assert_eq!(c.verify(q, input.as_bytes(), &sig).await, Err(KeyError::BadSignature), "inside the interval");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    clock.advance(Duration::from_secs(11));
    assert_eq!(c.verify(q, input.as_bytes(), &sig).await, Ok(()), "refetched after the failure");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // a forged signature costs at most one refetch per interval, then fails
    let (input, _) = new.sign("a");
    assert_eq!(c.verify(q, input.as_bytes(), "AAAA").await, Err(KeyError::BadSignature));
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    let es384 = KeyQuery::new(Some("a"), Algorithm::ES384);
    assert_eq!(c.verify(es384, input.as_bytes(), &sig).await, Err(KeyError::KeyMismatch));
}

#[tokio::test]
async fn openid_discovery_only_with_the_jwks_uri_rule() {
    let key = signer();
    let routes: Routes = Arc::default();
    let (base, _) = serve(routes.clone()).await;
    let issuer = format!("{base}/cluster");
    routes.lock().expect("lock").insert(
        "/cluster/.well-known/openid-configuration".into(),
        json!({"issuer": issuer, "jwks_uri": format!("{base}/cluster/keys")}).to_string(),
    );
    routes.lock().expect("lock").insert("/cluster/keys".into(), json!({"keys": [key.jwk("k")]}).to_string());
    let clock = ManualClock::at(1000);
    let q = KeyQuery::new(Some("k"), Algorithm::ES256);
    let (input, sig) = key.sign("k");
    let loopback = JwksSettings::default().discovered_uri(UriRule::HttpsOrLoopbackHttp);
    let c = cache(&issuer, KeySource::Discover(DiscoveryOrder::OpenIdConnect), &clock, loopback);
    assert_eq!(c.verify(q, input.as_bytes(), &sig).await, Ok(()));
    let https = JwksSettings::default().discovered_uri(UriRule::HttpsOnly);
    let c = cache(&issuer, KeySource::Discover(DiscoveryOrder::OpenIdConnect), &clock, https);
    assert_eq!(c.verify(q, input.as_bytes(), &sig).await, Err(KeyError::Unavailable), "http jwks_uri refused");
    // the MCP order finds nothing at the RFC 8414 locations and the inserted OIDC location of
    // this path issuer, then the appended one; a document naming another issuer is refused
    let c = cache(&issuer, KeySource::Discover(DiscoveryOrder::Mcp), &clock, loopback);
    assert_eq!(c.verify(q, input.as_bytes(), &sig).await, Ok(()));
    let c = cache(&format!("{base}/other"), KeySource::Discover(DiscoveryOrder::OpenIdConnect), &clock, loopback);
    assert_eq!(c.verify(q, input.as_bytes(), &sig).await, Err(KeyError::Unavailable), "nothing published");
    routes.lock().expect("lock").insert(
        "/other/.well-known/openid-configuration".into(),
        json!({"issuer": issuer, "jwks_uri": format!("{base}/cluster/keys")}).to_string(),
    );
    let c = cache(&format!("{base}/other"), KeySource::Discover(DiscoveryOrder::OpenIdConnect), &clock, loopback);
    assert_eq!(c.verify(q, input.as_bytes(), &sig).await, Err(KeyError::Unavailable), "issuer mismatch");
}
