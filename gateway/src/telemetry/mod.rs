//! OpenTelemetry traces: one server span per MCP request, a child span for each layer's decision,
//! for identity provider calls and for the upstream call; W3C trace context read from the request
//! (headers and `params._meta`) and sent on to the upstream in both places.
//!
//! The layers make `tracing` spans of the target [`mcp_enterprise_core::trace::TARGET`];
//! [`subscriber_layer`] turns them (and only them) into OpenTelemetry spans with
//! `tracing-opentelemetry`, exported by the OpenTelemetry SDK over OTLP/HTTP (protobuf) through
//! the pack's rustls (aws-lc-rs) client. Without that layer — traces off, the default — no
//! subscriber enables the target and the spans cost nothing but a cached interest check.

mod client;
mod server;
pub(crate) mod upstream;

use std::collections::HashMap;
use std::time::Duration;

pub use client::OtlpHttpClient;
use mcp_enterprise_config::{TracePrincipal, TracesConfig};
use mcp_enterprise_core::outbound::{Egress, TlsSettings};
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
pub use server::{TraceLayer, TraceService};
use tracing::subscriber::Interest;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::registry::LookupSpan;

/// The instrumentation scope of the gateway's spans.
pub const SCOPE: &str = "mcp-enterprise";

/// Traces cannot be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// A `traces` setting is wrong.
    #[error("traces.{key}: {reason}")]
    Config {
        /// The key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The exporter could not be built.
    #[error("the OTLP trace exporter: {0}")]
    Exporter(String),
}

/// Which requests are traced and what the server spans carry, besides the MCP attributes.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct TraceSettings {
    /// Which of the caller's identity the server span carries.
    pub principal: TracePrincipal,
    /// The share of the requests without a caller's context that are traced (0.0 to 1.0); a
    /// request with one follows its sampled flag.
    pub sampling_ratio: f64,
}

impl Default for TraceSettings {
    fn default() -> Self {
        Self { principal: TracePrincipal::default(), sampling_ratio: 1.0 }
    }
}

impl TraceSettings {
    /// The settings of a `traces` section.
    pub fn from_config(config: &TracesConfig) -> Self {
        Self { principal: config.principal, sampling_ratio: config.sampling_ratio }
    }
}

/// The tracer provider a `traces` section describes: OTLP/HTTP protobuf to `endpoint` with its
/// headers, trusting `ca_file` besides the system's roots, through `egress` (the `egress`
/// section's proxy unless the collector is in its `no_proxy`), parent-based ratio sampling,
/// batched export (with the SDK's retries). `None` when the section says `enabled = false`. Shut
/// it down when the process stops (pending spans are sent).
pub fn tracer_provider(config: &TracesConfig, egress: &Egress) -> Result<Option<SdkTracerProvider>, TelemetryError> {
    if !config.enabled {
        return Ok(None);
    }
    if let Some((key, reason)) = config.problem() {
        return Err(TelemetryError::Config { key, reason });
    }
    let timeout = Duration::from_secs(config.timeout_secs);
    let mut tls = TlsSettings::new();
    if let Some(ca) = &config.ca_file {
        tls = tls
            .with_ca_file(std::path::Path::new(ca))
            .map_err(|e| TelemetryError::Config { key: "ca_file", reason: e.to_string() })?;
    }
    let client = OtlpHttpClient::new(timeout, egress, &tls).map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let headers: HashMap<String, String> = config.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(config.endpoint.clone())
        .with_timeout(timeout)
        .with_headers(headers)
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let resource = Resource::builder_empty()
        .with_service_name(config.service_name.clone())
        .with_attributes(config.resource.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())))
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("telemetry.sdk.language", "rust"),
            KeyValue::new("telemetry.sdk.name", "opentelemetry"),
        ])
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        // the same rule the server span's decision follows first (see `server`), on the same trace id
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sampling_ratio))))
        .with_id_generator(server::Ids::default())
        .with_resource(resource)
        .build();
    Ok(Some(provider))
}

/// The `tracing` layer exporting the pack's trace spans (target
/// [`mcp_enterprise_core::trace::TARGET`], every level) through `provider`; other spans and events
/// (the log lines) are not its business. Only the server span of a sampled request (started by
/// [`TraceLayer`]) and the spans inside it are kept: outside one, a layer's span is disabled and
/// costs one look at the current span.
pub fn subscriber_layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + Send + Sync + 'static
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(SCOPE))
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_level(false)
        .with_tracked_inactivity(false)
        .with_filter(Kept)
}

/// The filter of [`subscriber_layer`]: spans of the trace target, the server span or inside it.
#[derive(Debug, Clone, Copy)]
struct Kept;

impl<S> Filter<S> for Kept
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, meta: &tracing::Metadata<'_>, cx: &Context<'_, S>) -> bool {
        meta.target() == mcp_enterprise_core::trace::TARGET
            && meta.is_span()
            && (meta.name() == server::SERVER || cx.lookup_current().is_some())
    }

    fn callsite_enabled(&self, meta: &'static tracing::Metadata<'static>) -> Interest {
        if meta.target() == mcp_enterprise_core::trace::TARGET && meta.is_span() {
            // decided per span: inside a kept span or not
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::TRACE)
    }
}
