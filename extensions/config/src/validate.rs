//! Structural checks against the schema — unknown keys, missing keys, wrong types, enum names,
//! URLs, lengths and ranges — collecting every problem instead of stopping at the first, as a
//! deserializer would.
//!
//! The schema is the one `schemars` derives from the types (see [`crate::schema`]), so these checks
//! and the types cannot disagree; deserialization afterwards is the final word.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use crate::error::DiagnosticKind;
use crate::path::KeyPath;
use crate::schema::{describe, enum_values, object_schema, resolve_ref};

/// A problem found, before it is located in a source.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    pub(crate) kind: DiagnosticKind,
    pub(crate) path: KeyPath,
    pub(crate) expected: String,
    pub(crate) found: String,
    /// Point at the key rather than the value (unknown keys, missing keys: their table).
    pub(crate) at_key: bool,
}

pub(crate) struct Validator<'a> {
    root: &'a Value,
    /// Raw text of values set by environment variables: figment parses `MCPE_X=123` as a number,
    /// which is accepted where a string belongs.
    env_raw: &'a HashMap<KeyPath, String>,
    secrets: &'a BTreeSet<KeyPath>,
    /// Values already reported (unresolvable secret references): not checked again.
    skip: BTreeSet<KeyPath>,
    pub(crate) problems: Vec<Problem>,
}

impl<'a> Validator<'a> {
    pub(crate) fn new(root: &'a Value, env_raw: &'a HashMap<KeyPath, String>, secrets: &'a BTreeSet<KeyPath>) -> Self {
        Self { root, env_raw, secrets, skip: BTreeSet::new(), problems: Vec::new() }
    }

    /// Leaves these paths unchecked (their problem is already reported).
    pub(crate) fn skipping(mut self, paths: impl IntoIterator<Item = KeyPath>) -> Self {
        self.skip.extend(paths);
        self
    }

    fn problem(&mut self, kind: DiagnosticKind, path: &KeyPath, expected: String, found: String, at_key: bool) {
        self.problems.push(Problem { kind, path: path.clone(), expected, found, at_key });
    }

    fn is_secret(&self, path: &KeyPath) -> bool {
        self.secrets.iter().any(|s| path.starts_with(s)) || crate::secret::is_schema_secret(path)
    }

    /// What a value is, for "found …"; secrets are never shown.
    pub(crate) fn found(&self, value: &Value, path: &KeyPath) -> String {
        shown(value, self.is_secret(path))
    }

    pub(crate) fn check(&mut self, schema: &Value, value: &mut Value, path: &KeyPath) {
        if self.skip.contains(path) {
            return;
        }
        let root = self.root;
        let schema = resolve_ref(root, schema);
        if schema == &Value::Bool(true) {
            return;
        }
        if let Some(values) = enum_values(root, schema) {
            if !value.as_str().is_some_and(|s| values.iter().any(|v| v == s)) {
                let kind = if value.is_string() { DiagnosticKind::InvalidValue } else { DiagnosticKind::WrongType };
                let found = self.found(value, path);
                self.problem(kind, path, describe(root, schema), found, false);
            }
            return;
        }
        if let Some(constant) = schema.get("const") {
            if value != constant {
                let found = self.found(value, path);
                self.problem(DiagnosticKind::InvalidValue, path, format!("`{constant}`"), found, false);
            }
            return;
        }
        if let Some(alternatives) = schema.get("anyOf").or_else(|| schema.get("oneOf")).and_then(Value::as_array) {
            self.alternatives(schema, alternatives, value, path);
            return;
        }
        let types: Vec<&str> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !types.is_empty() && !types.iter().any(|t| type_matches(t, value)) {
            // a secret reference always resolves to text: `${env:PORT}` may fill a number
            let from_reference = match value {
                Value::String(s) if self.secrets.contains(path) => {
                    serde_json::from_str::<Value>(s.trim()).ok().filter(|v| types.iter().any(|t| type_matches(t, v)))
                }
                _ => None,
            };
            match (self.env_raw.get(path), from_reference) {
                (_, Some(parsed)) => *value = parsed,
                (Some(raw), None) if types.contains(&"string") => *value = Value::String(raw.clone()),
                _ => {
                    let found = self.found(value, path);
                    self.problem(DiagnosticKind::WrongType, path, describe(root, schema), found, false);
                    return;
                }
            }
        }
        match value {
            Value::String(s) => self.string(schema, s, path),
            Value::Number(n) => self.number(schema, n, path),
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter_mut().enumerate() {
                        self.check(item_schema, item, &path.index(i));
                    }
                }
            }
            Value::Object(map) => {
                let props = schema.get("properties").and_then(Value::as_object);
                if let Some(Value::Array(required)) = schema.get("required") {
                    for name in required.iter().filter_map(Value::as_str) {
                        if !map.contains_key(name) {
                            let expected =
                                props.and_then(|p| p.get(name)).map_or("a value".into(), |s| describe(root, s));
                            self.problem(
                                DiagnosticKind::MissingKey,
                                &path.key(name),
                                expected,
                                format!(
                                    "no `{name}` in {}",
                                    if path.is_root() { "the document".to_owned() } else { format!("`{path}`") }
                                ),
                                true,
                            );
                        }
                    }
                }
                let extra = schema.get("additionalProperties");
                for (name, item) in map.iter_mut() {
                    let child = path.key(name);
                    match (props.and_then(|p| p.get(name)), extra) {
                        (Some(sub), _) => self.check(sub, item, &child),
                        (None, Some(Value::Bool(false))) => {
                            let known: Vec<&str> =
                                props.map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
                            self.problem(
                                DiagnosticKind::UnknownKey,
                                &child,
                                expected_key(&known, name),
                                format!("the unknown key `{name}`"),
                                true,
                            );
                        }
                        (None, Some(sub)) if sub.is_object() => self.check(sub, item, &child),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }

    fn alternatives(&mut self, schema: &Value, alternatives: &[Value], value: &mut Value, path: &KeyPath) {
        let root = self.root;
        // an alternative that takes the value as it is
        for alt in alternatives {
            let mut scratch = Validator::new(root, self.env_raw, self.secrets).skipping(self.skip.iter().cloned());
            let mut candidate = value.clone();
            scratch.check(alt, &mut candidate, path);
            if scratch.problems.is_empty() {
                *value = candidate;
                return;
            }
        }
        // none: report inside the one alternative the value was clearly meant for
        if value.is_object() {
            let objects: Vec<&Value> = alternatives.iter().filter(|a| object_schema(root, a).is_some()).collect();
            if let [only] = objects.as_slice() {
                self.check(only, value, path);
                return;
            }
            // an externally tagged enum: `{variant: …}`
            let tagged: Vec<(&str, &Value)> = objects
                .iter()
                .filter_map(|a| {
                    let o = object_schema(root, a)?;
                    let required = o.get("required")?.as_array()?;
                    match required.as_slice() {
                        [Value::String(tag)] => Some((tag.as_str(), *a)),
                        _ => None,
                    }
                })
                .collect();
            if !tagged.is_empty() && tagged.len() == objects.len() {
                let keys: Vec<String> = value.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
                let names: Vec<&str> = tagged.iter().map(|(t, _)| *t).collect();
                if let [key] = keys.as_slice()
                    && let Some((_, alt)) = tagged.iter().find(|(t, _)| t == key)
                {
                    self.check(alt, value, path);
                    return;
                }
                let expected = format!(
                    "a table with exactly one of the keys {}",
                    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                );
                let found = if keys.is_empty() {
                    "an empty table".to_owned()
                } else {
                    format!("the keys {}", keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "))
                };
                self.problem(DiagnosticKind::InvalidValue, path, expected, found, false);
                return;
            }
        }
        let kind = if alternatives.iter().any(|a| accepts_type(root, a, value)) {
            DiagnosticKind::InvalidValue
        } else {
            DiagnosticKind::WrongType
        };
        let found = self.found(value, path);
        self.problem(kind, path, describe(root, schema), found, false);
    }

    fn string(&mut self, schema: &Value, s: &str, path: &KeyPath) {
        if schema.get("format") == Some(&Value::String("uri".into()))
            && let Err(reason) = check_url(s)
        {
            let found = self.found(&Value::String(s.to_owned()), path);
            self.problem(
                DiagnosticKind::InvalidValue,
                path,
                format!("an absolute http(s) URL ({reason})"),
                found,
                false,
            );
        }
        let chars = s.chars().count();
        let min = schema.get("minLength").and_then(Value::as_u64);
        let max = schema.get("maxLength").and_then(Value::as_u64);
        let len = u64::try_from(chars).unwrap_or(u64::MAX);
        if min.is_some_and(|m| len < m) || max.is_some_and(|m| len > m) {
            let expected = match (min, max) {
                (Some(a), Some(b)) => format!("a string of {a} to {b} characters"),
                (Some(a), None) => format!("a string of at least {a} characters"),
                (None, Some(b)) => format!("a string of at most {b} characters"),
                (None, None) => "a string".into(),
            };
            let found = if self.is_secret(path) { "a secret string".to_owned() } else { format!("{chars} characters") };
            self.problem(DiagnosticKind::InvalidValue, path, expected, found, false);
        }
    }

    fn number(&mut self, schema: &Value, n: &serde_json::Number, path: &KeyPath) {
        let max_by_format = match schema.get("format").and_then(Value::as_str) {
            Some("uint8") => Some(u64::from(u8::MAX)),
            Some("uint16") => Some(u64::from(u16::MAX)),
            Some("uint32") => Some(u64::from(u32::MAX)),
            _ => None,
        };
        let min = schema.get("minimum").and_then(Value::as_f64);
        let max = schema.get("maximum").and_then(Value::as_f64).or(max_by_format.map(|m| m as f64));
        let v = n.as_f64().unwrap_or(0.0);
        if min.is_some_and(|m| v < m) || max.is_some_and(|m| v > m) {
            let expected = match (min, max) {
                (Some(a), Some(b)) => format!("a number from {a} to {b}"),
                (Some(0.0), None) => "an unsigned integer (0 or more)".to_owned(),
                (Some(a), None) => format!("a number of at least {a}"),
                (None, Some(b)) => format!("a number of at most {b}"),
                (None, None) => "a number".into(),
            };
            let found = self.found(&Value::Number(n.clone()), path);
            self.problem(DiagnosticKind::InvalidValue, path, expected, found, false);
        }
    }
}

/// Whether `schema` accepts values of `value`'s JSON type (whatever their content).
fn accepts_type(root: &Value, schema: &Value, value: &Value) -> bool {
    let schema = resolve_ref(root, schema);
    if schema == &Value::Bool(true) {
        return true;
    }
    if enum_values(root, schema).is_some() {
        return value.is_string();
    }
    if let Some(alternatives) = schema.get("anyOf").or_else(|| schema.get("oneOf")).and_then(Value::as_array) {
        return alternatives.iter().any(|a| accepts_type(root, a, value));
    }
    match schema.get("type") {
        Some(Value::String(t)) => type_matches(t, value),
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).any(|t| type_matches(t, value)),
        _ => true,
    }
}

fn type_matches(t: &str, value: &Value) -> bool {
    match (t, value) {
        ("null", Value::Null) | ("boolean", Value::Bool(_)) | ("string", Value::String(_)) => true,
        ("array", Value::Array(_)) | ("object", Value::Object(_)) | ("number", Value::Number(_)) => true,
        ("integer", Value::Number(n)) => n.is_i64() || n.is_u64(),
        _ => false,
    }
}

/// "found …" text: the value itself for non-secrets (long strings shortened).
pub(crate) fn shown(value: &Value, secret: bool) -> String {
    if secret {
        return match value {
            Value::String(_) => "a secret string".into(),
            Value::Null => "a secret value".into(),
            _ => "a secret value".into(),
        };
    }
    match value {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() > 80 => {
            format!("the string {:?}…", s.chars().take(80).collect::<String>())
        }
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(items) => format!("a list of {} item{}", items.len(), if items.len() == 1 { "" } else { "s" }),
        Value::Object(_) => "a table".into(),
    }
}

/// What an unknown key should have been: the closest known key, or the list.
fn expected_key(known: &[&str], unknown: &str) -> String {
    let closest = known
        .iter()
        .map(|k| (edit_distance(k, unknown), *k))
        .filter(|(d, k)| *d <= 2 || k.starts_with(unknown) || unknown.starts_with(*k))
        .min();
    match closest {
        Some((_, k)) => format!("a known key, like `{k}`"),
        None if known.is_empty() => "no keys here".to_owned(),
        None => format!("one of {}", known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// An absolute `http`/`https` URL with a host, no spaces and no fragment.
pub(crate) fn check_url(s: &str) -> Result<(), &'static str> {
    if s.chars().any(char::is_whitespace) {
        return Err("no spaces");
    }
    if s.contains('#') {
        return Err("no fragment");
    }
    let Some((scheme, _)) = s.split_once("://") else { return Err("with a scheme, like https://") };
    if !matches!(scheme, "http" | "https") {
        return Err("scheme http or https");
    }
    let uri: http::Uri = s.parse().map_err(|_| "not a URL")?;
    match uri.authority() {
        Some(a) if !a.host().is_empty() => Ok(()),
        _ => Err("with a host"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(doc: Value) -> Vec<Problem> {
        let schema = crate::schema::pack_schema();
        let env = HashMap::new();
        let secrets = BTreeSet::new();
        let mut v = Validator::new(&schema, &env, &secrets);
        let mut doc = doc;
        v.check(&schema, &mut doc, &KeyPath::root());
        v.problems
    }

    fn base() -> Value {
        json!({"version": 1, "resource": "https://mcp.example.com/mcp", "upstream": {"url": "http://127.0.0.1:1/mcp"}})
    }

    #[test]
    fn all_problems_at_once() {
        let mut doc = base();
        doc["audit"] = json!({"directori": "/x", "fsync": "sometimes", "queue_capacity": "lots", "directory": 5});
        doc["sso"] =
            json!({"issuers": [{"issuer": "htp:/bad", "audiences": "x"}], "scopes": {"rules": [{"method": 1}]}});
        doc["workload_identity"] = json!({"issuers": [{"rules": [{"name": "r", "subject": {"regex": ".*"}}]}]});
        doc["upstream"] = json!({});
        let found = problems(doc);
        let text: Vec<String> =
            found.iter().map(|p| format!("{:?} {}: {} / {}", p.kind, p.path, p.expected, p.found)).collect();
        let has = |needle: &str| text.iter().any(|t| t.contains(needle));
        assert!(has("UnknownKey audit.directori: a known key, like `directory`"), "{text:#?}");
        assert!(
            has("InvalidValue audit.fsync: one of `every_record`, `interval`, `os` / the string \"sometimes\""),
            "{text:#?}"
        );
        assert!(has("WrongType audit.queue_capacity: an unsigned integer / the string \"lots\""), "{text:#?}");
        assert!(has("WrongType audit.directory: a string / the number 5"), "{text:#?}");
        assert!(has("InvalidValue sso.issuers[0].issuer: an absolute http(s) URL"), "{text:#?}");
        assert!(has("WrongType sso.issuers[0].audiences: a list of strings"), "{text:#?}");
        assert!(has("MissingKey sso.scopes.rules[0].scopes"), "{text:#?}");
        assert!(has("WrongType sso.scopes.rules[0].method: a string / the number 1"), "{text:#?}");
        assert!(
            has(
                "InvalidValue workload_identity.issuers[0].rules[0].subject: a table with exactly one of the keys `exact`, `prefix`, `glob` / the keys `regex`"
            ),
            "{text:#?}"
        );
        // `upstream` without `url` or `command` is the checks' finding (`checks/stdio.rs`): either
        // key may be given, so the schema requires neither
        assert!(!has("upstream.url"), "{text:#?}");
        assert_eq!(found.len(), 9, "{text:#?}");
    }

    #[test]
    fn valid_documents_pass() {
        let mut doc = base();
        doc["sso"] = json!({"issuers": [{"issuer": "https://idp.example.com", "jwks": {"keys": []}}]});
        doc["dpop"] = json!({"nonce": {"mode": "required", "keys": ["k"]}});
        doc["audit"] = json!({"directory": "/x", "tools": {"t": {"clear": ["a"]}}});
        doc["workload_identity"] = json!({"issuers": [{"issuer": "https://k8s", "rules": [{"name": "r", "subject": {"glob": "*"}}]}], "direct": {}});
        assert!(problems(doc).is_empty());
    }

    #[test]
    fn listener_limits_are_range_checked() {
        let mut doc = base();
        doc["listen"] = json!({"header_read_timeout_secs": 0, "request_body_timeout_secs": 3601,
            "max_connections": 0, "max_header_bytes": 512, "shutdown_grace_secs": 3601});
        let found = problems(doc);
        let text: Vec<String> = found.iter().map(|p| format!("{:?} {}", p.kind, p.path)).collect();
        for key in [
            "header_read_timeout_secs",
            "request_body_timeout_secs",
            "max_connections",
            "max_header_bytes",
            "shutdown_grace_secs",
        ] {
            assert!(text.contains(&format!("InvalidValue listen.{key}")), "{key}: {text:#?}");
        }
        assert_eq!(found.len(), 5, "{text:#?}");
        let mut doc = base();
        doc["listen"] = json!({"header_read_timeout_secs": 1, "request_body_timeout_secs": 3600,
            "max_connections": 1, "max_header_bytes": 1024, "shutdown_grace_secs": 0});
        assert!(problems(doc).is_empty());
    }

    #[test]
    fn urls() {
        assert!(check_url("https://idp.example.com/x").is_ok());
        assert!(check_url("http://127.0.0.1:8080").is_ok());
        for bad in ["idp.example.com", "ftp://x", "https://", "https://a b", "https://x/#f", "https:/x"] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
