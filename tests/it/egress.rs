//! Egress through a real forward proxy (Debian's `tinyproxy`, started by the test): the SSO
//! layer's IdP discovery and JWKS fetches, RFC 8693 token exchange (npm `oidc-provider`) and the
//! workload issuer's keys go through an authenticating `CONNECT` tunnel (the last two configured
//! by the document's `[egress]` section), the CA comes from the configured bundle, and
//! `NO_PROXY` is honoured.
//!
//! The IdP is unreachable except through the proxy, on loopback: it serves HTTPS on 127.0.0.2
//! and closes every connection that does not come from 127.0.0.3, the address tinyproxy binds
//! its outgoing connections to (`Bind`). A direct connection from the gateway (127.0.0.1) is
//! closed before the handshake, and the proxy's log must show the `CONNECT`.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http::StatusCode;
use mcp_enterprise_core::outbound::{Egress, TlsSettings};
use mcp_enterprise_gateway::{Gateway, RunningGateway};
use mcp_enterprise_sso::{Issuer, SsoLayer};
use mcp_enterprise_tests::oidc::{SigningAlg, SigningKey};
use mcp_enterprise_tests::peers::Peers;
use serde_json::{Value, json};

use crate::common::tls::{TestCa, TlsFront, server_config};
use crate::common::{self, call, modern};

const RESOURCE: &str = "http://localhost/mcp";
const PROXY_OUT: [u8; 4] = [127, 0, 0, 3];

/// tinyproxy on 127.0.0.1, its outgoing connections from 127.0.0.3, requiring `user:password`.
pub(crate) struct Tinyproxy {
    child: std::process::Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Tinyproxy {
    pub(crate) fn start(dir: &Path, user: &str, password: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let log = dir.join("tinyproxy.log");
        let conf = dir.join("tinyproxy.conf");
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nBind 127.0.0.3\nAllow 127.0.0.1\nTimeout 30\nMaxClients 20\n\
                 LogFile \"{}\"\nLogLevel Connect\nBasicAuth {user} {password}\nUser nobody\nGroup nogroup\n",
                log.display()
            ),
        )
        .expect("write tinyproxy.conf");
        // tinyproxy drops to `nobody`, which must write its log
        let _ = std::process::Command::new("chmod").arg("777").arg(dir).status();
        let child = std::process::Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tinyproxy (apt-get install tinyproxy)");
        Self { child, port, log }
    }

    pub(crate) async fn ready(&self) {
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("tinyproxy did not start listening");
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An OpenID provider's discovery document and JWKS (plain HTTP on 127.0.0.1, behind the TLS
/// front that alone is advertised), counting the fetches.
async fn idp_backend(issuer: Arc<std::sync::OnceLock<String>>, jwks: Value, hits: Arc<AtomicUsize>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (h1, h2) = (hits.clone(), hits);
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || {
                h1.fetch_add(1, Ordering::SeqCst);
                let iss = issuer.get().cloned().unwrap_or_default();
                async move { json_response(&json!({"issuer": iss, "jwks_uri": format!("{iss}/jwks")})) }
            }),
        )
        .route(
            "/jwks",
            get(move || {
                h2.fetch_add(1, Ordering::SeqCst);
                let jwks = jwks.clone();
                async move { json_response(&jwks) }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn json_response(value: &Value) -> ([(http::header::HeaderName, &'static str); 1], String) {
    ([(http::header::CONTENT_TYPE, "application/json")], value.to_string())
}

async fn gateway(upstream: &str, issuer: &str, egress: Egress, ca: &Path) -> RunningGateway {
    let layer = SsoLayer::builder(RESOURCE)
        .issuer(Issuer::new(issuer))
        .outbound(egress, TlsSettings::new().with_ca_file(ca).expect("IdP CA"))
        .http_timeout(Duration::from_secs(3))
        .jwks_min_refetch_interval(Duration::ZERO)
        .build()
        .expect("sso layer");
    Gateway::builder()
        .upstream(upstream)
        .expect("upstream")
        .egress(Egress::direct())
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .sso(layer)
        .build()
        .expect("gateway")
        .spawn()
        .await
        .expect("spawn")
}

async fn list_tools(gw: &RunningGateway, token: &str) -> (StatusCode, Value) {
    let mut req = modern(&gw.mcp_url(), 1, "tools/list", json!({}), json!({}));
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
    let (status, _, msg) = tokio::time::timeout(Duration::from_secs(20), call(req)).await.expect("answered in time");
    (status, msg)
}

#[tokio::test(flavor = "multi_thread")]
async fn idp_discovery_and_jwks_go_through_an_authenticating_proxy_and_no_proxy_is_honoured() {
    let peers = Peers::require();
    let dir = tempfile::tempdir().expect("dir");
    let upstream = common::demo_upstream().await;

    // the IdP: HTTPS with a private CA, on 127.0.0.2, answering only the proxy's address
    let ca = TestCa::new("IdP CA");
    let ca_file = ca.write(dir.path(), "idp-ca.pem");
    let key = SigningKey::generate(&peers, SigningAlg::Es256).await.expect("key");
    let hits = Arc::new(AtomicUsize::new(0));
    let issuer_cell = Arc::new(std::sync::OnceLock::new());
    let backend = idp_backend(issuer_cell.clone(), json!({"keys": [key.public_jwk()]}), hits.clone()).await;
    let front = TlsFront::start_on(
        IpAddr::from([127, 0, 0, 2]),
        Some(IpAddr::from(PROXY_OUT)),
        server_config(&ca.leaf(&["127.0.0.2"]), None),
        backend,
    )
    .await;
    let issuer = format!("https://127.0.0.2:{}", front.addr.port());
    issuer_cell.set(issuer.clone()).expect("issuer set once");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let claims = json!({"iss": issuer, "sub": "svc", "client_id": "svc", "aud": RESOURCE, "scope": "",
        "iat": now, "exp": now + 300, "jti": "egress-1"});
    let header = json!({"typ": "at+jwt", "kid": key.kid(), "alg": key.alg()});
    let token = key.sign_claims(&peers, &header, &claims).await.expect("token");

    let proxy = Tinyproxy::start(dir.path(), "gateway", "pr0xy-secret");
    proxy.ready().await;

    // through the proxy, with its credentials: discovery and JWKS fetched, the token accepted
    let egress = Egress::proxy(&proxy.url(), "localhost")
        .expect("proxy")
        .with_basic_auth("gateway", "pr0xy-secret")
        .expect("auth");
    let gw = gateway(&upstream.url, &issuer, egress, &ca_file).await;
    let (status, msg) = list_tools(&gw, &token).await;
    assert_eq!(status, StatusCode::OK, "{msg}\nproxy log:\n{}", proxy.log());
    assert!(hits.load(Ordering::SeqCst) >= 2, "discovery and JWKS were fetched");
    let log = proxy.log();
    assert!(log.contains(&format!("CONNECT 127.0.0.2:{}", front.addr.port())), "the proxy tunnelled: {log}");
    assert!(!log.contains("pr0xy-secret"), "the proxy log never shows the credential");
    assert_eq!(front.refused.load(Ordering::SeqCst), 0);
    gw.shutdown().await;

    // the IdP is not reachable directly: a gateway without the proxy cannot validate the token
    let gw = gateway(&upstream.url, &issuer, Egress::direct(), &ca_file).await;
    let (status, msg) = list_tools(&gw, &token).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{msg}");
    assert!(front.refused.load(Ordering::SeqCst) >= 1, "the direct attempt was closed by the IdP");
    gw.shutdown().await;

    // NO_PROXY names the IdP: the gateway goes direct (and is refused), the proxy sees nothing new
    let before = proxy.log().matches("CONNECT").count();
    let refused = front.refused.load(Ordering::SeqCst);
    let egress = Egress::proxy(&proxy.url(), "localhost,127.0.0.2")
        .expect("proxy")
        .with_basic_auth("gateway", "pr0xy-secret")
        .expect("auth");
    let gw = gateway(&upstream.url, &issuer, egress, &ca_file).await;
    let (status, msg) = list_tools(&gw, &token).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{msg}");
    assert!(front.refused.load(Ordering::SeqCst) > refused, "went direct");
    assert_eq!(proxy.log().matches("CONNECT").count(), before, "not through the proxy");
    gw.shutdown().await;

    // wrong proxy credentials: the proxy refuses the tunnel (407), the call fails closed
    let hits_before = hits.load(Ordering::SeqCst);
    let egress = Egress::proxy(&proxy.url(), "").expect("proxy").with_basic_auth("gateway", "wrong").expect("auth");
    let gw = gateway(&upstream.url, &issuer, egress, &ca_file).await;
    let (status, msg) = list_tools(&gw, &token).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{msg}");
    assert_eq!(hits.load(Ordering::SeqCst), hits_before, "nothing reached the IdP");
    gw.shutdown().await;
}

/// The gateway of a configuration document: `sso` trusting `issuer` (direct: `no_proxy`), RFC 8693
/// `token_exchange` at `token_endpoint`, and the given `[egress]` lines.
async fn configured_gateway(
    dir: &Path,
    upstream: &str,
    issuer: &str,
    token_endpoint: &str,
    egress: &str,
) -> mcp_enterprise_gateway::configured::ConfiguredGateway {
    let file = dir.join(format!("mcp-{}.toml", NEXT_DOC.fetch_add(1, Ordering::SeqCst)));
    std::fs::write(
        &file,
        format!(
            r#"version = 1
resource = "{RESOURCE}"
[listen]
address = "127.0.0.1:0"
[upstream]
url = "{upstream}"
[upstream.propagation]
mode = "token_exchange"
[upstream.propagation.token_exchange]
token_endpoint = "{token_endpoint}"
client_id = "gw-te-basic"
client_secret = "{TE_SECRET}"
timeout_secs = 3
[[sso.issuers]]
issuer = "{issuer}"
[egress]
{egress}
"#
        ),
    )
    .expect("write the document");
    mcp_enterprise_gateway::configured::ConfiguredGateway::start(
        mcp_enterprise_config::Loader::new().file(&file).env(Vec::<(String, String)>::new()),
    )
    .await
    .expect("gateway starts")
}

static NEXT_DOC: AtomicUsize = AtomicUsize::new(0);
const TE_SECRET: &str = "egress-te-secret-51d0";

async fn echo_headers(mcp_url: &str, token: &str) -> (StatusCode, Value) {
    let mut req = modern(mcp_url, 2, "tools/call", json!({"name": "echo_headers", "arguments": {}}), json!({}));
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
    let (status, _, msg) = tokio::time::timeout(Duration::from_secs(20), call(req)).await.expect("answered in time");
    (status, msg)
}

/// RFC 8693 token exchange configured with an `[egress]` section: the authorization server's
/// token endpoint (HTTPS with the section's CA, reachable only from the proxy's address) is
/// reached through an authenticating `CONNECT` tunnel; the IdP the caller's token comes from is
/// in `no_proxy` and reached directly; without the proxy, or with the token endpoint in
/// `no_proxy`, the exchange cannot happen and the call fails closed (503), never passed through.
#[tokio::test(flavor = "multi_thread")]
async fn token_exchange_goes_through_the_configured_authenticating_proxy() {
    use mcp_enterprise_tests::oidc::{JWT_CLIENT, OidcOptions, OidcProvider, TokenExchangePeer, token_exchange_client};
    let peers = Peers::require();
    let dir = tempfile::tempdir().expect("dir");
    let upstream = common::demo_upstream_serving(
        mcp_enterprise_demo_server::DemoServer::new().with_header_echo(),
        Default::default(),
    )
    .await;
    let provider = OidcProvider::start(
        &peers,
        OidcOptions {
            any_resource_as_jwt: true,
            token_exchange: Some(TokenExchangePeer {
                subject_audience: RESOURCE.to_owned(),
                ttl: Duration::from_secs(300),
                refuse_subjects: Vec::new(),
            }),
            extra_clients: vec![token_exchange_client("gw-te-basic", TE_SECRET, "client_secret_basic", None)],
            ..Default::default()
        },
    )
    .await
    .expect("oidc-provider");
    // the authorization server's token endpoint as the gateway knows it: HTTPS on 127.0.0.2 with
    // a private CA, answering only the proxy's outgoing address
    let ca = TestCa::new("AS CA");
    let ca_file = ca.write(dir.path(), "as-ca.pem");
    let front = TlsFront::start_on(
        IpAddr::from([127, 0, 0, 2]),
        Some(IpAddr::from(PROXY_OUT)),
        server_config(&ca.leaf(&["127.0.0.2"]), None),
        provider.addr(),
    )
    .await;
    let token_endpoint = format!("https://127.0.0.2:{}/token", front.addr.port());
    let proxy = Tinyproxy::start(dir.path(), "gateway", "pr0xy-secret");
    proxy.ready().await;
    let caller = provider.client_credentials_token(JWT_CLIENT, Some(RESOURCE), Some("mcp:tools")).await.expect("token");
    let ca_line = format!("ca_file = \"{}\"", ca_file.display());

    // through the proxy: exchanged once, the upstream gets the issued token, not the caller's
    let egress = format!(
        "proxy = \"{}\"\nno_proxy = \"localhost,127.0.0.1\"\nproxy_credentials = \"gateway:pr0xy-secret\"\n{ca_line}",
        proxy.url()
    );
    let gw = configured_gateway(dir.path(), &upstream.url, provider.issuer(), &token_endpoint, &egress).await;
    let (status, msg) = echo_headers(&gw.mcp_url(), &caller).await;
    assert_eq!(status, StatusCode::OK, "{msg}\nproxy log:\n{}", proxy.log());
    let issued = msg["result"]["structuredContent"]["headers"]["authorization"][0].as_str().expect("a credential");
    let issued = issued.strip_prefix("Bearer ").expect("bearer");
    assert_ne!(issued, caller, "never the caller's token");
    let records = provider.token_exchange_records().await.expect("records");
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["subject_token"], caller.as_str());
    let log = proxy.log();
    assert_eq!(log.matches(&format!("CONNECT 127.0.0.2:{}", front.addr.port())).count(), 1, "tunnelled: {log}");
    assert!(!log.contains(&format!("127.0.0.1:{}", provider.port())), "the IdP in no_proxy went direct: {log}");
    assert!(!log.contains("pr0xy-secret"));
    assert_eq!(front.refused.load(Ordering::SeqCst), 0);
    gw.shutdown().await;

    // no proxy: the direct attempt is closed by the authorization server, the call fails closed
    let egress = format!("proxy = \"\"\n{ca_line}");
    let gw = configured_gateway(dir.path(), &upstream.url, provider.issuer(), &token_endpoint, &egress).await;
    let (status, msg) = echo_headers(&gw.mcp_url(), &caller).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{msg}");
    assert!(front.refused.load(Ordering::SeqCst) >= 1, "went direct and was refused");
    gw.shutdown().await;

    // the token endpoint's host in no_proxy: direct again, nothing new through the proxy
    let before = proxy.log().matches("CONNECT").count();
    let refused = front.refused.load(Ordering::SeqCst);
    let egress = format!(
        "proxy = \"{}\"\nno_proxy = \"localhost,127.0.0.1,127.0.0.2\"\nproxy_credentials = \"gateway:pr0xy-secret\"\n{ca_line}",
        proxy.url()
    );
    let gw = configured_gateway(dir.path(), &upstream.url, provider.issuer(), &token_endpoint, &egress).await;
    let (status, msg) = echo_headers(&gw.mcp_url(), &caller).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{msg}");
    assert!(front.refused.load(Ordering::SeqCst) > refused, "went direct");
    assert_eq!(proxy.log().matches("CONNECT").count(), before, "not through the proxy");
    gw.shutdown().await;

    // without the section's CA the token endpoint's certificate is not trusted: 503, fail closed
    let egress = format!(
        "proxy = \"{}\"\nno_proxy = \"localhost,127.0.0.1\"\nproxy_credentials = \"gateway:pr0xy-secret\"",
        proxy.url()
    );
    let gw = configured_gateway(dir.path(), &upstream.url, provider.issuer(), &token_endpoint, &egress).await;
    let (status, msg) = echo_headers(&gw.mcp_url(), &caller).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{msg}");
    gw.shutdown().await;
    assert_eq!(provider.token_exchange_records().await.expect("records").len(), 1, "no further exchange");
}

/// The gateway of a document with `workload_identity` (direct mode) trusting `issuer`'s
/// service-account tokens, and the given `[egress]` lines.
async fn workload_gateway(
    dir: &Path,
    upstream: &str,
    issuer: &str,
    egress: &str,
) -> mcp_enterprise_gateway::configured::ConfiguredGateway {
    let file = dir.join(format!("wi-{}.toml", NEXT_DOC.fetch_add(1, Ordering::SeqCst)));
    std::fs::write(
        &file,
        format!(
            r#"version = 1
resource = "{RESOURCE}"
[listen]
address = "127.0.0.1:0"
[upstream]
url = "{upstream}"
[[workload_identity.issuers]]
issuer = "{issuer}"
rules = [{{ name = "agents", subject = {{ glob = "system:serviceaccount:payments:*" }}, scopes = ["mcp:tools"] }}]
[workload_identity.direct]
max_token_lifetime_secs = 3600
[egress]
{egress}
"#
        ),
    )
    .expect("write the document");
    mcp_enterprise_gateway::configured::ConfiguredGateway::start(
        mcp_enterprise_config::Loader::new().file(&file).env(Vec::<(String, String)>::new()),
    )
    .await
    .expect("gateway starts")
}

/// `workload_identity` configured with an `[egress]` section: the workload issuer's discovery and
/// keys (HTTPS with the section's CA, reachable only from the proxy's address) are fetched
/// through the authenticating proxy; without the proxy the token cannot be checked: `503`, fail
/// closed.
#[tokio::test(flavor = "multi_thread")]
async fn workload_issuer_keys_go_through_the_configured_proxy() {
    let peers = Peers::require();
    let dir = tempfile::tempdir().expect("dir");
    let upstream = common::demo_upstream().await;
    let ca = TestCa::new("cluster CA");
    let ca_file = ca.write(dir.path(), "cluster-ca.pem");
    let key = SigningKey::generate(&peers, SigningAlg::Es256).await.expect("key");
    let hits = Arc::new(AtomicUsize::new(0));
    let issuer_cell = Arc::new(std::sync::OnceLock::new());
    let backend = idp_backend(issuer_cell.clone(), json!({"keys": [key.public_jwk()]}), hits.clone()).await;
    let front = TlsFront::start_on(
        IpAddr::from([127, 0, 0, 2]),
        Some(IpAddr::from(PROXY_OUT)),
        server_config(&ca.leaf(&["127.0.0.2"]), None),
        backend,
    )
    .await;
    let issuer = format!("https://127.0.0.2:{}", front.addr.port());
    issuer_cell.set(issuer.clone()).expect("issuer set once");
    let proxy = Tinyproxy::start(dir.path(), "gateway", "pr0xy-secret");
    proxy.ready().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let mut tokens = Vec::new();
    for n in 0..2 {
        let claims = json!({"iss": issuer, "sub": "system:serviceaccount:payments:agent", "aud": [RESOURCE],
            "iat": now, "nbf": now, "exp": now + 600, "jti": format!("wi-egress-{n}")});
        let header = json!({"alg": key.alg(), "kid": key.kid()});
        tokens.push(key.sign_claims(&peers, &header, &claims).await.expect("token"));
    }
    let ca_line = format!("ca_file = \"{}\"", ca_file.display());

    let egress = format!(
        "proxy = \"{}\"\nno_proxy = \"localhost,127.0.0.1\"\nproxy_credentials = \"gateway:pr0xy-secret\"\n{ca_line}",
        proxy.url()
    );
    let gw = workload_gateway(dir.path(), &upstream.url, &issuer, &egress).await;
    let req = |token: &str| {
        let mut req = modern(&gw.mcp_url(), 1, "tools/list", json!({}), json!({}));
        req.headers_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
        req
    };
    let (status, _, msg) = call(req(&tokens[0])).await;
    assert_eq!(status, StatusCode::OK, "{msg}\nproxy log:\n{}", proxy.log());
    assert!(hits.load(Ordering::SeqCst) >= 1, "the issuer's keys were fetched");
    let log = proxy.log();
    assert!(log.contains(&format!("CONNECT 127.0.0.2:{}", front.addr.port())), "tunnelled: {log}");
    assert_eq!(front.refused.load(Ordering::SeqCst), 0);
    gw.shutdown().await;

    // no proxy: the issuer closes the direct connection, the token is not accepted
    let gw = workload_gateway(dir.path(), &upstream.url, &issuer, &format!("proxy = \"\"\n{ca_line}")).await;
    let mut req = modern(&gw.mcp_url(), 1, "tools/list", json!({}), json!({}));
    req.headers_mut().insert("authorization", format!("Bearer {}", tokens[1]).parse().expect("header"));
    let (status, _, msg) = call(req).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "fails closed: {msg}");
    assert!(front.refused.load(Ordering::SeqCst) >= 1, "went direct and was refused");
    gw.shutdown().await;
}
