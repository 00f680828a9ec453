//! The pack's one glob dialect, for rules that name things with wildcards.
//!
//! Two matchers share one syntax and one engine; they differ only in whether the value has
//! separators:
//!
//! | pattern  | [`Glob`] (flat names)                  | [`SegmentGlob`] (identifiers with `/` and `:`)              |
//! |----------|----------------------------------------|-------------------------------------------------------------|
//! | `*`      | any run of characters, possibly empty  | one segment: one or more characters other than `/` and `:`  |
//! | `**`     | the same as `*`                        | any run of characters, separators included, possibly empty   |
//! | `?`      | exactly one character                  | exactly one character other than `/` and `:`                |
//! | other    | itself (no escapes, case-sensitive)    | itself                                                       |
//!
//! Both are anchored at both ends (a pattern without wildcards is an exact match) and match in
//! time linear in `pattern × value`, whatever the pattern (no backtracking).
//!
//! - [`Glob`] is for names in which no character is special: MCP methods (`tools/call`), tool and
//!   prompt names, resource URIs. `*` crosses `/`, `.` and `:`: `delete_*` matches `delete_`,
//!   `delete_customer` and `delete_a/b`; `*` alone matches everything (the empty string too);
//!   `file:///*/secret*` matches `file:///x/y/secret.txt`. Used by the `sso` scope rules and the
//!   gateway's rate-limit target filters.
//! - [`SegmentGlob`] is for structured workload identifiers — SPIFFE IDs (`/`) and Kubernetes
//!   service accounts (`system:serviceaccount:<namespace>:<name>`) — where a rule granting access
//!   must not let `*` reach into another path or namespace: `spiffe://td/ns/*/sa/agent` matches
//!   `spiffe://td/ns/payments/sa/agent` but neither `spiffe://td/ns/a/b/sa/agent` nor
//!   `spiffe://td/ns//sa/agent`, and `delete_*` does not match `delete_` or `delete_a/b`. `***` is
//!   refused as ambiguous. Used by `workload-identity` rules.
//!
//! ```
//! use mcp_enterprise_core::glob::{Glob, SegmentGlob};
//!
//! let g = Glob::new("delete_*");
//! assert!(g.matches("delete_customer") && g.matches("delete_") && !g.matches("lookup_customer"));
//!
//! let s = SegmentGlob::new("system:serviceaccount:payments:*")?;
//! assert!(s.matches("system:serviceaccount:payments:agent"));
//! assert!(!s.matches("system:serviceaccount:payments:a:b"));
//! assert!(SegmentGlob::new("spiffe://td/**")?.matches("spiffe://td/ns/a/sa/b"));
//! # Ok::<(), mcp_enterprise_core::glob::GlobError>(())
//! ```

use std::fmt;

/// A pattern that [`SegmentGlob::new`] refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GlobError {
    /// Three or more `*` in a row: neither one segment nor anything.
    #[error("'***' is not a glob; use '*' (one segment) or '**' (anything)")]
    TripleStar,
}

impl GlobError {
    /// The reason, as a static string (for error types that keep one).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TripleStar => "'***' is not a glob; use '*' (one segment) or '**' (anything)",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(Vec<char>),
    /// `?`: one character that is not a separator.
    One,
    /// A run of characters: at least `min` of them, separators allowed when `cross`.
    Run {
        min: usize,
        cross: bool,
    },
}

/// A glob over flat names (see the [module documentation](self)): `*` any run of characters,
/// `?` one character.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    text: String,
    tokens: Vec<Token>,
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.text)
    }
}

impl Glob {
    /// The glob `pattern`; every string is a valid flat glob.
    pub fn new(pattern: impl Into<String>) -> Self {
        let text = pattern.into();
        let mut tokens = Vec::new();
        let mut literal = Vec::new();
        for c in text.chars() {
            let token = match c {
                '*' => Token::Run { min: 0, cross: true },
                '?' => Token::One,
                c => {
                    literal.push(c);
                    continue;
                }
            };
            if !literal.is_empty() {
                tokens.push(Token::Literal(std::mem::take(&mut literal)));
            }
            if !(token == Token::Run { min: 0, cross: true } && tokens.last() == Some(&token)) {
                tokens.push(token);
            }
        }
        if !literal.is_empty() {
            tokens.push(Token::Literal(literal));
        }
        Self { text, tokens }
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern has no wildcard (it then matches only itself).
    pub fn is_literal(&self) -> bool {
        self.tokens.iter().all(|t| matches!(t, Token::Literal(_)))
    }

    /// Whether `value` matches the whole pattern.
    pub fn matches(&self, value: &str) -> bool {
        run(&self.tokens, value, |_| false)
    }
}

/// A glob over identifiers built with the separators `/` and `:` (see the
/// [module documentation](self)): `*` one segment, `**` anything, `?` one non-separator character.
#[derive(Clone, PartialEq, Eq)]
pub struct SegmentGlob {
    text: String,
    tokens: Vec<Token>,
}

impl fmt::Debug for SegmentGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SegmentGlob({:?})", self.text)
    }
}

fn is_separator(c: char) -> bool {
    c == '/' || c == ':'
}

impl SegmentGlob {
    /// The glob `pattern`, or why it is refused (`***`).
    pub fn new(pattern: impl Into<String>) -> Result<Self, GlobError> {
        let text = pattern.into();
        let mut tokens = Vec::new();
        let mut literal = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            let token = match c {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    if chars.peek() == Some(&'*') {
                        return Err(GlobError::TripleStar);
                    }
                    Token::Run { min: 0, cross: true }
                }
                '*' => Token::Run { min: 1, cross: false },
                '?' => Token::One,
                c => {
                    literal.push(c);
                    continue;
                }
            };
            if !literal.is_empty() {
                tokens.push(Token::Literal(std::mem::take(&mut literal)));
            }
            tokens.push(token);
        }
        if !literal.is_empty() {
            tokens.push(Token::Literal(literal));
        }
        Ok(Self { text, tokens })
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern is made only of wildcards (it names nothing).
    pub fn is_wildcards_only(&self) -> bool {
        !self.tokens.iter().any(|t| matches!(t, Token::Literal(_)))
    }

    /// Whether `value` matches the whole pattern.
    pub fn matches(&self, value: &str) -> bool {
        run(&self.tokens, value, is_separator)
    }
}

/// The engine: one linear pass per token over the set of positions reachable so far.
fn run(tokens: &[Token], value: &str, separator: fn(char) -> bool) -> bool {
    // the common shapes without the engine's buffers: a literal name, and a prefix followed by
    // a run that may hold anything
    match tokens {
        [] => return value.is_empty(),
        [Token::Run { min: 0, cross: true }] => return true,
        [Token::Literal(lit)] => return value.chars().eq(lit.iter().copied()),
        [Token::Literal(lit), Token::Run { min: 0, cross: true }] => {
            let mut chars = value.chars();
            return lit.iter().all(|l| chars.next() == Some(*l));
        }
        _ => {}
    }
    engine(tokens, value, separator)
}

/// The general matcher behind [`run`].
fn engine(tokens: &[Token], value: &str, separator: fn(char) -> bool) -> bool {
    let chars: Vec<char> = value.chars().collect();
    let n = chars.len();
    let mut reach = vec![false; n + 1];
    reach[0] = true;
    for token in tokens {
        let mut next = vec![false; n + 1];
        match token {
            Token::Literal(lit) => {
                for p in 0..=n {
                    if reach[p] && chars[p..].starts_with(lit) {
                        next[p + lit.len()] = true;
                    }
                }
            }
            Token::One => {
                for p in 0..n {
                    if reach[p] && !separator(chars[p]) {
                        next[p + 1] = true;
                    }
                }
            }
            Token::Run { min, cross } => {
                // q is reachable when some reachable p (p < q when min is 1) has only allowed
                // characters in p..q
                next[0] = *min == 0 && reach[0];
                let mut open = false;
                for q in 1..=n {
                    open = (open || reach[q - 1]) && (*cross || !separator(chars[q - 1]));
                    next[q] = open || (*min == 0 && reach[q]);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_names() {
        assert!(Glob::new("delete_*").matches("delete_customer"));
        assert!(Glob::new("delete_*").matches("delete_") && Glob::new("delete_*").matches("delete_a/b"));
        assert!(!Glob::new("delete_*").matches("lookup_customer"));
        assert!(Glob::new("*").matches("") && Glob::new("**").matches("tools/call"));
        assert!(Glob::new("a?c").matches("abc") && !Glob::new("a?c").matches("ac"));
        assert!(Glob::new("a?c").matches("a/c"), "? is any one character");
        assert!(Glob::new("file:///*/secret*").matches("file:///x/y/secret.txt"));
        assert!(Glob::new("echo").matches("echo") && !Glob::new("echo").matches("echo2"));
        assert!(Glob::new("echo").is_literal() && !Glob::new("e?ho").is_literal());
        assert!(Glob::new("*a*b*").matches("xxaxxbxx") && !Glob::new("*a*b*").matches("xxbxxaxx"));
        assert!(Glob::new("é?").matches("éà"));
    }

    #[test]
    fn the_fast_shapes_agree_with_the_engine() {
        let shapes = ["", "echo", "é", "delete_*", "delete_**", "a/**", "**", "*"];
        let values = ["", "echo", "echo2", "ech", "é", "éé", "delete_", "delete_x/y", "delete", "a/", "a/b:c", "b"];
        for pattern in shapes {
            let glob = Glob::new(pattern);
            let segments = seg(pattern);
            for value in values {
                let separator: fn(char) -> bool = |_| false;
                assert_eq!(run(&glob.tokens, value, separator), engine(&glob.tokens, value, separator), "{pattern:?}");
                let (tokens, separator) = (&segments.tokens, is_separator as fn(char) -> bool);
                assert_eq!(run(tokens, value, separator), engine(tokens, value, separator), "{pattern:?} {value:?}");
            }
        }
    }

    fn seg(p: &str) -> SegmentGlob {
        SegmentGlob::new(p).expect("valid glob")
    }

    #[test]
    fn segments() {
        let p = seg("system:serviceaccount:payments:*");
        assert!(p.matches("system:serviceaccount:payments:agent"));
        assert!(!p.matches("system:serviceaccount:payments:"), "a segment is at least one character");
        assert!(!p.matches("system:serviceaccount:payments:a:b"), "* stays inside one segment");
        let deep = seg("spiffe://td/**");
        assert!(deep.matches("spiffe://td/") && deep.matches("spiffe://td/ns/a/sa/b"));
        assert!(seg("a?c").matches("abc") && !seg("a?c").matches("a/c") && !seg("a?c").matches("a:c"));
        assert!(seg("a*b**").matches("axb/c/d"));
        assert!(seg("a**:*").matches("a/b:c") && !seg("a**:*").matches("a/b:"));
        for bad in ["***", "a***", "a****b"] {
            assert_eq!(SegmentGlob::new(bad), Err(GlobError::TripleStar), "{bad}");
        }
        assert!(seg("*").is_wildcards_only() && seg("**").is_wildcards_only() && !seg("a*").is_wildcards_only());
    }

    #[test]
    fn hostile_inputs_stay_linear() {
        let long = "a".repeat(10_000);
        assert!(!Glob::new("*a*a*a*a*a*a*a*a*b").matches(&long));
        assert!(!seg("a*a*a*a*a*a*a*a*b").matches(&long));
        assert!(!seg("x**y**z").matches(&"x".repeat(10_000)));
    }
}
