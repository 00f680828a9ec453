//! Per-request cost of `signed_assertion`: minting one assertion (claims, fresh `jti`, signature)
//! with ES256 and with EdDSA, next to a bare aws-lc-rs ES256 and Ed25519 signature of a message
//! of the same size in the same run — the floor no minting can go below.
//!
//! Run: `cargo bench -p mcp-enterprise-gateway --bench propagation`. Report ratios against the
//! `raw_*_sign` rows, never absolute times from different runs.

#![allow(missing_docs, clippy::unwrap_used)]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use criterion::{Criterion, criterion_group, criterion_main};
use mcp_enterprise_config::AssertionAlgorithm;
use mcp_enterprise_core::{AuthMethod, Principal, PrincipalKind};
use mcp_enterprise_gateway::propagation::SignedAssertion;

fn bench(c: &mut Criterion) {
    let principal =
        Principal::builder("https://login.example.com/tenant", "alice", PrincipalKind::User, AuthMethod::Bearer)
            .client_id("vscode")
            .scopes(["mcp", "mcp:tools", "crm:read"])
            .claim("tenant", serde_json::json!("t-42"))
            .build();
    let es256 = SignedAssertion::builder("https://gateway.example.com", "http://10.0.0.5:8081/mcp").build().unwrap();
    let eddsa = SignedAssertion::builder("https://gateway.example.com", "http://10.0.0.5:8081/mcp")
        .algorithm(AssertionAlgorithm::EdDSA)
        .build()
        .unwrap();
    // a signing input as long as a minted assertion's
    let sample = es256.mint(&principal).unwrap();
    let message = sample.as_bytes()[..sample.rfind('.').unwrap()].to_vec();

    let rng = SystemRandom::new();
    let ec = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap().as_ref(),
    )
    .unwrap();
    let ed = Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref()).unwrap();

    let mut group = c.benchmark_group("propagation");
    group.bench_function("raw_es256_sign", |b| b.iter(|| ec.sign(&rng, std::hint::black_box(&message)).unwrap()));
    group.bench_function("mint_assertion_es256", |b| b.iter(|| es256.mint(std::hint::black_box(&principal)).unwrap()));
    group.bench_function("raw_ed25519_sign", |b| b.iter(|| ed.sign(std::hint::black_box(&message))));
    group.bench_function("mint_assertion_eddsa", |b| b.iter(|| eddsa.mint(std::hint::black_box(&principal)).unwrap()));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
