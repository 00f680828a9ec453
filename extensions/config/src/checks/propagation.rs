//! `upstream.propagation`: the mode's settings, the caller it speaks for, lifetimes, key files and
//! token endpoint client authentication.

use serde_json::Value;

use super::{Checker, is_loopback_host, p};
use crate::error::DiagnosticKind;

impl Checker<'_> {
    /// `upstream.propagation`: the chosen mode's settings present (and no other mode's), an
    /// authenticated caller to speak for, sane lifetimes and a readable key file.
    pub(super) fn propagation(&mut self) {
        if !self.sound("upstream.propagation") {
            return;
        }
        let mode = self.str("upstream.propagation.mode").unwrap_or("none");
        let settings = self.get("upstream.propagation.signed_assertion").is_some();
        let fixed = self.get("upstream.propagation.static").is_some();
        let exchange = self.get("upstream.propagation.token_exchange").is_some();
        if exchange && mode != "token_exchange" {
            self.problem(
                DiagnosticKind::Conflict,
                p("upstream.propagation.token_exchange"),
                "no token_exchange settings unless `mode = \"token_exchange\"`",
                format!("mode `{mode}`"),
            );
        }
        if settings && mode != "signed_assertion" {
            self.problem(
                DiagnosticKind::Conflict,
                p("upstream.propagation.signed_assertion"),
                "no signed_assertion settings unless `mode = \"signed_assertion\"`",
                format!("mode `{mode}`"),
            );
        }
        if fixed && mode != "static" {
            self.problem(
                DiagnosticKind::Conflict,
                p("upstream.propagation.static"),
                "no static settings unless `mode = \"static\"`",
                format!("mode `{mode}`"),
            );
        }
        match mode {
            "static" if !fixed => self.problem(
                DiagnosticKind::MissingKey,
                p("upstream.propagation.static"),
                "the header the gateway sends (`header` and `value` or `client_credentials`)",
                "no `static` in `upstream.propagation`",
            ),
            "static" => {
                let value = self.get("upstream.propagation.static.value").is_some();
                let grant = self.get("upstream.propagation.static.client_credentials").is_some();
                if value == grant {
                    self.problem(
                        DiagnosticKind::Conflict,
                        p("upstream.propagation.static"),
                        "exactly one of `value` and `client_credentials`",
                        if value { "both" } else { "neither" },
                    );
                }
                if grant && !value {
                    self.client_auth("upstream.propagation.static.client_credentials");
                }
                if let Some(url) = self.str("upstream.propagation.static.client_credentials.token_endpoint")
                    && let Ok(uri) = url.parse::<http::Uri>()
                    && uri.scheme_str() == Some("http")
                    && !is_loopback_host(uri.host().unwrap_or_default())
                {
                    self.invalid(
                        "upstream.propagation.static.client_credentials.token_endpoint",
                        "an https URL (plain http only for a loopback host)",
                    );
                }
                if let Some(name) = self.str("upstream.propagation.static.header")
                    && (http::HeaderName::from_bytes(name.as_bytes()).is_err()
                        || ["host", "connection", "content-length", "transfer-encoding", "te", "upgrade"]
                            .contains(&name.to_ascii_lowercase().as_str()))
                {
                    self.invalid("upstream.propagation.static.header", "an HTTP header name other than a framing one");
                }
                if let Some(value) = self.str("upstream.propagation.static.value")
                    && http::HeaderValue::from_str(value).is_err()
                {
                    let path = p("upstream.propagation.static.value");
                    self.problem(
                        DiagnosticKind::InvalidValue,
                        path,
                        "a valid header value",
                        "a value with control characters",
                    );
                }
            }
            "token_exchange" if !exchange => self.problem(
                DiagnosticKind::MissingKey,
                p("upstream.propagation.token_exchange"),
                "the token endpoint and client (`token_endpoint`, `client_id`, …)",
                "no `token_exchange` in `upstream.propagation`",
            ),
            "token_exchange" => {
                let at = "upstream.propagation.token_exchange";
                if self.get("sso").is_none() && self.get("dpop").is_none() && self.get("workload_identity").is_none() {
                    self.problem(
                        DiagnosticKind::Conflict,
                        p("upstream.propagation.mode"),
                        "an authentication section (`sso`, `dpop` or `workload_identity`): the exchanged token is the caller's",
                        "`token_exchange` without one",
                    );
                }
                if let Some(url) = self.str(&format!("{at}.token_endpoint"))
                    && let Ok(uri) = url.parse::<http::Uri>()
                    && uri.scheme_str() == Some("http")
                    && !is_loopback_host(uri.host().unwrap_or_default())
                {
                    self.invalid(&format!("{at}.token_endpoint"), "an https URL (plain http only for a loopback host)");
                }
                self.client_auth(at);
            }
            "signed_assertion" => {
                if self.get("sso").is_none() && self.get("dpop").is_none() && self.get("workload_identity").is_none() {
                    self.problem(
                        DiagnosticKind::Conflict,
                        p("upstream.propagation.mode"),
                        "an authentication section (`sso`, `dpop` or `workload_identity`): an assertion speaks for an authenticated caller",
                        "`signed_assertion` without one",
                    );
                }
                let at = "upstream.propagation.signed_assertion";
                let lifetime = self.get(&format!("{at}.lifetime_secs")).and_then(Value::as_u64).unwrap_or(60);
                if !(1..=60).contains(&lifetime) {
                    self.invalid(&format!("{at}.lifetime_secs"), "1 to 60 seconds");
                }
                if let Some(rotation) = self.get(&format!("{at}.rotation_secs")).and_then(Value::as_u64)
                    && rotation < 60
                {
                    self.invalid(&format!("{at}.rotation_secs"), "at least 60 seconds");
                }
                if let Some(grace) = self.get(&format!("{at}.rotation_grace_secs")).and_then(Value::as_u64)
                    && grace < lifetime
                {
                    self.invalid(&format!("{at}.rotation_grace_secs"), "at least the lifetime (lifetime_secs)");
                }
                if let Some(issuer) = self.str(&format!("{at}.issuer"))
                    && issuer.parse::<http::Uri>().map_or(true, |u| {
                        !matches!(u.scheme_str(), Some("http" | "https")) || u.query().is_some() || issuer.contains('#')
                    })
                {
                    self.invalid(&format!("{at}.issuer"), "an http(s) URL without query or fragment");
                }
                if let Some(file) = self.str(&format!("{at}.key_file"))
                    && let Err(e) = std::fs::metadata(file)
                {
                    let why = e.to_string();
                    self.unusable_file(&format!("{at}.key_file"), "a readable PKCS#8 PEM key file", file, &why);
                }
            }
            _ => {}
        }
    }

    /// The client authentication of a token endpoint client at `at`: each method has what it needs.
    pub(super) fn client_auth(&mut self, at: &str) {
        let method = self.str(&format!("{at}.client_auth")).unwrap_or("client_secret_basic");
        let file_for = match method {
            "private_key_jwt" => Some(("private_key_file", "the PKCS#8 PEM key that signs the client assertions")),
            "workload_assertion" => {
                Some(("assertion_file", "the platform's workload JWT file (projected service-account token, JWT-SVID)"))
            }
            _ => None,
        };
        match file_for {
            Some((key, what)) => match self.str(&format!("{at}.{key}")) {
                None => self.problem(
                    DiagnosticKind::MissingKey,
                    p(&format!("{at}.{key}")),
                    what,
                    format!("`client_auth = \"{method}\"` without `{key}`"),
                ),
                Some(file) => {
                    if let Err(e) = std::fs::metadata(file) {
                        let why = e.to_string();
                        self.unusable_file(&format!("{at}.{key}"), &format!("a readable file: {what}"), file, &why);
                    }
                }
            },
            None if self.get(&format!("{at}.client_secret")).is_none() => self.problem(
                DiagnosticKind::MissingKey,
                p(&format!("{at}.client_secret")),
                "the client secret (e.g. `${env:TOKEN_EXCHANGE_SECRET}`)",
                format!("`client_auth = \"{method}\"` without a secret"),
            ),
            None => {}
        }
    }
}
