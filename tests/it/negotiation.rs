//! SEP-2133 negotiation through the gateway against the rmcp demo server: our extensions are
//! advertised in `initialize` and `server/discover`, as JSON and as SSE, merged with what the
//! upstream declares, and required extensions are enforced for modern clients.

use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
use serde_json::{Value, json};

use crate::common::{self, call, demo_upstream, demo_upstream_with, gateway, legacy_initialize, modern};

const AUDIT: &str = "io.github.mcp-enterprise/audit";
const DPOP: &str = "io.github.mcp-enterprise/dpop";

fn assert_advertised(msg: &Value) {
    let caps = &msg["result"]["capabilities"];
    assert_eq!(caps["extensions"][AUDIT], json!({"chain": "sha-256"}), "{msg}");
    assert_eq!(caps["extensions"][DPOP], json!({}), "{msg}");
    // what the upstream declared is kept
    assert!(caps["tools"].is_object(), "{msg}");
}

#[tokio::test]
async fn advertised_in_sse_initialize_and_discover() {
    let upstream = demo_upstream().await;
    let gw = gateway(&upstream.url, common::extensions()).await;
    let (status, headers, msg) = call(legacy_initialize(&gw.mcp_url(), json!({}))).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream", "the demo answers initialize over SSE");
    assert!(headers.get("content-length").is_none());
    assert_advertised(&msg);
    assert_eq!(msg["result"]["serverInfo"]["name"], "mcp-enterprise-demo");

    let (status, headers, msg) = call(modern(&gw.mcp_url(), 5, "server/discover", json!({}), json!({}))).await;
    assert_eq!(status, 200);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    assert_advertised(&msg);
    assert_eq!(msg["id"], 5);
    assert!(msg["result"]["supportedVersions"].as_array().unwrap().contains(&json!(common::MODERN)));
    gw.shutdown().await;
}

#[tokio::test]
async fn advertised_in_json_initialize_and_discover() {
    let config = StreamableHttpServerConfig::default().with_json_response(true).with_legacy_session_mode(false);
    let upstream = demo_upstream_with(config).await;
    let gw = gateway(&upstream.url, common::extensions()).await;
    let (status, headers, msg) = call(modern(&gw.mcp_url(), 9, "server/discover", json!({}), json!({}))).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    assert_advertised(&msg);
    // the rewritten body's length is the real one
    if let Some(len) = headers.get("content-length") {
        assert_eq!(len.to_str().unwrap().parse::<usize>().unwrap(), msg.to_string().len());
    }
    let (status, headers, msg) = call(legacy_initialize(&gw.mcp_url(), json!({}))).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    assert_advertised(&msg);
    gw.shutdown().await;
}

#[tokio::test]
async fn merged_with_extensions_the_upstream_declares() {
    let obj = |v: Value| v.as_object().unwrap().clone();
    let server = mcp_enterprise_demo_server::DemoServer::new()
        .with_extension("io.modelcontextprotocol/ui", obj(json!({"mimeTypes": ["text/html;profile=mcp-app"]})))
        .with_extension(AUDIT, obj(json!({"chain": "none", "upstreamOnly": true})));
    for json_response in [false, true] {
        let config = StreamableHttpServerConfig::default()
            .with_json_response(json_response)
            .with_legacy_session_mode(!json_response);
        let upstream = common::demo_upstream_serving(server.clone(), config).await;
        let gw = gateway(&upstream.url, common::extensions()).await;
        for req in [
            legacy_initialize(&gw.mcp_url(), json!({})),
            modern(&gw.mcp_url(), 2, "server/discover", json!({}), json!({})),
        ] {
            let (status, _, msg) = call(req).await;
            assert_eq!(status, 200, "{msg}");
            let ext = &msg["result"]["capabilities"]["extensions"];
            // the upstream's own extension is kept as declared
            assert_eq!(ext["io.modelcontextprotocol/ui"], json!({"mimeTypes": ["text/html;profile=mcp-app"]}), "{msg}");
            // ours are added; on a shared id our settings win, the upstream's other settings stay
            assert_eq!(ext[AUDIT], json!({"chain": "sha-256", "upstreamOnly": true}), "{msg}");
            assert_eq!(ext[DPOP], json!({}), "{msg}");
        }
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn sse_events_before_the_response_are_not_delayed() {
    use std::time::Duration;

    use bytes::Bytes;

    let (upstream, _, mut streams) = common::recording_upstream().await;
    let gw = gateway(&upstream, common::extensions()).await;
    let res = common::send(modern(&gw.mcp_url(), 11, "server/discover", json!({}), json!({}))).await;
    let stream = streams.recv().await.unwrap();
    let mut reader = common::SseReader::new(res);
    // a progress event and a keep-alive comment come first; the response is still pending
    let progress = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n";
    stream.tx.send(Bytes::from(format!(": keep-alive\n\n{progress}"))).await.unwrap();
    let (_, first) = tokio::time::timeout(Duration::from_secs(5), reader.next())
        .await
        .expect("the progress event must arrive while the response is still pending")
        .unwrap();
    assert_eq!(first["method"], "notifications/progress");
    // the response arrives split inside its data line
    let response = "data: {\"jsonrpc\":\"2.0\",\"id\":11,\"result\":{\"capabilities\":{\"tools\":{}}}}\n\n";
    let (a, b) = response.split_at(30);
    stream.tx.send(Bytes::from(a.to_owned())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    stream.tx.send(Bytes::from(b.to_owned())).await.unwrap();
    let (_, msg) = tokio::time::timeout(Duration::from_secs(5), reader.next()).await.unwrap().unwrap();
    assert_advertised(&msg);
    // later events still flow
    stream.tx.send(Bytes::from(progress)).await.unwrap();
    let (_, later) = tokio::time::timeout(Duration::from_secs(5), reader.next()).await.unwrap().unwrap();
    assert_eq!(later["method"], "notifications/progress");
    drop(stream);
    gw.shutdown().await;
}

#[tokio::test]
async fn other_responses_are_not_touched() {
    let upstream = demo_upstream().await;
    let gw = gateway(&upstream.url, common::extensions()).await;
    let (_, _, msg) = call(modern(&gw.mcp_url(), 1, "tools/list", json!({}), json!({}))).await;
    assert!(msg["result"].get("capabilities").is_none(), "{msg}");
    gw.shutdown().await;
}

#[tokio::test]
async fn required_extension_is_enforced_for_modern_clients() {
    let upstream = demo_upstream().await;
    let set = mcp_enterprise_core::ExtensionSet::builder()
        .with_own("dpop", json!({}))
        .and_then(|b| b.require(DPOP))
        .unwrap()
        .build();
    let gw = gateway(&upstream.url, set).await;
    let url = gw.mcp_url();

    let (status, _, msg) = call(modern(&url, 3, "tools/list", json!({}), json!({}))).await;
    assert_eq!(status, 400);
    assert_eq!(msg["error"]["code"], -32021, "{msg}");
    assert_eq!(msg["id"], 3);
    assert_eq!(msg["error"]["data"]["requiredCapabilities"]["extensions"], json!({ DPOP: {} }), "{msg}");

    // declaring it lets the request through
    let (status, _, msg) = call(modern(&url, 4, "tools/list", json!({}), json!({ DPOP: {} }))).await;
    assert_eq!(status, 200, "{msg}");
    // other declared extensions do not count
    let (status, _, _) = call(modern(&url, 5, "tools/list", json!({}), json!({"com.other/x": {}}))).await;
    assert_eq!(status, 400);
    // discovery stays open so clients can learn what is required
    let (status, _, msg) = call(modern(&url, 6, "server/discover", json!({}), json!({}))).await;
    assert_eq!(status, 200);
    assert_eq!(msg["result"]["capabilities"]["extensions"][DPOP], json!({}));
    gw.shutdown().await;
}
