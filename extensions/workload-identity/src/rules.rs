//! Workload rules: which workloads of a trusted issuer are accepted, and what they get.
//!
//! Issuer trust and workload trust are separate layers (SEP-1933): trusting a Kubernetes cluster's
//! issuer says its signatures are genuine, a rule says which of its service accounts may call.
//! A rule matches the subject and, optionally, other claims addressed by JSON Pointer (RFC 6901),
//! e.g. `/kubernetes.io/namespace` (claim names may contain dots, so dotted paths would be
//! ambiguous). The first matching rule of the issuer wins.

use mcp_enterprise_core::challenge::is_scope_token;
use serde_json::{Map, Value};

use crate::error::WorkloadConfigError;
use crate::pattern::Pattern;

/// One workload rule.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct WorkloadRule {
    name: String,
    subject: Pattern,
    claims: Vec<(String, Pattern)>,
    scopes: Vec<String>,
    resources: Vec<String>,
}

impl WorkloadRule {
    /// A rule named `name` (used in logs and in the principal) accepting subjects that match
    /// `subject`.
    pub fn new(name: impl Into<String>, subject: Pattern) -> Self {
        Self { name: name.into(), subject, claims: Vec::new(), scopes: Vec::new(), resources: Vec::new() }
    }

    /// Also requires the claim at JSON Pointer `pointer` (e.g. `/kubernetes.io/namespace`) to
    /// match: a string value, or any string of an array value. Repeatable; all must match.
    pub fn claim(mut self, pointer: &str, pattern: Pattern) -> Result<Self, WorkloadConfigError> {
        if !pointer.starts_with('/') || pointer.len() < 2 {
            return Err(
                self.error(format!("claim path {pointer:?} must be a JSON Pointer such as /kubernetes.io/namespace"))
            );
        }
        self.claims.push((pointer.to_owned(), pattern));
        Ok(self)
    }

    /// The scopes matching workloads get (direct mode: on their principal; grants: the most a
    /// token may carry).
    pub fn scopes<I, T>(mut self, scopes: I) -> Result<Self, WorkloadConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        for scope in scopes {
            let scope = scope.into();
            if !is_scope_token(&scope) {
                return Err(self.error(format!("{scope:?} is not a valid scope")));
            }
            if !self.scopes.contains(&scope) {
                self.scopes.push(scope);
            }
        }
        Ok(self)
    }

    /// Grants only: the resources (MCP servers' canonical URIs) matching workloads may obtain
    /// tokens for. Empty (the default): every resource of the authorization server.
    pub fn resources<I, T>(mut self, resources: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.resources.extend(resources.into_iter().map(Into::into));
        self
    }

    /// The rule's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The scopes it grants.
    pub fn granted_scopes(&self) -> &[String] {
        &self.scopes
    }

    /// Whether workloads matching this rule may obtain tokens for `resource`.
    pub fn allows_resource(&self, resource: &str) -> bool {
        self.resources.is_empty() || self.resources.iter().any(|r| r == resource)
    }

    fn error(&self, reason: String) -> WorkloadConfigError {
        WorkloadConfigError::Rule { rule: self.name.clone(), reason }
    }

    /// Whether the subject and every claim condition match.
    pub(crate) fn matches(&self, subject: &str, claims: &Map<String, Value>) -> bool {
        self.subject.matches(subject)
            && self.claims.iter().all(|(pointer, pattern)| match pointer_get(claims, pointer) {
                Some(Value::String(s)) => pattern.matches(s),
                Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).any(|s| pattern.matches(s)),
                _ => false,
            })
    }
}

/// RFC 6901 JSON Pointer into a claims object.
pub(crate) fn pointer_get<'a>(claims: &'a Map<String, Value>, pointer: &str) -> Option<&'a Value> {
    let mut tokens = pointer.strip_prefix('/')?.split('/').map(|t| t.replace("~1", "/").replace("~0", "~"));
    let mut current = claims.get(&tokens.next()?)?;
    for token in tokens {
        current = match current {
            Value::Object(map) => map.get(&token)?,
            Value::Array(items) => items.get(token.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

/// The first rule matching.
pub(crate) fn first_match<'a>(
    rules: &'a [WorkloadRule],
    subject: &str,
    claims: &Map<String, Value>,
) -> Option<&'a WorkloadRule> {
    rules.iter().find(|r| r.matches(subject, claims))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn k8s_claims(ns: &str, sa: &str) -> Map<String, Value> {
        json!({
            "sub": format!("system:serviceaccount:{ns}:{sa}"),
            "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": sa, "uid": "u"}, "pod": {"name": "p"}},
            "groups": ["a", "b/c"],
        })
        .as_object()
        .cloned()
        .expect("object")
    }

    #[test]
    fn subject_and_claims() {
        let rule = WorkloadRule::new("payments", Pattern::glob("system:serviceaccount:payments:*").expect("glob"))
            .claim("/kubernetes.io/namespace", Pattern::exact("payments"))
            .and_then(|r| r.claim("/kubernetes.io/serviceaccount/name", Pattern::prefix("agent").expect("prefix")))
            .expect("rule");
        let c = k8s_claims("payments", "agent-1");
        assert!(rule.matches("system:serviceaccount:payments:agent-1", &c));
        assert!(!rule.matches("system:serviceaccount:payments:agent-1", &k8s_claims("payments", "web")));
        assert!(!rule.matches("system:serviceaccount:billing:agent-1", &k8s_claims("billing", "agent-1")));
        // a claim the token lacks never matches
        let missing = WorkloadRule::new("x", Pattern::exact("s"))
            .claim("/kubernetes.io/pod/uid", Pattern::exact("u"))
            .expect("rule");
        assert!(!missing.matches("s", &c));
        // arrays: any string element
        let groups = WorkloadRule::new("g", Pattern::exact("s")).claim("/groups", Pattern::exact("b/c")).expect("rule");
        assert!(groups.matches("s", &c));
        assert!(
            WorkloadRule::new("bad", Pattern::exact("s"))
                .claim("kubernetes.io.namespace", Pattern::exact("x"))
                .is_err()
        );
    }

    #[test]
    fn pointers() {
        let c = json!({"a/b": {"c~d": [1, {"e": "x"}]}}).as_object().cloned().expect("object");
        assert_eq!(pointer_get(&c, "/a~1b/c~0d/1/e"), Some(&json!("x")));
        assert_eq!(pointer_get(&c, "/a~1b/c~0d/9"), None);
        assert_eq!(pointer_get(&c, "/missing"), None);
        assert_eq!(pointer_get(&c, "no-slash"), None);
    }

    #[test]
    fn scopes_and_resources() {
        let r = WorkloadRule::new("r", Pattern::exact("s")).scopes(["mcp:tools", "mcp:tools"]).expect("scopes");
        assert_eq!(r.granted_scopes(), ["mcp:tools"]);
        assert!(r.allows_resource("https://any"));
        let r = r.resources(["https://mcp.example.com/mcp"]);
        assert!(r.allows_resource("https://mcp.example.com/mcp") && !r.allows_resource("https://other/mcp"));
        assert!(WorkloadRule::new("r", Pattern::exact("s")).scopes(["bad scope"]).is_err());
        let rules = [WorkloadRule::new("first", Pattern::exact("s")), WorkloadRule::new("second", Pattern::exact("s"))];
        assert_eq!(first_match(&rules, "s", &Map::new()).map(WorkloadRule::name), Some("first"));
        assert!(first_match(&rules, "t", &Map::new()).is_none());
    }
}
