//! Library use of the core layers: a plain `rmcp` MCP server, served by axum, wrapped in
//! [`InspectLayer`] and [`NegotiateLayer`] — no gateway, no proxy.
//!
//! Run it:
//!
//! ```text
//! cargo run -p example-axum-core-layers -- 127.0.0.1:8090
//! ```
//!
//! then call `http://127.0.0.1:8090/mcp` (the example prints curl commands). Every request is
//! parsed once by `InspectLayer`; the small `log_mcp` middleware below reads the resulting
//! [`McpRequest`] from the request extensions (`McpRequest::of`) instead of parsing the body again, and
//! `server/discover` / `initialize` results advertise the `io.github.mcp-enterprise/example`
//! extension next to what the rmcp server declares.

use std::net::SocketAddr;

use anyhow::Context as _;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use mcp_enterprise_core::{ExtensionSet, InspectLayer, McpRequest, NegotiateLayer, NegotiatedExtensions};
use tower::ServiceBuilder;

/// Logs what the inspection layer found; runs inside it, so the body is not read again.
async fn log_mcp(req: Request, next: Next) -> Response {
    if let Some(mcp) = McpRequest::of(req.extensions()) {
        let negotiated: Vec<String> = NegotiatedExtensions::of(req.extensions())
            .map(|n| n.ids().map(str::to_owned).collect())
            .unwrap_or_default();
        tracing::info!(
            method = mcp.method().unwrap_or("-"),
            target = mcp.target().unwrap_or("-"),
            era = ?mcp.era(),
            client = mcp.client().and_then(|c| c.client_info()).and_then(|i| i.name()).unwrap_or("-"),
            ?negotiated,
            "mcp request"
        );
    }
    next.run(req).await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info,rmcp=warn").init();
    let addr: SocketAddr =
        std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8090".into()).parse().context("listen address")?;

    let extensions = ExtensionSet::builder().with_own("example", serde_json::json!({"version": 1}))?.build();
    // The rmcp server, with our middleware inside the core layers.
    let mcp = axum::Router::new()
        .route_service("/mcp", mcp_enterprise_demo_server::mcp_service())
        .layer(middleware::from_fn(log_mcp));
    let app = axum::Router::new().fallback_service(
        ServiceBuilder::new().layer(InspectLayer::new()).layer(NegotiateLayer::new(extensions)).service(mcp),
    );

    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    let url = format!("http://{}/mcp", listener.local_addr()?);
    println!("rmcp server with mcp-enterprise core layers at {url}");
    println!(
        "  curl -s {url} -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \\\n    \
         -H 'mcp-protocol-version: 2026-07-28' -H 'mcp-method: server/discover' \\\n    \
         -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"server/discover\",\"params\":{{\"_meta\":{{\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\",\"io.modelcontextprotocol/clientCapabilities\":{{\"extensions\":{{\"io.github.mcp-enterprise/example\":{{}}}}}}}}}}}}'"
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
