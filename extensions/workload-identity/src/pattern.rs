//! Matching workload identifiers: exact, prefix, or glob.
//!
//! Globs know the two separators workload identifiers are built with, `/` (SPIFFE IDs) and `:`
//! (Kubernetes `system:serviceaccount:<namespace>:<name>`):
//!
//! - `*` matches one or more characters other than `/` and `:` — one path segment or one name;
//! - `**` matches any characters, separators included (possibly none);
//! - everything else matches itself.
//!
//! So `system:serviceaccount:payments:*` matches every service account of the `payments`
//! namespace but not `system:serviceaccount:payments:a:b`, and `spiffe://prod.example.org/ns/*/sa/agent`
//! matches the `agent` account of any one namespace. A pattern made only of wildcards is refused:
//! a rule must name something.

use std::fmt;

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
    Glob(Glob),
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(s) => write!(f, "exact({s:?})"),
            Self::Prefix(s) => write!(f, "prefix({s:?})"),
            Self::Glob(g) => write!(f, "glob({:?})", g.text),
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

    /// Matches the glob `pattern`.
    pub fn glob(pattern: impl Into<String>) -> Result<Self, WorkloadConfigError> {
        Glob::new(pattern.into()).map(Self::Glob)
    }

    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Self::Exact(s) => value == s,
            Self::Prefix(p) => value.starts_with(p.as_str()),
            Self::Glob(g) => g.matches(value),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    /// `*`: one or more non-separator characters.
    Segment,
    /// `**`: anything.
    Any,
}

/// A compiled glob (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    text: String,
    tokens: Vec<Token>,
}

fn is_separator(b: u8) -> bool {
    b == b'/' || b == b':'
}

impl Glob {
    fn new(text: String) -> Result<Self, WorkloadConfigError> {
        let err = |reason| WorkloadConfigError::Pattern { pattern: text.clone(), reason };
        let mut tokens = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '*' {
                literal.push(c);
                continue;
            }
            if !literal.is_empty() {
                tokens.push(Token::Literal(std::mem::take(&mut literal)));
            }
            if chars.peek() == Some(&'*') {
                chars.next();
                if chars.peek() == Some(&'*') {
                    return Err(err("'***' is not a glob; use '*' (one segment) or '**' (anything)"));
                }
                tokens.push(Token::Any);
            } else {
                tokens.push(Token::Segment);
            }
        }
        if !literal.is_empty() {
            tokens.push(Token::Literal(literal));
        }
        if !tokens.iter().any(|t| matches!(t, Token::Literal(_))) {
            return Err(err("a pattern made only of wildcards matches every workload"));
        }
        Ok(Self { text, tokens })
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `value` matches: a linear pass per token over the set of positions reachable so
    /// far (no backtracking, so no pattern can make matching slow).
    pub fn matches(&self, value: &str) -> bool {
        let bytes = value.as_bytes();
        let n = bytes.len();
        let mut reach = vec![false; n + 1];
        reach[0] = true;
        for token in &self.tokens {
            let mut next = vec![false; n + 1];
            match token {
                Token::Literal(lit) => {
                    let lit = lit.as_bytes();
                    for p in 0..=n {
                        if reach[p] && bytes[p..].starts_with(lit) {
                            next[p + lit.len()] = true;
                        }
                    }
                }
                Token::Segment => {
                    // q is reachable when some reachable p < q has only non-separators in p..q
                    let mut run = false;
                    for q in 1..=n {
                        run = (run || reach[q - 1]) && !is_separator(bytes[q - 1]);
                        next[q] = run;
                    }
                }
                Token::Any => {
                    let mut seen = false;
                    for p in 0..=n {
                        seen |= reach[p];
                        next[p] = seen;
                    }
                }
            }
            if !next.iter().any(|r| *r) {
                return false;
            }
            reach = next;
        }
        reach[n]
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
        for bad in ["*", "**", "***x", "a***", "a****b"] {
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
