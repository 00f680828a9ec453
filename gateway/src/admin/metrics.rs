//! The gateway's Prometheus metrics (through `prometheus-client`) and the layer that counts
//! every request. Label sets are bounded: routes are the configured MCP paths (anything else is
//! `other`), methods the MCP methods of the specification (anything else is `other`), refusing
//! layers the pack's layer names and reasons a short code (the `error` of a `WWW-Authenticate`
//! challenge, else the HTTP status).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::{Request, Response};
use mcp_enterprise_audit::AuditLayer;
use mcp_enterprise_core::{Denial, McpRequest};
use pin_project_lite::pin_project;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use mcp_enterprise_core::stats::Instrumented;

use crate::ratelimit::RateLimitError;

/// MCP methods counted by name; any other method is `other`.
pub const METHODS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
];

/// Latency buckets in seconds: 1 ms to ~33 s.
fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 16)
}

/// The `route`, `method` and `outcome` of a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Arc<String>,
    method: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteMethod {
    route: Arc<String>,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    layer: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: Arc<String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamErrorLabels {
    route: Arc<String>,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// Every metric the gateway exports; shared by its layers, its proxy, its listener and its
/// admin listener.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteMethod, Histogram>,
    refusals: Family<RefusalLabels, Counter>,
    rate_limited: Family<LimitLabels, Counter>,
    upstream_duration: Family<RouteLabel, Histogram>,
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
    open_connections: Gauge,
    reloads: Family<ResultLabel, Counter>,
    audit: Arc<AuditCollector>,
    layers: Arc<LayerCollector>,
    other: Arc<String>,
}

impl Metrics {
    /// A fresh set of metrics, registered.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "mcpe_requests",
            "Requests by route (MCP path), MCP method and outcome (ok, error: an HTTP error status, refused: a layer refused it)",
            requests.clone(),
        );
        let duration =
            Family::<RouteMethod, Histogram>::new_with_constructor(|| Histogram::new(latency_buckets()) as Histogram);
        registry.register(
            "mcpe_request_duration_seconds",
            "Time from a request's arrival to its response head (a streamed answer's events come later)",
            duration.clone(),
        );
        let refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "mcpe_refusals",
            "Requests refused, by the refusing layer and a short reason (a WWW-Authenticate error code, else the HTTP status)",
            refusals.clone(),
        );
        let rate_limited = Family::<LimitLabels, Counter>::default();
        registry.register(
            "mcpe_rate_limit_refusals",
            "Requests the rate limits refused, by limit (its configured name) and kind (exceeded, full: too many callers tracked, unavailable: the shared store did not answer)",
            rate_limited.clone(),
        );
        let upstream_duration =
            Family::<RouteLabel, Histogram>::new_with_constructor(|| Histogram::new(latency_buckets()) as Histogram);
        registry.register(
            "mcpe_upstream_duration_seconds",
            "Time the upstream MCP server took to start its answer (status and headers)",
            upstream_duration.clone(),
        );
        let upstream_errors = Family::<UpstreamErrorLabels, Counter>::default();
        registry.register(
            "mcpe_upstream_errors",
            "Upstream calls that failed: unreachable, tls (certificate or handshake refused), failed (broken answer), timeout (no answer head in time), shutdown (the grace period ended first)",
            upstream_errors.clone(),
        );
        let open_connections = Gauge::default();
        registry.register("mcpe_open_connections", "Client connections open now", open_connections.clone());
        let reloads = Family::<ResultLabel, Counter>::default();
        registry.register("mcpe_config_reloads", "Configuration reloads (SIGHUP) by result", reloads.clone());
        let build = Family::<BuildLabels, Gauge>::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION") }).set(1);
        registry.register("mcpe_build_info", "The gateway's version (always 1)", build);
        let audit = Arc::new(AuditCollector::default());
        registry.register_collector(Box::new(audit.clone()));
        let layers = Arc::new(LayerCollector::default());
        registry.register_collector(Box::new(layers.clone()));
        Self {
            registry,
            requests,
            duration,
            refusals,
            rate_limited,
            upstream_duration,
            upstream_errors,
            open_connections,
            reloads,
            audit,
            layers,
            other: Arc::new("other".to_owned()),
        }
    }

    /// The Prometheus text format (0.0.4) of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // writing to a String cannot fail
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// The audit trail whose counters are exported (none: no audit metrics).
    pub(crate) fn set_audit(&self, audit: Option<AuditLayer>) {
        *self.audit.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = audit;
    }

    /// The layers whose own counters are exported.
    pub(crate) fn set_layers(&self, layers: Vec<Arc<dyn Instrumented + Send + Sync>>) {
        *self.layers.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = layers;
    }

    /// The gauge of open client connections.
    pub(crate) fn open_connections(&self) -> Gauge {
        self.open_connections.clone()
    }

    /// Counts a configuration reload.
    pub(crate) fn reloaded(&self, ok: bool) {
        self.reloads.get_or_create(&ResultLabel { result: if ok { "success" } else { "failure" } }).inc();
    }

    /// Records an upstream answer head after `seconds`.
    pub(crate) fn upstream_answered(&self, route: &Arc<String>, seconds: f64) {
        self.upstream_duration.get_or_create(&RouteLabel { route: route.clone() }).observe(seconds);
    }

    /// Counts a failed upstream call.
    pub(crate) fn upstream_failed(&self, route: &Arc<String>, kind: &'static str) {
        self.upstream_errors.get_or_create(&UpstreamErrorLabels { route: route.clone(), kind }).inc();
    }

    fn record<B>(&self, route: &Arc<String>, started: Instant, response: &Response<B>) {
        let method = response
            .extensions()
            .get::<McpRequest>()
            .and_then(McpRequest::method)
            .map_or("none", |m| METHODS.iter().find(|k| **k == m).copied().unwrap_or("other"));
        let denial = response.extensions().get::<Denial>();
        let outcome = match denial {
            Some(_) => "refused",
            None if response.status().is_client_error() || response.status().is_server_error() => "error",
            None => "ok",
        };
        if let Some(denial) = denial {
            let reason =
                challenge_error(response.headers()).unwrap_or_else(|| format!("http_{}", response.status().as_u16()));
            self.refusals.get_or_create(&RefusalLabels { layer: denial.layer().to_owned(), reason }).inc();
            if let Some(error) = response.extensions().get::<RateLimitError>() {
                let kind = match error {
                    RateLimitError::Exceeded { .. } => "exceeded",
                    RateLimitError::Full { .. } => "full",
                    _ => "unavailable",
                };
                self.rate_limited.get_or_create(&LimitLabels { limit: error.limit().to_owned(), kind }).inc();
            }
        }
        self.requests.get_or_create(&RequestLabels { route: route.clone(), method, outcome }).inc();
        self.duration
            .get_or_create(&RouteMethod { route: route.clone(), method })
            .observe(started.elapsed().as_secs_f64());
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The `error` parameter of a `WWW-Authenticate` challenge (RFC 6750 §3), when it is a short
/// token (bounded: anything else is not used as a label).
fn challenge_error(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get(http::header::WWW_AUTHENTICATE)?.to_str().ok()?;
    let start = value.find("error=\"")? + "error=\"".len();
    let code = &value[start..];
    let code = &code[..code.find('"')?];
    (code.len() <= 40 && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')).then(|| code.to_owned())
}

/// The readings of the layers that keep their own counters (SSO: token cache, JWKS; DPoP:
/// replays, nonce challenges; policy: decisions), read at each scrape.
#[derive(Debug, Default)]
struct LayerCollector(RwLock<Vec<Arc<dyn Instrumented + Send + Sync>>>);

impl Collector for LayerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        use mcp_enterprise_core::stats::Value;
        let mut readings = Vec::new();
        for layer in self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            layer.readings(&mut readings);
        }
        // one family per name (several routes may each have an SSO layer: summed per label set)
        let mut families: std::collections::BTreeMap<
            &'static str,
            (&'static str, Vec<mcp_enterprise_core::stats::Reading>),
        > = std::collections::BTreeMap::new();
        for reading in readings {
            let family = families.entry(reading.name).or_insert_with(|| (reading.help, Vec::new()));
            match family.1.iter_mut().find(|r| r.labels == reading.labels) {
                Some(same) => {
                    if let (Value::Counter(a), Value::Counter(b)) = (&mut same.value, &reading.value) {
                        *a += b;
                    }
                }
                None => family.1.push(reading),
            }
        }
        for (name, (help, readings)) in families {
            let kind = match readings.first().map(|r| &r.value) {
                Some(Value::Counter(_)) => prometheus_client::metrics::MetricType::Counter,
                Some(Value::Histogram(_)) => prometheus_client::metrics::MetricType::Histogram,
                _ => prometheus_client::metrics::MetricType::Gauge,
            };
            let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
            for reading in &readings {
                let family = metric.encode_family(&reading.labels)?;
                match &reading.value {
                    Value::Counter(v) => ConstCounter::new(*v).encode(family)?,
                    Value::Gauge(v) => ConstGauge::new(*v).encode(family)?,
                    Value::Histogram(d) => encode_distribution(family, d)?,
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// A histogram kept by a layer, in the text format.
fn encode_distribution(
    mut encoder: prometheus_client::encoding::MetricEncoder<'_>,
    d: &mcp_enterprise_core::stats::Distribution,
) -> Result<(), std::fmt::Error> {
    encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(d.sum, d.count, &d.buckets, None)
}

/// The audit trail's counters, read at each scrape.
#[derive(Debug, Default)]
struct AuditCollector(RwLock<Option<AuditLayer>>);

impl Collector for AuditCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let guard = self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(audit) = guard.as_ref() else { return Ok(()) };
        let stats = audit.stats();
        let counters = [
            ("mcpe_audit_records_written", "Audit call records written (and synced per policy)", stats.written()),
            ("mcpe_audit_write_failures", "Audit write attempts that failed (each is retried)", stats.failed()),
            (
                "mcpe_audit_refusals",
                "Calls refused because the audit queue was full or the writer failing",
                stats.refused(),
            ),
            ("mcpe_audit_checkpoints", "Signed audit checkpoints written", stats.checkpoints()),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
        }
        let gauges = [
            (
                "mcpe_audit_queue_depth",
                "Audit records queued and not yet written",
                i64::try_from(stats.queued()).unwrap_or(i64::MAX),
            ),
            (
                "mcpe_audit_writer_failing",
                "1 while the audit writer cannot write (disk full, I/O error)",
                i64::from(audit.is_failing()),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        encode_distribution(
            encoder.encode_descriptor(
                "mcpe_audit_fsync_duration_seconds",
                "Time each fsync of the audit trail file took",
                None,
                prometheus_client::metrics::MetricType::Histogram,
            )?,
            &stats.fsync_durations().snapshot(),
        )?;
        Ok(())
    }
}

/// Counts every request of a router: outermost, around the audit layer.
#[derive(Debug, Clone)]
pub(crate) struct MetricsLayer {
    metrics: Arc<Metrics>,
    /// The MCP paths counted by name.
    routes: Arc<[Arc<String>]>,
}

impl MetricsLayer {
    pub(crate) fn new(metrics: Arc<Metrics>, routes: Vec<String>) -> Self {
        Self { metrics, routes: routes.into_iter().map(Arc::new).collect() }
    }
}

impl<S> tower_layer::Layer<S> for MetricsLayer {
    type Service = Measured<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Measured { inner, layer: self.clone() }
    }
}

/// The service of [`MetricsLayer`].
#[derive(Debug, Clone)]
pub(crate) struct Measured<S> {
    inner: S,
    layer: MetricsLayer,
}

impl<S, B, ResB> tower_service::Service<Request<B>> for Measured<S>
where
    S: tower_service::Service<Request<B>, Response = Response<ResB>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = MeasuredFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let path = req.uri().path();
        let route = self.layer.routes.iter().find(|r| r.as_str() == path).unwrap_or(&self.layer.metrics.other).clone();
        MeasuredFuture {
            inner: self.inner.call(req),
            metrics: self.layer.metrics.clone(),
            route,
            started: Instant::now(),
        }
    }
}

pin_project! {
    /// The future of [`Measured`].
    pub(crate) struct MeasuredFuture<F> {
        #[pin]
        inner: F,
        metrics: Arc<Metrics>,
        route: Arc<String>,
        started: Instant,
    }
}

impl<F, ResB, E> Future for MeasuredFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Ok(response) = &result {
            this.metrics.record(this.route, *this.started, response);
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_errors_are_short_codes_only() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::WWW_AUTHENTICATE,
            r#"Bearer error="insufficient_scope", scope="mcp""#.parse().expect("hv"),
        );
        assert_eq!(challenge_error(&h).as_deref(), Some("insufficient_scope"));
        h.insert(http::header::WWW_AUTHENTICATE, r#"Bearer error="Not A Code""#.parse().expect("hv"));
        assert_eq!(challenge_error(&h), None);
        assert_eq!(challenge_error(&http::HeaderMap::new()), None);
    }

    #[test]
    fn the_text_format_names_counters_with_total() {
        let metrics = Metrics::new();
        metrics.reloaded(true);
        let text = metrics.encode();
        assert!(text.contains("# TYPE mcpe_config_reloads_total counter"), "{text}");
        assert!(text.contains("mcpe_config_reloads_total{result=\"success\"} 1"), "{text}");
        assert!(text.contains("mcpe_build_info{version=\""), "{text}");
    }
}
