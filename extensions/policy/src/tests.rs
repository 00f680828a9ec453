//! Layer-level tests: decisions, refusals, list filtering (JSON and SSE), and the property that a
//! listed item is never denied for its name alone.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use mcp_enterprise_core::{AuthMethod, Denial, InspectLayer, McpBody, Principal, PrincipalKind};
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt, service_fn};

use crate::engine::{Call, Catalog, DefaultDecision, Policies, PolicySource, Reason, ValidationLevel};
use crate::model::{Action, CallContext, principal_entity};
use crate::{PolicyDenied, PolicyLayer};

fn tools_listing() -> Value {
    json!({"tools": [
        {"name": "run_query", "title": "Run a query", "annotations": {"readOnlyHint": true, "destructiveHint": false},
         "inputSchema": {"type": "object", "required": ["database"], "properties": {
            "database": {"type": "string"}, "limit": {"type": "integer"}, "amount": {"type": "number"},
            "filter": {"type": "object", "properties": {"region": {"type": "string"}}},
            "tags": {"type": "array", "items": {"type": "string"}}}}},
        {"name": "delete_customer", "annotations": {"destructiveHint": true},
         "inputSchema": {"type": "object", "properties": {"id": {"type": "string"}}}},
        {"name": "echo", "annotations": {"readOnlyHint": true},
         "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}},
        {"name": "export_customers", "inputSchema": {"type": "object", "properties": {}}}
    ]})
}

const POLICIES: &str = r#"
@id("analysts-reporting")
permit(principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"run_query")
when { principal.groups.contains("analysts") && context.arguments.database == "reporting" };

@id("limit-cap")
forbid(principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"run_query")
when { context.arguments has limit && context.arguments.limit > 1000 };

@id("amount-cap")
forbid(principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"run_query")
when { context.arguments has amount && context.arguments.amount.greaterThan(decimal("99.5")) };

@id("no-eu")
forbid(principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"run_query")
when { context.arguments has filter && context.arguments.filter has region && context.arguments.filter.region == "eu" };

@id("no-secret-tag")
forbid(principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"run_query")
when { context.arguments has tags && context.arguments.tags.contains("secret") };

@id("read-only-for-all")
permit(principal, action == Mcp::Action::"tools/call", resource is Mcp::Tool)
when { resource.annotations.readOnlyHint && principal.kind != "anonymous" };

@id("contractors-never-export")
forbid(principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"export_customers")
when { principal.groups.contains("contractors") };

@id("admins-everything")
permit(principal in Mcp::Principal::"never", action, resource) when { false };

@id("admins")
permit(principal, action, resource) when { principal.roles.contains("admin") };

@id("readme")
permit(principal, action == Mcp::Action::"resources/read", resource)
when { resource.uri like "demo://*" };
"#;

fn policies(text: &str) -> Policies {
    Policies::parse(vec![PolicySource { name: "test.cedar".into(), text: text.into() }]).expect("policies parse")
}

fn layer() -> PolicyLayer {
    PolicyLayer::builder(policies(POLICIES)).catalog(Catalog::from_listing(&tools_listing())).build().expect("valid")
}

fn user(groups: &[&str], roles: &[&str]) -> Principal {
    Principal::builder("https://idp", "alice", PrincipalKind::User, AuthMethod::Bearer)
        .scopes(["mcp"])
        .claim("groups", json!(groups))
        .claim("roles", json!(roles))
        .claim("email", json!("alice@example.com"))
        .build()
}

fn ctx() -> CallContext {
    CallContext { now_secs: 1_795_000_000, era: "modern", ..CallContext::default() }
}

fn decide(layer: &PolicyLayer, p: Option<&Principal>, tool: &str, args: Value) -> crate::Decision {
    let args = args.as_object().cloned();
    layer.decide(p, Call { action: Action::ToolsCall, target: tool, arguments: args.as_ref() }, &ctx())
}

#[test]
fn decisions_by_principal_name_arguments_and_annotations() {
    let layer = layer();
    let analyst = user(&["analysts"], &[]);
    let contractor = user(&["contractors"], &[]);
    let admin = user(&[], &["admin"]);
    let ok = |d: crate::Decision| d.is_allowed();
    // string argument + principal attribute
    assert!(ok(decide(&layer, Some(&analyst), "run_query", json!({"database": "reporting"}))));
    // run_query is read-only, so read-only-for-all permits it for another database too
    let d = decide(&layer, Some(&analyst), "run_query", json!({"database": "prod"}));
    assert_eq!(d.determining_policies(), ["read-only-for-all"]);
    // number (integer) argument
    let d = decide(&layer, Some(&analyst), "run_query", json!({"database": "reporting", "limit": 5000}));
    assert_eq!(d.reasons(), [Reason::Forbidden("limit-cap".into())]);
    // number (decimal) argument; an integer for a `number` is a decimal too
    assert!(ok(decide(&layer, Some(&analyst), "run_query", json!({"database": "reporting", "amount": 99}))));
    let d = decide(&layer, Some(&analyst), "run_query", json!({"database": "reporting", "amount": 99.75}));
    assert_eq!(d.reasons(), [Reason::Forbidden("amount-cap".into())]);
    // nested object
    let d = decide(&layer, Some(&analyst), "run_query", json!({"database": "reporting", "filter": {"region": "eu"}}));
    assert_eq!(d.reasons(), [Reason::Forbidden("no-eu".into())]);
    assert!(ok(decide(
        &layer,
        Some(&analyst),
        "run_query",
        json!({"database": "reporting", "filter": {"region": "us"}})
    )));
    // array membership
    let d = decide(&layer, Some(&analyst), "run_query", json!({"database": "reporting", "tags": ["a", "secret"]}));
    assert_eq!(d.reasons(), [Reason::Forbidden("no-secret-tag".into())]);
    // annotations: delete_customer is destructive, not read-only → no permit for a plain user
    let d = decide(&layer, Some(&analyst), "delete_customer", json!({"id": "c-001"}));
    assert_eq!(d.reasons(), [Reason::NoPermitMatched]);
    assert!(ok(decide(&layer, Some(&admin), "delete_customer", json!({"id": "c-001"}))));
    // by tool name + principal attribute
    let d = decide(&layer, Some(&contractor), "export_customers", json!({}));
    assert_eq!(d.reasons(), [Reason::Forbidden("contractors-never-export".into())]);
    assert_eq!(decide(&layer, Some(&analyst), "export_customers", json!({})).reasons(), [Reason::NoPermitMatched]);
    let admin_contractor = user(&["contractors"], &["admin"]);
    let d = decide(&layer, Some(&admin_contractor), "export_customers", json!({}));
    assert_eq!(d.reasons(), [Reason::Forbidden("contractors-never-export".into())]);
    // anonymous callers only get what names them
    assert!(!decide(&layer, None, "echo", json!({"text": "x"})).is_allowed());
    assert!(decide(&layer, Some(&analyst), "echo", json!({"text": "x"})).is_allowed());
    // an undeclared tool is assumed destructive and not read-only
    assert_eq!(decide(&layer, Some(&analyst), "mystery", json!({})).reasons(), [Reason::NoPermitMatched]);
}

#[test]
fn evaluation_errors_and_unrepresentable_arguments_fail_closed() {
    let layer = layer();
    let analyst = user(&["analysts"], &[]);
    // limit sent as a string: `limit > 1000` cannot be evaluated; the forbid might have matched
    let d = decide(&layer, Some(&analyst), "run_query", json!({"database": "reporting", "limit": "lots"}));
    assert!(!d.is_allowed());
    assert_eq!(d.reasons(), [Reason::EvaluationError("limit-cap".into())]);
    assert!(!d.errors().is_empty());
    let d = decide(&layer, Some(&analyst), "run_query", json!({"database": "reporting", "amount": 0.123456}));
    assert_eq!(d.reasons(), [Reason::ArgumentsNotRepresentable]);
}

#[test]
fn cached_principals_follow_the_principal_not_only_the_credential() {
    let layer = layer();
    let fp = mcp_enterprise_core::TokenFingerprint::from_sha256(&[1; 32]);
    let with = |groups: &[&str]| {
        Principal::builder("https://idp", "alice", PrincipalKind::User, AuthMethod::Bearer)
            .claim("groups", json!(groups))
            .token_fingerprint(fp)
            .build()
    };
    let args = json!({"database": "reporting"});
    let export = |p: &Principal| decide(&layer, Some(p), "export_customers", json!({})).reasons().to_vec();
    assert!(decide(&layer, Some(&with(&["analysts"])), "run_query", args.clone()).is_allowed());
    assert!(decide(&layer, Some(&with(&["analysts"])), "run_query", args).is_allowed(), "from the cache");
    // same fingerprint, other attributes: never the cached entity
    assert_eq!(export(&with(&["contractors"])), [Reason::Forbidden("contractors-never-export".into())]);
    assert_eq!(export(&with(&[])), [Reason::NoPermitMatched]);
}

/// The tools of a `tools/list` answer filtered for `p` by the engine (the list path's caches).
fn shown_tools(layer: &PolicyLayer, p: Option<&Principal>, context: &CallContext, listing: &Value) -> Vec<String> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "result": listing}).to_string();
    let out = crate::filter_list_body(layer.engine(), p, "tools/list", context, body.as_bytes()).expect("a list");
    names(&serde_json::from_slice(&out).expect("json"), "tools")
}

#[test]
fn a_listing_changing_only_annotations_is_learned_and_a_filtered_list_is_private() {
    let alice = user(&["analysts"], &[]);
    let layer = layer();
    let mut listing = tools_listing();
    listing["ttlMs"] = json!(60_000);
    listing["cacheScope"] = json!("public");
    // `echo` is read-only: shown and allowed (the second time from the caches)
    for _ in 0..2 {
        assert!(shown_tools(&layer, Some(&alice), &ctx(), &listing).contains(&"echo".to_owned()));
        assert!(decide(&layer, Some(&alice), "echo", json!({})).is_allowed());
    }
    // the upstream now says `echo` writes: same arguments, other annotations. Learned: the cached
    // entity and decisions are dropped, so it is hidden and a call is denied
    listing["tools"][2]["annotations"] = json!({"readOnlyHint": false});
    for _ in 0..2 {
        assert!(!shown_tools(&layer, Some(&alice), &ctx(), &listing).contains(&"echo".to_owned()));
        assert_eq!(decide(&layer, Some(&alice), "echo", json!({})).reasons(), [Reason::NoPermitMatched]);
    }
    // a prompt's title is part of its entity too: a retitled prompt is learned
    let prompts = |title: &str| json!({"prompts": [{"name": "summary", "title": title}]});
    let catalog = Catalog::from_listing(&prompts("Summary"));
    let titled = r#"@id("titled") permit(principal, action, resource is Mcp::Prompt) when { resource has title && resource.title == "Summary" };"#;
    let layer_p = PolicyLayer::builder(policies(titled)).catalog(catalog).build().expect("ok");
    let get = |l: &PolicyLayer| {
        l.decide(Some(&alice), Call { action: Action::PromptsGet, target: "summary", arguments: None }, &ctx())
    };
    assert!(get(&layer_p).is_allowed());
    layer_p.engine().learn("prompts/list", &prompts("Other"));
    assert!(!get(&layer_p).is_allowed());
    // the list filtered for one caller is private to it, whether or not this caller lost an item
    // (another may); the other caching hint is kept
    let filtered = |listing: &Value| -> Value {
        let body = json!({"jsonrpc": "2.0", "id": 1, "result": listing}).to_string();
        let out = crate::filter_list_body(layer.engine(), Some(&alice), "tools/list", &ctx(), body.as_bytes());
        serde_json::from_slice(&out.expect("a list")).expect("json")
    };
    let admin = user(&[], &["admin"]);
    let body = json!({"jsonrpc": "2.0", "id": 1, "result": listing}).to_string();
    let all = crate::filter_list_body(layer.engine(), Some(&admin), "tools/list", &ctx(), body.as_bytes());
    let all: Value = serde_json::from_slice(&all.expect("a list")).expect("json");
    assert_eq!(names(&all, "tools").len(), 4, "the admin lost nothing");
    assert_eq!(all["result"]["cacheScope"], "private");
    let out = filtered(&listing);
    assert_eq!((&out["result"]["cacheScope"], &out["result"]["ttlMs"]), (&json!("private"), &json!(60_000)));
    // a list without the hint gets none (an older protocol's answer); an empty list is the same
    // for everyone and passes as it came
    listing.as_object_mut().expect("object").remove("cacheScope");
    assert!(filtered(&listing)["result"].get("cacheScope").is_none());
    let empty = json!({"tools": [], "ttlMs": 0, "cacheScope": "public"});
    assert_eq!(filtered(&empty)["result"]["cacheScope"], "public");
}

#[test]
fn cached_decisions_follow_the_principal_the_catalog_and_the_context_they_depend_on() {
    let fp = mcp_enterprise_core::TokenFingerprint::from_sha256(&[2; 32]);
    let with = |groups: &[&str]| {
        Principal::builder("https://idp", "alice", PrincipalKind::User, AuthMethod::Bearer)
            .claim("groups", json!(groups))
            .claim("roles", json!(if groups.is_empty() { vec!["admin"] } else { vec![] }))
            .token_fingerprint(fp)
            .build()
    };
    // the catalog says `echo` is not read-only: hidden, and a call to it is denied (both cached)
    let mut listing = tools_listing();
    listing["tools"][2]["annotations"]["readOnlyHint"] = json!(false);
    let layer = PolicyLayer::builder(policies(POLICIES)).catalog(Catalog::from_listing(&listing)).build().expect("ok");
    let alice = with(&["analysts"]);
    for _ in 0..2 {
        assert_eq!(shown_tools(&layer, Some(&alice), &ctx(), &listing), ["run_query"]);
        assert_eq!(decide(&layer, Some(&alice), "echo", json!({})).reasons(), [Reason::NoPermitMatched]);
    }
    // same credential, other attributes (an admin now): a new cache entry, never the old decisions
    assert_eq!(shown_tools(&layer, Some(&with(&[])), &ctx(), &listing).len(), 4);
    assert_eq!(shown_tools(&layer, Some(&alice), &ctx(), &listing), ["run_query"]);
    // `fresh` is not declared yet: its entity has MCP's defaults (not read-only), denied, cached
    assert_eq!(decide(&layer, Some(&alice), "fresh", json!({})).reasons(), [Reason::NoPermitMatched]);
    // a listing declares it read-only: learned, the cached entities and decisions are dropped
    let mut learned = listing.clone();
    learned["tools"]
        .as_array_mut()
        .expect("tools")
        .push(json!({"name": "fresh", "annotations": {"readOnlyHint": true}}));
    assert_eq!(shown_tools(&layer, Some(&alice), &ctx(), &learned), ["run_query", "fresh"]);
    assert!(decide(&layer, Some(&alice), "fresh", json!({})).is_allowed());
    // a policy that reads the context: the decision is cached with the context
    let era = r#"@id("modern-only") permit(principal, action == Mcp::Action::"tools/call", resource is Mcp::Tool)
        when { context.era == "modern" };"#;
    let layer = PolicyLayer::builder(policies(era)).catalog(Catalog::from_listing(&learned)).build().expect("ok");
    let legacy = CallContext { era: "legacy", ..ctx() };
    for _ in 0..2 {
        assert_eq!(shown_tools(&layer, Some(&alice), &ctx(), &learned).len(), 5);
        assert_eq!(shown_tools(&layer, Some(&alice), &legacy, &learned), Vec::<String>::new());
    }
    let hour = r#"@id("office-hours") permit(principal, action, resource) when { context.time.hourUtc < 12 };"#;
    let layer = PolicyLayer::builder(policies(hour)).catalog(Catalog::from_listing(&learned)).build().expect("ok");
    let morning = CallContext { now_secs: 1_795_000_000 - 1_795_000_000 % 86_400 + 3600, ..ctx() };
    let evening = CallContext { now_secs: morning.now_secs + 18 * 3600, ..ctx() };
    for _ in 0..2 {
        assert_eq!(shown_tools(&layer, Some(&alice), &morning, &learned).len(), 5);
        assert_eq!(shown_tools(&layer, Some(&alice), &evening, &learned), Vec::<String>::new());
        assert_eq!(shown_tools(&layer, None, &morning, &learned).len(), 5);
        assert_eq!(shown_tools(&layer, None, &evening, &learned), Vec::<String>::new());
    }
}

#[test]
fn which_policies_read_the_context_beyond_the_arguments() {
    let reads = |text: &str| {
        let p = policies(text);
        p.set.policies().any(|p| crate::engine::reads_context(&p.to_json().expect("json")))
    };
    assert!(!reads(POLICIES.split("@id(\"contractors").next().expect("first policies")));
    assert!(!reads(
        r#"permit(principal, action, resource) when { context has arguments && context.arguments.a == 1 };"#
    ));
    assert!(reads(r#"permit(principal, action, resource) when { context.era == "modern" };"#));
    assert!(reads(r#"permit(principal, action, resource) when { context has protocolVersion };"#));
    assert!(reads(r#"permit(principal, action, resource) when { context.time.hourUtc < 12 };"#));
    assert!(reads(r#"permit(principal, action, resource) when { context == {} };"#));
    assert!(reads(r#"permit(principal, action, resource) when { context.unverifiedClient.name like "x*" };"#));
}

#[test]
fn default_decisions() {
    let text = r#"@id("no-delete") forbid(principal, action, resource == Mcp::Tool::"delete_customer");"#;
    let deny = PolicyLayer::builder(policies(text)).build().expect("layer");
    let alice = user(&[], &[]);
    assert_eq!(decide(&deny, Some(&alice), "echo", json!({})).reasons(), [Reason::NoPermitMatched]);
    let allow =
        PolicyLayer::builder(policies(text)).default_decision(DefaultDecision::InsecureAllow).build().expect("layer");
    assert!(decide(&allow, Some(&alice), "echo", json!({})).is_allowed());
    assert_eq!(
        decide(&allow, Some(&alice), "delete_customer", json!({})).reasons(),
        [Reason::Forbidden("no-delete".into())]
    );
}

#[test]
fn validation_errors_fail_the_build_or_warn() {
    let bad = r#"@id("typo")
permit(principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"echo") when { context.arguments.txt == "x" };"#;
    let catalog = Catalog::from_listing(&tools_listing());
    let err = PolicyLayer::builder(policies(bad)).catalog(catalog.clone()).build().expect_err("typo refused");
    let text = err.to_string();
    assert!(text.contains("test.cedar:2:") && text.contains("\"typo\"") && text.contains("txt"), "{text}");
    let layer = PolicyLayer::builder(policies(bad))
        .catalog(catalog)
        .validation(ValidationLevel::Warning)
        .build()
        .expect("warning level");
    assert!(layer.report().has_errors());
}

#[test]
fn tools_learned_at_run_time_revalidate_and_invalid_policies_deny_by_name() {
    let bad = r#"@id("typo")
permit(principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"echo") when { context.arguments.txt == "x" };
@id("all") permit(principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"add");"#;
    // no tools known at build: validation deferred
    let layer = PolicyLayer::builder(policies(bad)).build().expect("deferred");
    let alice = user(&[], &[]);
    layer.engine().learn("tools/list", &tools_listing());
    let d = decide(&layer, Some(&alice), "echo", json!({"txt": "x"}));
    assert_eq!(d.reasons(), [Reason::EvaluationError("typo".into())]);
    assert!(d.errors()[0].contains("type-check"), "{d:?}");
}

#[test]
fn parse_errors_and_duplicate_ids_name_file_line_and_column() {
    let err = Policies::parse(vec![PolicySource {
        name: "x.cedar".into(),
        text: "permit(principal,\n  action, resourc);".into(),
    }])
    .expect_err("bad syntax");
    assert!(err.to_string().starts_with("x.cedar:2:"), "{err}");
    let dup = "@id(\"a\") permit(principal, action, resource);\n@id(\"a\") forbid(principal, action, resource);";
    let err = Policies::parse(vec![PolicySource { name: "d.cedar".into(), text: dup.into() }]).expect_err("duplicate");
    assert!(err.to_string().starts_with("d.cedar:2:1: duplicate policy id"), "{err}");
    let ids = Policies::parse(vec![PolicySource {
        name: "dir/p.cedar".into(),
        text: "permit(principal, action, resource);\nforbid(principal, action, resource);".into(),
    }])
    .expect("parses");
    assert_eq!(ids.location(&cedar_policy::PolicyId::new("p:1")), Some(("dir/p.cedar".into(), 2, 1)));
}

/// A body that yields its chunks one by one.
struct Chunks(VecDeque<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

/// The stack inspect → (principal) → policy → a fake upstream answering lists with `answer`.
async fn through(
    layer: PolicyLayer,
    principal: Option<Principal>,
    body: Value,
    answer: impl Fn(&Value) -> (String, Vec<Bytes>) + Clone + Send + 'static,
) -> (StatusCode, Value, Option<PolicyDenied>, Option<Denial>, String) {
    let upstream = service_fn(move |req: Request<McpBody<http_body_util::Full<Bytes>>>| {
        let answer = answer.clone();
        async move {
            let bytes = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let (content_type, chunks) = answer(&v);
            let mut res = Response::new(Chunks(chunks.into()));
            res.headers_mut().insert("content-type", content_type.parse().expect("hv"));
            Ok::<_, Infallible>(res)
        }
    });
    let add_principal =
        tower::util::MapRequestLayer::new(move |mut req: Request<McpBody<http_body_util::Full<Bytes>>>| {
            if let Some(p) = &principal {
                req.extensions_mut().insert(p.clone());
            }
            req
        });
    let svc = ServiceBuilder::new().layer(InspectLayer::new()).layer(add_principal).layer(layer).service(upstream);
    let req = Request::post("/mcp").body(http_body_util::Full::new(Bytes::from(body.to_string()))).expect("req");
    let res = svc.oneshot(req).await.expect("infallible");
    let status = res.status();
    let denied = res.extensions().get::<PolicyDenied>().cloned();
    let denial = res.extensions().get::<Denial>().cloned();
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value, denied, denial, text)
}

fn list_request(method: &str, cursor: Option<&str>) -> Value {
    match cursor {
        Some(c) => json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": {"cursor": c}}),
        None => json!({"jsonrpc": "2.0", "id": 7, "method": method}),
    }
}

#[tokio::test]
async fn refusal_is_403_with_reason_ids_and_a_denial_for_audit() {
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "run_query", "arguments": {"database": "reporting", "limit": 5000}}});
    let (status, body, denied, denial, _) =
        through(layer(), Some(user(&["analysts"], &[])), call, |_| ("application/json".into(), vec![])).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["id"], 3);
    assert_eq!(body["error"]["data"], json!({"status": 403, "reasons": ["limit-cap"]}));
    let denied = denied.expect("typed refusal");
    assert_eq!(denied.reasons, [Reason::Forbidden("limit-cap".into())]);
    assert!(denied.principal_attributes.contains(&"groups".to_owned()));
    assert!(denied.principal_attributes.contains(&"tag:email".to_owned()));
    let denial = denial.expect("denial for audit");
    assert_eq!(denial.layer(), "policy");
    assert!(denial.reason().contains("limit-cap") && !denial.reason().contains("alice@example.com"), "{denial:?}");
    // a notification naming a denied tool is refused too (no id to answer with)
    let note =
        json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "delete_customer", "arguments": {}}});
    let (status, body, _, _, _) =
        through(layer(), Some(user(&["analysts"], &[])), note, |_| ("application/json".into(), vec![])).await;
    assert_eq!((status, &body["id"]), (StatusCode::FORBIDDEN, &Value::Null));
    // an allowed call reaches the upstream and comes back as it was
    let ok = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
        "params": {"name": "run_query", "arguments": {"database": "reporting"}}});
    let (status, _, denied, _, text) = through(layer(), Some(user(&["analysts"], &[])), ok, |_| {
        ("application/json".into(), vec![Bytes::from_static(br#"{"jsonrpc":"2.0","id":4,"result":{}}"#)])
    })
    .await;
    assert_eq!((status, denied, text.as_str()), (StatusCode::OK, None, r#"{"jsonrpc":"2.0","id":4,"result":{}}"#));
}

fn names(result: &Value, key: &str) -> Vec<String> {
    result["result"][key]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["name"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn lists_are_filtered_in_json_and_sse_and_cursors_survive() {
    let listing = tools_listing();
    let page = move |v: &Value| {
        let mut result = listing.clone();
        result["nextCursor"] = json!("page-2");
        json!({"jsonrpc": "2.0", "id": v["id"].clone(), "result": result})
    };
    let contractor = user(&["contractors"], &["admin"]);
    // JSON, split across chunks
    let p = page.clone();
    let (status, body, _, _, _) =
        through(layer(), Some(contractor.clone()), list_request("tools/list", Some("page-1")), move |v| {
            let text = p(v).to_string();
            let (a, b) = text.split_at(text.len() / 2);
            ("application/json".into(), vec![Bytes::from(a.to_owned()), Bytes::from(b.to_owned())])
        })
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(names(&body, "tools"), ["run_query", "delete_customer", "echo"]);
    assert_eq!(body["result"]["nextCursor"], "page-2");
    // SSE: a notification first, then the response split mid-event, with CRLF line ends
    let p = page.clone();
    let (_, _, _, _, text) =
        through(layer(), Some(user(&["analysts"], &[])), list_request("tools/list", None), move |v| {
            let event = format!("event: message\r\nid: 1\r\ndata: {}\r\n\r\n", p(v));
            let (a, b) = event.split_at(40);
            let note = "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\n";
            (
                "text/event-stream".into(),
                vec![
                    Bytes::from(note),
                    Bytes::from(a.to_owned()),
                    Bytes::from(b.to_owned()),
                    Bytes::from_static(b": done\n\n"),
                ],
            )
        })
        .await;
    assert!(text.starts_with("data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\""), "{text}");
    assert!(text.ends_with(": done\n\n"), "{text}");
    let data = text.lines().find(|l| l.starts_with("data: ") && l.contains("\"result\"")).expect("response event");
    let body: Value = serde_json::from_str(&data["data: ".len()..]).expect("json");
    // analysts: run_query (their permit, with some arguments) and echo (read-only); never delete/export
    assert_eq!(names(&body, "tools"), ["run_query", "echo"]);
    assert_eq!(body["result"]["nextCursor"], "page-2");
    assert!(text.contains("event: message\nid: 1\ndata: "), "{text}");
    // resources and templates
    let (_, body, _, _, _) = through(layer(), Some(user(&[], &[])), list_request("resources/list", None), |v| {
        let r = json!({"jsonrpc": "2.0", "id": v["id"].clone(), "result": {"resources": [
            {"uri": "demo://readme", "name": "readme"}, {"uri": "file:///etc/passwd", "name": "passwd"}]}});
        ("application/json".into(), vec![Bytes::from(r.to_string())])
    })
    .await;
    assert_eq!(names(&body, "resources"), ["readme"]);
    let (_, body, _, _, _) = through(layer(), None, list_request("resources/templates/list", None), |v| {
        let r = json!({"jsonrpc": "2.0", "id": v["id"].clone(), "result": {"resourceTemplates": [{"uriTemplate": "demo://{x}", "name": "t"}]}});
        ("application/json".into(), vec![Bytes::from(r.to_string())])
    })
    .await;
    // `resource.uri like "demo://*"` may match some URI: shown, even to anonymous callers
    assert_eq!(names(&body, "resourceTemplates"), ["t"]);
    // a permit naming one URI: some URI of the template may be it, so the template is shown
    let named = r#"@id("one") permit(principal, action == Mcp::Action::"resources/read", resource == Mcp::Resource::"file:///a");"#;
    let layer = PolicyLayer::builder(policies(named)).build().expect("layer");
    let (_, body, _, _, _) = through(layer, None, list_request("resources/templates/list", None), |v| {
        let r = json!({"jsonrpc": "2.0", "id": v["id"].clone(), "result": {"resourceTemplates": [{"uriTemplate": "file:///{p}", "name": "files"}]}});
        ("application/json".into(), vec![Bytes::from(r.to_string())])
    })
    .await;
    assert_eq!(names(&body, "resourceTemplates"), ["files"]);
}

#[tokio::test]
async fn unfilterable_lists_are_refused_not_passed_on() {
    let small = PolicyLayer::builder(policies(POLICIES)).max_list_bytes(64).build().expect("layer");
    let (_, body, _, _, _) = through(small, None, list_request("tools/list", None), |v| {
        let r = json!({"jsonrpc": "2.0", "id": v["id"].clone(), "result": tools_listing()});
        ("application/json".into(), vec![Bytes::from(r.to_string())])
    })
    .await;
    assert_eq!(body["error"]["code"], -32603);
    assert_eq!(body["id"], 7);
    let (_, body, _, _, _) = through(layer(), None, list_request("prompts/list", None), |_| {
        ("application/json".into(), vec![Bytes::from_static(b"<html>")])
    })
    .await;
    assert_eq!(body["error"]["code"], -32603);
}

#[test]
fn only_a_plain_empty_answer_to_the_awaited_id_skips_the_parse() {
    use crate::filter::{ListKind, empty_answer};
    let id = mcp_enterprise_core::JsonRpcId::Number(7);
    let yes = |body: &str| empty_answer(ListKind::Tools, Some(&id), body.as_bytes());
    assert!(yes(
        r#"{"jsonrpc":"2.0","id":7,"result":{"resultType":"complete","ttlMs":0,"tools":[],"_meta":{"a":[1,{"b":null}]}}}"#
    ));
    assert!(yes(" {\"result\": {\"tools\" : [ ]}, \"id\": 7}\n"));
    for no in [
        // items to decide on
        r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"x"}]}}"#,
        // another response, no id, no result, no list, a list that is not an array
        r#"{"jsonrpc":"2.0","id":8,"result":{"tools":[]}}"#,
        r#"{"jsonrpc":"2.0","result":{"tools":[]}}"#,
        r#"{"jsonrpc":"2.0","id":7,"error":{"code":1,"message":"no"}}"#,
        r#"{"jsonrpc":"2.0","id":7,"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":7,"result":{"tools":{}}}"#,
        r#"{"jsonrpc":"2.0","id":7,"result":{"prompts":[]}}"#,
        // members named twice, where parsers disagree on which counts
        r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[],"tools":[{"name":"x"}]}}"#,
        r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"x"}],"tools":[]}}"#,
        r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[]},"result":{"tools":[{"name":"x"}]}}"#,
        r#"{"jsonrpc":"2.0","id":7,"id":8,"result":{"tools":[]}}"#,
        // ... also deeper, in members not looked at (the full path re-encodes one reading)
        r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[],"_meta":{"a":1,"a":2}}}"#,
        r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[],"_meta":{"x":[{"b":1,"b":2}]}}}"#,
        // an escaped member name (\u0074ools is "tools")
        r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[],"\u0074ools":[{"name":"x"}]}}"#,
        // not strictly JSON
        r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[]}} x"#,
        r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[]},}"#,
        "{\"jsonrpc\":\"2.\u{1}0\",\"id\":7,\"result\":{\"tools\":[]}}",
        // what a `Value` refuses (a number out of range, a lone surrogate) is not passed on either
        r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[],"ttlMs":1e400}}"#,
        r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[],"_meta":{"x":["\ud800"]}}}"#,
        "",
    ] {
        assert!(!yes(no), "{no}");
    }
    assert!(!empty_answer(ListKind::Tools, Some(&id), b"{\"id\":7,\"x\":\"\xff\",\"result\":{\"tools\":[]}}"));
    // without an id (`filter_list_body`) any response counts
    assert!(empty_answer(ListKind::ResourceTemplates, None, br#"{"id":"z","result":{"resourceTemplates":[]}}"#));
}

#[tokio::test]
async fn empty_lists_pass_as_they_came_and_twice_named_lists_are_filtered() {
    let plain = r#"{"jsonrpc":"2.0","id":7,"result":{"resultType":"complete","ttlMs":0,"tools":[]}}"#;
    let (status, _, _, _, text) = through(layer(), None, list_request("tools/list", None), move |_| {
        ("application/json".into(), vec![Bytes::from_static(plain.as_bytes())])
    })
    .await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, plain));
    let (_, _, _, _, text) = through(layer(), None, list_request("tools/list", None), move |_| {
        ("text/event-stream".into(), vec![Bytes::from(format!("id: 3\ndata: {plain}\n\ndata: after\n\n"))])
    })
    .await;
    assert_eq!(text, format!("id: 3\ndata: {plain}\n\ndata: after\n\n"));
    // an empty list named first and a full one named again: filtered, in JSON and SSE
    let twice = json!({"jsonrpc": "2.0", "id": 7, "result": {"tools": []}})
        .to_string()
        .replace(r#""tools":[]"#, &format!(r#""tools":[],"tools":{}"#, tools_listing()["tools"]));
    let t = twice.clone();
    let (_, body, _, _, _) = through(layer(), None, list_request("tools/list", None), move |_| {
        ("application/json".into(), vec![Bytes::from(t.clone())])
    })
    .await;
    // anonymous: nothing is read-only for them, no permit: every tool hidden
    assert_eq!(body["result"]["tools"], json!([]));
    let (_, _, _, _, text) = through(layer(), None, list_request("tools/list", None), move |_| {
        ("text/event-stream".into(), vec![Bytes::from(format!("data: {twice}\n\n"))])
    })
    .await;
    assert!(!text.contains("run_query") && text.contains(r#""tools":[]"#), "{text}");
}

#[tokio::test]
async fn tools_are_learned_from_sse_listings_passing_through() {
    let layer = PolicyLayer::builder(policies(POLICIES)).build().expect("no tools known yet");
    assert!(layer.engine().catalog().is_empty());
    let analyst = user(&["analysts"], &[]);
    // before: run_query is unknown, so not declared read-only: only the analysts' permit applies
    assert_eq!(
        decide(&layer, Some(&analyst), "run_query", json!({"database": "prod"})).reasons(),
        [Reason::NoPermitMatched]
    );
    let (_, _, _, _, text) = through(layer.clone(), Some(analyst.clone()), list_request("tools/list", None), |v| {
        let r = json!({"jsonrpc": "2.0", "id": v["id"].clone(), "result": tools_listing()});
        ("text/event-stream".into(), vec![Bytes::from(format!("data: {r}\n\n"))])
    })
    .await;
    assert!(text.contains("run_query"), "{text}");
    let mut learned: Vec<String> = layer.engine().catalog().tool_names().map(str::to_owned).collect();
    learned.sort();
    assert_eq!(learned, ["delete_customer", "echo", "export_customers", "run_query"]);
    // after: its readOnlyHint is known
    assert!(decide(&layer, Some(&analyst), "run_query", json!({"database": "prod"})).is_allowed());
}

#[test]
fn advertises_the_extension() {
    let set = layer().add_extensions(mcp_enterprise_core::ExtensionSet::builder()).expect("ok").build();
    assert_eq!(set.advertised().get(crate::EXTENSION_ID), Some(&json!({"filteredLists": true})));
}

/// Policy building blocks that never look at arguments.
fn name_only_policy(i: usize, kind: u8, tool: usize, group: usize) -> String {
    let tool = format!("t{tool}");
    let group = format!("g{group}");
    match kind % 6 {
        0 => format!(
            "@id(\"p{i}\") permit(principal, action == Mcp::Action::\"tools/call\", resource == Mcp::Tool::\"{tool}\");"
        ),
        1 => format!(
            "@id(\"p{i}\") forbid(principal, action, resource == Mcp::Tool::\"{tool}\") when {{ principal.groups.contains(\"{group}\") }};"
        ),
        2 => format!(
            "@id(\"p{i}\") permit(principal, action, resource) when {{ principal.groups.contains(\"{group}\") && resource.annotations.readOnlyHint }};"
        ),
        3 => format!(
            "@id(\"p{i}\") forbid(principal, action == Mcp::Action::\"tools/call\", resource) when {{ resource.annotations.destructiveHint }};"
        ),
        4 => format!(
            "@id(\"p{i}\") permit(principal, action, resource == Mcp::Tool::\"{tool}\") when {{ context.arguments has x && context.arguments.x == \"{group}\" }};"
        ),
        _ => format!(
            "@id(\"p{i}\") forbid(principal, action, resource == Mcp::Tool::\"{tool}\") when {{ context.arguments has n && context.arguments.n > {i} }};"
        ),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A filtered list never contains an item a call with its name would be denied for by name
    /// alone, and never hides one some call could use.
    #[test]
    fn filtered_lists_match_calls(
        specs in proptest::collection::vec((0u8..6, 0usize..5, 0usize..3), 1..8),
        groups in proptest::collection::vec(0usize..3, 0..3),
        read_only in proptest::collection::vec(any::<bool>(), 5),
        allow_by_default in any::<bool>(),
    ) {
        let text: String = specs.iter().enumerate().map(|(i, (k, t, g))| name_only_policy(i, *k, *t, *g)).collect::<Vec<_>>().join("\n");
        let tools: Vec<Value> = (0..5).map(|i| json!({"name": format!("t{i}"), "annotations": {"readOnlyHint": read_only[i], "destructiveHint": !read_only[i]},
            "inputSchema": {"type": "object", "properties": {"x": {"type": "string"}, "n": {"type": "integer"}}}})).collect();
        let listing = json!({"tools": tools});
        let layer = PolicyLayer::builder(policies(&text))
            .catalog(Catalog::from_listing(&listing))
            .validation(ValidationLevel::Warning)
            .default_decision(if allow_by_default { DefaultDecision::InsecureAllow } else { DefaultDecision::Deny })
            .build()
            .expect("layer");
        let principal = Principal::builder("https://idp", "p", PrincipalKind::User, AuthMethod::Bearer)
            .claim("groups", json!(groups.iter().map(|g| format!("g{g}")).collect::<Vec<_>>()))
            .build();
        let body = json!({"jsonrpc": "2.0", "id": 1, "result": listing}).to_string();
        let filtered = crate::filter_list_body(layer.engine(), Some(&principal), "tools/list", &ctx(), body.as_bytes()).expect("filtered");
        let filtered: Value = serde_json::from_slice(&filtered).expect("json");
        let shown = names(&filtered, "tools");
        let samples = [json!({}), json!({"x": "g0"}), json!({"x": "g1"}), json!({"x": "g2"}), json!({"n": 0}), json!({"n": 100})];
        for i in 0..5 {
            let tool = format!("t{i}");
            let allowed_for_some = samples.iter().any(|a| decide(&layer, Some(&principal), &tool, a.clone()).is_allowed());
            if allowed_for_some {
                prop_assert!(shown.contains(&tool), "{tool} callable but hidden\n{text}");
            }
            if shown.contains(&tool) {
                // shown: not denied whatever the arguments, i.e. some arguments get through
                prop_assert!(allowed_for_some, "{tool} shown but denied for every argument tried\n{text}");
            }
        }
    }
}

#[test]
fn principal_entity_shape() {
    let entity = principal_entity(Some(&user(&["a"], &["r"])));
    assert_eq!(entity.uid().to_string(), r#"Mcp::Principal::"alice""#);
    let anonymous = principal_entity(None);
    assert_eq!(anonymous.uid().to_string(), r#"Mcp::Principal::"""#);
    let _ = Arc::new(anonymous);
}

#[tokio::test]
async fn a_filtered_json_list_goes_out_whole_with_its_own_length() {
    let listing = json!({"jsonrpc": "2.0", "id": 7, "result": tools_listing()}).to_string();
    let sent = listing.len();
    let upstream = service_fn(move |_: Request<McpBody<http_body_util::Full<Bytes>>>| {
        let (a, b) = listing.split_at(listing.len() / 2);
        let chunks = vec![Bytes::copy_from_slice(a.as_bytes()), Bytes::copy_from_slice(b.as_bytes())];
        let mut res = Response::new(Chunks(chunks.into()));
        res.headers_mut().insert("content-type", "application/json".parse().expect("hv"));
        res.headers_mut().insert("content-length", listing.len().into());
        async move { Ok::<_, Infallible>(res) }
    });
    let svc = ServiceBuilder::new().layer(InspectLayer::new()).layer(layer()).service(upstream);
    let req = Request::post("/mcp")
        .body(http_body_util::Full::new(Bytes::from(list_request("tools/list", None).to_string())))
        .expect("req");
    let res = svc.oneshot(req).await.expect("infallible");
    let length: usize = res.headers()["content-length"].to_str().expect("ascii").parse().expect("a number");
    assert_eq!(res.body().size_hint().exact(), Some(length as u64), "known before the body is read");
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(bytes.len(), length);
    let body: Value = serde_json::from_slice(&bytes).expect("json");
    // anonymous: nothing is read-only for them, no permit: every tool hidden
    assert_eq!(body["result"]["tools"], json!([]));
    assert!(length < sent, "the upstream's length is not kept: {length} vs {sent}");
}
