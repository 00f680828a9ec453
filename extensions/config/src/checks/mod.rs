//! Checks beyond the schema: settings that cannot work together, addresses and names with their
//! own grammar, things the settings point at (an audit directory that must be writable, key files
//! that must load), and each extension's own `from_config` validation, run without starting anything.
//!
//! They read the resolved document as JSON, so one section's structural problems never hide
//! another section's conflicts; a section with structural problems is not built.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::DiagnosticKind;
use crate::model::CURRENT_VERSION;
use crate::path::KeyPath;
use crate::validate::{Problem, check_url, shown};

mod outbound;
mod propagation;
mod redis;
mod sections;
mod stdio;
mod traces;

pub(crate) struct Checker<'a> {
    doc: &'a Value,
    secrets: &'a BTreeSet<KeyPath>,
    /// Paths with structural problems: checks reading them are skipped, sections holding them are
    /// not built.
    broken: &'a BTreeSet<KeyPath>,
    pub(crate) problems: Vec<Problem>,
}

fn p(path: &str) -> KeyPath {
    KeyPath::parse(path)
}

impl<'a> Checker<'a> {
    pub(crate) fn new(doc: &'a Value, secrets: &'a BTreeSet<KeyPath>, broken: &'a BTreeSet<KeyPath>) -> Self {
        Self { doc, secrets, broken, problems: Vec::new() }
    }

    fn get(&self, path: &str) -> Option<&'a Value> {
        p(path).find(self.doc).filter(|v| !v.is_null())
    }

    fn str(&self, path: &str) -> Option<&'a str> {
        self.get(path).and_then(Value::as_str)
    }

    /// Whether nothing at or below `path` has a structural problem.
    fn ok(&self, path: &str) -> bool {
        let path = p(path);
        !self.broken.iter().any(|b| b.starts_with(&path))
    }

    /// Whether `path` itself is sound: no problem at, above or below it.
    fn sound(&self, path: &str) -> bool {
        let path = p(path);
        !self.broken.iter().any(|b| b.starts_with(&path) || path.starts_with(b))
    }

    fn found(&self, path: &KeyPath) -> String {
        let secret = self.secrets.iter().any(|s| path.starts_with(s)) || crate::secret::is_schema_secret(path);
        path.find(self.doc).map_or_else(|| "nothing".to_owned(), |v| shown(v, secret))
    }

    fn problem(&mut self, kind: DiagnosticKind, path: KeyPath, expected: impl Into<String>, found: impl Into<String>) {
        self.problems.push(Problem { kind, path, expected: expected.into(), found: found.into(), at_key: false });
    }

    fn invalid(&mut self, path: &str, expected: impl Into<String>) {
        let path = p(path);
        let found = self.found(&path);
        self.problem(DiagnosticKind::InvalidValue, path, expected, found);
    }

    pub(crate) fn run(&mut self) {
        self.public_values();
        self.document();
        self.listen();
        self.admin();
        self.dpop();
        self.inherited();
        self.workload_identity();
        self.propagation();
        self.stdio();
        self.audit();
        self.server_card();
        self.client();
        self.rate_limits();
        self.redis();
        self.traces();
        self.egress();
        self.trusted_proxies();
        self.build_sections();
    }

    /// The server card is published and client configurations are shared: no secret reference
    /// may end up in them.
    fn public_values(&mut self) {
        let published = self.get("server_card").is_some() || self.get("client").is_some();
        let secrets: Vec<KeyPath> = self.secrets.iter().cloned().collect();
        for path in secrets {
            let text = path.to_string();
            let expected = if text.starts_with("server_card")
                || (text == "resource" && self.get("server_card").is_some())
            {
                "a public value (the server card is served to anyone)"
            } else if text.starts_with("client") || (text == "resource" && published) {
                "a value clients may see (client configurations are shared; use client.headers[].env for a value each client holds)"
            } else {
                continue;
            };
            self.problem(DiagnosticKind::Conflict, path, expected, "a secret reference");
        }
    }

    fn document(&mut self) {
        if self.sound("version")
            && let Some(v) = self.get("version").and_then(Value::as_u64)
            && v != u64::from(CURRENT_VERSION)
        {
            self.invalid("version", format!("{CURRENT_VERSION} (the only format version this build reads)"));
        }
        if self.sound("resource")
            && let Some(resource) = self.str("resource")
            && check_url(resource).is_ok()
            && let Ok(uri) = resource.parse::<http::Uri>()
        {
            let host = uri.host().unwrap_or_default();
            if uri.scheme_str() == Some("http") && !is_loopback_host(host) {
                self.invalid("resource", "an https URL (plain http only for a loopback host)");
            }
            if uri.query().is_some() {
                self.invalid("resource", "a URL without a query (it is the token audience, RFC 8707)");
            }
            let path = uri.path();
            if path.len() > 1 && path.ends_with('/') {
                self.invalid(
                    "resource",
                    "a URL whose path does not end with `/` (the gateway serves MCP at this path)",
                );
            }
        }
        if self.sound("upstream.url")
            && let Some(url) = self.str("upstream.url")
            && check_url(url).is_ok()
            && let Ok(uri) = url.parse::<http::Uri>()
        {
            if !matches!(uri.scheme_str(), Some("http" | "https")) {
                self.invalid("upstream.url", "an http:// or https:// URL");
            } else if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
                self.invalid("upstream.url", "a URL without credentials");
            } else if uri.scheme_str() == Some("http") && self.get("upstream.tls").is_some() {
                self.problem(
                    DiagnosticKind::Conflict,
                    p("upstream.tls"),
                    "no tls section with an http:// upstream (or an https:// upstream.url)",
                    "a tls section",
                );
            }
        }
        self.upstream_tls();
        if let Some(secs) = self.get("upstream.response_timeout_secs").and_then(Value::as_u64)
            && !(1..=86_400).contains(&secs)
        {
            self.invalid("upstream.response_timeout_secs", "a number of seconds from 1 to 86400");
        }
    }

    fn admin(&mut self) {
        let address = self.str("admin.address").filter(|_| self.sound("admin.address")).map(str::parse::<SocketAddr>);
        if let Some(Err(_)) = address {
            self.invalid("admin.address", "a socket address such as 127.0.0.1:9464 or 0.0.0.0:9464");
        }
        let listen = self.str("listen.address").and_then(|a| a.parse::<SocketAddr>().ok());
        if let (Some(Ok(admin)), Some(listen)) = (address, listen)
            && admin == listen
            && admin.port() != 0
        {
            self.problem(
                DiagnosticKind::Conflict,
                p("admin.address"),
                "an address other than listen.address (the admin listener is a socket of its own)",
                admin.to_string(),
            );
        }
    }

    fn listen(&mut self) {
        let address = self.str("listen.address").filter(|_| self.sound("listen.address")).map(str::parse::<SocketAddr>);
        match address {
            Some(Err(_)) => self.invalid("listen.address", "a socket address such as 127.0.0.1:8787 or [::1]:8787"),
            Some(Ok(addr)) if !addr.ip().is_loopback() => {
                let authenticated = ["sso", "dpop", "workload_identity"].iter().any(|s| self.get(s).is_some());
                let insecure = self.get("listen.insecure_listen_any").and_then(Value::as_bool).unwrap_or(false);
                if !authenticated && !insecure {
                    let found = format!("{addr} with no sso, dpop or workload_identity section");
                    self.problem(
                        DiagnosticKind::Conflict,
                        p("listen.address"),
                        "a loopback address, or an authentication section (or listen.insecure_listen_any = true to expose the upstream unauthenticated)",
                        found,
                    );
                }
            }
            _ => {}
        }
        let origins = self.get("listen.allowed_origins").and_then(Value::as_array).cloned().unwrap_or_default();
        for (i, origin) in origins.iter().enumerate() {
            let Some(o) = origin.as_str().filter(|_| self.sound(&format!("listen.allowed_origins[{i}]"))) else {
                continue;
            };
            let ok = check_url(o).is_ok() && o.parse::<http::Uri>().is_ok_and(|u| u.path() == "/" && !o.ends_with('/'));
            if !ok {
                self.invalid(&format!("listen.allowed_origins[{i}]"), "an origin: scheme://host[:port], no path");
            }
        }
    }

    /// `sso.resource` and `workload_identity.resource` equal the top-level resource; `dpop.origin` its
    /// origin (they were filled in from it when absent).
    fn inherited(&mut self) {
        let Some(resource) = self.str("resource").filter(|_| self.sound("resource")) else { return };
        for section in ["sso", "workload_identity"] {
            let path = format!("{section}.resource");
            if !self.sound(&path) {
                continue;
            }
            if let Some(own) = self.str(&path)
                && own != resource
            {
                let found = self.found(&p(&path));
                self.problem(
                    DiagnosticKind::Conflict,
                    p(&path),
                    format!(
                        "the top-level resource {resource:?} (one server, one canonical URI; leave it out to inherit)"
                    ),
                    found,
                );
            }
        }
        if self.sound("dpop.origin")
            && let (Some(origin), Some(expected)) = (self.str("dpop.origin"), origin_of(resource))
            && origin.trim_end_matches('/') != expected
        {
            let found = self.found(&p("dpop.origin"));
            self.problem(
                DiagnosticKind::Conflict,
                p("dpop.origin"),
                format!("the origin of the top-level resource, {expected:?} (DPoP proofs name the URL clients call)"),
                found,
            );
        }
    }

    fn dpop(&mut self) {
        if self.get("dpop").is_none() {
            return;
        }
        let has_sso = self.get("sso").is_some();
        // the co-located authorization server judges the DPoP-bound tokens it issues
        let has_as = self.get("workload_identity.authorization_server").is_some();
        if !has_sso && !has_as && self.get("dpop.static_validator").is_none() {
            self.problem(
                DiagnosticKind::Conflict,
                p("dpop"),
                "a token validator for DPoP-bound tokens: an `sso` section (its issuers judge the tokens), a `workload_identity.authorization_server` (its own tokens) or `dpop.static_validator`",
                "a dpop section with neither",
            );
        }
        if !has_sso
            && self.sound("dpop.accept_bearer")
            && self.get("dpop.accept_bearer").and_then(Value::as_bool) == Some(true)
        {
            self.problem(
                DiagnosticKind::Conflict,
                p("dpop.accept_bearer"),
                "an `sso` section to judge the bearer tokens this lets through (or accept_bearer = false)",
                "accept_bearer = true without an sso section",
            );
        }
        let mode = self.str("dpop.nonce.mode").unwrap_or("off");
        let keys = self.get("dpop.nonce.keys").and_then(Value::as_array).map_or(0, Vec::len);
        if self.ok("dpop.nonce") && mode != "off" && keys == 0 {
            self.problem(
                DiagnosticKind::Conflict,
                p("dpop.nonce.keys"),
                format!("at least one nonce key for nonce mode {mode:?} (a base64url 32-byte secret shared by every replica)"),
                "no keys",
            );
        }
    }

    fn workload_identity(&mut self) {
        if self.get("workload_identity").is_none() {
            return;
        }
        if self.get("workload_identity.direct").is_none()
            && self.get("workload_identity.authorization_server").is_none()
        {
            self.problem(
                DiagnosticKind::Conflict,
                p("workload_identity"),
                "`direct` (workload JWTs as bearer tokens) and/or `authorization_server` (the SEP-1933 token endpoint)",
                "neither, so no workload is ever accepted",
            );
        }
        let mcp_path = self.str("resource").and_then(|r| r.parse::<http::Uri>().ok()).map(|u| u.path().to_owned());
        for (key, default) in [("token_path", "/oauth/token"), ("jwks_path", "/oauth/jwks")] {
            let path = format!("workload_identity.authorization_server.{key}");
            if self.get("workload_identity.authorization_server").is_none() {
                continue;
            }
            let value = self.str(&path).unwrap_or(default);
            if self.sound(&path) && mcp_path.as_deref() == Some(value) {
                self.problem(
                    DiagnosticKind::Conflict,
                    p(&path),
                    "a path other than the MCP endpoint's (the path of `resource`)",
                    format!("{value:?}"),
                );
            }
        }
    }

    fn audit(&mut self) {
        if self.get("audit").is_none() {
            return;
        }
        if !(self.sound("audit.directory") && self.sound("audit.otlp_endpoint") && self.sound("audit.tracing_sink")) {
            return;
        }
        let directory = self.str("audit.directory");
        let sinks = self.get("audit.otlp_endpoint").is_some() || self.str("audit.tracing_sink") == Some("on");
        if directory.is_none() && !sinks {
            self.problem(
                DiagnosticKind::Conflict,
                p("audit"),
                "somewhere to record the trail: audit.directory, audit.otlp_endpoint or audit.tracing_sink = \"on\"",
                "none",
            );
        }
        if let Some(dir) = directory
            && let Err(why) = writable_directory(Path::new(dir))
        {
            let found = if self.is_secret(&p("audit.directory")) { why } else { format!("{dir:?}: {why}") };
            self.problem(
                DiagnosticKind::Unusable,
                p("audit.directory"),
                "a directory the gateway can create and write",
                found,
            );
        }
        if self.sound("audit.otlp_ca_file") {
            self.ca_file("audit.otlp_ca_file");
        }
        if let Some(file) = self.str("audit.signing_key_file").filter(|_| self.sound("audit.signing_key_file")) {
            match std::fs::read(file) {
                Err(e) => self.unusable_file(
                    "audit.signing_key_file",
                    "a readable PKCS#8 Ed25519 key (PEM or base64)",
                    file,
                    &e.to_string(),
                ),
                Ok(bytes) => {
                    if let Err(e) = mcp_enterprise_audit::CheckpointSigner::from_pkcs8(&bytes) {
                        self.unusable_file(
                            "audit.signing_key_file",
                            "a PKCS#8 Ed25519 key (PEM or base64)",
                            file,
                            &e.to_string(),
                        );
                    }
                }
            }
        }
        if let Some(file) = self.str("audit.hmac_key_file").filter(|_| self.sound("audit.hmac_key_file")) {
            match std::fs::read(file) {
                Err(e) => self.unusable_file(
                    "audit.hmac_key_file",
                    "a readable key file of at least 16 bytes",
                    file,
                    &e.to_string(),
                ),
                Ok(bytes) if bytes.len() < 16 => {
                    self.unusable_file(
                        "audit.hmac_key_file",
                        "a key of at least 16 bytes",
                        file,
                        &format!("{} bytes", bytes.len()),
                    );
                }
                Ok(_) => {}
            }
        }
        if self.sound("audit.retention")
            && self.get("audit.retention").and_then(Value::as_str).is_some_and(|r| !r.starts_with('P'))
        {
            self.invalid("audit.retention", "an ISO 8601 duration such as P1Y or P90D");
        }
    }

    fn is_secret(&self, path: &KeyPath) -> bool {
        self.secrets.iter().any(|s| path.starts_with(s))
    }

    fn unusable_file(&mut self, path: &str, expected: &str, file: &str, why: &str) {
        let found = if self.is_secret(&p(path)) { why.to_owned() } else { format!("{file:?}: {why}") };
        self.problem(DiagnosticKind::Unusable, p(path), expected, found);
    }

    fn server_card(&mut self) {
        if self.get("server_card").is_none() {
            return;
        }
        if let Some(name) = self.str("server_card.name").filter(|_| self.sound("server_card.name")) {
            let valid = name.split_once('/').is_some_and(|(ns, n)| {
                !ns.is_empty()
                    && !n.is_empty()
                    && ns.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
                    && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            });
            if !valid {
                self.invalid("server_card.name", "a reverse-DNS name with exactly one `/`, like com.example/weather");
            }
        }
        if let Some(version) = self.str("server_card.version").filter(|_| self.sound("server_card.version"))
            && (version.starts_with(['^', '~', '>', '<', '='])
                || version.contains(['*', 'x', ' ']) && !version.contains('-'))
        {
            self.invalid("server_card.version", "one version such as 1.4.0 (ranges are refused)");
        }
        if let Some(id) =
            self.str("server_card.catalog_identifier").filter(|_| self.sound("server_card.catalog_identifier"))
            && !id.starts_with("urn:")
        {
            self.invalid("server_card.catalog_identifier", "a URN such as urn:air:example.com:weather");
        }
    }

    fn client(&mut self) {
        if let Some(name) = self.str("client.name").filter(|_| self.sound("client.name"))
            && (name.is_empty()
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '[' | ']')))
        {
            self.invalid("client.name", "a name of letters, digits, `_`, `-`, `[` and `]`");
        }
        let headers = self.get("client.headers").and_then(Value::as_array).cloned().unwrap_or_default();
        for (i, header) in headers.iter().enumerate() {
            let at = format!("client.headers[{i}]");
            if !self.ok(&at) {
                continue;
            }
            let name = header.get("name").and_then(Value::as_str).unwrap_or_default();
            if name.is_empty() || http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                self.invalid(&format!("{at}.name"), "an HTTP header name");
            }
            if name.eq_ignore_ascii_case("authorization") && self.get("client.oauth").is_some() {
                self.problem(
                    DiagnosticKind::Conflict,
                    p(&format!("{at}.name")),
                    "no Authorization header when client.oauth is set (clients obtain the token by OAuth)",
                    "an Authorization header",
                );
            }
            match (header.get("value").filter(|v| !v.is_null()), header.get("env").filter(|v| !v.is_null())) {
                (Some(_), Some(_)) | (None, None) => self.problem(
                    DiagnosticKind::Conflict,
                    p(&at),
                    "exactly one of `value` (a constant) and `env` (the client's environment variable)",
                    if header.get("env").is_some() { "both" } else { "neither" },
                ),
                (None, Some(env)) => {
                    let valid = env.as_str().is_some_and(|e| {
                        e.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                            && e.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    });
                    if !valid {
                        self.invalid(&format!("{at}.env"), "an environment variable name (letters, digits, `_`)");
                    }
                }
                _ => {}
            }
        }
    }

    /// Each extension's own validation (`from_config`), without starting anything.
    /// Rate limits: unique names, no repeated key part, usable filters, a rate the GCRA can hold
    /// (an emission interval of at least 1 µs, a burst allowance of at most 100 years).
    fn rate_limits(&mut self) {
        let limits = self.get("rate_limits").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut names = BTreeSet::new();
        for (i, limit) in limits.iter().enumerate() {
            let at = |key: &str| format!("rate_limits[{i}].{key}");
            if self.sound(&at("name"))
                && let Some(name) = limit.get("name").and_then(Value::as_str)
                && !names.insert(name.to_owned())
            {
                self.invalid(
                    &at("name"),
                    "a name no other rate limit has (429 responses and the audit trail report it)",
                );
            }
            if self.sound(&at("key"))
                && let Some(parts) = limit.get("key").and_then(Value::as_array)
            {
                let mut seen = BTreeSet::new();
                for (j, part) in parts.iter().enumerate() {
                    if let Some(part) = part.as_str()
                        && !seen.insert(part)
                    {
                        self.invalid(&format!("rate_limits[{i}].key[{j}]"), "a key part not already listed");
                    }
                }
            }
            for (j, method) in limit.get("methods").and_then(Value::as_array).into_iter().flatten().enumerate() {
                let path = format!("rate_limits[{i}].methods[{j}]");
                if self.sound(&path) && method.as_str().is_some_and(|m| m.is_empty() || m.contains(char::is_whitespace))
                {
                    self.invalid(&path, "a JSON-RPC method name, e.g. `tools/call`");
                }
            }
            for (j, tool) in limit.get("tools").and_then(Value::as_array).into_iter().flatten().enumerate() {
                let path = format!("rate_limits[{i}].tools[{j}]");
                if self.sound(&path) && tool.as_str().is_some_and(str::is_empty) {
                    self.invalid(&path, "a tool, prompt or resource name or glob (`*` any run of characters, `?` one)");
                }
            }
            let number = |key: &str| limit.get(key).and_then(Value::as_u64);
            if self.ok(&format!("rate_limits[{i}]"))
                && let Some(requests) = number("requests").filter(|r| *r > 0)
            {
                let per_secs = u128::from(number("per_secs").unwrap_or(1));
                let burst = u128::from(number("burst").unwrap_or(requests));
                let requests = u128::from(requests);
                if per_secs * 1_000_000 < requests {
                    self.invalid(&at("requests"), "at most 1,000,000 requests per second (per_secs × 10⁶)");
                } else if burst * per_secs > requests * 100 * 31_536_000 {
                    self.invalid(&at("burst"), "a burst the limit refills within 100 years");
                }
            }
        }
    }
}

/// `scheme://host[:port]` of a URL.
pub(crate) fn origin_of(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    Some(format!("{}://{}", uri.scheme_str()?, uri.authority()?.as_str()))
}

pub(crate) fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether `dir` is (or can be created as) a directory this process can write: an existing
/// directory gets a probe file created and removed; a missing one needs a writable ancestor.
pub(crate) fn writable_directory(dir: &Path) -> Result<(), String> {
    let mut existing: PathBuf = dir.to_path_buf();
    while !existing.exists() {
        match existing.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => existing = parent.to_path_buf(),
            _ => {
                existing = PathBuf::from(".");
                break;
            }
        }
    }
    if !existing.is_dir() {
        return Err(format!("{} is not a directory", existing.display()));
    }
    let probe = existing.join(format!(".mcpe-write-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) if existing == dir => Err(format!("not writable ({e})")),
        Err(e) => Err(format!("cannot be created: {} is not writable ({e})", existing.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin_problems(doc: &Value) -> Vec<String> {
        let (secrets, broken) = (std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
        let mut checker = Checker::new(doc, &secrets, &broken);
        checker.admin();
        checker.problems.iter().map(|p| format!("{:?} {}", p.kind, p.path)).collect()
    }

    #[test]
    fn the_admin_address_is_a_socket_address_of_its_own() {
        let doc = serde_json::json!({"admin": {"address": "nope"}});
        assert_eq!(admin_problems(&doc), ["InvalidValue admin.address"]);
        let doc = serde_json::json!({"listen": {"address": "127.0.0.1:9000"}, "admin": {"address": "127.0.0.1:9000"}});
        assert_eq!(admin_problems(&doc), ["Conflict admin.address"]);
        let doc = serde_json::json!({"listen": {"address": "127.0.0.1:0"}, "admin": {"address": "127.0.0.1:0"}});
        assert!(admin_problems(&doc).is_empty(), "two free ports");
        assert!(admin_problems(&serde_json::json!({})).is_empty());
    }

    #[test]
    fn directories() {
        let dir = tempfile::tempdir().expect("dir");
        assert!(writable_directory(dir.path()).is_ok());
        assert!(writable_directory(&dir.path().join("a/b/c")).is_ok(), "created later");
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").expect("write");
        assert!(writable_directory(&file.join("sub")).is_err());
        assert!(writable_directory(&file).is_err());
        assert_eq!(origin_of("https://mcp.example.com:8443/mcp").as_deref(), Some("https://mcp.example.com:8443"));
        assert!(is_loopback_host("[::1]") && is_loopback_host("127.0.0.2") && !is_loopback_host("example.com"));
    }
}
