//! The rate-limit check per request next to its floors, in the same run:
//!
//! - `layer_call_*`: one request through `RateLimit<S>` (two limits apply: per principal and per
//!   principal + tool; key extraction from the request's `Principal` and `McpRequest`, two GCRA
//!   checks in governor's keyed tables) to a service that answers at once, for 1 000 principals
//!   in turn;
//! - `plain_service_call`: the same request to the same service without the layer;
//! - `floor_governor_check`: governor's bare keyed check with a ready-made key (the GCRA alone);
//! - `floor_two_governor_checks`: two of them, in two tables (what the layer's two limits cost
//!   at the least), keyed by what identifies the caller — issuer and subject, and the tool — as
//!   the layer's keys must be (a subject alone is not unique across issuers);
//! - `floor_hashmap_atomic`: one `HashMap` lookup and one atomic add (what any counter pays).
//!
//! The rates are high enough that nothing is refused during the run.

use std::collections::HashMap;
use std::convert::Infallible;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use governor::{Quota, RateLimiter};
use http::{Request, Response};
use mcp_enterprise_core::{AuthMethod, McpRequest, Principal, PrincipalKind, RequestContext};
use mcp_enterprise_gateway::ratelimit::{KeyPart, Limit, RateLimitLayer};
use serde_json::json;
use tower::{Layer, Service};

const PRINCIPALS: usize = 1000;

fn requests() -> Vec<(McpRequest, Principal)> {
    (0..PRINCIPALS)
        .map(|i| {
            let body = json!({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                "params": {"name": "search", "arguments": {"q": "x"}}});
            let mcp = McpRequest::parse(&http::HeaderMap::new(), body.to_string().as_bytes(), |_| None).expect("parse");
            let principal = Principal::builder(
                "https://login.example.com",
                format!("user-{i}"),
                PrincipalKind::User,
                AuthMethod::Bearer,
            )
            .client_id("agent-app")
            .build();
            (mcp, principal)
        })
        .collect()
}

fn request(parts: &(McpRequest, Principal)) -> Request<()> {
    let mut req = Request::new(());
    RequestContext::get_or_default(req.extensions_mut()).set_mcp(parts.0.clone());
    req.extensions_mut().insert(parts.1.clone());
    req
}

/// Calls a service whose futures are ready at once (no runtime needed).
fn call_now<S: Service<Request<()>, Response = Response<Bytes>, Error = Infallible>>(
    svc: &mut S,
    req: Request<()>,
) -> u16 {
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    let mut future = std::pin::pin!(svc.call(req));
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(res)) => res.status().as_u16(),
        _ => unreachable!("the service answers at once"),
    }
}

fn ratelimit(c: &mut Criterion) {
    let parts = requests();
    let inner =
        tower::service_fn(|_req: Request<()>| std::future::ready(Ok::<_, Infallible>(Response::new(Bytes::new()))));
    let layer = RateLimitLayer::builder()
        .limit(
            Limit::new("per-principal", 1_000_000, Duration::from_secs(1))
                .and_then(|l| l.burst(1_000_000_000))
                .expect("limit")
                .key([KeyPart::Principal])
                .methods(["tools/call"]),
        )
        .limit(
            Limit::new("per-principal-tool", 1_000_000, Duration::from_secs(1))
                .and_then(|l| l.burst(1_000_000_000))
                .expect("limit")
                .key([KeyPart::Principal, KeyPart::Tool])
                .tools(["search"]),
        )
        .build()
        .expect("layer");
    let mut limited = layer.layer(inner);
    let mut plain = inner;

    let mut g = c.benchmark_group("gateway_ratelimit");
    let mut i = 0usize;
    g.bench_function("layer_call_two_limits", |b| {
        b.iter_batched(
            || {
                i = (i + 1) % PRINCIPALS;
                request(&parts[i])
            },
            |req| black_box(call_now(&mut limited, req)),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("plain_service_call", |b| {
        b.iter_batched(
            || {
                i = (i + 1) % PRINCIPALS;
                request(&parts[i])
            },
            |req| black_box(call_now(&mut plain, req)),
            BatchSize::SmallInput,
        )
    });

    let quota = Quota::per_second(NonZeroU32::new(1_000_000).expect("non-zero"))
        .allow_burst(NonZeroU32::new(1_000_000_000).expect("non-zero"));
    let bare = RateLimiter::<Box<[u8]>, _, _>::dashmap(quota);
    let keys: Vec<Box<[u8]>> = (0..PRINCIPALS)
        .map(|i| format!("https://login.example.com\u{0}user-{i}").into_bytes().into_boxed_slice())
        .collect();
    g.bench_function("floor_governor_check", |b| {
        b.iter(|| {
            i = (i + 1) % PRINCIPALS;
            black_box(bare.check_key(&keys[i]).is_ok())
        })
    });

    let per_tool = RateLimiter::<Box<[u8]>, _, _>::dashmap(quota);
    let tool_keys: Vec<Box<[u8]>> = (0..PRINCIPALS)
        .map(|i| format!("https://login.example.com\u{0}user-{i}\u{0}search").into_bytes().into_boxed_slice())
        .collect();
    g.bench_function("floor_two_governor_checks", |b| {
        b.iter(|| {
            i = (i + 1) % PRINCIPALS;
            black_box(bare.check_key(&keys[i]).is_ok() & per_tool.check_key(&tool_keys[i]).is_ok())
        })
    });

    let counters: HashMap<Box<[u8]>, AtomicU64> = keys.iter().map(|k| (k.clone(), AtomicU64::new(0))).collect();
    g.bench_function("floor_hashmap_atomic", |b| {
        b.iter(|| {
            i = (i + 1) % PRINCIPALS;
            black_box(counters.get(&keys[i]).map(|c| c.fetch_add(1, Ordering::Relaxed)))
        })
    });
    g.finish();
}

criterion_group!(benches, ratelimit);
criterion_main!(benches);
