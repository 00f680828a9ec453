//! The canonical serialisation records are hashed and written in.
//!
//! Compact JSON with object keys sorted by their UTF-8 bytes at every level, strings escaped the
//! way `serde_json` escapes them, integers only (records carry no floats). A line of a trail must be
//! byte-for-byte the canonical form of what it parses to, so any edit — even one that keeps the
//! meaning, like added whitespace — is detected.

use serde_json::Value;

/// Appends the canonical form of `value` to `out`.
pub fn write(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                write(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(v, out);
            }
            out.push(b']');
        }
        Value::String(s) => write_string(s, out),
        // null, booleans and numbers have one serde_json form
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

/// An object's canonical members, each serialised once, in canonical (sorted) order — so the
/// object can be written with some members left out or others added without serialising again.
pub(crate) struct Members<'a> {
    buf: Vec<u8>,
    members: Vec<(&'a str, std::ops::Range<usize>)>,
}

impl<'a> Members<'a> {
    pub(crate) fn of(map: &'a serde_json::Map<String, Value>) -> Self {
        let mut entries: Vec<(&String, &Value)> = map.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut buf = Vec::with_capacity(1024);
        let mut members = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let start = buf.len();
            write_string(k, &mut buf);
            buf.push(b':');
            write(v, &mut buf);
            members.push((k.as_str(), start..buf.len()));
        }
        Self { buf, members }
    }

    /// Writes the object without members named in `skip`, with `extra` members (any order) added.
    pub(crate) fn write(&self, skip: &[&str], extra: &[(&str, &Value)], out: &mut Vec<u8>) {
        let mut extra: Vec<&(&str, &Value)> = extra.iter().collect();
        extra.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut extra = extra.into_iter().peekable();
        let mut first = true;
        let mut sep = |out: &mut Vec<u8>| {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
        };
        out.push(b'{');
        for (key, range) in &self.members {
            while let Some((k, v)) = extra.next_if(|(k, _)| k.as_bytes() < key.as_bytes()) {
                sep(out);
                write_string(k, out);
                out.push(b':');
                write(v, out);
            }
            if !skip.contains(key) {
                sep(out);
                out.extend_from_slice(&self.buf[range.clone()]);
            }
        }
        for (k, v) in extra {
            sep(out);
            write_string(k, out);
            out.push(b':');
            write(v, out);
        }
        out.push(b'}');
    }
}

/// The canonical form of `value`.
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write(value, &mut out);
    out
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keys_are_sorted_at_every_level_and_output_is_compact() {
        let v = json!({"b": 1, "a": {"z": [true, null, "x"], "y": -3}, "é": "\u{1}\"\\\n"});
        assert_eq!(
            String::from_utf8(to_vec(&v)).expect("utf8"),
            r#"{"a":{"y":-3,"z":[true,null,"x"]},"b":1,"é":"\u0001\"\\\n"}"#
        );
    }

    #[test]
    fn members_can_be_left_out_and_added() {
        let v = json!({"b": 1, "d": [1], "a": "x"});
        let map = v.as_object().expect("object");
        let m = Members::of(map);
        let mut out = Vec::new();
        m.write(&[], &[], &mut out);
        assert_eq!(out, to_vec(&v));
        out.clear();
        m.write(&["d"], &[("c", &json!(true)), ("0", &json!(null)), ("z", &json!("s"))], &mut out);
        assert_eq!(String::from_utf8(out).expect("utf8"), r#"{"0":null,"a":"x","b":1,"c":true,"z":"s"}"#);
    }

    #[test]
    fn canonical_form_round_trips_through_the_parser() {
        let v = json!({"s": "tab\tcr\rbs\u{8}ff\u{c}nul\u{0}del\u{7f}👍", "n": u64::MAX, "neg": i64::MIN});
        let bytes = to_vec(&v);
        let parsed: Value = serde_json::from_slice(&bytes).expect("parses");
        assert_eq!(parsed, v);
        assert_eq!(to_vec(&parsed), bytes, "stable");
        // serde_json escapes strings the same way
        assert_eq!(
            serde_json::to_string(&v["s"]).expect("ser").as_bytes(),
            &bytes[bytes.windows(4).position(|w| w == b"\"s\":").expect("s") + 4..bytes.len() - 1]
        );
    }

    mod properties {
        use proptest::prelude::*;
        use serde_json::{Map, Value};

        use super::super::{Members, to_vec};

        fn value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<String>().prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 48, 6, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    proptest::collection::vec((any::<String>(), inner), 0..6)
                        .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<String, Value>>())),
                ]
            })
        }

        proptest! {
            /// The canonical form parses back to the same value, is a fixed point, does not depend
            /// on key insertion order, and matches the member-wise writer the chain uses.
            #[test]
            fn canonical_serialisation_is_stable(v in value()) {
                let bytes = to_vec(&v);
                let parsed: Value = serde_json::from_slice(&bytes).expect("parses");
                prop_assert_eq!(&parsed, &v);
                prop_assert_eq!(to_vec(&parsed), bytes.clone());
                if let Value::Object(map) = &v {
                    let reversed: Map<String, Value> = map.iter().rev().map(|(k, v)| (k.clone(), v.clone())).collect();
                    prop_assert_eq!(to_vec(&Value::Object(reversed)), bytes.clone());
                    let mut members = Vec::new();
                    Members::of(map).write(&[], &[], &mut members);
                    prop_assert_eq!(members, bytes);
                }
            }
        }
    }
}
