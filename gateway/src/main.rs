//! `mcp-enterprise`: the gateway binary.
//!
//! `mcp-enterprise serve` with no arguments runs the embedded demo: a real MCP server (built with
//! the official `rmcp` SDK) behind the whole pack, on 127.0.0.1, and prints how to call it.
//! `mcp-enterprise serve --upstream http://127.0.0.1:8081/mcp` fronts your own server.

use std::net::SocketAddr;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use mcp_enterprise_gateway::demo::{Demo, default_extensions};
use mcp_enterprise_gateway::{
    DEFAULT_LISTEN, Gateway, load_dpop_config, load_sso_config, load_workload_identity_config,
};
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
    /// Require OAuth bearer tokens as described by this SSO configuration file (JSON).
    #[arg(long, value_name = "FILE")]
    sso_config: Option<std::path::PathBuf>,
    /// Require DPoP-bound tokens as described by this DPoP configuration file (JSON); with
    /// --sso-config the SSO issuers judge the tokens.
    #[arg(long, value_name = "FILE")]
    dpop_config: Option<std::path::PathBuf>,
    /// Accept workload identity (Kubernetes service-account tokens, SPIFFE JWT-SVIDs) as described
    /// by this configuration file (JSON): direct mode and/or a SEP-1933 token endpoint served by
    /// the gateway.
    #[arg(long, value_name = "FILE")]
    workload_identity_config: Option<std::path::PathBuf>,
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
            sso_config: None,
            dpop_config: None,
            workload_identity_config: None,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            insecure_listen_any: false,
        },
    };
    serve(args).await
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let Some(upstream) = args.upstream.clone() else {
        return serve_demo(&args).await;
    };
    if !args.listen.ip().is_loopback()
        && !args.insecure_listen_any
        && args.sso_config.is_none()
        && args.dpop_config.is_none()
        && args.workload_identity_config.is_none()
    {
        bail!(
            "refusing to listen on non-loopback address {} without authentication: pass --sso-config, or \
             --insecure-listen-any to expose the upstream MCP server unauthenticated",
            args.listen
        );
    }
    let mut builder = Gateway::builder()
        .upstream(&upstream)?
        .listen(args.listen)
        .extensions(default_extensions())
        .allowed_hosts(args.allowed_hosts.clone())
        .allowed_origins(args.allowed_origins.clone());
    let sso = args.sso_config.as_deref().map(load_sso_config).transpose()?;
    if let Some(path) = &args.dpop_config {
        builder = builder.dpop(load_dpop_config(path, sso.as_ref())?);
    }
    if let Some(sso) = sso {
        builder = builder.sso(sso);
    }
    let workload_identity = args.workload_identity_config.as_deref().map(load_workload_identity_config).transpose()?;
    let token_endpoint =
        workload_identity.as_ref().and_then(|w| w.token_endpoint()).map(|e| e.token_endpoint_url().to_owned());
    if let Some(wi) = workload_identity {
        builder = builder.workload_identity(wi);
    }
    let gateway = builder
        .build()?
        .spawn()
        .await
        .with_context(|| format!("cannot listen on {} (is it in use? try --listen 127.0.0.1:0)", args.listen))?;
    println!(
        "mcp-enterprise gateway is listening.\n\n  MCP endpoint : {}\n  forwards to  : {upstream}\n",
        gateway.mcp_url()
    );
    if let Some(url) = token_endpoint {
        println!("  token endpoint (SEP-1933 jwt-bearer grant): {url}\n");
    }
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    eprintln!("shutting down");
    gateway.shutdown().await;
    Ok(())
}

async fn serve_demo(args: &ServeArgs) -> anyhow::Result<()> {
    if !args.listen.ip().is_loopback() {
        bail!("the embedded demo only listens on loopback addresses (got {})", args.listen);
    }
    let demo = Demo::start(args.listen).await.map_err(|e| anyhow::anyhow!("starting the demo: {e}"))?;
    println!("{}", demo.banner());
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    eprintln!("shutting down");
    demo.stop().await;
    Ok(())
}
