//! The `traces` section: OpenTelemetry traces of every MCP request (OTLP over HTTP/protobuf).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Traces exported to an OpenTelemetry collector: one server span per MCP request (named and
/// attributed per the OpenTelemetry MCP semantic conventions), a child span for each layer's
/// decision, for identity provider calls and for the upstream call; W3C trace context read from
/// the request (`traceparent`/`tracestate` headers and `params._meta`) and sent on to the
/// upstream in both places. Absent or `enabled = false`: off, at no cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TracesConfig {
    /// Export traces (default `true` when the section is present).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The collector's OTLP/HTTP traces endpoint, `https://` (or `http://` to a collector on
    /// loopback or a trusted network), e.g. `https://otel.example.com:4318/v1/traces`.
    #[schemars(url)]
    pub endpoint: String,
    /// The share of new traces recorded, 0.0 to 1.0 (default 1.0). A request that continues a
    /// trace follows its caller's sampling decision (parent-based).
    #[serde(default = "one")]
    pub sampling_ratio: f64,
    /// HTTP headers sent with every export, e.g. an API key:
    /// `{"x-api-key" = "${env:OTEL_API_KEY}"}` (values are secret: never shown).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("writeOnly" = true))]
    pub headers: BTreeMap<String, String>,
    /// Resource attributes besides `service.name`, e.g. `{"deployment.environment.name" = "prod"}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resource: BTreeMap<String, String>,
    /// The `service.name` resource attribute (default `mcp-enterprise-gateway`).
    #[serde(default = "service")]
    pub service_name: String,
    /// Which of the caller's identity the server span carries: `none` (default), `client` (the
    /// OAuth client id) or `subject_and_client` (also the token's subject, as `enduser.id`).
    #[serde(default)]
    pub principal: TracePrincipal,
    /// How long one export may take, in seconds (1 to 60, default 10).
    #[serde(default = "ten")]
    pub timeout_secs: u64,
    /// A PEM bundle of CA certificates trusted for the collector besides the system's roots (a
    /// private CA). The export goes through the `egress` proxy when one is set (and the
    /// collector is not in its `no_proxy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

/// The caller's identity on the server span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TracePrincipal {
    /// Nothing about the caller.
    #[default]
    None,
    /// The OAuth client id (`mcp_enterprise.client.id`).
    Client,
    /// The client id and the subject (`enduser.id`).
    SubjectAndClient,
}

fn yes() -> bool {
    true
}

fn one() -> f64 {
    1.0
}

fn ten() -> u64 {
    10
}

fn service() -> String {
    "mcp-enterprise-gateway".to_owned()
}

impl TracesConfig {
    /// What is wrong with the section (the key and why), if anything.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            return Some(("sampling_ratio", format!("{} is not between 0.0 and 1.0", self.sampling_ratio)));
        }
        if !(1..=60).contains(&self.timeout_secs) {
            return Some(("timeout_secs", format!("{} is not between 1 and 60", self.timeout_secs)));
        }
        let scheme_ok = self.endpoint.starts_with("https://") || self.endpoint.starts_with("http://");
        let parsed = self.endpoint.parse::<http::Uri>().ok().filter(|u| u.host().is_some());
        if !scheme_ok || parsed.is_none() {
            return Some(("endpoint", format!("{:?} is not an absolute http(s) URL", self.endpoint)));
        }
        if parsed.and_then(|u| u.authority().map(|a| a.as_str().contains('@'))).unwrap_or(false) {
            return Some(("endpoint", "must not carry credentials (use `headers`)".to_owned()));
        }
        for name in self.headers.keys() {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Some(("headers", format!("{name:?} is not an HTTP header name")));
            }
        }
        if self.service_name.is_empty() {
            return Some(("service_name", "must not be empty".to_owned()));
        }
        None
    }
}
