//! Records per second: serialising a call record, with the hash chain, and with a signature on
//! every record (the worst case: checkpoints are normally one per thousand records), measured
//! in the same run. The floor of a chained record is what any hash chain must do: serialise the
//! record canonically and SHA-256 the bytes. Also the argument redaction it does per call.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
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
    g.bench_function("serialise_only", |b| {
        b.iter(|| black_box(canonical::to_vec(&Value::Object(black_box(record.clone())))))
    });
    g.bench_function("floor_serialise_and_sha256", |b| {
        b.iter(|| {
            let bytes = canonical::to_vec(&Value::Object(black_box(record.clone())));
            black_box(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes))
        })
    });
    g.bench_function("serialise_and_chain", |b| {
        let mut head = ChainHead::genesis();
        b.iter(|| {
            let (_, line, next) = seal(black_box(record.clone()), &head, None);
            head = next;
            black_box(line)
        })
    });
    g.bench_function("serialise_chain_and_sign_each", |b| {
        let mut head = ChainHead::genesis();
        let mut cp = record.clone();
        cp.insert("type".into(), Value::from("checkpoint"));
        b.iter(|| {
            let (_, line, next) = seal(black_box(cp.clone()), &head, Some(&signer));
            head = next;
            black_box(line)
        })
    });
    let redaction = Redaction::new(b"bench key bench key bench key 32");
    let args = json!({"customer_id": "C-1042", "fields": ["name", "email"], "limit": 10});
    let args = args.as_object().cloned().unwrap_or_default();
    g.bench_function("redact_three_arguments", |b| {
        b.iter(|| black_box(redaction.digest(&Value::Object(args.clone()))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
