//! Outbound connection settings: `upstream.tls` files (readable PEM, a client key matching its
//! certificate) and the `egress` section.

use std::path::Path;

use super::{Checker, p};
use crate::error::DiagnosticKind;

impl Checker<'_> {
    /// `upstream.tls`: readable PEM files, a client key matching its certificate, a server name.
    pub(super) fn upstream_tls(&mut self) {
        use mcp_enterprise_core::outbound::{self, OutboundError};
        if !self.ok("upstream.tls") {
            return;
        }
        if let Some(file) = self.str("upstream.tls.ca_file")
            && let Err(e) = outbound::load_certificates(Path::new(file))
        {
            let why = match e {
                OutboundError::File { reason, .. } => reason,
                other => other.to_string(),
            };
            self.unusable_file("upstream.tls.ca_file", "a readable PEM bundle of CA certificates", file, &why);
        }
        let cert = self.str("upstream.tls.client_certificate_file");
        let key = self.str("upstream.tls.client_key_file");
        match (cert, key) {
            (Some(cert), Some(key)) => match outbound::ClientIdentity::load(Path::new(cert), Path::new(key)) {
                Ok(_) => {}
                Err(OutboundError::File { path, reason }) => {
                    let (at, what, file) = if path == Path::new(cert) {
                        ("upstream.tls.client_certificate_file", "a readable PEM certificate chain", cert)
                    } else {
                        ("upstream.tls.client_key_file", "a readable PEM private key", key)
                    };
                    self.unusable_file(at, what, file, &reason);
                }
                Err(OutboundError::KeyMismatch { .. }) => self.unusable_file(
                    "upstream.tls.client_key_file",
                    "the private key of upstream.tls.client_certificate_file",
                    key,
                    "a key of another certificate",
                ),
                Err(other) => self.invalid("upstream.tls.client_key_file", other.to_string()),
            },
            (Some(_), None) => self.problem(
                DiagnosticKind::MissingKey,
                p("upstream.tls.client_key_file"),
                "the private key of upstream.tls.client_certificate_file",
                "nothing",
            ),
            (None, Some(_)) => self.problem(
                DiagnosticKind::MissingKey,
                p("upstream.tls.client_certificate_file"),
                "the certificate of upstream.tls.client_key_file",
                "nothing",
            ),
            (None, None) => {}
        }
        if let Some(name) = self.str("upstream.tls.server_name")
            && outbound::TlsSettings::new().with_server_name(name).is_err()
        {
            self.invalid("upstream.tls.server_name", "a DNS name or IP address");
        }
        if let Some(host) = self.str("upstream.host")
            && host.parse::<http::uri::Authority>().map_or(true, |a| a.as_str().contains('@'))
        {
            self.invalid("upstream.host", "a host name with an optional port");
        }
    }

    /// `listen.trusted_proxies`: CIDR networks or addresses.
    pub(super) fn trusted_proxies(&mut self) {
        let Some(list) = self.get("listen.trusted_proxies").and_then(serde_json::Value::as_array) else { return };
        for (i, entry) in list.iter().enumerate() {
            let ok = entry.as_str().is_some_and(|s| {
                let s = s.trim();
                s.parse::<std::net::IpAddr>().is_ok() || cidr(s)
            });
            if !ok {
                self.invalid(
                    &format!("listen.trusted_proxies[{i}]"),
                    "an IP network (CIDR, e.g. 10.0.0.0/8) or address",
                );
            }
        }
    }

    /// `egress`: an http:// proxy URL, `user:password` credentials, a readable CA bundle.
    pub(super) fn egress(&mut self) {
        if !self.ok("egress") {
            return;
        }
        if let Some(proxy) = self.str("egress.proxy").filter(|p| !p.is_empty())
            && mcp_enterprise_core::outbound::Egress::proxy(proxy, "").is_err()
        {
            self.invalid("egress.proxy", "an http://host:port URL (or \"\" for no proxy)");
        }
        if self.get("egress.no_proxy").is_some() && self.str("egress.proxy").is_none_or(str::is_empty) {
            self.problem(DiagnosticKind::Conflict, p("egress.no_proxy"), "egress.proxy set too", "no egress.proxy");
        }
        if let Some(credentials) = self.str("egress.proxy_credentials")
            && !credentials.contains(':')
        {
            self.invalid("egress.proxy_credentials", "`user:password`");
        }
        self.ca_file("egress.ca_file");
    }

    /// A CA file key (`egress.ca_file`, `traces.ca_file`, `audit.otlp_ca_file`): a readable PEM
    /// bundle of CA certificates.
    pub(super) fn ca_file(&mut self, key: &str) {
        if let Some(file) = self.str(key)
            && let Err(e) = mcp_enterprise_core::outbound::load_certificates(Path::new(file))
        {
            let why = match e {
                mcp_enterprise_core::outbound::OutboundError::File { reason, .. } => reason,
                other => other.to_string(),
            };
            self.unusable_file(key, "a readable PEM bundle of CA certificates", file, &why);
        }
    }
}

/// `address/prefix` with a prefix no longer than the address.
fn cidr(s: &str) -> bool {
    let Some((ip, prefix)) = s.split_once('/') else { return false };
    let Ok(prefix) = prefix.parse::<u8>() else { return false };
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => prefix <= 32,
        Ok(std::net::IpAddr::V6(_)) => prefix <= 128,
        Err(_) => false,
    }
}
