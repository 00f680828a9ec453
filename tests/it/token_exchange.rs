//! `token_exchange` propagation against a real authorization server: npm `oidc-provider` with an
//! RFC 8693 grant registered by the test peer (`tests/peers/oidc-provider.mjs`), which records
//! every request's parameters. The upstream is the demo server behind our `sso` crate trusting
//! that provider, so the exchanged token is verified for real. Shown: the request parameters
//! exactly per RFC 8693, the three client authentication methods, caching per (subject token,
//! scopes), single flight, a re-exchange after expiry, and the failure paths (AS refuses the
//! caller → 403, AS refuses the gateway → 502, AS down → 503), never a passthrough. The fourth
//! client authentication, the platform's workload JWT as the client assertion, is shown with a
//! "platform" key the provider trusts for the gateway's client and JWTs minted by npm `jose`.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use mcp_enterprise_config::{ClientAuthMethod, ClientCredentialsConfig, ScopeMappingConfig, TokenExchangeConfig};
use mcp_enterprise_demo_server::DemoServer;
use mcp_enterprise_gateway::propagation::{ClientCredentials, Propagation, TokenExchange};
use mcp_enterprise_gateway::{Gateway, RunningGateway};
use mcp_enterprise_sso::{Issuer, SsoLayer};
use mcp_enterprise_tests::oidc::{
    JWT_CLIENT, OPAQUE_CLIENT, OidcOptions, OidcProvider, SigningAlg, SigningKey, TokenExchangePeer, jose_pkcs8_key,
    jose_sign_jwts, token_exchange_client,
};
use mcp_enterprise_tests::peers::Peers;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::common::{call, modern};

const SECRET: &str = "gw-token-exchange-secret-2b9c4e1f";
const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";
const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

fn tool_call(url: &str, token: &str, method: &str, tool: Option<&str>) -> Request<Full<Bytes>> {
    let params = match tool {
        Some(name) => json!({"name": name, "arguments": {}}),
        None => json!({}),
    };
    let mut req = modern(url, 7, method, params, json!({}));
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    req.headers_mut().insert("cookie", "sid=inbound-cookie".parse().unwrap());
    req.headers_mut().insert("dpop", "inbound.dpop.proof".parse().unwrap());
    req
}

fn claims_of(jwt: &str) -> Value {
    use base64::Engine as _;
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// The provider, a gateway exchanging with it, and the upstream verifying what it issues.
struct Setup {
    provider: OidcProvider,
    /// The platform key and file of `workload_assertion`.
    platform: Option<(SigningKey, std::path::PathBuf)>,
    gateway: RunningGateway,
    gateway_resource: String,
    upstream: String,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

struct Options {
    auth: ClientAuthMethod,
    ttl: Duration,
    refuse: Vec<String>,
    secret: &'static str,
    refresh_before_secs: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            auth: ClientAuthMethod::ClientSecretBasic,
            ttl: Duration::from_secs(300),
            refuse: Vec::new(),
            secret: SECRET,
            refresh_before_secs: 30,
        }
    }
}

fn client_id(auth: ClientAuthMethod) -> &'static str {
    match auth {
        ClientAuthMethod::ClientSecretPost => "gw-te-post",
        ClientAuthMethod::PrivateKeyJwt => "gw-te-pkjwt",
        ClientAuthMethod::WorkloadAssertion => "gw-te-workload",
        _ => "gw-te-basic",
    }
}

async fn setup(peers: &Peers, options: Options) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway_resource = format!("http://{}/mcp", listener.local_addr().unwrap());
    let upstream_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}/mcp", upstream_listener.local_addr().unwrap());
    let (pem, jwk) = jose_pkcs8_key(peers, "ES256").await.unwrap();
    let key_file = dir.path().join("client-key.pem");
    std::fs::write(&key_file, pem).unwrap();
    // the platform (kubelet, SPIFFE) key the provider trusts for the workload client
    let platform = SigningKey::generate(peers, SigningAlg::Es256).await.unwrap();
    let provider = OidcProvider::start(
        peers,
        OidcOptions {
            any_resource_as_jwt: true,
            token_exchange: Some(TokenExchangePeer {
                subject_audience: gateway_resource.clone(),
                ttl: options.ttl,
                refuse_subjects: options.refuse.clone(),
            }),
            extra_clients: vec![
                token_exchange_client("gw-te-basic", SECRET, "client_secret_basic", None),
                token_exchange_client("gw-te-post", SECRET, "client_secret_post", None),
                token_exchange_client("gw-te-pkjwt", "", "private_key_jwt", Some(&jwk)),
                token_exchange_client("gw-te-workload", "", "private_key_jwt", Some(&platform.public_jwk())),
            ],
            ..Default::default()
        },
    )
    .await
    .unwrap();

    // the upstream: the demo server (echoing headers) behind the sso crate trusting the provider
    let upstream_sso = SsoLayer::builder(&upstream).issuer(Issuer::new(provider.issuer())).build().unwrap();
    let service = mcp_enterprise_demo_server::mcp_service_for(DemoServer::new().with_header_echo(), Default::default());
    let app = axum::Router::new().fallback_service(
        tower::ServiceBuilder::new()
            .layer(upstream_sso)
            .service(axum::Router::new().route_service(mcp_enterprise_demo_server::MCP_PATH, service)),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(upstream_listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });

    let mut config = TokenExchangeConfig::new(&format!("{}/token", provider.issuer()), client_id(options.auth));
    config.client_auth = options.auth;
    let assertion_file = dir.path().join("platform-token");
    match options.auth {
        ClientAuthMethod::PrivateKeyJwt => config.private_key_file = Some(key_file.display().to_string()),
        ClientAuthMethod::WorkloadAssertion => {
            let jwt = platform_jwt(peers, &platform, &provider.token_endpoint(), 300).await;
            std::fs::write(&assertion_file, format!("{jwt}\n")).unwrap();
            config.assertion_file = Some(assertion_file.display().to_string());
        }
        _ => config.client_secret = Some(options.secret.to_owned()),
    }
    config.scopes = vec![
        ScopeMappingConfig::new("tools/call", Some("whoami"), &["mcp:tools:read"]),
        ScopeMappingConfig::new("tools/call", None, &["mcp:tools"]),
    ];
    config.refresh_before_secs = options.refresh_before_secs;
    let exchange = TokenExchange::from_config(&config, &upstream).unwrap();
    let gateway_sso = SsoLayer::builder(&gateway_resource).issuer(Issuer::new(provider.issuer())).build().unwrap();
    let gateway = Gateway::builder()
        .upstream(&upstream)
        .unwrap()
        .sso(gateway_sso)
        .propagation(Propagation::TokenExchange(exchange))
        .build()
        .unwrap()
        .serve_on(listener)
        .unwrap();
    let platform = (options.auth == ClientAuthMethod::WorkloadAssertion).then_some((platform, assertion_file));
    Setup { provider, platform, gateway, gateway_resource, upstream, _dir: dir, stop: Some(stop) }
}

/// A workload JWT as the platform mints it for the gateway's client (npm `jose`): `iss` = `sub` =
/// the client id, `aud` = the token endpoint, expiring `ttl` seconds from now (negative: expired).
async fn platform_jwt(peers: &Peers, platform: &SigningKey, token_endpoint: &str, ttl: i64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let claims = json!({"iss": "gw-te-workload", "sub": "gw-te-workload", "aud": token_endpoint,
        "jti": uuid_like(), "iat": now.min(now + ttl) - 1, "exp": now + ttl});
    jose_sign_jwts(peers, &[(platform, json!({"typ": "JWT", "kid": platform.kid()}), claims)]).await.unwrap().remove(0)
}

/// A `jti` unique in this process run.
fn uuid_like() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{nanos:x}-{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

fn sha256_b64url(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mcp_enterprise_core::jwks::sha256(text.as_bytes()))
}

impl Setup {
    async fn caller_token(&self, client: mcp_enterprise_tests::oidc::OidcClient) -> String {
        self.provider.client_credentials_token(client, Some(&self.gateway_resource), Some("mcp:tools")).await.unwrap()
    }

    async fn whoami(&self, token: &str) -> (http::StatusCode, Value) {
        let (status, _, msg) = call(tool_call(&self.gateway.mcp_url(), token, "tools/call", Some("whoami"))).await;
        (status, msg)
    }

    async fn records(&self) -> Vec<Value> {
        self.provider.token_exchange_records().await.unwrap()
    }
}

#[tokio::test]
async fn exchanges_per_rfc8693_are_cached_single_flight_and_verified_upstream() {
    let peers = Peers::require();
    let s = setup(&peers, Options::default()).await;
    let token = s.caller_token(JWT_CLIENT).await;

    // two calls, one exchange; the upstream verified the exchanged token (sub = the caller,
    // client = the gateway, act = the gateway per RFC 8693 §4.1)
    for _ in 0..2 {
        let (status, msg) = s.whoami(&token).await;
        assert_eq!(status, 200, "{msg}");
        let who = &msg["result"]["structuredContent"];
        assert_eq!(who["verified"], true, "{msg}");
        assert_eq!(who["subject"], JWT_CLIENT.id);
        assert_eq!(who["client_id"], "gw-te-basic");
        assert_eq!(who["scopes"], json!(["mcp:tools:read"]));
    }
    let records = s.records().await;
    assert_eq!(records.len(), 1, "cached: {records:?}");
    let mut record = records[0].clone();
    assert!(record.as_object_mut().unwrap().remove("subject_token_sha256").is_some());
    assert_eq!(
        record,
        json!({
            "grant_type": GRANT,
            "client_id": "gw-te-basic",
            "client_auth_method": "client_secret_basic",
            "subject_token": token,
            "subject_token_type": ACCESS,
            "requested_token_type": ACCESS,
            "resource": s.upstream,
            "scope": "mcp:tools:read",
        }),
        "exactly the RFC 8693 parameters"
    );

    // another call kind: another scope, another exchange; what the upstream got
    let (status, _, msg) = call(tool_call(&s.gateway.mcp_url(), &token, "tools/call", Some("echo_headers"))).await;
    assert_eq!(status, 200, "{msg}");
    let headers = &msg["result"]["structuredContent"]["headers"];
    assert!(headers.get("cookie").is_none() && headers.get("dpop").is_none(), "{headers}");
    let issued = headers["authorization"][0].as_str().unwrap().strip_prefix("Bearer ").unwrap();
    assert_ne!(issued, token, "never the caller's token");
    let claims = claims_of(issued);
    assert_eq!((claims["sub"].as_str(), claims["aud"].as_str()), (Some(JWT_CLIENT.id), Some(s.upstream.as_str())));
    assert_eq!(claims["act"], json!({"sub": "gw-te-basic"}));
    assert_eq!(claims["scope"], "mcp:tools");
    let records = s.records().await;
    assert_eq!(records.len(), 2);
    assert_eq!(records[1]["scope"], "mcp:tools");
    // no rule: no scope parameter at all
    let (status, _, msg) = call(tool_call(&s.gateway.mcp_url(), &token, "tools/list", None)).await;
    assert_eq!(status, 200, "{msg}");
    let records = s.records().await;
    assert_eq!(records.len(), 3);
    assert!(records[2].get("scope").is_none(), "{}", records[2]);

    // single flight: concurrent calls with a new subject token make one exchange
    let fresh = s.caller_token(JWT_CLIENT).await;
    let calls = (0..8).map(|_| s.whoami(&fresh));
    for (status, msg) in futures_join_all(calls).await {
        assert_eq!(status, 200, "{msg}");
    }
    let records = s.records().await;
    assert_eq!(records.len(), 4, "one exchange for 8 concurrent calls: {records:?}");
    assert_eq!(records[3]["subject_token"], fresh.as_str());
}

/// Runs the futures concurrently on this task.
async fn futures_join_all<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

#[tokio::test]
async fn client_secret_post_and_a_re_exchange_after_expiry() {
    let peers = Peers::require();
    let options = Options {
        auth: ClientAuthMethod::ClientSecretPost,
        ttl: Duration::from_secs(4),
        refresh_before_secs: 1,
        ..Options::default()
    };
    let s = setup(&peers, options).await;
    let token = s.caller_token(JWT_CLIENT).await;
    let first = std::time::Instant::now();
    assert_eq!(s.whoami(&token).await.0, 200);
    assert_eq!(s.whoami(&token).await.0, 200);
    let records = s.records().await;
    if first.elapsed() < Duration::from_secs(3) {
        assert_eq!(records.len(), 1, "reused until 1 s before its 4 s expiry: {records:?}");
    }
    assert_eq!(records[0]["client_auth_method"], "client_secret_post");
    assert_eq!(records[0]["client_id"], "gw-te-post");
    // past the reuse window (3 s of 4): exchanged again
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(first.elapsed()) + Duration::from_millis(200)).await;
    let before = s.records().await.len();
    let (status, msg) = s.whoami(&token).await;
    assert_eq!(status, 200, "{msg}");
    assert_eq!(s.records().await.len(), before + 1, "a re-exchange after expiry");
}

#[tokio::test]
async fn private_key_jwt_client_authentication() {
    let peers = Peers::require();
    let s = setup(&peers, Options { auth: ClientAuthMethod::PrivateKeyJwt, ..Options::default() }).await;
    let token = s.caller_token(JWT_CLIENT).await;
    let (status, msg) = s.whoami(&token).await;
    assert_eq!(status, 200, "{msg}");
    assert_eq!(msg["result"]["structuredContent"]["client_id"], "gw-te-pkjwt");
    let records = s.records().await;
    assert_eq!(records[0]["client_auth_method"], "private_key_jwt");
    assert_eq!(records[0]["client_assertion_type"], "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
}

#[tokio::test]
async fn workload_assertion_client_authentication_follows_the_platforms_rotation() {
    let peers = Peers::require();
    let s = setup(&peers, Options { auth: ClientAuthMethod::WorkloadAssertion, ..Options::default() }).await;
    let (platform, file) = s.platform.as_ref().unwrap();
    let endpoint = s.provider.token_endpoint();
    let written = std::fs::read_to_string(file).unwrap().trim().to_owned();

    // the gateway holds no secret: the platform's JWT is its client assertion, exactly as written
    let first = s.caller_token(JWT_CLIENT).await;
    let (status, msg) = s.whoami(&first).await;
    assert_eq!(status, 200, "{msg}");
    assert_eq!(msg["result"]["structuredContent"]["client_id"], "gw-te-workload", "{msg}");
    let records = s.records().await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["client_auth_method"], "private_key_jwt");
    assert_eq!(records[0]["client_assertion_type"], "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
    assert_eq!(records[0]["client_assertion_sha256"], sha256_b64url(&written), "the file's JWT, unchanged");

    // oidc-provider takes a client assertion once (RFC 7523 §3 allows it): the same file again is
    // refused — the gateway's own authentication, so 502, and no passthrough
    let second = s.caller_token(JWT_CLIENT).await;
    let (status, msg) = s.whoami(&second).await;
    assert_eq!(status, 502, "{msg}");
    assert_eq!(msg["error"]["code"], -32603, "{msg}");

    // the platform rotates the file: the next exchange reads the new JWT
    let rotated = platform_jwt(&peers, platform, &endpoint, 300).await;
    std::fs::write(file, &rotated).unwrap();
    let (status, msg) = s.whoami(&second).await;
    assert_eq!(status, 200, "{msg}");
    let records = s.records().await;
    assert_eq!(records.len(), 2);
    assert_eq!(records[1]["client_assertion_sha256"], sha256_b64url(&rotated));

    // an expired JWT (the platform stopped rotating): 503 from the gateway, the endpoint not asked
    std::fs::write(file, platform_jwt(&peers, platform, &endpoint, -60).await).unwrap();
    let third = s.caller_token(JWT_CLIENT).await;
    let (status, msg) = s.whoami(&third).await;
    assert_eq!(status, 503, "{msg}");
    assert!(!msg.to_string().contains(&file.display().to_string()), "no path to callers: {msg}");
    // the file gone, or not a JWT: 503 as well; cached exchanges keep serving
    std::fs::remove_file(file).unwrap();
    assert_eq!(s.whoami(&third).await.0, 503);
    std::fs::write(file, "not a jwt").unwrap();
    assert_eq!(s.whoami(&third).await.0, 503);
    assert_eq!(s.whoami(&second).await.0, 200, "cached");
    assert_eq!(s.records().await.len(), 2);

    // a gateway configured with a missing file does not start
    let mut config = TokenExchangeConfig::new(&endpoint, "gw-te-workload");
    config.client_auth = ClientAuthMethod::WorkloadAssertion;
    config.assertion_file = Some("/nonexistent/platform-token".into());
    let err = TokenExchange::from_config(&config, &s.upstream).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/platform-token") && err.contains("No such file"), "{err}");
    config.assertion_file = None;
    let err = TokenExchange::from_config(&config, &s.upstream).unwrap_err().to_string();
    assert!(err.contains("assertion_file is required"), "{err}");
}

#[tokio::test]
async fn failures_fail_the_call_never_pass_through() {
    let peers = Peers::require();
    let mut s = setup(&peers, Options { refuse: vec![OPAQUE_CLIENT.id.to_owned()], ..Options::default() }).await;
    let expect_error = |status: http::StatusCode, msg: &Value, want: u16| {
        assert_eq!(status.as_u16(), want, "{msg}");
        assert_eq!(msg["error"]["code"], -32603, "{msg}");
        assert_eq!(msg["id"], 7, "{msg}");
    };
    // the AS refuses this caller (invalid_grant) → 403
    let refused = s.caller_token(OPAQUE_CLIENT).await;
    let (status, msg) = s.whoami(&refused).await;
    expect_error(status, &msg, 403);
    assert!(msg["error"]["message"].as_str().unwrap().contains("refused"), "{msg}");

    // the AS refuses the gateway (wrong secret: invalid_client) → 502
    let wrong = setup(&peers, Options { secret: "not-the-secret", ..Options::default() }).await;
    let token = wrong.caller_token(JWT_CLIENT).await;
    let (status, msg) = wrong.whoami(&token).await;
    expect_error(status, &msg, 502);
    drop(wrong);

    // the AS is down → 503; a token exchanged before still serves from the cache
    let cached = s.caller_token(JWT_CLIENT).await;
    assert_eq!(s.whoami(&cached).await.0, 200);
    let uncached = s.caller_token(JWT_CLIENT).await;
    s.provider.stop().unwrap();
    let (status, msg) = s.whoami(&uncached).await;
    expect_error(status, &msg, 503);
    let (status, msg) = s.whoami(&cached).await;
    assert_eq!(status, 200, "cached: {msg}");
    // passing the caller's token on instead would not even work: the upstream refuses it
    let (status, _, _) = call(tool_call(&s.upstream, &uncached, "tools/call", Some("whoami"))).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn static_client_credentials_token_cached_and_verified_upstream() {
    let peers = Peers::require();
    let s = setup(&peers, Options::default()).await;
    let mut grant =
        ClientCredentialsConfig::new(&format!("{}/token", s.provider.issuer()), JWT_CLIENT.id, JWT_CLIENT.secret);
    grant.scopes = vec!["mcp:tools".into()];
    let propagation = Propagation::ClientCredentials(ClientCredentials::from_config(&grant, &s.upstream).unwrap());
    assert!(!format!("{propagation:?}").contains(JWT_CLIENT.secret));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let resource = format!("http://{}/mcp", listener.local_addr().unwrap());
    let sso = SsoLayer::builder(&resource).issuer(Issuer::new(s.provider.issuer())).build().unwrap();
    let gateway = Gateway::builder()
        .upstream(&s.upstream)
        .unwrap()
        .sso(sso)
        .propagation(propagation)
        .build()
        .unwrap()
        .serve_on(listener)
        .unwrap();
    let caller = s.provider.client_credentials_token(OPAQUE_CLIENT, Some(&resource), Some("mcp:tools")).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (status, _, msg) = call(tool_call(&gateway.mcp_url(), &caller, "tools/call", Some("echo_headers"))).await;
        assert_eq!(status, 200, "{msg}");
        let headers = &msg["result"]["structuredContent"]["headers"];
        assert!(headers.get("cookie").is_none() && headers.get("dpop").is_none(), "{headers}");
        seen.push(headers["authorization"][0].as_str().unwrap().to_owned());
    }
    assert_eq!(seen[0], seen[1], "one token, cached");
    let claims = claims_of(seen[0].strip_prefix("Bearer ").unwrap());
    // the gateway's own identity, not the caller's
    assert_eq!((claims["sub"].as_str(), claims["aud"].as_str()), (Some(JWT_CLIENT.id), Some(s.upstream.as_str())));
    assert_eq!(claims["scope"], "mcp:tools");
    let (status, _, msg) = call(tool_call(&gateway.mcp_url(), &caller, "tools/call", Some("whoami"))).await;
    assert_eq!(status, 200, "{msg}");
    assert_eq!(
        msg["result"]["structuredContent"]["subject"], JWT_CLIENT.id,
        "the upstream verified the gateway's token"
    );
}
