//! Validation of the policy set against what the upstream really offers.
//!
//! Each known tool (and prompt) gets its own Cedar schema, in which `context.arguments` is the
//! record generated from its `inputSchema`; every policy that can apply to it (its action scope
//! admits the operation, its resource scope admits the tool) is validated against that schema
//! in Cedar's strict mode. So `context.arguments.databse` (a typo), an argument the tool does
//! not have, or `context.arguments.limit == "10"` for an integer `limit` is reported — with the
//! policy id, its file, line and column, and the tool — instead of silently never matching.
//! Policies on `resources/read` are validated once (resources have no arguments).

use std::collections::BTreeSet;
use std::fmt;

use cedar_policy::{
    ActionConstraint, EntityUid, Policy, PolicySet, ResourceConstraint, Schema, ValidationMode, Validator,
};
use serde_json::Value;

use crate::args::RecordType;
use crate::engine::{Catalog, Policies};
use crate::model::{Action, cedar_schema_json, type_name, uid};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Severity {
    /// The policy does not type-check: it would error or never match.
    Error,
    /// Suspicious but usable (e.g. a policy naming a tool the upstream does not list).
    Warning,
}

/// One problem with one policy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    severity: Severity,
    policy_id: String,
    file: String,
    line: usize,
    column: usize,
    message: String,
    /// `tools/call:<name>` / `prompts/get:<name>` the finding was made for
    target: Option<String>,
}

impl Finding {
    /// How serious.
    pub fn severity(&self) -> Severity {
        self.severity
    }
    /// Whether it is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
    /// The policy id.
    pub fn policy_id(&self) -> &str {
        &self.policy_id
    }
    /// The policy file.
    pub fn file(&self) -> &str {
        &self.file
    }
    /// 1-based line.
    pub fn line(&self) -> usize {
        self.line
    }
    /// 1-based column.
    pub fn column(&self) -> usize {
        self.column
    }
    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The operation and tool/prompt it was found for (`tools/call:run_query`).
    pub fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {severity}: policy {:?}: {}",
            self.file, self.line, self.column, self.policy_id, self.message
        )
    }
}

/// Everything validation found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationReport {
    findings: Vec<Finding>,
    validated_against: usize,
}

impl ValidationReport {
    /// The findings, errors first.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }
    /// Whether any finding is an error.
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(Finding::is_error)
    }
    /// How many tools and prompts the policies were validated against.
    pub fn validated_against(&self) -> usize {
        self.validated_against
    }
    /// Logs every finding (errors at `error`, the rest at `warn`).
    pub fn log(&self) {
        for f in &self.findings {
            match f.severity {
                Severity::Error => tracing::error!(finding = %f, "policy validation"),
                Severity::Warning => tracing::warn!(finding = %f, "policy validation"),
            }
        }
    }
}

impl fmt::Display for ValidationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, finding) in self.findings.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{finding}")?;
        }
        Ok(())
    }
}

/// The key of an operation on a tool or prompt in findings and in the engine's invalid map.
pub(crate) fn target_key(action: Action, target: &str) -> String {
    format!("{}:{target}", action.method())
}

fn admits_action(policy: &Policy, action: Action) -> bool {
    let a = action.uid();
    match policy.action_constraint() {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(e) => e == a,
        ActionConstraint::In(list) => list.contains(&a),
    }
}

fn admits_resource(policy: &Policy, resource: &EntityUid) -> bool {
    match policy.resource_constraint() {
        ResourceConstraint::Any => true,
        ResourceConstraint::Is(t) => &t == resource.type_name(),
        ResourceConstraint::Eq(e) | ResourceConstraint::In(e) => &e == resource,
        ResourceConstraint::IsIn(t, e) => &t == resource.type_name() && &e == resource,
    }
}

/// A schema with only `action` (its context arguments typed by `arguments`).
fn schema_for(action: Action, arguments: &RecordType) -> Result<Schema, String> {
    let empty = RecordType::default();
    let (tool, prompt) = match action {
        Action::ToolsCall => (arguments, &empty),
        Action::PromptsGet => (&empty, arguments),
        Action::ResourcesRead => (&empty, &empty),
    };
    let mut json = cedar_schema_json(tool, prompt);
    if let Some(actions) =
        json.pointer_mut(&format!("/{}/actions", crate::model::NAMESPACE)).and_then(Value::as_object_mut)
    {
        actions.retain(|name, _| name == action.method());
    }
    Schema::from_json_value(json).map_err(|e| e.to_string())
}

/// Validates the policies against every known tool and prompt, and `resources/read` policies
/// against the base schema.
pub fn validate(policies: &Policies, catalog: &Catalog) -> ValidationReport {
    let mut findings = BTreeSet::new();
    let mut validated_against = 0;
    let mut subjects: Vec<(Action, String, RecordType)> = Vec::new();
    for (name, tool) in &catalog.tools {
        subjects.push((Action::ToolsCall, name.clone(), tool.arguments.clone()));
    }
    for (name, prompt) in &catalog.prompts {
        subjects.push((Action::PromptsGet, name.clone(), prompt.arguments.clone()));
    }
    subjects.push((Action::ResourcesRead, String::new(), RecordType::default()));
    for (action, name, arguments) in &subjects {
        let resource = uid(action.resource_type(), name);
        let relevant: Vec<Policy> = policies
            .set
            .policies()
            .filter(|p| {
                admits_action(p, *action)
                    && (*action == Action::ResourcesRead
                        || admits_resource(p, &resource)
                        || matches!(p.resource_constraint(), ResourceConstraint::Is(t) if t == type_name(action.resource_type())))
            })
            .cloned()
            .collect();
        if relevant.is_empty() {
            continue;
        }
        validated_against += usize::from(*action != Action::ResourcesRead);
        let schema = match schema_for(*action, arguments) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, tool = %name, "cannot build a Cedar schema for this tool; its policies are not validated");
                continue;
            }
        };
        let Ok(set) = PolicySet::from_policies(relevant) else { continue };
        let result = Validator::new(schema).validate(&set, ValidationMode::Strict);
        let target = (*action != Action::ResourcesRead).then(|| target_key(*action, name));
        let what = match action {
            Action::ToolsCall => format!(" (validated against tool {name:?})"),
            Action::PromptsGet => format!(" (validated against prompt {name:?})"),
            Action::ResourcesRead => String::new(),
        };
        let mut push = |severity, id: &cedar_policy::PolicyId, offset: Option<usize>, message: String| {
            let location = offset.and_then(|o| policies.span_location(id, o)).or_else(|| policies.location(id));
            let (file, line, column) = location.unwrap_or_default();
            findings.insert(Finding {
                severity,
                policy_id: id.to_string(),
                file,
                line,
                column,
                message: format!("{message}{what}"),
                target: target.clone(),
            });
        };
        for e in result.validation_errors() {
            let offset = miette::Diagnostic::labels(e).and_then(|mut l| l.next()).map(|l| l.offset());
            push(Severity::Error, e.policy_id(), offset, first_line(&e.to_string()));
        }
        for w in result.validation_warnings() {
            let offset = miette::Diagnostic::labels(w).and_then(|mut l| l.next()).map(|l| l.offset());
            push(Severity::Warning, w.policy_id(), offset, first_line(&w.to_string()));
        }
    }
    // policies naming a tool or prompt the upstream does not list never apply to a real one
    if !catalog.is_empty() {
        for policy in policies.set.policies() {
            let named = match policy.resource_constraint() {
                ResourceConstraint::Eq(e) | ResourceConstraint::In(e) | ResourceConstraint::IsIn(_, e) => e,
                _ => continue,
            };
            let id = named.id().unescaped().to_owned();
            let unknown = if named.type_name() == &type_name("Tool") {
                !catalog.tools.is_empty() && !catalog.tools.contains_key(&id)
            } else if named.type_name() == &type_name("Prompt") {
                !catalog.prompts.is_empty() && !catalog.prompts.contains_key(&id)
            } else {
                false
            };
            if unknown {
                let (file, line, column) = policies.location(policy.id()).unwrap_or_default();
                findings.insert(Finding {
                    severity: Severity::Warning,
                    policy_id: policy.id().to_string(),
                    file,
                    line,
                    column,
                    message: format!("names {named}, which the upstream does not list"),
                    target: None,
                });
            }
        }
    } else if !policies.is_empty() {
        tracing::warn!(
            "no tool schemas known yet: policy arguments are validated when the first tools/list passes through"
        );
    }
    ValidationReport { findings: findings.into_iter().collect(), validated_against }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or(text).to_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::engine::PolicySource;

    fn catalog() -> Catalog {
        Catalog::from_listing(&json!({"tools": [
            {"name": "run_query", "inputSchema": {"type": "object", "required": ["database"], "properties": {
                "database": {"type": "string"}, "limit": {"type": "integer"}}}},
            {"name": "echo", "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}},
        ]}))
    }

    fn policies(text: &str) -> Policies {
        Policies::parse(vec![PolicySource { name: "p.cedar".into(), text: text.into() }]).expect("parses")
    }

    #[test]
    fn missing_and_wrong_typed_arguments_are_errors_with_locations() {
        let text = r#"@id("ok")
permit(principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"run_query")
when { context.arguments.database == "reporting" };

@id("missing")
permit(principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"run_query")
when { context.arguments.databse == "reporting" };

@id("wrong-type")
permit(principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"run_query")
when { context.arguments has limit && context.arguments.limit == "10" };

@id("ghost")
permit(principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"no_such_tool");
"#;
        let report = validate(&policies(text), &catalog());
        let errors: Vec<_> = report.findings().iter().filter(|f| f.is_error()).collect();
        assert_eq!(errors.len(), 2, "{report}");
        let missing = errors.iter().find(|f| f.policy_id() == "missing").expect("missing reported");
        assert_eq!((missing.file(), missing.line()), ("p.cedar", 7), "{missing}");
        assert!(missing.message().contains("databse"), "{missing}");
        assert_eq!(missing.target(), Some("tools/call:run_query"));
        let wrong = errors.iter().find(|f| f.policy_id() == "wrong-type").expect("wrong type reported");
        assert_eq!(wrong.line(), 11, "{wrong}");
        let ghost = report.findings().iter().find(|f| f.policy_id() == "ghost").expect("ghost reported");
        assert_eq!((ghost.severity(), ghost.line()), (Severity::Warning, 13));
        assert!(!report.findings().iter().any(|f| f.policy_id() == "ok"), "{report}");
    }

    #[test]
    fn unscoped_argument_policies_are_checked_against_every_tool() {
        let text = r#"@id("any-tool")
forbid(principal, action == Mcp::Action::"tools/call", resource) when { context.arguments.limit > 10 };"#;
        let report = validate(&policies(text), &catalog());
        // echo has no limit; run_query's limit is optional (needs `has`)
        let targets: Vec<_> = report.findings().iter().filter(|f| f.is_error()).filter_map(Finding::target).collect();
        assert!(targets.contains(&"tools/call:echo"), "{report}");
        assert!(targets.contains(&"tools/call:run_query"), "{report}");
    }

    #[test]
    fn principal_typos_are_errors_even_for_resources() {
        let text = r#"permit(principal, action == Mcp::Action::"resources/read", resource) when { principal.group.contains("x") };"#;
        let report = validate(&policies(text), &Catalog::default());
        assert!(report.has_errors(), "{report}");
        assert_eq!(report.findings()[0].policy_id(), "p:0");
    }
}
