//! The shared-state checks against a real `redis-server` (started by the bench on a free loopback
//! port, no persistence) next to the in-memory stores, in the same run:
//!
//! - `dpop_replay_{memory,redis}_seq`: one DPoP `jti` replay check (a fresh key each time) at a
//!   time: the round trip to Redis is what it costs;
//! - `dpop_replay_{memory,redis}_64`: 64 checks in flight at once on a multi-threaded runtime,
//!   time per check (what a busy replica sees: does the client serialise them or pipeline them?);
//! - `ratelimit_{memory,redis}_seq` / `_64`: one request through the rate-limit layer (one limit
//!   per principal, 1 000 principals in turn), the same two ways.
//!
//! Needs `redis-server` on `PATH` (or `$MCP_TEST_REDIS_SERVER`); skipped with a message without.

use std::convert::Infallible;
use std::hint::black_box;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use mcp_enterprise_core::{AuthMethod, McpRequest, Principal, PrincipalKind, RequestContext};
use mcp_enterprise_dpop::{MemoryReplayStore, RedisClient, RedisReplayStore, RedisSettings, ReplayStore};
use mcp_enterprise_gateway::ratelimit::{KeyPart, Limit, RateLimitLayer, SharedStore};
use serde_json::json;
use tower::{Layer, ServiceExt as _};

const IN_FLIGHT: u64 = 64;
const PRINCIPALS: usize = 1000;

struct Redis(Child, u16);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> Option<Redis> {
    let binary = std::env::var("MCP_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
    let port = TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
    let dir = std::env::temp_dir();
    let child = Command::new(binary)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let redis = Redis(child, port);
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(redis);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    None
}

/// One client (one multiplexed connection) with `secs` per reply, as the old client's timeouts.
fn client(redis: &Redis, secs: u64) -> RedisClient {
    let mut settings = RedisSettings::new(format!("127.0.0.1:{}", redis.1));
    settings.connect_timeout = Duration::from_secs(1);
    settings.response_timeout = Duration::from_secs(secs);
    RedisClient::new(settings).expect("client")
}

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
            .build();
            (mcp, principal)
        })
        .collect()
}

fn limit() -> Limit {
    Limit::new("per-principal", 1_000_000, Duration::from_secs(1))
        .and_then(|l| l.burst(1_000_000_000))
        .expect("limit")
        .key([KeyPart::Principal])
}

/// Runs `iters` calls of `one`, `in_flight` at a time on `rt`, and returns the elapsed time.
fn run_concurrent<F, Fut>(rt: &tokio::runtime::Runtime, iters: u64, in_flight: u64, one: F) -> Duration
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let one = Arc::new(one);
    rt.block_on(async {
        let next = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let tasks: Vec<_> = (0..in_flight)
            .map(|_| {
                let (one, next) = (one.clone(), next.clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= iters {
                            break;
                        }
                        one(i).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
        start.elapsed()
    })
}

fn replay(c: &mut Criterion, rt: &tokio::runtime::Runtime, redis: &Redis) {
    let memory: Arc<dyn ReplayStore> = Arc::new(MemoryReplayStore::new(10_000_000));
    let shared: Arc<dyn ReplayStore> = Arc::new(RedisReplayStore::new(client(redis, 1), "bench:dpop:"));
    let counter = Arc::new(AtomicU64::new(0));
    let mut g = c.benchmark_group("redis_shared");
    for (name, store) in [("memory", memory), ("redis", shared)] {
        // the memory store keeps what is live: a clock that moves one µs per check and a 1 ms
        // window keep it small however many iterations criterion runs (Redis: a 60 s window)
        let base = Duration::from_secs(1_800_000_000);
        let window = if name == "memory" { Duration::from_millis(1) } else { Duration::from_secs(60) };
        let (s, n) = (store.clone(), counter.clone());
        g.bench_function(format!("dpop_replay_{name}_seq"), |b| {
            b.iter(|| {
                let i = n.fetch_add(1, Ordering::Relaxed);
                let now = base + Duration::from_micros(i);
                let fresh = rt.block_on(s.check_and_insert(&i.to_string(), now, now + window));
                assert_eq!(black_box(fresh), Ok(true));
            });
        });
        let (s, n) = (store.clone(), counter.clone());
        g.bench_function(format!("dpop_replay_{name}_{IN_FLIGHT}"), |b| {
            b.iter_custom(|iters| {
                let (s, n) = (s.clone(), n.clone());
                run_concurrent(rt, iters, IN_FLIGHT, move |_| {
                    let (s, n) = (s.clone(), n.clone());
                    async move {
                        let i = n.fetch_add(1, Ordering::Relaxed);
                        let now = base + Duration::from_micros(i);
                        let fresh = s.check_and_insert(&i.to_string(), now, now + window).await;
                        assert_eq!(fresh, Ok(true));
                    }
                })
            });
        });
    }
    g.finish();
}

fn ratelimit(c: &mut Criterion, rt: &tokio::runtime::Runtime, redis: &Redis) {
    let parts = Arc::new(requests());
    let inner =
        tower::service_fn(|_req: Request<()>| std::future::ready(Ok::<_, Infallible>(Response::new(Bytes::new()))));
    let memory = RateLimitLayer::builder().limit(limit()).build().expect("layer");
    let shared =
        RateLimitLayer::builder().limit(limit()).shared(SharedStore::redis(client(redis, 2))).build().expect("layer");
    let mut g = c.benchmark_group("redis_shared");
    for (name, layer) in [("memory", memory), ("redis", shared)] {
        let svc = layer.layer(inner);
        let request = {
            let parts = parts.clone();
            move |i: u64| {
                let p = &parts[usize::try_from(i).unwrap_or(0) % PRINCIPALS];
                let mut req = Request::new(());
                RequestContext::get_or_default(req.extensions_mut()).set_mcp(p.0.clone());
                req.extensions_mut().insert(p.1.clone());
                req
            }
        };
        let (s, r) = (svc.clone(), request.clone());
        let mut i = 0u64;
        g.bench_function(format!("ratelimit_{name}_seq"), |b| {
            b.iter(|| {
                i += 1;
                let res = rt.block_on(s.clone().oneshot(r(i))).expect("infallible");
                assert_eq!(black_box(res.status()), 200);
            });
        });
        let (s, r) = (svc.clone(), request.clone());
        g.bench_function(format!("ratelimit_{name}_{IN_FLIGHT}"), |b| {
            b.iter_custom(|iters| {
                let (s, r) = (s.clone(), r.clone());
                run_concurrent(rt, iters, IN_FLIGHT, move |i| {
                    let (s, req) = (s.clone(), r(i));
                    async move {
                        let res = s.oneshot(req).await.expect("infallible");
                        assert_eq!(res.status(), 200);
                    }
                })
            });
        });
    }
    g.finish();
}

fn shared(c: &mut Criterion) {
    let Some(redis) = start_redis() else {
        eprintln!("redis_shared: redis-server is not available, skipped (apt-get install -y redis-server)");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    replay(c, &rt, &redis);
    ratelimit(c, &rt, &redis);
}

criterion_group!(benches, shared);
criterion_main!(benches);
