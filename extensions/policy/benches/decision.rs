//! Decision time per `tools/call` for 10, 100 and 1 000 policies with realistic arguments, next
//! to the floor measured in the same run: parsing the call's JSON with `serde_json` (what the
//! inspection layer does once per request anyway). Then list filtering with 100 policies: a
//! `tools/list` answer of 100 tools (its floor: 100 decisions, 100 × "decision, 100 policies")
//! and an empty one (its floor: nothing).
//!
//! Run: `cargo bench -p mcp-enterprise-policy -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use mcp_enterprise_core::{AuthMethod, Principal, PrincipalKind};
use mcp_enterprise_policy::{Action, Call, CallContext, Catalog, Policies, PolicyLayer, PolicySource, ValidationLevel};
use serde_json::{Map, Value, json};

const TOOLS: usize = 50;

fn listing() -> Value {
    listing_of(TOOLS)
}

fn listing_of(n: usize) -> Value {
    let tools: Vec<Value> = (0..n)
        .map(|i| {
            json!({"name": format!("tool_{i}"), "annotations": {"readOnlyHint": i % 3 == 0},
                "inputSchema": {"type": "object", "required": ["database"], "properties": {
                    "database": {"type": "string"}, "limit": {"type": "integer"}, "amount": {"type": "number"},
                    "filter": {"type": "object", "properties": {"region": {"type": "string"}, "since": {"type": "string"}}},
                    "tags": {"type": "array", "items": {"type": "string"}}}}})
        })
        .collect();
    json!({"tools": tools})
}

/// `n` policies spread over the tools: permits by group and database, forbids on limits,
/// regions and tags, annotation rules.
fn policy_text(n: usize) -> String {
    (0..n)
        .map(|i| {
            let tool = format!("tool_{}", i % TOOLS);
            match i % 5 {
                0 => format!(
                    "@id(\"p{i}\") permit(principal, action == Mcp::Action::\"tools/call\", resource == Mcp::Tool::\"{tool}\") when {{ principal.groups.contains(\"team-{i}\") && context.arguments.database == \"db{i}\" }};"
                ),
                1 => format!(
                    "@id(\"p{i}\") forbid(principal, action == Mcp::Action::\"tools/call\", resource == Mcp::Tool::\"{tool}\") when {{ context.arguments has limit && context.arguments.limit > {} }};",
                    1000 + i
                ),
                2 => format!(
                    "@id(\"p{i}\") forbid(principal, action == Mcp::Action::\"tools/call\", resource == Mcp::Tool::\"{tool}\") when {{ context.arguments has filter && context.arguments.filter has region && context.arguments.filter.region == \"r{i}\" }};"
                ),
                3 => format!(
                    "@id(\"p{i}\") forbid(principal, action == Mcp::Action::\"tools/call\", resource == Mcp::Tool::\"{tool}\") when {{ context.arguments has tags && context.arguments.tags.contains(\"secret-{i}\") }};"
                ),
                _ => format!(
                    "@id(\"p{i}\") permit(principal, action == Mcp::Action::\"tools/call\", resource == Mcp::Tool::\"{tool}\") when {{ resource.annotations.readOnlyHint && principal.roles.contains(\"role-{i}\") }};"
                ),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const CALL: &str = r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"tool_0","arguments":
    {"database":"db0","limit":250,"amount":12.5,"filter":{"region":"eu-west","since":"2026-01-01"},"tags":["finance","q3","internal"]},
    "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;

fn bench(c: &mut Criterion) {
    let principal = Principal::builder("https://idp.example.com", "alice", PrincipalKind::User, AuthMethod::Bearer)
        .client_id("app")
        .scopes(["mcp", "mcp:tools"])
        .claim("groups", json!(["team-0", "analysts", "eu"]))
        .claim("roles", json!(["viewer"]))
        .claim("tenant", json!("acme"))
        .token_fingerprint(mcp_enterprise_core::TokenFingerprint::from_sha256(&[7; 32]))
        .build();
    let message: Value = serde_json::from_str(CALL).expect("call JSON");
    let arguments: Map<String, Value> = message["params"]["arguments"].as_object().cloned().expect("arguments object");
    let context = CallContext { now_secs: 1_795_000_000, era: "modern", ..CallContext::default() };
    let mut group = c.benchmark_group("policy");
    group.bench_function("floor: serde_json parse of the call", |b| {
        b.iter(|| black_box(serde_json::from_str::<Value>(black_box(CALL)).ok()));
    });
    group.bench_function("part: principal entity", |b| {
        b.iter(|| black_box(mcp_enterprise_policy::principal_entity(Some(black_box(&principal)))));
    });
    group.bench_function("part: arguments to Cedar", |b| {
        b.iter(|| black_box(mcp_enterprise_policy::arguments_to_cedar(black_box(&arguments), None).ok()));
    });
    for n in [10, 100, 1000] {
        let policies =
            Policies::parse(vec![PolicySource { name: "bench.cedar".into(), text: policy_text(n) }]).expect("parse");
        let layer = PolicyLayer::builder(policies)
            .catalog(Catalog::from_listing(&listing()))
            .validation(ValidationLevel::Warning)
            .build()
            .expect("layer");
        let call = Call { action: Action::ToolsCall, target: "tool_0", arguments: Some(&arguments) };
        assert!(layer.decide(Some(&principal), call, &context).is_allowed(), "the benchmark call is allowed");
        group.bench_function(format!("decision, {n} policies"), |b| {
            b.iter(|| black_box(layer.decide(Some(black_box(&principal)), call, &context)));
        });
    }
    // list filtering, 100 policies over tools 0–49, a listing of 100 tools (50–99 unknown to them)
    let policies =
        Policies::parse(vec![PolicySource { name: "bench.cedar".into(), text: policy_text(100) }]).expect("parse");
    let list = listing_of(100);
    let layer = PolicyLayer::builder(policies)
        .catalog(Catalog::from_listing(&list))
        .validation(ValidationLevel::Warning)
        .build()
        .expect("layer");
    let answer = json!({"jsonrpc": "2.0", "id": 1, "result": list}).to_string();
    let filtered = mcp_enterprise_policy::filter_list_body(
        layer.engine(),
        Some(&principal),
        "tools/list",
        &context,
        answer.as_bytes(),
    )
    .expect("filtered");
    let shown: Value = serde_json::from_slice(&filtered).expect("json");
    let shown = shown["result"]["tools"].as_array().map_or(0, Vec::len);
    assert!(0 < shown && shown < 100, "some tools shown, some hidden: {shown}");
    let empty =
        r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete","ttlMs":0,"cacheScope":"private","tools":[]}}"#;
    for (name, body) in
        [("list: filter 100 tools, 100 policies", answer.as_str()), ("list: empty, 100 policies", empty)]
    {
        group.bench_function(name, |b| {
            b.iter(|| {
                black_box(mcp_enterprise_policy::filter_list_body(
                    layer.engine(),
                    Some(black_box(&principal)),
                    "tools/list",
                    &context,
                    black_box(body.as_bytes()),
                ))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
