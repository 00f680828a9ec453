//! The client address in the audit record (`src_endpoint`, OCSF `src_endpoint.ip`): the TCP
//! peer by default, whatever `X-Forwarded-For`/`Forwarded` claim; the forwarded address only when
//! the peer is a configured trusted proxy.

use std::net::SocketAddr;
use std::time::Duration;

use mcp_enterprise_audit::{AuditLayer, CheckpointSigner, FsyncPolicy};
use mcp_enterprise_gateway::Gateway;
use mcp_enterprise_gateway::forwarded::TrustedProxies;
use serde_json::{Value, json};

use crate::common::{self, call, modern};

/// One audited `tools/list` through a gateway trusting `trusted`, with these extra headers: the
/// call's record.
async fn record_of(trusted: &[&str], headers: &[(&str, &str)]) -> Value {
    let upstream = common::demo_upstream().await;
    let dir = tempfile::tempdir().expect("dir");
    let (audit, trail) = AuditLayer::builder()
        .directory(dir.path())
        .signing_key(CheckpointSigner::generate().expect("signer"))
        .fsync(FsyncPolicy::Interval(Duration::from_millis(10)))
        .build()
        .expect("audit");
    let gw = Gateway::builder()
        .upstream(&upstream.url)
        .expect("upstream")
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .trusted_proxies(TrustedProxies::parse(trusted).expect("networks"))
        .audit(audit)
        .build()
        .expect("gateway")
        .spawn()
        .await
        .expect("spawn");
    let mut req = modern(&gw.mcp_url(), 1, "tools/list", json!({}), json!({}));
    for (k, v) in headers {
        req.headers_mut().insert(http::HeaderName::from_bytes(k.as_bytes()).expect("name"), v.parse().expect("value"));
    }
    assert_eq!(call(req).await.0, 200);
    gw.shutdown().await;
    tokio::task::spawn_blocking(move || trail.shutdown()).await.expect("join");
    let records = common::call_records(dir.path());
    assert_eq!(records.len(), 1, "{records:?}");
    records.into_iter().next().expect("record")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_address_is_the_peer_unless_a_trusted_proxy_forwards_it() {
    // default: nobody trusted, the header is ignored
    let r = record_of(&[], &[("x-forwarded-for", "203.0.113.9")]).await;
    assert_eq!(r["src_endpoint"], json!({"ip": "127.0.0.1"}), "{r}");

    // the loopback peer is a trusted proxy: its report is believed, the proxy kept too
    let r = record_of(&["127.0.0.0/8"], &[("x-forwarded-for", "1.2.3.4, 203.0.113.9")]).await;
    assert_eq!(r["src_endpoint"], json!({"ip": "203.0.113.9", "proxy_ip": "127.0.0.1"}), "{r}");
    let r = record_of(&["127.0.0.1"], &[("forwarded", "for=\"[2001:db8::7]:443\";proto=https")]).await;
    assert_eq!(r["src_endpoint"]["ip"], "2001:db8::7", "{r}");

    // and the OCSF export carries it as src_endpoint
    let ocsf = mcp_enterprise_audit::export::ocsf(&r).expect("an OCSF event");
    assert_eq!(ocsf["src_endpoint"]["ip"], "2001:db8::7");
    assert_eq!(ocsf["src_endpoint"]["intermediate_ips"], json!(["127.0.0.1"]));
}
