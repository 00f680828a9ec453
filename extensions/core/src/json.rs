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
pub(crate) struct Unambiguous(pub(crate) Value);

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

#[cfg(any(feature = "dpop", test))]
/// Whether `error` is the refusal of a repeated member name (by [`Unambiguous`] or [`Checked`]).
pub(crate) fn is_duplicate(error: &serde_json::Error) -> bool {
    error.to_string().starts_with(DUPLICATE)
}

/// A member name, borrowed from the input when it has no escapes.
pub(crate) struct Name<'de>(pub(crate) std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Name<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Name<'de>, E> {
                Ok(Name(std::borrow::Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Name<'de>, E> {
                Ok(Name(std::borrow::Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// The member names of one object seen so far: a short list compared in turn, a hash set past
/// [`Seen::FEW`] names (so an object of many members costs linear time, not quadratic).
pub(crate) enum Seen<'de> {
    Few(Vec<std::borrow::Cow<'de, str>>),
    Many(std::collections::HashSet<std::borrow::Cow<'de, str>>),
}

impl<'de> Seen<'de> {
    const FEW: usize = 16;

    pub(crate) fn new() -> Self {
        Self::Few(Vec::new())
    }

    /// Records `name`; `false` when it was seen before.
    pub(crate) fn insert(&mut self, name: std::borrow::Cow<'de, str>) -> bool {
        match self {
            Self::Few(list) => {
                if list.contains(&name) {
                    return false;
                }
                if list.len() < Self::FEW {
                    list.push(name);
                } else {
                    let mut set: std::collections::HashSet<_> = list.drain(..).collect();
                    set.insert(name);
                    *self = Self::Many(set);
                }
                true
            }
            Self::Many(set) => set.insert(name),
        }
    }

    /// The error for a repeated name.
    pub(crate) fn duplicate<E: serde::de::Error>() -> E {
        E::custom(DUPLICATE)
    }
}

/// Any JSON value, checked like [`unambiguous_object`] (no object at any depth repeats a member
/// name, every string, number and member name read as a `Value` would read it) but not kept: for
/// the members a reader does not look at. `serde::de::IgnoredAny` is laxer: it skips numbers and
/// escapes without checking their range or surrogates, and lets repeated names through.
#[derive(Debug, Clone, Copy)]
pub struct Checked;

impl<'de> serde::Deserialize<'de> for Checked {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> serde::de::Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON without duplicate member names")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while let Some(Checked) = seq.next_element()? {}
        Ok(Checked)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        let mut seen = Seen::new();
        while let Some(Name(name)) = map.next_key()? {
            if !seen.insert(name) {
                return Err(Seen::duplicate());
            }
            let Checked = map.next_value()?;
        }
        Ok(Checked)
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

    #[test]
    fn checked_refuses_what_unambiguous_refuses() {
        let checked = |t: &str| match serde_json::from_str::<Checked>(t) {
            Ok(Checked) => Ok(()),
            Err(e) if is_duplicate(&e) => Err(ObjectError::DuplicateMember),
            Err(_) => Err(ObjectError::NotAnObject),
        };
        for text in [
            r#"{"a":1,"a":2}"#,
            r#"{"a":{"b":1,"b":1}}"#,
            r#"{"a":[{"b":1,"b":2}]}"#,
            r#"{"a\u0062":1,"ab":2}"#,
            r#"{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"r":18,"a":19}"#,
            r#"{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"r":18,"r":19}"#,
        ] {
            assert_eq!(checked(text), Err(ObjectError::DuplicateMember), "{text}");
            assert_eq!(unambiguous_object(text.as_bytes()).map(|_| ()), Err(ObjectError::DuplicateMember), "{text}");
        }
        for text in [
            r#"{"a":[1,-2,3.5,true,null,"s"],"b":{"c":18446744073709551616}}"#,
            r#"{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"r":18}"#,
        ] {
            assert_eq!(checked(text), Ok(()), "{text}");
        }
        assert_eq!(checked(r#"{"a":"#), Err(ObjectError::NotAnObject));
        // read as a `Value` would be: a lone surrogate, a number out of range
        for text in [r#"{"a":"\ud800"}"#, r#"{"a":1e400}"#, r#"{"a":[-1e999]}"#] {
            assert!(serde_json::from_str::<Value>(text).is_err(), "{text}");
            assert_eq!(checked(text), Err(ObjectError::NotAnObject), "{text}");
        }
    }
}
