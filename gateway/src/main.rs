//! `mcp-enterprise`: the gateway binary.
//!
//! `mcp-enterprise serve` with no arguments runs the embedded demo: a real MCP server (built with
//! the official `rmcp` SDK) behind the whole pack, on 127.0.0.1, and prints how to call it.
//! `mcp-enterprise serve --upstream http://127.0.0.1:8081/mcp` fronts your own server.

use std::net::SocketAddr;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use mcp_enterprise_core::ExtensionSet;
use mcp_enterprise_gateway::{DEFAULT_LISTEN, Gateway};
use tracing_subscriber::EnvFilter;

/// The mcp-enterprise gateway: enterprise extensions in front of any MCP server.
#[derive(Debug, Parser)]
#[command(name = "mcp-enterprise", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the gateway (with no --upstream: the embedded demo MCP server).
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Upstream MCP endpoint (Streamable HTTP), e.g. http://127.0.0.1:8081/mcp. Without it the
    /// embedded demo server is started.
    #[arg(long)]
    upstream: Option<String>,
    /// Also accept this name in the Host header (repeatable). Needed when clients reach the
    /// gateway under a DNS name; any other Host is refused (DNS rebinding defence).
    #[arg(long = "allowed-host", value_name = "NAME")]
    allowed_hosts: Vec<String>,
    /// Allow browser requests from this origin, e.g. https://app.example.com (repeatable).
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    allowed_origins: Vec<String>,
    /// Allow listening on a non-loopback address. Until authentication is configured this
    /// exposes the upstream server to the network unauthenticated.
    #[arg(long)]
    insecure_listen_any: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rmcp=warn")))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        None => ServeArgs {
            listen: DEFAULT_LISTEN.parse().context("default listen address")?,
            upstream: None,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            insecure_listen_any: false,
        },
    };
    serve(args).await
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if !args.listen.ip().is_loopback() && !args.insecure_listen_any {
        bail!(
            "refusing to listen on non-loopback address {}: no authentication is configured yet, so this would \
             expose the upstream MCP server to the network (pass --insecure-listen-any to do it anyway)",
            args.listen
        );
    }
    let shutdown = tokio::sync::watch::channel(false);
    let (upstream, demo) = match &args.upstream {
        Some(url) => (url.clone(), None),
        None => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the demo server")?;
            let addr = listener.local_addr()?;
            let mut stop = shutdown.1.clone();
            let task = tokio::spawn(mcp_enterprise_demo_server::serve(listener, async move {
                let _ = stop.changed().await;
            }));
            (format!("http://{addr}/mcp"), Some(task))
        }
    };
    let extensions = ExtensionSet::builder().with_own("gateway", serde_json::json!({}))?.build();
    let gateway = Gateway::builder()
        .upstream(&upstream)?
        .listen(args.listen)
        .extensions(extensions)
        .allowed_hosts(args.allowed_hosts)
        .allowed_origins(args.allowed_origins)
        .build()?
        .spawn()
        .await
        .with_context(|| format!("cannot listen on {} (is it in use? try --listen 127.0.0.1:0)", args.listen))?;
    print_banner(&gateway.mcp_url(), &upstream, demo.is_some());
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    eprintln!("shutting down");
    let _ = shutdown.0.send(true);
    gateway.shutdown().await;
    if let Some(task) = demo {
        let _ = task.await;
    }
    Ok(())
}

fn print_banner(url: &str, upstream: &str, demo: bool) {
    let what = if demo { "embedded demo MCP server (rmcp)" } else { "upstream MCP server" };
    println!(
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
    );
}
