//! The admin listener (`admin.address`): `/metrics` passes `promtool check metrics` (Debian
//! `prometheus`) and, after a scripted load of calls, refusals of each kind and rate-limited
//! calls, every counter equals the expected number exactly; `/readyz` turns not-ready — naming
//! the check — and back when the upstream goes away, when Redis stops, when the audit disk fills;
//! `/healthz` stays up throughout; the admin listener needs no `Host` the MCP listener accepts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use mcp_enterprise::demo::{DEMO_ISSUER, DemoIdp};
use mcp_enterprise_audit::{AuditLayer, trail_files};
use mcp_enterprise_config::Loader;
use mcp_enterprise_gateway::Gateway;
use mcp_enterprise_gateway::configured::ConfiguredGateway;
use mcp_enterprise_sso::{Issuer, SsoLayer};
use mcp_enterprise_tests::oidc::{DEFAULT_JWT_RESOURCE, JWT_CLIENT, OidcOptions, OidcProvider};
use mcp_enterprise_tests::peers::Peers;
use mcp_enterprise_tests::redis::RedisServer;
use serde_json::{Value, json};

use crate::common::{self, MODERN};

const EVENTUALLY: Duration = Duration::from_secs(10);

/// A GET on the admin listener: status and body.
async fn admin_get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    let req = Request::get(format!("http://{addr}{path}"))
        // any Host: the admin listener has no Host check (a probe sends the pod IP)
        .header("host", "10.1.2.3:9464")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let res = common::client().request(req).await.expect("admin answers");
    let status = res.status();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8(body.to_vec()).expect("utf-8"))
}

/// `promtool check metrics` on `text`: its complaints, or a failure saying how to install it.
fn promtool(text: &str) -> String {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = child.unwrap_or_else(|e| {
        panic!("promtool is needed ({e}): apt-get install prometheus (.ci/run and tests/run.sh install it)")
    });
    use std::io::Write as _;
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("promtool");
    assert!(out.status.success() || !out.stdout.is_empty() || !out.stderr.is_empty(), "promtool failed silently");
    if out.status.success() {
        String::new()
    } else {
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    }
}

/// Every sample of a Prometheus text exposition: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// A modern `tools/call`, with a bearer token when given.
fn tool_call(url: &str, id: i64, name: &str, arguments: Value, token: Option<&str>) -> Request<Full<Bytes>> {
    let mut req = common::modern(url, id, "tools/call", json!({"name": name, "arguments": arguments}), json!({}));
    if let Some(token) = token {
        req.headers_mut().insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).expect("hv"));
    }
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_every_call_refusal_and_rate_limit_exactly_and_pass_promtool() {
    let upstream = common::demo_upstream().await;
    let idp = DemoIdp::generate().expect("idp");
    let dir = tempfile::tempdir().expect("dir");
    let resource = "http://localhost/mcp";
    // every tool call is allowed except run_query
    let policy = dir.path().join("calls.cedar");
    std::fs::write(
        &policy,
        "permit(principal, action == Mcp::Action::\"tools/call\", resource);\n\
         forbid(principal, action == Mcp::Action::\"tools/call\", resource == Mcp::Tool::\"run_query\");\n",
    )
    .expect("write policy");
    let config = json!({
        "version": 1,
        "resource": resource,
        "upstream": {"url": upstream.url},
        "listen": {"address": "127.0.0.1:0"},
        "admin": {"address": "127.0.0.1:0"},
        "sso": {
            "issuers": [{"issuer": DEMO_ISSUER, "jwks": idp.jwks()}],
            "scopes": {"rules": [{"method": "tools/call", "name": "delete_*", "scopes": ["admin"]}]},
        },
        "policy": {"policy_files": [policy]},
        // a sync per record: the fsync histogram's count is exact
        "audit": {"directory": dir.path().join("trail"), "fsync": "every_record"},
        "rate_limits": [{"name": "adds", "methods": ["tools/call"], "tools": ["add"], "requests": 3, "per_secs": 86400}],
    });
    let file = dir.path().join("gateway.json");
    std::fs::write(&file, config.to_string()).expect("write config");
    let gateway = ConfiguredGateway::start(Loader::new().file(&file)).await.expect("gateway");
    let url = gateway.mcp_url();
    let admin = gateway.running().admin_addr().expect("the admin listener");
    let token = idp.mint("alice", "mcp", resource, Duration::from_secs(3600)).expect("token");
    let other = DemoIdp::generate().expect("another idp");
    let forged = other.mint("mallory", "mcp admin", resource, Duration::from_secs(3600)).expect("token");

    // the script
    const N: i64 = 5; // echo calls that succeed
    const ALLOWED_ADDS: i64 = 3; // within the limit
    const K: i64 = 4; // adds over the limit
    const M: i64 = 2; // refusals of each kind
    let mut id = 0;
    let mut next = || {
        id += 1;
        id
    };
    for _ in 0..N {
        let (status, _, body) = common::call(tool_call(&url, next(), "echo", json!({"text": "x"}), Some(&token))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    for _ in 0..ALLOWED_ADDS {
        let (status, _, body) =
            common::call(tool_call(&url, next(), "add", json!({"a": 1, "b": 2}), Some(&token))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    for _ in 0..K {
        let (status, _, _) = common::call(tool_call(&url, next(), "add", json!({"a": 1, "b": 2}), Some(&token))).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    }
    for _ in 0..M {
        // no token
        let (status, _, _) = common::call(tool_call(&url, next(), "echo", json!({"text": "x"}), None)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // a token of an issuer nobody trusts
        let (status, _, _) = common::call(tool_call(&url, next(), "echo", json!({"text": "x"}), Some(&forged))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // a scope the token lacks
        let (status, _, _) =
            common::call(tool_call(&url, next(), "delete_customer", json!({"id": "c-001"}), Some(&token))).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // a tool the policies forbid
        let (status, _, _) =
            common::call(tool_call(&url, next(), "run_query", json!({"database": "x"}), Some(&token))).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // a header that disagrees with the body
        let mut req = tool_call(&url, next(), "echo", json!({"text": "x"}), Some(&token));
        req.headers_mut().insert("mcp-name", HeaderValue::from_static("add"));
        let (status, _, _) = common::call(req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // a Host the gateway does not serve
        let mut req = tool_call(&url, next(), "echo", json!({"text": "x"}), Some(&token));
        req.headers_mut().insert("host", HeaderValue::from_static("attacker.example"));
        let (status, _, _) = common::call(req).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let total = N + ALLOWED_ADDS + K + 6 * M;
    let audit_records = format!("mcpe_audit_records_written_total {total}");
    // the start record, then each call record
    let syncs = format!("mcpe_audit_fsync_duration_seconds_count {}", total + 1);
    // the audit writer catches up
    let started = std::time::Instant::now();
    loop {
        let text = admin_get(admin, "/metrics").await.1;
        if text.lines().any(|l| l == audit_records) && text.lines().any(|l| l == syncs) {
            break;
        }
        assert!(started.elapsed() < EVENTUALLY, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, text) = admin_get(admin, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(promtool(&text), "", "promtool check metrics:\n{text}");
    let found = samples(&text);
    let mut expected: BTreeMap<String, f64> = BTreeMap::new();
    let mut expect = |series: &str, value: i64| {
        expected.insert(series.to_owned(), value as f64);
    };
    expect(r#"mcpe_requests_total{route="/mcp",method="tools/call",outcome="ok"}"#, N + ALLOWED_ADDS);
    // refused inside inspection: the method is known
    expect(r#"mcpe_requests_total{route="/mcp",method="tools/call",outcome="refused"}"#, K + 4 * M);
    // refused by inspection itself (header mismatch) and by the Host check outside it
    expect(r#"mcpe_requests_total{route="/mcp",method="none",outcome="refused"}"#, 2 * M);
    expect(r#"mcpe_request_duration_seconds_count{route="/mcp",method="tools/call"}"#, N + ALLOWED_ADDS + K + 4 * M);
    expect(r#"mcpe_request_duration_seconds_count{route="/mcp",method="none"}"#, 2 * M);
    expect(r#"mcpe_refusals_total{layer="ratelimit",reason="http_429"}"#, K);
    expect(r#"mcpe_refusals_total{layer="sso",reason="http_401"}"#, M);
    expect(r#"mcpe_refusals_total{layer="sso",reason="invalid_token"}"#, M);
    expect(r#"mcpe_refusals_total{layer="sso",reason="insufficient_scope"}"#, M);
    expect(r#"mcpe_refusals_total{layer="core",reason="http_400"}"#, M);
    expect(r#"mcpe_refusals_total{layer="gateway",reason="http_403"}"#, M);
    expect(r#"mcpe_refusals_total{layer="policy",reason="http_403"}"#, M);
    // the policies see what authentication let in; the rate limit (inside them) refuses after
    expect(r#"mcpe_policy_decisions_total{decision="allow"}"#, N + ALLOWED_ADDS + K);
    expect(r#"mcpe_policy_decisions_total{decision="deny"}"#, M);
    expect(r#"mcpe_rate_limit_refusals_total{limit="adds",kind="exceeded"}"#, K);
    expect(r#"mcpe_upstream_duration_seconds_count{route="/mcp"}"#, N + ALLOWED_ADDS);
    expect("mcpe_audit_records_written_total", total);
    expect("mcpe_audit_write_failures_total", 0);
    expect("mcpe_audit_queue_depth", 0);
    expect("mcpe_audit_fsync_duration_seconds_count", total + 1);
    expect(r#"mcpe_audit_fsync_duration_seconds_bucket{le="+Inf"}"#, total + 1);
    expect("mcpe_audit_writer_failing", 0);
    expect(r#"mcpe_build_info{version="0.1.0"}"#, 1);
    // the SSO layer's own counters: the valid token is verified once, then found in the cache by
    // every call that reaches the layer (inspection and the Host check refuse before it); a
    // token that fails is never cached
    expect("mcpe_sso_token_cache_misses_total", 1 + M);
    expect("mcpe_sso_token_cache_hits_total", N + ALLOWED_ADDS + K + 2 * M - 1);
    for (series, value) in &expected {
        assert_eq!(found.get(series), Some(value), "{series}\n{text}");
    }
    // nothing else counted: every request and refusal series is one of the expected ones
    for series in found.keys().filter(|s| {
        (s.starts_with("mcpe_requests_total") || s.starts_with("mcpe_refusals_total"))
            || s.starts_with("mcpe_rate_limit_refusals_total")
    }) {
        assert!(expected.contains_key(series), "unexpected series {series}\n{text}");
    }
    assert!(!text.contains("mcpe_upstream_errors_total{"), "{text}");

    assert_documented_and_dashboard_checked(&text);

    // reloads: one accepted, one rejected
    gateway.reload().expect("the same document reloads");
    std::fs::write(&file, "{\"version\": 1}").expect("write");
    assert!(gateway.reload().is_err());
    let found = samples(&admin_get(admin, "/metrics").await.1);
    assert_eq!(found.get(r#"mcpe_config_reloads_total{result="success"}"#), Some(&1.0));
    assert_eq!(found.get(r#"mcpe_config_reloads_total{result="failure"}"#), Some(&1.0));
    gateway.shutdown().await;
}

/// A DPoP-bound tokens' gateway (nonces required): each `use_dpop_nonce` challenge and each
/// replayed proof is counted exactly, next to the refusals by reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_dpop_nonce_challenges_and_replays_exactly() {
    use mcp_enterprise_dpop::{ClientKeyAlg, DpopSigner};
    let upstream = common::demo_upstream().await;
    let dir = tempfile::tempdir().expect("dir");
    let resource = "http://localhost/mcp";
    let issuer_key = DpopSigner::generate(ClientKeyAlg::Es256).expect("issuer key");
    let client_key = DpopSigner::generate(ClientKeyAlg::Es256).expect("client key");
    let mut jwk = issuer_key.public_jwk().clone();
    jwk["kid"] = json!("k1");
    let issuer = "https://issuer.test";
    let config = json!({
        "version": 1,
        "resource": resource,
        "upstream": {"url": upstream.url},
        "listen": {"address": "127.0.0.1:0"},
        "admin": {"address": "127.0.0.1:0"},
        "dpop": {
            "static_validator": {"issuer": issuer, "audiences": [resource], "jwks": {"keys": [jwk]}},
            "nonce": {"mode": "required", "keys": ["AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"]},
        },
    });
    let file = dir.path().join("gateway.json");
    std::fs::write(&file, config.to_string()).expect("write config");
    let gateway = ConfiguredGateway::start(Loader::new().file(&file)).await.expect("gateway");
    let url = gateway.mcp_url();
    let admin = gateway.running().admin_addr().expect("the admin listener");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs();
    let token = issuer_key
        .sign_jws(
            &json!({"typ": "at+jwt", "kid": "k1"}),
            &json!({"iss": issuer, "sub": "alice", "aud": resource, "iat": now, "exp": now + 3600,
                    "cnf": {"jkt": client_key.thumbprint()}}),
        )
        .expect("token");
    let request = |id: i64, proof: &str| {
        let mut req = tool_call(&url, id, "echo", json!({"text": "x"}), None);
        req.headers_mut().insert("authorization", HeaderValue::from_str(&format!("DPoP {token}")).expect("hv"));
        req.headers_mut().insert("dpop", HeaderValue::from_str(proof).expect("hv"));
        req
    };
    const CHALLENGES: i64 = 3;
    const REPLAYS: i64 = 2;
    let mut id = 0;
    for round in 0..CHALLENGES {
        // no nonce: challenged, with a fresh one
        id += 1;
        let proof = client_key.proof("POST", resource, Some(&token), None).expect("proof");
        let (status, headers, _) = common::call(request(id, &proof)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let challenge = headers.get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(challenge.contains("use_dpop_nonce"), "{challenge}");
        let nonce = headers.get("dpop-nonce").and_then(|v| v.to_str().ok()).expect("a DPoP-Nonce").to_owned();
        // with it: accepted
        id += 1;
        let proof = client_key.proof("POST", resource, Some(&token), Some(&nonce)).expect("proof");
        let (status, _, body) = common::call(request(id, &proof)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if round < REPLAYS {
            // the same proof again: a replay
            id += 1;
            let (status, headers, _) = common::call(request(id, &proof)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            let challenge = headers.get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or_default();
            assert!(challenge.contains("invalid_dpop_proof"), "{challenge}");
        }
    }
    let (status, text) = admin_get(admin, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(promtool(&text), "", "promtool check metrics:\n{text}");
    let found = samples(&text);
    let expected = [
        ("mcpe_dpop_nonce_challenges_total", CHALLENGES),
        ("mcpe_dpop_replays_total", REPLAYS),
        (r#"mcpe_refusals_total{layer="dpop",reason="use_dpop_nonce"}"#, CHALLENGES),
        (r#"mcpe_refusals_total{layer="dpop",reason="invalid_dpop_proof"}"#, REPLAYS),
        (r#"mcpe_requests_total{route="/mcp",method="tools/call",outcome="ok"}"#, CHALLENGES),
        (r#"mcpe_requests_total{route="/mcp",method="tools/call",outcome="refused"}"#, CHALLENGES + REPLAYS),
    ];
    for (series, value) in expected {
        assert_eq!(found.get(series), Some(&(value as f64)), "{series}\n{text}");
    }
    assert_documented_and_dashboard_checked(&text);
    gateway.shutdown().await;
}

/// The `/readyz` document, and whether `/healthz` answered `200` too.
async fn readiness(admin: SocketAddr) -> (StatusCode, Value) {
    let (health, _) = admin_get(admin, "/healthz").await;
    assert_eq!(health, StatusCode::OK, "/healthz stays up");
    let (status, body) = admin_get(admin, "/readyz").await;
    (status, serde_json::from_str(&body).expect("a JSON body"))
}

/// Waits until `/readyz` is `ready` (`true`/`false`) and, when not ready, names a check starting
/// with `check`.
async fn wait_ready(admin: SocketAddr, ready: bool, check: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        let (status, body) = readiness(admin).await;
        let names_it = body["not_ready"]
            .as_array()
            .is_some_and(|a| a.iter().any(|c| c.as_str().is_some_and(|c| c.starts_with(check))));
        if ready && status == StatusCode::OK && body["ready"] == true {
            return body;
        }
        if !ready && status == StatusCode::SERVICE_UNAVAILABLE && body["ready"] == false && names_it {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("readiness never became {ready} naming {check}: {last:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_upstream_and_redis_and_healthz_stays_up() {
    let upstream = common::demo_upstream().await;
    let upstream_addr: SocketAddr =
        upstream.url.trim_start_matches("http://").trim_end_matches("/mcp").parse().expect("addr");
    let mut redis = RedisServer::start().await.expect("redis");
    let dir = tempfile::tempdir().expect("dir");
    let config = json!({
        "version": 1,
        "resource": "http://localhost/mcp",
        "upstream": {"url": upstream.url},
        "listen": {"address": "127.0.0.1:0"},
        "admin": {"address": "127.0.0.1:0"},
        "rate_limits": [{"name": "all", "requests": 1000}],
        "redis": {"url": format!("redis://{}", redis.addr()), "rate_limits": {}},
    });
    let file = dir.path().join("gateway.json");
    std::fs::write(&file, config.to_string()).expect("write config");
    let gateway = ConfiguredGateway::start(Loader::new().file(&file)).await.expect("gateway");
    let admin = gateway.running().admin_addr().expect("admin");
    let body = wait_ready(admin, true, "").await;
    let checks: Vec<&str> =
        body["checks"].as_array().expect("checks").iter().filter_map(|c| c["check"].as_str()).collect();
    assert_eq!(checks.len(), 3, "{body}");
    assert!(checks[0] == "listener" && checks[1].starts_with("upstream ") && checks[2].starts_with("redis "), "{body}");

    // Redis stops: not ready, naming it; back when it is back
    redis.stop().expect("stop redis");
    let body = wait_ready(admin, false, "redis").await;
    assert_eq!(body["not_ready"].as_array().map(Vec::len), Some(1), "{body}");
    redis.restart().await.expect("restart redis");
    wait_ready(admin, true, "").await;

    // the upstream goes away: not ready; a server on its address again: ready
    drop(upstream);
    let body = wait_ready(admin, false, "upstream").await;
    let failing = body["checks"].as_array().expect("checks").iter().find(|c| c["ready"] == false).cloned();
    assert!(failing.is_some_and(|c| c["reason"].as_str().is_some_and(|r| !r.is_empty())), "{body}");
    let back = tokio::net::TcpListener::bind(upstream_addr).await.expect("the upstream's port again");
    wait_ready(admin, true, "").await;
    drop(back);

    // stopping: not ready (the load balancer stops sending) while calls in flight finish
    gateway.shutdown().await;
    assert!(admin_get_fails(admin).await, "the admin listener stops last");
}

async fn admin_get_fails(admin: SocketAddr) -> bool {
    let req = Request::get(format!("http://{admin}/healthz")).body(Full::new(Bytes::new())).expect("request");
    common::client().request(req).await.is_err()
}

/// Points the trail file names the writer opens next at `/dev/full` (writes fail with `ENOSPC`).
fn fill_disk(dir: &Path) -> Vec<std::path::PathBuf> {
    let last = trail_files(dir).expect("files").last().cloned().expect("a file");
    let first_seq: u64 = last.file_name().and_then(|n| n.to_str()).expect("name")[6..26].parse().expect("seq");
    (first_seq + 1..first_seq + 64)
        .filter_map(|seq| {
            let link = dir.join(format!("audit-{seq:020}.jsonl"));
            std::os::unix::fs::symlink("/dev/full", &link).is_ok().then_some(link)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_not_ready_while_the_audit_disk_is_full() {
    let upstream = common::demo_upstream().await;
    let dir = tempfile::tempdir().expect("dir");
    // every record rotates the file, so the next write opens a new one: the full "disk"
    let (audit, trail) = AuditLayer::builder()
        .directory(dir.path())
        .rotation(1, None)
        .checkpoints(u64::MAX, Duration::from_secs(3600))
        .build()
        .expect("audit");
    let gw = Gateway::builder()
        .upstream(&upstream.url)
        .expect("upstream")
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .admin(SocketAddr::from(([127, 0, 0, 1], 0)))
        .audit(audit)
        .build()
        .expect("gateway")
        .spawn()
        .await
        .expect("spawn");
    let admin = gw.admin_addr().expect("admin");
    let url = gw.mcp_url();
    let (status, _, _) = common::call(common::legacy_initialize(&url, json!({}))).await;
    assert_eq!(status, StatusCode::OK);
    wait_ready(admin, true, "").await;
    let links = fill_disk(dir.path());
    // the next record cannot be written (backpressure: the call waits, the writer retries)
    let pending = tokio::spawn(common::call(common::legacy_initialize(&url, json!({}))));
    let body = wait_ready(admin, false, "audit").await;
    assert!(body.to_string().contains("cannot write"), "{body}");
    let metrics = samples(&admin_get(admin, "/metrics").await.1);
    assert_eq!(metrics.get("mcpe_audit_writer_failing"), Some(&1.0));
    assert!(metrics.get("mcpe_audit_write_failures_total").is_some_and(|v| *v >= 1.0));
    for link in links {
        let _ = std::fs::remove_file(link);
    }
    wait_ready(admin, true, "").await;
    let (status, _, _) = pending.await.expect("the held call");
    assert_eq!(status, StatusCode::OK);
    gw.shutdown().await;
    tokio::task::spawn_blocking(move || trail.shutdown()).await.expect("sealed");
    let _ = MODERN;
}

/// A real filesystem that fills: a 256 KiB tmpfs mounted for the test (needs root or
/// CAP_SYS_ADMIN, as CI has), unmounted on drop.
struct SmallFilesystem {
    dir: tempfile::TempDir,
}

impl SmallFilesystem {
    fn mount() -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "mounting a small tmpfs needs root or CAP_SYS_ADMIN: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the filesystem has no space left (`ENOSPC`).
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write as _;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("filler");
        let block = vec![0u8; 4096];
        loop {
            match file.write_all(&block) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling: {e}"),
            }
        }
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_not_ready_when_a_real_filesystem_fills_and_back() {
    let upstream = common::demo_upstream().await;
    let disk = SmallFilesystem::mount();
    let (audit, trail) = AuditLayer::builder()
        .directory(disk.path().join("trail"))
        .fsync(mcp_enterprise_audit::FsyncPolicy::EveryRecord)
        .checkpoints(u64::MAX, Duration::from_secs(3600))
        .build()
        .expect("audit");
    let gw = Gateway::builder()
        .upstream(&upstream.url)
        .expect("upstream")
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .admin(SocketAddr::from(([127, 0, 0, 1], 0)))
        .audit(audit)
        .build()
        .expect("gateway")
        .spawn()
        .await
        .expect("spawn");
    let admin = gw.admin_addr().expect("admin");
    let url = gw.mcp_url();
    let (status, _, _) = common::call(common::legacy_initialize(&url, json!({}))).await;
    assert_eq!(status, StatusCode::OK);
    wait_ready(admin, true, "").await;
    // the disk fills: the next records cannot be written (queued, the writer retries); a few
    // may still fit in the trail file's last page
    let filler = disk.fill();
    let mut calls = 1;
    let body = loop {
        let (status, _, _) = common::call(common::legacy_initialize(&url, json!({}))).await;
        assert_eq!(status, StatusCode::OK);
        calls += 1;
        let (status, body) = readiness(admin).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            break body;
        }
        assert!(calls < 64, "the full filesystem never stopped the writer: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(body["not_ready"], json!(["audit"]), "{body}");
    assert!(body.to_string().contains("cannot write"), "{body}");
    let metrics = samples(&admin_get(admin, "/metrics").await.1);
    assert_eq!(metrics.get("mcpe_audit_writer_failing"), Some(&1.0));
    assert!(metrics.get("mcpe_audit_write_failures_total").is_some_and(|v| *v >= 1.0));
    assert!(metrics.get("mcpe_audit_queue_depth").is_some_and(|v| *v >= 1.0), "the record waits in the queue");
    // space again: ready, and the queued records are written
    std::fs::remove_file(filler).expect("free the space");
    wait_ready(admin, true, "").await;
    gw.shutdown().await;
    tokio::task::spawn_blocking(move || trail.shutdown()).await.expect("sealed");
    let report = mcp_enterprise_audit::verify::verify_dir(&disk.path().join("trail"), None, false).expect("verify");
    assert!(report.is_ok(), "{report}");
    assert_eq!(common::call_records(&disk.path().join("trail")).len(), calls, "nothing lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_not_ready_when_the_idp_is_gone_past_the_staleness_bound_and_back() {
    let peers = Peers::require();
    let mut provider = OidcProvider::start(&peers, OidcOptions::default()).await.expect("oidc-provider");
    let upstream = common::demo_upstream().await;
    let ttl = Duration::from_secs(1);
    let layer = SsoLayer::builder(DEFAULT_JWT_RESOURCE)
        .issuer(Issuer::new(provider.issuer()))
        .jwks_min_refetch_interval(Duration::ZERO)
        .jwks_ttl(ttl, ttl, ttl)
        .jwks_max_stale(ttl)
        .http_timeout(Duration::from_millis(500))
        .build()
        .expect("sso");
    let gw = Gateway::builder()
        .upstream(&upstream.url)
        .expect("upstream")
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .admin(SocketAddr::from(([127, 0, 0, 1], 0)))
        .allowed_hosts(["mcp.test".to_owned()])
        .sso(layer)
        .build()
        .expect("gateway")
        .spawn()
        .await
        .expect("spawn");
    let admin = gw.admin_addr().expect("admin");
    let issuer = provider.issuer().to_owned();
    // keys are fetched by the first token: not fetched yet is not "not ready"
    let body = wait_ready(admin, true, "").await;
    assert!(body.to_string().contains(&format!("idp {issuer}")), "{body}");
    let token = provider.client_credentials_token(JWT_CLIENT, Some(DEFAULT_JWT_RESOURCE), None).await.expect("token");
    let mut req = tool_call(&gw.mcp_url(), 1, "echo", json!({"text": "x"}), Some(&token));
    req.headers_mut().insert("host", HeaderValue::from_static("mcp.test"));
    let (status, _, body) = common::call(req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let metrics = samples(&admin_get(admin, "/metrics").await.1);
    let series = |name: &str| format!("{name}{{issuer=\"{issuer}\"}}");
    assert_eq!(metrics.get(&series("mcpe_jwks_fetches_total")), Some(&1.0), "{metrics:#?}");
    assert_eq!(metrics.get(&series("mcpe_jwks_fetch_failures_total")), Some(&0.0), "{metrics:#?}");
    assert!(metrics.get(&series("mcpe_jwks_key_set_age_seconds")).is_some_and(|age| *age < 5.0), "{metrics:#?}");

    // the IdP goes away: within the staleness bound still ready, past it not ready, naming it
    provider.stop().expect("stop the IdP");
    let body = wait_ready(admin, false, "idp").await;
    assert!(body.to_string().contains("staleness"), "{body}");
    let metrics = samples(&admin_get(admin, "/metrics").await.1);
    assert!(metrics.get(&series("mcpe_jwks_fetch_failures_total")).is_some_and(|f| *f >= 1.0), "{metrics:#?}");

    // back: the probe itself fetches the keys again (a not-ready server gets no traffic)
    provider.restart().await.expect("restart the IdP");
    wait_ready(admin, true, "").await;
    gw.shutdown().await;
}

/// Every metric `text` exports is in docs/operations.md; every metric the Grafana dashboard
/// queries is documented, and its expressions parse (`promtool check rules`).
fn assert_documented_and_dashboard_checked(text: &str) {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    let operations = std::fs::read_to_string(docs.join("operations.md")).expect("docs/operations.md");
    for name in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()) {
        assert!(operations.contains(&format!("`{name}`")), "{name} is not in docs/operations.md");
    }
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(docs.join("grafana-dashboard.json")).expect("dashboard"))
            .expect("the dashboard is JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect();
    assert!(exprs.len() >= 8, "{exprs:?}");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("mcpe_")) {
            let family = ["_bucket", "_count", "_sum"].iter().find_map(|s| word.strip_suffix(s)).unwrap_or(word);
            assert!(operations.contains(&format!("`{family}`")), "the dashboard queries {word}, not documented");
        }
        // Grafana's own variable, as Prometheus would get it
        let expr = expr.replace("$__rate_interval", "5m");
        rules.push_str(&format!(
            "      - record: dashboard_{i}\n        expr: {}\n",
            serde_json::to_string(&expr).expect("json")
        ));
    }
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("dashboard-rules.yml");
    std::fs::write(&file, rules).expect("write");
    let out = Command::new("promtool").args(["check", "rules"]).arg(&file).output().expect("promtool");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
