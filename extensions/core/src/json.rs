//! JSON objects read without ambiguity: a member name repeated in any object is an error, not
//! "the last one wins". Two parsers that resolve duplicates differently would judge the same signed
//! JOSE header, claims set or proof differently; refusing duplicates removes that gap.

use serde_json::{Map, Value};

/// Why bytes are not an unambiguous JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectError {
    /// Not JSON, or JSON that is not an object.
    #[error("not a JSON object")]
    NotAnObject,
    /// An object (at any depth) has a member name twice.
    #[error("duplicate member name")]
    DuplicateMember,
}

/// Parses `bytes` as a JSON object in which no object, at any depth, repeats a member name.
pub fn unambiguous_object(bytes: &[u8]) -> Result<Map<String, Value>, ObjectError> {
    match serde_json::from_slice::<Unambiguous>(bytes) {
        Ok(Unambiguous(Value::Object(map))) => Ok(map),
        Err(e) if e.to_string().starts_with(DUPLICATE) => Err(ObjectError::DuplicateMember),
        _ => Err(ObjectError::NotAnObject),
    }
}

const DUPLICATE: &str = "duplicate member name";

/// A JSON value in which no object repeats a member name.
struct Unambiguous(Value);

impl<'de> serde::Deserialize<'de> for Unambiguous {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UnambiguousVisitor).map(Unambiguous)
    }
}

struct UnambiguousVisitor;

impl<'de> serde::de::Visitor<'de> for UnambiguousVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON without duplicate member names")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Unambiguous(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            let Unambiguous(value) = map.next_value()?;
            if members.insert(name, value).is_some() {
                return Err(serde::de::Error::custom(DUPLICATE));
            }
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn duplicates_are_refused_at_any_depth() {
        assert_eq!(unambiguous_object(br#"{"a":1,"a":2}"#), Err(ObjectError::DuplicateMember));
        assert_eq!(unambiguous_object(br#"{"a":{"b":1,"b":1}}"#), Err(ObjectError::DuplicateMember));
        assert_eq!(unambiguous_object(br#"{"a":[{"b":1,"b":2}]}"#), Err(ObjectError::DuplicateMember));
        assert_eq!(unambiguous_object(b"[1]"), Err(ObjectError::NotAnObject));
        assert_eq!(unambiguous_object(b"{\"a\":"), Err(ObjectError::NotAnObject));
        let ok =
            unambiguous_object(br#"{"a":[1,-2,3.5,true,null,"s"],"b":{"c":18446744073709551616}}"#).expect("valid");
        assert_eq!(ok["a"], json!([1, -2, 3.5, true, null, "s"]));
        assert!(ok["b"]["c"].is_f64());
    }
}
