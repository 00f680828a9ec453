//! Egress through a real forward proxy (Debian's `tinyproxy`, started by the test): the SSO
//! layer's IdP discovery and JWKS fetches go through an authenticating `CONNECT` tunnel, the
//! IdP's CA comes from the configured bundle, and `NO_PROXY` is honoured.
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
