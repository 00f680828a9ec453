//! The policy layer (`mcp-enterprise-policy`, Cedar) through the gateway in front of the real rmcp
//! demo server, with real ES256 tokens judged by the SSO layer (static JWKS of the demo IdP):
//!
//! - allow and deny by principal attributes (subject, scopes), by tool name, by argument value
//!   (string, integer, decimal, nested object, array membership) and by annotation; default deny;
//!   an evaluation error (an argument of the wrong type) and an unrepresentable number → denied,
//!   and the upstream never sees the call;
//! - list filtering of `tools/list` (JSON and SSE upstream answers), `resources/list`,
//!   `prompts/list`, consistent with the calls; a request cursor passes through;
//! - load-time validation against the live upstream's tools (fetched at start-up) and against a
//!   snapshot: a missing argument and a wrong-typed comparison reported with the policy id and
//!   its file:line:column; a reload with a bad policy file keeps the old set;
//! - the `mcp-enterprise policy test` / `check` / `explain` commands of the built binary on
//!   `examples/policies/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::StatusCode;
use mcp_enterprise::demo::{DEMO_ISSUER, DemoIdp};
use mcp_enterprise_config::Loader;
use mcp_enterprise_gateway::configured::{ConfiguredError, ConfiguredGateway};
use mcp_enterprise_gateway::{Gateway, RunningGateway};
use mcp_enterprise_policy::{Catalog, Policies, PolicyLayer};
use mcp_enterprise_sso::{Issuer, Keys, ScopePolicy, ScopeRule, SsoLayer};
use serde_json::{Value, json};

use crate::common::{self, Upstream, call, demo_upstream, demo_upstream_serving, modern};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn example(name: &str) -> PathBuf {
    repo().join("examples/policies").join(name)
}

/// Every call needs `mcp`; `mcp:admin` implies it. No tool-specific scope rules: the policies decide.
fn scopes() -> ScopePolicy {
    ScopePolicy::new(
        vec![ScopeRule::new("*", None, vec!["mcp".into()])],
        std::collections::BTreeMap::from([("mcp:admin".to_owned(), vec!["mcp".to_owned()])]),
    )
    .unwrap()
}

struct Setup {
    gateway: RunningGateway,
    _upstream: Upstream,
    alice: String,
    bob: String,
    admin: String,
}

/// The demo policies plus one file of our own, validated against the live upstream's tools.
async fn setup(json_response: bool) -> Setup {
    setup_paged(json_response, None).await
}

/// As [`setup`], the upstream listing its tools `page_size` at a time.
async fn setup_paged(json_response: bool, page_size: Option<usize>) -> Setup {
    let mut config = rmcp::transport::streamable_http_server::StreamableHttpServerConfig::default();
    config.json_response = json_response;
    let mut server = mcp_enterprise_demo_server::DemoServer::new();
    if let Some(size) = page_size {
        server = server.with_page_size(size);
    }
    let upstream = demo_upstream_serving(server, config).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let resource = format!("http://{}/mcp", listener.local_addr().unwrap());
    let idp = DemoIdp::generate().unwrap();
    let sso = SsoLayer::builder(&resource)
        .issuer(Issuer::new(DEMO_ISSUER).keys(Keys::Static(idp.jwks().clone())))
        .scope_policy(scopes())
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let extra = dir.path().join("extra.cedar");
    std::fs::write(
        &extra,
        "@id(\"bob-no-echo\")\nforbid(principal, action, resource == Mcp::Tool::\"echo\") when { principal.subject == \"bob\" };\n",
    )
    .unwrap();
    let catalog = mcp_enterprise_gateway::catalog::fetch_catalog(&upstream.url).await.unwrap();
    let policies = Policies::from_files(&[example("demo.cedar"), extra]).unwrap();
    let policy = PolicyLayer::builder(policies).catalog(catalog).build().unwrap();
    assert!(!policy.report().has_errors(), "{}", policy.report());
    let gateway = Gateway::builder()
        .upstream(&upstream.url)
        .unwrap()
        .sso(sso)
        .policy(policy)
        .build()
        .unwrap()
        .serve_on(listener)
        .unwrap();
    let hour = Duration::from_secs(3600);
    Setup {
        alice: idp.mint("alice", "mcp", &resource, hour).unwrap(),
        bob: idp.mint("bob", "mcp", &resource, hour).unwrap(),
        admin: idp.mint("admin", "mcp:admin", &resource, hour).unwrap(),
        gateway,
        _upstream: upstream,
    }
}

async fn as_user(token: &str, url: &str, method: &str, params: Value) -> (StatusCode, Value) {
    let mut req = modern(url, 9, method, params, json!({}));
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (status, _, msg) = call(req).await;
    (status, msg)
}

async fn tool(token: &str, url: &str, name: &str, arguments: Value) -> (StatusCode, Value) {
    as_user(token, url, "tools/call", json!({"name": name, "arguments": arguments})).await
}

fn reasons(msg: &Value) -> Value {
    msg["error"]["data"]["reasons"].clone()
}

fn names(msg: &Value, key: &str) -> Vec<String> {
    let mut names: Vec<String> = msg["result"][key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {msg}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn calls_are_allowed_and_denied_by_principal_name_arguments_and_annotations() {
    let s = setup(false).await;
    let url = s.gateway.mcp_url();
    let (a, b, admin) = (&s.alice, &s.bob, &s.admin);

    // by annotation (read-only) and principal subject
    let (status, msg) = tool(a, &url, "echo", json!({"text": "hi"})).await;
    assert_eq!((status, msg["result"]["content"][0]["text"].as_str()), (StatusCode::OK, Some("hi")), "{msg}");
    let (status, msg) = tool(b, &url, "echo", json!({"text": "hi"})).await;
    assert_eq!((status, reasons(&msg)), (StatusCode::FORBIDDEN, json!(["bob-no-echo"])), "{msg}");
    assert_eq!(msg["error"]["code"], -32600);
    assert_eq!(msg["id"], 9);

    // by tool name and scope
    let (status, msg) = tool(a, &url, "stream_progress", json!({"steps": 1, "interval_ms": 10})).await;
    assert_eq!((status, reasons(&msg)), (StatusCode::FORBIDDEN, json!(["no-streaming-for-users"])), "{msg}");
    let (status, msg) = tool(admin, &url, "stream_progress", json!({"steps": 1, "interval_ms": 10})).await;
    assert_eq!(status, StatusCode::OK, "{msg}");

    // default deny: delete_customer is destructive, only the admin permit names it
    let (status, msg) = tool(a, &url, "delete_customer", json!({"id": "c-002"})).await;
    assert_eq!((status, reasons(&msg)), (StatusCode::FORBIDDEN, json!(["no_permit_matched"])), "{msg}");
    let (status, msg) = tool(a, &url, "lookup_customer", json!({"id": "c-002"})).await;
    assert_eq!((status, msg["result"]["isError"].as_bool()), (StatusCode::OK, Some(false)), "not deleted: {msg}");
    let (status, msg) = tool(admin, &url, "delete_customer", json!({"id": "c-002"})).await;
    assert_eq!((status, msg["result"]["isError"].as_bool()), (StatusCode::OK, Some(false)), "{msg}");

    // by argument value: the upstream echoes exactly what it was given when allowed
    let all = json!({"database": "reporting", "query": "select 1", "limit": 10, "budget": 12.5,
        "filter": {"region": "us", "min_value": 1.5}, "tags": ["finance"]});
    let (status, msg) = tool(a, &url, "run_query", all.clone()).await;
    assert_eq!(status, StatusCode::OK, "{msg}");
    assert_eq!(msg["result"]["structuredContent"]["filter"], json!({"region": "us", "min_value": 1.5}), "{msg}");
    let denied = [
        (json!({"database": "production", "query": "q"}), "no-production-queries"), // string
        (json!({"database": "reporting", "query": "q", "limit": 5000}), "query-row-limit"), // integer
        (json!({"database": "reporting", "query": "q", "budget": 50}), "query-budget"), // decimal
        (json!({"database": "reporting", "query": "q", "budget": 50.25}), "query-budget"),
        (json!({"database": "reporting", "query": "q", "filter": {"region": "eu"}}), "no-eu-rows"), // nested
        (json!({"database": "reporting", "query": "q", "tags": ["a", "pii"]}), "no-pii-queries"),   // array
        // an argument of the wrong type: the forbid cannot be evaluated, so the call is denied
        (json!({"database": "reporting", "query": "q", "limit": "lots"}), "evaluation_error:query-row-limit"),
        // a number Cedar cannot hold exactly is never rounded into a decision
        (json!({"database": "reporting", "query": "q", "budget": 49.99999}), "arguments_not_representable"),
    ];
    for (arguments, reason) in denied {
        let (status, msg) = tool(a, &url, "run_query", arguments.clone()).await;
        assert_eq!((status, reasons(&msg)), (StatusCode::FORBIDDEN, json!([reason])), "{arguments}: {msg}");
    }
    let (status, _) = tool(admin, &url, "run_query", json!({"database": "production", "query": "q"})).await;
    assert_eq!(status, StatusCode::OK, "admins may query production");

    // resources and prompts
    let (status, msg) = as_user(a, &url, "resources/read", json!({"uri": "demo://readme"})).await;
    assert_eq!(status, StatusCode::OK, "{msg}");
    let (status, msg) = as_user(a, &url, "resources/read", json!({"uri": "demo://other"})).await;
    assert_eq!((status, reasons(&msg)), (StatusCode::FORBIDDEN, json!(["no_permit_matched"])), "{msg}");
    let (status, msg) =
        as_user(a, &url, "prompts/get", json!({"name": "summarize", "arguments": {"topic": "x"}})).await;
    assert_eq!(status, StatusCode::OK, "{msg}");
}

async fn lists_match_calls(json_response: bool) {
    let s = setup(json_response).await;
    let url = s.gateway.mcp_url();
    let (status, msg) = as_user(&s.alice, &url, "tools/list", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{msg}");
    assert_eq!(
        names(&msg, "tools"),
        ["add", "echo", "echo_headers", "lookup_customer", "run_query", "whoami"],
        "{msg}"
    );
    let (_, msg) = as_user(&s.bob, &url, "tools/list", json!({})).await;
    assert_eq!(names(&msg, "tools"), ["add", "echo_headers", "lookup_customer", "run_query", "whoami"], "{msg}");
    let (_, msg) = as_user(&s.admin, &url, "tools/list", json!({})).await;
    let all =
        ["add", "delete_customer", "echo", "echo_headers", "lookup_customer", "run_query", "stream_progress", "whoami"];
    assert_eq!(names(&msg, "tools"), all, "{msg}");
    // consistent: every listed tool is callable with some arguments, every hidden one is denied by name
    let (_, msg) = as_user(&s.alice, &url, "tools/list", json!({})).await;
    let shown = names(&msg, "tools");
    for t in all {
        let (status, msg) = tool(&s.alice, &url, t, json!({})).await;
        let denied_by_name = status == StatusCode::FORBIDDEN
            && reasons(&msg).as_array().unwrap().iter().all(|r| !r.as_str().unwrap().starts_with("evaluation_error"));
        assert_eq!(shown.contains(&t.to_owned()), !denied_by_name, "{t}: {msg}");
    }
    let (_, msg) = as_user(&s.alice, &url, "resources/list", json!({})).await;
    assert_eq!(names(&msg, "resources"), ["readme"], "{msg}");
    let (_, msg) = as_user(&s.alice, &url, "prompts/list", json!({})).await;
    assert_eq!(names(&msg, "prompts"), ["summarize"], "{msg}");
    // the extension is advertised with its settings
    let (_, msg) = as_user(&s.alice, &url, "server/discover", json!({})).await;
    assert_eq!(
        msg["result"]["capabilities"]["extensions"]["io.github.mcp-enterprise/policy"],
        json!({"filteredLists": true})
    );
}

/// Pages through `tools/list`: the filtered pages and the cursors the upstream sent.
async fn pages(s: &Setup, token: &str) -> Vec<(Vec<String>, Option<String>)> {
    let url = s.gateway.mcp_url();
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        let (status, msg) = as_user(token, &url, "tools/list", params).await;
        assert_eq!(status, StatusCode::OK, "{msg}");
        cursor = msg["result"]["nextCursor"].as_str().map(str::to_owned);
        out.push((names(&msg, "tools"), cursor.clone()));
        if cursor.is_none() || out.len() > 10 {
            return out;
        }
    }
}

#[tokio::test]
async fn paged_lists_keep_their_cursors_in_json_and_sse() {
    for json_response in [false, true] {
        let s = setup_paged(json_response, Some(2)).await;
        let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            pages(&s, &s.alice).await,
            [
                (strings(&["add"]), Some("2".to_owned())),
                (strings(&["echo", "echo_headers"]), Some("4".to_owned())),
                (strings(&["lookup_customer", "run_query"]), Some("6".to_owned())),
                (strings(&["whoami"]), None),
            ],
            "json_response: {json_response}"
        );
        let admin: Vec<String> = pages(&s, &s.admin).await.into_iter().flat_map(|(names, _)| names).collect();
        assert_eq!(admin.len(), 8, "{admin:?}");
    }
}

#[tokio::test]
async fn lists_are_filtered_in_sse_answers() {
    lists_match_calls(false).await;
}

#[tokio::test]
async fn lists_are_filtered_in_json_answers() {
    lists_match_calls(true).await;
}

const MISSING_AND_WRONG: &str = r#"@id("fine")
permit(principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"echo");

@id("missing-argument")
permit(principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"run_query")
when { context.arguments.databse == "reporting" };

@id("wrong-type")
forbid(principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"run_query")
when { context.arguments has limit && context.arguments.limit > "1000" };
"#;

fn config_doc(upstream: &str, policy: &Path, extra: &str) -> String {
    format!(
        "version = 1\nresource = \"http://127.0.0.1:8787/mcp\"\n[upstream]\nurl = \"{upstream}\"\n[listen]\naddress = \"127.0.0.1:0\"\n\
         [policy]\npolicy_files = [\"{}\"]\n{extra}",
        policy.display()
    )
}

#[tokio::test]
async fn a_missing_argument_and_a_wrong_type_are_reported_at_load_with_id_and_location() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.cedar");
    std::fs::write(&bad, MISSING_AND_WRONG).unwrap();
    let b = bad.display();
    // against a snapshot, in the config check (file:line:key of the document, then the policy's)
    let doc = dir.path().join("mcp.toml");
    let snapshot = format!("tools_snapshot_file = \"{}\"\n", example("demo-tools.json").display());
    std::fs::write(&doc, config_doc("http://127.0.0.1:1/mcp", &bad, &snapshot)).unwrap();
    let errors: Vec<String> = match Loader::new().file(&doc).env(Vec::<(String, String)>::new()).load() {
        Ok(_) => panic!("loaded"),
        Err(e) => e.diagnostics().iter().map(ToString::to_string).collect(),
    };
    let text = errors.join("\n");
    assert_eq!(errors.len(), 1, "{text}");
    assert!(text.contains("policy.policy_files[0]"), "{text}");
    assert!(
        text.contains(&format!("{b}:6:")) && text.contains("\"missing-argument\"") && text.contains("databse"),
        "{text}"
    );
    assert!(text.contains(&format!("{b}:10:")) && text.contains("\"wrong-type\""), "{text}");
    assert!(!text.contains("\"fine\""), "{text}");

    // against the live upstream, fetched at start-up: the gateway refuses to start
    let upstream = demo_upstream().await;
    std::fs::write(&doc, config_doc(&upstream.url, &bad, "fetch_tools_at_startup = true\n")).unwrap();
    let err = ConfiguredGateway::start(Loader::new().file(&doc).env(Vec::<(String, String)>::new())).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&format!("{b}:6:")) && text.contains("missing-argument"), "{text}");
    assert!(text.contains("wrong-type") && text.contains("validated against tool \"run_query\""), "{text}");

    // at warning level it starts, and the calls the broken policies guard are still decided
    std::fs::write(&doc, config_doc(&upstream.url, &bad, "fetch_tools_at_startup = true\nvalidation = \"warning\"\n"))
        .unwrap();
    let gw = ConfiguredGateway::start(Loader::new().file(&doc).env(Vec::<(String, String)>::new())).await.unwrap();
    let url = gw.mcp_url();
    let (status, _, msg) = call(modern(
        &url,
        1,
        "tools/call",
        json!({"name": "run_query", "arguments": {"database": "reporting", "query": "q"}}),
        json!({}),
    ))
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{msg}");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_reload_with_a_bad_policy_file_keeps_the_old_set() {
    let upstream = demo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.cedar");
    let doc = dir.path().join("mcp.toml");
    std::fs::write(&policy, "@id(\"echo\") permit(principal, action, resource == Mcp::Tool::\"echo\");").unwrap();
    std::fs::write(&doc, config_doc(&upstream.url, &policy, "fetch_tools_at_startup = true\n")).unwrap();
    let gw = ConfiguredGateway::start(Loader::new().file(&doc).env(Vec::<(String, String)>::new())).await.unwrap();
    let url = gw.mcp_url();
    let status_of = |tool: &'static str| {
        let url = url.clone();
        async move {
            let args = if tool == "echo" { json!({"text": "x"}) } else { json!({"a": 1, "b": 2}) };
            call(modern(&url, 1, "tools/call", json!({"name": tool, "arguments": args}), json!({}))).await.0
        }
    };
    assert_eq!((status_of("echo").await, status_of("add").await), (StatusCode::OK, StatusCode::FORBIDDEN));

    // a syntax error: refused by the document check, the old set stays
    std::fs::write(&policy, "permit(principal, action, resource == Mcp::Tool::\"add\")").unwrap();
    let err = gw.reload().unwrap_err();
    assert!(matches!(err, ConfiguredError::Config(_)), "{err}");
    assert!(err.to_string().contains("policy.policy_files[0]"), "{err}");
    assert_eq!((status_of("echo").await, status_of("add").await), (StatusCode::OK, StatusCode::FORBIDDEN));

    // a type error against the tools the running layer knows: refused too
    std::fs::write(
        &policy,
        "permit(principal, action, resource == Mcp::Tool::\"add\") when { context.arguments.a == \"1\" };",
    )
    .unwrap();
    let err = gw.reload().unwrap_err();
    assert!(err.to_string().contains("add"), "{err}");
    assert_eq!((status_of("echo").await, status_of("add").await), (StatusCode::OK, StatusCode::FORBIDDEN));

    // a good file: the new set serves new requests
    std::fs::write(&policy, "@id(\"add\") permit(principal, action, resource == Mcp::Tool::\"add\");").unwrap();
    gw.reload().unwrap();
    assert_eq!((status_of("echo").await, status_of("add").await), (StatusCode::FORBIDDEN, StatusCode::OK));
    gw.shutdown().await;
}

#[tokio::test]
async fn the_tools_snapshot_matches_the_demo_server() {
    let upstream = demo_upstream().await;
    let live = mcp_enterprise_gateway::catalog::fetch_catalog(&upstream.url).await.unwrap();
    let saved = mcp_enterprise::policy_cli::read_catalog(&example("demo-tools.json")).unwrap();
    let sorted = |c: &Catalog| {
        let mut n: Vec<String> = c.tool_names().map(str::to_owned).collect();
        n.sort();
        n
    };
    assert_eq!(sorted(&live), sorted(&saved), "regenerate examples/policies/demo-tools.json");
    let report = mcp_enterprise_policy::validate(&Policies::from_files(&[example("demo.cedar")]).unwrap(), &live);
    assert!(report.findings().is_empty(), "{report}");
}

/// Runs the built `mcp-enterprise` binary (`tests/run.sh` builds it before the tests).
fn run(args: &[&str]) -> (bool, String) {
    let binary = mcp_enterprise_tests::gateway_process::binary().unwrap_or_else(|e| panic!("{e}"));
    let out = std::process::Command::new(binary).args(args).current_dir(repo()).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_policy_commands_of_the_binary() {
    let (ok, out) = run(&["policy", "test", "examples/policies/demo-tests.toml"]);
    assert!(ok, "{out}");
    assert!(out.contains(" passed, 0 failed") && !out.contains("FAIL"), "{out}");
    let (ok, out) =
        run(&["policy", "check", "examples/policies/demo.cedar", "--tools", "examples/policies/demo-tools.json"]);
    assert!(ok && out.contains("validated against 8 tools: 0 errors"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.cedar");
    std::fs::write(&bad, MISSING_AND_WRONG).unwrap();
    let tools = example("demo-tools.json");
    let (ok, out) = run(&["policy", "check", bad.to_str().unwrap(), "--tools", tools.to_str().unwrap()]);
    assert!(!ok, "exit code 1: {out}");
    assert!(out.contains(&format!("{}:6:", bad.display())) && out.contains("\"missing-argument\""), "{out}");
    assert!(out.contains("2 errors"), "{out}");

    // a failing expectation fails the run
    let failing = dir.path().join("t.yaml");
    std::fs::write(
        &failing,
        format!(
            "policies: [\"{}\"]\ntools: \"{}\"\nprincipals:\n  alice: {{subject: alice, scopes: [mcp]}}\ncase:\n  - name: wrong\n    principal: alice\n    call: {{method: tools/call, name: delete_customer, arguments: {{id: c-001}}}}\n    expect: allow\n",
            example("demo.cedar").display(),
            tools.display()
        ),
    )
    .unwrap();
    let (ok, out) = run(&["policy", "test", failing.to_str().unwrap()]);
    assert!(!ok && out.contains("FAIL  wrong: expected allow, got deny"), "{out}");

    // explain
    let principal = dir.path().join("p.json");
    let call_file = dir.path().join("c.json");
    std::fs::write(&principal, r#"{"subject": "alice", "scopes": ["mcp"]}"#).unwrap();
    std::fs::write(
        &call_file,
        r#"{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "run_query", "arguments": {"database": "production", "query": "q"}}}"#,
    )
    .unwrap();
    let (ok, out) = run(&[
        "policy",
        "explain",
        example("demo.cedar").to_str().unwrap(),
        "--tools",
        tools.to_str().unwrap(),
        "--principal",
        principal.to_str().unwrap(),
        "--call",
        call_file.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["reasons"], json!(["no-production-queries"]));
    let _ = common::MODERN;
}
