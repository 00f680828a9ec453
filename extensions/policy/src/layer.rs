use std::fmt;
use std::sync::Arc;

use mcp_enterprise_core::clock::{Clock, SystemClock};
use mcp_enterprise_core::stats::{Count, Instrumented, Reading};
use mcp_enterprise_core::{ExtensionSetBuilder, Principal};
use serde_json::json;
use tower_layer::Layer;

use crate::engine::{Call, Catalog, Decision, DefaultDecision, Engine, Policies, Settings, ValidationLevel};
use crate::error::PolicyConfigError;
use crate::model::CallContext;
use crate::service::Policy;
use crate::validate::ValidationReport;

/// Largest list response filtered by default (4 MiB); a larger one is refused.
pub const DEFAULT_MAX_LIST_BYTES: usize = 4 * 1024 * 1024;

pub(crate) struct Inner {
    pub(crate) engine: Arc<Engine>,
    pub(crate) filter_lists: bool,
    pub(crate) max_list_bytes: usize,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) report: ValidationReport,
    /// Calls the policies allowed.
    pub(crate) allowed: Count,
    /// Calls the policies denied.
    pub(crate) denied: Count,
}

/// Cedar authorization for MCP: `tools/call`, `resources/read` and `prompts/get` are allowed or
/// denied by the policies (`403` with the reason ids), and list results are filtered to what the
/// caller may use.
///
/// Place it inside [`InspectLayer`](mcp_enterprise_core::InspectLayer) and inside the
/// authentication layers (it reads the [`Principal`] they insert; without one the caller is
/// `kind == "anonymous"`).
#[derive(Clone)]
#[must_use]
pub struct PolicyLayer {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for PolicyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyLayer")
            .field("engine", &self.inner.engine)
            .field("filter_lists", &self.inner.filter_lists)
            .field("max_list_bytes", &self.inner.max_list_bytes)
            .finish_non_exhaustive()
    }
}

impl Instrumented for PolicyLayer {
    fn readings(&self, out: &mut Vec<Reading>) {
        const HELP: &str = "Calls (tools/call, resources/read, prompts/get) the policies decided, by decision";
        for (decision, count) in [("allow", &self.inner.allowed), ("deny", &self.inner.denied)] {
            out.push(Reading::counter(
                "mcpe_policy_decisions",
                HELP,
                vec![("decision", decision.to_owned())],
                count.get(),
            ));
        }
    }
}

impl PolicyLayer {
    /// Starts a layer over `policies`: default deny, validation errors fail, lists filtered.
    pub fn builder(policies: Policies) -> PolicyLayerBuilder {
        PolicyLayerBuilder {
            policies,
            catalog: Catalog::default(),
            settings: Settings::default(),
            filter_lists: true,
            max_list_bytes: DEFAULT_MAX_LIST_BYTES,
            clock: Arc::new(SystemClock),
        }
    }

    /// The engine (policies, learned tools, settings).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.inner.engine
    }

    /// What validation found at build time.
    pub fn report(&self) -> &ValidationReport {
        &self.inner.report
    }

    /// Whether list results are filtered.
    pub fn filters_lists(&self) -> bool {
        self.inner.filter_lists
    }

    /// Advertises `io.github.mcp-enterprise/policy` with `{"filteredLists": bool}`.
    pub fn add_extensions(
        &self,
        set: ExtensionSetBuilder,
    ) -> Result<ExtensionSetBuilder, mcp_enterprise_core::ConfigError> {
        set.with_own("policy", json!({ "filteredLists": self.inner.filter_lists }))
    }

    /// Decides on a call outside a request (the `policy explain` command).
    pub fn decide(&self, principal: Option<&Principal>, call: Call<'_>, context: &CallContext) -> Decision {
        self.inner.engine.authorize(principal, call, context)
    }
}

/// Builds a [`PolicyLayer`].
#[must_use]
pub struct PolicyLayerBuilder {
    policies: Policies,
    catalog: Catalog,
    settings: Settings,
    filter_lists: bool,
    max_list_bytes: usize,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for PolicyLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyLayerBuilder").field("policies", &self.policies).finish_non_exhaustive()
    }
}

impl PolicyLayerBuilder {
    /// Tools and prompts known before the first listing passes (a snapshot or a fetch): the
    /// policies are validated against them when the layer is built.
    pub fn catalog(mut self, catalog: Catalog) -> Self {
        self.catalog = catalog;
        self
    }

    /// What happens when no policy decides (default: deny).
    pub fn default_decision(mut self, decision: DefaultDecision) -> Self {
        self.settings.default_decision = decision;
        self
    }

    /// Whether validation problems stop the build (default: error).
    pub fn validation(mut self, level: ValidationLevel) -> Self {
        self.settings.validation = level;
        self
    }

    /// Whether list results are filtered (default: yes).
    pub fn filter_lists(mut self, on: bool) -> Self {
        self.filter_lists = on;
        self
    }

    /// Largest list response filtered (default 4 MiB).
    pub fn max_list_bytes(mut self, limit: usize) -> Self {
        self.max_list_bytes = limit.max(1);
        self
    }

    /// The clock for `context.time` (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Validates and finishes the layer.
    pub fn build(self) -> Result<PolicyLayer, PolicyConfigError> {
        let (engine, report) = Engine::new(self.policies, self.catalog, self.settings)?;
        Ok(PolicyLayer {
            inner: Arc::new(Inner {
                engine: Arc::new(engine),
                filter_lists: self.filter_lists,
                max_list_bytes: self.max_list_bytes,
                clock: self.clock,
                report,
                allowed: Count::default(),
                denied: Count::default(),
            }),
        })
    }
}

impl<S> Layer<S> for PolicyLayer {
    type Service = Policy<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Policy { inner, layer: self.clone() }
    }
}
