//! One limit: its rate, the requests it applies to, and the key a request is counted under.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use mcp_enterprise_core::glob::Glob;
use mcp_enterprise_core::limiter::LimitKey;
use mcp_enterprise_core::{McpRequest, Principal};

use super::{KeyPart, RateLimitConfigError};

/// A rate limit: `requests` per period sustained, up to `burst` at once (GCRA, the token-bucket
/// equivalent), counted separately for each value of its key.
///
/// ```
/// use std::time::Duration;
/// use mcp_enterprise_gateway::ratelimit::{KeyPart, Limit};
/// let limit = Limit::new("tool-calls", 10, Duration::from_secs(60))?
///     .burst(5)?
///     .key([KeyPart::Principal, KeyPart::Tool])
///     .methods(["tools/call"]);
/// assert_eq!(limit.name(), "tool-calls");
/// # Ok::<(), mcp_enterprise_gateway::ratelimit::RateLimitConfigError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Limit {
    pub(crate) name: Arc<str>,
    pub(crate) key: Vec<KeyPart>,
    methods: Vec<String>,
    tools: Vec<Target>,
    /// The emission interval: one request's worth of time.
    pub(crate) interval: Duration,
    pub(crate) burst: NonZeroU32,
    pub(crate) max_keys: usize,
}

/// The longest period a limit may have (a year).
const MAX_PERIOD: Duration = Duration::from_secs(365 * 24 * 3600);

impl Limit {
    /// `requests` per `period` sustained; the burst is `requests` until set. The name must match
    /// `^[A-Za-z0-9][A-Za-z0-9._-]*$` (at most 64 characters): it is reported in refusals and the
    /// audit trail and is part of the Redis key.
    pub fn new(name: &str, requests: u32, period: Duration) -> Result<Self, RateLimitConfigError> {
        let invalid =
            |reason: &str| RateLimitConfigError::InvalidLimit { name: name.to_owned(), reason: reason.into() };
        let name_ok = name.len() <= 64
            && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !name_ok {
            return Err(invalid("the name must match ^[A-Za-z0-9][A-Za-z0-9._-]*$ (at most 64 characters)"));
        }
        let requests = NonZeroU32::new(requests).ok_or_else(|| invalid("requests must be at least 1"))?;
        if period.is_zero() || period > MAX_PERIOD {
            return Err(invalid("the period must be between 1 ns and a year"));
        }
        let interval = period / requests.get();
        if interval < Duration::from_micros(1) {
            return Err(invalid("at most one request per microsecond (the shared store counts microseconds)"));
        }
        Ok(Self {
            name: name.into(),
            key: Vec::new(),
            methods: Vec::new(),
            tools: Vec::new(),
            interval,
            burst: requests,
            max_keys: 100_000,
        })
    }

    /// Requests allowed at once when the bucket is full.
    pub fn burst(mut self, burst: u32) -> Result<Self, RateLimitConfigError> {
        let invalid =
            |reason: &str| RateLimitConfigError::InvalidLimit { name: self.name.to_string(), reason: reason.into() };
        let burst = NonZeroU32::new(burst).ok_or_else(|| invalid("the burst must be at least 1"))?;
        if self.interval.saturating_mul(burst.get()) > MAX_PERIOD * 100 {
            return Err(invalid("the burst must refill within 100 years"));
        }
        self.burst = burst;
        Ok(self)
    }

    /// Counts requests separately for each combination of these parts (none: one global bucket).
    pub fn key<I: IntoIterator<Item = KeyPart>>(mut self, parts: I) -> Self {
        let mut parts: Vec<KeyPart> = parts.into_iter().collect();
        parts.sort_unstable();
        parts.dedup();
        self.key = parts;
        self
    }

    /// Applies only to these JSON-RPC methods (none: every request).
    pub fn methods<I: IntoIterator<Item = T>, T: Into<String>>(mut self, methods: I) -> Self {
        self.methods = methods.into_iter().map(Into::into).collect();
        self
    }

    /// Applies only to these targets — tool or prompt names, resource URIs (what `Mcp-Name`
    /// carries), as core's flat [`Glob`]s: `*` any run of characters, `?` one character, anything
    /// else itself (none: every request).
    pub fn tools<I: IntoIterator<Item = T>, T: Into<String>>(mut self, tools: I) -> Self {
        self.tools = tools.into_iter().map(|t| Target::new(Glob::new(t))).collect();
        self
    }

    /// Most keys held in memory by the local store (default 100 000); idle keys are evicted, and
    /// when every slot holds an active key, requests under this limit are refused (`503`).
    pub fn max_keys(mut self, max_keys: usize) -> Result<Self, RateLimitConfigError> {
        if max_keys == 0 {
            return Err(RateLimitConfigError::InvalidLimit {
                name: self.name.to_string(),
                reason: "max_keys must be at least 1".into(),
            });
        }
        self.max_keys = max_keys;
        Ok(self)
    }

    /// The limit's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the limit applies to a request with this parsed message (if any).
    #[cfg(test)]
    pub(crate) fn applies(&self, mcp: Option<&McpRequest>) -> bool {
        self.applies_to(&Counted::new(mcp, None))
    }

    /// Whether the limit applies to the request (its method and target read once per request).
    #[inline]
    pub(crate) fn applies_to(&self, request: &Counted<'_>) -> bool {
        if !self.methods.is_empty() {
            let Some(method) = request.method else { return false };
            if !self.methods.iter().any(|m| m == method) {
                return false;
            }
        }
        if !self.tools.is_empty() {
            let Some(target) = request.target else { return false };
            if !self.tools.iter().any(|p| p.matches(target)) {
                return false;
            }
        }
        true
    }

    /// The key the request is counted under: each part tagged and length-prefixed (so no two
    /// different requests share a key by concatenation), a missing part as its own tag; long keys
    /// become their SHA-256 digest.
    #[cfg(test)]
    pub(crate) fn key_of(&self, mcp: Option<&McpRequest>, principal: Option<&Principal>) -> LimitKey {
        *self.key_for(&mut Counted::new(mcp, principal))
    }

    /// [`key_of`](Self::key_of) the request, built in the request's [`Counted`]: when the key of
    /// the limit counted before this one holds this one's first parts (e.g. principal, then
    /// principal + tool) it is extended in place, so each part is encoded once per request in the
    /// common case.
    pub(crate) fn key_for<'a, 'c>(&'a self, request: &'c mut Counted<'a>) -> &'c LimitKey {
        let done = match request.parts {
            Some(parts) if self.key.starts_with(parts) => parts.len(),
            _ => {
                request.key = LimitKey::new();
                0
            }
        };
        let mut fits = true;
        for part in &self.key[done..] {
            let value = request.value(*part);
            fits &= encode_into(&mut request.key, value);
        }
        if fits {
            request.parts = Some(&self.key);
            return &request.key;
        }
        // the key under construction is incomplete: the next limit starts afresh
        request.parts = None;
        let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for part in &self.key {
            encode(request.value(*part), |bytes| digest.update(bytes));
        }
        request.key = LimitKey::new();
        request.key.push(b"#");
        request.key.push(digest.finish().as_ref());
        &request.key
    }
}

/// A target filter: a name compared as it is, or a glob with wildcards.
#[derive(Debug, Clone)]
enum Target {
    Exact(String),
    Glob(Glob),
}

impl Target {
    fn new(glob: Glob) -> Self {
        if glob.is_literal() { Self::Exact(glob.as_str().to_owned()) } else { Self::Glob(glob) }
    }

    #[inline]
    fn matches(&self, target: &str) -> bool {
        match self {
            Self::Exact(name) => name == target,
            Self::Glob(glob) => glob.matches(target),
        }
    }
}

/// What the limits read of one request, found once for all of them: its method and target, the
/// principal, and the last key built (to extend rather than rebuild).
pub(crate) struct Counted<'a> {
    principal: Option<&'a Principal>,
    method: Option<&'a str>,
    target: Option<&'a str>,
    /// The key built last, and the parts it holds (`None`: not a usable prefix).
    key: LimitKey,
    parts: Option<&'a [KeyPart]>,
}

impl<'a> Counted<'a> {
    pub(crate) fn new(mcp: Option<&'a McpRequest>, principal: Option<&'a Principal>) -> Self {
        Self {
            principal,
            method: mcp.and_then(McpRequest::method),
            target: mcp.and_then(McpRequest::target),
            key: LimitKey::new(),
            parts: None,
        }
    }

    /// A key part's tag and values.
    #[inline]
    fn value(&self, part: KeyPart) -> (u8, [Option<&'a str>; 2]) {
        let principal = self.principal;
        match part {
            KeyPart::Principal => (b'p', [principal.map(Principal::issuer), principal.map(Principal::subject)]),
            KeyPart::Client => (b'c', [principal.and_then(Principal::client_id), None]),
            KeyPart::Tenant => (b't', [principal.and_then(tenant), None]),
            KeyPart::Tool => (b'n', [self.target, None]),
            _ => (b'?', [None, None]),
        }
    }
}

/// [`encode`] into `key`; false when it does not fit.
#[inline]
fn encode_into(key: &mut LimitKey, (tag, values): (u8, [Option<&str>; 2])) -> bool {
    if values[0].is_none() {
        return key.push(&[tag.to_ascii_uppercase()]);
    }
    let mut fits = key.push(&[tag]);
    for value in values.into_iter().flatten() {
        fits &= key.push(&u32::try_from(value.len()).unwrap_or(u32::MAX).to_le_bytes());
        fits &= key.push(value.as_bytes());
    }
    fits
}

/// One key part: its tag (upper case when the request lacks it), then each value length-prefixed.
fn encode((tag, values): (u8, [Option<&str>; 2]), mut out: impl FnMut(&[u8])) {
    if values[0].is_none() {
        out(&[tag.to_ascii_uppercase()]);
        return;
    }
    out(&[tag]);
    for value in values.into_iter().flatten() {
        out(&u32::try_from(value.len()).unwrap_or(u32::MAX).to_le_bytes());
        out(value.as_bytes());
    }
}

/// The principal's `tenant` claim, when it is a string (anything else counts as absent).
fn tenant(principal: &Principal) -> Option<&str> {
    principal.claims().get("tenant").and_then(serde_json::Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mcp(method: &str, name: Option<&str>) -> McpRequest {
        let mut params = serde_json::Map::new();
        if let Some(name) = name {
            params.insert("name".into(), json!(name));
        }
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        McpRequest::parse(&http::HeaderMap::new(), body.to_string().as_bytes(), |_| None).expect("parse")
    }

    fn principal(sub: &str, client: Option<&str>, tenant: Option<&str>) -> Principal {
        let mut b = Principal::builder(
            "https://idp",
            sub,
            mcp_enterprise_core::PrincipalKind::User,
            mcp_enterprise_core::AuthMethod::Bearer,
        );
        if let Some(c) = client {
            b = b.client_id(c);
        }
        if let Some(t) = tenant {
            b = b.claim("tenant", json!(t));
        }
        b.build()
    }

    #[test]
    fn rates_and_names_are_checked() {
        let s = Duration::from_secs(1);
        assert!(Limit::new("ok.name_1-2", 1, s).is_ok());
        for bad in ["", "-x", "a b", "ü", &"x".repeat(65)] {
            assert!(Limit::new(bad, 1, s).is_err(), "{bad:?}");
        }
        assert!(Limit::new("a", 0, s).is_err());
        assert!(Limit::new("a", 1, Duration::ZERO).is_err());
        assert!(Limit::new("a", 1, MAX_PERIOD + s).is_err());
        assert!(Limit::new("a", 2_000_000, s).is_err(), "finer than 1 µs");
        assert_eq!(Limit::new("a", 10, s).expect("limit").interval, Duration::from_millis(100));
        assert!(Limit::new("a", 1, s).and_then(|l| l.burst(0)).is_err());
        assert!(Limit::new("a", 1, MAX_PERIOD).and_then(|l| l.burst(101)).is_err());
        assert!(Limit::new("a", 1, s).and_then(|l| l.max_keys(0)).is_err());
    }

    #[test]
    fn filters() {
        let limit = Limit::new("a", 1, Duration::from_secs(1))
            .expect("limit")
            .methods(["tools/call"])
            .tools(["search", "fs_*"]);
        assert!(limit.applies(Some(&mcp("tools/call", Some("search")))));
        assert!(limit.applies(Some(&mcp("tools/call", Some("fs_read")))));
        assert!(!limit.applies(Some(&mcp("tools/call", Some("searchx")))));
        assert!(limit.applies(Some(&mcp("tools/call", Some("fs_")))), "* may match nothing");
        assert!(!limit.applies(Some(&mcp("prompts/get", Some("search")))), "method filter");
        assert!(!limit.applies(Some(&mcp("tools/list", None))));
        assert!(!limit.applies(None), "a GET has no method");
        let all = Limit::new("b", 1, Duration::from_secs(1)).expect("limit");
        assert!(all.applies(None) && all.applies(Some(&mcp("tools/list", None))));
    }

    #[test]
    fn keys_built_in_turn_for_one_request_equal_keys_built_alone() {
        let s = Duration::from_secs(1);
        let limit = |name: &str, parts: &[KeyPart]| Limit::new(name, 1, s).expect("limit").key(parts.iter().copied());
        let limits = [
            limit("a", &[KeyPart::Principal]),
            limit("b", &[KeyPart::Principal, KeyPart::Tool]),
            limit("c", &[KeyPart::Principal, KeyPart::Tool]),
            limit("d", &[KeyPart::Tool]),
            limit("e", &[]),
            limit("f", &[KeyPart::Client, KeyPart::Tool]),
            limit("g", &[KeyPart::Principal, KeyPart::Tenant, KeyPart::Tool]),
            limit("h", &[KeyPart::Principal]),
        ];
        let alice = principal("alice", Some("app"), Some("t1"));
        for tool in ["x", &"t".repeat(LimitKey::CAPACITY)] {
            let call = mcp("tools/call", Some(tool));
            let mut counted = Counted::new(Some(&call), Some(&alice));
            for l in &limits {
                let in_turn = *l.key_for(&mut counted);
                assert_eq!(
                    in_turn,
                    l.key_of(Some(&call), Some(&alice)),
                    "limit {} with a {}-byte tool",
                    l.name,
                    tool.len()
                );
            }
        }
    }

    #[test]
    fn keys_separate_what_they_name_and_only_that() {
        let s = Duration::from_secs(1);
        let by_principal_tool = Limit::new("a", 1, s).expect("limit").key([KeyPart::Tool, KeyPart::Principal]);
        let alice = principal("alice", Some("app"), Some("t1"));
        let bob = principal("bob", Some("app"), Some("t1"));
        let call = |tool| mcp("tools/call", Some(tool));
        let k = |l: &Limit, m: &McpRequest, p: &Principal| l.key_of(Some(m), Some(p));
        assert_eq!(k(&by_principal_tool, &call("x"), &alice), k(&by_principal_tool, &call("x"), &alice));
        assert_ne!(k(&by_principal_tool, &call("x"), &alice), k(&by_principal_tool, &call("x"), &bob));
        assert_ne!(k(&by_principal_tool, &call("x"), &alice), k(&by_principal_tool, &call("y"), &alice));
        let by_client = Limit::new("b", 1, s).expect("limit").key([KeyPart::Client]);
        assert_eq!(k(&by_client, &call("x"), &alice), k(&by_client, &call("y"), &bob), "same client");
        let by_tenant = Limit::new("c", 1, s).expect("limit").key([KeyPart::Tenant]);
        let other = principal("carol", None, Some("t2"));
        let none = principal("dave", None, None);
        assert_ne!(k(&by_tenant, &call("x"), &alice), k(&by_tenant, &call("x"), &other));
        assert_ne!(
            k(&by_tenant, &call("x"), &none),
            k(&by_tenant, &call("x"), &principal("", None, Some(""))),
            "absent ≠ empty"
        );
        let global = Limit::new("d", 1, s).expect("limit");
        assert_eq!(k(&global, &call("x"), &alice), k(&global, &call("y"), &bob));
        // no concatenation ambiguity: issuer/subject boundaries are kept
        let a = Principal::builder(
            "ab",
            "c",
            mcp_enterprise_core::PrincipalKind::User,
            mcp_enterprise_core::AuthMethod::Bearer,
        )
        .build();
        let b = Principal::builder(
            "a",
            "bc",
            mcp_enterprise_core::PrincipalKind::User,
            mcp_enterprise_core::AuthMethod::Bearer,
        )
        .build();
        let by_principal = Limit::new("e", 1, s).expect("limit").key([KeyPart::Principal]);
        assert_ne!(by_principal.key_of(None, Some(&a)), by_principal.key_of(None, Some(&b)));
        // long keys are bounded
        let long = call(&"t".repeat(10_000));
        assert_eq!(by_principal_tool.key_of(Some(&long), Some(&alice)).as_bytes().len(), 33);
        // up to the inline capacity a key is kept as is, past it it is its digest
        let base = by_principal_tool.key_of(Some(&mcp("tools/call", Some(""))), Some(&alice)).as_bytes().len();
        let tool = |n: usize| mcp("tools/call", Some(&"t".repeat(n)));
        let exact = by_principal_tool.key_of(Some(&tool(LimitKey::CAPACITY - base)), Some(&alice));
        assert_eq!(exact.as_bytes().len(), LimitKey::CAPACITY);
        assert_ne!(exact.as_bytes()[0], b'#', "kept as is");
        let over = by_principal_tool.key_of(Some(&tool(LimitKey::CAPACITY - base + 1)), Some(&alice));
        assert_eq!((over.as_bytes().len(), over.as_bytes()[0]), (33, b'#'));
        let other = by_principal_tool.key_of(Some(&tool(LimitKey::CAPACITY - base + 2)), Some(&alice));
        assert_ne!(over, other);
    }
}
