//! Per-request cost of full DPoP validation next to the two raw signature verifications it
//! contains, in the same run.
//!
//! - `dpop/layer_full_request`: one request through `DpopLayer` over a trivial service —
//!   `Authorization: DPoP <ES256 JWT>` plus an ES256 proof, judged by `StaticKeyValidator`; no
//!   nonce, no replay cache, so the same request can be replayed. The request is built outside
//!   the timed part; the future is polled once (everything in it is ready), so no async runtime
//!   is measured.
//! - `dpop/raw_two_es256_verifies`: aws-lc-rs `UnparsedPublicKey::verify` (ECDSA P-256 SHA-256,
//!   fixed-size signature) of the token's signature and of the proof's, nothing else.
//! - `dpop/raw_one_es256_verify`: one of them, for scale.
//! - `dpop/layer_full_request_eddsa_proof` and its floor `dpop/raw_es256_and_ed25519_verifies`:
//!   the same with an Ed25519 proof (`alg: EdDSA`), for clients that choose the cheaper curve;
//!   `dpop/raw_one_ed25519_verify` for scale.
//!
//! Run: `cargo bench -p mcp-enterprise-dpop --bench validate` (add `-- --quick` for a short run).
//! Report ratios, never absolute times across runs or machines: `layer_full_request /
//! raw_two_es256_verifies` is the layer's overhead factor over the unavoidable cryptography
//! (parsing, JSON, base64, SHA-256 of the token, thumbprint, `htu` normalisation, the response).
//! After the criterion groups, a benchmark run (`--bench`) also prints that ratio measured with a
//! plain interleaved loop, as a cross-check.

#![allow(missing_docs, clippy::unwrap_used)]

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair, KeyPair, UnparsedPublicKey,
    VerificationAlgorithm,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use criterion::{BatchSize, Criterion};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use mcp_enterprise_dpop::{ClientKeyAlg, DpopLayer, DpopSigner, ExternalOrigin, ManualClock, StaticKeyValidator};
use serde_json::json;
use tower::{Layer, Service, service_fn};

const ORIGIN: &str = "https://mcp.example.com";
const HTU: &str = "https://mcp.example.com/mcp";
const ISS: &str = "https://idp.example.com";

/// A signature check: the algorithm, the public key, the signing input and the signature.
struct Raw {
    alg: &'static dyn VerificationAlgorithm,
    point: Vec<u8>,
    message: Vec<u8>,
    signature: Vec<u8>,
}

impl Raw {
    fn of(alg: &'static dyn VerificationAlgorithm, jws: &str, point: Vec<u8>) -> Self {
        let (message, sig) = jws.rsplit_once('.').unwrap();
        Self { alg, point, message: message.as_bytes().to_vec(), signature: URL_SAFE_NO_PAD.decode(sig).unwrap() }
    }

    fn verify(&self) -> bool {
        UnparsedPublicKey::new(self.alg, &self.point).verify(&self.message, &self.signature).is_ok()
    }
}

/// One client: its bound access token and a proof, with their raw signature checks.
struct Client {
    authorization: HeaderValue,
    proof: HeaderValue,
    token_raw: Raw,
    proof_raw: Raw,
}

struct Setup {
    layer: DpopLayer,
    es256: Client,
    eddsa: Client,
}

fn setup() -> Setup {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    // a fixed clock: the proof stays inside its window however long the run takes
    let clock = Arc::new(ManualClock::at(now));

    // the issuer key and an ES256 access token bound to the client key
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let issuer = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = issuer.public_key().as_ref().to_vec();
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])}]});
    let client = |alg: ClientKeyAlg| {
        let signer = DpopSigner::generate(alg).unwrap().with_clock(clock.clone());
        let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": "k1"});
        let claims = json!({"iss": ISS, "sub": "alice", "aud": HTU, "client_id": "app", "scope": "mcp:tools",
            "iat": now, "exp": now + 3600, "jti": "at-1", "cnf": {"jkt": signer.thumbprint()}});
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature = issuer.sign(&rng, input.as_bytes()).unwrap();
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()));
        // the client's proof for POST HTU
        let proof = signer.proof("POST", HTU, Some(&token), None).unwrap();
        let jwk = signer.public_jwk();
        let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
        let proof_raw = match alg {
            ClientKeyAlg::EdDsa => Raw::of(&ED25519, &proof, x),
            _ => {
                let mut client_point = vec![4u8];
                client_point.extend(x);
                client_point.extend(URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap());
                Raw::of(&ECDSA_P256_SHA256_FIXED, &proof, client_point)
            }
        };
        Client {
            authorization: HeaderValue::from_str(&format!("DPoP {token}")).unwrap(),
            proof: HeaderValue::from_str(&proof).unwrap(),
            token_raw: Raw::of(&ECDSA_P256_SHA256_FIXED, &token, point.clone()),
            proof_raw,
        }
    };
    let (es256, eddsa) = (client(ClientKeyAlg::Es256), client(ClientKeyAlg::EdDsa));

    let validator = StaticKeyValidator::new(ISS, vec![HTU.to_owned()], &jwks, clock.clone()).unwrap();
    let layer =
        DpopLayer::builder(Arc::new(validator), ExternalOrigin::Fixed(ORIGIN.to_owned())).clock(clock).build().unwrap();
    Setup { layer, es256, eddsa }
}

/// Polls a future that must be ready at once (nothing in this path waits).
fn now_or_never<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the DPoP path was expected to complete without waiting"),
    }
}

fn bench(c: &mut Criterion) {
    let s = setup();
    let inner =
        service_fn(|_req: Request<Full<Bytes>>| async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) });
    let mut service = s.layer.layer(inner);
    let request_of = |client: &Client| {
        Request::post("/mcp")
            .header(http::header::AUTHORIZATION, client.authorization.clone())
            .header("dpop", client.proof.clone())
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap()
    };
    let request = || request_of(&s.es256);
    let mut full = |req: Request<Full<Bytes>>| {
        now_or_never(std::future::poll_fn(|cx| service.poll_ready(cx))).unwrap();
        now_or_never(service.call(req)).unwrap()
    };
    // measure the accepting path, not a refusal
    for client in [&s.es256, &s.eddsa] {
        let response = full(request_of(client));
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "the benchmark request must be accepted: {:?}",
            response.headers()
        );
        assert!(client.token_raw.verify() && client.proof_raw.verify(), "the raw verifications must succeed");
    }

    let mut group = c.benchmark_group("dpop");
    group.bench_function("layer_full_request", |b| {
        b.iter_batched(request, |req| black_box(full(req)), BatchSize::SmallInput);
    });
    let (es, ed) = (&s.es256, &s.eddsa);
    group.bench_function("raw_two_es256_verifies", |b| {
        b.iter(|| black_box(black_box(&es.token_raw).verify()) & black_box(black_box(&es.proof_raw).verify()));
    });
    group.bench_function("raw_one_es256_verify", |b| b.iter(|| black_box(black_box(&es.proof_raw).verify())));
    group.bench_function("layer_full_request_eddsa_proof", |b| {
        b.iter_batched(|| request_of(ed), |req| black_box(full(req)), BatchSize::SmallInput);
    });
    group.bench_function("raw_es256_and_ed25519_verifies", |b| {
        b.iter(|| black_box(black_box(&ed.token_raw).verify()) & black_box(black_box(&ed.proof_raw).verify()));
    });
    group.bench_function("raw_one_ed25519_verify", |b| b.iter(|| black_box(black_box(&ed.proof_raw).verify())));
    group.finish();

    if std::env::args().any(|a| a == "--bench") {
        // cross-check: interleaved rounds, the median ratio
        let mut ratios = Vec::new();
        for _ in 0..21 {
            let reqs: Vec<_> = (0..300).map(|_| request()).collect();
            let start = Instant::now();
            for req in reqs {
                black_box(full(req));
            }
            let layer_time = start.elapsed();
            let start = Instant::now();
            for _ in 0..300 {
                black_box(s.es256.token_raw.verify() & s.es256.proof_raw.verify());
            }
            let raw_time = start.elapsed().max(Duration::from_nanos(1));
            ratios.push(layer_time.as_secs_f64() / raw_time.as_secs_f64());
        }
        ratios.sort_by(f64::total_cmp);
        eprintln!(
            "\ncross-check: layer_full_request / raw_two_es256_verifies = {:.2} (median of {} interleaved rounds, \
             range {:.2}..{:.2})",
            ratios[ratios.len() / 2],
            ratios.len(),
            ratios[0],
            ratios[ratios.len() - 1]
        );
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}
