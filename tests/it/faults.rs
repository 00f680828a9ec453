//! Fault injection: what the gateway does when its clients, its identity provider, its upstream
//! or its disk misbehave. Each test asserts the documented behaviour (docs/security.md, "What each
//! failure does"):
//!
//! - the listener: slow headers and idle connections closed at the header read timeout, slow
//!   bodies answered `408`, oversized heads `431`, connections beyond the limit queued until a slot
//!   frees, a shutdown finishing the requests in flight; 10 000 concurrent slowloris connections against a gateway *process*, whose limits hold,
//!   whose memory stays bounded (`VmHWM`) and which keeps serving;
//! - the IdP (a fault injector, then the real `oidc-provider`): hanging beyond the timeout,
//!   garbage, an oversized JWKS, a JWKS dripped slower than the timeout → `503` + `Retry-After`,
//!   never a hung request nor an accepted token; flapping while it rotates keys;
//! - the upstream: dropping the connection mid-SSE (the client sees a cut stream, never a clean
//!   end; the trail records `response_aborted`), slow, hung (`504` at the response timeout),
//!   `5xx`, unreachable;
//! - the audit disk failing with `ENOSPC` (`/dev/full`): `fail_closed` refuses calls with `503`,
//!   `backpressure` holds them until the disk is back; nothing is lost either way.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use mcp_enterprise_audit::verify::verify_dir;
use mcp_enterprise_audit::{AuditLayer, QueueFullPolicy, trail_files};
use mcp_enterprise_gateway::{Gateway, ListenerLimits, RunningGateway};
use mcp_enterprise_sso::{AuthError, Issuer, Keys, SsoLayer};
use mcp_enterprise_tests::fault::{Fault, FaultServer};
use mcp_enterprise_tests::gateway_process::GatewayProcess;
use mcp_enterprise_tests::oidc::{
    DEFAULT_JWT_RESOURCE, JWT_CLIENT, OidcOptions, OidcProvider, SigningAlg, SigningKey, decode_jws,
};
use mcp_enterprise_tests::peers::Peers;
use mcp_enterprise_tests::raw::{self, read_until_closed};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use crate::common::{self, call, demo_upstream, modern};

/// Generous bound on anything the gateway must do "eventually"; never a performance measure.
const EVENTUALLY: Duration = Duration::from_secs(60);

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn limits(header: Duration, body: Duration, connections: usize, header_bytes: usize) -> ListenerLimits {
    ListenerLimits::new()
        .header_read_timeout(header)
        .and_then(|l| l.request_body_timeout(body))
        .and_then(|l| l.max_connections(connections))
        .and_then(|l| l.max_header_bytes(header_bytes))
        .unwrap()
}

async fn gateway_with(upstream: &str, limits: ListenerLimits) -> RunningGateway {
    Gateway::builder()
        .upstream(upstream)
        .unwrap()
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .limits(limits)
        .build()
        .unwrap()
        .spawn()
        .await
        .unwrap()
}

/// A complete, valid modern `tools/list` request as raw bytes.
fn raw_tools_list(addr: SocketAddr) -> Vec<u8> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list",
        "params": {"_meta": common::modern_meta(json!({}))}})
    .to_string();
    format!(
        "POST /mcp HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\n\
         mcp-protocol-version: {}\r\nmcp-method: tools/list\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        common::MODERN,
        body.len()
    )
    .into_bytes()
}

// ---------------------------------------------------------------------------------------------
// The listener
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn slow_and_oversized_requests_meet_the_listener_limits() {
    let upstream = demo_upstream().await;
    let gw = gateway_with(&upstream.url, limits(Duration::from_secs(1), Duration::from_secs(1), 64, 4096)).await;
    let addr = gw.local_addr();

    // a normal request is served
    let answer = raw::exchange(addr, &raw_tools_list(addr)).await.unwrap();
    assert_eq!(answer.status(), Some(200), "{}", answer.text());

    // a head larger than max_header_bytes: 431, connection closed
    let big = format!("GET /mcp HTTP/1.1\r\nhost: {addr}\r\nx-pad: {}\r\n\r\n", "a".repeat(8192));
    let answer = raw::exchange(addr, big.as_bytes()).await.unwrap();
    assert_eq!(answer.status(), Some(431), "{}", answer.text());
    assert!(answer.closed);
    // more than 100 header fields: 431
    let many: String = (0..101).map(|i| format!("x-h{i}: v\r\n")).collect();
    let answer = raw::exchange(addr, format!("GET /mcp HTTP/1.1\r\nhost: {addr}\r\n{many}\r\n").as_bytes()).await;
    assert_eq!(answer.unwrap().status(), Some(431));

    // a head that never completes (one byte a while): closed without a response
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\n").await.unwrap();
    let dripping = tokio::spawn(async move {
        for _ in 0..120 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if slow.write_all(b"x").await.is_err() {
                return (true, slow);
            }
        }
        (false, slow)
    });
    let (cut, mut slow) = dripping.await.unwrap();
    let rest = read_until_closed(&mut slow, EVENTUALLY).await.unwrap();
    assert!(cut || rest.closed, "a slowloris head was not cut off");
    assert!(rest.bytes.is_empty(), "no response to an incomplete head: {}", rest.text());

    // an idle connection (nothing sent) and an idle keep-alive connection are closed too
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let answer = read_until_closed(&mut idle, EVENTUALLY).await.unwrap();
    assert!(answer.closed && answer.bytes.is_empty(), "idle: {}", answer.text());
    let mut keep_alive = TcpStream::connect(addr).await.unwrap();
    let request = String::from_utf8(raw_tools_list(addr)).unwrap().replace("connection: close\r\n", "");
    keep_alive.write_all(request.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut keep_alive, EVENTUALLY).await.unwrap();
    assert!(answer.closed, "an idle keep-alive connection is closed");
    assert_eq!(answer.statuses(), [200], "{}", answer.text());

    // a body slower than the body timeout: 408 with a JSON-RPC error
    let mut body = TcpStream::connect(addr).await.unwrap();
    body.write_all(
        format!(
            "POST /mcp HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\n\
             content-length: 1000\r\n\r\n{{\"jsonrpc\""
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let answer = read_until_closed(&mut body, EVENTUALLY).await.unwrap();
    assert_eq!(answer.status(), Some(408), "{}", answer.text());
    assert!(answer.closed, "the connection of a timed-out body is closed");
    let json = answer.text().split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    assert!(json.contains("\"code\":-32600"), "{json}");
    assert!(json.contains("not received in time"), "{json}");

    // and the gateway still serves
    let answer = raw::exchange(addr, &raw_tools_list(addr)).await.unwrap();
    assert_eq!(answer.status(), Some(200));
    gw.shutdown().await;
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let upstream = demo_upstream().await;
    // a long header timeout: only closing a connection frees a slot here
    let gw = gateway_with(&upstream.url, limits(Duration::from_secs(120), Duration::from_secs(120), 2, 4096)).await;
    let addr = gw.local_addr();
    let holders = [TcpStream::connect(addr).await.unwrap(), TcpStream::connect(addr).await.unwrap()];
    // queued: the kernel completes the handshake, the gateway does not accept it yet
    let mut queued = TcpStream::connect(addr).await.unwrap();
    queued.write_all(&raw_tools_list(addr)).await.unwrap();
    let early = read_until_closed(&mut queued, Duration::from_millis(700)).await.unwrap();
    assert!(!early.closed && early.bytes.is_empty(), "served beyond the connection limit: {}", early.text());
    drop(holders);
    let answer = read_until_closed(&mut queued, EVENTUALLY).await.unwrap();
    assert_eq!(answer.status(), Some(200), "served once a slot freed: {}", answer.text());
    gw.shutdown().await;
}

#[tokio::test]
async fn shutdown_lets_requests_in_flight_finish_and_stops_accepting() {
    let upstream = FaultServer::start(Fault::Drip {
        head: Bytes::from_static(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 36\r\n\r\n"),
        chunks: vec![Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#)],
        interval: Duration::from_secs(1),
    })
    .await
    .unwrap();
    let gw = gateway_with(&upstream.url("/mcp"), ListenerLimits::new()).await;
    let addr = gw.local_addr();
    let request = raw_tools_list(addr);
    let in_flight = tokio::spawn(async move { raw::exchange(addr, &request).await });
    assert!(common::eventually(EVENTUALLY, || upstream.connections() == 1).await, "the call reached the upstream");
    gw.shutdown().await;
    let answer = in_flight.await.unwrap().unwrap();
    assert_eq!(answer.status(), Some(200), "the request in flight finished: {}", answer.text());
    assert!(TcpStream::connect(addr).await.is_err(), "no longer accepting");
}

/// Test process and gateway each hold one descriptor per connection, plus their own.
const SLOWLORIS_CONNECTIONS: usize = 10_000;
const SLOWLORIS_LIMIT: usize = 2_000;

fn nofile_soft_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap_or(u64::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_slowloris_connections_leave_a_gateway_process_serving_in_bounded_memory() {
    let soft = nofile_soft_limit();
    assert!(
        soft >= SLOWLORIS_CONNECTIONS as u64 + 1024,
        "this test opens {SLOWLORIS_CONNECTIONS} connections but RLIMIT_NOFILE is {soft}: raise it with \
         `ulimit -n $(ulimit -Hn)` (tests/run.sh does)"
    );
    let upstream = demo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "version = 1\nresource = \"http://127.0.0.1/mcp\"\n[upstream]\nurl = \"{}\"\n[listen]\naddress = \"127.0.0.1:0\"\n\
         header_read_timeout_secs = 2\nrequest_body_timeout_secs = 2\nmax_connections = {SLOWLORIS_LIMIT}\nmax_header_bytes = 8192\n",
        upstream.url
    );
    let mut gw = GatewayProcess::start(dir.path(), &config, "warn").await.unwrap();
    let addr = gw.addr();
    let baseline_fds = gw.open_fds().unwrap();
    let answer = raw::exchange(addr, &raw_tools_list(addr)).await.unwrap();
    assert_eq!(answer.status(), Some(200), "before the attack: {}", answer.text());
    let idle_rss = gw.status_kib("VmRSS").unwrap();

    // the attack: half drip their heads, half send a head and drip the body
    let attacking = Arc::new(AtomicBool::new(true));
    let mut attackers = tokio::task::JoinSet::new();
    for i in 0..SLOWLORIS_CONNECTIONS {
        let attacking = attacking.clone();
        attackers.spawn(async move {
            let Ok(mut stream) = TcpStream::connect(addr).await else { return (false, 0u16) };
            let head: &[u8] = if i % 2 == 0 {
                b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\n"
            } else {
                b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{"
            };
            if stream.write_all(head).await.is_err() {
                return (true, 0);
            }
            while attacking.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if stream.write_all(b"a").await.is_err() {
                    break;
                }
            }
            let answer = read_until_closed(&mut stream, EVENTUALLY).await.unwrap();
            (answer.closed, answer.status().unwrap_or(0))
        });
    }
    // while it runs: the gateway never holds more connections than its limit, and still serves
    let mut peak_fds = 0;
    let mut served_during = false;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        peak_fds = peak_fds.max(gw.open_fds().unwrap());
        if !served_during {
            let probe = tokio::time::timeout(EVENTUALLY, raw::exchange(addr, &raw_tools_list(addr))).await;
            served_during = matches!(probe, Ok(Ok(a)) if a.status() == Some(200));
        }
        peak_fds = peak_fds.max(gw.open_fds().unwrap());
    }
    attacking.store(false, Ordering::Relaxed);
    let mut outcomes = std::collections::BTreeMap::<(bool, u16), usize>::new();
    while let Some(outcome) = attackers.join_next().await {
        *outcomes.entry(outcome.unwrap()).or_default() += 1;
    }
    assert!(gw.is_running(), "the gateway survived");
    assert!(served_during, "a normal request was served during the attack");
    let answer = raw::exchange(addr, &raw_tools_list(addr)).await.unwrap();
    assert_eq!(answer.status(), Some(200), "after the attack: {}", answer.text());
    // each attacker was cut off: heads closed without a response, bodies with 408; none served
    let served: usize = outcomes.iter().filter(|((_, s), _)| *s == 200).map(|(_, n)| n).sum();
    assert_eq!(served, 0, "{outcomes:?}");
    let closed: usize = outcomes.iter().filter(|((c, _), _)| *c).map(|(_, n)| n).sum();
    assert_eq!(closed, SLOWLORIS_CONNECTIONS, "every attacking connection was closed by the gateway: {outcomes:?}");
    assert!(outcomes.get(&(true, 408)).copied().unwrap_or(0) > 0, "slow bodies got 408: {outcomes:?}");
    // the connection limit held (the listener, the upstream pool and the log files on top)
    assert!(peak_fds <= baseline_fds + SLOWLORIS_LIMIT + 64, "{peak_fds} descriptors open, limit {SLOWLORIS_LIMIT}");
    // memory stayed bounded: at most 64 KiB per allowed connection above the idle footprint
    let peak = gw.status_kib("VmHWM").unwrap();
    let bound = idle_rss + (SLOWLORIS_LIMIT as u64) * 64 + 64 * 1024;
    assert!(peak <= bound, "VmHWM {peak} KiB > {bound} KiB (idle RSS {idle_rss} KiB)");
    eprintln!(
        "slowloris: {SLOWLORIS_CONNECTIONS} connections, limit {SLOWLORIS_LIMIT}: peak {peak_fds} fds (baseline \
         {baseline_fds}), VmHWM {peak} KiB (idle RSS {idle_rss} KiB), outcomes {outcomes:?}"
    );
    gw.stop().unwrap();
}

// ---------------------------------------------------------------------------------------------
// The identity provider
// ---------------------------------------------------------------------------------------------

const RESOURCE: &str = "https://mcp.faults.test/mcp";

async fn sso_gateway(upstream: &str, layer: SsoLayer) -> RunningGateway {
    Gateway::builder()
        .upstream(upstream)
        .unwrap()
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .sso(layer)
        .build()
        .unwrap()
        .spawn()
        .await
        .unwrap()
}

async fn echo(url: &str, token: &str) -> (StatusCode, http::HeaderMap, Value) {
    let mut req = modern(url, 7, "tools/call", json!({"name": "echo", "arguments": {"text": "hi"}}), json!({}));
    req.headers_mut().insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
    tokio::time::timeout(EVENTUALLY, call(req)).await.expect("the gateway answered (no hung request)")
}

fn claims(iss: &str, aud: &str) -> Value {
    json!({"iss": iss, "sub": "svc", "client_id": "svc", "aud": aud, "scope": "", "iat": now(), "exp": now() + 300,
        "jti": format!("faults-{}", now())})
}

fn assert_unavailable(answer: &(StatusCode, http::HeaderMap, Value), what: &str) {
    let (status, headers, body) = answer;
    assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{what}: {body}");
    assert_eq!(headers.get(header::RETRY_AFTER).map(|v| v.to_str().unwrap()), Some("5"), "{what}");
    assert!(headers.get(header::WWW_AUTHENTICATE).is_none(), "{what}: no challenge for an outage");
    assert!(body["error"]["message"].as_str().unwrap().contains(&AuthError::IdpUnavailable.to_string()), "{what}");
}

#[tokio::test]
async fn a_broken_idp_fails_closed_within_its_timeout() {
    let peers = Peers::require();
    let key = SigningKey::generate(&peers, SigningAlg::Es256).await.unwrap();
    let upstream = demo_upstream().await;
    let idp = FaultServer::start(Fault::Hang).await.unwrap();
    let issuer = idp.url("");
    let layer = SsoLayer::builder(RESOURCE)
        .issuer(Issuer::new(&issuer).keys(Keys::JwksUri(idp.url("/jwks"))))
        .http_timeout(Duration::from_secs(1))
        .jwks_min_refetch_interval(Duration::ZERO)
        .build()
        .unwrap();
    let gw = sso_gateway(&upstream.url, layer).await;
    let header = json!({"typ": "at+jwt", "kid": key.kid(), "alg": key.alg()});
    let token = key.sign_claims(&peers, &header, &claims(&issuer, RESOURCE)).await.unwrap();
    let url = gw.mcp_url();

    let jwks = json!({"keys": [key.public_jwk()]}).to_string();
    let mut huge_keys: Vec<Value> = Vec::new();
    let mut size = 0;
    while size < 2 * 1024 * 1024 {
        let mut k = key.public_jwk();
        k["kid"] = json!(format!("pad-{}", huge_keys.len()));
        size += k.to_string().len() + 1;
        huge_keys.push(k);
    }
    let oversized = json!({"keys": huge_keys}).to_string();
    let dripped = Fault::Drip {
        head: Bytes::from(format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            jwks.len()
        )),
        chunks: jwks.as_bytes().chunks(8).map(Bytes::copy_from_slice).collect(),
        interval: Duration::from_millis(300),
    };
    let faults: Vec<(&str, Fault)> = vec![
        ("hanging beyond the timeout", Fault::Hang),
        ("dripping the JWKS slower than the timeout", dripped),
        ("closing the connection", Fault::Close),
        ("answering garbage", Fault::response("200 OK", "application/json", &b"\x00\xff<html>not json"[..])),
        ("answering JSON that is no JWKS", Fault::response("200 OK", "application/json", r#"{"keys": "none"}"#)),
        ("answering 500", Fault::response("500 Internal Server Error", "text/plain", "down")),
        ("answering an oversized JWKS (2 MiB > 1 MiB)", Fault::response("200 OK", "application/json", oversized)),
        (
            "answering a header-only response cut short",
            Fault::Raw(Bytes::from_static(b"HTTP/1.1 200 OK\r\ncontent-le")),
        ),
    ];
    for (what, fault) in faults {
        eprintln!("IdP {what}");
        idp.set(fault);
        let before = idp.connections();
        assert_unavailable(&echo(&url, &token).await, what);
        assert!(idp.connections() > before, "{what}: the layer asked the IdP");
    }
    // the IdP heals: the same token passes, with no restart
    idp.set(Fault::response("200 OK", "application/json", jwks));
    let (status, _, body) = echo(&url, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    gw.shutdown().await;
}

#[tokio::test]
async fn an_idp_flapping_while_it_rotates_keys_never_lets_a_bad_token_in() {
    let peers = Peers::require();
    let mut provider = OidcProvider::start(&peers, OidcOptions::default()).await.unwrap();
    let upstream = demo_upstream().await;
    let ttl = Duration::from_secs(1);
    let max_stale = Duration::from_secs(600);
    let layer = SsoLayer::builder(DEFAULT_JWT_RESOURCE)
        .issuer(Issuer::new(provider.issuer()))
        .jwks_min_refetch_interval(Duration::ZERO)
        .jwks_ttl(ttl, ttl, ttl)
        .jwks_max_stale(max_stale)
        .http_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let gw = sso_gateway(&upstream.url, layer).await;
    let url = gw.mcp_url();
    let old = provider.signing_key().clone();
    let new = SigningKey::generate(&peers, SigningAlg::Es256).await.unwrap();
    let stranger = SigningKey::generate(&peers, SigningAlg::Es256).await.unwrap().with_kid(new.kid());
    let iss = provider.issuer().to_owned();
    let sign = |key: &SigningKey| {
        let (peers, key, iss) = (peers.clone(), key.clone(), iss.clone());
        async move {
            let header = json!({"typ": "at+jwt", "kid": key.kid(), "alg": key.alg()});
            key.sign_claims(&peers, &header, &claims(&iss, DEFAULT_JWT_RESOURCE)).await.unwrap()
        }
    };
    let ok = |answer: (StatusCode, http::HeaderMap, Value), what: &str| {
        assert_eq!(answer.0, StatusCode::OK, "{what}: {}", answer.2);
    };
    let refused = |answer: (StatusCode, http::HeaderMap, Value), what: &str| {
        assert_eq!(answer.0, StatusCode::UNAUTHORIZED, "{what}: {}", answer.2);
    };

    // warm: the old key is known
    let token = provider.client_credentials_token(JWT_CLIENT, Some(DEFAULT_JWT_RESOURCE), None).await.unwrap();
    ok(echo(&url, &token).await, "old key, IdP up");

    // down; the IdP rotates while unreachable. A new-key token cannot be checked: fail closed
    provider.stop().unwrap();
    ok(echo(&url, &sign(&old).await).await, "old key, IdP down, cache stale but within max_stale");
    let new_token = sign(&new).await;
    assert_unavailable(&echo(&url, &new_token).await, "new kid while the IdP is down");

    // up with the new key first, the old still published: both verify
    provider.restart_with_keys(vec![new.clone(), old.clone()]).await.unwrap();
    let issued = provider.client_credentials_token(JWT_CLIENT, Some(DEFAULT_JWT_RESOURCE), None).await.unwrap();
    assert_eq!(decode_jws(&issued).unwrap().0["kid"], json!(new.kid()));
    ok(echo(&url, &new_token).await, "new key once the IdP is back");
    ok(echo(&url, &sign(&old).await).await, "old key while still published");
    // a foreign key behind the new kid is refused whatever the IdP's state
    refused(echo(&url, &sign(&stranger).await).await, "foreign key behind the new kid, IdP up");

    // down again: the keys it last published keep verifying; foreign keys never do
    provider.stop().unwrap();
    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    ok(echo(&url, &sign(&new).await).await, "new key, IdP down, stale within max_stale");
    let foreign = echo(&url, &sign(&stranger).await).await;
    assert!(
        foreign.0 == StatusCode::UNAUTHORIZED || foreign.0 == StatusCode::SERVICE_UNAVAILABLE,
        "foreign key behind a known kid while the IdP is down: refused or unavailable, never accepted: {}",
        foreign.2
    );

    // up with the old key retired: once the IdP is reachable the retired key stops verifying
    provider.restart_with_keys(vec![new.clone()]).await.unwrap();
    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    let retired = sign(&old).await;
    let mut refused_retired = false;
    for _ in 0..20 {
        let answer = echo(&url, &retired).await;
        assert_ne!(answer.0, StatusCode::SERVICE_UNAVAILABLE, "the IdP is up: {}", answer.2);
        if answer.0 == StatusCode::UNAUTHORIZED {
            refused_retired = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(refused_retired, "a retired key kept verifying with the IdP up");
    ok(echo(&url, &sign(&new).await).await, "new key after the retirement");
    gw.shutdown().await;
    provider.stop().unwrap();
}

// ---------------------------------------------------------------------------------------------
// The upstream MCP server
// ---------------------------------------------------------------------------------------------

fn tool_call(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}}})
}

fn legacy_post(url: &str, body: &Value) -> Request<Full<Bytes>> {
    Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", common::LEGACY)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

#[tokio::test]
async fn upstream_faults_become_precise_answers_and_audited_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let (audit, trail) = AuditLayer::builder().directory(dir.path()).build().unwrap();
    let upstream = FaultServer::start(Fault::Hang).await.unwrap();
    let gw = Gateway::builder()
        .upstream(&upstream.url("/mcp"))
        .unwrap()
        .upstream_response_timeout(Duration::from_secs(1))
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .audit(audit)
        .build()
        .unwrap()
        .spawn()
        .await
        .unwrap();
    let url = gw.mcp_url();
    let client = common::client();

    // 1. dropping the connection mid-SSE: the first event arrives, then the stream is cut — the
    //    client sees an error, never a clean end of stream
    let progress =
        r#"data: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}"#;
    upstream.set(Fault::sse_then_drop(&[&format!("{progress}\n\n")], Duration::from_millis(100)));
    let res = client.request(legacy_post(&url, &tool_call(1))).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = res.into_body();
    let mut received = Vec::new();
    let end = loop {
        match tokio::time::timeout(EVENTUALLY, body.frame()).await.expect("the stream ends") {
            Some(Ok(frame)) => received.extend_from_slice(&frame.into_data().unwrap_or_default()),
            Some(Err(e)) => break Err(e),
            None => break Ok(()),
        }
    };
    assert!(String::from_utf8_lossy(&received).contains("notifications/progress"), "the event before the cut");
    assert!(end.is_err(), "a stream cut upstream must not look complete downstream");

    // 2. a 5xx from the upstream passes through with its status
    upstream.set(Fault::response("503 Service Unavailable", "application/json", r#"{"busy":true}"#));
    let (status, _, _) = call(legacy_post(&url, &tool_call(2))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    upstream.set(Fault::response("500 Internal Server Error", "text/plain", "crash"));
    let (status, _, _) = tokio::time::timeout(EVENTUALLY, async {
        let res = client.request(legacy_post(&url, &tool_call(3))).await.unwrap();
        let status = res.status();
        (status, res.into_body().collect().await.unwrap().to_bytes(), ())
    })
    .await
    .unwrap();
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);

    // 3. the upstream closes without answering: 502 with a JSON-RPC error naming the request
    upstream.set(Fault::Close);
    let (status, _, body) = call(legacy_post(&url, &tool_call(4))).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!((body["id"].clone(), body["error"]["code"].clone()), (json!(4), json!(-32603)), "{body}");

    // 4. a slow upstream: the answer arrives when it is ready, other calls are not held up; its
    //    body takes longer than the response timeout (1 s), which only bounds the start
    upstream.set(Fault::Drip {
        head: Bytes::from_static(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 42\r\n\r\n"),
        chunks: vec![Bytes::from_static(br#"{"jsonrpc":"2.0","id":5,"result":{"ok":1}}"#)],
        interval: Duration::from_secs(2),
    });
    let slow = tokio::spawn(call(legacy_post(&url, &tool_call(5))));
    tokio::time::sleep(Duration::from_millis(200)).await;
    upstream.set(Fault::response("200 OK", "application/json", r#"{"jsonrpc":"2.0","id":6,"result":{}}"#));
    let (status, _, body) = call(legacy_post(&url, &tool_call(6))).await;
    assert_eq!((status, body["id"].clone()), (StatusCode::OK, json!(6)));
    assert!(!slow.is_finished(), "the slow call was still waiting for its upstream");
    let (status, _, body) = tokio::time::timeout(EVENTUALLY, slow).await.unwrap().unwrap();
    assert_eq!((status, body["result"]["ok"].clone()), (StatusCode::OK, json!(1)));

    // 5. a hung upstream: a client that gives up first is recorded as cancelled; one that waits
    //    gets 504 at the response timeout, naming its request; the gateway keeps serving
    upstream.set(Fault::Hang);
    let hung = tokio::time::timeout(Duration::from_millis(500), call(legacy_post(&url, &tool_call(7)))).await;
    assert!(hung.is_err(), "a hung upstream gets no invented answer before the timeout");
    let started = std::time::Instant::now();
    let (status, _, body) = tokio::time::timeout(EVENTUALLY, call(legacy_post(&url, &tool_call(9)))).await.unwrap();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!((body["id"].clone(), body["error"]["code"].clone()), (json!(9), json!(-32603)), "{body}");
    assert!(started.elapsed() >= Duration::from_millis(900), "not before the timeout");
    upstream.set(Fault::response("200 OK", "application/json", r#"{"jsonrpc":"2.0","id":8,"result":{}}"#));
    let (status, _, _) = call(legacy_post(&url, &tool_call(8))).await;
    assert_eq!(status, StatusCode::OK);

    gw.shutdown().await;
    tokio::task::spawn_blocking(move || trail.shutdown()).await.unwrap();
    let report = verify_dir(dir.path(), None, false).unwrap();
    assert!(report.is_ok(), "{report}");
    let records = common::call_records(dir.path());
    let by_id = |id: u64| {
        records
            .iter()
            .find(|r| r["jsonrpc"]["id"] == json!(id))
            .unwrap_or_else(|| panic!("no record of {id}: {records:#?}"))
    };
    assert_eq!((by_id(1)["outcome"].as_str(), by_id(1)["response_aborted"].as_bool()), (Some("error"), Some(true)));
    assert_eq!((by_id(2)["outcome"].as_str(), by_id(2)["http"]["status"].as_u64()), (Some("error"), Some(503)));
    assert_eq!((by_id(3)["outcome"].as_str(), by_id(3)["http"]["status"].as_u64()), (Some("error"), Some(500)));
    assert_eq!((by_id(4)["outcome"].as_str(), by_id(4)["http"]["status"].as_u64()), (Some("error"), Some(502)));
    assert_eq!(by_id(4)["jsonrpc_error"], json!(-32603));
    assert_eq!((by_id(5)["outcome"].as_str(), by_id(8)["outcome"].as_str()), (Some("allowed"), Some("allowed")));
    assert_eq!((by_id(9)["outcome"].as_str(), by_id(9)["http"]["status"].as_u64()), (Some("error"), Some(504)));
    // the call whose client gave up before the upstream answered is recorded too (no response:
    // status 499, aborted)
    let cancelled: Vec<&Value> = records.iter().filter(|r| r["http"]["status"] == json!(499)).collect();
    assert_eq!(cancelled.len(), 1, "{records:#?}");
    assert_eq!(
        (cancelled[0]["outcome"].as_str(), cancelled[0]["response_aborted"].as_bool()),
        (Some("error"), Some(true))
    );
}

// ---------------------------------------------------------------------------------------------
// The audit disk
// ---------------------------------------------------------------------------------------------

/// Points every trail file name the writer may open next at `/dev/full` (writes fail with
/// `ENOSPC`); returns the links, to remove with [`free_disk`] when the disk "has space" again. A
/// name the writer has already created a real file under is left alone.
fn fill_disk(dir: &Path) -> Vec<std::path::PathBuf> {
    let last = trail_files(dir).unwrap().last().cloned().unwrap();
    let first_seq: u64 = last.file_name().unwrap().to_str().unwrap()[6..26].parse().unwrap();
    let records = std::fs::read_to_string(&last).unwrap().lines().count() as u64;
    (first_seq + 1..first_seq + records + 64)
        .filter_map(|seq| {
            let link = dir.join(format!("audit-{seq:020}.jsonl"));
            std::os::unix::fs::symlink("/dev/full", &link).is_ok().then_some(link)
        })
        .collect()
}

/// Removes the `/dev/full` links that are still links (never a trail file the writer created).
fn free_disk(links: &mut Vec<std::path::PathBuf>) {
    for link in links.drain(..) {
        if link.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
            let _ = std::fs::remove_file(link);
        }
    }
}

#[tokio::test]
async fn a_full_audit_disk_refuses_calls_or_holds_them_as_configured_and_loses_nothing() {
    let upstream = demo_upstream().await;
    for policy in [QueueFullPolicy::FailClosed, QueueFullPolicy::Backpressure] {
        let dir = tempfile::tempdir().unwrap();
        // every record rotates the file, so the next write opens a new one: the full "disk"
        let (audit, trail) = AuditLayer::builder()
            .directory(dir.path())
            .rotation(1, None)
            .queue_capacity(2)
            .on_full(policy)
            .checkpoints(u64::MAX, Duration::from_secs(3600))
            .build()
            .unwrap();
        let stats_of = audit.clone();
        let gw = Gateway::builder()
            .upstream(&upstream.url)
            .unwrap()
            .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
            .audit(audit)
            .build()
            .unwrap()
            .spawn()
            .await
            .unwrap();
        let url = gw.mcp_url();
        let init = common::legacy_initialize(&url, json!({}));
        let (status, headers, _) = call(init).await;
        assert_eq!(status, StatusCode::OK);
        let session = headers["mcp-session-id"].to_str().unwrap().to_owned();
        let in_session = |id: u64| {
            let mut req = legacy_post(&url, &tool_call(id));
            req.headers_mut().insert("mcp-session-id", HeaderValue::from_str(&session).unwrap());
            req
        };
        let (status, _, _) = call(in_session(2)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(common::eventually(EVENTUALLY, || stats_of.stats().queued() == 0).await);
        let mut links = fill_disk(dir.path());
        // the next record fails to write
        let first = tokio::spawn(call(in_session(3)));
        assert!(
            common::eventually(EVENTUALLY, || stats_of.stats().failed() > 0).await,
            "{policy:?}: writes fail with ENOSPC"
        );
        match policy {
            QueueFullPolicy::FailClosed => {
                // the queue fills with what cannot be written; then calls are refused
                let mut refused = None;
                for id in 10..20 {
                    let (status, _, body) = call(in_session(id)).await;
                    if status == StatusCode::SERVICE_UNAVAILABLE {
                        refused = Some(body);
                        break;
                    }
                }
                let body = refused.expect("fail_closed refuses calls it cannot record");
                assert_eq!(body["error"]["code"], json!(-32603), "{body}");
                assert!(stats_of.stats().refused() > 0);
            }
            _ => {
                // calls wait for the disk; none is answered unrecorded
                let waiting: Vec<_> = (10..14).map(|id| tokio::spawn(call(in_session(id)))).collect();
                tokio::time::sleep(Duration::from_millis(500)).await;
                assert!(waiting.iter().any(|w| !w.is_finished()), "backpressure holds calls while the disk is full");
                free_disk(&mut links);
                for w in waiting {
                    let (status, _, _) = tokio::time::timeout(EVENTUALLY, w).await.unwrap().unwrap();
                    assert_eq!(status, StatusCode::OK);
                }
            }
        }
        // (only links still in place: the writer may have created real files under removed ones)
        free_disk(&mut links);
        assert!(
            common::eventually(EVENTUALLY, || stats_of.stats().queued() == 0).await,
            "{policy:?}: the held records reach the disk once it has space"
        );
        // the call made as the disk filled: answered only if recorded (fail_closed may refuse it)
        let (first_status, _, _) = tokio::time::timeout(EVENTUALLY, first).await.unwrap().unwrap();
        let allowed = match policy {
            QueueFullPolicy::FailClosed => [StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE].as_slice(),
            _ => [StatusCode::OK].as_slice(),
        };
        assert!(allowed.contains(&first_status), "{policy:?}: the call made as the disk filled: {first_status}");
        // space is back: once the writer's retry succeeds, calls pass again (refused until then)
        let started = tokio::time::Instant::now();
        loop {
            let (status, _, _) = call(in_session(30)).await;
            if status == StatusCode::OK {
                break;
            }
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{policy:?}");
            assert!(started.elapsed() < EVENTUALLY, "{policy:?}: the trail never recovered");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        gw.shutdown().await;
        tokio::task::spawn_blocking(move || trail.shutdown()).await.unwrap();
        let report = verify_dir(dir.path(), None, false).unwrap();
        assert!(report.is_ok(), "{policy:?}: {report}");
        let ids: Vec<u64> = common::call_records(dir.path())
            .iter()
            .filter_map(|r| r["jsonrpc"]["id"].as_u64())
            .filter(|id| *id >= 2)
            .collect();
        assert!(ids.contains(&30), "{policy:?}: recorded once space is back: {ids:?}");
        if first_status == StatusCode::OK {
            assert!(ids.contains(&3), "{policy:?}: an answered call is never unrecorded: {ids:?}");
        }
        if policy == QueueFullPolicy::Backpressure {
            assert!((10..14).all(|id| ids.contains(&id)), "{policy:?}: held calls recorded: {ids:?}");
        }
    }
}
