//! `mcp-enterprise`: the gateway binary.
//!
//! `mcp-enterprise serve` with no arguments runs the embedded demo (cargo feature `demo`, on by
//! default): a real MCP server (built with the official `rmcp` SDK) behind the whole pack, on
//! 127.0.0.1, and prints how to call it.
//! `mcp-enterprise serve --config mcp-enterprise.toml` runs exactly what a configuration document
//! says (and reloads it on SIGHUP); `mcp-enterprise serve --upstream http://127.0.0.1:8081/mcp`
//! fronts your own server with no authentication, through the same path (a document built in
//! memory). `mcp-enterprise config …` checks, prints, exports and generates configuration
//! documents.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use mcp_enterprise::commands;
use mcp_enterprise::output::{EXIT_CHECK_FAILED, EXIT_ERROR, Output};
use mcp_enterprise::{audit_cli, output};
use mcp_enterprise_config::clients::ClientFormat;
use mcp_enterprise_config::{Format, Loader, LogFormat, LogLevel, PackConfig};
use mcp_enterprise_gateway::DEFAULT_LISTEN;
use mcp_enterprise_gateway::Signals;
use mcp_enterprise_gateway::configured::ConfiguredGateway;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// mimalloc: glibc malloc cost a fifth of the gateway's user time under load (cross-thread frees;
/// see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The mcp-enterprise gateway: enterprise extensions in front of any MCP server.
#[derive(Debug, Parser)]
#[command(name = "mcp-enterprise", version, about, arg_required_else_help = true, after_help = concat!(
    "Examples:\n",
    "  mcp-enterprise serve                               # the embedded demo on 127.0.0.1:8787\n",
    "  mcp-enterprise serve --config mcp-enterprise.toml\n",
    "  mcp-enterprise config check --output json mcp-enterprise.toml\n",
    "  source <(mcp-enterprise completions bash)\n\n",
    "Exit codes: 0 ok, 1 check failed (invalid config, broken trail, failing policy test, drift), ",
    "2 usage or I/O error. Every flag can also be set by the MCPE_ variable its help names; see docs/cli.md."
))]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the gateway (with no --upstream: the embedded demo MCP server).
    #[command(
        after_help = "Examples:\n  mcp-enterprise serve\n  mcp-enterprise serve --config mcp-enterprise.toml\n  \
                            mcp-enterprise serve --upstream http://127.0.0.1:8081/mcp --allowed-host mcp.internal"
    )]
    Serve(ServeArgs),
    /// Work with audit trails.
    #[command(
        subcommand,
        after_help = "Example:\n  mcp-enterprise audit verify --public-key audit.pub /var/log/mcp-audit"
    )]
    Audit(AuditCommand),
    /// Work with configuration documents (TOML, YAML or JSON; `MCPE_` environment overrides).
    #[command(subcommand, after_help = "Example:\n  mcp-enterprise config check mcp-enterprise.toml")]
    Config(ConfigCommand),
    /// Register this server in an MCP client's own configuration file (and remove it again).
    #[command(subcommand)]
    Client(mcp_enterprise::client::ClientCommand),
    /// Check, explain and test Cedar policies (the `policy` section).
    #[command(subcommand, after_help = "Example:\n  mcp-enterprise policy check --tools tools.json policies/*.cedar")]
    Policy(PolicyCommand),
    /// Pin, compare and approve the upstream's tool, prompt and resource template definitions
    /// (the lock file the `integrity` section enforces). Exit codes: 0 ok / no drift, 1 drift,
    /// 2 error.
    #[command(
        subcommand,
        after_help = "Example:\n  mcp-enterprise tools diff --config mcp-enterprise.toml --lock tools.lock"
    )]
    Tools(ToolsCommand),
    /// Print a shell completion script (bash, zsh, fish or powershell).
    #[command(after_help = "Examples:\n  source <(mcp-enterprise completions bash)\n  \
                            mcp-enterprise completions zsh > \"${fpath[1]}/_mcp-enterprise\"\n  \
                            mcp-enterprise completions fish | source")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Which upstream: the configuration and the route.
#[derive(Debug, clap::Args)]
struct UpstreamOf {
    /// Configuration files, merged in this order.
    #[arg(long = "config", value_name = "FILE", required = true, num_args = 1.., env = "MCPE_CONFIG")]
    config: Vec<std::path::PathBuf>,
    /// The route: its `resource` URL or `routes[N]` (default: the top-level server).
    #[arg(long, env = "MCPE_ROUTE")]
    route: Option<String>,
}

#[derive(Debug, Subcommand)]
enum ToolsCommand {
    /// Fetch every definition from the live upstream and write the lock file.
    ///
    /// Example: mcp-enterprise tools pin --config mcp-enterprise.toml --lock tools.lock
    Pin {
        #[command(flatten)]
        upstream: UpstreamOf,
        /// The lock file to write (`--out` is the former name).
        #[arg(long = "lock", alias = "out", value_name = "FILE", env = "MCPE_TOOLS_LOCK")]
        out: std::path::PathBuf,
    },
    /// Show what changed, per field (JSON Pointer, old -> new), between the lock file and the live
    /// upstream. Exit code 0 when nothing did, 1 on drift, 2 on error.
    ///
    /// Example: mcp-enterprise tools diff --config mcp-enterprise.toml --lock tools.lock
    Diff {
        #[command(flatten)]
        upstream: UpstreamOf,
        /// The lock file.
        #[arg(long, value_name = "FILE", env = "MCPE_TOOLS_LOCK")]
        lock: std::path::PathBuf,
        /// `text` or `json` (`{"drift": bool, "changes": [...]}`).
        #[arg(long, default_value = "text", value_parser = ["text", "json"], env = "MCPE_OUTPUT")]
        output: String,
    },
    /// Update the lock file for the named definitions only: pin what the upstream offers now, or
    /// drop a pin it no longer offers.
    ///
    /// Example: mcp-enterprise tools approve --config mcp-enterprise.toml --lock tools.lock echo
    Approve {
        #[command(flatten)]
        upstream: UpstreamOf,
        /// The lock file.
        #[arg(long, value_name = "FILE", env = "MCPE_TOOLS_LOCK")]
        lock: std::path::PathBuf,
        /// Tool, prompt or resource template names.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Parse policy files and validate them against the tools of a saved tools/list or a live
    /// upstream: every problem with its file:line:column and policy id. Exit code 1 on errors.
    ///
    /// Example: mcp-enterprise policy check --tools tools.json --output json policies/*.cedar
    Check {
        /// Cedar policy files.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
        /// A saved tools/list result or response (JSON).
        #[arg(long, value_name = "FILE", conflicts_with = "upstream", env = "MCPE_POLICY_TOOLS")]
        tools: Option<std::path::PathBuf>,
        /// A live MCP endpoint to fetch tools/list from, e.g. http://127.0.0.1:8081/mcp.
        #[arg(long, value_name = "URL", env = "MCPE_UPSTREAM_URL")]
        upstream: Option<String>,
        /// Print text, or one JSON document (docs/cli.md).
        #[arg(long, value_enum, default_value_t, env = "MCPE_OUTPUT")]
        output: Output,
    },
    /// Decide one call: the decision, the determining policies and any errors, as JSON.
    ///
    /// Example: mcp-enterprise policy explain policies/*.cedar --principal alice.json --call call.json
    Explain {
        /// Cedar policy files.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
        /// The principal (JSON: subject, groups, roles, scopes, …; `null` for anonymous).
        #[arg(long, value_name = "FILE", env = "MCPE_POLICY_PRINCIPAL")]
        principal: std::path::PathBuf,
        /// The call (JSON: a tools/call, resources/read or prompts/get request).
        #[arg(long, value_name = "FILE", env = "MCPE_POLICY_CALL")]
        call: std::path::PathBuf,
        /// A saved tools/list, for argument types and annotations.
        #[arg(long, value_name = "FILE", env = "MCPE_POLICY_TOOLS")]
        tools: Option<std::path::PathBuf>,
    },
    /// Run a table of expected decisions (TOML or YAML; see docs/policy.md). Exit code 1 when a
    /// case fails or a policy does not type-check.
    ///
    /// Example: mcp-enterprise policy test --output json policies/tests.toml
    Test {
        /// The test file.
        file: std::path::PathBuf,
        /// Print text, or one JSON document (docs/cli.md).
        #[arg(long, value_enum, default_value_t, env = "MCPE_OUTPUT")]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check files (merged in order, then the MCPE_ environment): every error at once with its
    /// file:line, key, expected and found. Exit code 0 when valid, 1 otherwise.
    ///
    /// Example: mcp-enterprise config check --output json mcp-enterprise.toml
    Check {
        /// Configuration files, merged in this order.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
        /// Print text, or one JSON document (docs/cli.md).
        #[arg(long, value_enum, default_value_t, env = "MCPE_OUTPUT")]
        output: Output,
    },
    /// Print the JSON Schema of the document.
    ///
    /// Example: mcp-enterprise config schema --update-docs docs
    Schema {
        /// Instead, rewrite DIR/config.schema.json and the key reference in DIR/configuration.md.
        #[arg(long, value_name = "DIR", env = "MCPE_SCHEMA_UPDATE_DOCS")]
        update_docs: Option<std::path::PathBuf>,
        /// Instead, print the key reference (markdown).
        #[arg(long, conflicts_with = "update_docs", env = "MCPE_SCHEMA_REFERENCE")]
        reference: bool,
    },
    /// Print the effective configuration (files merged, environment applied, defaults filled in),
    /// secrets redacted.
    ///
    /// Example: mcp-enterprise config print --format yaml base.toml prod.yaml
    Print {
        /// Configuration files, merged in this order.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
        /// Output format.
        #[arg(long, default_value = "toml", value_parser = ["toml", "yaml", "json"], env = "MCPE_CONFIG_FORMAT")]
        format: String,
    },
    /// Print a commented starter document (or write it to a new file).
    ///
    /// Example: mcp-enterprise config init --out mcp-enterprise.toml
    Init {
        /// Write to this file (never overwrites).
        #[arg(long, value_name = "FILE", env = "MCPE_CONFIG_INIT_OUT")]
        out: Option<std::path::PathBuf>,
    },
    /// Print the connection entry an MCP client needs (OAuth client id and scopes, no secrets).
    Export {
        /// The client: mcp-json (SEP-2633), vscode, claude, cursor, codex, windsurf, cline,
        /// roo-code, continue, zed, gemini-cli, copilot-cli, copilot-jetbrains, goose, lm-studio,
        /// kiro, amazon-q or opencode (docs/clients.md).
        #[arg(long, value_parser = mcp_enterprise::client::FORMAT_NAMES, env = "MCPE_CLIENT")]
        client: String,
        /// Configuration files, merged in this order.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
    /// Turn a client's configuration entry into a starter document of ours (TOML).
    Import {
        /// The client file's format (as for `export`; docs/clients.md).
        #[arg(long, value_parser = mcp_enterprise::client::FORMAT_NAMES, env = "MCPE_CLIENT")]
        client: String,
        /// The server entry to import (default: the only one).
        #[arg(long, env = "MCPE_IMPORT_NAME")]
        name: Option<String>,
        /// The upstream MCP server the gateway will front.
        #[arg(long, default_value = "http://127.0.0.1:8081/mcp", env = "MCPE_UPSTREAM_URL")]
        upstream: String,
        /// The client's configuration file.
        file: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check a trail: chain, canonical form, checkpoints and their signatures, rotation
    /// continuity. Exit code 0 when it verifies, 1 with the first broken record otherwise.
    /// A progress bar (bytes verified of the total) is shown on a terminal for large trails (over
    /// 10 000 records or 8 MiB).
    ///
    /// Example: mcp-enterprise audit verify --public-key audit.pub --output json /var/log/mcp-audit
    Verify {
        /// Trail files, or a directory holding them.
        #[arg(required = true)]
        paths: Vec<std::path::PathBuf>,
        /// The checkpoint public key (PEM or base64url); without it signatures are not checked.
        #[arg(long, value_name = "FILE", env = "MCPE_AUDIT_PUBLIC_KEY")]
        public_key: Option<std::path::PathBuf>,
        /// The trail is still being written: allow records after the last checkpoint.
        #[arg(long, env = "MCPE_AUDIT_LIVE")]
        live: bool,
        /// Print text, or one JSON document (docs/cli.md).
        #[arg(long, value_enum, default_value_t, env = "MCPE_OUTPUT")]
        output: Output,
    },
    /// Convert call records for a SIEM: OCSF API Activity (JSON Lines) or CEF, to stdout.
    /// A progress bar is shown on a terminal for large trails (over 10 000 records or 8 MiB).
    ///
    /// Example: mcp-enterprise audit export --format ocsf /var/log/mcp-audit > events.jsonl
    Export {
        /// `ocsf` or `cef`.
        #[arg(long, value_parser = ["ocsf", "cef"], env = "MCPE_AUDIT_FORMAT")]
        format: String,
        /// Trail files, or a directory holding them.
        #[arg(required = true)]
        paths: Vec<std::path::PathBuf>,
    },
    /// Generate an Ed25519 checkpoint signing key (PKCS#8 PEM) and print its public key.
    ///
    /// Example: mcp-enterprise audit keygen --out audit-signing.pem > audit.pub
    Keygen {
        /// Where to write the private key (created with mode 0600; must not exist).
        #[arg(long, value_name = "FILE", env = "MCPE_AUDIT_KEY_OUT")]
        out: std::path::PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Run exactly what these configuration files say (merged in order, then the MCPE_
    /// environment); SIGHUP reloads them. Not combinable with the other settings flags.
    #[arg(long, value_name = "FILE", num_args = 1.., env = "MCPE_CONFIG", conflicts_with_all = [
        "upstream", "allowed_hosts", "allowed_origins", "insecure_listen_any", "listen", "admin",
    ])]
    config: Vec<std::path::PathBuf>,
    /// Address to listen on (the `listen.address` key).
    #[arg(long, default_value = DEFAULT_LISTEN, env = "MCPE_LISTEN_ADDRESS")]
    listen: SocketAddr,
    /// Upstream MCP endpoint (Streamable HTTP), e.g. http://127.0.0.1:8081/mcp, fronted without
    /// authentication (use --config for the extension sections). Without it (and without
    /// --config) the embedded demo is started. (The `upstream.url` key.)
    #[arg(long, value_name = "URL", env = "MCPE_UPSTREAM_URL")]
    upstream: Option<String>,
    /// Also accept this name in the Host header (repeatable). Needed when clients reach the
    /// gateway under a DNS name; any other Host is refused (DNS rebinding defence).
    #[arg(
        long = "allowed-host",
        alias = "allow-host",
        value_name = "NAME",
        env = "MCPE_LISTEN_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    allowed_hosts: Vec<String>,
    /// Allow browser requests from this origin, e.g. https://app.example.com (repeatable).
    #[arg(long = "allowed-origin", value_name = "ORIGIN", env = "MCPE_LISTEN_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Vec<String>,
    /// Allow listening on a non-loopback address. With --upstream this exposes the upstream
    /// server to the network unauthenticated. (The `listen.insecure_listen_any` key.)
    #[arg(long, env = "MCPE_LISTEN_INSECURE_LISTEN_ANY")]
    insecure_listen_any: bool,
    /// Serve /healthz, /readyz and /metrics on this address (the `admin.address` key). The
    /// embedded demo always does: by default on the --listen host, port 9464 (a free port when
    /// --listen has port 0).
    #[arg(long, value_name = "ADDR", env = "MCPE_ADMIN_ADDRESS")]
    admin: Option<SocketAddr>,
}

/// Logs to stderr as the `logging` section of the document `serve --config` runs says (text at
/// `info` without one); `RUST_LOG` overrides the level. With a `traces` section, the pack's trace
/// spans are exported too: the tracer provider returned is shut down (pending spans sent) on exit.
fn init_logging(config: Option<&PackConfig>) -> Option<SdkTracerProvider> {
    let logging = config.as_ref().and_then(|c| c.logging.clone()).unwrap_or_default();
    let level = match logging.level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Debug => "debug,rmcp=info",
        LogLevel::Trace => "trace",
        _ => "info,rmcp=warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = match logging.format {
        LogFormat::Json => fmt.json().with_current_span(true).with_span_list(false).boxed(),
        _ => fmt.with_ansi(output::stderr_colour()).boxed(),
    };
    // a `traces` section the gateway refuses is reported when it starts
    let provider = config.and_then(|c| {
        // the exporter goes out through the `egress` section's proxy, as every outbound call
        let egress = mcp_enterprise_config::compose::egress(c).ok()?;
        mcp_enterprise_gateway::telemetry::tracer_provider(c.traces.as_ref()?, &egress).ok().flatten()
    });
    let traces = provider.as_ref().map(mcp_enterprise_gateway::telemetry::subscriber_layer);
    tracing_subscriber::registry().with(fmt.with_filter(filter)).with(traces).init();
    provider
}

fn main() -> ExitCode {
    // usage errors, --help and bare `mcp-enterprise` (help, exit code 2) are clap's
    let cli = Cli::parse();
    let config = match &cli.command {
        // the document is loaded again (and reported on) when the gateway starts
        Command::Serve(args) if !args.config.is_empty() => {
            commands::loader(&args.config).load().ok().map(|l| l.config().clone())
        }
        _ => None,
    };
    let traces = init_logging(config.as_ref());
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // absent: tokio's default, one worker per CPU the process may use (or `TOKIO_WORKER_THREADS`)
    if let Some(workers) = config.as_ref().and_then(|c| c.runtime.as_ref()?.worker_threads) {
        builder.worker_threads(workers);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(EXIT_ERROR as u8);
        }
    };
    if matches!(cli.command, Command::Serve(_)) {
        tracing::info!(worker_threads = runtime.metrics().num_workers(), "runtime started");
    }
    let result = runtime.block_on(run(cli.command));
    if let Some(provider) = traces
        && let Err(e) = provider.shutdown()
    {
        eprintln!("warning: traces not all exported: {e}");
    }
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_CHECK_FAILED as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_ERROR as u8)
        }
    }
}

/// Runs one command, its output on stdout: `Ok(false)` for exit code 1 (a check failed), `Err`
/// for exit code 2 (an I/O error, an unreachable upstream, …).
async fn run(command: Command) -> anyhow::Result<bool> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = match command {
        Command::Serve(args) => {
            drop(out);
            return serve(args).await.map(|()| true);
        }
        Command::Audit(command) => audit(command, &mut out),
        Command::Policy(command) => policy(command, &mut out).await,
        Command::Tools(command) => tools(command, &mut out).await,
        Command::Config(command) => config(command, &mut out),
        Command::Client(command) => mcp_enterprise::client::run(command, &mut out),
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(shell, &mut Cli::command(), "mcp-enterprise", &mut out);
            Ok(true)
        }
    };
    out.flush()?;
    result
}

/// Runs a `tools` command; `Ok(false)` for drift (exit code 1).
async fn tools(command: ToolsCommand, out: &mut impl std::io::Write) -> anyhow::Result<bool> {
    use mcp_enterprise::tools;
    match command {
        ToolsCommand::Pin { upstream, out: file } => {
            tools::pin(&upstream.config, upstream.route.as_deref(), &file, out).await.map(|()| true)
        }
        ToolsCommand::Diff { upstream, lock, output } => {
            let output = if output == "json" { tools::Output::Json } else { tools::Output::Text };
            tools::diff(&upstream.config, upstream.route.as_deref(), &lock, output, out).await
        }
        ToolsCommand::Approve { upstream, lock, names } => {
            tools::approve(&upstream.config, upstream.route.as_deref(), &lock, &names, out).await.map(|()| true)
        }
    }
}

/// Runs a `policy` command; `Ok(false)` for exit code 1.
async fn policy(command: PolicyCommand, out: &mut impl std::io::Write) -> anyhow::Result<bool> {
    use mcp_enterprise::policy_cli;
    let catalog = |tools: Option<&std::path::Path>| match tools {
        Some(path) => policy_cli::read_catalog(path),
        None => Ok(mcp_enterprise_policy::Catalog::default()),
    };
    match command {
        PolicyCommand::Check { files, tools, upstream, output } => {
            let catalog = match upstream {
                Some(url) => mcp_enterprise_gateway::catalog::fetch_catalog(&url).await?,
                None => catalog(tools.as_deref())?,
            };
            policy_cli::check_output(&files, catalog, output, out)
        }
        PolicyCommand::Explain { files, principal, call, tools } => {
            policy_cli::explain(&files, catalog(tools.as_deref())?, &principal, &call, out)?;
            Ok(true)
        }
        PolicyCommand::Test { file, output } => policy_cli::test_output(&file, output, out),
    }
}

/// Runs a `config` command; `Ok(false)` for exit code 1.
fn config(command: ConfigCommand, out: &mut impl std::io::Write) -> anyhow::Result<bool> {
    let format = |name: &str| name.parse::<ClientFormat>();
    match command {
        ConfigCommand::Check { files, output } => {
            commands::readable(&files)?;
            commands::check_output(commands::loader(&files), output, out)
        }
        ConfigCommand::Schema { update_docs, reference: true } if update_docs.is_none() => commands::reference(out),
        ConfigCommand::Schema { update_docs, .. } => commands::schema(update_docs.as_deref(), out),
        ConfigCommand::Print { files, format } => {
            let format: Format = format.parse().map_err(anyhow::Error::msg)?;
            commands::print(commands::loader(&files), format, out)
        }
        ConfigCommand::Init { out: file } => commands::init(file.as_deref(), out),
        ConfigCommand::Export { client, files } => commands::export(commands::loader(&files), format(&client)?, out),
        ConfigCommand::Import { client, name, upstream, file } => {
            commands::import(format(&client)?, &file, name.as_deref(), &upstream, out)
        }
    }
}

/// `serve --config` and `serve --upstream`: exactly what the document says, reloaded on SIGHUP
/// (`files`, shown in the banner, empty for a document built in memory).
async fn serve_config(loader: Loader, files: &[std::path::PathBuf]) -> anyhow::Result<()> {
    // listening for SIGTERM/SIGINT before the banner: a signal right after it is not missed
    let signals = Signals::install().context("installing the signal handlers")?;
    let gateway = match ConfiguredGateway::start(loader).await {
        Ok(gateway) => gateway,
        Err(e) => bail!("{e}"),
    };
    let config = gateway.redacted();
    let source = match files {
        [] => String::from("--upstream (no authentication; use --config FILE for the extension sections)"),
        files => format!(
            "{} (kill -HUP {} reloads it)",
            files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "),
            std::process::id()
        ),
    };
    let admin = gateway
        .running()
        .admin_addr()
        .map(|a| format!("  metrics      : http://{a}/metrics\n  health       : http://{a}/healthz\n  readiness    : http://{a}/readyz\n"))
        .unwrap_or_default();
    println!(
        "mcp-enterprise gateway is listening.\n\n  MCP endpoint : {}\n  resource     : {}\n  forwards to  : {}\n  config       : {source}\n{admin}",
        gateway.mcp_url(),
        config["resource"].as_str().unwrap_or_default(),
        config["upstream"]["url"].as_str().unwrap_or_default(),
    );
    gateway.run_until(signals).await;
    eprintln!("shut down");
    Ok(())
}

/// The document `serve --upstream` runs: the upstream, the listener flags, no extension section.
/// The resource is named by a loopback host (`localhost`), whatever the listen address: without
/// authentication nothing advertises it.
fn upstream_document(args: &ServeArgs, upstream: &str) -> anyhow::Result<String> {
    let mut document = serde_json::json!({
        "version": 1,
        "resource": format!("http://localhost:{}/mcp", args.listen.port()),
        "upstream": { "url": upstream },
        "listen": {
            "address": args.listen.to_string(),
            "allowed_hosts": args.allowed_hosts,
            "allowed_origins": args.allowed_origins,
            "insecure_listen_any": args.insecure_listen_any,
        },
    });
    if let Some(admin) = args.admin {
        document["admin"] = serde_json::json!({ "address": admin.to_string() });
    }
    toml::to_string(&document).context("writing the --upstream document")
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if !args.config.is_empty() {
        return serve_config(commands::loader(&args.config), &args.config).await;
    }
    let Some(upstream) = args.upstream.as_deref() else {
        return serve_demo(&args).await;
    };
    let document = upstream_document(&args, upstream)?;
    serve_config(Loader::new().text("serve --upstream", Format::Toml, &document), &[]).await
}

/// Runs an `audit` command, writing its output to `out`; `Ok(false)` when a trail does not verify.
fn audit(command: AuditCommand, out: &mut impl std::io::Write) -> anyhow::Result<bool> {
    match command {
        AuditCommand::Verify { paths, public_key, live, output } => {
            audit_cli::verify(&paths, public_key.as_deref(), live, output, out)
        }
        AuditCommand::Export { format, paths } => audit_cli::export(&format, &paths, out),
        AuditCommand::Keygen { out: path } => audit_cli::keygen(&path, out),
    }
}

/// The embedded demo's admin port when `--admin` is not given.
#[cfg(feature = "demo")]
const DEMO_ADMIN_PORT: u16 = 9464;

#[cfg(feature = "demo")]
async fn serve_demo(args: &ServeArgs) -> anyhow::Result<()> {
    use mcp_enterprise::demo::Demo;
    if !args.listen.ip().is_loopback() {
        bail!("the embedded demo only listens on loopback addresses (got {})", args.listen);
    }
    let audit_dir = std::env::temp_dir().join(format!("mcp-enterprise-demo-{}", std::process::id()));
    let mut signals = Signals::install().context("installing the signal handlers")?;
    let admin = args.admin.unwrap_or_else(|| {
        let port = if args.listen.port() == 0 { 0 } else { DEMO_ADMIN_PORT };
        SocketAddr::new(args.listen.ip(), port)
    });
    let demo = Demo::start_with_admin(args.listen, Some(admin), &audit_dir)
        .await
        .map_err(|e| anyhow::anyhow!("starting the demo: {e}"))?;
    println!("{}", demo.banner());
    signals.stop().await;
    eprintln!("shutting down");
    demo.stop().await;
    Ok(())
}

#[cfg(not(feature = "demo"))]
async fn serve_demo(_args: &ServeArgs) -> anyhow::Result<()> {
    bail!(
        "the embedded demo is not compiled in (this mcp-enterprise was built without the `demo` feature): \
         pass --config FILE (see `mcp-enterprise config init`) or --upstream URL"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_enterprise_audit::{CheckpointSigner, trail_files};

    #[test]
    fn config_command_line() {
        let parse = |args: &[&str]| Cli::try_parse_from(std::iter::once("mcp-enterprise").chain(args.iter().copied()));
        let Ok(Cli { command: Command::Serve(serve) }) = parse(&["serve", "--config", "a.toml", "b.yaml"]) else {
            panic!("serve --config with two files");
        };
        assert_eq!(serve.config, [std::path::PathBuf::from("a.toml"), "b.yaml".into()]);
        for conflicting in [["--upstream", "http://127.0.0.1:1/mcp"], ["--listen", "127.0.0.1:1"]] {
            let mut args = vec!["serve", "--config", "a.toml"];
            args.extend(conflicting);
            assert!(parse(&args).is_err(), "--config with {conflicting:?} must be refused");
        }
        assert!(parse(&["serve", "--upstream", "http://127.0.0.1:1/mcp", "--allowed-host", "a"]).is_ok());
        for removed in ["--sso-config", "--dpop-config", "--audit-config", "--workload-identity-config"] {
            let args = ["serve", "--upstream", "http://127.0.0.1:1/mcp", removed, "x.json"];
            assert!(parse(&args).is_err(), "{removed} is gone: --config is the one path");
        }
        assert!(parse(&["config", "export", "--client", "emacs", "a.toml"]).is_err());
        assert!(parse(&["config", "check"]).is_err(), "at least one file");
        assert!(parse(&["config", "print", "a.toml", "--format", "yaml"]).is_ok());
    }

    /// Every flag has an `MCPE_` variable (named in its help) and every subcommand an example.
    #[test]
    fn every_flag_has_an_environment_variable() {
        use clap::CommandFactory as _;
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_positional() || matches!(id, "help" | "version") {
                    continue;
                }
                match arg.get_env() {
                    Some(env) if env.to_string_lossy().starts_with("MCPE_") => {}
                    _ => missing.push(format!("{path} --{id}")),
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "mcp-enterprise", &mut missing);
        assert!(missing.is_empty(), "flags without an MCPE_ variable: {missing:?}");
        Cli::command().debug_assert();
    }

    #[test]
    fn upstream_document_is_checked_like_a_file() -> anyhow::Result<()> {
        let serve = |args: &[&str]| -> anyhow::Result<ServeArgs> {
            let all = ["mcp-enterprise", "serve"].into_iter().chain(args.iter().copied());
            match Cli::try_parse_from(all)? {
                Cli { command: Command::Serve(serve) } => Ok(serve),
                other => bail!("not serve: {other:?}"),
            }
        };
        let load = |args: &ServeArgs| -> anyhow::Result<_> {
            let text = upstream_document(args, "http://127.0.0.1:8081/mcp")?;
            Ok(Loader::new().env(Vec::<(String, String)>::new()).text("serve --upstream", Format::Toml, &text).load())
        };
        let local =
            serve(&["--upstream", "x", "--allowed-host", "mcp.internal", "--allowed-origin", "https://a.example"])?;
        let loaded = load(&local)?.map_err(|e| anyhow::anyhow!("{e}"))?;
        assert_eq!(loaded.config().upstream.url, "http://127.0.0.1:8081/mcp");
        assert_eq!(loaded.config().listen.allowed_hosts, ["mcp.internal"]);
        assert_eq!(loaded.config().listen.allowed_origins, ["https://a.example"]);
        assert!(loaded.config().sso.is_none() && loaded.config().audit.is_none());
        let exposed = serve(&["--upstream", "x", "--listen", "0.0.0.0:8787"])?;
        let refused = load(&exposed)?.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(refused.contains("listen.address"), "non-loopback without authentication: {refused}");
        let insecure = serve(&["--upstream", "x", "--listen", "0.0.0.0:8787", "--insecure-listen-any"])?;
        assert!(load(&insecure)?.is_ok());
        Ok(())
    }

    #[test]
    fn config_check_exit_status() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let good = dir.path().join("good.toml");
        std::fs::write(&good, mcp_enterprise_config::init::starter())?;
        let bad = dir.path().join("bad.yaml");
        std::fs::write(
            &bad,
            "version: 1\nresource: https://mcp.example.com/mcp\nupstream:\n  url: http://127.0.0.1:1/mcp\nlisten:\n  adress: x\n",
        )?;
        let mut out = Vec::new();
        assert!(config(ConfigCommand::Check { files: vec![good.clone()], output: Output::Text }, &mut out)?);
        let mut out = Vec::new();
        assert!(
            !config(ConfigCommand::Check { files: vec![good.clone(), bad.clone()], output: Output::Text }, &mut out)?,
            "exit code 1"
        );
        let text = String::from_utf8(out)?;
        assert!(text.contains(&format!("{}:6:3: listen.adress", bad.display())), "{text}");
        let mut out = Vec::new();
        assert!(config(ConfigCommand::Export { client: "codex".into(), files: vec![good] }, &mut out)?);
        assert!(String::from_utf8(out)?.starts_with("[mcp_servers.127-0-0-1]"));
        Ok(())
    }

    #[test]
    fn audit_keygen_verify_and_export() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let key = dir.path().join("key.pem");
        let mut public = Vec::new();
        assert!(audit(AuditCommand::Keygen { out: key.clone() }, &mut public)?);
        let public_file = dir.path().join("public.pem");
        std::fs::write(&public_file, &public)?;
        assert!(audit(AuditCommand::Keygen { out: key.clone() }, &mut Vec::new()).is_err(), "never overwrites a key");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key)?.permissions().mode() & 0o777, 0o600);

        // a trail with one record, sealed with the generated key
        let trail = dir.path().join("trail");
        let signer = CheckpointSigner::from_pkcs8(&std::fs::read(&key)?)?;
        let (_layer, running) =
            mcp_enterprise_audit::AuditLayer::builder().directory(&trail).signing_key(signer).build()?;
        running.shutdown();
        let verify = |live| AuditCommand::Verify {
            paths: vec![trail.clone()],
            public_key: Some(public_file.clone()),
            live,
            output: Output::Text,
        };
        let mut text = Vec::new();
        assert!(audit(verify(false), &mut text)?, "{}", String::from_utf8_lossy(&text));
        assert!(String::from_utf8(text)?.starts_with("OK"));

        // one byte changed: exit code 1 and the first broken record named
        let file = trail_files(&trail)?.remove(0);
        let bytes = std::fs::read(&file)?;
        let at = bytes.windows(9).position(|w| w == b"\"start\"").map(|i| i + 1).unwrap_or(0);
        let mut edited = bytes.clone();
        edited[at] = b'S';
        std::fs::write(&file, &edited)?;
        let mut text = Vec::new();
        assert!(!audit(verify(false), &mut text)?);
        let text = String::from_utf8(text)?;
        assert!(text.starts_with(&format!("BROKEN at {}:1", file.display())), "{text}");
        std::fs::write(&file, &bytes)?;

        // export: bookkeeping records have no SIEM event; an empty directory is an error
        let mut ocsf = Vec::new();
        assert!(audit(AuditCommand::Export { format: "ocsf".into(), paths: vec![trail.clone()] }, &mut ocsf)?);
        assert!(ocsf.is_empty());
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty)?;
        assert!(audit(AuditCommand::Export { format: "cef".into(), paths: vec![empty] }, &mut Vec::new()).is_err());
        Ok(())
    }
}
