//! `upstream.command`: a local MCP server run as a child process speaking newline-delimited
//! JSON-RPC on stdin/stdout, bridged to Streamable HTTP by the gateway (one child per client
//! session). The bounds of a route's children are under `upstream.stdio`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The bounds and environment of a stdio upstream's children.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StdioConfig {
    /// Children (client sessions) at once, 1 to 10000; an `initialize` beyond is refused with
    /// `503` and a JSON-RPC error. Default: 16.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// A session with nothing in flight, no open `GET` stream and no request for this many
    /// seconds (1 to 86400) is ended and its child killed. Default: 600.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    /// The longest line (one JSON-RPC message) read from a child and the largest request body
    /// written to it, 1024 to 67108864 bytes; longer lines are dropped with a warning.
    /// Default: 4194304 (4 MiB).
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// The only variables a child takes from the gateway's environment (when set there); the
    /// rest of the gateway's environment, its secrets included, is never passed on.
    /// Default: `PATH`, `HOME`, `LANG`, `TZ`, `TMPDIR`.
    #[serde(default = "default_inherit_env")]
    pub inherit_env: Vec<String>,
    /// How long a 2026-07-28 client's call waits, parked at its child, for the client to retry it
    /// with the input the child asked for (`input_required`, MRTR), 1 to 3600 seconds; then the
    /// call is abandoned at the child and its `requestState` refused. Default: 120.
    #[serde(default = "default_input_timeout")]
    pub input_timeout_secs: u64,
    /// Children started ahead of need, 0 to 16 and below `max_sessions`: a new session (or a
    /// restart, or a new pool of 2026-07-28 clients) takes a spare that has already loaded
    /// instead of waiting for a process to start (hundreds of milliseconds for `node`/`python`
    /// servers). Spares count against `max_sessions` and get no client's data until taken.
    /// Default: 0 (a child starts when it is needed).
    #[serde(default)]
    pub spare_children: usize,
}

impl Default for StdioConfig {
    fn default() -> Self {
        Self {
            max_sessions: default_max_sessions(),
            idle_timeout_secs: default_idle_timeout(),
            max_line_bytes: default_max_line_bytes(),
            inherit_env: default_inherit_env(),
            input_timeout_secs: default_input_timeout(),
            spare_children: 0,
        }
    }
}

fn default_max_sessions() -> usize {
    16
}

fn default_idle_timeout() -> u64 {
    600
}

fn default_input_timeout() -> u64 {
    120
}

fn default_max_line_bytes() -> usize {
    4 * 1024 * 1024
}

/// The variables a child inherits by default.
pub const DEFAULT_INHERIT_ENV: &[&str] = &["PATH", "HOME", "LANG", "TZ", "TMPDIR"];

fn default_inherit_env() -> Vec<String> {
    DEFAULT_INHERIT_ENV.iter().map(|s| (*s).to_owned()).collect()
}

/// Whether `name` can be an environment variable's name.
pub(crate) fn valid_env_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['=', '\0'])
}
