//! Core's per-request work next to its floor, in the same run: inspecting a 1 KiB and a 1 MiB
//! `tools/call` (one bounded read + parse) vs `serde_json` parsing the same bytes (plus the same
//! request sent to the same service without the layer, which any stack pays); and the
//! streaming SSE rewrite of a `server/discover` answer behind 1 MiB of progress events vs
//! splitting the same stream into events and parsing the one that is rewritten.

use std::convert::Infallible;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use mcp_enterprise_core::{ExtensionSet, InspectLayer, McpBody, McpRequest, NegotiateLayer};
use serde_json::{Value, json};
use tower::{Service, ServiceBuilder, ServiceExt};

fn call_of(size: usize) -> Bytes {
    let filler = "x".repeat(size.saturating_sub(160));
    let v = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": filler}}});
    Bytes::from(v.to_string())
}

fn inspect(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let mut g = c.benchmark_group("core_inspect");
    for (label, size) in [("1KiB", 1024usize), ("1MiB", 1024 * 1024)] {
        let body = call_of(size);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("floor_serde_parse_{label}"), |b| {
            b.iter(|| black_box(serde_json::from_slice::<Value>(black_box(&body)).expect("json")))
        });
        // the parse and checks alone (what the layer adds to the parse: the members it reads,
        // the header checks, the shared view)
        let headers = http::HeaderMap::new();
        g.bench_function(format!("mcp_request_parse_{label}"), |b| {
            b.iter(|| black_box(McpRequest::parse(&headers, black_box(&body), |_| None).expect("valid")))
        });
        // the same request to the same service without the layer: what any tower stack pays
        let plain = tower::service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        });
        g.bench_function(format!("plain_service_call_{label}"), |b| {
            b.iter(|| {
                let req = Request::post("/mcp")
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream")
                    .body(Full::new(body.clone()))
                    .expect("req");
                rt.block_on(plain.oneshot(req)).expect("ok")
            })
        });
        let layer = InspectLayer::new().max_body_bytes(4 * 1024 * 1024).expect("limit");
        let svc = ServiceBuilder::new().layer(layer).service(tower::service_fn(
            |_req: Request<McpBody<Full<Bytes>>>| async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) },
        ));
        g.bench_function(format!("inspect_layer_{label}"), |b| {
            b.iter(|| {
                let req = Request::post("/mcp")
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream")
                    .body(Full::new(body.clone()))
                    .expect("req");
                rt.block_on(svc.clone().oneshot(req)).expect("ok")
            })
        });
    }
    g.finish();
}

fn sse_stream() -> (Bytes, Bytes) {
    let mut s = String::new();
    let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress",
        "params": {"progressToken": 1, "progress": 1, "message": "y".repeat(200)}});
    while s.len() < 1024 * 1024 {
        s.push_str(&format!("event: message\ndata: {progress}\n\n"));
    }
    let answer = json!({"jsonrpc": "2.0", "id": 1, "result": {"protocolVersion": "2026-07-28",
        "capabilities": {"tools": {}}, "serverInfo": {"name": "bench", "version": "1"}}});
    s.push_str(&format!("event: message\ndata: {answer}\n\n"));
    (Bytes::from(s), Bytes::from(answer.to_string()))
}

fn sse_rewrite(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let (stream, _) = sse_stream();
    let mut g = c.benchmark_group("core_sse_rewrite");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("floor_split_events_parse_answer", |b| {
        b.iter(|| {
            let mut found = None;
            for event in black_box(&stream[..]).split(|b| *b == b'\n').collect::<Vec<_>>().windows(1) {
                if let Some(data) = event[0].strip_prefix(b"data: ")
                    && data.windows(7).any(|w| w == b"\"id\":1,")
                {
                    found = Some(serde_json::from_slice::<Value>(data).expect("json"));
                }
            }
            black_box(found)
        })
    });
    let extensions = ExtensionSet::builder().with_own("audit", json!({})).expect("ext").build();
    let body = stream.clone();
    let mut svc = ServiceBuilder::new().layer(InspectLayer::new()).layer(NegotiateLayer::new(extensions)).service(
        tower::service_fn(move |_req: Request<McpBody<Full<Bytes>>>| {
            let body = body.clone();
            async move {
                let mut res = Response::new(Full::new(body));
                res.headers_mut().insert("content-type", "text/event-stream".parse().expect("hv"));
                Ok::<_, Infallible>(res)
            }
        }),
    );
    let discover = json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}})
    .to_string();
    g.bench_function("negotiate_layer_streaming_rewrite", |b| {
        b.iter(|| {
            let req = Request::post("/mcp")
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2026-07-28")
                .header("mcp-method", "server/discover")
                .body(Full::new(Bytes::from(discover.clone())))
                .expect("req");
            rt.block_on(async {
                let res = svc.ready().await.expect("ready").call(req).await.expect("ok");
                res.into_body().collect().await.expect("body").to_bytes().len()
            })
        })
    });
    g.finish();
}

criterion_group!(benches, inspect, sse_rewrite);
criterion_main!(benches);
