//! The audit trail through the gateway: refusals by every real layer recorded with the layer and
//! reason, nothing secret in the file, a load of 200 000 requests recorded exactly, and a gateway
//! process killed mid-write then restarted; `audit verify` draws its progress bar on a terminal only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use mcp_enterprise::demo::demo_scopes;
use mcp_enterprise_audit::verify::verify_dir;
use mcp_enterprise_audit::{AuditLayer, CheckpointSigner, CheckpointVerifier, FsyncPolicy, Redaction, trail_files};
use mcp_enterprise_dpop::{BearerMode, ClientKeyAlg, DpopLayer, DpopSigner, ExternalOrigin};
use mcp_enterprise_gateway::Gateway;
use mcp_enterprise_sso::{Issuer, Keys, SsoLayer};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::common::{self, call, demo_upstream};

const ISSUER: &str = "https://idp.audit.test";

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn trail_bytes(dir: &Path) -> String {
    trail_files(dir).unwrap().iter().map(|f| std::fs::read_to_string(f).unwrap()).collect()
}

fn post(url: &str, body: &Value) -> http::request::Builder {
    let _ = body;
    Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", common::LEGACY)
}

fn tool(id: u64, name: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": arguments}})
}

/// sso (the static keys of `idp`, the demo scopes) and dpop (bearer also accepted) for a gateway
/// serving `url`.
fn sso_and_dpop(url: &str, idp: &DpopSigner) -> (SsoLayer, DpopLayer) {
    let sso = SsoLayer::builder(url)
        .issuer(Issuer::new(ISSUER).keys(Keys::Static(json!({"keys": [idp.public_jwk()]}))))
        .scope_policy(demo_scopes())
        .build()
        .unwrap();
    let origin = url.strip_suffix("/mcp").unwrap_or(url).to_owned();
    let dpop = DpopLayer::builder(mcp_enterprise_gateway::sso_token_validator(&sso), ExternalOrigin::Fixed(origin))
        .bearer(BearerMode::AlsoBearer)
        .build()
        .unwrap();
    (sso, dpop)
}

/// The gateway in front of `upstream` with sso, dpop and audit, served on `listener`.
fn serve_sso_dpop_audit(
    upstream: &str,
    listener: TcpListener,
    sso: SsoLayer,
    dpop: DpopLayer,
    audit: AuditLayer,
) -> mcp_enterprise_gateway::RunningGateway {
    Gateway::builder()
        .upstream(upstream)
        .unwrap()
        .sso(sso)
        .dpop(dpop)
        .audit(audit)
        .build()
        .unwrap()
        .serve_on(listener)
        .unwrap()
}

#[tokio::test]
async fn every_layer_refusal_is_recorded_with_its_layer_and_nothing_secret() {
    let upstream = demo_upstream().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let url = format!("http://{addr}/mcp");
    let idp = DpopSigner::generate(ClientKeyAlg::Es256).unwrap();
    let (sso, dpop) = sso_and_dpop(&url, &idp);
    let dir = tempfile::tempdir().unwrap();
    let signer = CheckpointSigner::generate().unwrap();
    let key = CheckpointVerifier::from_public_key(signer.public_key().as_bytes()).unwrap();
    let (audit, trail) = AuditLayer::builder()
        .directory(dir.path())
        .signing_key(signer)
        .fsync(FsyncPolicy::Interval(Duration::from_millis(10)))
        .redaction(Redaction::new(b"integration test hmac key 32 byt"))
        .build()
        .unwrap();
    let gw = serve_sso_dpop_audit(&upstream.url, listener, sso, dpop, audit);

    let token = |sub: &str, scope: &str, cnf: Option<&str>| {
        let mut claims = json!({"iss": ISSUER, "aud": url, "sub": sub, "client_id": "agent-app", "scope": scope,
            "iat": now(), "exp": now() + 600, "jti": format!("{sub}-{scope}-{}", cnf.is_some())});
        if let Some(jkt) = cnf {
            claims["cnf"] = json!({"jkt": jkt});
        }
        idp.sign_jws(&json!({"alg": "ES256", "typ": "at+jwt"}), &claims).unwrap()
    };
    let client_key = DpopSigner::generate(ClientKeyAlg::Es256).unwrap();
    let bearer = token("alice", "mcp", None);
    let bound = token("bob", "mcp", Some(client_key.thumbprint()));
    let proof = client_key.proof("POST", &url, Some(&bound), None).unwrap();
    let wrong_htu = client_key.proof("POST", "http://elsewhere.example/mcp", Some(&bound), None).unwrap();
    let secret_arg = "s3cr3t-argument-value";

    let send = |id: i64, name: &str, arguments: Value, headers: Vec<(&'static str, String)>| {
        let mut req = common::modern(&url, id, "tools/call", json!({"name": name, "arguments": arguments}), json!({}));
        for (k, v) in headers {
            req.headers_mut().insert(k, v.parse().unwrap());
        }
        call(req)
    };
    let auth = |t: &str| ("authorization", format!("Bearer {t}"));
    let (s, _, a) = send(1, "echo", json!({"text": secret_arg}), vec![auth(&bearer)]).await;
    assert_eq!(s, 200, "{a}");
    let (s, _, a) = send(
        2,
        "echo",
        json!({"text": "bound"}),
        vec![("authorization", format!("DPoP {bound}")), ("dpop", proof.clone())],
    )
    .await;
    assert_eq!(s, 200, "{a}");
    let (s, _, _) = send(3, "echo", json!({"text": "x"}), vec![]).await;
    assert_eq!(s, 401, "no token");
    let (s, _, _) =
        send(4, "echo", json!({"text": "x"}), vec![("authorization", format!("DPoP {bound}")), ("dpop", wrong_htu)])
            .await;
    assert_eq!(s, 401, "proof for another URL");
    let (s, _, _) = send(5, "delete_customer", json!({"id": "c-1"}), vec![auth(&bearer)]).await;
    assert_eq!(s, 403, "insufficient scope");
    let (s, _, _) = send(6, "echo", json!({"text": "x"}), vec![auth(&bearer), ("host", "evil.example".into())]).await;
    assert_eq!(s, 403, "DNS rebinding defence");
    let (s, _, _) =
        send(7, "echo", json!({"text": "x"}), vec![auth(&bearer), ("mcp-method", "tools/list".into())]).await;
    assert_eq!(s, 400, "header/body mismatch");
    let (s, _, answer) = send(8, "no_such_tool", json!({}), vec![auth(&bearer)]).await;
    assert_eq!(s, 200);
    let upstream_code = answer["error"]["code"].as_i64().expect("the server refuses an unknown tool");

    gw.shutdown().await;
    tokio::task::spawn_blocking(move || trail.shutdown()).await.unwrap();
    let report = verify_dir(dir.path(), Some(&key), false).unwrap();
    assert!(report.is_ok(), "{report}");
    let r = common::call_records(dir.path());
    assert_eq!(r.len(), 8, "{r:#?}");
    let summary: Vec<(String, String, u64, Option<i64>)> = r
        .iter()
        .map(|r| {
            (
                r["outcome"].as_str().unwrap().to_owned(),
                r["denied_by"]["layer"].as_str().unwrap_or("-").to_owned(),
                r["http"]["status"].as_u64().unwrap(),
                r["jsonrpc_error"].as_i64(),
            )
        })
        .collect();
    let s = |o: &str, l: &str, st: u64, c: Option<i64>| (o.to_owned(), l.to_owned(), st, c);
    assert_eq!(
        summary,
        [
            s("allowed", "-", 200, None),
            s("allowed", "-", 200, None),
            s("denied", "sso", 401, Some(-32600)),
            s("denied", "dpop", 401, Some(-32600)),
            s("denied", "sso", 403, Some(-32600)),
            s("denied", "gateway", 403, Some(-32600)),
            s("denied", "core", 400, Some(-32020)),
            s("error", "-", 200, Some(upstream_code)),
        ]
    );
    assert_eq!(
        (r[0]["principal"]["subject"].as_str(), r[0]["principal"]["auth_method"].as_str()),
        (Some("alice"), Some("bearer"))
    );
    assert_eq!(
        (r[1]["principal"]["subject"].as_str(), r[1]["principal"]["auth_method"].as_str()),
        (Some("bob"), Some("dpop"))
    );
    assert_eq!(r[1]["principal"]["client_id"], "agent-app");
    assert!(r[3]["denied_by"]["reason"].as_str().unwrap().contains("htu"), "{}", r[3]);
    assert!(r[4]["denied_by"]["reason"].as_str().unwrap().contains("mcp:admin"), "{}", r[4]);
    assert_eq!(r[4]["jsonrpc"]["target"]["name"], "delete_customer");
    assert_eq!(r[6]["jsonrpc"], Value::Null, "refused during inspection");
    // the fingerprint correlates the two uses of alice's token without storing it
    assert_eq!(r[0]["principal"]["token_fingerprint"], r[4]["principal"]["token_fingerprint"]);
    let bytes = trail_bytes(dir.path());
    for (what, secret) in [
        ("bearer token", bearer.as_str()),
        ("bound token", bound.as_str()),
        ("proof", proof.as_str()),
        ("argument", secret_arg),
    ] {
        for part in secret.split('.') {
            assert!(!bytes.contains(part), "{what} ({part}) in the trail");
        }
    }
}

/// A client that gives up on an authenticated call before the upstream answers: the record of
/// the aborted call names who made it (the auth layers fill audit's principal slot when they let
/// the call in, not only in the response that never comes), with how it authenticated.
#[tokio::test]
async fn a_call_its_client_abandons_is_recorded_with_its_principal() {
    let upstream =
        mcp_enterprise_tests::fault::FaultServer::start(mcp_enterprise_tests::fault::Fault::Hang).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let url = format!("http://{addr}/mcp");
    let idp = DpopSigner::generate(ClientKeyAlg::Es256).unwrap();
    let (sso, dpop) = sso_and_dpop(&url, &idp);
    let dir = tempfile::tempdir().unwrap();
    let (audit, trail) = AuditLayer::builder()
        .directory(dir.path())
        .fsync(FsyncPolicy::Interval(Duration::from_millis(10)))
        .build()
        .unwrap();
    let gw = serve_sso_dpop_audit(&upstream.url("/mcp"), listener, sso, dpop, audit);
    let token = |sub: &str, cnf: Option<&str>| {
        let mut claims = json!({"iss": ISSUER, "aud": url, "sub": sub, "client_id": "agent-app", "scope": "mcp",
            "iat": now(), "exp": now() + 600});
        if let Some(jkt) = cnf {
            claims["cnf"] = json!({"jkt": jkt});
        }
        idp.sign_jws(&json!({"alg": "ES256", "typ": "at+jwt"}), &claims).unwrap()
    };
    let client_key = DpopSigner::generate(ClientKeyAlg::Es256).unwrap();
    let bound = token("bob", Some(client_key.thumbprint()));
    let abandon = |id: i64, headers: Vec<(&'static str, String)>| {
        let mut req =
            common::modern(&url, id, "tools/call", json!({"name": "echo", "arguments": {"text": "x"}}), json!({}));
        for (k, v) in headers {
            req.headers_mut().insert(k, v.parse().unwrap());
        }
        // the upstream never answers: the client gives up and closes its connection
        tokio::time::timeout(Duration::from_millis(400), call(req))
    };
    assert!(abandon(1, vec![("authorization", format!("Bearer {}", token("alice", None)))]).await.is_err());
    let proof = client_key.proof("POST", &url, Some(&bound), None).unwrap();
    assert!(abandon(2, vec![("authorization", format!("DPoP {bound}")), ("dpop", proof)]).await.is_err());
    // refused before anyone was authenticated: answered, and recorded without a principal
    let (status, _, _) = abandon(3, vec![]).await.expect("refused at once");
    assert_eq!(status, 401);

    // the gateway records an abandoned call once it notices the client has gone
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while trail.stats().written() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.shutdown().await;
    tokio::task::spawn_blocking(move || trail.shutdown()).await.unwrap();
    let report = verify_dir(dir.path(), None, false).unwrap();
    assert!(report.is_ok(), "{report}");
    let records = common::call_records(dir.path());
    assert_eq!(records.len(), 3, "{records:#?}");
    // in the order they were made (an aborted call carries no inspected message: no JSON-RPC id)
    for (r, subject, method) in [(&records[0], "alice", "bearer"), (&records[1], "bob", "dpop")] {
        assert_eq!((r["response_aborted"].clone(), r["http"]["status"].clone()), (json!(true), json!(499)), "{r:#}");
        let p = &r["principal"];
        assert_eq!(
            (p["subject"].as_str(), p["auth_method"].as_str(), p["issuer"].as_str(), p["client_id"].as_str()),
            (Some(subject), Some(method), Some(ISSUER), Some("agent-app")),
            "{r:#}"
        );
        assert!(p["token_fingerprint"].as_str().is_some_and(|f| f.len() == 22), "{r:#}");
    }
    let refused = &records[2];
    assert_eq!((refused["denied_by"]["layer"].as_str(), refused["principal"].clone()), (Some("sso"), Value::Null));
    assert_eq!(refused["http"]["status"], 401);
}

/// Sends `total` small requests over `concurrency` connections; returns how many were answered
/// with 200. A worker whose request finds no connection stops there (see the loop).
async fn load(url: &str, total: usize, concurrency: usize) -> usize {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ok = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (next, ok, url) = (next.clone(), ok.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            let client = common::client();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let m = tool(i as u64, "echo", json!({"text": i}));
                let req = post(&url, &m).body(Full::new(Bytes::from(m.to_string()))).unwrap();
                match client.request(req).await {
                    Ok(res) => {
                        if res.status() == 200 && res.into_body().collect().await.is_ok() {
                            ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    // no connection (the gateway was killed): every further request would fail the
                    // same way, so this worker stops instead of trying the rest of `total` in turn
                    Err(_) => break,
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    ok.load(std::sync::atomic::Ordering::Relaxed)
}

/// The gateway on a free loopback port with only the audit layer.
async fn audited_gateway(upstream: &str, audit: AuditLayer) -> mcp_enterprise_gateway::RunningGateway {
    Gateway::builder()
        .upstream(upstream)
        .unwrap()
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .audit(audit)
        .build()
        .unwrap()
        .spawn()
        .await
        .unwrap()
}

/// A minimal MCP-shaped upstream: answers every POST with a small JSON-RPC result.
async fn echo_upstream() -> String {
    let app = axum::Router::new().fallback(|| async {
        ([("content-type", "application/json")], r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#)
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/mcp")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_thousand_requests_make_exactly_as_many_records() {
    let total: usize = std::env::var("MCPE_AUDIT_LOAD_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let upstream = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let signer = CheckpointSigner::generate().unwrap();
    let key = CheckpointVerifier::from_public_key(signer.public_key().as_bytes()).unwrap();
    let (audit, trail) = AuditLayer::builder()
        .directory(dir.path())
        .signing_key(signer)
        .fsync(FsyncPolicy::Interval(Duration::from_millis(10)))
        .rotation(4 * 1024 * 1024, None)
        .build()
        .unwrap();
    let stats = audit.clone();
    let gw = audited_gateway(&upstream, audit).await;
    let ok = load(&gw.mcp_url(), total, 32).await;
    assert_eq!(ok, total, "every request answered");
    gw.shutdown().await;
    tokio::task::spawn_blocking(move || trail.shutdown()).await.unwrap();
    assert_eq!(stats.stats().written(), total as u64);
    assert_eq!(stats.stats().refused(), 0);
    let report = verify_dir(dir.path(), Some(&key), false).unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.records, total as u64, "exactly one record per request: {report}");
    assert!(report.files > 1, "rotated: {report}");
}

/// Runs a gateway with an audit trail in this process until it is killed: the child of
/// [`a_gateway_killed_mid_write_restarts_and_its_trail_verifies`] (not a test on its own).
#[tokio::test]
#[ignore = "child process of a_gateway_killed_mid_write_restarts_and_its_trail_verifies"]
async fn audit_crash_child() {
    let dir = PathBuf::from(std::env::var("MCPE_AUDIT_CHILD_DIR").expect("run by the crash test"));
    let upstream = std::env::var("MCPE_AUDIT_CHILD_UPSTREAM").expect("upstream");
    let signer = CheckpointSigner::from_pkcs8(&std::fs::read(dir.join("key.pem")).unwrap()).unwrap();
    let (audit, _trail) = AuditLayer::builder()
        .directory(dir.join("trail"))
        .signing_key(signer)
        .fsync(FsyncPolicy::Interval(Duration::from_millis(10)))
        .build()
        .unwrap();
    let gw = audited_gateway(&upstream, audit).await;
    std::fs::write(dir.join("url.tmp"), gw.mcp_url()).unwrap();
    std::fs::rename(dir.join("url.tmp"), dir.join("url")).unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_mid_write_restarts_and_its_trail_verifies() {
    let upstream = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let pem = CheckpointSigner::generate_pem().unwrap();
    std::fs::write(dir.path().join("key.pem"), &pem).unwrap();
    let key = CheckpointVerifier::from_public_key(
        CheckpointSigner::from_pkcs8(pem.as_bytes()).unwrap().public_key().as_bytes(),
    )
    .unwrap();
    let spawn = || {
        std::fs::remove_file(dir.path().join("url")).ok();
        tokio::process::Command::new(std::env::current_exe().unwrap())
            .args(["audit::audit_crash_child", "--exact", "--ignored", "--nocapture", "--test-threads", "1"])
            .env("MCPE_AUDIT_CHILD_DIR", dir.path())
            .env("MCPE_AUDIT_CHILD_UPSTREAM", &upstream)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let url_of = |dir: PathBuf| async move {
        for _ in 0..600 {
            if let Ok(url) = std::fs::read_to_string(dir.join("url")) {
                return url;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the child gateway did not start");
    };
    // first run: killed (SIGKILL) while requests are in flight
    let mut child = spawn();
    let url = url_of(dir.path().to_owned()).await;
    let load_task = tokio::spawn({
        let url = url.clone();
        async move { load(&url, 1_000_000, 16).await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().await.unwrap();
    let answered = load_task.await.unwrap();
    assert!(answered > 0, "the first run served requests before it was killed");
    // the trail of a killed writer does not verify as sealed
    let trail = dir.path().join("trail");
    let report = verify_dir(&trail, Some(&key), false).unwrap();
    assert!(!report.is_ok(), "{report}");
    // second run: picks up the chain, seals what the crash left, serves, shuts down cleanly
    let mut child = spawn();
    let url = url_of(dir.path().to_owned()).await;
    assert_eq!(load(&url, 100, 4).await, 100);
    tokio::time::sleep(Duration::from_millis(100)).await;
    child.kill().await.unwrap();
    // a third run closes the trail properly (in-process this time)
    let signer = CheckpointSigner::from_pkcs8(pem.as_bytes()).unwrap();
    let (_audit, last) = AuditLayer::builder().directory(&trail).signing_key(signer).build().unwrap();
    tokio::task::spawn_blocking(move || last.shutdown()).await.unwrap();
    let report = verify_dir(&trail, Some(&key), false).unwrap();
    assert!(report.is_ok(), "{report}");
    assert!(report.notes.iter().any(|n| n.contains("without closing the trail")), "{report}");
    let recorded = common::call_records(&trail).len();
    assert!(recorded >= 100, "the second run's calls are all there: {report}");
    assert!(recorded <= answered + 100 + 16, "no record without a request: {recorded} vs {answered}+100");
}

/// Starts the OTLP receiver peer (official opentelemetry-proto decoding); returns its endpoint.
fn otlp_receiver(out: &Path) -> (mcp_enterprise_tests::process::ChildGuard, String) {
    use std::io::BufRead;
    let peers = mcp_enterprise_tests::peers::Peers::default_dir();
    let mut child = std::process::Command::new("python3")
        .arg(peers.join("otlp-receiver.py"))
        .arg(out)
        .env("PYTHONPATH", peers.join("py"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs the OTLP receiver (bash tests/run.sh installs its packages)");
    let stdout = child.stdout.take().unwrap();
    let guard = mcp_enterprise_tests::process::ChildGuard::new("otlp-receiver", child);
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line).unwrap();
    let port = line.trim().strip_prefix("listening ").unwrap_or_else(|| panic!("receiver said {line:?}")).to_owned();
    (guard, format!("http://127.0.0.1:{port}/v1/logs"))
}

#[tokio::test]
async fn records_reach_an_opentelemetry_collector_as_valid_otlp_logs() {
    let work = tempfile::tempdir().unwrap();
    let received = work.path().join("received.jsonl");
    let (_receiver, endpoint) = otlp_receiver(&received);
    let upstream = echo_upstream().await;
    let config = mcp_enterprise_audit::AuditConfig {
        directory: Some(work.path().join("trail")),
        otlp_endpoint: Some(endpoint),
        otlp_service_name: "gateway-under-test".into(),
        otlp_headers: [("x-api-key".to_owned(), "audit-key-1".to_owned())].into(),
        ..Default::default()
    };
    let (audit, trail) = AuditLayer::from_config(&config).unwrap();
    let gw = audited_gateway(&upstream, audit).await;
    let mut req =
        common::modern(&gw.mcp_url(), 1, "tools/call", json!({"name": "echo", "arguments": {"text": "a"}}), json!({}));
    req.headers_mut().insert("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".parse().unwrap());
    assert_eq!(call(req).await.0, 200);
    assert_eq!(load(&gw.mcp_url(), 49, 4).await, 49);
    gw.shutdown().await;
    tokio::task::spawn_blocking(move || trail.shutdown()).await.unwrap();
    // the exporter is stopped with the trail; everything it sent was decoded by the receiver
    assert!(
        !work.path().join("received.jsonl.errors").exists(),
        "{:?}",
        std::fs::read_to_string(work.path().join("received.jsonl.errors"))
    );
    let logs: Vec<Value> =
        std::fs::read_to_string(&received).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let trail_records: Vec<Value> = trail_files(&work.path().join("trail"))
        .unwrap()
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<Value>>()
        })
        .collect();
    assert_eq!(logs.len(), trail_records.len(), "every sealed record, checkpoints included");
    let calls: Vec<&Value> =
        logs.iter().filter(|l| l["body"]["stringValue"].as_str().unwrap().contains("\"type\":\"mcp\"")).collect();
    assert_eq!(calls.len(), 50);
    let first = calls[0];
    assert_eq!(first["service"], "gateway-under-test");
    assert_eq!(first["scope"], "mcp_enterprise.audit");
    assert_eq!(first["severityText"], "INFO");
    // OTLP's JSON encoding carries trace ids as hex (not the proto3 base64 the generic decoder
    // assumes; it decodes them as base64 bytes and gives back the same text)
    assert_eq!(first["traceId"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(first["spanId"], "b7ad6b7169203331");
    let body: Value = serde_json::from_str(first["body"]["stringValue"].as_str().unwrap()).unwrap();
    assert_eq!(
        body,
        trail_records.iter().find(|r| r["seq"] == body["seq"]).cloned().unwrap(),
        "the log body is the record"
    );
    assert!(first["attributes"].as_array().unwrap().iter().any(|a| a["key"] == "mcp.audit.hash"));
    // every export carried the configured header
    let exports: Vec<Value> = std::fs::read_to_string(work.path().join("received.jsonl.headers"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!exports.is_empty());
    for h in &exports {
        assert_eq!(h["path"], "/v1/logs", "{h}");
        assert_eq!(h["x-api-key"], "audit-key-1", "{h}");
        assert_eq!(h["content-type"], "application/json", "{h}");
    }
}

/// `audit verify` on a terminal (a pseudo-terminal from util-linux `script`): a large trail gets a
/// progress bar over the bytes verified, drawn on stderr and cleared at the end; a small one none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_draws_a_progress_bar_on_a_terminal_for_a_large_trail() {
    let bin = mcp_enterprise_tests::gateway_process::binary().unwrap_or_else(|e| panic!("{e}"));
    let script = |args: &str| -> String {
        let out = std::process::Command::new("script")
            .args(["-q", "-e", "-c", &format!("{} {args}", bin.display()), "/dev/null"])
            .env_remove("NO_COLOR")
            .env("TERM", "xterm")
            .env("COLUMNS", "120")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("util-linux `script` is needed (apt-get install bsdutils): {e}"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{args}: {text}");
        text
    };
    let upstream = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let (audit, trail) = AuditLayer::builder()
        .directory(dir.path())
        .signing_key(CheckpointSigner::generate().unwrap())
        .fsync(FsyncPolicy::Interval(Duration::from_millis(50)))
        .build()
        .unwrap();
    let gw = audited_gateway(&upstream, audit).await;
    // over the 10 000 records that make a trail "large"
    assert_eq!(load(&gw.mcp_url(), 10_500, 16).await, 10_500);
    gw.shutdown().await;
    tokio::task::spawn_blocking(move || trail.shutdown()).await.unwrap();
    let total: u64 = trail_files(dir.path()).unwrap().iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
    assert!(total > 2 * 256 * 1024, "several progress steps: {total} bytes");

    let text = script(&format!("audit verify {}", dir.path().display()));
    assert!(text.contains("verifying ["), "a bar on the terminal:\n{text}");
    assert!(text.contains("MiB"), "bytes verified of the total:\n{text}");
    assert!(text.contains("verified"), "then the report:\n{text}");

    // a small trail on the same terminal: no bar
    let small = tempfile::tempdir().unwrap();
    let (_audit, trail) = AuditLayer::builder()
        .directory(small.path())
        .signing_key(CheckpointSigner::generate().unwrap())
        .build()
        .unwrap();
    trail.shutdown();
    let text = script(&format!("audit verify {}", small.path().display()));
    assert!(!text.contains("verifying ["), "{text}");
}
