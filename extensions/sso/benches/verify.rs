//! Per-request cost of the SSO layer with warm keys: the full verification path (token cache off)
//! and the cached path, next to a bare `jsonwebtoken` decode of the same token in the same run.
//!
//! Run: `cargo bench -p mcp-enterprise-sso --bench verify`. Report ratios against
//! `bare_jsonwebtoken_decode`, never absolute times from different runs.

#![allow(missing_docs, clippy::unwrap_used)]

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::Full;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use mcp_enterprise_sso::{Issuer, Keys, SsoLayer};
use serde_json::{Value, json};
use tower::{Layer, Service, ServiceExt, service_fn};

const RESOURCE: &str = "https://mcp.example.com/mcp";
const ISS: &str = "https://idp.example.com";

fn setup() -> (String, Value, DecodingKey) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = pair.public_key().as_ref();
    let (x, y) = (URL_SAFE_NO_PAD.encode(&point[1..33]), URL_SAFE_NO_PAD.encode(&point[33..65]));
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "x": x, "y": y}]});
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let claims = json!({"iss": ISS, "sub": "alice", "aud": RESOURCE, "exp": now + 3600, "iat": now,
        "scope": "mcp mcp:tools", "client_id": "app"});
    let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
    header.kid = Some("k1".into());
    header.typ = Some("at+jwt".into());
    let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(pkcs8.as_ref())).unwrap();
    (token, jwks, DecodingKey::from_ec_components(&x, &y).unwrap())
}

fn bench(c: &mut Criterion) {
    let (token, jwks, key) = setup();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let inner =
        service_fn(|_req: Request<Full<Bytes>>| async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) });
    let layer = |cache: usize| {
        SsoLayer::builder(RESOURCE)
            .issuer(Issuer::new(ISS).keys(Keys::Static(jwks.clone())))
            .token_cache_capacity(cache)
            .build()
            .unwrap()
    };
    let request = || {
        Request::post("/mcp")
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap()
    };

    let mut group = c.benchmark_group("sso");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[RESOURCE]);
    validation.set_issuer(&[ISS]);
    group.bench_function("bare_jsonwebtoken_decode", |b| {
        b.iter(|| jsonwebtoken::decode::<Value>(&token, &key, &validation).unwrap())
    });
    let mut verify_every_time = layer(0).layer(inner);
    group.bench_function("layer_verify_path", |b| {
        b.iter(|| rt.block_on(async { verify_every_time.ready().await.unwrap().call(request()).await.unwrap() }))
    });
    let mut cached = layer(10_000).layer(inner);
    group.bench_function("layer_cached_path", |b| {
        b.iter(|| rt.block_on(async { cached.ready().await.unwrap().call(request()).await.unwrap() }))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
