//! Cost of one ID-JAG grant at the token endpoint next to its two signature floors, in the same run.
//!
//! - `id_jag/grant_full`: one token request through `TokenEndpoint` — form parsing,
//!   `client_secret_basic`, the ID-JAG (ES256 under a static IdP key) with every check (typ,
//!   alg, iss, signature, aud, times, lifetime, sub, rule over `/groups`, client_id, resource,
//!   scopes), the `jti` recorded in the memory replay store, an ES256 access token minted, the
//!   JSON response. Each iteration gets a new ID-JAG (signed outside the timed part).
//! - `id_jag/raw_es256_verify`: aws-lc-rs verification of the ID-JAG's signature, nothing else.
//! - `id_jag/raw_es256_sign`: aws-lc-rs ECDSA P-256 signature of an access token's signing
//!   input (the mint), nothing else.
//!
//! Run: `cargo bench -p mcp-enterprise-workload-identity --bench id_jag_grant` (add `-- --quick`).
//! Report the ratio `grant_full / (raw_es256_verify + raw_es256_sign)`, never absolute times
//! across runs or machines.

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use criterion::{BatchSize, Criterion};
use http::{Request, StatusCode, header};
use http_body_util::Full;
use mcp_enterprise_workload_identity::{
    GrantValidator, IdJagValidator, IssuerKeys, ManualClock, MemoryReplayStore, Pattern, RegisteredClient,
    TokenEndpoint, TrustPolicy, TrustedIssuer, WorkloadRule,
};
use serde_json::{Value, json};
use tower::ServiceExt as _;

const AS: &str = "https://mcp.example.com";
const RESOURCE: &str = "https://mcp.example.com/mcp";
const IDP: &str = "https://idp.example.com";
const NOW: u64 = 1_800_000_000;

struct Idp {
    pair: EcdsaKeyPair,
    jwk: Value,
}

fn idp() -> Idp {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = pair.public_key().as_ref().to_vec();
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "idp-1", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])});
    Idp { pair, jwk }
}

impl Idp {
    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = self.pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

static JTI: AtomicU64 = AtomicU64::new(0);

fn id_jag(idp: &Idp) -> String {
    let claims = json!({"iss": IDP, "sub": "00u1alice", "aud": AS, "resource": RESOURCE, "client_id": "agent",
        "scope": "mcp:tools", "email": "alice@example.com", "groups": ["engineering"],
        "iat": NOW, "exp": NOW + 300, "jti": format!("jti-{}", JTI.fetch_add(1, Ordering::Relaxed))});
    idp.sign(&json!({"alg": "ES256", "kid": "idp-1", "typ": "oauth-id-jag+jwt"}), &claims)
}

fn endpoint(idp: &Idp) -> TokenEndpoint {
    let clock = Arc::new(ManualClock::at(NOW));
    let policy = |issuer: TrustedIssuer| TrustPolicy::builder().issuer(issuer).clock(clock.clone()).build().unwrap();
    let idps = policy(
        TrustedIssuer::new(IDP, IssuerKeys::Static(json!({"keys": [idp.jwk]})))
            .rule(
                WorkloadRule::new("engineering", Pattern::any())
                    .claim("/groups", Pattern::exact("engineering"))
                    .and_then(|r| r.scopes(["mcp:tools"]))
                    .unwrap(),
            )
            .forward_claim("groups"),
    );
    // a workload issuer is required by the grant validator; it plays no part here
    let workloads =
        policy(TrustedIssuer::new("https://k8s.example.com", IssuerKeys::Static(json!({"keys": [idp.jwk]}))));
    let grants =
        GrantValidator::builder(workloads, AS, &format!("{AS}/oauth/token")).resource(RESOURCE).build().unwrap();
    let v = IdJagValidator::builder(idps, AS)
        .resource(RESOURCE)
        .client(RegisteredClient::with_secret("agent", "secret"))
        .replay_store(Arc::new(MemoryReplayStore::new(20_000_000)))
        .build()
        .unwrap();
    TokenEndpoint::builder(grants).id_jag(v).build().unwrap()
}

fn request(assertion: &str) -> Request<Full<Bytes>> {
    let body = format!("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}");
    Request::post(format!("{AS}/oauth/token"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::AUTHORIZATION, format!("Basic {}", STANDARD.encode("agent:secret")))
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let idp = idp();
    let ep = endpoint(&idp);
    // sanity: the grant succeeds
    let res = rt.block_on(ep.clone().oneshot(request(&id_jag(&idp)))).unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let sample = id_jag(&idp);
    let (input, sig) = sample.rsplit_once('.').unwrap();
    let (input, sig) = (input.as_bytes().to_vec(), URL_SAFE_NO_PAD.decode(sig).unwrap());
    let point = idp.pair.public_key().as_ref().to_vec();
    let mint_input = input.clone();

    let mut c = Criterion::default().configure_from_args().measurement_time(Duration::from_secs(5));
    let mut g = c.benchmark_group("id_jag");
    g.bench_function("grant_full", |b| {
        b.iter_batched(
            || request(&id_jag(&idp)),
            |req| {
                let res = rt.block_on(ep.clone().oneshot(req)).unwrap();
                assert_eq!(res.status(), StatusCode::OK);
                black_box(res)
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("raw_es256_verify", |b| {
        b.iter(|| UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point).verify(black_box(&input), &sig).unwrap())
    });
    let rng = SystemRandom::new();
    g.bench_function("raw_es256_sign", |b| b.iter(|| idp.pair.sign(&rng, black_box(&mint_input)).unwrap()));
    g.finish();
    c.final_summary();
}
