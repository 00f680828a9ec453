//! The pre-authentication limit's per-request cost next to its floor, in the same run: a request
//! through `PreAuthLimitLayer` (allowed: one keyed GCRA check) vs the same request to the same
//! service without the layer; from one address and from 10 000 addresses in turn (a table with
//! many keys); and a refusal (429 built, the service not called).

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use mcp_enterprise_core::ClientAddress;
use mcp_enterprise_core::preauth::PreAuthLimitLayer;
use tower::{Layer, Service, ServiceExt};

// `service_fn` is always ready, so the benches call without `poll_ready`.

fn request(addr: SocketAddr) -> Request<()> {
    let mut req = Request::post("/mcp").body(()).expect("request");
    req.extensions_mut().insert(ClientAddress::direct(addr));
    req
}

fn preauth(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let mut g = c.benchmark_group("core_preauth");
    let service =
        tower::service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(Bytes::from_static(b"ok"))) });
    let one: SocketAddr = "192.0.2.1:40000".parse().expect("addr");
    g.bench_function("floor_service_call", |b| {
        b.iter(|| rt.block_on(service.oneshot(black_box(request(one)))).expect("ok"))
    });
    // a rate nothing here reaches: every request allowed
    let generous = PreAuthLimitLayer::new(u32::MAX, u32::MAX).expect("layer");
    let mut limited = generous.layer(service);
    g.bench_function("allowed_one_address", |b| {
        b.iter(|| rt.block_on(limited.call(black_box(request(one)))).expect("ok"))
    });
    let many: Vec<SocketAddr> = (0..10_000u32)
        .map(|i| {
            let [_, a, b, c] = i.to_be_bytes();
            SocketAddr::from(([10, a, b, c], 1))
        })
        .collect();
    let mut i = 0;
    g.bench_function("allowed_10k_addresses", |b| {
        b.iter(|| {
            i = (i + 1) % many.len();
            rt.block_on(limited.call(black_box(request(many[i])))).expect("ok")
        })
    });
    let strict = PreAuthLimitLayer::new(1, 1).expect("layer");
    let mut refusing = strict.layer(service);
    let _ = rt.block_on(refusing.call(request(one)));
    g.bench_function("refused_429", |b| {
        // one request a second is let through: all but a handful of the iterations are refusals
        b.iter(|| rt.block_on(refusing.call(black_box(request(one)))).expect("answer"))
    });
    assert!(strict.refused() > 1000, "the refusals were measured");
    g.finish();
}

criterion_group!(benches, preauth);
criterion_main!(benches);
