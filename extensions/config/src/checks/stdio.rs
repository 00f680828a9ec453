//! `upstream.command` and its settings: exactly one of `url` and `command`, a usable command,
//! environment names, an existing working directory, bounds in range, and nothing that needs an
//! HTTP upstream (propagation, fetching tools at start-up).

use serde_json::Value;

use super::{Checker, p};
use crate::error::DiagnosticKind;
use crate::stdio::valid_env_name;

impl Checker<'_> {
    pub(super) fn stdio(&mut self) {
        if !self.ok("upstream") {
            return;
        }
        let url = self.get("upstream.url").and_then(Value::as_str).is_some_and(|u| !u.is_empty());
        let command = self.get("upstream.command");
        match (url, command) {
            (false, None) => self.problem(
                DiagnosticKind::MissingKey,
                p("upstream.url"),
                "the upstream: an http:// URL (`upstream.url`) or a local server to run (`upstream.command`)",
                "neither `url` nor `command` in `upstream`",
            ),
            (true, Some(_)) => self.problem(
                DiagnosticKind::Conflict,
                p("upstream.command"),
                "either `url` or `command` (an HTTP upstream or a stdio one), not both",
                "both",
            ),
            _ => {}
        }
        let Some(command) = command else {
            for key in ["env", "cwd", "stdio"] {
                if self.get(&format!("upstream.{key}")).is_some() {
                    self.problem(
                        DiagnosticKind::Conflict,
                        p(&format!("upstream.{key}")),
                        "no stdio settings without `upstream.command`",
                        "a stdio setting for an HTTP upstream",
                    );
                }
            }
            return;
        };
        let argv: Vec<&str> =
            command.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        if argv.first().is_none_or(|p| p.trim().is_empty()) {
            self.invalid("upstream.command", "a list: the program, then its arguments (e.g. [\"npx\", \"-y\", \"@modelcontextprotocol/server-everything\", \"stdio\"])");
        } else if argv.iter().any(|a| a.contains('\0')) {
            self.invalid("upstream.command", "arguments without NUL characters");
        }
        if let Some(env) = self.get("upstream.env").and_then(Value::as_object) {
            let bad: Vec<String> = env.keys().filter(|k| !valid_env_name(k)).cloned().collect();
            for name in bad {
                let path = p("upstream.env").key(&name);
                self.problem(
                    DiagnosticKind::InvalidValue,
                    path,
                    "a variable name (not empty, no `=`)",
                    format!("{name:?}"),
                );
            }
        }
        if let Some(names) = self.get("upstream.stdio.inherit_env").and_then(Value::as_array) {
            for (i, name) in names.iter().enumerate() {
                if name.as_str().is_some_and(|n| !valid_env_name(n)) {
                    self.invalid(&format!("upstream.stdio.inherit_env[{i}]"), "a variable name (not empty, no `=`)");
                }
            }
        }
        if self.sound("upstream.cwd")
            && let Some(cwd) = self.str("upstream.cwd")
            && !std::path::Path::new(cwd).is_dir()
        {
            self.invalid("upstream.cwd", "an existing directory (the child's working directory)");
        }
        let ranges: [(&str, u64, u64, &str); 5] = [
            ("upstream.stdio.max_sessions", 1, 10_000, "a number of sessions from 1 to 10000"),
            ("upstream.stdio.idle_timeout_secs", 1, 86_400, "a number of seconds from 1 to 86400"),
            ("upstream.stdio.max_line_bytes", 1024, 64 * 1024 * 1024, "a number of bytes from 1024 to 67108864"),
            ("upstream.stdio.input_timeout_secs", 1, 3_600, "a number of seconds from 1 to 3600"),
            ("upstream.stdio.spare_children", 0, 16, "a number of spare children from 0 to 16"),
        ];
        for (path, min, max, expected) in ranges {
            if let Some(n) = self.get(path).and_then(Value::as_u64)
                && !(min..=max).contains(&n)
            {
                self.invalid(path, expected);
            }
        }
        // spares count against the children's bound: as many as it would leave no session
        if let Some(spares) = self.get("upstream.stdio.spare_children").and_then(Value::as_u64)
            && (1..=16).contains(&spares)
        {
            let max = self
                .get("upstream.stdio.max_sessions")
                .and_then(Value::as_u64)
                .unwrap_or(crate::stdio::StdioConfig::default().max_sessions as u64);
            if spares >= max && (1..=10_000).contains(&max) {
                self.invalid(
                    "upstream.stdio.spare_children",
                    format!("fewer spare children than `upstream.stdio.max_sessions` ({max})"),
                );
            }
        }
        if let Some(mode) = self.str("upstream.propagation.mode")
            && mode != "none"
        {
            self.problem(
                DiagnosticKind::Conflict,
                p("upstream.propagation.mode"),
                "`none` with `upstream.command` (a stdio child gets no caller identity; give it a credential of its own in `upstream.env`)",
                format!("`{mode}`"),
            );
        }
        if self.get("policy.fetch_tools_at_startup").and_then(Value::as_bool) == Some(true) {
            self.problem(
                DiagnosticKind::Conflict,
                p("policy.fetch_tools_at_startup"),
                "false with `upstream.command` (tools are fetched over HTTP; the policy layer learns them from the answers)",
                "true",
            );
        }
    }
}
