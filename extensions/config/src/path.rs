//! Key paths into the document: `sso.issuers[0].jwks_uri`.

use std::fmt;

/// One step of a [`KeyPath`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Segment {
    /// A key of a table / mapping / object.
    Key(String),
    /// An index into a list.
    Index(usize),
}

/// Where a setting is in the document, e.g. `sso.issuers[0].jwks_uri`; the root is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyPath(Vec<Segment>);

impl KeyPath {
    /// The document root.
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// Parses `a.b[2].c` (keys holding `.` or `[` cannot be written this way).
    pub fn parse(text: &str) -> Self {
        let mut segments = Vec::new();
        for part in text.split('.').filter(|p| !p.is_empty()) {
            let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
            if !key.is_empty() {
                segments.push(Segment::Key(key.to_owned()));
            }
            while let Some((index, after)) = rest.split_once(']') {
                if let Ok(i) = index.parse() {
                    segments.push(Segment::Index(i));
                }
                rest = after.strip_prefix('[').unwrap_or(after);
            }
        }
        Self(segments)
    }

    /// This path with a key appended.
    #[must_use]
    pub fn key(&self, key: &str) -> Self {
        let mut next = self.0.clone();
        next.push(Segment::Key(key.to_owned()));
        Self(next)
    }

    /// This path with an index appended.
    #[must_use]
    pub fn index(&self, index: usize) -> Self {
        let mut next = self.0.clone();
        next.push(Segment::Index(index));
        Self(next)
    }

    /// The path without its last segment (the root stays the root).
    #[must_use]
    pub fn parent(&self) -> Self {
        let mut next = self.0.clone();
        next.pop();
        Self(next)
    }

    /// The segments.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The last key, if the path ends in one.
    pub fn last_key(&self) -> Option<&str> {
        match self.0.last() {
            Some(Segment::Key(k)) => Some(k),
            _ => None,
        }
    }

    /// Whether `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &KeyPath) -> bool {
        self.0.starts_with(&other.0)
    }

    /// The value at this path in a JSON document.
    pub fn find<'a>(&self, mut value: &'a serde_json::Value) -> Option<&'a serde_json::Value> {
        for segment in &self.0 {
            value = match segment {
                Segment::Key(k) => value.get(k)?,
                Segment::Index(i) => value.get(i)?,
            };
        }
        Some(value)
    }

    /// The value at this path, mutably.
    pub fn find_mut<'a>(&self, mut value: &'a mut serde_json::Value) -> Option<&'a mut serde_json::Value> {
        for segment in &self.0 {
            value = match segment {
                Segment::Key(k) => value.get_mut(k)?,
                Segment::Index(i) => value.get_mut(i)?,
            };
        }
        Some(value)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(document)");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(k) if i == 0 => f.write_str(k)?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        for text in ["sso.issuers[0].jwks_uri", "audit", "a[1][2].b", "listen.allowed_hosts[3]"] {
            assert_eq!(KeyPath::parse(text).to_string(), text);
        }
        assert_eq!(KeyPath::root().to_string(), "(document)");
        let p = KeyPath::parse("sso.issuers[0]");
        assert_eq!(p.key("issuer").to_string(), "sso.issuers[0].issuer");
        assert_eq!(p.parent().to_string(), "sso.issuers");
        assert!(p.key("x").starts_with(&p));
        let doc = serde_json::json!({"sso": {"issuers": [{"issuer": "https://i"}]}});
        assert_eq!(p.key("issuer").find(&doc), Some(&serde_json::json!("https://i")));
        assert_eq!(p.key("nope").find(&doc), None);
    }
}
