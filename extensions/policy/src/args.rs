//! Tool arguments: JSON Schema (`inputSchema`) → argument types, and JSON values → Cedar values.
//!
//! Cedar has no `null`, no floating point and no open records, so the mapping is explicit:
//!
//! | JSON Schema | Cedar | JSON value → Cedar |
//! | :- | :- | :- |
//! | `string` (also an `enum` of strings) | `String` | string |
//! | `integer` | `Long` | integer |
//! | `number` | `decimal` | at most 4 fractional digits, else not representable |
//! | `boolean` | `Bool` | boolean |
//! | `array` with `items` | `Set<items>` | array (no `null` elements) |
//! | `object` with `properties` | record (`required` ones required) | object |
//! | anything else (`anyOf`, no `type`, …) | not typed: absent from the schema | converted by its value |
//!
//! A `null` member of an object is left out (as if absent). A value the conversion cannot represent
//! is an error: the call is then denied, never evaluated with a value that differs from what the
//! client sent.

use std::collections::BTreeMap;
use std::fmt;

use cedar_policy::RestrictedExpression;
use serde_json::{Map, Value, json};

/// Nesting deeper than this is refused (a hostile argument cannot exhaust the stack).
pub const MAX_DEPTH: usize = 32;
/// More JSON values than this in one call's arguments are refused (bounded work per call).
pub const MAX_VALUES: usize = 10_000;

/// The Cedar type of one argument, derived from its JSON Schema.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArgType {
    /// `String`.
    String,
    /// `Long`.
    Long,
    /// The `decimal` extension type.
    Decimal,
    /// `Bool`.
    Bool,
    /// `Set<T>`.
    Set(Box<ArgType>),
    /// A record of named attributes.
    Record(RecordType),
    /// No Cedar type fits the schema; the attribute is left out of the schema.
    Untyped,
}

/// The attributes of a record type: name → (type, required).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordType {
    /// The attributes, by name.
    pub attributes: BTreeMap<String, (ArgType, bool)>,
}

impl ArgType {
    /// Reads a JSON Schema. Unknown or ambiguous schemas become [`ArgType::Untyped`].
    pub fn from_json_schema(schema: &Value) -> Self {
        Self::from_schema_at(schema, schema, 0)
    }

    fn from_schema_at(schema: &Value, root: &Value, depth: usize) -> Self {
        if depth > MAX_DEPTH {
            return Self::Untyped;
        }
        let Some(obj) = schema.as_object() else { return Self::Untyped };
        // a local reference (`#/$defs/X`, `#/definitions/X`)
        if let Some(reference) = obj.get("$ref").and_then(Value::as_str) {
            return match reference.strip_prefix('#').and_then(|pointer| root.pointer(pointer)) {
                Some(target) => Self::from_schema_at(target, root, depth + 1),
                None => Self::Untyped,
            };
        }
        // `anyOf` / `oneOf` of one schema and `null`: that schema, nullable
        if let Some(alternatives) = obj.get("anyOf").or_else(|| obj.get("oneOf")).and_then(Value::as_array) {
            let non_null: Vec<&Value> = alternatives.iter().filter(|a| !is_null_schema(a)).collect();
            return match non_null.as_slice() {
                [one] => Self::from_schema_at(one, root, depth + 1),
                _ => Self::Untyped,
            };
        }
        let ty = match obj.get("type") {
            Some(Value::String(t)) => Some(t.as_str()),
            // ["string", "null"]: nullable, which Cedar expresses as an optional attribute
            Some(Value::Array(types)) => {
                let non_null: Vec<&str> = types.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect();
                match non_null.as_slice() {
                    [one] => Some(*one),
                    _ => return Self::Untyped,
                }
            }
            None if obj.get("enum").and_then(Value::as_array).is_some_and(|e| e.iter().all(Value::is_string)) => {
                Some("string")
            }
            None if obj.contains_key("properties") => Some("object"),
            _ => None,
        };
        match ty {
            Some("string") => Self::String,
            Some("integer") => Self::Long,
            Some("number") => Self::Decimal,
            Some("boolean") => Self::Bool,
            Some("array") => match obj.get("items").map(|i| Self::from_schema_at(i, root, depth + 1)) {
                Some(Self::Untyped) | None => Self::Untyped,
                Some(item) => Self::Set(Box::new(item)),
            },
            Some("object") => Self::Record(RecordType::from_object_schema_at(obj, root, depth)),
            _ => Self::Untyped,
        }
    }

    /// The type in Cedar's JSON schema format, `None` for [`ArgType::Untyped`].
    pub fn to_cedar_json(&self) -> Option<Value> {
        Some(match self {
            Self::String => json!({"type": "String"}),
            Self::Long => json!({"type": "Long"}),
            Self::Decimal => json!({"type": "Extension", "name": "decimal"}),
            Self::Bool => json!({"type": "Boolean"}),
            Self::Set(item) => json!({"type": "Set", "element": item.to_cedar_json()?}),
            Self::Record(record) => record.to_cedar_json(),
            Self::Untyped => return None,
        })
    }
}

impl RecordType {
    /// The argument record of a tool's `inputSchema` (an object schema).
    pub fn from_input_schema(schema: &Value) -> Self {
        schema.as_object().map(|o| Self::from_object_schema_at(o, schema, 0)).unwrap_or_default()
    }

    /// The argument record of a prompt: every argument is a string, `required` as declared.
    pub fn from_prompt_arguments(arguments: &[Value]) -> Self {
        let attributes = arguments
            .iter()
            .filter_map(|a| {
                let name = a.get("name")?.as_str()?;
                let required = a.get("required").and_then(Value::as_bool).unwrap_or(false);
                Some((name.to_owned(), (ArgType::String, required)))
            })
            .collect();
        Self { attributes }
    }

    fn from_object_schema_at(obj: &Map<String, Value>, root: &Value, depth: usize) -> Self {
        let required: Vec<&str> = obj
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let attributes = obj
            .get("properties")
            .and_then(Value::as_object)
            .map(|props| {
                props
                    .iter()
                    .map(|(name, schema)| {
                        let ty = ArgType::from_schema_at(schema, root, depth + 1);
                        // a nullable property may be absent from the record even when required
                        let nullable = schema
                            .get("type")
                            .and_then(Value::as_array)
                            .is_some_and(|t| t.iter().any(|t| t.as_str() == Some("null")))
                            || schema
                                .get("anyOf")
                                .or_else(|| schema.get("oneOf"))
                                .and_then(Value::as_array)
                                .is_some_and(|a| a.iter().any(is_null_schema));
                        (name.clone(), (ty, required.contains(&name.as_str()) && !nullable))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self { attributes }
    }

    /// The record type in Cedar's JSON schema format (untyped attributes left out).
    pub fn to_cedar_json(&self) -> Value {
        let mut attributes = Map::new();
        for (name, (ty, required)) in &self.attributes {
            if let Some(Value::Object(mut t)) = ty.to_cedar_json() {
                t.insert("required".into(), Value::Bool(*required));
                attributes.insert(name.clone(), Value::Object(t));
            }
        }
        json!({"type": "Record", "attributes": attributes})
    }

    /// The type of attribute `name`.
    pub fn get(&self, name: &str) -> Option<&ArgType> {
        self.attributes.get(name).map(|(t, _)| t)
    }
}

fn is_null_schema(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("null")
}

/// Why arguments could not become Cedar values.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConversionError {
    /// A number Cedar cannot hold exactly (more than 4 fractional digits, out of range, exponent).
    Number {
        /// Where, as a JSON pointer.
        path: String,
    },
    /// A `null` inside an array.
    NullInArray {
        /// Where, as a JSON pointer.
        path: String,
    },
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// More than [`MAX_VALUES`] values.
    TooLarge,
}

impl fmt::Display for ConversionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number { path } => {
                write!(f, "argument {path} is a number Cedar cannot represent exactly (at most 4 fractional digits)")
            }
            Self::NullInArray { path } => write!(f, "argument {path} holds a null inside an array"),
            Self::TooDeep => write!(f, "arguments are nested deeper than {MAX_DEPTH} levels"),
            Self::TooLarge => write!(f, "arguments hold more than {MAX_VALUES} values"),
        }
    }
}

impl std::error::Error for ConversionError {}

/// Converts a call's arguments object into a Cedar record, guided by the tool's argument types
/// when known (a `number` argument becomes a `decimal` even when the client sent `5`).
///
/// Never panics; bounded by [`MAX_DEPTH`] and [`MAX_VALUES`]. This is a fuzz target.
pub fn arguments_to_cedar(
    arguments: &Map<String, Value>,
    types: Option<&RecordType>,
) -> Result<RestrictedExpression, ConversionError> {
    let mut budget = MAX_VALUES;
    let mut path = String::new();
    record(arguments, types, 0, &mut budget, &mut path)
}

fn record(
    obj: &Map<String, Value>,
    types: Option<&RecordType>,
    depth: usize,
    budget: &mut usize,
    path: &mut String,
) -> Result<RestrictedExpression, ConversionError> {
    let mut attrs = Vec::with_capacity(obj.len());
    for (name, value) in obj {
        if value.is_null() {
            continue;
        }
        let len = path.len();
        path.push('/');
        path.push_str(name);
        let converted = convert(value, types.and_then(|t| t.get(name)), depth + 1, budget, path)?;
        path.truncate(len);
        attrs.push((name.clone(), converted));
    }
    // keys of a JSON object are unique, so this cannot fail
    RestrictedExpression::new_record(attrs).map_err(|_| ConversionError::TooLarge)
}

/// How many decimal expressions are kept (by their text) at most.
const MAX_CACHED_DECIMALS: usize = 1024;

/// `decimal("<text>")`. cedar-policy parses the extension function's name on every
/// `new_decimal` (a Cedar parser run, ≈ 50 000 instructions: more than most decisions), so
/// recent ones are kept by their text; an expression depends on its text only.
fn decimal(text: String) -> RestrictedExpression {
    static DECIMALS: std::sync::OnceLock<quick_cache::sync::Cache<String, RestrictedExpression>> =
        std::sync::OnceLock::new();
    let cache = DECIMALS.get_or_init(|| quick_cache::sync::Cache::new(MAX_CACHED_DECIMALS));
    if let Some(found) = cache.get(text.as_str()) {
        return found;
    }
    let expression = RestrictedExpression::new_decimal(&text);
    cache.insert(text, expression.clone());
    expression
}

fn convert(
    value: &Value,
    ty: Option<&ArgType>,
    depth: usize,
    budget: &mut usize,
    path: &mut String,
) -> Result<RestrictedExpression, ConversionError> {
    if depth > MAX_DEPTH {
        return Err(ConversionError::TooDeep);
    }
    *budget = budget.checked_sub(1).ok_or(ConversionError::TooLarge)?;
    Ok(match value {
        Value::Null => return Err(ConversionError::NullInArray { path: path.clone() }),
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::String(s) => RestrictedExpression::new_string(s.clone()),
        Value::Number(n) => match (ty, n.as_i64()) {
            (Some(ArgType::Decimal), _) | (_, None) => {
                let text = decimal_text(n).ok_or_else(|| ConversionError::Number { path: path.clone() })?;
                decimal(text)
            }
            (_, Some(i)) => RestrictedExpression::new_long(i),
        },
        Value::Array(items) => {
            let item_ty = match ty {
                Some(ArgType::Set(t)) => Some(t.as_ref()),
                _ => None,
            };
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push('/');
                path.push_str(&i.to_string());
                out.push(convert(item, item_ty, depth + 1, budget, path)?);
                path.truncate(len);
            }
            RestrictedExpression::new_set(out)
        }
        Value::Object(obj) => {
            let rec = match ty {
                Some(ArgType::Record(r)) => Some(r),
                _ => None,
            };
            record(obj, rec, depth, budget, path)?
        }
    })
}

/// Cedar's decimal range: an i64 of ten-thousandths.
const DECIMAL_MAX_INT: i64 = 922_337_203_685_477;

/// The `decimal("…")` text of a JSON number, when Cedar can hold it exactly.
pub(crate) fn decimal_text(n: &serde_json::Number) -> Option<String> {
    if let Some(i) = n.as_i64() {
        return (-DECIMAL_MAX_INT..=DECIMAL_MAX_INT).contains(&i).then(|| format!("{i}.0"));
    }
    if n.is_u64() {
        return None;
    }
    let text = n.to_string();
    if text.contains(['e', 'E']) {
        return None;
    }
    let (int, frac) = text.split_once('.').unwrap_or((&text, "0"));
    let int_value: i64 = int.parse().ok()?;
    if frac.is_empty() || frac.len() > 4 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // the largest magnitudes are exact only up to .5807 / .5808; stay strictly inside
    if !(-DECIMAL_MAX_INT + 1..DECIMAL_MAX_INT).contains(&int_value) {
        return None;
    }
    Some(format!("{int}.{frac}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_types() {
        let schema = json!({"type": "object", "required": ["db", "limit"], "properties": {
            "db": {"type": "string"}, "limit": {"type": "integer"}, "ratio": {"type": "number"},
            "dry": {"type": "boolean"}, "tags": {"type": "array", "items": {"type": "string"}},
            "filter": {"type": "object", "properties": {"region": {"enum": ["eu", "us"]}}},
            "maybe": {"type": ["string", "null"]}, "any": {"anyOf": [{"type": "string"}, {"type": "integer"}]}
        }});
        let rec = RecordType::from_input_schema(&schema);
        assert_eq!(rec.get("db"), Some(&ArgType::String));
        assert!(rec.attributes["db"].1);
        assert!(!rec.attributes["ratio"].1);
        assert_eq!(rec.get("limit"), Some(&ArgType::Long));
        assert_eq!(rec.get("ratio"), Some(&ArgType::Decimal));
        assert_eq!(rec.get("tags"), Some(&ArgType::Set(Box::new(ArgType::String))));
        assert_eq!(rec.get("maybe"), Some(&ArgType::String));
        assert_eq!(rec.get("any"), Some(&ArgType::Untyped));
        let cedar = rec.to_cedar_json();
        assert_eq!(cedar["attributes"]["filter"]["attributes"]["region"], json!({"type": "String", "required": false}));
        assert_eq!(cedar["attributes"]["ratio"]["name"], "decimal");
        assert!(cedar["attributes"].get("any").is_none());
    }

    #[test]
    fn references_and_nullable_alternatives() {
        // what schemars writes for `Option<Struct>`
        let schema = json!({"type": "object", "required": ["f"], "$defs": {"F": {"type": "object",
            "required": ["region"], "properties": {"region": {"type": "string"}}}},
            "properties": {"f": {"anyOf": [{"$ref": "#/$defs/F"}, {"type": "null"}]},
                "bad": {"$ref": "#/$defs/Missing"}, "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}});
        let rec = RecordType::from_input_schema(&schema);
        let Some(ArgType::Record(f)) = rec.get("f") else { panic!("f is a record: {rec:?}") };
        assert_eq!(f.attributes["region"], (ArgType::String, true));
        assert!(!rec.attributes["f"].1, "nullable: optional");
        assert_eq!(rec.get("bad"), Some(&ArgType::Untyped));
        assert_eq!(rec.get("either"), Some(&ArgType::Untyped));
    }

    #[test]
    fn decimals() {
        let d = |v: Value| match v {
            Value::Number(n) => decimal_text(&n),
            _ => None,
        };
        assert_eq!(d(json!(5)).as_deref(), Some("5.0"));
        assert_eq!(d(json!(-1.25)).as_deref(), Some("-1.25"));
        assert_eq!(d(json!(0.12345)), None);
        assert_eq!(d(json!(1e300)), None);
        assert_eq!(d(json!(u64::MAX)), None);
        assert_eq!(d(json!(i64::MAX)), None);
    }

    #[test]
    fn conversion_rejects_what_cedar_cannot_hold() {
        let args = |v: Value| v.as_object().cloned().unwrap_or_default();
        assert!(
            arguments_to_cedar(&args(json!({"a": 1, "b": "x", "c": [1, 2], "d": {"e": true}, "n": null})), None)
                .is_ok()
        );
        assert!(matches!(
            arguments_to_cedar(&args(json!({"a": [1, null]})), None),
            Err(ConversionError::NullInArray { path }) if path == "/a/1"
        ));
        assert!(matches!(
            arguments_to_cedar(&args(json!({"x": {"y": 0.123456}})), None),
            Err(ConversionError::Number { path }) if path == "/x/y"
        ));
        let mut deep = json!(1);
        for _ in 0..40 {
            deep = json!([deep]);
        }
        assert_eq!(arguments_to_cedar(&args(json!({"d": deep})), None), Err(ConversionError::TooDeep));
        let wide: Vec<u32> = (0..20_000).collect();
        assert_eq!(arguments_to_cedar(&args(json!({"w": wide})), None), Err(ConversionError::TooLarge));
    }
}
