//! Matching workload identifiers: exact, prefix, or glob.
//!
//! Globs are core's [`SegmentGlob`], which knows the two separators workload identifiers are built
//! with, `/` (SPIFFE IDs) and `:` (Kubernetes `system:serviceaccount:<namespace>:<name>`):
//!
//! - `*` matches one or more characters other than `/` and `:` — one path segment or one name;
//! - `**` matches any characters, separators included (possibly none);
//! - `?` matches one character other than `/` and `:`;
//! - everything else matches itself.
//!
//! So `system:serviceaccount:payments:*` matches every service account of the `payments`
//! namespace but not `system:serviceaccount:payments:a:b`, and `spiffe://prod.example.org/ns/*/sa/agent`
//! matches the `agent` account of any one namespace. A pattern made only of wildcards is refused:
//! a rule must name something.

use std::fmt;

use mcp_enterprise_core::glob::SegmentGlob;

use crate::error::WorkloadConfigError;

/// How a claim value (or the subject) is matched.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pattern {
    /// The value equals this string.
    Exact(String),
    /// The value starts with this (non-empty) string.
    Prefix(String),
    /// The value matches this glob (see the module documentation).
    Glob(SegmentGlob),
    /// Any value: an explicit choice (globs of wildcards only are refused), e.g. every user of an
    /// enterprise IdP whose rule narrows by a claim such as `/groups`.
    Any,
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(s) => write!(f, "exact({s:?})"),
            Self::Prefix(s) => write!(f, "prefix({s:?})"),
            Self::Glob(g) => write!(f, "glob({:?})", g.as_str()),
            Self::Any => f.write_str("any"),
        }
    }
}

impl Pattern {
    /// Matches exactly `value`.
    pub fn exact(value: impl Into<String>) -> Self {
        Self::Exact(value.into())
    }

    /// Matches values starting with `prefix`, which must not be empty.
    pub fn prefix(prefix: impl Into<String>) -> Result<Self, WorkloadConfigError> {
        let prefix = prefix.into();
        if prefix.is_empty() {
            return Err(WorkloadConfigError::Pattern { pattern: prefix, reason: "an empty prefix matches everything" });
        }
        Ok(Self::Prefix(prefix))
    }

    /// Matches every value (explicitly).
    pub fn any() -> Self {
        Self::Any
    }

    /// Matches the glob `pattern`.
    pub fn glob(pattern: impl Into<String>) -> Result<Self, WorkloadConfigError> {
        let pattern = pattern.into();
        let glob = SegmentGlob::new(pattern.as_str())
            .map_err(|e| WorkloadConfigError::Pattern { pattern: pattern.clone(), reason: e.reason() })?;
        if glob.is_wildcards_only() {
            return Err(WorkloadConfigError::Pattern {
                pattern,
                reason: "a pattern made only of wildcards matches every workload",
            });
        }
        Ok(Self::Glob(glob))
    }

    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Self::Exact(s) => value == s,
            Self::Prefix(p) => value.starts_with(p.as_str()),
            Self::Glob(g) => g.matches(value),
            Self::Any => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(p: &str) -> Pattern {
        Pattern::glob(p).expect("valid glob")
    }

    #[test]
    fn kubernetes_service_accounts() {
        let p = glob("system:serviceaccount:payments:*");
        assert!(p.matches("system:serviceaccount:payments:agent"));
        assert!(p.matches("system:serviceaccount:payments:a"));
        assert!(!p.matches("system:serviceaccount:payments:"), "a name is at least one character");
        assert!(!p.matches("system:serviceaccount:payments:a:b"), "* stays inside one name");
        assert!(!p.matches("system:serviceaccount:billing:agent"));
        assert!(!p.matches("xsystem:serviceaccount:payments:agent"), "anchored at the start");
        let ns = glob("system:serviceaccount:*:agent");
        assert!(ns.matches("system:serviceaccount:payments:agent"));
        assert!(!ns.matches("system:serviceaccount:payments:agent2"), "anchored at the end");
    }

    #[test]
    fn spiffe_ids() {
        let p = glob("spiffe://prod.example.org/ns/*/sa/agent");
        assert!(p.matches("spiffe://prod.example.org/ns/payments/sa/agent"));
        assert!(!p.matches("spiffe://prod.example.org/ns/a/b/sa/agent"), "* is one segment");
        assert!(!p.matches("spiffe://prod.example.org/ns//sa/agent"), "segments are not empty");
        assert!(!p.matches("spiffe://evil.example.org/ns/payments/sa/agent"));
        let deep = glob("spiffe://prod.example.org/**");
        assert!(deep.matches("spiffe://prod.example.org/"));
        assert!(deep.matches("spiffe://prod.example.org/ns/a/sa/b"));
        assert!(!deep.matches("spiffe://prod.example.org.evil.com/x"));
        let mid = glob("spiffe://td/**/agent");
        assert!(mid.matches("spiffe://td//agent") && mid.matches("spiffe://td/a/b/c/agent"));
        assert!(!mid.matches("spiffe://td/a/b/c/agent/x"));
    }

    #[test]
    fn exact_prefix_and_refused_patterns() {
        assert!(Pattern::exact("a").matches("a") && !Pattern::exact("a").matches("ab"));
        let p = Pattern::prefix("spiffe://prod.example.org/").expect("valid");
        assert!(p.matches("spiffe://prod.example.org/x") && !p.matches("spiffe://prod.example.org"));
        assert!(Pattern::prefix("").is_err());
        for bad in ["*", "**", "?", "***x", "a***", "a****b"] {
            assert!(Pattern::glob(bad).is_err(), "{bad}");
        }
        assert!(glob("a*b**").matches("axb/c/d"));
        assert!(glob("a**:*").matches("a/b:c") && !glob("a**:*").matches("a/b:"));
        assert!(glob("literal").matches("literal") && !glob("literal").matches("literal2"));
        assert!(glob("é*").matches("éà") && !glob("é*").matches("é"));
    }

    #[test]
    fn hostile_inputs_stay_linear() {
        // classic backtracking killers finish immediately
        let p = glob("a*a*a*a*a*a*a*a*b");
        let long = "a".repeat(10_000);
        assert!(!p.matches(&long));
        let any = glob("x**y**z");
        assert!(!any.matches(&"x".repeat(10_000)));
    }
}
