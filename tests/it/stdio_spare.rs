//! Spare children of the stdio bridge (`upstream.stdio.spare_children`): started when the route is
//! served, taken by a client session and by a 2026-07-28 pool (the child that answers is one of
//! the spares, initialised with the taker's capabilities), replaced while there is room, never
//! beyond `max_sessions` with the sessions; a server that exits without input is not restarted in
//! a loop; no spare outlives the gateway; configuration mistakes at file:line:key.

use std::time::{Duration, Instant};

use mcp_enterprise_gateway::stdio::{StdioBridge, StdioCommand, StdioLimits};
use mcp_enterprise_tests::peers::Peers;
use serde_json::{Value, json};

use crate::common;
use crate::stdio::{bridge, errors, exists, gone, open_session};
use crate::stdio_modern::{answer, post, request};

/// Session children and spares together.
fn processes(bridge: &StdioBridge) -> usize {
    bridge.child_pids().len() + bridge.spare_pids().len()
}

#[tokio::test(flavor = "multi_thread")]
async fn spares_are_taken_by_sessions_and_pools_and_stay_within_the_bound() {
    let peers = Peers::require();
    let max = 3;
    let bridge = bridge(&peers, StdioLimits { max_sessions: max, spare_children: 2, ..StdioLimits::default() });
    assert!(bridge.spare_pids().is_empty(), "nothing is started before the route is served");
    let running = common::stdio_gateway(bridge.clone()).await;
    let url = running.mcp_url();
    let first = bridge.spare_pids();
    assert_eq!(first.len(), 2, "two spares once served");
    assert!(first.iter().all(|p| exists(*p)));
    assert!(bridge.child_pids().is_empty() && bridge.sessions() == 0, "a spare is not a session");

    // a client session takes a spare (its initialize answered by it), another one is started
    open_session(&url).await;
    let session_child = bridge.child_pids();
    assert_eq!(session_child.len(), 1);
    assert!(first.contains(&session_child[0]), "the session's child {session_child:?} is one of the spares {first:?}");
    let second = bridge.spare_pids();
    assert_eq!(second.len(), 2, "replaced: one session and two spares fit in {max}");
    assert!(second.iter().all(|p| !session_child.contains(p)));

    // a 2026-07-28 request's pool takes one too, initialised with that request's capabilities
    let list = answer(post(&url, &request(json!(1), "tools/list", json!({}), &json!({})), &[]).await).await;
    let tools: Vec<&str> =
        list["result"]["tools"].as_array().expect("tools").iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(tools.contains(&"echo"), "{list}");
    assert!(!tools.contains(&"trigger-sampling-request"), "no sampling declared, no sampling tool: {tools:?}");
    assert_eq!(bridge.pooled(), 1);
    let children = bridge.child_pids();
    assert_eq!(children.len(), 2);
    assert!(children.iter().all(|p| first.contains(p) || second.contains(p)), "{children:?}");
    assert_eq!(bridge.spare_pids().len(), 1, "two sessions leave room for one spare");
    assert!(processes(&bridge) <= max);

    // the last place goes to a session: no spare is left, none is started beyond the bound
    open_session(&url).await;
    assert_eq!(bridge.sessions(), max);
    assert!(bridge.spare_pids().is_empty(), "{:?}", bridge.spare_pids());
    assert_eq!(processes(&bridge), max);

    let all: Vec<i32> = first.iter().chain(&second).copied().collect();
    running.shutdown().await;
    for pid in all {
        assert!(!exists(pid), "process {pid} (a session's child or a spare) outlived the gateway's shutdown");
    }
}

/// Lines in `path` (0 when it does not exist yet).
fn lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path).map(|t| t.lines().count()).unwrap_or(0)
}

/// Waits (up to 5 s) until `path` has `n` lines, then a little longer, and returns the count.
async fn settle(path: &std::path::Path, n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    while lines(path) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    lines(path)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_exits_without_input_is_not_restarted_in_a_loop() {
    let dir = tempfile::tempdir().expect("dir");
    let starts = dir.path().join("starts");
    // a "server" that notes its start and exits at once
    let argv: Vec<String> =
        ["/bin/sh", "-c", "echo started >> \"$0\"", &starts.display().to_string()].map(str::to_owned).to_vec();
    let command = StdioCommand::new(&argv).expect("command");
    let bridge = StdioBridge::new("/mcp", command, StdioLimits { spare_children: 1, ..StdioLimits::default() });
    let running = common::stdio_gateway(bridge.clone()).await;
    let url = running.mcp_url();
    assert_eq!(settle(&starts, 1).await, 1, "one spare started when served");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !bridge.spare_pids().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(bridge.spare_pids().is_empty(), "an exited spare is not offered");
    assert!(bridge.health().is_ok(), "a spare's exit is not a session's crash");

    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "it", "version": "1"}}});
    let first = failed_initialize(&url, &init).await;
    // the exited spare is discarded and not replaced by that take: the session's own child only
    assert_eq!(settle(&starts, 2).await, 2, "{first}");
    let second = failed_initialize(&url, &init).await;
    // no spare found: one is started for the next session, besides this session's own child
    assert_eq!(settle(&starts, 4).await, 4, "{second}");
    running.shutdown().await;
    assert_eq!(lines(&starts), 4, "nothing starts after the gateway stopped");
}

/// POSTs an `initialize` to a server that exits at once: never a result.
async fn failed_initialize(url: &str, init: &Value) -> Value {
    let response = crate::stdio::post(url, None, init).await;
    let status = response.status();
    let event = answer(response).await;
    assert!(event.get("result").is_none() && event["error"].is_object(), "{status}: {event}");
    event
}

#[test]
fn spare_children_mistakes_are_reported_at_file_line_key() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("gw.toml");
    let t = path.display();
    let doc = |stdio: &str| {
        format!("version = 1\nresource = \"http://127.0.0.1:8787/mcp\"\n\n[upstream]\ncommand = [\"cat\"]\n{stdio}\n")
    };
    std::fs::write(&path, doc("stdio = { spare_children = 17 }")).expect("write");
    let e = errors(&path);
    let line = format!(
        "{t}:6:28: upstream.stdio.spare_children: expected a number of spare children from 0 to 16, found the number 17"
    );
    assert!(e.contains(&line), "missing:\n  {line}\nin:\n  {}", e.join("\n  "));

    std::fs::write(&path, doc("stdio = { max_sessions = 4, spare_children = 4 }")).expect("write");
    let e = errors(&path);
    let line = format!(
        "{t}:6:46: upstream.stdio.spare_children: expected fewer spare children than `upstream.stdio.max_sessions` (4), found the number 4"
    );
    assert!(e.contains(&line), "missing:\n  {line}\nin:\n  {}", e.join("\n  "));

    // against the default bound (16) too, and not a string
    std::fs::write(&path, doc("stdio = { spare_children = 16 }")).expect("write");
    let e = errors(&path);
    assert!(e.iter().any(|l| l.contains("upstream.stdio.spare_children") && l.contains("(16)")), "{e:#?}");
    std::fs::write(&path, doc("stdio = { spare_children = \"2\" }")).expect("write");
    let e = errors(&path);
    assert!(e.iter().any(|l| l.starts_with(&format!("{t}:6:")) && l.contains("spare_children")), "{e:#?}");

    // in range: loads
    std::fs::write(&path, doc("stdio = { max_sessions = 4, spare_children = 3 }")).expect("write");
    let loaded = mcp_enterprise_config::Loader::new().file(&path).env(Vec::<(String, String)>::new()).load();
    let loaded = loaded.expect("three spares fit in four sessions");
    assert_eq!(loaded.config().upstream.stdio.as_ref().expect("stdio").spare_children, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn spares_end_with_the_gateway_even_when_none_was_taken() {
    let peers = Peers::require();
    let bridge = bridge(&peers, StdioLimits { spare_children: 2, ..StdioLimits::default() });
    let running = common::stdio_gateway(bridge.clone()).await;
    let spares = bridge.spare_pids();
    assert_eq!(spares.len(), 2);
    running.shutdown().await;
    for pid in spares {
        assert!(gone(pid).await, "spare {pid} outlived the gateway");
    }
    assert!(bridge.spare_pids().is_empty());
}
