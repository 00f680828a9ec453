//! stdio upstreams (`upstream.command`): `@modelcontextprotocol/server-everything` run as a stdio
//! child behind the gateway's bridge. Progress arrives event by event; a sampling request is
//! answered by the official TypeScript SDK client; a child killed mid-call answers the call with a
//! JSON-RPC error and the next call gets a fresh child; concurrent sessions stay within the child
//! limit; idle sessions end; a crash loop shows in readiness; children get only the allowed
//! environment; no child outlives the gateway (not even as a zombie). The conformance comparison
//! is in `conformance.rs` (`stdio_bridge_is_transparent_...`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use mcp_enterprise_gateway::stdio::{StdioBridge, StdioCommand, StdioLimits};
use mcp_enterprise_tests::peers::Peers;
use serde_json::{Value, json};

use crate::common;

const ACCEPT: &str = "application/json, text/event-stream";

pub(crate) fn bridge(peers: &Peers, limits: StdioLimits) -> StdioBridge {
    StdioBridge::new("/mcp", common::server_everything_stdio(peers), limits)
}

pub(crate) async fn post(url: &str, session: Option<&str>, body: &Value) -> http::Response<Incoming> {
    let mut req = Request::post(url)
        .header("content-type", "application/json")
        .header("accept", ACCEPT)
        .header("mcp-protocol-version", "2025-11-25");
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    let req = req.body(Full::new(Bytes::from(body.to_string()))).expect("request");
    common::client().request(req).await.expect("the gateway answers")
}

/// Reads SSE events (their JSON data; priming events skipped) as they arrive, each with the
/// time it arrived.
pub(crate) struct Events {
    body: Incoming,
    buf: Vec<u8>,
}

impl Events {
    pub(crate) fn new(response: http::Response<Incoming>) -> Self {
        Self { body: response.into_body(), buf: Vec::new() }
    }

    pub(crate) async fn next(&mut self) -> Option<(Value, Instant)> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = self.buf.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&event);
                let data: String =
                    text.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim).collect::<Vec<_>>().join("");
                if data.is_empty() {
                    continue;
                }
                return Some((serde_json::from_str(&data).expect("an event's data is JSON"), Instant::now()));
            }
            let frame = self.body.frame().await?.ok()?;
            if let Ok(data) = frame.into_data() {
                self.buf.extend_from_slice(&data);
            }
        }
    }

    /// The answer (the event with no method), collecting the notifications before it.
    pub(crate) async fn answer(&mut self) -> (Value, Vec<(Value, Instant)>) {
        let mut notes = Vec::new();
        while let Some((event, at)) = self.next().await {
            if event.get("method").is_none() {
                return (event, notes);
            }
            notes.push((event, at));
        }
        panic!("the stream ended without an answer; notifications: {notes:?}");
    }
}

/// Opens a session (initialize + initialized); returns its id.
pub(crate) async fn open_session(url: &str) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "it", "version": "1"}}});
    let response = post(url, None, &init).await;
    assert_eq!(response.status(), StatusCode::OK);
    let session = response.headers()["mcp-session-id"].to_str().expect("ascii").to_owned();
    let mut events = Events::new(response);
    loop {
        let (event, _) = events.next().await.expect("the initialize answer");
        if event["id"] == 0 {
            assert_eq!(event["result"]["serverInfo"]["name"], "mcp-servers/everything", "{event}");
            break;
        }
    }
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(post(url, Some(&session), &initialized).await.status(), StatusCode::ACCEPTED);
    session
}

fn call(id: i64, tool: &str, arguments: Value, progress: Option<&str>) -> Value {
    let mut params = json!({"name": tool, "arguments": arguments});
    if let Some(token) = progress {
        params["_meta"] = json!({"progressToken": token});
    }
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
}

/// Whether process `pid` exists (a zombie counts: it is not reaped).
pub(crate) fn exists(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

pub(crate) async fn gone(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while exists(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    !exists(pid)
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_arrives_event_by_event() {
    let peers = Peers::require();
    let running = common::stdio_gateway(bridge(&peers, StdioLimits::default())).await;
    let url = running.mcp_url();
    let session = open_session(&url).await;
    let asked = Instant::now();
    let response = post(
        &url,
        Some(&session),
        &call(1, "trigger-long-running-operation", json!({"duration": 2, "steps": 4}), Some("tok-1")),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut events = Events::new(response);
    let mut progress = Vec::new();
    let answer = loop {
        let (event, at) = events.next().await.expect("the stream goes on until the answer");
        if event["method"] == "notifications/progress" {
            assert_eq!(event["params"]["progressToken"], "tok-1");
            progress.push((event["params"]["progress"].as_u64().expect("a number"), at));
        } else if event["id"] == 1 {
            break (event, at);
        }
    };
    assert!(answer.0["result"]["content"][0]["text"].as_str().is_some_and(|t| t.contains("Steps: 4")), "{}", answer.0);
    assert_eq!(progress.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    // streamed, not buffered: the first step (0.5 s in) arrives long before the answer (2 s in)
    let first = progress[0].1;
    assert!(
        answer.1.duration_since(first) >= Duration::from_millis(1000),
        "progress was held back: first after {:?}, answer after {:?}",
        first - asked,
        answer.1 - asked
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sampling_is_answered_by_the_official_typescript_client() {
    let peers = Peers::require();
    let running = common::stdio_gateway(bridge(&peers, StdioLimits::default())).await;
    let url = running.mcp_url();
    let output = tokio::process::Command::new(peers.node())
        .arg(peers.dir().join("sdk-stdio-client.mjs"))
        .arg(&url)
        .current_dir(peers.dir())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .kill_on_drop(true)
        .output();
    let output =
        tokio::time::timeout(Duration::from_secs(60), output).await.expect("the client finishes").expect("node runs");
    assert!(output.status.success(), "the SDK client failed: {}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).expect("one JSON document");
    assert_eq!(report["sampling"]["requests"], 1, "{report}");
    let text = report["sampling"]["result"]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("sampled by the SDK client") && text.contains("what is 2+2?"), "{report}");
    assert_eq!(report["progress"], json!([1, 2, 3, 4]), "{report}");
    assert!(report["long"]["content"][0]["text"].as_str().is_some_and(|t| t.contains("completed")), "{report}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_child_killed_mid_call_fails_the_call_and_the_next_call_gets_a_fresh_child() {
    let peers = Peers::require();
    let bridge = bridge(&peers, StdioLimits::default());
    let running = common::stdio_gateway(bridge.clone()).await;
    let url = running.mcp_url();
    let session = open_session(&url).await;
    let response = post(
        &url,
        Some(&session),
        &call(1, "trigger-long-running-operation", json!({"duration": 30, "steps": 30}), Some("p")),
    )
    .await;
    let mut events = Events::new(response);
    // the call runs: its first progress event arrived
    loop {
        let (event, _) = events.next().await.expect("a progress event");
        if event["method"] == "notifications/progress" {
            break;
        }
    }
    let pids = bridge.child_pids();
    assert_eq!(pids.len(), 1);
    let old = pids[0];
    let killed = Instant::now();
    std::process::Command::new("kill").args(["-KILL", &old.to_string()]).status().expect("kill");
    let answer = loop {
        let (event, at) =
            tokio::time::timeout(Duration::from_secs(5), events.next()).await.expect("an answer").expect("an event");
        if event["id"] == 1 {
            break (event, at);
        }
    };
    assert!(answer.1 - killed < Duration::from_secs(1), "the error came after {:?}", answer.1 - killed);
    assert_eq!(answer.0["error"]["code"], -32603, "{}", answer.0);
    assert!(answer.0["error"]["message"].as_str().is_some_and(|m| m.contains("exited")), "{}", answer.0);
    assert!(gone(old).await, "the killed child is reaped");
    // the same session goes on with a fresh child (the client's initialize replayed to it)
    let mut events = Events::new(post(&url, Some(&session), &call(2, "echo", json!({"message": "again"}), None)).await);
    let echo = loop {
        let (event, _) = events.next().await.expect("an answer");
        if event["id"] == 2 {
            break event;
        }
    };
    assert_eq!(echo["result"]["content"][0]["text"], "Echo: again", "{echo}");
    let fresh = bridge.child_pids();
    assert_eq!(fresh.len(), 1);
    assert_ne!(fresh[0], old, "a new child");
    running.shutdown().await;
    assert!(gone(fresh[0]).await, "the child ends with the gateway");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_concurrent_sessions_stay_within_the_child_limit() {
    let peers = Peers::require();
    let limit = 6;
    let bridge = bridge(&peers, StdioLimits { max_sessions: limit, ..StdioLimits::default() });
    let running = common::stdio_gateway(bridge.clone()).await;
    let url = running.mcp_url();
    let init = json!({"jsonrpc": "2.0", "id": 7, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "it", "version": "1"}}});
    let attempts = (0..100).map(|_| {
        let (url, init) = (url.clone(), init.clone());
        tokio::spawn(async move {
            let response = post(&url, None, &init).await;
            let status = response.status();
            let session = response.headers().get("mcp-session-id").map(|v| v.to_str().expect("ascii").to_owned());
            let retry_after = response.headers().get("retry-after").is_some();
            let body = if status == StatusCode::OK {
                let mut events = Events::new(response);
                loop {
                    let (e, _) = events.next().await.expect("an answer");
                    if e["id"] == 7 {
                        break e;
                    }
                }
            } else {
                serde_json::from_slice(&response.into_body().collect().await.expect("body").to_bytes()).expect("json")
            };
            (status, session, retry_after, body)
        })
    });
    let mut sessions = Vec::new();
    let mut refused = 0;
    for attempt in attempts {
        let (status, session, retry_after, body) = attempt.await.expect("task");
        match status {
            StatusCode::OK => sessions.push(session.expect("a session id")),
            StatusCode::SERVICE_UNAVAILABLE => {
                refused += 1;
                assert!(retry_after, "a refusal says when to retry");
                assert_eq!(body["error"]["code"], -32000, "{body}");
                assert_eq!(body["id"], 7, "{body}");
                assert!(
                    body["error"]["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("too many sessions") && m.contains(&limit.to_string())),
                    "{body}"
                );
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(sessions.len(), limit);
    assert_eq!(refused, 100 - limit);
    assert_eq!(bridge.sessions(), limit);
    assert!(bridge.child_pids().len() <= limit);
    // ending one session frees its place
    let delete =
        Request::delete(&url).header("mcp-session-id", &sessions[0]).body(Full::new(Bytes::new())).expect("req");
    assert_eq!(common::client().request(delete).await.expect("answer").status(), StatusCode::OK);
    assert_eq!(bridge.sessions(), limit - 1);
    let again = post(&url, None, &init).await;
    assert_eq!(again.status(), StatusCode::OK);
    // an ended session is unknown
    let stale = post(&url, Some(&sessions[0]), &call(1, "echo", json!({"message": "x"}), None)).await;
    assert_eq!(stale.status(), StatusCode::NOT_FOUND);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_child_outlives_the_gateway() {
    let peers = Peers::require();
    let bridge = bridge(&peers, StdioLimits::default());
    let running = common::stdio_gateway(bridge.clone()).await;
    let url = running.mcp_url();
    for _ in 0..3 {
        open_session(&url).await;
    }
    let pids = bridge.child_pids();
    assert_eq!(pids.len(), 3);
    assert!(pids.iter().all(|p| exists(*p)));
    running.shutdown().await;
    for pid in pids {
        // not running and not a zombie: reaped
        assert!(!exists(pid), "child {pid} outlived the gateway's shutdown");
    }
    assert_eq!(bridge.sessions(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_session_ends_with_its_child() {
    let peers = Peers::require();
    let bridge = bridge(&peers, StdioLimits { idle_timeout: Duration::from_secs(1), ..StdioLimits::default() });
    let running = common::stdio_gateway(bridge.clone()).await;
    let url = running.mcp_url();
    let session = open_session(&url).await;
    let pid = bridge.child_pids()[0];
    let deadline = Instant::now() + Duration::from_secs(10);
    while bridge.sessions() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(bridge.sessions(), 0, "the idle session ended");
    assert!(gone(pid).await, "its child was killed and reaped");
    let stale = post(&url, Some(&session), &call(1, "echo", json!({"message": "x"}), None)).await;
    assert_eq!(stale.status(), StatusCode::NOT_FOUND);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_loop_is_reported_by_readiness() {
    // a program that exits at once: every session's child crashes
    let command = StdioCommand::new(&["sh".to_owned(), "-c".to_owned(), "exit 3".to_owned()]).expect("command");
    let bridge = StdioBridge::new("/mcp", command, StdioLimits::default());
    let running = mcp_enterprise_gateway::Gateway::builder()
        .stdio(bridge.clone())
        .listen("127.0.0.1:0".parse().expect("addr"))
        .admin("127.0.0.1:0".parse().expect("addr"))
        .build()
        .expect("gateway")
        .spawn()
        .await
        .expect("spawn");
    let url = running.mcp_url();
    let readyz = format!("http://{}/readyz", running.admin_addr().expect("admin"));
    let ready = || async {
        let r = common::client().get(readyz.parse().expect("uri")).await.expect("readyz answers");
        let status = r.status();
        (
            status,
            serde_json::from_slice::<Value>(&r.into_body().collect().await.expect("body").to_bytes()).expect("json"),
        )
    };
    assert_eq!(ready().await.0, StatusCode::OK);
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "it", "version": "1"}}});
    for _ in 0..6 {
        let response = post(&url, None, &init).await;
        if response.status() == StatusCode::OK {
            let (answer, _) = Events::new(response).next().await.expect("an answer");
            assert_eq!(answer["error"]["code"], -32603, "{answer}");
        } else {
            assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let (status, body) = loop {
        let (status, body) = ready().await;
        if status != StatusCode::OK || Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["not_ready"], json!(["stdio /mcp"]), "{body}");
    assert!(body.to_string().contains("crash loop"), "{body}");
    running.shutdown().await;
}

/// The diagnostics of a document that must not load.
pub(crate) fn errors(path: &std::path::Path) -> Vec<String> {
    match mcp_enterprise_config::Loader::new().file(path).env(Vec::<(String, String)>::new()).load() {
        Ok(loaded) => panic!("expected errors, loaded {loaded:?}"),
        Err(e) => e.diagnostics().iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn config_mistakes_are_reported_at_file_line_key() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("gw.toml");
    let write = |text: &str| std::fs::write(&path, text).expect("write");
    let t = path.display();
    // both url and command; a bad env name; a missing cwd; bounds out of range; propagation
    write(
        r#"version = 1
resource = "http://127.0.0.1:8787/mcp"

[upstream]
url = "http://127.0.0.1:9/mcp"
command = ["npx", "-y", "@modelcontextprotocol/server-everything", "stdio"]
cwd = "/no/such/dir"
env = { "A=B" = "x" }
stdio = { max_sessions = 0, idle_timeout_secs = 0, input_timeout_secs = 7200 }
propagation = { mode = "signed_assertion" }
"#,
    );
    let e = errors(&path);
    let expect = [
        format!(
            "{t}:6:11: upstream.command: expected either `url` or `command` (an HTTP upstream or a stdio one), not both, found both"
        ),
        format!(
            "{t}:7:7: upstream.cwd: expected an existing directory (the child's working directory), found the string \"/no/such/dir\""
        ),
        format!("{t}:8:17: upstream.env.A=B: expected a variable name (not empty, no `=`), found \"A=B\""),
        format!(
            "{t}:9:26: upstream.stdio.max_sessions: expected a number of sessions from 1 to 10000, found the number 0"
        ),
        format!(
            "{t}:9:49: upstream.stdio.idle_timeout_secs: expected a number of seconds from 1 to 86400, found the number 0"
        ),
        format!(
            "{t}:9:73: upstream.stdio.input_timeout_secs: expected a number of seconds from 1 to 3600, found the number 7200"
        ),
    ];
    for line in &expect {
        assert!(e.contains(line), "missing:\n  {line}\nin:\n  {}", e.join("\n  "));
    }
    assert!(
        e.iter().any(|l| l.contains("upstream.propagation.mode") && l.contains("`none` with `upstream.command`")),
        "{e:#?}"
    );
    // neither url nor command
    write("version = 1\nresource = \"http://127.0.0.1:8787/mcp\"\n\n[upstream]\nresponse_timeout_secs = 10\n");
    let e = errors(&path);
    assert!(
        e.iter().any(|l| l.contains("upstream.url")
            && l.contains("`upstream.command`")
            && l.starts_with(&format!("{t}:4:"))),
        "{e:#?}"
    );
    // an empty command; stdio settings for an HTTP upstream
    write("version = 1\nresource = \"http://127.0.0.1:8787/mcp\"\n\n[upstream]\ncommand = []\n");
    let e = errors(&path);
    assert!(
        e.iter().any(|l| l.starts_with(&format!("{t}:5:11: upstream.command: expected a list: the program"))),
        "{e:#?}"
    );
    write(
        "version = 1\nresource = \"http://127.0.0.1:8787/mcp\"\n\n[upstream]\nurl = \"http://127.0.0.1:9/mcp\"\nenv = { A = \"b\" }\n",
    );
    let e = errors(&path);
    assert!(
        e.iter().any(|l| l.starts_with(&format!("{t}:6:"))
            && l.contains("upstream.env: expected no stdio settings without `upstream.command`")),
        "{e:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_child_gets_only_the_allowed_environment_and_its_secrets() {
    let peers = Peers::require();
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("api.key"), "s3cr3t-from-file\n").expect("write");
    let command = common::server_everything_stdio(&peers);
    let argv: Vec<String> = std::iter::once(command.program.clone()).chain(command.args.clone()).collect();
    let port = mcp_enterprise_tests::peers::free_loopback_port().expect("port");
    let path = dir.path().join("gw.toml");
    std::fs::write(
        &path,
        format!(
            r#"version = 1
resource = "http://127.0.0.1:{port}/mcp"
[listen]
address = "127.0.0.1:{port}"
[upstream]
command = {argv}
cwd = "{cwd}"
env = {{ API_KEY = "${{file:api.key}}", MCP_TEST_PARENT_PID = "{pid}" }}
stdio = {{ inherit_env = ["PATH"] }}
"#,
            argv = serde_json::to_string(&argv).expect("json"),
            cwd = peers.dir().display(),
            pid = std::process::id(),
        ),
    )
    .expect("write");
    let loader = mcp_enterprise_config::Loader::new().file(&path).env(Vec::<(String, String)>::new());
    let gateway = mcp_enterprise_gateway::configured::ConfiguredGateway::start(loader).await.expect("starts");
    let url = gateway.mcp_url();
    let session = open_session(&url).await;
    // the caller's token is never handed to the child
    let req = Request::post(&url)
        .header("content-type", "application/json")
        .header("accept", ACCEPT)
        .header("mcp-session-id", &session)
        .header("authorization", "Bearer caller-token-must-not-leak")
        .body(Full::new(Bytes::from(call(1, "get-env", json!({}), None).to_string())))
        .expect("request");
    let mut events = Events::new(common::client().request(req).await.expect("answer"));
    let answer = loop {
        let (event, _) = events.next().await.expect("an answer");
        if event["id"] == 1 {
            break event;
        }
    };
    let env: Value =
        serde_json::from_str(answer["result"]["content"][0]["text"].as_str().expect("text")).expect("json");
    assert_eq!(env["API_KEY"], "s3cr3t-from-file", "the secret reference is resolved for the child");
    assert!(env.get("PATH").is_some());
    assert!(
        std::env::var_os("CARGO_MANIFEST_DIR").is_some() && env.get("CARGO_MANIFEST_DIR").is_none(),
        "the gateway's environment is not inherited: {env}"
    );
    assert!(env.get("HOME").is_none(), "only inherit_env is inherited");
    assert!(!env.to_string().contains("caller-token-must-not-leak"));
    // the secret is redacted in the printed configuration
    assert!(!gateway.redacted().to_string().contains("s3cr3t-from-file"));
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_route_runs_its_own_stdio_server() {
    let peers = Peers::require();
    let command = common::server_everything_stdio(&peers);
    let argv = serde_json::to_string(
        &std::iter::once(command.program.clone()).chain(command.args.clone()).collect::<Vec<_>>(),
    )
    .expect("json");
    let dir = tempfile::tempdir().expect("dir");
    let port = mcp_enterprise_tests::peers::free_loopback_port().expect("port");
    let path = dir.path().join("gw.toml");
    let pid = std::process::id();
    let cwd = peers.dir().display();
    std::fs::write(
        &path,
        format!(
            r#"version = 1
resource = "http://127.0.0.1:{port}/one/mcp"
[listen]
address = "127.0.0.1:{port}"
[upstream]
command = {argv}
cwd = "{cwd}"
env = {{ MCP_TEST_PARENT_PID = "{pid}" }}

[[routes]]
resource = "http://127.0.0.1:{port}/two/mcp"
upstream = {{ command = {argv}, cwd = "{cwd}", env = {{ MCP_TEST_PARENT_PID = "{pid}" }}, stdio = {{ max_sessions = 1 }} }}
"#
        ),
    )
    .expect("write");
    let loader = mcp_enterprise_config::Loader::new().file(&path).env(Vec::<(String, String)>::new());
    let gateway = mcp_enterprise_gateway::configured::ConfiguredGateway::start(loader).await.expect("starts");
    let base = format!("http://127.0.0.1:{}", gateway.running().local_addr().port());
    let bridges = gateway.running().stdio_bridges();
    assert_eq!(bridges.iter().map(|b| b.route().to_owned()).collect::<Vec<_>>(), ["/one/mcp", "/two/mcp"]);
    open_session(&format!("{base}/one/mcp")).await;
    open_session(&format!("{base}/two/mcp")).await;
    assert_eq!(bridges.iter().map(StdioBridge::sessions).collect::<Vec<_>>(), [1, 1], "each route its own children");
    // the route's own limit
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "it", "version": "1"}}});
    assert_eq!(post(&format!("{base}/two/mcp"), None, &init).await.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(post(&format!("{base}/one/mcp"), None, &init).await.status(), StatusCode::OK);
    let pids: Vec<i32> = bridges.iter().flat_map(StdioBridge::child_pids).collect();
    gateway.shutdown().await;
    for pid in pids {
        assert!(!exists(pid), "child {pid} outlived the gateway");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_output_from_a_child_is_dropped_and_the_session_goes_on() {
    // a hostile child: a line that is not JSON, one over the line limit, a JSON value that is not
    // a message object, then the answer
    let script = r#"read line; printf 'not json\n'; head -c 5000 /dev/zero | tr '\0' x; printf '\n[1,2]\n'; printf '{"jsonrpc":"2.0","id":0,"result":{"ok":true}}\n'; sleep 30"#;
    let command = StdioCommand::new(&["sh".to_owned(), "-c".to_owned(), script.to_owned()]).expect("command");
    let bridge = StdioBridge::new("/mcp", command, StdioLimits { max_line_bytes: 1024, ..StdioLimits::default() });
    let running = common::stdio_gateway(bridge.clone()).await;
    let url = running.mcp_url();
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "it", "version": "1"}}});
    let response = post(&url, None, &init).await;
    assert_eq!(response.status(), StatusCode::OK);
    let (answer, _) = tokio::time::timeout(Duration::from_secs(5), Events::new(response).next())
        .await
        .expect("the answer arrives")
        .expect("an event");
    assert_eq!(answer, json!({"jsonrpc": "2.0", "id": 0, "result": {"ok": true}}));
    assert_eq!(bridge.sessions(), 1, "the session goes on");
    // a request body over the limit is refused before it reaches the child
    let big = json!({"jsonrpc": "2.0", "method": "notifications/x", "params": {"pad": "x".repeat(2000)}});
    let session = bridge.sessions();
    assert_eq!(session, 1);
    let response = post(&url, None, &big).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    running.shutdown().await;
}

/// A gateway fronting `bridge` with its admin listener; the admin address.
async fn stdio_gateway_with_admin(
    bridge: StdioBridge,
) -> (mcp_enterprise_gateway::RunningGateway, std::net::SocketAddr) {
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let running = mcp_enterprise_gateway::Gateway::builder()
        .stdio(bridge)
        .listen(local)
        .admin(local)
        .build()
        .expect("gateway")
        .spawn()
        .await
        .expect("spawn gateway");
    let admin = running.admin_addr().expect("admin listener");
    (running, admin)
}

/// The upstream series of `/metrics`: `name{labels}` → value.
async fn upstream_samples(admin: std::net::SocketAddr) -> std::collections::BTreeMap<String, f64> {
    let req = Request::get(format!("http://{admin}/metrics")).body(Full::new(Bytes::new())).expect("request");
    let res = common::client().request(req).await.expect("admin answers");
    let text = String::from_utf8(res.into_body().collect().await.expect("body").to_bytes().to_vec()).expect("utf-8");
    text.lines()
        .filter(|l| l.starts_with("mcpe_upstream_"))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// Sends `body` in `session` and reads its stream up to the answer to `id`.
async fn answer(url: &str, session: &str, body: &Value, id: i64) -> Value {
    let mut events = Events::new(post(url, Some(session), body).await);
    loop {
        let (event, _) = events.next().await.expect("an answer");
        if event["id"] == id {
            return event;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_latency_and_errors_of_a_stdio_route_are_counted_exactly() {
    const DURATION: &str = r#"mcpe_upstream_duration_seconds_count{route="/mcp"}"#;
    const EXITED: &str = r#"mcpe_upstream_errors_total{route="/mcp",kind="exited"}"#;
    const SPAWN: &str = r#"mcpe_upstream_errors_total{route="/mcp",kind="spawn"}"#;
    let peers = Peers::require();
    let bridge = bridge(&peers, StdioLimits::default());
    let (running, admin) = stdio_gateway_with_admin(bridge.clone()).await;
    let url = running.mcp_url();

    // every request the child answers is timed: initialize and three calls
    let session = open_session(&url).await;
    for id in 1..=3 {
        let echo = answer(&url, &session, &call(id, "echo", json!({"message": "hi"}), None), id).await;
        assert_eq!(echo["result"]["content"][0]["text"], "Echo: hi", "{echo}");
    }
    let found = upstream_samples(admin).await;
    assert_eq!(found.get(DURATION), Some(&4.0), "{found:?}");
    assert_eq!(found.get(EXITED), None, "{found:?}");

    // a child killed mid-call: one failed call, no answer timed
    let response = post(
        &url,
        Some(&session),
        &call(4, "trigger-long-running-operation", json!({"duration": 30, "steps": 30}), Some("p")),
    )
    .await;
    let mut events = Events::new(response);
    while events.next().await.expect("a progress event").0["method"] != "notifications/progress" {}
    let pid = bridge.child_pids()[0];
    std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().expect("kill");
    while events.next().await.expect("the error").0["id"] != 4 {}
    let found = upstream_samples(admin).await;
    assert_eq!(found.get(EXITED), Some(&1.0), "{found:?}");
    assert_eq!(found.get(DURATION), Some(&4.0), "{found:?}");

    // the fresh child's replayed initialize is the gateway's own, not counted; the call is
    let echo = answer(&url, &session, &call(5, "echo", json!({"message": "again"}), None), 5).await;
    assert_eq!(echo["result"]["content"][0]["text"], "Echo: again", "{echo}");
    let found = upstream_samples(admin).await;
    assert_eq!(found.get(DURATION), Some(&5.0), "{found:?}");
    assert_eq!(found.get(EXITED), Some(&1.0), "{found:?}");
    assert_eq!(found.get(SPAWN), None, "{found:?}");
    running.shutdown().await;

    // a program that cannot be started: the initialize fails (502) and counts once
    let missing = StdioCommand::new(&["/nonexistent/mcp-server".to_owned()]).expect("command");
    let (running, admin) = stdio_gateway_with_admin(StdioBridge::new("/mcp", missing, StdioLimits::default())).await;
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "it", "version": "1"}}});
    assert_eq!(post(&running.mcp_url(), None, &init).await.status(), StatusCode::BAD_GATEWAY);
    let found = upstream_samples(admin).await;
    assert_eq!(found.get(SPAWN), Some(&1.0), "{found:?}");
    assert_eq!(found.get(DURATION), None, "{found:?}");
    running.shutdown().await;
}
