//! The gateway as its own process, started from the built `mcp-enterprise` binary with
//! `serve --config`: for tests that read its memory (`/proc/<pid>/status`), its open files, or
//! everything it logs (stderr, at any `RUST_LOG` level).
//!
//! The binary is the workspace's `target/<profile>/mcp-enterprise`; `tests/run.sh` builds it
//! before the tests ([`BUILD_COMMAND`]). A missing or stale binary fails the test with that
//! command.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::peers::read_log;
use crate::process::ChildGuard;

/// The command that builds the binaries the tests run as processes: the gateway and the example
/// ID-JAG client (`tests/it/id_jag.rs`). One workspace build, before `cargo test`: a test that
/// built them itself would wait for cargo's lock on the target directory behind other tests'
/// builds, with other features than the workspace's.
pub const BUILD_COMMAND: &str = "cargo build --bin mcp-enterprise --bin example-id-jag-client";

/// How long the gateway may take to print its endpoint on a loaded machine.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The built gateway binary, checked to exist and to be newer than the sources it is built from.
pub fn binary() -> Result<PathBuf, String> {
    workspace_binary("mcp-enterprise", &["cli/src", "gateway/src", "stack/src", "examples/demo-server/src"])
}

/// The built example ID-JAG client (`examples/id-jag-client`), checked like [`binary`].
pub fn example_id_jag_client() -> Result<PathBuf, String> {
    workspace_binary("example-id-jag-client", &["examples/id-jag-client/src"])
}

/// `target/<profile>/<name>` of the workspace, checked to exist and to be newer than every file
/// under `sources` (directories relative to the workspace root) and every extension's `src`.
fn workspace_binary(name: &str, sources: &[&str]) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate the test binary: {e}"))?;
    // target/<profile>/deps/it-<hash> → target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).ok_or("the test binary is not in target/<profile>/deps")?;
    let bin = dir.join(name);
    let built = fs::metadata(&bin)
        .and_then(|m| m.modified())
        .map_err(|e| format!("{} is not usable ({e}); build it with `{BUILD_COMMAND}`", bin.display()))?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut dirs: Vec<PathBuf> = sources.iter().map(|s| root.join(s)).collect();
    if let Ok(entries) = fs::read_dir(root.join("extensions")) {
        dirs.extend(entries.flatten().map(|e| e.path().join("src")));
    }
    if let Some(newer) = dirs.iter().find_map(|dir| newer_than(dir, built)) {
        return Err(format!("{} is older than {}; rebuild it with `{BUILD_COMMAND}`", bin.display(), newer.display()));
    }
    Ok(bin)
}

/// A file under `dir` modified after `time`.
fn newer_than(dir: &Path, time: SystemTime) -> Option<PathBuf> {
    for entry in fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = newer_than(&path, time) {
                return Some(found);
            }
        } else if entry.metadata().and_then(|m| m.modified()).is_ok_and(|m| m > time) {
            return Some(path);
        }
    }
    None
}

/// A running `mcp-enterprise serve --config` process; killed when dropped.
#[derive(Debug)]
pub struct GatewayProcess {
    guard: ChildGuard,
    pid: u32,
    mcp_url: String,
    stderr: PathBuf,
    stdout: PathBuf,
}

impl GatewayProcess {
    /// Writes `config` (TOML) to `dir/gateway.toml` and serves it, logging at `rust_log` to
    /// `dir/gateway.stderr`. Waits until the gateway prints its endpoint.
    pub async fn start(dir: &Path, config: &str, rust_log: &str) -> io::Result<Self> {
        let file = dir.join("gateway.toml");
        fs::write(&file, config)?;
        let file = file.to_str().ok_or_else(|| io::Error::other("not a UTF-8 path"))?.to_owned();
        Self::start_args(dir, &["serve", "--config", &file], rust_log).await
    }

    /// Runs the binary with `args` (e.g. `serve --upstream URL`, or `serve` for the embedded demo),
    /// logging at `rust_log` to `dir/gateway.stderr`. Waits until it prints its endpoint.
    pub async fn start_args(dir: &Path, args: &[&str], rust_log: &str) -> io::Result<Self> {
        let bin = binary().map_err(io::Error::other)?;
        let stdout = dir.join("gateway.stdout");
        let stderr = dir.join("gateway.stderr");
        let child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", rust_log)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(File::create(&stdout)?)
            .stderr(File::create(&stderr)?)
            .spawn()?;
        let pid = child.id();
        let mut guard = ChildGuard::new("mcp-enterprise", child);
        let started = Instant::now();
        loop {
            let out = fs::read_to_string(&stdout).unwrap_or_default();
            if let Some(url) = out.lines().find_map(|l| l.trim().strip_prefix("MCP endpoint :")) {
                let mcp_url = url.trim().to_owned();
                return Ok(Self { guard, pid, mcp_url, stderr, stdout });
            }
            if let Some(status) = guard.try_wait()? {
                return Err(io::Error::other(format!(
                    "the gateway exited ({status}) before listening; stderr:\n{}",
                    read_log(&stderr)
                )));
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                return Err(io::Error::other(format!("the gateway did not start; stderr:\n{}", read_log(&stderr))));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The MCP endpoint it printed, e.g. `http://127.0.0.1:40123/mcp`.
    pub fn mcp_url(&self) -> &str {
        &self.mcp_url
    }

    /// `host:port` of the listener.
    pub fn addr(&self) -> std::net::SocketAddr {
        let authority = self.mcp_url.trim_start_matches("http://").split('/').next().unwrap_or_default();
        authority.parse().unwrap_or_else(|_| panic!("not a socket address: {authority}"))
    }

    /// Everything the process wrote to stderr so far (all of it, not a tail).
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.stderr).unwrap_or_default()).into_owned()
    }

    /// Everything the process wrote to stdout so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.stdout).unwrap_or_default()).into_owned()
    }

    /// A field of `/proc/<pid>/status` in KiB (`VmHWM`: peak resident set, `VmRSS`: now).
    pub fn status_kib(&self, field: &str) -> io::Result<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| io::Error::other(format!("no {field} in /proc/{}/status", self.pid)))
    }

    /// How many file descriptors the process has open (sockets included).
    pub fn open_fds(&self) -> io::Result<usize> {
        Ok(fs::read_dir(format!("/proc/{}/fd", self.pid))?.count())
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.guard.try_wait(), Ok(None))
    }

    /// Sends `signal` (e.g. `TERM`, `INT`) with `kill(1)`.
    pub fn signal(&self, signal: &str) -> io::Result<()> {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.pid.to_string()).status()?;
        if status.success() { Ok(()) } else { Err(io::Error::other(format!("kill -{signal} {}: {status}", self.pid))) }
    }

    /// Waits up to `timeout` for the process to exit by itself; its exit status.
    pub async fn wait_exit(&mut self, timeout: Duration) -> io::Result<std::process::ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.guard.try_wait()? {
                return Ok(status);
            }
            if started.elapsed() > timeout {
                return Err(io::Error::other(format!("still running after {timeout:?}")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM-free hard stop (SIGKILL) and reaps it.
    pub fn stop(self) -> io::Result<()> {
        self.guard.stop().map(|_| ())
    }
}
