//! The two OTLP exporters of the gateway process — traces (`traces.*`) and the audit trail's OTLP
//! sink (`audit.otlp_*`) — to a collector over HTTPS with a private CA made by the test, and
//! through the `egress` proxy (Debian's `tinyproxy`). The collector is the OTLP receiver peer
//! (official protobuf definitions) behind a TLS terminator. A wrong CA delivers nothing, is
//! reported in the log and does not hold the gateway's stop; `no_proxy` is honoured.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use http::StatusCode;
use mcp_enterprise_tests::gateway_process::GatewayProcess;
use mcp_enterprise_tests::oidc::DEFAULT_JWT_RESOURCE;
use serde_json::{Value, json};

use crate::common::tls::{TestCa, TlsFront, addr_of, server_config};
use crate::common::{self};
use crate::egress::Tinyproxy;
use crate::traces::{lines, otlp_receiver, recording_upstream, tool_call};

/// Serves one call with traces and the audit OTLP sink exporting to `collector` (trusting
/// `ca_file`, going out through `egress` when given), stops the gateway (pending exports are
/// sent then) and returns its log.
async fn one_exported_call(dir: &Path, tag: &str, collector: &str, ca_file: &Path, egress: Option<Value>) -> String {
    let (upstream, _) = recording_upstream().await;
    let mut config = json!({
        "version": 1,
        "resource": DEFAULT_JWT_RESOURCE,
        "upstream": {"url": upstream},
        "listen": {"address": "127.0.0.1:0", "allowed_hosts": ["mcp.test"]},
        "audit": {
            "directory": dir.join(format!("trail-{tag}")),
            "otlp_endpoint": format!("{collector}/v1/logs"),
            "otlp_ca_file": ca_file,
            "otlp_service_name": format!("audit-{tag}"),
        },
        "traces": {"endpoint": format!("{collector}/v1/traces"), "ca_file": ca_file, "service_name": tag, "timeout_secs": 5},
    });
    if let Some(egress) = egress {
        config["egress"] = egress;
    }
    let file = dir.join(format!("gateway-{tag}.json"));
    std::fs::write(&file, config.to_string()).unwrap();
    let gw =
        GatewayProcess::start_args(dir, &["serve", "--config", file.to_str().unwrap()], "info").await.expect("gateway");
    let (status, _, body) = common::call(tool_call(gw.mcp_url(), 1, None, None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    gw.signal("TERM").unwrap();
    let mut gw = gw;
    // not held by a collector it cannot reach
    let exit = gw.wait_exit(Duration::from_secs(30)).await.expect("the gateway stops in time");
    assert!(exit.success(), "{}", gw.stderr());
    gw.stderr()
}

/// What the receiver decoded for the gateway tagged `tag`: its server spans and audit log records.
fn delivered(out: &Path, tag: &str) -> (usize, usize) {
    let spans = lines(&out.with_extension("spans"))
        .into_iter()
        .filter(|s| s["resource"]["service.name"] == tag && s["kind"] == 2)
        .count();
    let records = lines(out).into_iter().filter(|r| r["service"] == format!("audit-{tag}")).count();
    (spans, records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_otlp_exporters_trust_the_configured_ca_and_report_a_wrong_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("otlp");
    let (_receiver, plain) = otlp_receiver(&out);
    let ca = TestCa::new("collector CA");
    let ca_file = ca.write(dir.path(), "collector-ca.pem");
    let other_ca = TestCa::new("another CA").write(dir.path(), "other-ca.pem");
    let front = TlsFront::start(server_config(&ca.leaf(&["127.0.0.1"]), None), addr_of(&plain)).await;
    let collector = format!("https://127.0.0.1:{}", front.addr.port());

    let log = one_exported_call(dir.path(), "right-ca", &collector, &ca_file, None).await;
    let (spans, records) = delivered(&out, "right-ca");
    assert_eq!(spans, 1, "the server span arrived over HTTPS\n{log}");
    assert!(records >= 1, "the audit record arrived over HTTPS\n{log}");
    assert!(!log.contains("export"), "no export failed: {log}");
    assert!(!out.with_extension("errors").exists());

    // another CA: nothing delivered, both failures in the log (naming the certificate problem)
    let log = one_exported_call(dir.path(), "wrong-ca", &collector, &other_ca, None).await;
    assert_eq!(delivered(&out, "wrong-ca"), (0, 0), "{log}");
    assert!(log.contains("traces: an export to the collector failed"), "the traces exporter reports it: {log}");
    assert!(log.contains("OTLP export failed"), "the audit sink reports it: {log}");
    assert!(log.contains("UnknownIssuer") || log.contains("certificate"), "says why: {log}");

    // `config check` names an unusable CA file at its key
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        json!({"version": 1, "resource": DEFAULT_JWT_RESOURCE, "upstream": {"url": "http://127.0.0.1:9/mcp"},
            "audit": {"directory": dir.path().join("t"), "otlp_endpoint": format!("{collector}/v1/logs"),
                "otlp_ca_file": dir.path().join("missing.pem")},
            "traces": {"endpoint": format!("{collector}/v1/traces"), "ca_file": dir.path().join("gateway.json")}})
        .to_string(),
    )
    .unwrap();
    let check = std::process::Command::new(mcp_enterprise_tests::gateway_process::binary().unwrap())
        .args(["config", "check", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout).into_owned() + &String::from_utf8_lossy(&check.stderr);
    assert!(!check.status.success(), "{said}");
    assert!(said.contains("audit.otlp_ca_file") && said.contains("missing.pem"), "{said}");
    assert!(said.contains("traces.ca_file"), "{said}");
    assert!(said.contains("bad.json:1:"), "at file:line: {said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_otlp_exporters_go_through_the_egress_proxy_and_honour_no_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("otlp");
    let (_receiver, plain) = otlp_receiver(&out);
    let ca = TestCa::new("collector CA");
    let ca_file = ca.write(dir.path(), "collector-ca.pem");
    // the collector on 127.0.0.2 answers only the proxy's outgoing address
    let front = TlsFront::start_on(
        IpAddr::from([127, 0, 0, 2]),
        Some(IpAddr::from([127, 0, 0, 3])),
        server_config(&ca.leaf(&["127.0.0.2"]), None),
        addr_of(&plain),
    )
    .await;
    let collector = format!("https://127.0.0.2:{}", front.addr.port());
    let proxy = Tinyproxy::start(dir.path(), "gateway", "pr0xy-secret");
    proxy.ready().await;

    // the upstream (127.0.0.1) directly, the collector through the proxy
    let egress = json!({"proxy": proxy.url(), "proxy_credentials": "gateway:pr0xy-secret", "no_proxy": "127.0.0.1"});
    let log = one_exported_call(dir.path(), "proxied", &collector, &ca_file, Some(egress)).await;
    let (spans, records) = delivered(&out, "proxied");
    assert_eq!(spans, 1, "the server span arrived through the proxy\n{log}\nproxy:\n{}", proxy.log());
    assert!(records >= 1, "the audit record arrived through the proxy\n{log}");
    let proxy_log = proxy.log();
    assert!(proxy_log.contains(&format!("CONNECT 127.0.0.2:{}", front.addr.port())), "tunnelled: {proxy_log}");
    assert!(!proxy_log.contains("pr0xy-secret"));
    assert_eq!(front.refused.load(std::sync::atomic::Ordering::SeqCst), 0, "no direct connection");

    // the collector in `no_proxy`: direct, refused by the collector, reported
    let egress = json!({"proxy": proxy.url(), "proxy_credentials": "gateway:pr0xy-secret",
        "no_proxy": "127.0.0.1,127.0.0.2"});
    let log = one_exported_call(dir.path(), "direct", &collector, &ca_file, Some(egress)).await;
    assert_eq!(delivered(&out, "direct"), (0, 0), "{log}");
    assert!(front.refused.load(std::sync::atomic::Ordering::SeqCst) >= 2, "both exporters went direct");
    assert!(log.contains("traces: an export to the collector failed"), "{log}");
    assert!(log.contains("OTLP export failed"), "{log}");
}
