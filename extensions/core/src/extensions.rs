//! SEP-2133 extension identifiers and the set of extensions this server offers.
//!
//! An [`ExtensionSet`] collects the id and settings object of every enabled extension; the
//! [`NegotiateLayer`](crate::NegotiateLayer) advertises it in `initialize` / `server/discover`
//! results and enforces the ones marked *required*.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Map, Value};

use crate::error::ConfigError;

/// The vendor prefix of this pack's own extensions.
pub const DEFAULT_VENDOR_PREFIX: &str = "io.github.mcp-enterprise";

/// Official extension ids that live under the reserved `io.modelcontextprotocol` prefix.
pub const OFFICIAL_EXTENSION_IDS: &[&str] = &[
    "io.modelcontextprotocol/oauth-client-credentials",
    "io.modelcontextprotocol/enterprise-managed-authorization",
    "io.modelcontextprotocol/ui",
    "io.modelcontextprotocol/tasks",
];

/// De-facto ids used by the conformance suite and SDKs that break the SEP-2133 name grammar
/// (they contain a second `/`). Accepted for our own use only through [`ExtensionId::de_facto`].
pub const DE_FACTO_EXTENSION_IDS: &[&str] = &["io.modelcontextprotocol/auth/dpop", "io.modelcontextprotocol/auth/wif"];

/// A validated extension identifier, `{vendor-prefix}/{extension-name}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExtensionId(Arc<str>);

impl ExtensionId {
    /// Validates `id` against the SEP-2133 grammar.
    ///
    /// Ids under a reserved prefix (second label `modelcontextprotocol` or `mcp`) are accepted only
    /// when they are official extension ids ([`OFFICIAL_EXTENSION_IDS`]).
    pub fn new(id: &str) -> Result<Self, ConfigError> {
        check_grammar(id).map_err(|reason| ConfigError::InvalidExtensionId { id: id.to_owned(), reason })?;
        let (prefix, _) = id.split_once('/').unwrap_or((id, ""));
        if is_reserved_prefix(prefix) && !OFFICIAL_EXTENSION_IDS.contains(&id) {
            return Err(ConfigError::InvalidExtensionId {
                id: id.to_owned(),
                reason: "the prefix is reserved for official MCP extensions; use your own vendor prefix",
            });
        }
        Ok(Self(Arc::from(id)))
    }

    /// Accepts one of the [`DE_FACTO_EXTENSION_IDS`], which the SEP-2133 grammar would reject.
    pub fn de_facto(id: &str) -> Result<Self, ConfigError> {
        if DE_FACTO_EXTENSION_IDS.contains(&id) {
            Ok(Self(Arc::from(id)))
        } else {
            Err(ConfigError::InvalidExtensionId { id: id.to_owned(), reason: "not a known de-facto extension id" })
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ExtensionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for ExtensionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_reserved_prefix(prefix: &str) -> bool {
    matches!(prefix.split('.').nth(1), Some("modelcontextprotocol" | "mcp"))
}

/// Checks a vendor prefix: dot-separated labels, each starting with a letter, ending with a letter
/// or digit, with letters, digits or `-` inside.
fn check_prefix(prefix: &str) -> Result<(), &'static str> {
    if prefix.is_empty() {
        return Err("the vendor prefix is empty");
    }
    for label in prefix.split('.') {
        let bytes = label.as_bytes();
        let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
            return Err("the vendor prefix has an empty label");
        };
        if !first.is_ascii_alphabetic() {
            return Err("each vendor prefix label must start with a letter");
        }
        if !last.is_ascii_alphanumeric() {
            return Err("each vendor prefix label must end with a letter or digit");
        }
        if !bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-') {
            return Err("vendor prefix labels may only hold letters, digits and '-'");
        }
    }
    Ok(())
}

fn check_grammar(id: &str) -> Result<(), &'static str> {
    let Some((prefix, name)) = id.split_once('/') else {
        return Err("an extension id needs a vendor prefix: '{prefix}/{name}'");
    };
    check_prefix(prefix)?;
    let bytes = name.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return Err("the extension name is empty");
    };
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err("the extension name must start and end with a letter or digit");
    }
    if !bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Err("the extension name may only hold letters, digits, '-', '_' and '.' (no '/')");
    }
    Ok(())
}

/// Whether a peer-declared id follows the SEP-2133 grammar. Peers' ids are accepted either way;
/// a non-conforming one is logged once.
pub fn check_peer_id(id: &str) -> bool {
    if check_grammar(id).is_ok() {
        return true;
    }
    static WARNED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    const MAX_REMEMBERED: usize = 256;
    let warned = WARNED.get_or_init(|| Mutex::new(HashSet::new()));
    let mut warned = warned.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if warned.len() < MAX_REMEMBERED && warned.insert(id.chars().take(128).collect()) {
        tracing::warn!(extension_id = %id.escape_debug().to_string().chars().take(128).collect::<String>(),
            "peer declared an extension id that does not follow the SEP-2133 grammar; accepting it");
    }
    false
}

/// The extensions this server offers, with their settings, and which of them are required.
#[derive(Clone, Default)]
pub struct ExtensionSet {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    vendor_prefix: String,
    entries: Map<String, Value>,
    required: Vec<ExtensionId>,
}

impl fmt::Debug for ExtensionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExtensionSet")
            .field("vendor_prefix", &self.inner.vendor_prefix)
            .field("extensions", &self.inner.entries.keys().collect::<Vec<_>>())
            .field("required", &self.inner.required)
            .finish()
    }
}

impl ExtensionSet {
    /// Starts an empty set with the default vendor prefix.
    pub fn builder() -> ExtensionSetBuilder {
        ExtensionSetBuilder {
            vendor_prefix: DEFAULT_VENDOR_PREFIX.to_owned(),
            entries: Map::new(),
            required: Vec::new(),
        }
    }

    /// A builder holding this set's extensions, to add more (e.g. from another layer).
    pub fn to_builder(&self) -> ExtensionSetBuilder {
        ExtensionSetBuilder {
            vendor_prefix: self.vendor_prefix().to_owned(),
            entries: self.inner.entries.clone(),
            required: self.inner.required.clone(),
        }
    }

    /// The vendor prefix our own extension ids use.
    pub fn vendor_prefix(&self) -> &str {
        if self.inner.vendor_prefix.is_empty() { DEFAULT_VENDOR_PREFIX } else { &self.inner.vendor_prefix }
    }

    /// The `extensions` object to advertise: id → settings object.
    pub fn advertised(&self) -> &Map<String, Value> {
        &self.inner.entries
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.inner.entries.is_empty()
    }

    /// Whether `id` is offered.
    pub fn contains(&self, id: &str) -> bool {
        self.inner.entries.contains_key(id)
    }

    /// The extensions clients must declare.
    pub fn required(&self) -> &[ExtensionId] {
        &self.inner.required
    }

    /// Negotiates with what a client declared (`capabilities.extensions`): the extensions both sides
    /// support, with the client's settings.
    pub fn negotiate(&self, client_capabilities: Option<&Value>) -> NegotiatedExtensions {
        let mut agreed = Map::new();
        if let Some(Value::Object(declared)) = client_capabilities.and_then(|c| c.get("extensions")) {
            for (id, settings) in declared {
                check_peer_id(id);
                if self.inner.entries.contains_key(id) {
                    agreed.insert(id.clone(), settings.clone());
                }
            }
        }
        NegotiatedExtensions { client: Arc::new(agreed) }
    }

    /// The required extensions the client did not declare.
    pub fn missing_required(&self, negotiated: &NegotiatedExtensions) -> Vec<&ExtensionId> {
        self.inner.required.iter().filter(|id| !negotiated.contains(id.as_str())).collect()
    }
}

/// Builds an [`ExtensionSet`].
#[derive(Debug)]
#[must_use]
pub struct ExtensionSetBuilder {
    vendor_prefix: String,
    entries: Map<String, Value>,
    required: Vec<ExtensionId>,
}

impl ExtensionSetBuilder {
    /// Sets the vendor prefix for [`own_id`](Self::own_id) (default `io.github.mcp-enterprise`).
    /// It must be a valid prefix and must not be reserved.
    pub fn vendor_prefix(mut self, prefix: &str) -> Result<Self, ConfigError> {
        check_prefix(prefix)
            .map_err(|reason| ConfigError::InvalidVendorPrefix { prefix: prefix.to_owned(), reason })?;
        if is_reserved_prefix(prefix) {
            return Err(ConfigError::InvalidVendorPrefix {
                prefix: prefix.to_owned(),
                reason: "prefixes whose second label is 'modelcontextprotocol' or 'mcp' are reserved",
            });
        }
        self.vendor_prefix = prefix.to_owned();
        Ok(self)
    }

    /// The id `{vendor_prefix}/{name}`, validated.
    pub fn own_id(&self, name: &str) -> Result<ExtensionId, ConfigError> {
        ExtensionId::new(&format!("{}/{name}", self.vendor_prefix))
    }

    /// Adds (or replaces) an extension and its settings, which must be a JSON object (`{}` = supported,
    /// no settings).
    pub fn with(mut self, id: ExtensionId, settings: Value) -> Result<Self, ConfigError> {
        if !settings.is_object() {
            return Err(ConfigError::SettingsNotObject { id: id.to_string() });
        }
        self.entries.insert(id.to_string(), settings);
        Ok(self)
    }

    /// Adds an extension by id text (validated), see [`with`](Self::with).
    pub fn with_id(self, id: &str, settings: Value) -> Result<Self, ConfigError> {
        let id = ExtensionId::new(id)?;
        self.with(id, settings)
    }

    /// Adds `{vendor_prefix}/{name}` with its settings.
    pub fn with_own(self, name: &str, settings: Value) -> Result<Self, ConfigError> {
        let id = self.own_id(name)?;
        self.with(id, settings)
    }

    /// Marks an added extension as required: modern clients that do not declare it are rejected with
    /// `-32021`.
    pub fn require(mut self, id: &str) -> Result<Self, ConfigError> {
        let Some((key, _)) = self.entries.get_key_value(id) else {
            return Err(ConfigError::RequiredNotOffered { id: id.to_owned() });
        };
        let id = ExtensionId(Arc::from(key.as_str()));
        if !self.required.contains(&id) {
            self.required.push(id);
        }
        Ok(self)
    }

    /// Finishes the set.
    pub fn build(self) -> ExtensionSet {
        ExtensionSet {
            inner: Arc::new(Inner {
                vendor_prefix: self.vendor_prefix,
                entries: self.entries,
                required: self.required,
            }),
        }
    }
}

/// The extensions negotiated for one request: offered by us and declared by the client, with the
/// client's settings. Set in the request's [`RequestContext`](crate::RequestContext) by the
/// negotiation layer; read with [`NegotiatedExtensions::of`].
#[derive(Debug, Clone, Default)]
pub struct NegotiatedExtensions {
    client: Arc<Map<String, Value>>,
}

impl NegotiatedExtensions {
    /// Whether both sides support `id`.
    pub fn contains(&self, id: &str) -> bool {
        self.client.contains_key(id)
    }

    /// The client's settings object for `id`, when negotiated.
    pub fn client_settings(&self, id: &str) -> Option<&Value> {
        self.client.get(id)
    }

    /// The negotiated ids.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.client.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn grammar() {
        for ok in [
            "com.example/audit",
            "io.github.mcp-enterprise/dpop",
            "a/b",
            "a1.b-2/x_y.z-9",
            "io.modelcontextprotocol/ui",
        ] {
            assert!(ExtensionId::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "noslash",
            "/name",
            "com.example/",
            "1com.example/x",
            "com.example-/x",
            "com..example/x",
            "com.example/-x",
            "com.example/x-",
            "com.example/a/b",
            "com.example/a b",
            "io.modelcontextprotocol/mine",
            "dev.mcp/mine",
            "io.modelcontextprotocol/auth/dpop",
        ] {
            assert!(ExtensionId::new(bad).is_err(), "{bad}");
        }
        assert!(ExtensionId::new("com.example.mcp/x").is_ok(), "only the second label is reserved");
        assert!(ExtensionId::de_facto("io.modelcontextprotocol/auth/dpop").is_ok());
        assert!(ExtensionId::de_facto("io.modelcontextprotocol/auth/other").is_err());
    }

    #[test]
    fn vendor_prefix_rules() {
        assert!(ExtensionSet::builder().vendor_prefix("io.modelcontextprotocol").is_err());
        assert!(ExtensionSet::builder().vendor_prefix("bad..prefix").is_err());
        let b = ExtensionSet::builder().vendor_prefix("com.acme").expect("valid");
        assert_eq!(b.own_id("audit").expect("id").as_str(), "com.acme/audit");
        assert!(b.own_id("bad/name").is_err());
    }

    #[test]
    fn settings_must_be_objects_and_required_must_be_offered() {
        let err = ExtensionSet::builder().with_own("audit", json!(true)).expect_err("not object");
        assert!(matches!(err, ConfigError::SettingsNotObject { .. }));
        let err = ExtensionSet::builder().require("com.acme/x").expect_err("not offered");
        assert!(matches!(err, ConfigError::RequiredNotOffered { .. }));
    }

    #[test]
    fn negotiation_intersects() {
        let set = ExtensionSet::builder()
            .with_own("audit", json!({}))
            .and_then(|b| b.with_own("dpop", json!({"algs": ["ES256"]})))
            .and_then(|b| b.require("io.github.mcp-enterprise/dpop"))
            .expect("set")
            .build();
        let caps =
            json!({"extensions": {"io.github.mcp-enterprise/audit": {"v": 1}, "other.vendor/x": {}, "bad id": {}}});
        let negotiated = set.negotiate(Some(&caps));
        assert!(negotiated.contains("io.github.mcp-enterprise/audit"));
        assert!(!negotiated.contains("other.vendor/x"));
        assert_eq!(negotiated.client_settings("io.github.mcp-enterprise/audit"), Some(&json!({"v": 1})));
        let missing = set.missing_required(&negotiated);
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].as_str(), "io.github.mcp-enterprise/dpop");
        assert!(set.negotiate(None).ids().next().is_none());
        let more = set.to_builder().with_own("policy", json!({})).expect("add").build();
        assert!(more.contains("io.github.mcp-enterprise/audit") && more.contains("io.github.mcp-enterprise/policy"));
        assert_eq!(more.required().len(), 1);
        assert!(!check_peer_id("bad id"));
    }
}
