//! Records per second: serialising a call record, with the hash chain, and with a signature on
//! every record (the worst case: checkpoints are normally one per thousand records), measured
//! in the same run. The floor of a chained record is what any hash chain must do: serialise the
//! record canonically and SHA-256 the bytes (of a record that exists: no copy of it is measured). Also the argument redaction it does per call, and
//! the verifier of `audit verify` with and without its progress callback.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mcp_enterprise_audit::{ChainHead, CheckpointSigner, Redaction, canonical, seal};
use serde_json::{Map, Value, json};

fn call_record() -> Map<String, Value> {
    let v = json!({
        "v": 1, "type": "mcp", "event_id": "01937f4e-8a2b-7c3d-9e4f-0123456789ab",
        "occurred_at": "2026-11-25T09:30:45.123Z", "correlation_id": "01937f4e-8a2b-7c3d-9e4f-0123456789ab",
        "http": {"method": "POST", "path": "/mcp", "status": 200},
        "principal": {"issuer": "https://idp.example.com", "subject": "alice@example.com", "kind": "user",
            "client_id": "agent-app", "auth_method": "dpop", "token_fingerprint": "q83vEjRWeJq83vEjRWeJqw", "tenant": null},
        "client": {"unverified": true, "name": "claude-code", "version": "2.1.0"},
        "jsonrpc": {"method": "tools/call", "id": 42, "target": {"kind": "tool", "name": "lookup_customer"},
            "era": "2025-11-25", "protocol_version": "2025-11-25"},
        "arguments": {"mode": "digest", "key_id": "0011223344556677",
            "digests": {"customer_id": "hmac-sha256:q83vEjRWeJq83vEjRWeJqw"}},
        "trace": {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": null},
        "outcome": "allowed", "denied_by": null, "jsonrpc_error": null, "latency_us": 1234, "response_bytes": 512,
    });
    v.as_object().cloned().unwrap_or_default()
}

fn bench(c: &mut Criterion) {
    let record = call_record();
    let signer = CheckpointSigner::generate().expect("key");
    let mut g = c.benchmark_group("audit_record");
    g.throughput(Throughput::Elements(1));
    // the floors work on a record that exists already (by reference): the layer builds its record
    // straight into canonical bytes and never clones one, so neither may the floor
    let value = Value::Object(record.clone());
    g.bench_function("serialise_only", |b| b.iter(|| black_box(canonical::to_vec(black_box(&value)))));
    g.bench_function("floor_serialise_and_sha256", |b| {
        b.iter(|| {
            let bytes = canonical::to_vec(black_box(&value));
            black_box(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes))
        })
    });
    // `seal` takes its record by value: the copy is made (and the sealed record dropped) outside
    // the measured routine
    g.bench_function("serialise_and_chain", |b| {
        let mut head = ChainHead::genesis();
        b.iter_batched(
            || record.clone(),
            |record| {
                let (sealed, line, next) = seal(record, &head, None);
                head = next;
                (sealed, line)
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("serialise_chain_and_sign_each", |b| {
        let mut head = ChainHead::genesis();
        let mut cp = record.clone();
        cp.insert("type".into(), Value::from("checkpoint"));
        b.iter_batched(
            || cp.clone(),
            |cp| {
                let (sealed, line, next) = seal(cp, &head, Some(&signer));
                head = next;
                (sealed, line)
            },
            BatchSize::SmallInput,
        )
    });
    let redaction = Redaction::new(b"bench key bench key bench key 32");
    let args = json!({"customer_id": "C-1042", "fields": ["name", "email"], "limit": 10});
    g.bench_function("redact_three_arguments", |b| b.iter(|| black_box(redaction.digest(black_box(&args)))));
    g.finish();
}

/// The layer's whole cost per call: a `tools/call` through `AuditLayer` (over core's inspection
/// and a trivial answer), body read to the end, so the record is built and queued; next to the
/// same call without the audit layer. The writer thread seals and appends concurrently; when it
/// falls behind, the queue fills and the request waits (backpressure), so a saturated run measures
/// the slower of the two sides.
fn request_path(c: &mut Criterion) {
    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::{BodyExt, Full};
    use mcp_enterprise_audit::{AuditLayer, FsyncPolicy, QueueFullPolicy};
    use mcp_enterprise_core::{InspectLayer, McpBody};
    use tower::{ServiceBuilder, ServiceExt};

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let (layer, trail) = AuditLayer::builder()
        .directory(dir.path().join("trail"))
        .fsync(FsyncPolicy::Os)
        .on_full(QueueFullPolicy::Backpressure)
        .redaction(Redaction::new(b"bench key bench key bench key 32"))
        .build()
        .expect("trail");
    let body = Bytes::from(
        json!({"jsonrpc": "2.0", "id": 42, "method": "tools/call", "params": {"name": "lookup_customer",
            "arguments": {"customer_id": "C-1042", "fields": ["name", "email"], "limit": 10},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}})
        .to_string(),
    );
    let answer = Bytes::from_static(br#"{"jsonrpc":"2.0","id":42,"result":{"content":[{"type":"text","text":"ok"}]}}"#);
    let request = || {
        Request::post("/mcp")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "lookup_customer")
            .body(Full::new(body.clone()))
            .expect("request")
    };
    let inner = ServiceBuilder::new().layer(InspectLayer::new()).service(tower::service_fn(
        move |_req: Request<McpBody<Full<Bytes>>>| {
            let answer = answer.clone();
            async move {
                let mut res = Response::new(Full::new(answer));
                res.headers_mut().insert("content-type", http::HeaderValue::from_static("application/json"));
                Ok::<_, std::convert::Infallible>(res)
            }
        },
    ));
    let audited = ServiceBuilder::new().layer(layer).service(inner.clone());
    let mut g = c.benchmark_group("audit_request_path");
    g.bench_function("without_audit", |b| {
        b.iter(|| {
            rt.block_on(async {
                let res = inner.clone().oneshot(request()).await.expect("ok");
                black_box(res.into_body().collect().await.expect("body").to_bytes())
            })
        })
    });
    g.bench_function("through_audit_layer", |b| {
        b.iter(|| {
            rt.block_on(async {
                let res = audited.clone().oneshot(request()).await.expect("ok");
                black_box(res.into_body().collect().await.expect("body").to_bytes())
            })
        })
    });
    g.finish();
    trail.shutdown();
}

/// `audit verify`'s verifier over a sealed trail of 20 000 call records, with and without the
/// progress callback the command line draws its bar from (it must cost nothing measurable).
fn verify_trail(c: &mut Criterion) {
    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::{BodyExt, Full};
    use mcp_enterprise_audit::verify::{verify_files, verify_files_with_progress};
    use mcp_enterprise_audit::{AuditLayer, FsyncPolicy, QueueFullPolicy, trail_files};
    use mcp_enterprise_core::{InspectLayer, McpBody};
    use tower::{ServiceBuilder, ServiceExt};

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let (layer, trail) = AuditLayer::builder()
        .directory(dir.path())
        .fsync(FsyncPolicy::Os)
        .on_full(QueueFullPolicy::Backpressure)
        .build()
        .expect("trail");
    let svc = ServiceBuilder::new().layer(layer).layer(InspectLayer::new()).service(tower::service_fn(
        |_req: Request<McpBody<Full<Bytes>>>| async {
            let mut res = Response::new(Full::new(Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#)));
            res.headers_mut().insert("content-type", http::HeaderValue::from_static("application/json"));
            Ok::<_, std::convert::Infallible>(res)
        },
    ));
    rt.block_on(async {
        for i in 0..20_000 {
            let body = json!({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "hello"}}});
            let req = Request::post("/mcp")
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(Full::new(Bytes::from(body.to_string())))
                .expect("request");
            let res = svc.clone().oneshot(req).await.expect("ok");
            let _ = res.into_body().collect().await;
        }
    });
    trail.shutdown();
    let files = trail_files(dir.path()).expect("files");
    let bytes: u64 = files.iter().map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0)).sum();
    let mut g = c.benchmark_group("audit_verify");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("verify_20k_records", |b| {
        b.iter(|| black_box(verify_files(&files, None, false).expect("verify")))
    });
    g.bench_function("verify_20k_records_with_progress", |b| {
        b.iter(|| {
            let mut last = 0u64;
            let report = verify_files_with_progress(&files, None, false, &mut |done| last = done).expect("verify");
            black_box((report, last))
        })
    });
    g.finish();
}

criterion_group!(benches, bench, request_path, verify_trail);
criterion_main!(benches);
