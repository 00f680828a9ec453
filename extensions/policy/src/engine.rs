//! The decision engine: a loaded policy set, what the upstream declared, and the two questions
//! the layer asks — may this call go through, and may this list item be shown.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use cedar_policy::{
    Authorizer, Decision as CedarDecision, Effect, Entities, Entity, EntityUid, PolicyId, PolicySet, Request,
};
use mcp_enterprise_core::{Principal, TokenFingerprint};
use quick_cache::Equivalent;
use serde_json::{Map, Value};

use crate::args::RecordType;
use crate::error::PolicyConfigError;
use crate::model::{
    Action, CallContext, PromptInfo, ToolInfo, arguments_expr, principal_entity, resource_entity, type_name, uid,
};
use crate::validate::{self, ValidationReport};

/// How many tools (and prompts) are remembered from listings; later ones are not learned.
pub const MAX_CATALOG_ENTRIES: usize = 10_000;

/// How many principal entities are cached (by credential fingerprint) at most.
pub const MAX_CACHED_PRINCIPALS: usize = 4096;

/// How many entity sets (a caller and a target, what a decision reads) are cached at most.
pub const MAX_CACHED_ENTITIES: usize = 4096;

/// How many list decisions (may this caller see this item) are cached at most.
pub const MAX_CACHED_DECISIONS: usize = 65_536;

/// Targets (tool names, URIs) longer than this are decided without the entity and decision
/// caches, so that a cache entry stays small whatever the upstream names.
const MAX_CACHED_TARGET_LEN: usize = 256;

/// A principal's entity, and the number its cached entity sets and list decisions are filed
/// under (unique per cache entry: a new entry for the same credential gets a new number).
struct CachedPrincipal {
    principal: Principal,
    entity: Entity,
    id: u64,
}

/// Principal entities by credential fingerprint: sharded, O(1) eviction when full.
type PrincipalCache = quick_cache::sync::Cache<TokenFingerprint, Arc<CachedPrincipal>>;

/// The number of the anonymous caller (always the same entity).
const ANONYMOUS: u64 = 0;

/// Who a decision is for: the entity, and its number when its decisions may be cached.
pub(crate) struct Caller {
    entity: CallerEntity,
    id: Option<u64>,
}

enum CallerEntity {
    Cached(Arc<CachedPrincipal>),
    Anonymous(&'static Entity),
    Built(Box<Entity>),
}

impl Caller {
    fn entity(&self) -> &Entity {
        match &self.entity {
            CallerEntity::Cached(c) => &c.entity,
            CallerEntity::Anonymous(e) => e,
            CallerEntity::Built(e) => e,
        }
    }
}

/// The entities one decision reads (the caller's and the target's), by caller number, catalog
/// generation, action and target.
#[derive(Hash, PartialEq, Eq)]
struct EntitiesKey {
    caller: u64,
    generation: u64,
    action: Action,
    target: Box<str>,
}

/// [`EntitiesKey`] borrowed, for lookups without an allocation (hashes the same).
#[derive(Hash)]
struct EntitiesQuery<'a> {
    caller: u64,
    generation: u64,
    action: Action,
    target: &'a str,
}

impl Equivalent<EntitiesKey> for EntitiesQuery<'_> {
    fn equivalent(&self, key: &EntitiesKey) -> bool {
        self.caller == key.caller
            && self.generation == key.generation
            && self.action == key.action
            && self.target == &*key.target
    }
}

/// A list decision: caller number, catalog generation, action, target (`None`: a template),
/// and the context when a policy reads more of it than the arguments.
#[derive(Hash, PartialEq, Eq)]
struct ShownKey {
    caller: u64,
    generation: u64,
    action: Action,
    target: Option<Box<str>>,
    context: Option<Arc<CallContext>>,
}

/// [`ShownKey`] borrowed (hashes the same).
#[derive(Hash)]
struct ShownQuery<'a> {
    caller: u64,
    generation: u64,
    action: Action,
    target: Option<&'a str>,
    context: Option<&'a CallContext>,
}

impl Equivalent<ShownKey> for ShownQuery<'_> {
    fn equivalent(&self, key: &ShownKey) -> bool {
        self.caller == key.caller
            && self.generation == key.generation
            && self.action == key.action
            && self.target == key.target.as_deref()
            && self.context == key.context.as_deref()
    }
}

/// One list answer's caller and context: what every item of it is decided for.
pub(crate) struct Viewer<'a> {
    caller: Caller,
    generation: u64,
    context: &'a CallContext,
    /// The context as part of the decision cache key, when policies read it.
    keyed: Option<Arc<CallContext>>,
    /// The Cedar context, built on the first decision not in the cache.
    cedar: std::cell::OnceCell<Option<cedar_policy::Context>>,
}

/// What happens when no policy decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DefaultDecision {
    /// Deny unless a `permit` matches (Cedar's own semantics). The default.
    #[default]
    Deny,
    /// Allow unless a `forbid` matches: the policy set becomes a deny list. Weaker: any tool
    /// nobody thought of is callable.
    InsecureAllow,
}

/// Whether validation problems stop loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ValidationLevel {
    /// A policy that does not type-check against the known tools is an error: loading fails.
    #[default]
    Error,
    /// Problems are logged as warnings and the policies are used anyway.
    Warning,
}

/// One policy file: its name (for locations) and text.
#[derive(Debug, Clone)]
pub struct PolicySource {
    /// The name shown in locations (usually the path).
    pub name: String,
    /// The Cedar text.
    pub text: String,
}

/// A parsed policy set and where each policy came from.
#[derive(Clone)]
pub struct Policies {
    pub(crate) set: PolicySet,
    pub(crate) sources: Arc<Vec<PolicySource>>,
    /// policy id → (source index, byte offset of the policy's text in the source)
    pub(crate) origin: Arc<HashMap<PolicyId, (usize, usize)>>,
}

impl fmt::Debug for Policies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policies")
            .field("policies", &self.set.policies().count())
            .field("files", &self.sources.iter().map(|s| &s.name).collect::<Vec<_>>())
            .finish()
    }
}

impl Policies {
    /// Parses policy files. A policy's id is its `@id("…")` annotation, or `<file stem>:<n>`
    /// (its position in its file, from 0). Templates are refused.
    pub fn parse(sources: Vec<PolicySource>) -> Result<Self, PolicyConfigError> {
        let mut set = PolicySet::new();
        let mut origin = HashMap::new();
        for (index, source) in sources.iter().enumerate() {
            let parsed = PolicySet::from_str(&source.text).map_err(|e| {
                let (line, column) = e
                    .iter()
                    .find_map(|err| miette::Diagnostic::labels(err).and_then(|mut l| l.next()))
                    .map_or((1, 1), |label| line_column(&source.text, label.offset()));
                PolicyConfigError::Parse { file: source.name.clone(), line, column, message: e.to_string() }
            })?;
            if let Some(template) = parsed.templates().next() {
                let offset = source.text.find(&template.to_string()).unwrap_or(0);
                let (line, column) = line_column(&source.text, offset);
                return Err(PolicyConfigError::Parse {
                    file: source.name.clone(),
                    line,
                    column,
                    message: "policy templates (?principal / ?resource) are not supported".into(),
                });
            }
            let stem = std::path::Path::new(&source.name)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or(&source.name)
                .to_owned();
            let mut policies: Vec<_> = parsed.policies().cloned().collect();
            // from_str numbers them policy0, policy1, …: keep file order
            policies.sort_by_key(|p| p.id().to_string().trim_start_matches("policy").parse::<usize>().unwrap_or(0));
            let mut search_from = 0;
            for (n, policy) in policies.into_iter().enumerate() {
                let text = policy.to_string();
                let offset = policy_offset(&source.text, &text, search_from);
                search_from = offset + 1;
                let id = PolicyId::new(policy.annotation("id").map_or_else(|| format!("{stem}:{n}"), str::to_owned));
                if origin.contains_key(&id) {
                    let (line, column) = line_column(&source.text, offset);
                    return Err(PolicyConfigError::Parse {
                        file: source.name.clone(),
                        line,
                        column,
                        message: format!("duplicate policy id {id:?}"),
                    });
                }
                origin.insert(id.clone(), (index, offset));
                set.add(policy.new_id(id)).map_err(|e| PolicyConfigError::Parse {
                    file: source.name.clone(),
                    line: 1,
                    column: 1,
                    message: e.to_string(),
                })?;
            }
        }
        Ok(Self { set, sources: Arc::new(sources), origin: Arc::new(origin) })
    }

    /// Reads and parses policy files.
    pub fn from_files<P: AsRef<std::path::Path>>(paths: &[P]) -> Result<Self, PolicyConfigError> {
        let sources = paths
            .iter()
            .map(|p| {
                let name = p.as_ref().display().to_string();
                std::fs::read_to_string(p.as_ref())
                    .map(|text| PolicySource { name: name.clone(), text })
                    .map_err(|e| PolicyConfigError::Read { file: name, reason: e.to_string() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::parse(sources)
    }

    /// How many policies.
    pub fn len(&self) -> usize {
        self.set.policies().count()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where a policy is: `(file, line, column)`.
    pub fn location(&self, id: &PolicyId) -> Option<(String, usize, usize)> {
        let (index, offset) = *self.origin.get(id)?;
        let source = self.sources.get(index)?;
        let (line, column) = line_column(&source.text, offset);
        Some((source.name.clone(), line, column))
    }

    /// Where a byte span reported for a policy is: `(file, line, column)`.
    pub(crate) fn span_location(&self, id: &PolicyId, offset: usize) -> Option<(String, usize, usize)> {
        let (index, _) = *self.origin.get(id)?;
        let source = self.sources.get(index)?;
        let (line, column) = line_column(&source.text, offset);
        Some((source.name.clone(), line, column))
    }
}

/// Finds the policy's text in its file. Cedar's `Display` of a parsed policy is its source text.
fn policy_offset(file: &str, text: &str, from: usize) -> usize {
    file.get(from..).and_then(|rest| rest.find(text)).map_or(from.min(file.len()), |i| i + from)
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// What the upstream declared: tools and prompts learned from listings (or fetched).
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    pub(crate) tools: HashMap<String, Arc<ToolInfo>>,
    pub(crate) prompts: HashMap<String, Arc<PromptInfo>>,
}

impl Catalog {
    /// A catalog from a saved `tools/list` result or response (`{"tools": […]}` or
    /// `{"result": {"tools": […]}}`), prompts too when present.
    pub fn from_listing(value: &Value) -> Self {
        let mut catalog = Self::default();
        let result = value.get("result").unwrap_or(value);
        catalog.learn_tools(result);
        catalog.learn_prompts(result);
        catalog
    }

    /// Learns the tools of a `tools/list` result; returns whether anything changed.
    pub fn learn_tools(&mut self, result: &Value) -> bool {
        let mut changed = false;
        for tool in result.get("tools").and_then(Value::as_array).into_iter().flatten() {
            let Some(info) = ToolInfo::from_listing(tool) else { continue };
            if !self.tools.contains_key(&info.name) && self.tools.len() >= MAX_CATALOG_ENTRIES {
                break;
            }
            let same = self.tools.get(&info.name).is_some_and(|old| old.decides_as(&info));
            changed |= !same;
            self.tools.insert(info.name.clone(), Arc::new(info));
        }
        changed
    }

    /// Learns the prompts of a `prompts/list` result; returns whether anything changed.
    pub fn learn_prompts(&mut self, result: &Value) -> bool {
        let mut changed = false;
        for prompt in result.get("prompts").and_then(Value::as_array).into_iter().flatten() {
            let Some(info) = PromptInfo::from_listing(prompt) else { continue };
            if !self.prompts.contains_key(&info.name) && self.prompts.len() >= MAX_CATALOG_ENTRIES {
                break;
            }
            let same = self.prompts.get(&info.name).is_some_and(|old| old.decides_as(&info));
            changed |= !same;
            self.prompts.insert(info.name.clone(), Arc::new(info));
        }
        changed
    }

    /// Whether every item of a `tools/list` (`key` = `tools`) or `prompts/list` (`prompts`) result
    /// is known as listed: learning it would change nothing.
    pub fn knows_listing(&self, key: &str, result: &Value) -> bool {
        let mut items = result.get(key).and_then(Value::as_array).into_iter().flatten();
        // an entry listed exactly as before is known without being read again (the usual case:
        // the same listing passing again); any other is read, and compared as decisions read it
        match key {
            "tools" => items.all(|item| {
                let known = item.get("name").and_then(Value::as_str).and_then(|n| self.tools.get(n));
                known.is_some_and(|old| old.listed() == item)
                    || ToolInfo::from_listing(item)
                        .is_none_or(|info| self.tools.get(&info.name).is_some_and(|old| old.decides_as(&info)))
            }),
            "prompts" => items.all(|item| {
                let known = item.get("name").and_then(Value::as_str).and_then(|n| self.prompts.get(n));
                known.is_some_and(|old| old.listed() == item)
                    || PromptInfo::from_listing(item)
                        .is_none_or(|info| self.prompts.get(&info.name).is_some_and(|old| old.decides_as(&info)))
            }),
            _ => true,
        }
    }

    /// The known tool names.
    pub fn tool_names(&self) -> impl Iterator<Item = &str> {
        self.tools.keys().map(String::as_str)
    }

    /// Whether nothing is known.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty() && self.prompts.is_empty()
    }
}

/// The policies that can apply to a call, by scope: for each action, the policies whose action
/// scope admits it and whose resource scope names no particular entity (`general`), and for each
/// entity a scope names, those plus the policies naming it. Entities have no parents, so
/// `resource in X` admits exactly `X`. Leaving out a policy whose scope cannot match changes no
/// decision (a scope never errors), and spares evaluating it.
struct ScopeIndex {
    general: HashMap<Action, PolicySet>,
    specific: HashMap<Action, HashMap<String, PolicySet>>,
}

impl ScopeIndex {
    const ACTIONS: [Action; 3] = [Action::ToolsCall, Action::ResourcesRead, Action::PromptsGet];

    fn new(set: &PolicySet) -> Self {
        let admits = |p: &cedar_policy::Policy, action: Action| match p.action_constraint() {
            cedar_policy::ActionConstraint::Any => true,
            cedar_policy::ActionConstraint::Eq(e) => e == action.uid(),
            cedar_policy::ActionConstraint::In(list) => list.contains(&action.uid()),
        };
        let named = |p: &cedar_policy::Policy| match p.resource_constraint() {
            cedar_policy::ResourceConstraint::Eq(e)
            | cedar_policy::ResourceConstraint::In(e)
            | cedar_policy::ResourceConstraint::IsIn(_, e) => Some(e),
            _ => None,
        };
        let mut general = HashMap::new();
        let mut specific = HashMap::new();
        for action in Self::ACTIONS {
            let resource_type = type_name(action.resource_type());
            let (named_policies, others): (Vec<_>, Vec<_>) =
                set.policies().filter(|p| admits(p, action)).partition(|p| named(p).is_some());
            let mut targets: HashMap<String, Vec<cedar_policy::Policy>> = HashMap::new();
            for p in named_policies {
                if let Some(e) = named(p).filter(|e| e.type_name() == &resource_type) {
                    targets.entry(e.id().unescaped().to_owned()).or_default().push(p.clone());
                }
            }
            let others: Vec<cedar_policy::Policy> = others.into_iter().cloned().collect();
            for (target, mut policies) in targets {
                policies.extend(others.iter().cloned());
                // ids are unique in `set`, so this cannot fail; if it did, the whole set is used
                let policies = PolicySet::from_policies(policies).unwrap_or_else(|_| set.clone());
                specific.entry(action).or_insert_with(HashMap::new).insert(target, policies);
            }
            general.insert(action, PolicySet::from_policies(others).unwrap_or_else(|_| set.clone()));
        }
        Self { general, specific }
    }

    fn general(&self, action: Action) -> &PolicySet {
        static EMPTY: std::sync::OnceLock<PolicySet> = std::sync::OnceLock::new();
        self.general.get(&action).unwrap_or_else(|| EMPTY.get_or_init(PolicySet::new))
    }

    fn get(&self, action: Action, target: &str) -> &PolicySet {
        self.specific.get(&action).and_then(|t| t.get(target)).unwrap_or_else(|| self.general(action))
    }
}

/// A declared tool or prompt (shared with the catalog, not copied per call).
enum Declared {
    Tool(Arc<ToolInfo>),
    Prompt(Arc<PromptInfo>),
}

impl Declared {
    fn arguments(&self) -> &RecordType {
        match self {
            Self::Tool(t) => &t.arguments,
            Self::Prompt(p) => &p.arguments,
        }
    }

    fn entity(&self) -> &Entity {
        match self {
            Self::Tool(t) => t.entity(),
            Self::Prompt(p) => p.entity(),
        }
    }
}

/// The entity of a target nothing was declared about.
fn undeclared_entity(action: Action, target: &str) -> Entity {
    match action {
        Action::ToolsCall => ToolInfo::undeclared_entity(target),
        Action::PromptsGet => PromptInfo::undeclared_entity(target),
        Action::ResourcesRead => resource_entity(target),
    }
}

/// Whether a policy reads `context` other than `context.arguments` (its time, client, era,
/// protocol version, or the whole record): then a list decision depends on the request's context
/// and is cached with it. `policy` is the policy's JSON form (`{"Var": "context"}` is the
/// context; `.` and `has` read one attribute of it).
pub(crate) fn reads_context(policy: &Value) -> bool {
    match policy {
        Value::Object(members) => {
            for op in [".", "has"] {
                if let Some(access) = members.get(op)
                    && access.get("left").and_then(|l| l.get("Var")).and_then(Value::as_str) == Some("context")
                {
                    return access.get("attr").and_then(Value::as_str) != Some("arguments");
                }
            }
            members.get("Var").and_then(Value::as_str) == Some("context") || members.values().any(reads_context)
        }
        Value::Array(items) => items.iter().any(reads_context),
        _ => false,
    }
}

/// One call to decide on.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The operation.
    pub action: Action,
    /// The tool name, prompt name or resource URI.
    pub target: &'a str,
    /// `params.arguments`, if any.
    pub arguments: Option<&'a Map<String, Value>>,
}

/// Why a call was refused, in a form safe to show the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// A `forbid` policy matched.
    Forbidden(String),
    /// No `permit` policy matched (default deny).
    NoPermitMatched,
    /// A policy could not be evaluated (e.g. an argument of the wrong type): denied, fail closed.
    EvaluationError(String),
    /// The arguments could not be represented in Cedar.
    ArgumentsNotRepresentable,
}

impl Reason {
    /// The reason id put in the JSON-RPC error `data.reasons`.
    pub fn id(&self) -> String {
        match self {
            Self::Forbidden(policy) => policy.clone(),
            Self::NoPermitMatched => "no_permit_matched".into(),
            Self::EvaluationError(policy) => format!("evaluation_error:{policy}"),
            Self::ArgumentsNotRepresentable => "arguments_not_representable".into(),
        }
    }
}

/// The outcome of one authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    allowed: bool,
    /// Policies that determined the decision (permits when allowed, forbids when denied).
    determining: Vec<String>,
    reasons: Vec<Reason>,
    /// Evaluation errors, in words (no argument values, no token contents).
    errors: Vec<String>,
}

impl Decision {
    /// Whether the call may go through.
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }
    /// The ids of the determining policies.
    pub fn determining_policies(&self) -> &[String] {
        &self.determining
    }
    /// Why it was denied (empty when allowed).
    pub fn reasons(&self) -> &[Reason] {
        &self.reasons
    }
    /// Evaluation errors.
    pub fn errors(&self) -> &[String] {
        &self.errors
    }
}

/// Settings of an engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct Settings {
    /// What happens when no policy decides.
    pub default_decision: DefaultDecision,
    /// Whether validation problems stop loading.
    pub validation: ValidationLevel,
}

/// Policies, the catalog and the settings: everything a decision needs.
pub struct Engine {
    policies: Policies,
    index: ScopeIndex,
    catalog: RwLock<Catalog>,
    settings: Settings,
    authorizer: Authorizer,
    /// principal entities of recent credentials (building one costs more than evaluating a policy)
    principals: PrincipalCache,
    /// the number of the next principal cache entry
    next_principal: AtomicU64,
    /// the entities of recent (caller, target) pairs
    entities: quick_cache::sync::Cache<EntitiesKey, Arc<Entities>>,
    /// recent list decisions
    shown: quick_cache::sync::Cache<ShownKey, bool>,
    /// bumped when the catalog (and so a target's entity or its invalid policies) changes
    generation: AtomicU64,
    /// whether a policy reads the context beyond the arguments
    reads_context: bool,
    /// policy ids that failed validation when tools were learned at run time (error level only)
    invalid: RwLock<HashMap<String, Vec<String>>>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("policies", &self.policies)
            .field("tools", &self.read_catalog().tools.len())
            .field("settings", &self.settings)
            .finish()
    }
}

impl Engine {
    /// An engine over `policies`, validated against `catalog` when it is not empty (at
    /// [`ValidationLevel::Error`], any error finding fails).
    pub fn new(
        policies: Policies,
        catalog: Catalog,
        settings: Settings,
    ) -> Result<(Self, ValidationReport), PolicyConfigError> {
        let report = validate::validate(&policies, &catalog);
        if settings.validation == ValidationLevel::Error && report.has_errors() {
            return Err(PolicyConfigError::Validation(report));
        }
        report.log();
        let index = ScopeIndex::new(&policies.set);
        // a policy whose JSON form cannot be had counts as reading the context
        let reads_context = policies.set.policies().any(|p| p.to_json().map_or(true, |json| reads_context(&json)));
        let engine = Self {
            index,
            policies,
            catalog: RwLock::new(catalog),
            settings,
            authorizer: Authorizer::new(),
            invalid: RwLock::new(HashMap::new()),
            principals: quick_cache::sync::Cache::new(MAX_CACHED_PRINCIPALS),
            next_principal: AtomicU64::new(ANONYMOUS + 1),
            entities: quick_cache::sync::Cache::new(MAX_CACHED_ENTITIES),
            shown: quick_cache::sync::Cache::new(MAX_CACHED_DECISIONS),
            generation: AtomicU64::new(0),
            reads_context,
        };
        Ok((engine, report))
    }

    /// The policies.
    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// The settings.
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// A copy of the catalog.
    pub fn catalog(&self) -> Catalog {
        self.read_catalog().clone()
    }

    fn read_catalog(&self) -> RwLockReadGuard<'_, Catalog> {
        self.catalog.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_catalog(&self) -> RwLockWriteGuard<'_, Catalog> {
        self.catalog.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Learns tools or prompts from a listing result passing through and re-validates the
    /// policies when something new was learned. At [`ValidationLevel::Error`], tools and prompts
    /// a failing policy applies to are then denied (and hidden), naming the policy — never a
    /// silent deny.
    pub fn learn(&self, method: &str, result: &Value) {
        let key = match method {
            "tools/list" => "tools",
            "prompts/list" => "prompts",
            _ => return,
        };
        // the usual case, a listing already known, under the shared lock only
        if result.get(key).and_then(Value::as_array).is_none_or(Vec::is_empty)
            || self.read_catalog().knows_listing(key, result)
        {
            return;
        }
        let changed = {
            let mut catalog = self.write_catalog();
            match method {
                "tools/list" => catalog.learn_tools(result),
                "prompts/list" => catalog.learn_prompts(result),
                _ => false,
            }
        };
        if !changed {
            return;
        }
        let report = validate::validate(&self.policies, &self.read_catalog());
        report.log();
        if self.settings.validation == ValidationLevel::Error {
            let mut invalid: HashMap<String, Vec<String>> = HashMap::new();
            for f in report.findings().iter().filter(|f| f.is_error()) {
                if let Some(target) = f.target() {
                    invalid.entry(target.to_owned()).or_default().push(f.policy_id().to_owned());
                }
            }
            *self.invalid.write().unwrap_or_else(std::sync::PoisonError::into_inner) = invalid;
        }
        // after the catalog and the invalid policies: a decision that reads the new generation
        // sees both; entries of older generations are no longer found
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entities.clear();
        self.shown.clear();
    }

    fn invalid_policies(&self, action: Action, target: &str) -> Option<Vec<String>> {
        if action == Action::ResourcesRead {
            return None;
        }
        let invalid = self.invalid.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        if invalid.is_empty() {
            return None;
        }
        invalid.get(&validate::target_key(action, target)).cloned()
    }

    /// The Cedar context of a decision: all of it when a policy reads more than the arguments,
    /// else the arguments alone (which decides the same: no policy reads the rest).
    fn cedar_context(
        &self,
        context: &CallContext,
        arguments: Option<cedar_policy::RestrictedExpression>,
    ) -> Result<cedar_policy::Context, crate::args::ConversionError> {
        if self.reads_context { context.to_cedar(arguments) } else { CallContext::arguments_only(arguments) }
    }

    /// What the upstream declared about a target (shared, not copied).
    fn declared(&self, action: Action, target: &str) -> Option<Declared> {
        let catalog = self.read_catalog();
        match action {
            Action::ToolsCall => catalog.tools.get(target).map(|t| Declared::Tool(t.clone())),
            Action::PromptsGet => catalog.prompts.get(target).map(|p| Declared::Prompt(p.clone())),
            Action::ResourcesRead => None,
        }
    }

    /// The caller of a request, its entity from the cache when the same credential (and the
    /// same principal) was seen recently. Bounded: at most [`MAX_CACHED_PRINCIPALS`] are kept.
    pub(crate) fn caller(&self, principal: Option<&Principal>) -> Caller {
        let Some(p) = principal else {
            static ANONYMOUS_ENTITY: OnceLock<Entity> = OnceLock::new();
            let entity = ANONYMOUS_ENTITY.get_or_init(|| principal_entity(None));
            return Caller { entity: CallerEntity::Anonymous(entity), id: Some(ANONYMOUS) };
        };
        let Some(fingerprint) = p.token_fingerprint() else {
            return Caller { entity: CallerEntity::Built(Box::new(principal_entity(Some(p)))), id: None };
        };
        if let Some(cached) = self.principals.get(&fingerprint)
            && cached.principal == *p
        {
            let id = cached.id;
            return Caller { entity: CallerEntity::Cached(cached), id: Some(id) };
        }
        let id = self.next_principal.fetch_add(1, Ordering::Relaxed);
        let cached = Arc::new(CachedPrincipal { principal: p.clone(), entity: principal_entity(Some(p)), id });
        self.principals.insert(fingerprint, cached.clone());
        Caller { entity: CallerEntity::Cached(cached), id: Some(id) }
    }

    /// The entities a decision on `target` reads (the caller's and the target's), from the cache
    /// when the caller has a number.
    fn entities(
        &self,
        caller: &Caller,
        generation: u64,
        action: Action,
        target: &str,
        declared: Option<&Declared>,
    ) -> Result<Arc<Entities>, String> {
        let query = caller.id.filter(|_| target.len() <= MAX_CACHED_TARGET_LEN).map(|id| EntitiesQuery {
            caller: id,
            generation,
            action,
            target,
        });
        if let Some(found) = query.as_ref().and_then(|q| self.entities.get(q)) {
            return Ok(found);
        }
        let resource = declared.map_or_else(|| undeclared_entity(action, target), |d| d.entity().clone());
        let entities =
            Arc::new(Entities::from_entities([caller.entity().clone(), resource], None).map_err(|e| e.to_string())?);
        if let Some(q) = query {
            let key = EntitiesKey { caller: q.caller, generation, action, target: target.into() };
            self.entities.insert(key, entities.clone());
        }
        Ok(entities)
    }

    /// Decides on one call.
    pub fn authorize(&self, principal: Option<&Principal>, call: Call<'_>, context: &CallContext) -> Decision {
        let deny = |reasons: Vec<Reason>, errors: Vec<String>| Decision {
            allowed: false,
            determining: Vec::new(),
            reasons,
            errors,
        };
        // read before the catalog (see `learn`)
        let generation = self.generation.load(Ordering::Acquire);
        if let Some(policies) = self.invalid_policies(call.action, call.target) {
            let errors = vec![format!("policies {} do not type-check against {}", policies.join(", "), call.target)];
            return deny(policies.into_iter().map(Reason::EvaluationError).collect(), errors);
        }
        let declared = self.declared(call.action, call.target);
        let arguments = match arguments_expr(call.arguments, declared.as_ref().map(Declared::arguments)) {
            Ok(a) => a,
            Err(e) => return deny(vec![Reason::ArgumentsNotRepresentable], vec![e.to_string()]),
        };
        let cedar_context = match self.cedar_context(context, Some(arguments)) {
            Ok(c) => c,
            Err(e) => return deny(vec![Reason::ArgumentsNotRepresentable], vec![e.to_string()]),
        };
        let caller = self.caller(principal);
        let entities = match self.entities(&caller, generation, call.action, call.target, declared.as_ref()) {
            Ok(e) => e,
            Err(e) => return deny(vec![Reason::EvaluationError("entities".into())], vec![e]),
        };
        let resource = uid(call.action.resource_type(), call.target);
        let request = match Request::new(caller.entity().uid(), call.action.uid(), resource, cedar_context, None) {
            Ok(r) => r,
            Err(e) => return deny(vec![Reason::EvaluationError("request".into())], vec![e.to_string()]),
        };
        let response = self.authorizer.is_authorized(&request, self.index.get(call.action, call.target), &entities);
        let errors: Vec<(String, String)> = response
            .diagnostics()
            .errors()
            .map(|e| match e {
                cedar_policy::AuthorizationError::PolicyEvaluationError(pe) => {
                    (pe.policy_id().to_string(), e.to_string())
                }
            })
            .collect();
        let reason: Vec<String> = response.diagnostics().reason().map(ToString::to_string).collect();
        if !errors.is_empty() {
            // a policy that cannot be evaluated might have been a forbid: fail closed
            let reasons = errors.iter().map(|(id, _)| Reason::EvaluationError(id.clone())).collect();
            return deny(reasons, errors.into_iter().map(|(_, e)| e).collect());
        }
        match (response.decision(), self.settings.default_decision) {
            (CedarDecision::Allow, _) => {
                Decision { allowed: true, determining: reason, reasons: Vec::new(), errors: Vec::new() }
            }
            (CedarDecision::Deny, DefaultDecision::Deny) if reason.is_empty() => {
                deny(vec![Reason::NoPermitMatched], Vec::new())
            }
            (CedarDecision::Deny, DefaultDecision::InsecureAllow) if reason.is_empty() => {
                Decision { allowed: true, determining: Vec::new(), reasons: Vec::new(), errors: Vec::new() }
            }
            (CedarDecision::Deny, _) => Decision {
                allowed: false,
                reasons: reason.iter().cloned().map(Reason::Forbidden).collect(),
                determining: reason,
                errors: Vec::new(),
            },
        }
    }

    /// Whether a list item may be shown: `false` only when a call to it would be denied whatever
    /// its arguments are (partial evaluation with the arguments unknown). `target` is `None` for
    /// a resource template (its URI is unknown too).
    pub fn visible(
        &self,
        principal: &Entity,
        action: Action,
        target: Option<&str>,
        context: &cedar_policy::Context,
    ) -> bool {
        let caller = Caller { entity: CallerEntity::Built(Box::new(principal.clone())), id: None };
        self.decide_visible(&caller, self.generation.load(Ordering::Acquire), action, target, context)
    }

    /// The caller and context every item of one list answer is decided for.
    pub(crate) fn viewer<'a>(&self, principal: Option<&Principal>, context: &'a CallContext) -> Viewer<'a> {
        Viewer {
            // read before the catalog (see `learn`)
            generation: self.generation.load(Ordering::Acquire),
            caller: self.caller(principal),
            context,
            keyed: self.reads_context.then(|| Arc::new(context.clone())),
            cedar: std::cell::OnceCell::new(),
        }
    }

    /// [`visible`](Self::visible) for a list answer's viewer, from the cache when this caller was
    /// shown (or not shown) this target recently, with the same catalog and — when a policy reads
    /// it — the same context. Bounded: at most [`MAX_CACHED_DECISIONS`] are kept.
    pub(crate) fn shown(&self, viewer: &Viewer<'_>, action: Action, target: Option<&str>) -> bool {
        let cacheable = target.is_none_or(|t| t.len() <= MAX_CACHED_TARGET_LEN);
        let query = viewer.caller.id.filter(|_| cacheable).map(|id| ShownQuery {
            caller: id,
            generation: viewer.generation,
            action,
            target,
            context: viewer.keyed.as_deref(),
        });
        if let Some(shown) = query.as_ref().and_then(|q| self.shown.get(q)) {
            return shown;
        }
        // arguments unknown: partial evaluation
        let Some(context) = viewer.cedar.get_or_init(|| self.cedar_context(viewer.context, None).ok()) else {
            return false;
        };
        let shown = self.decide_visible(&viewer.caller, viewer.generation, action, target, context);
        if let Some(q) = query {
            let key = ShownKey {
                caller: q.caller,
                generation: q.generation,
                action,
                target: target.map(Into::into),
                context: viewer.keyed.clone(),
            };
            self.shown.insert(key, shown);
        }
        shown
    }

    fn decide_visible(
        &self,
        caller: &Caller,
        generation: u64,
        action: Action,
        target: Option<&str>,
        context: &cedar_policy::Context,
    ) -> bool {
        if let Some(t) = target
            && self.invalid_policies(action, t).is_some()
        {
            return false;
        }
        let builder = Request::builder().principal(caller.entity().uid()).action(action.uid()).context(context.clone());
        let (builder, entities) = match target {
            Some(t) => {
                let declared = self.declared(action, t);
                let entities = self.entities(caller, generation, action, t, declared.as_ref());
                (builder.resource(uid(action.resource_type(), t)), entities)
            }
            None => (
                builder.unknown_resource_with_type(type_name(action.resource_type())),
                Entities::from_entities([caller.entity().clone()], None).map(Arc::new).map_err(|e| e.to_string()),
            ),
        };
        let request = builder.build();
        let Ok(entities) = entities else { return false };
        let set = match target {
            Some(t) => self.index.get(action, t),
            // an unknown resource (a template) may be any entity a scope names: every policy counts
            None => &self.policies.set,
        };
        let response = self.authorizer.is_authorized_partial(&request, set, &entities);
        if response.definitely_errored().next().is_some() {
            return false;
        }
        let forbidden = response.definitely_satisfied().any(|p| p.effect() == Effect::Forbid);
        match self.settings.default_decision {
            DefaultDecision::Deny => !forbidden && response.decision() != Some(CedarDecision::Deny),
            DefaultDecision::InsecureAllow => !forbidden,
        }
    }

    /// `Mcp::<ty>::"<id>"`, for callers that build requests by hand.
    pub fn entity_uid(ty: &str, id: &str) -> EntityUid {
        uid(ty, id)
    }
}
