//! Three gateway replicas (each `ConfiguredGateway` in its own child process, from one TOML
//! document) in front of one real `redis-server` with TLS (a CA and server certificate generated
//! by the test with the `openssl` CLI) and an ACL user with a password:
//!
//! - a DPoP proof accepted by replica A is refused when replayed to B or C;
//! - a nonce issued by A is accepted by B (one nonce key shared by the replicas);
//! - a workload identity token (direct mode, single use) used at A is refused at B;
//! - a rate limit of N per hour holds exactly across the three under concurrent load;
//! - Redis restarted mid-run: while it is down each use follows its `on_unavailable` — DPoP
//!   replay (fail_closed) refuses with `503`, workload-identity replay (fail_open) falls back to
//!   the replica's memory (single use still holds there), the rate limit (fail_open) lets calls
//!   through although it is spent — and every replica's readiness says `redis` is not ready;
//!   once Redis is back every replica recovers without a restart (ready, state shared again);
//! - one replica killed with SIGKILL under load: the other two keep serving, a client that
//!   retries at the next replica succeeds, and every call a replica acknowledged with `200` is in
//!   that replica's audit trail; the killed replica restarts on its trail, and after a graceful
//!   stop every trail verifies (`mcp-enterprise audit verify` with the signing key's public key);
//! - a wrong password or a CA that did not sign Redis' certificate: the replica refuses to start,
//!   naming the cause (so it never reports ready), and `config check` fails with the same cause.
//!
//! - Sentinel: with a real `redis-server --sentinel`, a master and a replica on loopback, the
//!   gateway resolves the master through the Sentinel and, after a failover, follows the promoted
//!   replica without a restart.
//!
//! Needs `redis-server` (with TLS, as Debian builds it; its dependency `redis-tools` gives
//! `redis-cli`) and `openssl`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use mcp_enterprise_config::Loader;
use mcp_enterprise_dpop::{ClientKeyAlg, DpopSigner};
use mcp_enterprise_gateway::configured::ConfiguredGateway;
use mcp_enterprise_tests::redis::RedisServer;
use serde_json::json;

use crate::common::{self, call, demo_upstream, modern};

const ORIGIN: &str = "https://mcp.ha.test";
const RESOURCE: &str = "https://mcp.ha.test/mcp";
const ISS: &str = "https://idp.ha.test";
const NONCE_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
const PASSWORD: &str = "ha-redis-pw-41c7";
const WORKLOAD_ISS: &str = "https://workloads.ha.test";
/// Where a replica's own directory goes in the shared configuration text.
const DIR: &str = "@REPLICA_DIR@";
/// Calls allowed per hour across the replicas.
const LIMIT: usize = 9;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A `jti` no other token of this process carries.
fn fresh_jti() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{}-{nanos}-{n}", std::process::id())
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA, a server certificate for 127.0.0.1 signed by it, and another CA that signed nothing.
fn certificates(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    openssl(
        dir,
        &[&["req", "-x509"], &ec[..], &["-days", "2", "-subj", "/CN=ha-ca", "-keyout", "ca.key", "-out", "ca.crt"]]
            .concat(),
    );
    openssl(
        dir,
        &[
            &["req", "-x509"],
            &ec[..],
            &["-days", "2", "-subj", "/CN=other-ca", "-keyout", "other.key", "-out", "other.crt"],
        ]
        .concat(),
    );
    openssl(
        dir,
        &[&["req"], &ec[..], &["-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr"]].concat(),
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    openssl(
        dir,
        &["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2"]
            .iter()
            .copied()
            .chain(["-extfile", "san.ext", "-out", "server.crt"])
            .collect::<Vec<_>>(),
    );
}

/// Redis with TLS only and the ACL user `mcp` (the default user disabled).
async fn secure_redis(dir: &Path) -> RedisServer {
    let d = |f: &str| dir.join(f).display().to_string();
    std::fs::write(dir.join("users.acl"), format!("user default off\nuser mcp on >{PASSWORD} ~* &* +@all\n")).unwrap();
    RedisServer::start_with(
        true,
        vec![
            "--tls-cert-file".into(),
            d("server.crt"),
            "--tls-key-file".into(),
            d("server.key"),
            "--tls-ca-cert-file".into(),
            d("ca.crt"),
            "--tls-auth-clients".into(),
            "no".into(),
            "--aclfile".into(),
            d("users.acl"),
        ],
    )
    .await
    .unwrap()
}

struct Idp {
    key: DpopSigner,
}

impl Idp {
    /// The issuer's JWKS as a TOML inline table (the key's members are strings).
    fn jwks_toml(&self) -> String {
        let jwk = self.key.public_jwk();
        let members: Vec<String> = jwk
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k} = {}", serde_json::to_string(v.as_str().unwrap()).unwrap()))
            .collect();
        format!("{{ keys = [{{ {} }}] }}", members.join(", "))
    }

    /// A single-use workload identity token (direct mode) with a fresh `jti`.
    fn workload_token(&self) -> String {
        let claims = json!({"iss": WORKLOAD_ISS, "sub": "agent-7", "aud": RESOURCE, "iat": now(),
            "exp": now() + 600, "jti": fresh_jti()});
        self.key.sign_jws(&json!({"typ": "JWT"}), &claims).unwrap()
    }

    /// A DPoP-bound token for `client`.
    fn token(&self, client: &DpopSigner) -> String {
        let claims = json!({"iss": ISS, "sub": "svc", "client_id": "svc", "aud": RESOURCE, "iat": now(),
            "exp": now() + 3600, "cnf": {"jkt": client.thumbprint()}});
        self.key.sign_jws(&json!({"typ": "at+jwt"}), &claims).unwrap()
    }
}

fn config(upstream: &str, redis_port: u16, ca: &Path, password: &str, idp: &Idp, audit_key: &Path) -> String {
    let jwks = idp.jwks_toml();
    format!(
        r#"version = 1
resource = "{RESOURCE}"
[upstream]
url = "{upstream}"
[listen]
address = "127.0.0.1:0"
[dpop]
origin = "{ORIGIN}"
nonce = {{ mode = "required", keys = ["{NONCE_KEY}"] }}
static_validator = {{ issuer = "{ISS}", audiences = ["{RESOURCE}"], jwks = {jwks} }}
[workload_identity]
issuers = [{{ issuer = "{WORKLOAD_ISS}", jwks = {jwks}, rules = [{{ name = "agents", subject = {{ exact = "agent-7" }} }}] }}]
direct = {{ max_token_lifetime_secs = 3600 }}
[audit]
directory = "{DIR}/trail"
signing_key_file = "{audit_key}"
[admin]
address = "127.0.0.1:0"
[[rate_limits]]
name = "global"
requests = 1
per_secs = 3600
burst = {LIMIT}
methods = ["tools/call"]
[redis]
url = "rediss://127.0.0.1:{redis_port}"
username = "mcp"
password = "{password}"
ca_file = "{ca}"
timeout_ms = 500
[redis.dpop_replay]
prefix = "ha:dpop:"
on_unavailable = "fail_closed"
[redis.workload_identity_replay]
prefix = "ha:wi:"
on_unavailable = "fail_open"
[redis.rate_limits]
prefix = "ha:rl:"
on_unavailable = "fail_open"
"#,
        ca = ca.display(),
        audit_key = audit_key.display()
    )
}

/// Run by the tests below in a child process: a gateway serving `MCP_TEST_HA_CHILD_DIR/mcp.toml`;
/// it writes its URL to `url`, or its start-up error to `error`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by the ha tests"]
async fn ha_gateway_child() {
    let dir = std::path::PathBuf::from(std::env::var("MCP_TEST_HA_CHILD_DIR").expect("run by the parent test"));
    let _ = tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).try_init();
    match ConfiguredGateway::start(Loader::new().file(dir.join("mcp.toml"))).await {
        Ok(gw) => {
            let admin = gw.running().admin_addr().map(|a| a.to_string()).unwrap_or_default();
            std::fs::write(dir.join("admin"), admin).unwrap();
            std::fs::write(dir.join("url.tmp"), gw.mcp_url()).unwrap();
            std::fs::rename(dir.join("url.tmp"), dir.join("url")).unwrap();
            gw.run_until_stopped().await.unwrap();
        }
        Err(e) => std::fs::write(dir.join("error"), e.to_string()).unwrap(),
    }
}

struct Replica {
    process: tokio::process::Child,
    url: String,
    admin: String,
    dir: tempfile::TempDir,
}

impl Replica {
    /// Stops it with SIGTERM (a graceful stop: calls finish, the trail is sealed) and waits.
    async fn terminate(mut self) -> tempfile::TempDir {
        let pid = self.process.id().expect("running").to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let status = tokio::time::timeout(Duration::from_secs(30), self.process.wait()).await.unwrap().unwrap();
        assert!(status.success(), "the replica stopped with {status}");
        self.dir
    }

    /// Stops it with SIGKILL and waits.
    async fn kill(mut self) -> tempfile::TempDir {
        self.process.start_kill().unwrap();
        let _ = self.process.wait().await;
        self.dir
    }

    fn trail(&self) -> std::path::PathBuf {
        self.dir.path().join("trail")
    }
}

/// A replica serving `config` (in a directory of its own): its URL, or its start-up error.
async fn replica(config: &str) -> Result<Replica, String> {
    replica_in(tempfile::tempdir().unwrap(), config).await
}

/// A replica serving `config` in `dir` (a restart keeps its audit trail).
async fn replica_in(dir: tempfile::TempDir, config: &str) -> Result<Replica, String> {
    for stale in ["url", "error", "admin", "stderr"] {
        let _ = std::fs::remove_file(dir.path().join(stale));
    }
    std::fs::write(dir.path().join("mcp.toml"), config.replace(DIR, &dir.path().display().to_string())).unwrap();
    let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
    let process = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["ha::ha_gateway_child", "--exact", "--ignored", "--nocapture", "--test-threads", "1"])
        .env("MCP_TEST_HA_CHILD_DIR", dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (url_file, error_file) = (dir.path().join("url"), dir.path().join("error"));
    let done = common::eventually(Duration::from_secs(60), || url_file.exists() || error_file.exists()).await;
    let log = std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
    assert!(done, "the replica neither started nor failed:\n{log}");
    if let Ok(error) = std::fs::read_to_string(&error_file) {
        return Err(error);
    }
    let url = std::fs::read_to_string(&url_file).unwrap();
    let admin = std::fs::read_to_string(dir.path().join("admin")).unwrap();
    Ok(Replica { process, url, admin, dir })
}

/// A `tools/call` of `echo` at `url` with a fresh proof (`nonce` when given).
async fn dpop_call(
    url: &str,
    client: &DpopSigner,
    token: &str,
    nonce: Option<&str>,
    id: i64,
) -> (StatusCode, http::HeaderMap) {
    let proof = client.proof("POST", RESOURCE, Some(token), nonce).unwrap();
    dpop_call_with(url, token, &proof, id).await
}

async fn dpop_call_with(url: &str, token: &str, proof: &str, id: i64) -> (StatusCode, http::HeaderMap) {
    let mut req = modern(url, id, "tools/call", json!({"name": "echo", "arguments": {"text": "hi"}}), json!({}));
    req.headers_mut().insert("authorization", format!("DPoP {token}").parse().unwrap());
    req.headers_mut().insert("dpop", proof.parse().unwrap());
    let (status, headers, _) = call(req).await;
    (status, headers)
}

/// `n` calls at once spread over `urls`, each with a fresh proof; their statuses.
async fn across(urls: &[String], client: &DpopSigner, token: &str, nonce: &str, n: usize) -> Vec<StatusCode> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let url = urls[i % urls.len()].clone();
            let proof = client.proof("POST", RESOURCE, Some(token), Some(nonce)).unwrap();
            let token = token.to_owned();
            tokio::spawn(async move { dpop_call_with(&url, &token, &proof, i as i64).await.0 })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// A call with a workload identity token at `url` (`tools/list`, or `tools/call` of `echo`).
async fn workload_call(url: &str, token: &str, method: &str, id: i64) -> StatusCode {
    let params = match method {
        "tools/call" => json!({"name": "echo", "arguments": {"text": "wi"}}),
        _ => json!({}),
    };
    let mut req = modern(url, id, method, params, json!({}));
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (status, headers, _) = call(req).await;
    if status == StatusCode::UNAUTHORIZED {
        // the challenge says why (asserted by the callers through the status)
        eprintln!("{url}: {:?}", headers.get("www-authenticate"));
    }
    status
}

/// A DPoP `tools/list` (not rate limited) at `url`.
async fn dpop_list(url: &str, token: &str, proof: &str, id: i64) -> StatusCode {
    let mut req = modern(url, id, "tools/list", json!({}), json!({}));
    req.headers_mut().insert("authorization", format!("DPoP {token}").parse().unwrap());
    req.headers_mut().insert("dpop", proof.parse().unwrap());
    call(req).await.0
}

/// `/readyz` of an admin listener: whether ready, and the body.
async fn readyz(admin: &str) -> (bool, String) {
    use http_body_util::BodyExt as _;
    let req = http::Request::get(format!("http://{admin}/readyz"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let res = common::client().request(req).await.expect("the admin listener answers");
    let ready = res.status() == StatusCode::OK;
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (ready, String::from_utf8_lossy(&body).into_owned())
}

/// Waits until `admin` reports `ready` (true or false); the last body.
async fn await_readiness(admin: &str, ready: bool) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        let (now, body) = readyz(admin).await;
        if now == ready {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{admin} never became {}: {last}", if ready { "ready" } else { "not ready" });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_one_tls_redis_with_acl() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let mut redis = secure_redis(certs.path()).await;
    let upstream = demo_upstream().await;
    let idp = Idp { key: DpopSigner::generate(ClientKeyAlg::Es256).unwrap() };
    let client = std::sync::Arc::new(DpopSigner::generate(ClientKeyAlg::Es256).unwrap());
    let token = idp.token(&client);
    let ca = certs.path().join("ca.crt");
    // the audit signing key every replica shares, and its public key for `audit verify`
    let audit_key = certs.path().join("audit-signing.pem");
    let mut public = Vec::new();
    assert!(mcp_enterprise::audit_cli::keygen(&audit_key, &mut public).unwrap());
    let audit_pub = certs.path().join("audit.pub");
    std::fs::write(&audit_pub, &public).unwrap();
    let redis_port = redis.port();
    let with = |ca: &Path, password: &str| config(&upstream.url, redis_port, ca, password, &idp, &audit_key);
    let good = with(&ca, PASSWORD);

    // wrong password, untrusted certificate: refused at start-up, naming the cause (so the
    // replica never serves, nor reports ready)
    let err = replica(&with(&ca, "not-the-password")).await.err().unwrap();
    assert!(err.contains("password was refused"), "{err}");
    assert!(!err.contains("not-the-password"), "the error must not echo the password: {err}");
    let err = replica(&with(&certs.path().join("other.crt"), PASSWORD)).await.err().unwrap();
    assert!(err.contains("certificate"), "{err}");
    // `config check` says the same before anything starts
    let check = |config: String| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mcp.toml");
        std::fs::write(&file, config.replace(DIR, &dir.path().display().to_string())).unwrap();
        let mut out = Vec::new();
        let loader = Loader::new().file(&file).env(Vec::<(String, String)>::new());
        let ok = mcp_enterprise::commands::check(loader, &mut out).unwrap();
        (ok, String::from_utf8_lossy(&out).into_owned())
    };
    let (ok, said) = check(with(&ca, "not-the-password"));
    assert!(!ok && said.contains("password was refused") && !said.contains("not-the-password"), "{said}");
    let (ok, said) = check(with(&certs.path().join("other.crt"), PASSWORD));
    assert!(!ok && said.contains("certificate"), "{said}");
    let (ok, said) = check(good.clone());
    assert!(ok && said.contains("accepted the credentials"), "{said}");

    let (a, b, c) = (replica(&good).await.unwrap(), replica(&good).await.unwrap(), replica(&good).await.unwrap());
    let urls = vec![a.url.clone(), b.url.clone(), c.url.clone()];
    for r in [&a, &b, &c] {
        await_readiness(&r.admin, true).await;
    }

    // a nonce issued by A is accepted by B
    let (status, headers) = dpop_call(&a.url, &client, &token, None, 1).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "nonces are required");
    let nonce = headers.get("dpop-nonce").expect("A issues a nonce").to_str().unwrap().to_owned();
    let proof = client.proof("POST", RESOURCE, Some(&token), Some(&nonce)).unwrap();
    assert_eq!(dpop_call_with(&b.url, &token, &proof, 2).await.0, StatusCode::OK, "B accepts A's nonce");
    // that proof, accepted by B, is a replay at A and at C (and at B)
    for url in [&a.url, &c.url, &b.url] {
        let (status, headers) = dpop_call_with(url, &token, &proof, 3).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "replay at {url}");
        let challenge = headers.get("www-authenticate").unwrap().to_str().unwrap();
        assert!(challenge.contains("invalid_dpop_proof"), "{challenge}");
    }

    // a workload identity token used at A is refused at B and at C (its jti is in Redis)
    let workload = idp.workload_token();
    assert_eq!(workload_call(&a.url, &workload, "tools/list", 4).await, StatusCode::OK);
    assert_eq!(workload_call(&b.url, &workload, "tools/list", 5).await, StatusCode::UNAUTHORIZED, "replay at B");
    assert_eq!(workload_call(&c.url, &workload, "tools/list", 6).await, StatusCode::UNAUTHORIZED, "replay at C");

    // the rate limit holds exactly across the three under concurrent load: LIMIT in all (one
    // already spent by B's call above)
    let statuses = across(&urls, &client, &token, &nonce, 30).await;
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let limited = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((ok, limited), (LIMIT - 1, 30 - (LIMIT - 1)), "{statuses:?}");
    let spent = idp.workload_token();
    assert_eq!(workload_call(&a.url, &spent, "tools/call", 7).await, StatusCode::TOO_MANY_REQUESTS, "spent");

    // Redis stopped: each use follows its on_unavailable
    redis.stop().unwrap();
    // DPoP replay: fail_closed
    let (status, _) = dpop_call(&c.url, &client, &token, Some(&nonce), 10).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "DPoP replay checks fail closed");
    // workload identity replay: fail_open (the replica's memory), and the rate limit: fail_open
    // (the spent limit lets the call through uncounted)
    let alone = idp.workload_token();
    assert_eq!(workload_call(&c.url, &alone, "tools/call", 11).await, StatusCode::OK, "fail open");
    assert_eq!(workload_call(&c.url, &alone, "tools/call", 12).await, StatusCode::UNAUTHORIZED, "C's memory");
    // readiness says why
    for r in [&a, &b, &c] {
        let body = await_readiness(&r.admin, false).await;
        assert!(body.contains("redis"), "{body}");
    }
    // Redis back (empty: no persistence): every replica recovers without a restart
    redis.restart().await.unwrap();
    for url in &urls {
        let mut recovered = false;
        for i in 0..50 {
            if dpop_call(url, &client, &token, Some(&nonce), 100 + i).await.0 == StatusCode::OK {
                recovered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(recovered, "{url} did not recover after Redis came back");
    }
    for r in [&a, &b, &c] {
        await_readiness(&r.admin, true).await;
    }
    // and shared state again: a proof accepted by C is a replay at A, a workload token used at A
    // is refused at B
    let proof = client.proof("POST", RESOURCE, Some(&token), Some(&nonce)).unwrap();
    assert_eq!(dpop_call_with(&c.url, &token, &proof, 200).await.0, StatusCode::OK);
    assert_eq!(dpop_call_with(&a.url, &token, &proof, 201).await.0, StatusCode::UNAUTHORIZED);
    let workload = idp.workload_token();
    assert_eq!(workload_call(&a.url, &workload, "tools/list", 202).await, StatusCode::OK);
    assert_eq!(workload_call(&b.url, &workload, "tools/list", 203).await, StatusCode::UNAUTHORIZED);

    // one replica killed with SIGKILL under load: the others keep serving; a client that
    // retries at the next replica succeeds; what each replica acknowledged is in its trail —
    // for the killed one, all it acknowledged before the audit writer's last chance to write
    // (`fsync = "interval"`: records gather up to `fsync_interval_ms` before one write; a kill
    // loses what is still queued, docs/deployment.md)
    const WORKERS: usize = 4;
    const MAX_CALLS: usize = 400;
    const BEFORE_KILL: Duration = Duration::from_millis(1200);
    // the writer's interval (10 ms) and room for a loaded machine's scheduling
    const MAY_BE_QUEUED: Duration = Duration::from_millis(500);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (urls, client, token, nonce) = (urls.clone(), client.clone(), token.clone(), nonce.clone());
            let stop = stop.clone();
            tokio::spawn(async move {
                // (replica, JSON-RPC id, when) of every call answered with 200
                let mut acknowledged = Vec::new();
                for i in 0..MAX_CALLS {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let id = (1000 + w * MAX_CALLS + i) as i64;
                    let mut served = false;
                    // round robin; on a connection failure retry at the next replica
                    for attempt in 0..urls.len() {
                        let replica = (w + i + attempt) % urls.len();
                        let proof = client.proof("POST", RESOURCE, Some(&token), Some(&nonce)).unwrap();
                        let (url, token) = (urls[replica].clone(), token.clone());
                        let result = tokio::spawn(async move { dpop_list(&url, &token, &proof, id).await }).await;
                        if let Ok(status) = result {
                            assert_eq!(status, StatusCode::OK);
                            acknowledged.push((replica, id, std::time::Instant::now()));
                            served = true;
                            break;
                        }
                    }
                    assert!(served, "call {id} was served by no replica");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                acknowledged
            })
        })
        .collect();
    tokio::time::sleep(BEFORE_KILL).await;
    let killed_at = std::time::Instant::now();
    let b_dir = b.kill().await;
    // the others serve on for a while after the kill
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for worker in load {
        acknowledged.extend(worker.await.unwrap());
    }
    let after_kill = acknowledged.iter().filter(|(_, _, at)| *at > killed_at + Duration::from_millis(50)).count();
    assert!(after_kill > 0, "calls were served by the live replicas after the kill");
    let checked = acknowledged.iter().filter(|(r, _, at)| *r == 1 && *at + MAY_BE_QUEUED < killed_at).count();
    assert!(checked > 0, "B served calls well before it was killed");
    for url in [&a.url, &c.url] {
        let proof = client.proof("POST", RESOURCE, Some(&token), Some(&nonce)).unwrap();
        assert_eq!(dpop_list(url, &token, &proof, 500).await, StatusCode::OK, "{url} keeps serving");
    }

    // B restarts on its trail (the killed run's tail is sealed as unclean) and serves again
    let b = replica_in(b_dir, &good).await.unwrap();
    let proof = client.proof("POST", RESOURCE, Some(&token), Some(&nonce)).unwrap();
    assert_eq!(dpop_list(&b.url, &token, &proof, 501).await, StatusCode::OK);
    let trails = [a.trail(), b.trail(), c.trail()];
    let dirs = [a.terminate().await, b.terminate().await, c.terminate().await];
    for (i, trail) in trails.iter().enumerate() {
        // every call the replica acknowledged is in its own trail, answered with 200
        let records = common::call_records(trail);
        let durable =
            |(r, _, at): &&(usize, i64, std::time::Instant)| *r == i && (i != 1 || *at + MAY_BE_QUEUED < killed_at);
        for (_, id, _) in acknowledged.iter().filter(durable) {
            assert!(
                records.iter().any(|r| r["jsonrpc"]["id"] == *id && r["http"]["status"] == 200),
                "replica {i} acknowledged call {id}, which is not in its trail"
            );
        }
        // and the trail verifies: `mcp-enterprise audit verify --public-key audit.pub <trail>`
        let mut out = Vec::new();
        let verified = mcp_enterprise::audit_cli::verify(
            std::slice::from_ref(trail),
            Some(&audit_pub),
            false,
            mcp_enterprise::output::Output::Json,
            &mut out,
        )
        .unwrap();
        assert!(verified, "replica {i}'s trail: {}", String::from_utf8_lossy(&out));
    }
    drop(dirs);
}

/// Secure default: with a `dpop` section and nothing about replay, a proof is single use — the
/// second presentation of the same proof is refused by the gateway (a real client proof, signed
/// by `DpopSigner`, through `ConfiguredGateway`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_config_refuses_a_replayed_dpop_proof() {
    let upstream = demo_upstream().await;
    let idp = Idp { key: DpopSigner::generate(ClientKeyAlg::Es256).unwrap() };
    let client = DpopSigner::generate(ClientKeyAlg::Es256).unwrap();
    let token = idp.token(&client);
    let jwks = idp.jwks_toml();
    let doc = format!(
        r#"version = 1
resource = "{RESOURCE}"
[upstream]
url = "{}"
[listen]
address = "127.0.0.1:0"
[dpop]
origin = "{ORIGIN}"
static_validator = {{ issuer = "{ISS}", audiences = ["{RESOURCE}"], jwks = {jwks} }}
"#,
        upstream.url
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mcp.toml");
    std::fs::write(&file, doc).unwrap();
    let gw = ConfiguredGateway::start(Loader::new().file(&file).env(Vec::<(String, String)>::new())).await.unwrap();
    let url = gw.mcp_url();
    let proof = client.proof("POST", RESOURCE, Some(&token), None).unwrap();
    assert_eq!(dpop_call_with(&url, &token, &proof, 1).await.0, StatusCode::OK);
    let (status, headers) = dpop_call_with(&url, &token, &proof, 2).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the replayed proof is refused");
    assert!(headers.get("www-authenticate").unwrap().to_str().unwrap().contains("invalid_dpop_proof"));
    // a fresh proof from the same client goes through
    assert_eq!(dpop_call(&url, &client, &token, None, 3).await.0, StatusCode::OK);
}

/// `redis-cli -p port args…` (redis-tools, a dependency of Debian's redis-server): its output.
fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli").args(["-h", "127.0.0.1", "-p", &port.to_string()]).args(args).output();
    let out = out.expect("redis-cli (Debian redis-tools, installed with redis-server)");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A Redis Sentinel (`redis-server <conf> --sentinel`) on loopback watching `master_port` as
/// `ha-master` (quorum 1); killed when dropped.
struct Sentinel {
    process: tokio::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Sentinel {
    async fn start(master_port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor ha-master 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds ha-master 1000\nsentinel failover-timeout ha-master 5000\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let process = tokio::process::Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(std::fs::File::create(dir.path().join("log")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server --sentinel");
        assert!(
            common::eventually(Duration::from_secs(10), || redis_cli(port, &["PING"]) == "PONG").await,
            "the sentinel did not start: {}",
            std::fs::read_to_string(dir.path().join("log")).unwrap_or_default()
        );
        Self { process, port, _dir: dir }
    }

    /// The port of the master the Sentinel names now.
    fn master_port(&self) -> Option<u16> {
        redis_cli(self.port, &["SENTINEL", "get-master-addr-by-name", "ha-master"]).lines().nth(1)?.parse().ok()
    }
}

/// Sentinel (issue 21): the gateway resolves the master through a real Redis Sentinel, and after
/// a failover (the replica promoted) it follows the new master without a restart — rate-limit
/// counts (fail_closed, so a failed write would be a `503`) land in the new master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_follows_the_master_through_sentinel() {
    let master = RedisServer::start().await.unwrap();
    let mport = master.port().to_string();
    let replica = RedisServer::start_with(false, vec!["--replicaof".into(), "127.0.0.1".into(), mport]).await.unwrap();
    let mut sentinel = Sentinel::start(master.port()).await;
    assert_eq!(sentinel.master_port(), Some(master.port()));
    let upstream = demo_upstream().await;
    let doc = format!(
        r#"version = 1
resource = "http://127.0.0.1/mcp"
[upstream]
url = "{}"
[listen]
address = "127.0.0.1:0"
[[rate_limits]]
name = "global"
requests = 1000
per_secs = 600
methods = ["tools/call"]
[redis]
url = "redis://ha-master"
timeout_ms = 500
[redis.sentinel]
master_name = "ha-master"
sentinels = ["redis://127.0.0.1:{}"]
[redis.rate_limits]
prefix = "st:rl:"
on_unavailable = "fail_closed"
"#,
        upstream.url, sentinel.port
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mcp.toml");
    std::fs::write(&file, doc).unwrap();
    let gw = ConfiguredGateway::start(Loader::new().file(&file).env(Vec::<(String, String)>::new())).await.unwrap();
    let url = gw.mcp_url();
    let echo = |id: i64| {
        let url = url.clone();
        async move {
            call(modern(&url, id, "tools/call", json!({"name": "echo", "arguments": {"text": "s"}}), json!({}))).await.0
        }
    };
    assert_eq!(echo(1).await, StatusCode::OK);
    assert_eq!(master.integer(&["DBSIZE"]).await.unwrap(), 1, "the count is in the master");

    // the replica is promoted; the old master becomes its replica (read-only)
    assert!(
        common::eventually(Duration::from_secs(20), || redis_cli(replica.port(), &["ROLE"]).starts_with("slave")
            && redis_cli(replica.port(), &["INFO", "replication"]).contains("master_link_status:up"))
        .await
    );
    let said = redis_cli(sentinel.port, &["SENTINEL", "FAILOVER", "ha-master"]);
    assert_eq!(said, "OK", "{said}");
    assert!(
        common::eventually(Duration::from_secs(30), || sentinel.master_port() == Some(replica.port())).await,
        "no failover"
    );
    assert!(
        common::eventually(Duration::from_secs(30), || redis_cli(master.port(), &["ROLE"]).starts_with("slave")).await
    );
    assert_eq!(redis_cli(replica.port(), &["FLUSHALL"]), "OK");
    // the gateway follows: counted in the new master (a write to the old, now read-only, one
    // would fail closed with 503)
    let mut served = Vec::new();
    for id in 2..60 {
        let status = echo(id).await;
        served.push(status);
        if status == StatusCode::OK && replica.integer(&["DBSIZE"]).await.unwrap() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(served.last(), Some(&StatusCode::OK), "{served:?}");
    assert_eq!(replica.integer(&["DBSIZE"]).await.unwrap(), 1, "the count is in the new master: {served:?}");
    for id in 100..105 {
        assert_eq!(echo(id).await, StatusCode::OK);
    }
    gw.shutdown().await;
    let _ = sentinel.process.kill().await;
}
