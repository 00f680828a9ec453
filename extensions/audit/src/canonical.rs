//! The canonical serialisation records are hashed and written in.
//!
//! Compact JSON with object keys sorted by their UTF-8 bytes at every level, strings escaped the
//! way `serde_json` escapes them, integers only (records carry no floats). A line of a trail must be
//! byte-for-byte the canonical form of what it parses to, so any edit — even one that keeps the
//! meaning, like added whitespace — is detected.

use std::borrow::Cow;

use serde_json::Value;

pub use mcp_enterprise_core::canonical::{to_vec, write};

/// Writes `n` in decimal, byte for byte as `core::canonical::write_int` does (its `Display`),
/// without the formatting machinery.
pub(crate) fn write_int(n: i128, out: &mut Vec<u8>) {
    let mut digits = [0u8; 40];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        at -= 1;
        digits[at] = b'-';
    }
    out.extend_from_slice(&digits[at..]);
}

/// Writes `s` as a JSON string, byte for byte as `core::canonical::write_string` does; a string
/// with nothing to escape (nearly every key and value of a record) is found so eight bytes at a
/// time and copied whole.
pub(crate) fn write_string(s: &str, out: &mut Vec<u8>) {
    if needs_escape(s.as_bytes()) {
        mcp_enterprise_core::canonical::write_string(s, out);
        return;
    }
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// Writes `"key":` for one of the record's fixed keys: a literal of the code, with nothing to
/// escape (checked in debug builds), so not looked at (keys a client chose go through
/// [`write_string`]).
fn write_fixed_key(key: &str, out: &mut Vec<u8>) {
    debug_assert!(!needs_escape(key.as_bytes()), "a fixed key needs escaping: {key:?}");
    out.reserve(key.len() + 3);
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

/// Whether `bytes` hold a quote, a backslash or a control character (what JSON escapes). Never
/// wrong when it says no; a yes sends the string to the byte-by-byte writer. Eight bytes at a
/// time; the tail is the last eight bytes again (overlapping), a short string two overlapping
/// four-byte words.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    // a byte of `x` is zero (or, with `n`, below `n`): the word-at-a-time tests, exact for "any"
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let escapes =
        |x: u64| below(x, 0x20) | below(x ^ (ONES * u64::from(b'"')), 1) | below(x ^ (ONES * u64::from(b'\\')), 1) != 0;
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let n = bytes.len();
    if n >= 8 {
        let whole = n / 8 * 8;
        (0..whole).step_by(8).any(|at| escapes(word(at))) || (whole < n && escapes(word(n - 8)))
    } else if n >= 4 {
        let half = |at: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&bytes[at..at + 4]);
            u64::from(u32::from_le_bytes(w))
        };
        escapes(half(0) | (half(n - 4) << 32))
    } else {
        bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\')
    }
}

/// An object's canonical members, each serialised once — so the object can be written with some
/// members left out or others added without serialising again. Built from a parsed object
/// ([`of`](Self::of)), or member by member ([`new`](Members::new) and the typed setters: a call
/// record is written straight into its canonical bytes, never built as a `Value`).
pub(crate) struct Members<'a> {
    buf: Vec<u8>,
    /// Each member's key, bytes in `buf`, and the key's first eight bytes as a number (the
    /// canonical order compares those first: most keys differ in them).
    members: Vec<(Cow<'a, str>, std::ops::Range<usize>, u64)>,
    sorted: bool,
}

/// The first eight bytes of `key`, zero-padded, big-endian: ordered as the keys are, or equal.
fn prefix(key: &str) -> u64 {
    let mut word = [0u8; 8];
    for (w, b) in word.iter_mut().zip(key.bytes()) {
        *w = b;
    }
    u64::from_be_bytes(word)
}

impl<'a> Members<'a> {
    pub(crate) fn of(map: &'a serde_json::Map<String, Value>) -> Self {
        let mut out = Self { buf: Vec::with_capacity(1024), members: Vec::with_capacity(map.len()), sorted: false };
        for (k, v) in map {
            out.member(k.as_str(), |buf| write(v, buf));
        }
        out.sort();
        out
    }

    /// [`of`](Self::of), owning its keys.
    pub(crate) fn owned(map: &serde_json::Map<String, Value>) -> Members<'static> {
        let mut out = Members { buf: Vec::with_capacity(1024), members: Vec::with_capacity(map.len()), sorted: false };
        for (k, v) in map {
            out.member(k.clone(), |buf| write(v, buf));
        }
        out.sort();
        out
    }

    /// An empty object to build member by member.
    pub(crate) fn new() -> Self {
        Self { buf: Vec::with_capacity(1024), members: Vec::with_capacity(24), sorted: true }
    }

    /// Empties the object, keeping its buffers for the next one.
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.members.clear();
        self.sorted = true;
    }

    /// Bytes held by the object's buffers.
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
            + self.members.capacity() * std::mem::size_of::<(Cow<'a, str>, std::ops::Range<usize>, u64)>()
    }

    /// Adds member `key` (not already present) whose value `value` writes.
    pub(crate) fn member(&mut self, key: impl Into<Cow<'a, str>>, value: impl FnOnce(&mut Vec<u8>)) {
        let key = key.into();
        let start = self.buf.len();
        write_string(&key, &mut self.buf);
        self.buf.push(b':');
        self.push(key, start, value);
    }

    /// [`member`](Self::member) of one of the record's fixed keys (a literal: written as is).
    fn fixed(&mut self, key: &'static str, value: impl FnOnce(&mut Vec<u8>)) {
        let start = self.buf.len();
        write_fixed_key(key, &mut self.buf);
        self.push(Cow::Borrowed(key), start, value);
    }

    fn push(&mut self, key: Cow<'a, str>, start: usize, value: impl FnOnce(&mut Vec<u8>)) {
        value(&mut self.buf);
        self.sorted &= self.members.last().is_none_or(|(last, _, _)| last.as_bytes() < key.as_bytes());
        let order = prefix(&key);
        self.members.push((key, start..self.buf.len(), order));
    }

    /// A string member.
    pub(crate) fn str(&mut self, key: &'static str, value: &str) {
        self.fixed(key, |buf| write_string(value, buf));
    }

    /// A string member, `null` when absent.
    #[cfg(test)]
    pub(crate) fn opt_str(&mut self, key: &'static str, value: Option<&str>) {
        self.fixed(key, |buf| match value {
            Some(v) => write_string(v, buf),
            None => buf.extend_from_slice(b"null"),
        });
    }

    /// An integer member.
    pub(crate) fn int(&mut self, key: &'static str, value: impl Into<i128>) {
        self.fixed(key, |buf| write_int(value.into(), buf));
    }

    /// An integer member, `null` when absent.
    pub(crate) fn opt_int(&mut self, key: &'static str, value: Option<impl Into<i128>>) {
        self.fixed(key, |buf| match value {
            Some(v) => write_int(v.into(), buf),
            None => buf.extend_from_slice(b"null"),
        });
    }

    /// A literal member: `true`, `false` or `null`.
    pub(crate) fn literal(&mut self, key: &'static str, value: &'static str) {
        self.fixed(key, |buf| buf.extend_from_slice(value.as_bytes()));
    }

    /// A member holding any JSON value.
    pub(crate) fn value(&mut self, key: &'static str, value: &Value) {
        self.fixed(key, |buf| write(value, buf));
    }

    /// A member holding a nested object built the same way.
    #[cfg(test)]
    pub(crate) fn object(&mut self, key: &'static str, mut object: Members<'_>) {
        object.sort();
        self.fixed(key, |buf| object.write(&[], &[], buf));
    }

    /// Puts the members in canonical order (once); a repeated key is a bug of the builder.
    pub(crate) fn sort(&mut self) {
        if !self.sorted {
            self.members.sort_unstable_by(|a, b| a.2.cmp(&b.2).then_with(|| a.0.as_bytes().cmp(b.0.as_bytes())));
            self.sorted = true;
        }
        debug_assert!(self.members.windows(2).all(|w| w[0].0 != w[1].0), "a member written twice");
    }

    /// The serialised value of member `key`.
    pub(crate) fn raw(&self, key: &str) -> Option<&[u8]> {
        // from the end (the members a writer looks up, `type` and the marks, are written late or
        // sort late), by the keys' first eight bytes before the keys themselves
        let order = prefix(key);
        let (k, range, _) = self.members.iter().rev().find(|(k, _, o)| *o == order && k == key)?;
        // past `"key":` (a key without quotes, backslashes or control characters is written as is)
        let plain = k.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
        let written = if plain {
            k.len() + 2
        } else {
            let mut quoted = Vec::with_capacity(k.len() + 8);
            write_string(k, &mut quoted);
            quoted.len()
        };
        self.buf.get(range.start + written + 1..range.end)
    }

    /// A member holding a nested object written straight into this object's bytes by `build`
    /// (no buffer of its own; see [`Object`]).
    pub(crate) fn object_with<'k>(&mut self, key: &'static str, build: impl FnOnce(&mut Object<'_, 'k>)) {
        self.fixed(key, |buf| {
            let mut object = Object::open(buf);
            build(&mut object);
            object.close();
        });
    }

    /// Writes the object without `hash` and `signature` to `out`, hashes those bytes, and inserts
    /// `hash` (and `signature`, when `sign` makes one from the hash) where they belong: the sealed
    /// line, written once. Returns the hash (hex) and the signature.
    pub(crate) fn write_sealed(
        &mut self,
        out: &mut Vec<u8>,
        sign: impl FnOnce(&Self, &str) -> Option<String>,
    ) -> (String, Option<String>) {
        self.sort();
        let start = out.len();
        let [hash_at, signature_at] = self.write_marking(&crate::chain::UNHASHED, out);
        let hash = crate::time::hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &out[start..]).as_ref());
        let signature = sign(self, &hash);
        // the later position first, so the earlier one stays where it was
        if let Some(sig) = &signature {
            insert_member(out, start, signature_at, "signature", sig);
        }
        insert_member(out, start, hash_at, "hash", &hash);
        (hash, signature)
    }

    /// Writes the object without the members named in `marks`, returning for each mark the
    /// offset in `out` where a member of that name belongs.
    fn write_marking<const N: usize>(&self, marks: &[&str; N], out: &mut Vec<u8>) -> [usize; N] {
        debug_assert!(self.sorted, "members are written in canonical order");
        let mut at = [usize::MAX; N];
        out.push(b'{');
        let mut first = true;
        let order = marks.map(prefix);
        for (key, range, key_order) in &self.members {
            let mut marked = false;
            for ((mark, order), at) in marks.iter().zip(&order).zip(at.iter_mut()) {
                // the keys' first eight bytes decide, but for keys that share them
                let cmp = order.cmp(key_order).then_with(|| mark.as_bytes().cmp(key.as_bytes()));
                if *at == usize::MAX && cmp.is_lt() {
                    *at = out.len();
                }
                marked |= cmp.is_eq();
            }
            if marked {
                continue;
            }
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            out.extend_from_slice(&self.buf[range.clone()]);
        }
        for at in &mut at {
            if *at == usize::MAX {
                *at = out.len();
            }
        }
        out.push(b'}');
        at
    }

    /// Writes the object without members named in `skip`, with `extra` members (any order) added.
    pub(crate) fn write(&self, skip: &[&str], extra: &[(&str, &Value)], out: &mut Vec<u8>) {
        debug_assert!(self.sorted, "members are written in canonical order");
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
        for (key, range, _) in &self.members {
            while let Some((k, v)) = extra.next_if(|(k, _)| k.as_bytes() < key.as_bytes()) {
                sep(out);
                write_string(k, out);
                out.push(b':');
                write(v, out);
            }
            if !skip.contains(&key.as_ref()) {
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

    /// [`write`](Self::write) after putting the members in canonical order.
    #[cfg(test)]
    pub(crate) fn write_sorted(&mut self, skip: &[&str], extra: &[(&str, &Value)], out: &mut Vec<u8>) {
        self.sort();
        self.write(skip, extra, out);
    }
}

/// Inserts member `key` with string `value` at `at` of the object written from `start`: the
/// bytes after `at` move once, the member is written into the gap.
fn insert_member(out: &mut Vec<u8>, start: usize, at: usize, key: &str, value: &str) {
    let after_open = at == start + 1;
    let lead = !after_open;
    let trail = after_open && out.get(at) != Some(&b'}');
    let mut member = [0u8; 160];
    let plain = |s: &str| !needs_escape(s.as_bytes());
    let len = usize::from(lead) + key.len() + value.len() + 5 + usize::from(trail);
    if !(plain(key) && plain(value) && len <= member.len()) {
        // not a hash or a signature: the general way
        let mut member = Vec::with_capacity(len + 8);
        if lead {
            member.push(b',');
        }
        write_string(key, &mut member);
        member.push(b':');
        write_string(value, &mut member);
        if trail {
            member.push(b',');
        }
        out.splice(at..at, member);
        return;
    }
    let mut n = 0;
    for part in [
        &b","[..usize::from(lead)],
        b"\"",
        key.as_bytes(),
        b"\":\"",
        value.as_bytes(),
        b"\"",
        &b","[..usize::from(trail)],
    ] {
        member[n..n + part.len()].copy_from_slice(part);
        n += part.len();
    }
    let end = out.len();
    out.resize(end + n, 0);
    out.copy_within(at..end, at + n);
    out[at..at + n].copy_from_slice(&member[..n]);
}

/// Members kept inline by an [`Object`] before it needs a vector.
const INLINE: usize = 8;

/// A nested object written straight into its parent's bytes. Members are appended as they come;
/// when the object closes they are put in canonical order if they did not come in it (the
/// record's fixed members are added in order, so that is for client-chosen names only).
pub(crate) struct Object<'b, 'k> {
    buf: &'b mut Vec<u8>,
    start: usize,
    inline: [(&'k str, usize, usize); INLINE],
    len: usize,
    more: Vec<(&'k str, usize, usize)>,
    sorted: bool,
}

impl<'b, 'k> Object<'b, 'k> {
    /// Starts an object at the end of `buf`.
    pub(crate) fn open(buf: &'b mut Vec<u8>) -> Self {
        buf.push(b'{');
        let start = buf.len();
        Self { buf, start, inline: [("", 0, 0); INLINE], len: 0, more: Vec::new(), sorted: true }
    }

    fn last_key(&self) -> Option<&'k str> {
        match self.more.last() {
            Some((k, _, _)) => Some(k),
            None => self.len.checked_sub(1).map(|i| self.inline[i].0),
        }
    }

    /// Adds member `key` (not already present) whose value `value` writes.
    pub(crate) fn member(&mut self, key: &'k str, value: impl FnOnce(&mut Vec<u8>)) {
        self.push(key, false, value);
    }

    /// [`member`](Self::member) of one of the record's fixed keys (a literal: written as is).
    fn fixed(&mut self, key: &'static str, value: impl FnOnce(&mut Vec<u8>)) {
        self.push(key, true, value);
    }

    fn push(&mut self, key: &'k str, fixed: bool, value: impl FnOnce(&mut Vec<u8>)) {
        let last = self.last_key();
        if last.is_some() {
            self.buf.push(b',');
        }
        let at = self.buf.len();
        if fixed {
            write_fixed_key(key, self.buf);
        } else {
            write_string(key, self.buf);
            self.buf.push(b':');
        }
        value(self.buf);
        self.sorted &= last.is_none_or(|l| l.as_bytes() < key.as_bytes());
        let span = (key, at, self.buf.len());
        if self.len < INLINE {
            self.inline[self.len] = span;
            self.len += 1;
        } else {
            self.more.push(span);
        }
    }

    /// A string member.
    pub(crate) fn str(&mut self, key: &'static str, value: &str) {
        self.fixed(key, |buf| write_string(value, buf));
    }

    /// A string member, `null` when absent.
    pub(crate) fn opt_str(&mut self, key: &'static str, value: Option<&str>) {
        self.fixed(key, |buf| match value {
            Some(v) => write_string(v, buf),
            None => buf.extend_from_slice(b"null"),
        });
    }

    /// An integer member.
    pub(crate) fn int(&mut self, key: &'static str, value: impl Into<i128>) {
        self.fixed(key, |buf| write_int(value.into(), buf));
    }

    /// A literal member: `true`, `false` or `null`.
    pub(crate) fn literal(&mut self, key: &'static str, value: &'static str) {
        self.fixed(key, |buf| buf.extend_from_slice(value.as_bytes()));
    }

    /// A member holding any JSON value.
    pub(crate) fn value(&mut self, key: &'k str, value: &Value) {
        self.member(key, |buf| write(value, buf));
    }

    /// A member holding a nested object built the same way.
    pub(crate) fn object<'j>(&mut self, key: &'static str, build: impl FnOnce(&mut Object<'_, 'j>)) {
        self.fixed(key, |buf| {
            let mut object = Object::open(buf);
            build(&mut object);
            object.close();
        });
    }

    /// Ends the object (in canonical order).
    pub(crate) fn close(self) {
        let Self { buf, start, inline, len, more, sorted } = self;
        if !sorted {
            let mut spans: Vec<(&str, usize, usize)> = inline[..len].iter().chain(&more).copied().collect();
            spans.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            debug_assert!(spans.windows(2).all(|w| w[0].0 != w[1].0), "a member written twice");
            let region = buf[start..].to_vec();
            buf.truncate(start);
            for (i, (_, from, to)) in spans.into_iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                buf.extend_from_slice(&region[from - start..to - start]);
            }
        }
        buf.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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
    fn members_built_one_by_one_are_the_canonical_form() {
        let mut inner = Members::new();
        inner.str("z", "last");
        inner.int("a", -5);
        let mut m = Members::new();
        m.str("type", "mcp");
        m.int("v", 1);
        m.opt_str("none", None);
        m.opt_int("code", Some(-32602));
        m.literal("t", "true");
        m.object("o", inner);
        m.value("arr", &json!([{"b": 1, "a": 2}]));
        m.str("esc", "q\"\n\u{1}é");
        let mut out = Vec::new();
        m.write_sorted(&[], &[], &mut out);
        let expected = json!({"type": "mcp", "v": 1, "none": null, "code": -32602, "t": true,
            "o": {"z": "last", "a": -5}, "arr": [{"b": 1, "a": 2}], "esc": "q\"\n\u{1}é"});
        assert_eq!(String::from_utf8(out).expect("utf8"), String::from_utf8(to_vec(&expected)).expect("utf8"));
        assert_eq!(m.raw("type"), Some(br#""mcp""#.as_slice()));
        assert_eq!(m.raw("code"), Some(b"-32602".as_slice()));
        assert_eq!(m.raw("missing"), None);
    }

    /// `raw` looks members up from the end and by the keys' first eight bytes first: keys that
    /// share those bytes (or are a prefix of another) are still told apart, before and after the
    /// sort, and a key that needed escaping is found past its escaped form.
    #[test]
    fn raw_tells_apart_keys_sharing_their_first_eight_bytes() {
        let mut m = Members::new();
        m.int("response_bytes", 7);
        m.literal("response_aborted", "true");
        m.str("response", "r");
        m.str("type", "mcp");
        m.member("ty\"pe", |buf| buf.extend_from_slice(b"1"));
        m.int("typ", 2);
        for sorted in [false, true] {
            assert_eq!(m.raw("response_bytes"), Some(b"7".as_slice()), "sorted: {sorted}");
            assert_eq!(m.raw("response_aborted"), Some(b"true".as_slice()));
            assert_eq!(m.raw("response"), Some(br#""r""#.as_slice()));
            assert_eq!(m.raw("type"), Some(br#""mcp""#.as_slice()));
            assert_eq!(m.raw("ty\"pe"), Some(b"1".as_slice()));
            assert_eq!(m.raw("typ"), Some(b"2".as_slice()));
            assert_eq!(m.raw("response_"), None);
            assert_eq!(m.raw("types"), None);
            m.sort();
        }
    }

    #[test]
    fn nested_objects_in_any_order_are_canonical() {
        let mut m = Members::new();
        m.object_with("o", |o| {
            o.str("z", "last");
            o.int("a", -5);
            o.object("n", |n| {
                n.literal("y", "true");
                n.str("b", "q\"");
            });
            for k in ["k9", "k1", "k5", "k3", "k7", "k2", "k8", "k4", "k6"] {
                o.value(k, &json!([k]));
            }
        });
        m.object_with("e", |_| {});
        m.object_with("s", |o| {
            o.opt_str("a", None);
            o.str("b", "x");
        });
        let mut out = Vec::new();
        m.write_sorted(&[], &[], &mut out);
        let expected = json!({"o": {"z": "last", "a": -5, "n": {"y": true, "b": "q\""}, "k9": ["k9"], "k1": ["k1"],
            "k5": ["k5"], "k3": ["k3"], "k7": ["k7"], "k2": ["k2"], "k8": ["k8"], "k4": ["k4"], "k6": ["k6"]},
            "e": {}, "s": {"a": null, "b": "x"}});
        assert_eq!(String::from_utf8(out).expect("utf8"), String::from_utf8(to_vec(&expected)).expect("utf8"));
    }

    #[test]
    fn integers_are_written_as_core_writes_them() {
        let mut cases =
            vec![0i128, 1, -1, 9, 10, -10, 99, 100, i128::from(i64::MIN), i128::from(u64::MAX), i128::MIN, i128::MAX];
        let mut x = 1i128;
        for _ in 0..38 {
            cases.extend([x - 1, x, x + 1, -x, 7 * x / 3]);
            x *= 10;
        }
        for n in cases {
            let (mut fast, mut core) = (Vec::new(), Vec::new());
            write_int(n, &mut fast);
            mcp_enterprise_core::canonical::write_int(n, &mut core);
            assert_eq!(fast, core, "{n}");
        }
    }

    #[test]
    fn strings_are_written_as_core_writes_them() {
        let cases = [
            "",
            "a",
            "plain ascii text of some length",
            "quote\"d",
            "back\\slash",
            "tab\there",
            "\u{0}",
            "\u{1f}x",
            "\u{7f}del",
            "é ü 漢字 🙂",
            "exactly8",
            "sixteen bytes!!!",
            "end with quote at 9\"",
            "\u{1}ctrl at the start",
        ];
        for s in cases {
            let (mut fast, mut core) = (Vec::new(), Vec::new());
            write_string(s, &mut fast);
            mcp_enterprise_core::canonical::write_string(s, &mut core);
            assert_eq!(fast, core, "{s:?}");
        }
        // every byte value at every position of strings of every length up to three words
        for len in 1..=24 {
            for b in 0u8..=0x7f {
                for at in 0..len {
                    let mut text = vec![b'x'; len];
                    text[at] = b;
                    let s = std::str::from_utf8(&text).expect("ascii");
                    let (mut fast, mut core) = (Vec::new(), Vec::new());
                    write_string(s, &mut fast);
                    mcp_enterprise_core::canonical::write_string(s, &mut core);
                    assert_eq!(fast, core, "byte {b:#x} at {at} of {len}");
                    assert_eq!(
                        needs_escape(&text),
                        b < 0x20 || b == b'"' || b == b'\\',
                        "byte {b:#x} at {at} of {len}"
                    );
                }
            }
        }
        for b in 0u8..=0x7f {
            for at in 0..17 {
                let mut text = vec![b'x'; 17];
                text[at] = b;
                let s = std::str::from_utf8(&text).expect("ascii");
                let (mut fast, mut core) = (Vec::new(), Vec::new());
                write_string(s, &mut fast);
                mcp_enterprise_core::canonical::write_string(s, &mut core);
                assert_eq!(fast, core, "byte {b:#x} at {at}");
                assert_eq!(needs_escape(&text), b < 0x20 || b == b'"' || b == b'\\', "byte {b:#x} at {at}");
            }
        }
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
                    // the sealed line written once equals the object written with the hash and
                    // signature members added
                    for signed in [false, true] {
                        let mut sealed = b"prefix".to_vec();
                        let mut of = Members::of(map);
                        let (hash, signature) =
                            of.write_sealed(&mut sealed, |_, h| signed.then(|| format!("sig-{h}")));
                        let mut hashed = Vec::new();
                        of.write(&["hash", "signature"], &[], &mut hashed);
                        prop_assert_eq!(&hash, &crate::time::hex(
                            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &hashed).as_ref()));
                        let (h, s) = (Value::from(hash.clone()), signature.clone().map(Value::from));
                        let mut extra = vec![("hash", &h)];
                        if let Some(s) = &s {
                            extra.push(("signature", s));
                        }
                        let mut expected = b"prefix".to_vec();
                        of.write(&["hash", "signature"], &extra, &mut expected);
                        prop_assert_eq!(sealed, expected);
                    }
                }
            }
        }
    }
}
