//! `--stdio-cost`: the CPU cost of the upstream transports. `@modelcontextprotocol/server-everything`
//! (tests/peers) behind the gateway three times — over its own Streamable HTTP (`upstream.url`,
//! the plain-http row), over HTTPS (the same server behind a TLS terminator, Node's
//! `tests/peers/tls-front.mjs`, with a CA made by `openssl` and given as `upstream.tls.ca_file`)
//! and as a stdio child (`upstream.command`) — under the same `tools/call echo` in one session
//! (2025-11-25 era: server-everything has no other). CPU µs/req of the gateway and of the server
//! process, printed as a markdown table (and a section of the report `run.sh` writes).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde_json::json;

use crate::{Opts, Proc, cpu_time, free_port, wait_port, wrk};

/// One POST on a fresh connection; returns the response head (the body is not waited for).
fn post_head(port: u16, session: Option<&str>, body: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    let session = session.map(|s| format!("mcp-session-id: {s}\r\n")).unwrap_or_default();
    write!(
        stream,
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\nmcp-protocol-version: 2025-11-25\r\n{session}content-length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    // the answer streams on; give the server a moment to finish it before the connection closes
    std::thread::sleep(std::time::Duration::from_millis(300));
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// `initialize` + `notifications/initialized`: the session id.
fn open_session(port: u16) -> anyhow::Result<String> {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "load", "version": "1"}}});
    let head = post_head(port, None, &init.to_string())?;
    let session = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("mcp-session-id"))
                .map(|(_, v)| v.trim().to_owned())
        })
        .with_context(|| format!("no session id in {head}"))?;
    post_head(port, Some(&session), &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string())?;
    Ok(session)
}

/// The wrk script: `tools/call echo` in `session`, each request with an id of its own (a
/// JSON-RPC id is not reused within a session; each wrk thread counts in its own range).
fn script(dir: &Path, name: &str, session: &str) -> anyhow::Result<PathBuf> {
    let text = format!(
        r#"local threads = 0
function setup(thread)
  thread:set("offset", threads)
  threads = threads + 1
end
local i = 0
function init(args)
  i = (offset or 0) * 1000000000
end
local headers = {{["content-type"] = "application/json", ["accept"] = "application/json, text/event-stream",
  ["mcp-protocol-version"] = "2025-11-25", ["mcp-session-id"] = "{session}"}}
request = function()
  i = i + 1
  local body = '{{"jsonrpc":"2.0","id":' .. i .. ',"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"hello"}}}}}}'
  return wrk.format("POST", nil, headers, body)
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %f %f\n", summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout, summary.duration, latency:percentile(50), latency:percentile(99)))
end
"#
    );
    let path = dir.join(format!("{name}.lua"));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The direct children of `pid` (the bridge's server).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| s.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<u32>>())
        .collect()
}

fn gateway(opts: &Opts, dir: &Path, upstream: &str) -> anyhow::Result<(Proc, u16)> {
    let port = free_port()?;
    let path = dir.join(format!("stdio-gateway-{port}.toml"));
    // the pre-authentication limit (on by default, 100/s per address) gets a rate wrk's one
    // address never reaches, as in the other stacks: measured, never refusing
    std::fs::write(
        &path,
        format!(
            "version = 1\nresource = \"http://127.0.0.1:{port}/mcp\"\n[listen]\naddress = \"127.0.0.1:{port}\"\npre_auth_limit = {{ requests_per_sec = 1000000, burst = 1000000 }}\n[egress]\nproxy = \"\"\n[upstream]\n{upstream}\n"
        ),
    )?;
    let child = Command::new(opts.bins.join("mcp-enterprise"))
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the gateway")?;
    let proc = Proc(child);
    wait_port(port, "the gateway")?;
    Ok((proc, port))
}

/// A private CA and a `localhost` certificate it signed (`openssl`), in `dir`: (CA, cert, key).
fn test_pki(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    let (ca_key, ca, key, csr, cert, ext) = (
        dir.join("ca.key"),
        dir.join("ca.pem"),
        dir.join("tls.key"),
        dir.join("tls.csr"),
        dir.join("tls.pem"),
        dir.join("tls.ext"),
    );
    std::fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\n")?;
    let p256 = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    // the temporary directory's path has no spaces
    let (a, c, k, r, t, e) =
        (ca_key.display(), ca.display(), key.display(), csr.display(), cert.display(), ext.display());
    let steps = [
        format!("req -x509 {p256} -subj /CN=load-CA -days 2 -keyout {a} -out {c}"),
        format!("req {p256} -subj /CN=localhost -keyout {k} -out {r}"),
        format!("x509 -req -days 2 -in {r} -CA {c} -CAkey {a} -CAcreateserial -extfile {e} -out {t}"),
    ];
    for args in steps {
        let out =
            Command::new("openssl").args(args.split(' ')).output().context("openssl (apt-get install openssl)")?;
        if !out.status.success() {
            bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    Ok((ca, cert, key))
}

/// The TLS terminator in front of `backend`: its process and port.
fn tls_front(node: &Path, peers: &Path, cert: &Path, key: &Path, backend: u16) -> anyhow::Result<(Proc, u16)> {
    let mut child = Command::new(node)
        .arg(peers.join("tls-front.mjs"))
        .arg(cert)
        .arg(key)
        .arg(backend.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    let mut out = child.stdout.take().context("stdout")?;
    let mut byte = [0u8; 1];
    while !line.ends_with('\n') && out.read(&mut byte)? == 1 {
        line.push(byte[0] as char);
    }
    let proc = Proc(child);
    let port: serde_json::Value =
        serde_json::from_str(line.trim()).with_context(|| format!("tls-front said {line:?}"))?;
    let port = port["port"].as_u64().context("tls-front port")? as u16;
    Ok((proc, port))
}

/// Runs the rows and prints them.
pub(crate) fn stdio_cost(opts: &Opts) -> anyhow::Result<()> {
    println!("{}", measure(opts)?);
    Ok(())
}

/// The upstream-transport section of the report: the table and how it was measured.
pub(crate) fn section(report: &mut String, opts: &Opts) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let table = measure(opts)?;
    let _ = write!(
        report,
        "\n## Upstream transports: plain http, HTTPS, stdio\n\n`@modelcontextprotocol/server-everything` behind the bare gateway over its own Streamable HTTP (the plain-http row), over HTTPS (the same server behind a TLS terminator, Node's `tests/peers/tls-front.mjs`, HTTP/1.1 by ALPN, a private CA in `upstream.tls.ca_file`) and as a stdio child (`upstream.command`); `tools/call echo` in one session (2025-11-25), {} s per cell; CPU µs per request of the gateway process and of the server process (the TLS terminator's CPU is in neither). `mcp-enterprise-load --stdio-cost` prints this table alone.\n\n{table}",
        opts.duration
    );
    Ok(())
}

fn measure(opts: &Opts) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let peers = std::fs::canonicalize("tests/peers").context("run from the workspace root")?;
    let node = peers.join("node_modules/.bin/node");
    let entry = peers.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    if !node.exists() || !entry.exists() {
        bail!("the npm peers are missing: npm ci --prefix tests/peers");
    }
    let dir = std::env::temp_dir().join(format!("mcpe-load-stdio-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let http_port = free_port()?;
    let server = Proc(
        Command::new(&node)
            .arg(&entry)
            .arg("streamableHttp")
            .env("PORT", http_port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_port(http_port, "server-everything")?;
    let (ca, cert, key) = test_pki(&dir)?;
    let (front, https_port) = tls_front(&node, &peers, &cert, &key, http_port)?;
    wait_port(https_port, "the TLS terminator")?;
    let argv = serde_json::to_string(&[node.display().to_string(), entry.display().to_string(), "stdio".to_owned()])?;
    let rows = [
        (
            "gateway → server-everything over Streamable HTTP (plain-http row)",
            format!("url = \"http://127.0.0.1:{http_port}/mcp\""),
        ),
        (
            "gateway → server-everything over HTTPS",
            format!("url = \"https://localhost:{https_port}/mcp\"\ntls = {{ ca_file = \"{}\" }}", ca.display()),
        ),
        ("gateway → server-everything as a stdio child", format!("command = {argv}")),
    ];
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| route | connections | req/s | p50 µs | p99 µs | gateway CPU µs/req | server CPU µs/req | errors |"
    );
    let _ = writeln!(table, "|---|---|---|---|---|---|---|---|");
    for (label, upstream) in rows {
        let (gw, port) = gateway(opts, &dir, &upstream)?;
        let session = open_session(port)?;
        let script = script(&dir, &format!("stdio-{port}"), &session)?;
        let server_pid = if upstream.starts_with("url") {
            server.0.id()
        } else {
            *children(gw.0.id()).first().context("the stdio child")?
        };
        let url = format!("http://127.0.0.1:{port}/mcp");
        // warm-up
        wrk(&url, &script, 1, 1, None)?;
        for conns in [1, 16] {
            let before = cpu_time(server_pid);
            let run = wrk(&url, &script, conns, opts.duration, Some(gw.0.id()))?;
            let after = cpu_time(server_pid);
            let server_cpu = match (before, after) {
                (Some(b), Some(a)) if run.requests > 0 => {
                    format!("{:.1}", (a - b).as_micros() as f64 / run.requests as f64)
                }
                _ => "–".to_owned(),
            };
            let _ = writeln!(
                table,
                "| {label} | {conns} | {:.0} | {:.0} | {:.0} | {} | {server_cpu} | {} |",
                run.rps,
                run.p50_us,
                run.p99_us,
                run.cpu_us_per_req.map_or_else(|| "–".to_owned(), |c| format!("{c:.1}")),
                run.errors
            );
        }
        drop(gw);
    }
    drop(front);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(table)
}
