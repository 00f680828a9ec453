//! HTTPS upstreams: the rmcp demo server behind a TLS terminator (tokio-rustls) with a CA made by
//! the test. The gateway must serve MCP through it with the CA configured, and answer every
//! certificate or handshake failure with `502` and a JSON-RPC error naming the upstream (its
//! host and route) — never hang: wrong CA, expired certificate, another host's certificate,
//! and an upstream demanding a client certificate (works with one, fails without). `config
//! check` reports unusable TLS files at their key. HTTP/2 by ALPN: an h2-only upstream (Node's
//! `http2.createSecureServer` with `allowHTTP1: false`, the official TypeScript SDK's transport
//! behind it) is served, and so is an HTTP/1.1-only one.

use std::net::SocketAddr;
use std::time::Duration;

use mcp_enterprise_core::outbound::{ClientIdentity, TlsSettings};
use mcp_enterprise_gateway::{Gateway, RunningGateway};
use serde_json::{Value, json};

use crate::common::tls::{TestCa, TlsFront, addr_of, server_config};
use crate::common::{self, call, legacy_initialize};

async fn gateway_to(url: &str, tls: TlsSettings) -> RunningGateway {
    Gateway::builder()
        .upstream(url)
        .expect("https upstream accepted")
        .upstream_tls(tls)
        .egress(mcp_enterprise_core::outbound::Egress::direct())
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .build()
        .expect("gateway")
        .spawn()
        .await
        .expect("spawn")
}

/// Initializes through the gateway (bounded: a hang fails the test).
async fn initialize(gateway: &RunningGateway) -> (http::StatusCode, Value) {
    let (status, _, msg) =
        tokio::time::timeout(Duration::from_secs(20), call(legacy_initialize(&gateway.mcp_url(), json!({}))))
            .await
            .expect("the gateway answers in time");
    (status, msg)
}

fn assert_names_the_upstream(msg: &Value, front: &TlsFront, why: &str) {
    let message = msg["error"]["message"].as_str().unwrap_or_default();
    assert_eq!(msg["error"]["code"], -32603, "{msg}");
    assert!(
        message.contains(&format!(":{}", front.addr.port())) && message.contains("route /mcp"),
        "names the upstream: {message}"
    );
    assert!(message.contains("TLS handshake"), "says TLS failed: {message}");
    assert!(message.contains(why), "says why ({why}): {message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_https_upstream_with_a_private_ca_is_served_and_failures_are_502_naming_it() {
    let upstream = common::demo_upstream().await;
    let dir = tempfile::tempdir().expect("dir");
    let ca = TestCa::new("upstream CA");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let front =
        TlsFront::start(server_config(&ca.leaf(&["localhost", "127.0.0.1"]), None), addr_of(&upstream.url)).await;

    // the CA configured: MCP served over TLS, by name and by address
    for host in ["localhost", "127.0.0.1"] {
        let gw = gateway_to(&front.url(host), TlsSettings::new().with_ca_file(&ca_file).expect("CA")).await;
        let (status, msg) = initialize(&gw).await;
        assert_eq!(status, 200, "{msg}");
        assert!(msg["result"]["serverInfo"].is_object(), "{msg}");
        gw.shutdown().await;
    }

    // wrong CA: the system roots only, or another private CA
    let other = TestCa::new("another CA");
    let other_file = other.write(dir.path(), "other.pem");
    for tls in [TlsSettings::new(), TlsSettings::new().with_ca_file(&other_file).expect("CA")] {
        let gw = gateway_to(&front.url("localhost"), tls).await;
        let (status, msg) = initialize(&gw).await;
        assert_eq!(status, 502, "{msg}");
        assert_names_the_upstream(&msg, &front, "UnknownIssuer");
        gw.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_and_other_hosts_certificates_are_refused() {
    let upstream = common::demo_upstream().await;
    let dir = tempfile::tempdir().expect("dir");
    let ca = TestCa::new("upstream CA");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let backend = addr_of(&upstream.url);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;

    let expired = ca.leaf_valid(&["localhost"], now - 30 * 86_400, now - 86_400);
    let front = TlsFront::start(server_config(&expired, None), backend).await;
    let gw = gateway_to(&front.url("localhost"), TlsSettings::new().with_ca_file(&ca_file).expect("CA")).await;
    let (status, msg) = initialize(&gw).await;
    assert_eq!(status, 502, "{msg}");
    assert_names_the_upstream(&msg, &front, "certificate expired");
    gw.shutdown().await;

    // a certificate for another name: refused; accepted once that name is the configured server name
    let elsewhere = ca.leaf(&["mcp.other.test"]);
    let front = TlsFront::start(server_config(&elsewhere, None), backend).await;
    let gw = gateway_to(&front.url("localhost"), TlsSettings::new().with_ca_file(&ca_file).expect("CA")).await;
    let (status, msg) = initialize(&gw).await;
    assert_eq!(status, 502, "{msg}");
    assert_names_the_upstream(&msg, &front, "not valid for name");
    gw.shutdown().await;
    let tls = TlsSettings::new().with_ca_file(&ca_file).expect("CA").with_server_name("mcp.other.test").expect("name");
    let gw = gateway_to(&front.url("localhost"), tls).await;
    let (status, msg) = initialize(&gw).await;
    assert_eq!(status, 200, "the server-name override is checked instead of the URL's host: {msg}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_demanding_a_client_certificate_works_with_one_and_fails_without() {
    let upstream = common::demo_upstream().await;
    let dir = tempfile::tempdir().expect("dir");
    let ca = TestCa::new("upstream CA");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let clients = TestCa::new("client CA");
    let front = TlsFront::start(server_config(&ca.leaf(&["localhost"]), Some(&clients)), addr_of(&upstream.url)).await;

    let (cert, key) = clients.leaf(&["gateway.test"]).write(dir.path(), "gateway");
    let identity = ClientIdentity::load(&cert, &key).expect("client identity");
    let tls = TlsSettings::new().with_ca_file(&ca_file).expect("CA").with_client_identity(identity);
    let gw = gateway_to(&front.url("localhost"), tls).await;
    let (status, msg) = initialize(&gw).await;
    assert_eq!(status, 200, "{msg}");
    gw.shutdown().await;

    // no certificate
    let gw = gateway_to(&front.url("localhost"), TlsSettings::new().with_ca_file(&ca_file).expect("CA")).await;
    let (status, msg) = initialize(&gw).await;
    assert_eq!(status, 502, "{msg}");
    assert_names_the_upstream(&msg, &front, "CertificateRequired");
    gw.shutdown().await;

    // a certificate of a CA the upstream does not trust
    let (cert, key) = TestCa::new("rogue CA").leaf(&["gateway.test"]).write(dir.path(), "rogue");
    let identity = ClientIdentity::load(&cert, &key).expect("client identity");
    let tls = TlsSettings::new().with_ca_file(&ca_file).expect("CA").with_client_identity(identity);
    let gw = gateway_to(&front.url("localhost"), tls).await;
    let (status, msg) = initialize(&gw).await;
    assert_eq!(status, 502, "{msg}");
    assert_names_the_upstream(&msg, &front, "alert");
    gw.shutdown().await;

    // a key that is not the certificate's is refused when loading
    let (cert, _) = clients.leaf(&["a.test"]).write(dir.path(), "a");
    let (_, other_key) = clients.leaf(&["b.test"]).write(dir.path(), "b");
    let e = ClientIdentity::load(&cert, &other_key).expect_err("mismatched key");
    assert!(e.to_string().contains("is not the private key"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_never_completes_the_handshake_is_a_502_not_a_hang() {
    // accepts TCP connections and says nothing
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let gw = gateway_to(&format!("https://localhost:{}/mcp", addr.port()), TlsSettings::new()).await;
    let (status, _, msg) =
        tokio::time::timeout(Duration::from_secs(30), call(legacy_initialize(&gw.mcp_url(), json!({}))))
            .await
            .expect("answered within the connect timeout");
    assert_eq!(status, 502, "{msg}");
    let message = msg["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("localhost:{}", addr.port())) && message.contains("unreachable"), "{message}");
    gw.shutdown().await;
    silent.abort();
}

#[test]
fn config_check_reports_unusable_tls_files_at_their_key() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = TestCa::new("CA");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let (cert, _) = ca.leaf(&["a.test"]).write(dir.path(), "a");
    let (_, other_key) = ca.leaf(&["b.test"]).write(dir.path(), "b");
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello\n").expect("write");
    let check = |tls: &str| -> Vec<String> {
        let config = dir.path().join("gateway.toml");
        let text = format!(
            "version = 1\nresource = \"http://127.0.0.1:8787/mcp\"\n\n[upstream]\nurl = \"https://mcp.vendor.test/mcp\"\n\n[upstream.tls]\n{tls}\n"
        );
        std::fs::write(&config, text).expect("write config");
        match mcp_enterprise_config::Loader::new().file(&config).load() {
            Ok(_) => Vec::new(),
            Err(e) => e.diagnostics().iter().map(|d| d.to_string()).collect(),
        }
    };
    let q = |p: &std::path::Path| format!("{:?}", p.display().to_string());
    assert_eq!(check(&format!("ca_file = {}", q(&ca_file))), Vec::<String>::new());
    let problems = check(&format!("ca_file = {}", q(&not_pem)));
    assert!(
        problems.len() == 1
            && problems[0].contains("gateway.toml:8")
            && problems[0].contains("upstream.tls.ca_file")
            && problems[0].contains("no PEM certificate"),
        "{problems:?}"
    );
    let problems = check(&format!("ca_file = {}", q(&dir.path().join("missing.pem"))));
    assert!(problems.len() == 1 && problems[0].contains("upstream.tls.ca_file"), "{problems:?}");
    let problems = check(&format!("client_certificate_file = {}\nclient_key_file = {}", q(&cert), q(&other_key)));
    assert!(
        problems.len() == 1
            && problems[0].contains("gateway.toml:9")
            && problems[0].contains("upstream.tls.client_key_file")
            && problems[0].contains("another certificate"),
        "{problems:?}"
    );
    let problems = check(&format!("client_certificate_file = {}", q(&cert)));
    assert!(problems.len() == 1 && problems[0].contains("client_key_file"), "{problems:?}");
}

/// The h2-only MCP server of `tests/peers/h2-mcp-server.mjs` and its port; its stdout (one
/// `request <httpVersion>` line per request) in `out`.
fn h2_only_server(
    peers: &mcp_enterprise_tests::peers::Peers,
    cert: &std::path::Path,
    key: &std::path::Path,
    out: &std::path::Path,
) -> (mcp_enterprise_tests::process::ChildGuard, u16) {
    let child = peers
        .node_command()
        .arg("h2-mcp-server.mjs")
        .arg(cert)
        .arg(key)
        .stdout(std::fs::File::create(out).expect("stdout file"))
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("node");
    let guard = mcp_enterprise_tests::process::ChildGuard::new("h2-mcp-server", child);
    for _ in 0..200 {
        let text = std::fs::read_to_string(out).unwrap_or_default();
        if let Some(line) = text.lines().next()
            && let Ok(v) = serde_json::from_str::<Value>(line)
        {
            return (guard, v["port"].as_u64().expect("port") as u16);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the h2 server did not start: {}", std::fs::read_to_string(out).unwrap_or_default());
}

/// `tools/call` of `name` through the gateway, in the protocol version `initialize` agreed.
async fn call_tool(gateway: &RunningGateway, version: &str, name: &str) -> (http::StatusCode, Value) {
    let mut req = common::post(
        &gateway.mcp_url(),
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": name, "arguments": {}}}),
    );
    req.headers_mut().insert("mcp-protocol-version", version.parse().expect("header"));
    let (status, _, msg) = tokio::time::timeout(Duration::from_secs(20), call(req)).await.expect("answered in time");
    (status, msg)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_h2_only_upstream_is_reached_over_http2_and_an_http1_only_one_over_http1() {
    let peers = mcp_enterprise_tests::peers::Peers::require();
    let dir = tempfile::tempdir().expect("dir");
    let ca = TestCa::new("upstream CA");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let (cert, key) = ca.leaf(&["localhost"]).write(dir.path(), "h2");
    let out = dir.path().join("h2.out");
    let (server, port) = h2_only_server(&peers, &cert, &key, &out);

    // the gateway offers h2 and http/1.1; the server accepts only h2
    let url = format!("https://localhost:{port}/mcp");
    let gw = gateway_to(&url, TlsSettings::new().with_ca_file(&ca_file).expect("CA")).await;
    let (status, msg) = initialize(&gw).await;
    assert_eq!(status, 200, "{msg}");
    assert_eq!(msg["result"]["serverInfo"]["name"], "h2-only", "{msg}");
    let version = msg["result"]["protocolVersion"].as_str().expect("version").to_owned();
    let (status, msg) = call_tool(&gw, &version, "protocol").await;
    assert_eq!(status, 200, "{msg}");
    assert_eq!(msg["result"]["content"][0]["text"], "2.0", "the request arrived over HTTP/2: {msg}");
    gw.shutdown().await;
    let log = std::fs::read_to_string(&out).expect("log");
    assert_eq!(log.matches("request 2.0").count(), 2, "{log}");
    assert!(!log.contains("request 1."), "{log}");
    drop(server);

    // an HTTP/1.1-only upstream (the TLS front offers `http/1.1` alone) with the same settings
    let upstream = common::demo_upstream().await;
    let front = TlsFront::start(server_config(&ca.leaf(&["localhost"]), None), addr_of(&upstream.url)).await;
    let gw = gateway_to(&front.url("localhost"), TlsSettings::new().with_ca_file(&ca_file).expect("CA")).await;
    let (status, msg) = initialize(&gw).await;
    assert_eq!(status, 200, "{msg}");
    assert!(msg["result"]["serverInfo"].is_object(), "{msg}");
    gw.shutdown().await;
}
