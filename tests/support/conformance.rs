//! Running the official MCP conformance suite (`@modelcontextprotocol/conformance`) against a
//! server URL and reading its per-check results.
//!
//! `conformance server --url URL --suite all -o DIR` writes one directory per scenario,
//! `DIR/server-<scenario>-<ISO timestamp with ':' and '.' replaced by '-'>/checks.json`, holding a
//! JSON array of checks:
//!
//! ```json
//! [{ "id": "server-initialize", "name": "ServerInitialize", "description": "...",
//!    "status": "SUCCESS", "timestamp": "...", "specReferences": [...],
//!    "errorMessage": "only on FAILURE/WARNING", "details": {...} }]
//! ```
//!
//! `status` is one of `SUCCESS`, `FAILURE`, `WARNING`, `SKIPPED`, `INFO`. A check id can occur more
//! than once in a scenario (e.g. `incoming-sse-event`), so [`CheckResults`] keeps every occurrence
//! and compares an aggregate (the most severe status). A scenario that crashes writes no
//! `checks.json`; its checks are then simply absent.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::peers::Peers;

/// Which conformance release runs. Both are installed side by side (see `tests/peers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Suite {
    /// `@modelcontextprotocol/conformance` 0.1.16, the latest stable release (protocol
    /// revisions up to 2025-11-25).
    Stable,
    /// `@modelcontextprotocol/conformance` 0.2.0-alpha.12 (npm alias `conformance-next`): adds
    /// 2026-07-28 scenarios (`server-stateless`, `http-header-validation`, `caching`,
    /// `input-required-result-*`, tasks extension, ...), `server-session-lifecycle` and a
    /// `wire-schema-valid` check on every scenario.
    Next,
}

impl Suite {
    /// Both suites, stable first.
    pub const ALL: [Suite; 2] = [Suite::Stable, Suite::Next];

    /// The npm package directory under `node_modules`.
    pub fn package(self) -> &'static str {
        match self {
            Suite::Stable => "@modelcontextprotocol/conformance",
            Suite::Next => "conformance-next",
        }
    }

    /// A short name for file names and reports.
    pub fn label(self) -> &'static str {
        match self {
            Suite::Stable => "stable",
            Suite::Next => "next",
        }
    }

    /// The CLI arguments after `server --url URL -o DIR`.
    fn extra_args(self) -> &'static [&'static str] {
        match self {
            // Every server scenario, pending ones included.
            Suite::Stable => &["--suite", "all"],
            // Every server scenario (pending, draft and extension ones included); each runs at
            // the wire version it was introduced for (2025-11-25 or 2026-07-28). The per-scenario
            // timeout bounds a scenario that hangs (e.g. a proxy holding an SSE stream open).
            Suite::Next => &["--suite", "all", "--timeout", "20000"],
        }
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A check's status in `checks.json`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum CheckStatus {
    /// `INFO`: a trace entry, not a verdict.
    Info,
    /// `SKIPPED`.
    Skipped,
    /// `SUCCESS`.
    Success,
    /// `WARNING`: a SHOULD is not met.
    Warning,
    /// A status this code does not know.
    Other(String),
    /// `FAILURE`.
    Failure,
}

impl CheckStatus {
    /// Parses the `status` field.
    pub fn parse(status: &str) -> Self {
        match status {
            "SUCCESS" => Self::Success,
            "FAILURE" => Self::Failure,
            "WARNING" => Self::Warning,
            "SKIPPED" => Self::Skipped,
            "INFO" => Self::Info,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The status as written in `checks.json`.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Success => "SUCCESS",
            Self::Failure => "FAILURE",
            Self::Warning => "WARNING",
            Self::Skipped => "SKIPPED",
            Self::Info => "INFO",
            Self::Other(other) => other,
        }
    }
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `(scenario, check id)`.
pub type CheckKey = (String, String);

/// Every occurrence of one check id in one scenario.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckOutcome {
    /// The status of each occurrence, in file order.
    pub statuses: Vec<CheckStatus>,
    /// The `errorMessage` of each occurrence that has one.
    pub messages: Vec<String>,
}

impl CheckOutcome {
    /// The most severe status: FAILURE > unknown > WARNING > SUCCESS > SKIPPED > INFO.
    pub fn status(&self) -> CheckStatus {
        self.statuses.iter().max().cloned().unwrap_or(CheckStatus::Info)
    }

    /// Whether the aggregate status is SUCCESS.
    pub fn is_success(&self) -> bool {
        self.status() == CheckStatus::Success
    }

    /// The first error message, shortened to `max` characters.
    pub fn short_message(&self, max: usize) -> String {
        let message = self.messages.first().map(String::as_str).unwrap_or_default();
        let message = message.replace('\n', " ");
        if message.chars().count() > max {
            let mut short: String = message.chars().take(max.saturating_sub(1)).collect();
            short.push('…');
            short
        } else {
            message
        }
    }
}

/// All checks of one suite run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckResults {
    /// Scenarios that wrote a `checks.json`.
    pub scenarios: BTreeSet<String>,
    /// `(scenario, check id)` → outcome.
    pub checks: BTreeMap<CheckKey, CheckOutcome>,
}

impl CheckResults {
    /// Reads every `*/checks.json` under `dir` (the `-o` directory of one run).
    pub fn read_dir(dir: &Path) -> io::Result<Self> {
        let mut results = Self::default();
        let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(fs::DirEntry::file_name);
        for entry in entries {
            let path = entry.path().join("checks.json");
            if !path.is_file() {
                continue;
            }
            let dir_name = entry.file_name().to_string_lossy().into_owned();
            let scenario = scenario_from_dir_name(&dir_name).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, format!("unexpected result directory {dir_name:?}"))
            })?;
            if !results.scenarios.insert(scenario.clone()) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("scenario {scenario} has two result directories in {}", dir.display()),
                ));
            }
            let text = fs::read_to_string(&path)?;
            let checks: Value = serde_json::from_str(&text)
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {err}", path.display())))?;
            let checks = checks.as_array().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, format!("{} is not a JSON array", path.display()))
            })?;
            for check in checks {
                let id = check.get("id").and_then(Value::as_str).unwrap_or("<no id>").to_owned();
                let status = CheckStatus::parse(check.get("status").and_then(Value::as_str).unwrap_or("<no status>"));
                let outcome = results.checks.entry((scenario.clone(), id)).or_default();
                outcome.statuses.push(status);
                if let Some(message) = check.get("errorMessage").and_then(Value::as_str) {
                    outcome.messages.push(message.to_owned());
                }
            }
        }
        Ok(results)
    }

    /// How many checks have aggregate status `status`.
    pub fn count(&self, status: &CheckStatus) -> usize {
        self.checks.values().filter(|outcome| &outcome.status() == status).count()
    }

    /// The keys of the checks whose aggregate status is SUCCESS.
    pub fn successes(&self) -> BTreeSet<&CheckKey> {
        self.checks.iter().filter(|(_, outcome)| outcome.is_success()).map(|(key, _)| key).collect()
    }

    /// Whether `(scenario, check)` passed.
    pub fn passed(&self, scenario: &str, check: &str) -> bool {
        self.checks.get(&(scenario.to_owned(), check.to_owned())).is_some_and(CheckOutcome::is_success)
    }

    /// `"N checks: a SUCCESS, b FAILURE, ..."`.
    pub fn summary(&self) -> String {
        let mut counts: BTreeMap<CheckStatus, usize> = BTreeMap::new();
        for outcome in self.checks.values() {
            *counts.entry(outcome.status()).or_default() += 1;
        }
        let parts: Vec<String> = counts.iter().rev().map(|(status, n)| format!("{n} {status}")).collect();
        format!("{} scenarios, {} checks: {}", self.scenarios.len(), self.checks.len(), parts.join(", "))
    }

    /// One line per check: scenario, check id, status, first error message.
    pub fn table(&self) -> String {
        let rows: Vec<[String; 4]> = self
            .checks
            .iter()
            .map(|((scenario, id), outcome)| {
                [scenario.clone(), id.clone(), outcome.status().to_string(), outcome.short_message(90)]
            })
            .collect();
        render_table(&["scenario", "check", "status", "message"], &rows)
    }
}

/// `server-<scenario>-2026-11-25T09-02-47-277Z` → `<scenario>`.
pub fn scenario_from_dir_name(name: &str) -> Option<String> {
    let rest = name.strip_prefix("server-")?;
    // The timestamp is `YYYY-MM-DDTHH-MM-SS-mmmZ`: 24 characters, preceded by '-'.
    const STAMP: usize = "2026-11-25T09-02-47-277Z".len();
    let split = rest.len().checked_sub(STAMP + 1)?;
    let (scenario, stamp) = rest.split_at(split);
    let stamp = stamp.strip_prefix('-')?;
    let shape_ok = stamp.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 | 13 | 16 | 19 => b == b'-',
        10 => b == b'T',
        23 => b == b'Z',
        _ => b.is_ascii_digit(),
    });
    (shape_ok && !scenario.is_empty()).then(|| scenario.to_owned())
}

/// One finished (or timed-out) run of the conformance CLI.
#[derive(Debug, Clone)]
pub struct ConformanceRun {
    /// Which suite ran.
    pub suite: Suite,
    /// The MCP endpoint tested.
    pub url: String,
    /// The `-o` directory with one sub-directory per scenario.
    pub results_dir: PathBuf,
    /// The CLI's stdout and stderr.
    pub log: PathBuf,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// The CLI's exit code (non-zero whenever any check fails; `None` if it was killed).
    pub exit_code: Option<i32>,
    /// Whether the run was killed after [`RUN_TIMEOUT`]. The results are then partial.
    pub timed_out: bool,
    /// Every check of every scenario that finished.
    pub results: CheckResults,
}

/// The longest a whole suite run may take before it is killed (a full run takes 1–2 s against
/// server-everything; the stable suite has no per-scenario timeout of its own).
pub const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs every server scenario of `suite` against `url`, writing into `out_dir` (created;
/// `out_dir/results` for `-o`, `out_dir/conformance.log` for the CLI output), and reads the
/// results. The CLI process is killed if the run exceeds [`RUN_TIMEOUT`] or the future is dropped.
pub async fn run(peers: &Peers, suite: Suite, url: &str, out_dir: &Path) -> io::Result<ConformanceRun> {
    run_with_timeout(peers, suite, url, out_dir, RUN_TIMEOUT).await
}

/// [`run`] with a custom overall timeout.
pub async fn run_with_timeout(
    peers: &Peers,
    suite: Suite,
    url: &str,
    out_dir: &Path,
    timeout: Duration,
) -> io::Result<ConformanceRun> {
    let results_dir = out_dir.join("results");
    fs::create_dir_all(&results_dir)?;
    let log = out_dir.join("conformance.log");
    let out = File::create(&log)?;
    let err = out.try_clone()?;
    let cli = peers.package_dir(suite.package()).join("dist").join("index.js");
    if !cli.is_file() {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("{} is missing", cli.display())));
    }

    let mut cmd = tokio::process::Command::from(peers.node_command());
    cmd.arg(&cli)
        .arg("server")
        .arg("--url")
        .arg(url)
        .arg("-o")
        .arg(&results_dir)
        .args(suite.extra_args())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .kill_on_drop(true);

    let start = Instant::now();
    let mut child = cmd.spawn()?;
    let (exit_code, timed_out) = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => (status?.code(), false),
        Err(_) => {
            child.kill().await?;
            (None, true)
        }
    };
    let elapsed = start.elapsed();
    let results = CheckResults::read_dir(&results_dir)?;
    Ok(ConformanceRun { suite, url: url.to_owned(), results_dir, log, elapsed, exit_code, timed_out, results })
}

/// A check that passed against the server directly but not through the proxy.
#[derive(Debug, Clone)]
pub struct Regression {
    /// `(scenario, check id)`.
    pub key: CheckKey,
    /// Through the proxy; `None` if the check did not occur at all.
    pub via: Option<CheckOutcome>,
}

/// Every check that is SUCCESS in `direct` and not SUCCESS (or absent) in `via`.
pub fn regressions(direct: &CheckResults, via: &CheckResults) -> Vec<Regression> {
    direct
        .successes()
        .into_iter()
        .filter(|key| !via.checks.get(*key).is_some_and(CheckOutcome::is_success))
        .map(|key| Regression { key: key.clone(), via: via.checks.get(key).cloned() })
        .collect()
}

/// Checks whose aggregate status differs between the runs in any other way (informational:
/// e.g. FAILURE directly but SUCCESS through the proxy, or WARNING → FAILURE).
pub fn other_differences(direct: &CheckResults, via: &CheckResults) -> Vec<[String; 4]> {
    let keys: BTreeSet<&CheckKey> = direct.checks.keys().chain(via.checks.keys()).collect();
    keys.into_iter()
        .filter_map(|key| {
            let d = direct.checks.get(key).map(CheckOutcome::status);
            let v = via.checks.get(key).map(CheckOutcome::status);
            let regression = d == Some(CheckStatus::Success);
            (d != v && !regression).then(|| {
                let show = |s: Option<CheckStatus>| s.map_or_else(|| "MISSING".to_owned(), |s| s.to_string());
                [key.0.clone(), key.1.clone(), show(d), show(v)]
            })
        })
        .collect()
}

/// A table of regressions: scenario, check, direct status, proxied status, proxied message.
pub fn regression_table(regressions: &[Regression]) -> String {
    let rows: Vec<[String; 5]> = regressions
        .iter()
        .map(|r| {
            let (status, message) = match &r.via {
                Some(outcome) => (outcome.status().to_string(), outcome.short_message(100)),
                None => ("MISSING".to_owned(), "check absent (scenario crashed, timed out or was not run)".to_owned()),
            };
            [r.key.0.clone(), r.key.1.clone(), "SUCCESS".to_owned(), status, message]
        })
        .collect();
    render_table(&["scenario", "check", "direct", "via proxy", "message via proxy"], &rows)
}

/// Renders rows as a left-aligned plain-text table with a header line.
pub fn render_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                let _ = write!(text, "{cell}{}  ", " ".repeat(pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line(&mut rule.iter().map(String::as_str));
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_names_are_recovered_from_result_directories() {
        assert_eq!(
            scenario_from_dir_name("server-tools-call-simple-text-2026-11-25T09-02-46-826Z").as_deref(),
            Some("tools-call-simple-text")
        );
        assert_eq!(scenario_from_dir_name("server-ping-2026-01-05T00-00-00-000Z").as_deref(), Some("ping"));
        assert_eq!(scenario_from_dir_name("server-ping"), None);
        assert_eq!(scenario_from_dir_name("client-ping-2026-01-05T00-00-00-000Z"), None);
        assert_eq!(scenario_from_dir_name("server--2026-01-05T00-00-00-000Z"), None);
    }

    #[test]
    fn aggregate_status_is_the_most_severe() {
        let outcome = |s: &[&str]| CheckOutcome {
            statuses: s.iter().map(|s| CheckStatus::parse(s)).collect(),
            messages: Vec::new(),
        };
        assert_eq!(outcome(&["INFO", "SUCCESS"]).status(), CheckStatus::Success);
        assert_eq!(outcome(&["INFO", "FAILURE", "INFO"]).status(), CheckStatus::Failure);
        assert_eq!(outcome(&["SUCCESS", "WARNING"]).status(), CheckStatus::Warning);
        assert_eq!(outcome(&["SUCCESS", "BOGUS"]).status(), CheckStatus::Other("BOGUS".into()));
    }

    #[test]
    fn regressions_cover_changed_and_missing_checks() {
        let results = |rows: &[(&str, &str, &str)]| {
            let mut r = CheckResults::default();
            for (scenario, id, status) in rows {
                r.scenarios.insert((*scenario).to_owned());
                r.checks
                    .entry(((*scenario).to_owned(), (*id).to_owned()))
                    .or_default()
                    .statuses
                    .push(CheckStatus::parse(status));
            }
            r
        };
        let direct =
            results(&[("a", "x", "SUCCESS"), ("a", "y", "SUCCESS"), ("b", "z", "SUCCESS"), ("c", "w", "FAILURE")]);
        let via = results(&[("a", "x", "SUCCESS"), ("a", "y", "FAILURE"), ("c", "w", "SUCCESS")]);
        let found: Vec<_> = regressions(&direct, &via).into_iter().map(|r| (r.key, r.via.is_some())).collect();
        assert_eq!(found, vec![(("a".into(), "y".into()), true), (("b".into(), "z".into()), false)]);
        assert_eq!(other_differences(&direct, &via), vec![["c", "w", "FAILURE", "SUCCESS"].map(String::from)]);
        assert!(regression_table(&regressions(&direct, &via)).contains("MISSING"));
    }
}
