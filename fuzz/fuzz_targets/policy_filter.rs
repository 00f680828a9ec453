//! List filtering (`mcp_enterprise_policy::filter_list_body`) of arbitrary `tools/list` answers.
//!
//! Invariants: no panic; an answer that is filtered is JSON; it lists only tools of the input,
//! in their order; it keeps the paging cursor; a tool is shown exactly when some call to it gets
//! through (tried with the sample arguments the policies distinguish), so nothing is shown and
//! then denied for its name alone.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_enterprise_core::{AuthMethod, PrincipalKind};
use mcp_enterprise_policy::{
    Action, Call, CallContext, Catalog, DefaultDecision, Policies, PolicyLayer, PolicySource, Principal,
    ValidationLevel, filter_list_body,
};
use serde_json::{Value, json};

const POLICIES: &str = r#"
@id("read-only") permit(principal, action == Mcp::Action::"tools/call", resource is Mcp::Tool)
when { resource.annotations.readOnlyHint };
@id("admins") permit(principal, action, resource) when { principal.groups.contains("admins") };
@id("no-delete") forbid(principal, action, resource == Mcp::Tool::"delete")
unless { principal.groups.contains("admins") };
@id("small-only") forbid(principal, action, resource == Mcp::Tool::"query")
when { context.arguments has n && context.arguments.n > 10 };
@id("x-a") permit(principal, action, resource == Mcp::Tool::"write") when { context.arguments has x && context.arguments.x == "a" };
"#;

fn names(v: &Value) -> Vec<String> {
    v.pointer("/result/tools")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|t| t.get("name").and_then(Value::as_str).map(str::to_owned)).collect())
        .unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else { return };
    let Ok(policies) = Policies::parse(vec![PolicySource { name: "fuzz.cedar".into(), text: POLICIES.into() }]) else {
        panic!("the fixed policies parse")
    };
    // the catalog is what the input itself declares (as the layer learns it from the listing)
    let input: Option<Value> = serde_json::from_slice(body).ok();
    let listing = input.as_ref().and_then(|v| v.get("result")).cloned().unwrap_or(json!({"tools": []}));
    let Ok(layer) = PolicyLayer::builder(policies)
        .catalog(Catalog::from_listing(&listing))
        .validation(ValidationLevel::Warning)
        .default_decision(if flags & 1 == 1 { DefaultDecision::InsecureAllow } else { DefaultDecision::Deny })
        .build()
    else {
        return;
    };
    let groups: Vec<&str> = if flags & 2 == 2 { vec!["admins"] } else { vec![] };
    let principal = Principal::builder("https://idp.fuzz", "p", PrincipalKind::User, AuthMethod::Bearer)
        .claim("groups", json!(groups))
        .build();
    let context = CallContext { now_secs: 1_795_000_000, era: "modern", ..CallContext::default() };
    let Some(filtered) = filter_list_body(layer.engine(), Some(&principal), "tools/list", &context, body) else {
        return;
    };
    let filtered: Value = serde_json::from_slice(&filtered).expect("a filtered answer is JSON");
    let Some(input) = input else { panic!("only JSON answers are filtered") };
    assert_eq!(filtered.pointer("/result/nextCursor"), input.pointer("/result/nextCursor"), "cursor kept");
    let (before, after) = (names(&input), names(&filtered));
    let mut rest = before.iter();
    for name in &after {
        assert!(rest.any(|b| b == name), "{name} was not in the input, or out of order: {before:?} → {after:?}");
    }
    let samples = [json!({}), json!({"x": "a"}), json!({"n": 0}), json!({"n": 100})];
    for name in &before {
        // a duplicated name is one tool to the catalog: judge it once
        if before.iter().filter(|n| *n == name).count() > 1 {
            continue;
        }
        let allowed_for_some = samples.iter().any(|a| {
            let args = a.as_object();
            layer
                .decide(Some(&principal), Call { action: Action::ToolsCall, target: name, arguments: args }, &context)
                .is_allowed()
        });
        assert_eq!(after.contains(name), allowed_for_some, "{name}: shown ⇔ callable with some arguments");
    }
});
