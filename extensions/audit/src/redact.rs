//! What of a call's arguments reaches the trail.

use std::collections::{HashMap, HashSet};
use std::fmt;

use aws_lc_rs::{digest, hmac};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::canonical::{self, Object};
use crate::time::hex;

/// Argument names containing one of these (case-insensitive, ignoring `-` and `_`) are dropped
/// whatever the per-tool rules say.
const SECRET_NAME_PARTS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "authorization",
    "credential",
    "privatekey",
    "cookie",
    "sessionid",
    "otp",
    "pin",
    "ssn",
    "creditcard",
    "cardnumber",
    "cvv",
];

/// How argument values are recorded when no per-tool rule keeps them in clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ArgumentMode {
    /// A keyed digest (HMAC-SHA-256) per value: equal values correlate, nobody can read them.
    #[default]
    Digest,
    /// Only the argument names.
    NamesOnly,
}

impl ArgumentMode {
    /// The name used in records and settings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Digest => "digest",
            Self::NamesOnly => "names_only",
        }
    }
}

/// Per-tool exceptions.
#[derive(Debug, Clone, Default)]
pub(crate) struct ToolRule {
    pub(crate) clear: HashSet<String>,
    pub(crate) drop: HashSet<String>,
}

/// The redaction policy: digest by default, per-tool allow-lists (clear) and deny-lists (dropped),
/// secret-looking names always dropped.
#[derive(Clone)]
pub struct Redaction {
    pub(crate) mode: ArgumentMode,
    key: hmac::Key,
    key_id: String,
    pub(crate) tools: HashMap<String, ToolRule>,
    pub(crate) drop_names: HashSet<String>,
}

impl fmt::Debug for Redaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redaction")
            .field("mode", &self.mode)
            .field("key", &"<redacted>")
            .field("key_id", &self.key_id)
            .field("tools", &self.tools.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Redaction {
    /// A policy whose digests are keyed with `secret` (at least 32 bytes recommended; keep it
    /// stable across restarts so digests correlate over time).
    pub fn new(secret: &[u8]) -> Self {
        let mut id_input = b"mcp-enterprise audit hmac key id\0".to_vec();
        id_input.extend_from_slice(secret);
        let key_id = hex(&digest::digest(&digest::SHA256, &id_input).as_ref()[..8]);
        Self {
            mode: ArgumentMode::Digest,
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            key_id,
            tools: HashMap::new(),
            drop_names: HashSet::new(),
        }
    }

    /// A policy with a random key: digests correlate only within this process.
    pub fn random() -> Self {
        let mut secret = [0u8; 32];
        // without randomness digests would be guessable: fall back to a time-derived key and say so
        if aws_lc_rs::rand::fill(&mut secret).is_err() {
            tracing::error!("no system randomness for the audit HMAC key");
        }
        Self::new(&secret)
    }

    /// Sets the argument mode.
    #[must_use]
    pub fn mode(mut self, mode: ArgumentMode) -> Self {
        self.mode = mode;
        self
    }

    /// Keeps `names` of `tool` in clear (still never secret-looking names).
    #[must_use]
    pub fn clear<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tool: &str, names: I) -> Self {
        self.tools.entry(tool.to_owned()).or_default().clear.extend(names.into_iter().map(Into::into));
        self
    }

    /// Always drops `names` of `tool` (`*` for every tool).
    #[must_use]
    pub fn drop<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tool: &str, names: I) -> Self {
        let names = names.into_iter().map(Into::into);
        if tool == "*" {
            self.drop_names.extend(names);
        } else {
            self.tools.entry(tool.to_owned()).or_default().drop.extend(names);
        }
        self
    }

    /// The public id of the digest key (a hash of it), recorded with digests.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The keyed digest of one value: `hmac-sha256:<base64url of the first 16 bytes>`.
    pub fn digest(&self, value: &Value) -> String {
        format!("hmac-sha256:{}", URL_SAFE_NO_PAD.encode(&self.tag(value).as_ref()[..16]))
    }

    /// The keyed digest of raw bytes.
    pub(crate) fn digest_bytes(&self, context: hmac::Context) -> String {
        format!("hmac-sha256:{}", URL_SAFE_NO_PAD.encode(&context.sign().as_ref()[..16]))
    }

    pub(crate) fn context(&self) -> hmac::Context {
        hmac::Context::with_key(&self.key)
    }

    /// The record's `arguments` object for `tool`'s `arguments`.
    #[cfg(test)]
    pub(crate) fn arguments(&self, tool: Option<&str>, arguments: &Map<String, Value>) -> Value {
        let mut out = Vec::new();
        let mut o = Object::open(&mut out);
        self.write_arguments(tool, arguments, &mut o);
        o.close();
        serde_json::from_slice(&out).unwrap_or(Value::Null)
    }

    /// Writes the members of the record's `arguments` object for `tool`'s `arguments`.
    pub(crate) fn write_arguments<'k>(
        &self,
        tool: Option<&str>,
        arguments: &'k Map<String, Value>,
        out: &mut Object<'_, 'k>,
    ) {
        #[derive(Clone, Copy, PartialEq, Eq)]
        enum Fate {
            Dropped,
            Clear,
            Digest,
            Name,
        }
        let rule = tool.and_then(|t| self.tools.get(t));
        let fate = |name: &str| {
            if is_secret_name(name)
                || (!self.drop_names.is_empty() && self.drop_names.contains(name))
                || rule.is_some_and(|r| r.drop.contains(name))
            {
                Fate::Dropped
            } else if rule.is_some_and(|r| r.clear.contains(name)) {
                Fate::Clear
            } else {
                match self.mode {
                    ArgumentMode::Digest => Fate::Digest,
                    ArgumentMode::NamesOnly => Fate::Name,
                }
            }
        };
        // each argument's fate decided once (on the stack for the usual few arguments); the
        // objects are then written in canonical order
        const INLINE: usize = 16;
        let mut inline = [Fate::Dropped; INLINE];
        let spilled: Vec<Fate>;
        let fates: &[Fate] = if arguments.len() <= INLINE {
            for (slot, name) in inline.iter_mut().zip(arguments.keys()) {
                *slot = fate(name);
            }
            &inline[..arguments.len()]
        } else {
            spilled = arguments.keys().map(|name| fate(name)).collect();
            &spilled
        };
        let with = |fate: Fate| arguments.iter().zip(fates).filter(move |(_, f)| **f == fate).map(|(kv, _)| kv);
        let any = |fate: Fate| fates.contains(&fate);
        if any(Fate::Clear) {
            out.object("clear", |clear| {
                for (name, value) in with(Fate::Clear) {
                    clear.value(name, value);
                }
            });
        }
        if any(Fate::Digest) {
            out.object("digests", |digests| {
                let mut bytes = Vec::with_capacity(64);
                for (name, value) in with(Fate::Digest) {
                    bytes.clear();
                    canonical::write(value, &mut bytes);
                    let tag = hmac::sign(&self.key, &bytes);
                    digests.member(name, |buf| {
                        let mut encoded = [0u8; 22];
                        let n = URL_SAFE_NO_PAD.encode_slice(&tag.as_ref()[..16], &mut encoded).unwrap_or(0);
                        buf.reserve(n + 14);
                        buf.extend_from_slice(b"\"hmac-sha256:");
                        buf.extend_from_slice(&encoded[..n]);
                        buf.push(b'"');
                    });
                }
            });
        }
        // an array of the names, as `canonical::write` writes an array of strings
        let list = |fate: Fate| {
            move |buf: &mut Vec<u8>| {
                buf.push(b'[');
                for (i, (name, _)) in with(fate).enumerate() {
                    if i > 0 {
                        buf.push(b',');
                    }
                    canonical::write_string(name, buf);
                }
                buf.push(b']');
            }
        };
        if any(Fate::Dropped) {
            out.member("dropped", list(Fate::Dropped));
        }
        if any(Fate::Digest) {
            out.str("key_id", &self.key_id);
        }
        out.str("mode", self.mode.as_str());
        if any(Fate::Name) {
            out.member("names", list(Fate::Name));
        }
    }

    /// The HMAC of a value's canonical form.
    fn tag(&self, value: &Value) -> hmac::Tag {
        let mut bytes = Vec::with_capacity(64);
        canonical::write(value, &mut bytes);
        hmac::sign(&self.key, &bytes)
    }
}

/// Whether an argument name looks like it holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    // the common case, a short ASCII name, folded on the stack
    const SHORT: usize = 64;
    if name.len() <= SHORT && name.is_ascii() {
        let mut folded = [0u8; SHORT];
        let mut len = 0;
        for b in name.bytes().filter(|b| *b != b'_' && *b != b'-') {
            folded[len] = b.to_ascii_lowercase();
            len += 1;
        }
        return folded_is_secret(&folded[..len]);
    }
    let folded: String = name.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect();
    SECRET_NAME_PARTS.iter().any(|part| match *part {
        // short parts only as whole names, so "spinner" or "options" keep their values
        "otp" | "pin" | "ssn" | "cvv" => folded == *part,
        _ => folded.contains(part),
    })
}

/// [`is_secret_name`] of a folded ASCII name: the whole-name parts compared once, the others
/// (`SECRET_NAME_PARTS` longer than three bytes, by their first byte) looked for only where a
/// byte starts one of them.
fn folded_is_secret(folded: &[u8]) -> bool {
    if matches!(folded, b"otp" | b"pin" | b"ssn" | b"cvv") {
        return true;
    }
    (0..folded.len()).any(|i| {
        let rest = &folded[i..];
        let at = |part: &[u8]| rest.starts_with(part);
        match rest[0] {
            b'a' => at(b"apikey") || at(b"authorization"),
            b'c' => at(b"credential") || at(b"cookie") || at(b"creditcard") || at(b"cardnumber"),
            b'p' => at(b"password") || at(b"passwd") || at(b"passphrase") || at(b"privatekey"),
            b's' => at(b"secret") || at(b"sessionid"),
            b't' => at(b"token"),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn digests_by_default_clear_and_drop_per_tool_secrets_always_dropped() {
        let r = Redaction::new(b"k1")
            .clear("query", ["database", "api_token"])
            .drop("query", ["sql"])
            .drop("*", ["ssn_hint"]);
        let args = json!({"database": "reporting", "sql": "select 1", "limit": 5, "api_token": "t0p",
            "Password": "hunter2", "ssn_hint": "x", "options": {"a": 1}});
        let out = r.arguments(Some("query"), args.as_object().expect("obj"));
        assert_eq!(out["mode"], "digest");
        assert_eq!(out["clear"], json!({"database": "reporting"}));
        assert_eq!(out["dropped"], json!(["sql", "api_token", "Password", "ssn_hint"]));
        let digests = out["digests"].as_object().expect("digests");
        assert_eq!(digests.keys().collect::<Vec<_>>(), ["limit", "options"]);
        assert!(digests["limit"].as_str().expect("s").starts_with("hmac-sha256:"));
        let text = out.to_string();
        for secret in ["select 1", "t0p", "hunter2", "\"x\""] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        // another tool: no clear list
        let other = r.arguments(Some("other"), args.as_object().expect("obj"));
        assert!(other.get("clear").is_none());
    }

    #[test]
    fn digests_correlate_per_key_only() {
        let a = Redaction::new(b"key-a");
        let b = Redaction::new(b"key-b");
        assert_eq!(a.digest(&json!({"x": 1, "y": 2})), a.digest(&json!({"y": 2, "x": 1})), "canonical input");
        assert_ne!(a.digest(&json!("v")), b.digest(&json!("v")));
        assert_ne!(a.digest(&json!("v")), a.digest(&json!("w")));
        assert_ne!(a.key_id(), b.key_id());
        assert!(!format!("{a:?}").contains("key-a"));
    }

    #[test]
    fn names_only_mode() {
        let r = Redaction::new(b"k").mode(ArgumentMode::NamesOnly);
        let out = r.arguments(None, json!({"a": 1, "token": "t"}).as_object().expect("obj"));
        assert_eq!(out, json!({"mode": "names_only", "names": ["a"], "dropped": ["token"]}));
    }

    /// The definition [`is_secret_name`] implements faster: the folded name contains a part (the
    /// short parts only as the whole name).
    fn secret_by_definition(name: &str) -> bool {
        let folded: String = name.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect();
        SECRET_NAME_PARTS.iter().any(|part| match *part {
            "otp" | "pin" | "ssn" | "cvv" => folded == *part,
            _ => folded.contains(part),
        })
    }

    proptest::proptest! {
        #[test]
        fn secret_names_as_defined(
            name in "[a-zA-Z_-]{0,12}(?i:pass(word|wd|phrase)|secret|token|api_?key|authori[sz]ation|credential|private_?key|cookie|session_?id|otp|pin|ssn|credit_?card|card_?number|cvv)?[a-zA-Z0-9_-]{0,12}",
            other in "\\PC{0,70}",
        ) {
            proptest::prop_assert_eq!(is_secret_name(&name), secret_by_definition(&name), "{}", name);
            proptest::prop_assert_eq!(is_secret_name(&other), secret_by_definition(&other), "{}", other);
        }
    }

    #[test]
    fn every_part_is_looked_for() {
        for part in SECRET_NAME_PARTS {
            assert!(folded_is_secret(part.as_bytes()), "{part}");
            assert!(is_secret_name(&format!("my_{}_x", part.to_uppercase())) == (part.len() > 3), "{part}");
        }
    }

    #[test]
    fn secret_names() {
        for name in [
            "password",
            "DB_PASSWORD",
            "clientSecret",
            "access-token",
            "API_KEY",
            "apiKey",
            "Cookie",
            "pin",
            "private_key",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in ["text", "spinner", "options", "database", "limit", "path"] {
            assert!(!is_secret_name(name), "{name}");
        }
    }
}
