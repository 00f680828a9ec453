//! Tool arguments → Cedar values (`mcp_enterprise_policy::arguments_to_cedar`), guided by a tool's
//! `inputSchema` turned into a `RecordType`, and a decision over them.
//!
//! Input: an arbitrary JSON schema and arbitrary JSON arguments (the bytes split at the first NUL).
//! Invariants: no panic; conversion is deterministic; arguments nested deeper than `MAX_DEPTH` are
//! refused; a call whose arguments cannot be converted is denied with `ArgumentsNotRepresentable`
//! (fail closed), and a decision is the same when asked twice.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_enterprise_policy::{
    Action, Call, CallContext, Catalog, MAX_DEPTH, Policies, PolicyLayer, PolicySource, Reason, RecordType,
    ValidationLevel, arguments_to_cedar,
};
use serde_json::{Map, Value, json};

const POLICIES: &str = r#"
@id("signed-in") permit(principal, action == Mcp::Action::"tools/call", resource is Mcp::Tool)
when { principal.kind != "anonymous" };
@id("no-production") forbid(principal, action, resource == Mcp::Tool::"fuzzed")
when { context.arguments has database && context.arguments.database == "production" };
"#;

fn depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let (schema, arguments) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"{}"[..], data),
    };
    let schema: Value = serde_json::from_slice(schema).unwrap_or(json!({}));
    let Ok(Value::Object(arguments)) = serde_json::from_slice::<Value>(arguments) else { return };
    let types = RecordType::from_input_schema(&schema);

    let typed = arguments_to_cedar(&arguments, Some(&types));
    let again = arguments_to_cedar(&arguments, Some(&types));
    assert_eq!(typed.is_ok(), again.is_ok(), "conversion is deterministic");
    let untyped = arguments_to_cedar(&arguments, None);
    if depth(&Value::Object(arguments.clone())) > MAX_DEPTH + 1 {
        assert!(typed.is_err() && untyped.is_err(), "nesting beyond MAX_DEPTH is refused");
    }

    // a decision over the same arguments, for a tool declaring this schema
    let listing = json!({"tools": [{"name": "fuzzed", "inputSchema": schema}]});
    let Ok(policies) = Policies::parse(vec![PolicySource { name: "fuzz.cedar".into(), text: POLICIES.into() }]) else {
        panic!("the fixed policies parse")
    };
    let Ok(layer) = PolicyLayer::builder(policies)
        .catalog(Catalog::from_listing(&listing))
        .validation(ValidationLevel::Warning)
        .build()
    else {
        return; // a schema the policies cannot be validated against is refused at load
    };
    let principal = mcp_enterprise_policy::Principal::builder(
        "https://idp.fuzz",
        "alice",
        mcp_enterprise_core::PrincipalKind::User,
        mcp_enterprise_core::AuthMethod::Bearer,
    )
    .build();
    let context = CallContext { now_secs: 1_795_000_000, era: "modern", ..CallContext::default() };
    let args: Option<&Map<String, Value>> = Some(&arguments);
    let call = || Call { action: Action::ToolsCall, target: "fuzzed", arguments: args };
    let decision = layer.decide(Some(&principal), call(), &context);
    let twice = layer.decide(Some(&principal), call(), &context);
    assert_eq!(decision.is_allowed(), twice.is_allowed(), "decisions are deterministic");
    assert_eq!(decision.reasons(), twice.reasons());
    if typed.is_err() {
        assert!(!decision.is_allowed(), "unconvertible arguments are denied");
        assert!(decision.reasons().contains(&Reason::ArgumentsNotRepresentable), "{:?}", decision.reasons());
    }
    if decision.is_allowed() {
        assert!(arguments.get("database") != Some(&json!("production")), "the forbid holds");
    }
});
