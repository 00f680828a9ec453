//! Several MCP servers behind one gateway (`routes`): each route at the path of its own resource,
//! with its own identity provider, upstream, protected resource metadata and server card; one
//! audit trail; route mistakes reported at the route's own keys.

use std::path::Path;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use mcp_enterprise_audit::trail_files;
use mcp_enterprise_config::{Format, Loader};
use mcp_enterprise_dpop::{ClientKeyAlg, DpopSigner};
use mcp_enterprise_gateway::configured::ConfiguredGateway;
use serde_json::{Value, json};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcp_enterprise_demo_server::DemoServer;

use crate::common::{self, call, demo_upstream_serving, modern};

const GITHUB: &str = "http://127.0.0.1:8787/github/mcp";
const JIRA: &str = "http://127.0.0.1:8787/jira/mcp";
const IDP_A: &str = "https://idp-a.routes.test";
const IDP_B: &str = "https://idp-b.routes.test";

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn token(idp: &DpopSigner, iss: &str, aud: &str) -> String {
    let claims = json!({"iss": iss, "aud": aud, "sub": "alice", "client_id": "agent", "scope": "mcp",
        "iat": now(), "exp": now() + 600});
    idp.sign_jws(&json!({"alg": "ES256", "typ": "at+jwt"}), &claims).unwrap()
}

fn card(name: &str) -> Value {
    json!({"name": name, "version": "1.0.0", "description": format!("{name} tools"), "max_age_secs": 60})
}

fn document(dir: &Path, up_a: &str, up_b: &str, idp_a: &DpopSigner, idp_b: &DpopSigner) -> Value {
    json!({
        "version": 1,
        "resource": GITHUB,
        "upstream": {"url": up_a},
        "listen": {"address": "127.0.0.1:0"},
        "sso": {"issuers": [{"issuer": IDP_A, "jwks": {"keys": [idp_a.public_jwk()]}}]},
        "server_card": card("com.example/github"),
        "audit": {"directory": dir.join("trail"), "fsync": "interval", "fsync_interval_ms": 10},
        "routes": [{
            "resource": JIRA,
            // this route's upstream learns the caller from an assertion the gateway signs
            "upstream": {"url": up_b, "propagation": {"mode": "signed_assertion"}},
            "sso": {"issuers": [{"issuer": IDP_B, "jwks": {"keys": [idp_b.public_jwk()]}}]},
            "server_card": card("com.example/jira"),
            "rate_limits": [{"name": "jira-calls", "key": ["principal"], "methods": ["tools/call"],
                "requests": 3, "per_secs": 3600}],
        }],
    })
}

async fn get(url: &str) -> (StatusCode, Value) {
    let req = Request::get(url).body(Full::new(Bytes::new())).unwrap();
    let res = common::client().request(req).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// The headers the upstream's `echo_headers` tool saw through `url`.
async fn echoed(url: &str, token: &str) -> serde_json::Map<String, Value> {
    let mut req = modern(url, 7, "tools/call", json!({"name": "echo_headers", "arguments": {}}), json!({}));
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (status, _, msg) = call(req).await;
    assert_eq!(status, StatusCode::OK, "{msg}");
    msg["result"]["structuredContent"]["headers"].as_object().cloned().unwrap()
}

/// `tools/call echo` at `url` with `token`: the status, and the `WWW-Authenticate` challenge.
async fn echo(url: &str, token: &str) -> (StatusCode, String) {
    let mut req = modern(url, 1, "tools/call", json!({"name": "echo", "arguments": {"text": "hi"}}), json!({}));
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let res = common::send(req).await;
    let challenge = res.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (res.status(), challenge)
}

#[tokio::test]
async fn two_routes_with_their_own_identity_providers_upstreams_and_discovery() {
    let up_a = demo_upstream_serving(DemoServer::new().with_header_echo(), Default::default()).await;
    let up_b = demo_upstream_serving(DemoServer::new().with_header_echo(), Default::default()).await;
    let idp_a = DpopSigner::generate(ClientKeyAlg::Es256).unwrap();
    let idp_b = DpopSigner::generate(ClientKeyAlg::Es256).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let doc = document(dir.path(), &up_a.url, &up_b.url, &idp_a, &idp_b);
    let loader = Loader::new().text("routes.json", Format::Json, &doc.to_string()).env(Vec::<(String, String)>::new());
    let gw = ConfiguredGateway::start(loader).await.unwrap();
    let base = format!("http://{}", gw.running().local_addr());
    let (github, jira) = (format!("{base}/github/mcp"), format!("{base}/jira/mcp"));

    // each route trusts its own identity provider, for its own audience
    let (a, b) = (token(&idp_a, IDP_A, GITHUB), token(&idp_b, IDP_B, JIRA));
    assert_eq!(echo(&github, &a).await.0, StatusCode::OK);
    assert_eq!(echo(&jira, &b).await.0, StatusCode::OK);
    let (status, challenge) = echo(&jira, &a).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the other route's issuer");
    assert!(
        challenge
            .contains(r#"resource_metadata="http://127.0.0.1:8787/.well-known/oauth-protected-resource/jira/mcp""#),
        "the challenge names the route's own metadata: {challenge}"
    );
    assert_eq!(echo(&github, &b).await.0, StatusCode::UNAUTHORIZED, "the other route's issuer");
    let wrong_audience = token(&idp_b, IDP_B, GITHUB);
    assert_eq!(echo(&jira, &wrong_audience).await.0, StatusCode::UNAUTHORIZED, "a token for another route");

    // each route's own propagation mode: none for github, a signed assertion for jira
    let seen = echoed(&github, &a).await;
    assert!(!seen.contains_key("authorization"), "nothing for github's upstream: {seen:?}");
    let seen = echoed(&jira, &b).await;
    let assertion = seen["authorization"][0].as_str().unwrap().strip_prefix("Bearer ").unwrap().to_owned();
    assert_ne!(assertion, b, "never the caller's token");
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(assertion.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(
        (&claims["iss"], &claims["aud"], &claims["sub"]),
        (&json!("http://127.0.0.1:8787"), &json!(up_b.url), &json!("alice"))
    );
    let (status, jwks) = get(&format!("{base}/.well-known/jwks.json")).await;
    assert_eq!(status, StatusCode::OK, "jira's assertion keys are served");
    assert!(!jwks["keys"].as_array().unwrap().is_empty());

    // RFC 9728 metadata per route, at its path-suffixed well-known URI
    let (status, prm) = get(&format!("{base}/.well-known/oauth-protected-resource/jira/mcp")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(prm["resource"], JIRA);
    assert_eq!(prm["authorization_servers"], json!([IDP_B]));
    let (_, prm) = get(&format!("{base}/.well-known/oauth-protected-resource/github/mcp")).await;
    assert_eq!(prm["resource"], GITHUB);
    assert_eq!(prm["authorization_servers"], json!([IDP_A]));
    // server cards per route; the catalog lists both
    assert_eq!(get(&format!("{github}/server-card")).await.1["name"], "com.example/github");
    assert_eq!(get(&format!("{jira}/server-card")).await.1["name"], "com.example/jira");
    let (_, catalog) = get(&format!("{base}/.well-known/ai-catalog.json")).await;
    let urls: Vec<&str> = catalog["entries"].as_array().unwrap().iter().filter_map(|e| e["url"].as_str()).collect();
    assert_eq!(urls, [format!("{GITHUB}/server-card"), format!("{JIRA}/server-card")]);
    // anything else is no server's
    assert_eq!(echo(&format!("{base}/other/mcp"), &a).await.0, StatusCode::NOT_FOUND);

    // each route reaches its own upstream: with jira's gone, only jira fails
    drop(up_b);
    assert_eq!(echo(&github, &a).await.0, StatusCode::OK);
    let (status, _) = echo(&jira, &b).await;
    assert!(status.is_server_error(), "jira's upstream is down: {status}");

    // the route's own rate limit, 3 calls an hour (echo, echo_headers, the failed call): the next is refused, the other route is not limited
    let (status, _) = echo(&jira, &b).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "jira's limit is 3 calls an hour");
    for _ in 0..3 {
        assert_eq!(echo(&github, &a).await.0, StatusCode::OK);
    }

    // one trail records both routes
    gw.shutdown().await;
    let mut paths = Vec::new();
    for file in trail_files(&dir.path().join("trail")).unwrap() {
        for line in std::fs::read_to_string(file).unwrap().lines() {
            let record: Value = serde_json::from_str(line).unwrap();
            if let Some(path) = record["http"]["path"].as_str() {
                paths.push(path.to_owned());
            }
        }
    }
    assert!(paths.iter().any(|p| p == "/github/mcp") && paths.iter().any(|p| p == "/jira/mcp"), "{paths:?}");
}

#[test]
fn route_mistakes_are_reported_at_the_routes_own_keys() {
    let toml = format!(
        r#"version = 1
resource = "{GITHUB}"

[upstream]
url = "http://127.0.0.1:9001/mcp"
propagation = {{ mode = "signed_assertion" }}

[listen]
address = "0.0.0.0:8787"

[sso]
issuers = [{{ issuer = "{IDP_A}", jwks_uri = "https://idp-a.routes.test/jwks" }}]

[[routes]]
resource = "{JIRA}"
upstream = {{ url = "ftp://127.0.0.1:9002/mcp" }}
sso = {{ issuers = [{{ issuer = "{IDP_B}", jwks_uri = "idp-b/jwks" }}] }}

[[routes]]
resource = "http://127.0.0.1:8787/github/mcp"
upstream = {{ url = "http://127.0.0.1:9003/mcp", propagation = {{ mode = "signed_assertion" }} }}
sso = {{ issuers = [{{ issuer = "{IDP_B}", jwks_uri = "https://idp-b.routes.test/jwks" }}] }}

rate_limits = [{{ name = "calls", requests = 10 }}]

[[routes]]
resource = "http://127.0.0.1:8787/open/mcp"
upstream = {{ url = "http://127.0.0.1:9004/mcp" }}
rate_limits = [{{ name = "calls", requests = 10 }}]
"#
    );
    let errors: Vec<String> =
        match Loader::new().text("mcp.toml", Format::Toml, &toml).env(Vec::<(String, String)>::new()).load() {
            Ok(loaded) => panic!("expected errors, loaded {loaded:?}"),
            Err(e) => e.diagnostics().iter().map(ToString::to_string).collect(),
        };
    let has = |needle: &str| errors.iter().any(|e| e.contains(needle));
    // a route's own section, located at its line
    assert!(has("mcp.toml:16:"), "{errors:#?}");
    assert!(has("routes[0].upstream.url"), "{errors:#?}");
    assert!(has("routes[0].sso.issuers[0].jwks_uri"), "{errors:#?}");
    // two servers at one path
    assert!(has("routes[1].resource") && has("already served"), "{errors:#?}");
    // two routes signing assertions as one issuer would serve one JWKS path
    assert!(has("routes[1].upstream.propagation.mode") && has("an assertion issuer of its own"), "{errors:#?}");
    // rate-limit names are unique across routes (replicas sharing Redis count by name)
    assert!(has("routes[2].rate_limits[0].name") && has("no other route uses"), "{errors:#?}");
    // a public listener needs authentication on every route
    assert!(has("listen.address") && has("for routes[2]"), "{errors:#?}");
    // the shared sections' own problems are not repeated per route
    assert_eq!(errors.iter().filter(|e| e.contains("listen.address")).count(), 1, "{errors:#?}");
}
