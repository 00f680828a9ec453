//! The embedded demo: the rmcp demo MCP server on a loopback port, fronted by the gateway, and the
//! text that tells a newcomer how to call it.

use std::io;

use mcp_enterprise_core::ExtensionSet;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The demo MCP server (built with the official `rmcp` SDK) running on `127.0.0.1` on a free port.
#[derive(Debug)]
pub struct DemoUpstream {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl DemoUpstream {
    /// Starts the demo server.
    pub async fn start() -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/mcp", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(mcp_enterprise_demo_server::serve(listener, async move {
            let _ = stopped.await;
        }));
        Ok(Self { url, stop: Some(stop), task })
    }

    /// Its MCP endpoint.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops it and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for DemoUpstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The extensions the gateway advertises until the extension layers are configured: the
/// `{vendor}/gateway` marker (settings `{}`), telling clients an mcp-enterprise gateway fronts
/// this server.
pub fn default_extensions() -> ExtensionSet {
    ExtensionSet::builder()
        .with_own("gateway", serde_json::Value::Object(serde_json::Map::new()))
        .map(mcp_enterprise_core::ExtensionSetBuilder::build)
        .unwrap_or_default()
}

/// What `mcp-enterprise serve` prints: the endpoint and curl commands for both eras, including one
/// the gateway refuses.
pub fn banner(url: &str, upstream: &str, demo: bool) -> String {
    let what = if demo { "embedded demo MCP server (rmcp)" } else { "upstream MCP server" };
    format!(
        r#"mcp-enterprise gateway is listening.

  MCP endpoint : {url}
  forwards to  : {upstream}  ({what})
  layers       : host/origin check -> inspect (JSON-RPC + SEP-2243 header checks) -> negotiate (SEP-2133) -> proxy

Call it (modern 2026-07-28 era):
  curl -s {url} -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
    -H 'mcp-protocol-version: 2026-07-28' -H 'mcp-method: server/discover' \
    -d '{{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{{"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}'

  curl -s {url} -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
    -H 'mcp-protocol-version: 2026-07-28' -H 'mcp-method: tools/call' -H 'mcp-name: echo' \
    -d '{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"hello"}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}'

A header that disagrees with the body is refused (400, JSON-RPC -32020):
  curl -si {url} -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
    -H 'mcp-protocol-version: 2026-07-28' -H 'mcp-method: tools/call' -H 'mcp-name: delete_customer' \
    -d '{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"x"}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}'

Legacy (2025-11-25) clients: POST initialize, then reuse the Mcp-Session-Id it returns:
  curl -si {url} -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
    -d '{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{}},"clientInfo":{{"name":"curl","version":"1"}}}}}}'

Press Ctrl-C to stop."#
    )
}
