//! The pre-authentication limit (`listen.pre_auth_limit`, issue 21): requests per client address
//! counted before any credential is checked, through `ConfiguredGateway`:
//!
//! - a flood of bad tokens from one address: the first `burst` reach the SSO layer (`401`), the
//!   rest are refused with `429`, `Retry-After` and a JSON-RPC error — and the SSO layer's own
//!   counter of verified tokens (`mcpe_sso_token_cache_misses`) shows it saw only the first
//!   `burst`; each refusal is in the audit trail, denied by `pre_auth_limit`;
//! - another client address (the client bound to 127.0.0.2) is unaffected;
//! - the default configuration has the limit on: a long enough flood is refused.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use mcp_enterprise::demo::{DEMO_ISSUER, DemoIdp};
use mcp_enterprise_config::Loader;
use mcp_enterprise_gateway::configured::ConfiguredGateway;
use serde_json::{Value, json};

use crate::common;

const RESOURCE: &str = "http://localhost/mcp";

/// A client whose connections come from `local` (any 127.0.0.0/8 address is loopback on Linux).
fn client_from(local: &str) -> Client<HttpConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(local.parse::<IpAddr>().unwrap()));
    Client::builder(TokioExecutor::new()).build(connector)
}

/// A `tools/call` with `token` from `client`: status, `Retry-After`, body.
async fn call_with(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    id: i64,
    token: &str,
) -> (StatusCode, Option<String>, Value) {
    let mut req: Request<Full<Bytes>> =
        common::modern(url, id, "tools/call", json!({"name": "echo", "arguments": {"text": "x"}}), json!({}));
    req.headers_mut().insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
    let res = client.request(req).await.expect("the gateway answers");
    let status = res.status();
    let retry = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() { Value::Null } else { common::parse_message(&headers, &bytes) };
    (status, retry, body)
}

async fn metrics(admin: SocketAddr) -> BTreeMap<String, f64> {
    let req = Request::get(format!("http://{admin}/metrics")).body(Full::new(Bytes::new())).unwrap();
    let res = common::client().request(req).await.expect("admin answers");
    let text = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// Tokens signed by a key the gateway does not trust, each different (none is cached).
fn bad_tokens(n: usize) -> Vec<String> {
    let mallory = DemoIdp::generate().unwrap();
    (0..n).map(|i| mallory.mint(&format!("mallory-{i}"), "mcp", RESOURCE, Duration::from_secs(3600)).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_tokens_is_refused_before_any_signature_check_and_other_addresses_go_on() {
    const BURST: usize = 5;
    const FLOOD: usize = 25;
    let upstream = common::demo_upstream().await;
    let idp = DemoIdp::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = json!({
        "version": 1,
        "resource": RESOURCE,
        "upstream": {"url": upstream.url},
        // one per minute: nothing refills during the test
        "listen": {"address": "127.0.0.1:0", "pre_auth_limit": {"requests_per_sec": 1, "burst": BURST}},
        "admin": {"address": "127.0.0.1:0"},
        "sso": {"issuers": [{"issuer": DEMO_ISSUER, "jwks": idp.jwks()}]},
        "audit": {"directory": dir.path().join("trail")},
    });
    let file = dir.path().join("gateway.json");
    std::fs::write(&file, config.to_string()).unwrap();
    let gateway =
        ConfiguredGateway::start(Loader::new().file(&file).env(Vec::<(String, String)>::new())).await.expect("gateway");
    let url = gateway.mcp_url();
    let admin = gateway.running().admin_addr().expect("admin listener");
    let verified = |m: &BTreeMap<String, f64>| m.get("mcpe_sso_token_cache_misses_total").copied().unwrap_or(0.0);
    assert_eq!(verified(&metrics(admin).await), 0.0);

    let attacker = client_from("127.0.0.1");
    let mut statuses = Vec::new();
    for (i, token) in bad_tokens(FLOOD).iter().enumerate() {
        let (status, retry, body) = call_with(&attacker, &url, i as i64, token).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = retry.expect("Retry-After").parse().unwrap();
            assert!((1..=2).contains(&retry), "{retry}");
            assert_eq!(body["jsonrpc"], "2.0");
            assert_eq!(body["error"]["code"], -31429, "{body}");
            assert_eq!(body["error"]["data"]["limit"], "pre_auth_limit", "{body}");
        }
        statuses.push(status);
    }
    let unauthorized = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let limited = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((unauthorized, limited), (BURST, FLOOD - BURST), "{statuses:?}");
    assert!(statuses[..BURST].iter().all(|s| *s == StatusCode::UNAUTHORIZED), "the burst first: {statuses:?}");
    // the SSO layer verified exactly the burst: the refused tokens never reached a signature check
    assert_eq!(verified(&metrics(admin).await), BURST as f64);

    // another client address is unaffected: its bad token reaches the SSO layer (401, not 429)
    let neighbour = client_from("127.0.0.2");
    let token = &bad_tokens(1)[0];
    let (status, _, _) = call_with(&neighbour, &url, 100, token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(verified(&metrics(admin).await), (BURST + 1) as f64);
    // a good token from the flooding address is refused too (nothing about it is looked at)
    let good = idp.mint("alice", "mcp", RESOURCE, Duration::from_secs(3600)).unwrap();
    assert_eq!(call_with(&attacker, &url, 101, &good).await.0, StatusCode::TOO_MANY_REQUESTS);
    // ... and served from the other address
    assert_eq!(call_with(&neighbour, &url, 102, &good).await.0, StatusCode::OK);
    let m = metrics(admin).await;
    assert_eq!(m.get("mcpe_pre_auth_limit_refused_total"), Some(&((FLOOD - BURST + 1) as f64)), "{m:?}");
    assert_eq!(m.get("mcpe_pre_auth_limit_addresses"), Some(&2.0), "{m:?}");

    // every refusal is in the audit trail, denied by the pre-authentication limit
    let trail = dir.path().join("trail");
    let expected = FLOOD - BURST + 1;
    assert!(
        common::eventually(Duration::from_secs(10), || {
            common::call_records(&trail).iter().filter(|r| r["denied_by"]["layer"] == "pre_auth_limit").count()
                == expected
        })
        .await,
        "{:?}",
        common::call_records(&trail)
    );
    let records = common::call_records(&trail);
    let refused: Vec<&Value> = records.iter().filter(|r| r["denied_by"]["layer"] == "pre_auth_limit").collect();
    assert!(refused.iter().all(|r| r["outcome"] == "denied"), "{refused:?}");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_configuration_limits_a_flood_before_authentication() {
    let defaults = mcp_enterprise_core::preauth::PreAuthLimitConfig::default();
    assert!(!defaults.insecure_disabled);
    let upstream = common::demo_upstream().await;
    let idp = DemoIdp::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // nothing about the limit in the document
    let config = json!({
        "version": 1,
        "resource": RESOURCE,
        "upstream": {"url": upstream.url},
        "listen": {"address": "127.0.0.1:0"},
        "sso": {"issuers": [{"issuer": DEMO_ISSUER, "jwks": idp.jwks()}]},
    });
    let file = dir.path().join("gateway.json");
    std::fs::write(&file, config.to_string()).unwrap();
    let gateway =
        ConfiguredGateway::start(Loader::new().file(&file).env(Vec::<(String, String)>::new())).await.expect("gateway");
    let url = gateway.mcp_url();
    let attacker = client_from("127.0.0.1");
    // the default burst plus what refills while the flood runs: some must be refused; concurrent
    // requests so that the flood outruns the refill
    let flood = defaults.burst as usize * 3;
    let token = bad_tokens(1).remove(0);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let (attacker, url, token) = (attacker.clone(), url.clone(), token.clone());
        tasks.spawn(async move {
            let mut limited = 0;
            for i in 0..flood / 8 {
                if call_with(&attacker, &url, (worker * flood + i) as i64, &token).await.0
                    == StatusCode::TOO_MANY_REQUESTS
                {
                    limited += 1;
                }
            }
            limited
        });
    }
    let mut limited = 0;
    while let Some(n) = tasks.join_next().await {
        limited += n.unwrap();
    }
    assert!(limited > 0, "the default limit refused none of {flood} requests from one address");
    assert!(limited <= flood - defaults.burst as usize, "the default burst is served: {limited}");
    gateway.shutdown().await;
}
