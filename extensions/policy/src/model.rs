//! The Cedar model of MCP: entity types, actions, the context, and the schema generated for them.
//!
//! ```cedarschema
//! namespace Mcp {
//!   entity Principal = { kind, issuer, subject, authMethod, clientId?, scopes, groups, roles, tenant? } tags String;
//!   entity Tool = { name, title?, annotations: { readOnlyHint, destructiveHint, idempotentHint, openWorldHint }, declared };
//!   entity Resource = { uri };
//!   entity Prompt = { name, title?, declared };
//!   action "tools/call", "resources/read", "prompts/get";
//! }
//! ```
//!
//! The full schema is in `docs/policy.cedarschema`; [`cedar_schema_json`] builds it with the
//! argument record of one tool (and one prompt) filled in.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::OnceLock;

use cedar_policy::{Context, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use mcp_enterprise_core::{McpRequest, Principal};
use serde_json::{Map, Value, json};

use crate::args::{ConversionError, RecordType, arguments_to_cedar};

/// The namespace of every entity type and action.
pub const NAMESPACE: &str = "Mcp";

/// An MCP operation a policy decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// `tools/call` on a `Mcp::Tool`.
    ToolsCall,
    /// `resources/read` on a `Mcp::Resource`.
    ResourcesRead,
    /// `prompts/get` on a `Mcp::Prompt`.
    PromptsGet,
}

impl Action {
    /// The MCP method, which is also the Cedar action id.
    pub fn method(self) -> &'static str {
        match self {
            Self::ToolsCall => "tools/call",
            Self::ResourcesRead => "resources/read",
            Self::PromptsGet => "prompts/get",
        }
    }

    /// The action for an MCP method, when policies govern it.
    pub fn from_method(method: &str) -> Option<Self> {
        match method {
            "tools/call" => Some(Self::ToolsCall),
            "resources/read" => Some(Self::ResourcesRead),
            "prompts/get" => Some(Self::PromptsGet),
            _ => None,
        }
    }

    /// The resource entity type name (without namespace).
    pub fn resource_type(self) -> &'static str {
        match self {
            Self::ToolsCall => "Tool",
            Self::ResourcesRead => "Resource",
            Self::PromptsGet => "Prompt",
        }
    }

    pub(crate) fn uid(self) -> EntityUid {
        // parsed once: a Cedar name parse costs more than evaluating a simple policy
        static UIDS: OnceLock<[EntityUid; 3]> = OnceLock::new();
        let uids = UIDS.get_or_init(|| {
            [Self::ToolsCall, Self::ResourcesRead, Self::PromptsGet].map(|a| uid("Action", a.method()))
        });
        match self {
            Self::ToolsCall => uids[0].clone(),
            Self::ResourcesRead => uids[1].clone(),
            Self::PromptsGet => uids[2].clone(),
        }
    }
}

/// The entity types of the model (and `Action`), whose names are parsed once.
const TYPES: [&str; 5] = ["Principal", "Tool", "Resource", "Prompt", "Action"];

/// `Mcp::<ty>` as an entity type name.
pub(crate) fn type_name(ty: &str) -> EntityTypeName {
    static NAMES: OnceLock<[EntityTypeName; 5]> = OnceLock::new();
    // the names used are fixed identifiers of this module
    let parse =
        |ty: &str| EntityTypeName::from_str(&format!("{NAMESPACE}::{ty}")).expect("fixed Cedar type names parse");
    match TYPES.iter().position(|t| *t == ty) {
        Some(i) => NAMES.get_or_init(|| TYPES.map(parse))[i].clone(),
        None => parse(ty),
    }
}

/// `Mcp::<ty>::"<id>"`.
pub(crate) fn uid(ty: &str, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(type_name(ty), EntityId::new(id))
}

/// What the upstream declared about a tool in `tools/list`.
#[derive(Debug, Clone)]
pub struct ToolInfo {
    /// The tool name.
    pub name: String,
    /// Its argument types, from `inputSchema`.
    pub arguments: RecordType,
    entity: Entity,
    /// The entry as listed: a listing repeating it is known without reading it again.
    listed: Value,
}

/// MCP's defaults for absent tool annotations (the spec's: a tool is assumed destructive and
/// open-world unless it says otherwise).
const ANNOTATION_DEFAULTS: [(&str, bool); 4] =
    [("readOnlyHint", false), ("destructiveHint", true), ("idempotentHint", false), ("openWorldHint", true)];

impl ToolInfo {
    /// Reads one entry of a `tools/list` result; `None` when it has no name.
    pub fn from_listing(tool: &Value) -> Option<Self> {
        let name = tool.get("name")?.as_str()?.to_owned();
        let arguments = tool.get("inputSchema").map(RecordType::from_input_schema).unwrap_or_default();
        let title = tool
            .get("title")
            .and_then(Value::as_str)
            .or_else(|| tool.get("annotations").and_then(|a| a.get("title")).and_then(Value::as_str));
        let entity = tool_entity(&name, title, tool.get("annotations"), true);
        Some(Self { name, arguments, entity, listed: tool.clone() })
    }

    /// An undeclared tool: annotations at their MCP defaults, `declared == false`.
    pub(crate) fn undeclared_entity(name: &str) -> Entity {
        tool_entity(name, None, None, false)
    }

    pub(crate) fn entity(&self) -> &Entity {
        &self.entity
    }

    /// Whether decisions read the same of `other` as of this entry: its argument types and its
    /// entity (title, annotations). A change of either must be learned, or cached decisions and
    /// validations would keep what the upstream no longer says (a tool newly marked destructive).
    /// `deep_eq`: a Cedar entity's `==` compares only its uid.
    pub(crate) fn decides_as(&self, other: &Self) -> bool {
        self.arguments == other.arguments && self.entity.deep_eq(&other.entity)
    }

    /// The entry as it was listed.
    pub(crate) fn listed(&self) -> &Value {
        &self.listed
    }
}

fn tool_entity(name: &str, title: Option<&str>, annotations: Option<&Value>, declared: bool) -> Entity {
    let hints = ANNOTATION_DEFAULTS.iter().map(|(hint, default)| {
        let value = annotations.and_then(|a| a.get(*hint)).and_then(Value::as_bool).unwrap_or(*default);
        ((*hint).to_owned(), RestrictedExpression::new_bool(value))
    });
    let mut attrs = HashMap::from([
        ("name".to_owned(), RestrictedExpression::new_string(name.to_owned())),
        ("declared".to_owned(), RestrictedExpression::new_bool(declared)),
        ("annotations".to_owned(), record(hints.collect())),
    ]);
    if let Some(title) = title {
        attrs.insert("title".to_owned(), RestrictedExpression::new_string(title.to_owned()));
    }
    entity(uid("Tool", name), attrs, Vec::new())
}

/// What the upstream declared about a prompt in `prompts/list`.
#[derive(Debug, Clone)]
pub struct PromptInfo {
    /// The prompt name.
    pub name: String,
    /// Its arguments (all strings).
    pub arguments: RecordType,
    entity: Entity,
    /// The entry as listed.
    listed: Value,
}

impl PromptInfo {
    /// Reads one entry of a `prompts/list` result.
    pub fn from_listing(prompt: &Value) -> Option<Self> {
        let name = prompt.get("name")?.as_str()?.to_owned();
        let arguments = prompt
            .get("arguments")
            .and_then(Value::as_array)
            .map(|a| RecordType::from_prompt_arguments(a))
            .unwrap_or_default();
        let entity = prompt_entity(&name, prompt.get("title").and_then(Value::as_str), true);
        Some(Self { name, arguments, entity, listed: prompt.clone() })
    }

    pub(crate) fn undeclared_entity(name: &str) -> Entity {
        prompt_entity(name, None, false)
    }

    pub(crate) fn entity(&self) -> &Entity {
        &self.entity
    }

    /// Whether decisions read the same of `other` as of this entry (arguments and title).
    pub(crate) fn decides_as(&self, other: &Self) -> bool {
        self.arguments == other.arguments && self.entity.deep_eq(&other.entity)
    }

    /// The entry as it was listed.
    pub(crate) fn listed(&self) -> &Value {
        &self.listed
    }
}

fn prompt_entity(name: &str, title: Option<&str>, declared: bool) -> Entity {
    let mut attrs = HashMap::from([
        ("name".to_owned(), RestrictedExpression::new_string(name.to_owned())),
        ("declared".to_owned(), RestrictedExpression::new_bool(declared)),
    ]);
    if let Some(title) = title {
        attrs.insert("title".to_owned(), RestrictedExpression::new_string(title.to_owned()));
    }
    entity(uid("Prompt", name), attrs, Vec::new())
}

/// A `Mcp::Resource` for a URI.
pub(crate) fn resource_entity(uri: &str) -> Entity {
    let attrs = HashMap::from([("uri".to_owned(), RestrictedExpression::new_string(uri.to_owned()))]);
    entity(uid("Resource", uri), attrs, Vec::new())
}

fn record(pairs: Vec<(String, RestrictedExpression)>) -> RestrictedExpression {
    // the keys passed here are distinct by construction
    RestrictedExpression::new_record(pairs).unwrap_or_else(|_| RestrictedExpression::new_bool(false))
}

fn entity(
    uid: EntityUid,
    attrs: HashMap<String, RestrictedExpression>,
    tags: Vec<(String, RestrictedExpression)>,
) -> Entity {
    let fallback = uid.clone();
    // attributes built here are literal values; evaluating them cannot fail
    Entity::new_with_tags(uid, attrs, HashSet::new(), tags)
        .unwrap_or_else(|_| Entity::new_no_attrs(fallback, HashSet::new()))
}

/// The claim names that become principal attributes rather than tags.
const PRINCIPAL_CLAIM_ATTRIBUTES: [&str; 3] = ["groups", "roles", "tenant"];

/// The `Mcp::Principal` entity of a caller (`None`: an unauthenticated caller, `kind == "anonymous"`).
///
/// The entity id is the subject; policies for several issuers should also test `principal.issuer`.
pub fn principal_entity(principal: Option<&Principal>) -> Entity {
    let Some(p) = principal else {
        let attrs = HashMap::from([
            ("kind".to_owned(), RestrictedExpression::new_string("anonymous".into())),
            ("issuer".to_owned(), RestrictedExpression::new_string(String::new())),
            ("subject".to_owned(), RestrictedExpression::new_string(String::new())),
            ("authMethod".to_owned(), RestrictedExpression::new_string("none".into())),
            ("scopes".to_owned(), RestrictedExpression::new_set([])),
            ("groups".to_owned(), RestrictedExpression::new_set([])),
            ("roles".to_owned(), RestrictedExpression::new_set([])),
        ]);
        return entity(uid("Principal", ""), attrs, Vec::new());
    };
    let strings = |items: &mut dyn Iterator<Item = &str>| {
        RestrictedExpression::new_set(items.map(|s| RestrictedExpression::new_string(s.to_owned())).collect::<Vec<_>>())
    };
    let claim_strings = |name: &str| {
        let items: Vec<&str> = match p.claims().get(name) {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            Some(Value::String(s)) => vec![s.as_str()],
            _ => Vec::new(),
        };
        strings(&mut items.into_iter())
    };
    let mut attrs = HashMap::from([
        ("kind".to_owned(), RestrictedExpression::new_string(p.kind().as_str().to_owned())),
        ("issuer".to_owned(), RestrictedExpression::new_string(p.issuer().to_owned())),
        ("subject".to_owned(), RestrictedExpression::new_string(p.subject().to_owned())),
        ("authMethod".to_owned(), RestrictedExpression::new_string(p.auth_method().as_str().to_owned())),
        ("scopes".to_owned(), strings(&mut p.scopes().iter().map(String::as_str))),
        ("groups".to_owned(), claim_strings("groups")),
        ("roles".to_owned(), claim_strings("roles")),
    ]);
    if let Some(client_id) = p.client_id() {
        attrs.insert("clientId".to_owned(), RestrictedExpression::new_string(client_id.to_owned()));
    }
    if let Some(tenant) = p.claims().get("tenant").and_then(Value::as_str) {
        attrs.insert("tenant".to_owned(), RestrictedExpression::new_string(tenant.to_owned()));
    }
    let tags = p
        .claims()
        .iter()
        .filter(|(k, _)| !PRINCIPAL_CLAIM_ATTRIBUTES.contains(&k.as_str()))
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), RestrictedExpression::new_string(text))
        })
        .collect();
    entity(uid("Principal", p.subject()), attrs, tags)
}

/// The parts of the context that do not depend on the arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CallContext {
    /// Seconds since the Unix epoch.
    pub now_secs: u64,
    /// The protocol era: `legacy` or `modern`.
    pub era: &'static str,
    /// The protocol version, when known.
    pub protocol_version: Option<String>,
    /// The client's self-declared name (unverified).
    pub client_name: Option<String>,
    /// The client's self-declared version (unverified).
    pub client_version: Option<String>,
}

impl CallContext {
    /// The context of a parsed request at `now_secs`.
    pub fn of_request(mcp: &McpRequest, now_secs: u64) -> Self {
        let info = mcp.client().and_then(|c| c.client_info());
        Self {
            now_secs,
            era: match mcp.era() {
                mcp_enterprise_core::Era::Modern => "modern",
                _ => "legacy",
            },
            protocol_version: mcp.protocol_version().map(str::to_owned),
            client_name: info.and_then(|i| i.name()).map(str::to_owned),
            client_version: info.and_then(|i| i.version()).map(str::to_owned),
        }
    }

    /// The Cedar context of policies that read nothing of it but `context.arguments`: the
    /// arguments alone (Cedar evaluates every member of a context it is given, and the time and
    /// client records cost more to evaluate than most policies).
    pub(crate) fn arguments_only(arguments: Option<RestrictedExpression>) -> Result<Context, ConversionError> {
        let arguments = arguments.unwrap_or_else(|| RestrictedExpression::new_unknown("arguments"));
        Context::from_pairs([("arguments".to_owned(), arguments)]).map_err(|_| ConversionError::TooLarge)
    }

    /// The Cedar context with `arguments` as given (`None`: an unknown, for partial evaluation).
    pub(crate) fn to_cedar(&self, arguments: Option<RestrictedExpression>) -> Result<Context, ConversionError> {
        let secs = i64::try_from(self.now_secs).unwrap_or(i64::MAX);
        let days = secs.div_euclid(86_400);
        let time = record(vec![
            ("epochSeconds".into(), RestrictedExpression::new_long(secs)),
            ("hourUtc".into(), RestrictedExpression::new_long(secs.rem_euclid(86_400) / 3600)),
            ("minuteUtc".into(), RestrictedExpression::new_long(secs.rem_euclid(3600) / 60)),
            // 1970-01-01 was a Thursday; ISO weekday: Monday = 1 … Sunday = 7
            ("weekdayUtc".into(), RestrictedExpression::new_long((days + 3).rem_euclid(7) + 1)),
        ]);
        let mut client = Vec::new();
        if let Some(name) = &self.client_name {
            client.push(("name".to_owned(), RestrictedExpression::new_string(name.clone())));
        }
        if let Some(version) = &self.client_version {
            client.push(("version".to_owned(), RestrictedExpression::new_string(version.clone())));
        }
        let mut pairs = vec![
            ("arguments".to_owned(), arguments.unwrap_or_else(|| RestrictedExpression::new_unknown("arguments"))),
            ("time".to_owned(), time),
            ("unverifiedClient".to_owned(), record(client)),
            ("era".to_owned(), RestrictedExpression::new_string(self.era.to_owned())),
        ];
        if let Some(version) = &self.protocol_version {
            pairs.push(("protocolVersion".to_owned(), RestrictedExpression::new_string(version.clone())));
        }
        Context::from_pairs(pairs).map_err(|_| ConversionError::TooLarge)
    }
}

/// Converts arguments for a context (empty record when the call has none).
pub(crate) fn arguments_expr(
    arguments: Option<&Map<String, Value>>,
    types: Option<&RecordType>,
) -> Result<RestrictedExpression, ConversionError> {
    match arguments {
        Some(a) => arguments_to_cedar(a, types),
        None => Ok(record(Vec::new())),
    }
}

fn attr(ty: Value, required: bool) -> Value {
    let mut ty = ty;
    if let Some(obj) = ty.as_object_mut() {
        obj.insert("required".into(), Value::Bool(required));
    }
    ty
}

/// The Cedar schema (JSON format) with `tools/call` arguments typed as `tool_args` and
/// `prompts/get` arguments typed as `prompt_args`.
pub fn cedar_schema_json(tool_args: &RecordType, prompt_args: &RecordType) -> Value {
    let string = || json!({"type": "String"});
    let strings = || json!({"type": "Set", "element": {"type": "String"}});
    let boolean = || json!({"type": "Boolean"});
    let long = || json!({"type": "Long"});
    let rec = |attrs: Value| json!({"type": "Record", "attributes": attrs});
    let context = |arguments: Option<Value>| {
        let mut attrs = json!({
            "time": attr(rec(json!({
                "epochSeconds": attr(long(), true), "hourUtc": attr(long(), true),
                "minuteUtc": attr(long(), true), "weekdayUtc": attr(long(), true),
            })), true),
            "unverifiedClient": attr(rec(json!({"name": attr(string(), false), "version": attr(string(), false)})), true),
            "era": attr(string(), true),
            "protocolVersion": attr(string(), false),
        });
        if let (Some(arguments), Some(obj)) = (arguments, attrs.as_object_mut()) {
            obj.insert("arguments".into(), attr(arguments, true));
        }
        rec(attrs)
    };
    let applies = |resource: &str, arguments: Option<Value>| json!({"appliesTo": {"principalTypes": ["Principal"], "resourceTypes": [resource], "context": context(arguments)}});
    json!({ NAMESPACE: {
        "entityTypes": {
            "Principal": {
                "shape": rec(json!({
                    "kind": attr(string(), true), "issuer": attr(string(), true), "subject": attr(string(), true),
                    "authMethod": attr(string(), true), "clientId": attr(string(), false),
                    "scopes": attr(strings(), true), "groups": attr(strings(), true), "roles": attr(strings(), true),
                    "tenant": attr(string(), false),
                })),
                "tags": string(),
            },
            "Tool": {"shape": rec(json!({
                "name": attr(string(), true), "title": attr(string(), false), "declared": attr(boolean(), true),
                "annotations": attr(rec(json!({
                    "readOnlyHint": attr(boolean(), true), "destructiveHint": attr(boolean(), true),
                    "idempotentHint": attr(boolean(), true), "openWorldHint": attr(boolean(), true),
                })), true),
            }))},
            "Resource": {"shape": rec(json!({"uri": attr(string(), true)}))},
            "Prompt": {"shape": rec(json!({
                "name": attr(string(), true), "title": attr(string(), false), "declared": attr(boolean(), true),
            }))},
        },
        "actions": {
            "tools/call": applies("Tool", Some(tool_args.to_cedar_json())),
            "resources/read": applies("Resource", None),
            "prompts/get": applies("Prompt", Some(prompt_args.to_cedar_json())),
        },
    }})
}

#[cfg(test)]
mod tests {
    use cedar_policy::Schema;

    use super::*;

    #[test]
    fn schema_parses_and_context_has_the_time() {
        let tool = RecordType::from_input_schema(&json!({"properties": {"db": {"type": "string"}}}));
        let schema = Schema::from_json_value(cedar_schema_json(&tool, &RecordType::default()));
        assert!(schema.is_ok(), "{schema:?}");
        // 2026-11-25 is a Wednesday
        let ctx = CallContext { now_secs: 1_795_000_000, era: "modern", ..CallContext::default() };
        assert!(ctx.to_cedar(Some(record(Vec::new()))).is_ok());
        assert!(ctx.to_cedar(None).is_ok());
    }
}
