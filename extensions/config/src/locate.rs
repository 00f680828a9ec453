//! Finding a key path in the text of a file, for `file:line:column` in errors.
//!
//! figment says which file a value came from, not where in it. Each file is indexed once: TOML with
//! `toml_edit`'s spans, JSON with a small scanner, YAML with an indentation scanner for block style
//! (flow collections on one line are scanned too). Anything the YAML scanner cannot follow simply
//! falls back to the nearest enclosing key, so a position is never wrong, at worst less precise.

use std::collections::HashMap;
use std::ops::Range;

use crate::path::KeyPath;
use crate::source::Format;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub(crate) line: usize,
    pub(crate) column: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    key: Option<Pos>,
    value: Option<Pos>,
}

/// Positions of the keys and values of one file.
#[derive(Debug, Default)]
pub(crate) struct Index {
    entries: HashMap<KeyPath, Entry>,
}

impl Index {
    pub(crate) fn build(format: Format, text: &str) -> Self {
        let mut index = Index::default();
        match format {
            Format::Toml => toml_index(text, &mut index),
            Format::Json => {
                let lines = LineMap::new(text);
                let mut scanner = FlowScanner { text: text.as_bytes(), at: 0, lines: &lines, json: true };
                scanner.value(&KeyPath::root(), &mut index);
            }
            Format::Yaml => yaml_index(text, &mut index),
        }
        index
    }

    fn key(&mut self, path: &KeyPath, pos: Pos) {
        self.entries.entry(path.clone()).or_default().key.get_or_insert(pos);
    }

    fn value(&mut self, path: &KeyPath, pos: Pos) {
        self.entries.entry(path.clone()).or_default().value.get_or_insert(pos);
    }

    /// Where the value at `path` is (its key when the value has no position), or, when the path is
    /// not in the file, the nearest enclosing key that is.
    pub(crate) fn value_pos(&self, path: &KeyPath) -> Option<Pos> {
        self.nearest(path, |e| e.value.or(e.key))
    }

    /// Where the key of `path` is (its value when there is no key, e.g. a list item).
    pub(crate) fn key_pos(&self, path: &KeyPath) -> Option<Pos> {
        self.nearest(path, |e| e.key.or(e.value))
    }

    /// Whether the file names `path` itself.
    pub(crate) fn contains(&self, path: &KeyPath) -> bool {
        self.entries.contains_key(path)
    }

    fn nearest(&self, path: &KeyPath, pick: impl Fn(&Entry) -> Option<Pos>) -> Option<Pos> {
        let mut path = path.clone();
        loop {
            if let Some(pos) = self.entries.get(&path).and_then(&pick) {
                return Some(pos);
            }
            if path.is_root() {
                return None;
            }
            path = path.parent();
        }
    }
}

/// Byte offsets to 1-based line/column (columns count characters).
struct LineMap<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineMap<'a> {
    fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { text, starts }
    }

    fn pos(&self, offset: usize) -> Pos {
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        let column = self.text.get(start..offset).map_or(1, |s| s.chars().count() + 1);
        Pos { line, column }
    }
}

// ---------------------------------------------------------------------------------------------
// TOML

fn toml_index(text: &str, index: &mut Index) {
    let Ok(doc) = toml_edit::ImDocument::parse(text) else { return };
    let lines = LineMap::new(text);
    let at = |span: Option<Range<usize>>| span.map(|s| lines.pos(s.start));
    toml_table(doc.as_table(), &KeyPath::root(), index, &at);
}

fn toml_table(
    table: &toml_edit::Table,
    path: &KeyPath,
    index: &mut Index,
    at: &dyn Fn(Option<Range<usize>>) -> Option<Pos>,
) {
    if let Some(pos) = at(table.span()) {
        index.value(path, pos);
    }
    for (name, item) in table.iter() {
        let child = path.key(name);
        if let Some(pos) = table.key(name).and_then(|k| at(k.span())) {
            index.key(&child, pos);
        }
        toml_item(item, &child, index, at);
    }
}

fn toml_item(
    item: &toml_edit::Item,
    path: &KeyPath,
    index: &mut Index,
    at: &dyn Fn(Option<Range<usize>>) -> Option<Pos>,
) {
    match item {
        toml_edit::Item::Value(v) => toml_value(v, path, index, at),
        toml_edit::Item::Table(t) => toml_table(t, path, index, at),
        toml_edit::Item::ArrayOfTables(tables) => {
            for (i, t) in tables.iter().enumerate() {
                toml_table(t, &path.index(i), index, at);
            }
        }
        toml_edit::Item::None => {}
    }
}

fn toml_value(
    value: &toml_edit::Value,
    path: &KeyPath,
    index: &mut Index,
    at: &dyn Fn(Option<Range<usize>>) -> Option<Pos>,
) {
    if let Some(pos) = at(value.span()) {
        index.value(path, pos);
    }
    match value {
        toml_edit::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                toml_value(v, &path.index(i), index, at);
            }
        }
        toml_edit::Value::InlineTable(t) => {
            for (name, v) in t.iter() {
                let child = path.key(name);
                if let Some(pos) = t.key(name).and_then(|k| at(k.span())) {
                    index.key(&child, pos);
                }
                toml_value(v, &child, index, at);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// JSON and YAML flow collections

/// A tolerant scanner for JSON and for YAML flow collections (`{a: 1, b: [x, y]}`): it records
/// where keys and values start and never fails (malformed input just ends the scan).
struct FlowScanner<'a> {
    text: &'a [u8],
    at: usize,
    lines: &'a LineMap<'a>,
    /// JSON: keys are always quoted strings; YAML flow: plain keys too.
    json: bool,
}

impl FlowScanner<'_> {
    fn skip_ws(&mut self) {
        while let Some(&b) = self.text.get(self.at) {
            if b.is_ascii_whitespace() {
                self.at += 1;
            } else if b == b'#' && !self.json {
                while self.text.get(self.at).is_some_and(|&b| b != b'\n') {
                    self.at += 1;
                }
            } else {
                break;
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn value(&mut self, path: &KeyPath, index: &mut Index) {
        self.skip_ws();
        let Some(b) = self.peek() else { return };
        index.value(path, self.lines.pos(self.at));
        match b {
            b'{' => self.object(path, index),
            b'[' => self.array(path, index),
            b'"' | b'\'' => {
                self.string();
            }
            _ => self.scalar(),
        }
    }

    /// Skips a quoted string; returns its decoded text when it is a JSON string.
    fn string(&mut self) -> Option<String> {
        let quote = self.peek()?;
        let start = self.at;
        self.at += 1;
        while let Some(b) = self.peek() {
            self.at += 1;
            if b == b'\\' && quote == b'"' {
                self.at += 1;
            } else if b == quote {
                if quote == b'\'' && self.peek() == Some(b'\'') {
                    self.at += 1;
                    continue;
                }
                break;
            }
        }
        let raw = std::str::from_utf8(self.text.get(start..self.at.min(self.text.len()))?).ok()?;
        if quote == b'"' {
            serde_json::from_str(raw).ok()
        } else {
            let inner = raw.strip_prefix('\'')?.strip_suffix('\'')?;
            Some(inner.replace("''", "'"))
        }
    }

    fn scalar(&mut self) {
        while let Some(b) = self.peek() {
            if matches!(b, b',' | b']' | b'}') || (b == b'\n' && self.json) {
                break;
            }
            self.at += 1;
        }
    }

    fn plain_key(&mut self) -> Option<String> {
        let start = self.at;
        while let Some(b) = self.peek() {
            if matches!(b, b':' | b',' | b'}' | b']' | b'\n') {
                break;
            }
            self.at += 1;
        }
        let key = std::str::from_utf8(self.text.get(start..self.at)?).ok()?.trim();
        (!key.is_empty()).then(|| key.to_owned())
    }

    fn object(&mut self, path: &KeyPath, index: &mut Index) {
        self.at += 1;
        loop {
            self.skip_ws();
            match self.peek() {
                None => return,
                Some(b'}') => {
                    self.at += 1;
                    return;
                }
                Some(b',') => {
                    self.at += 1;
                    continue;
                }
                _ => {}
            }
            let key_at = self.at;
            let key = match self.peek() {
                Some(b'"' | b'\'') => self.string(),
                _ if !self.json => self.plain_key(),
                _ => return,
            };
            let Some(key) = key else { return };
            let child = path.key(&key);
            index.key(&child, self.lines.pos(key_at));
            self.skip_ws();
            if self.peek() != Some(b':') {
                continue;
            }
            self.at += 1;
            self.value(&child, index);
            self.skip_ws();
        }
    }

    fn array(&mut self, path: &KeyPath, index: &mut Index) {
        self.at += 1;
        let mut i = 0;
        loop {
            self.skip_ws();
            match self.peek() {
                None => return,
                Some(b']') => {
                    self.at += 1;
                    return;
                }
                Some(b',') => {
                    self.at += 1;
                    continue;
                }
                _ => {}
            }
            let before = self.at;
            self.value(&path.index(i), index);
            i += 1;
            if self.at == before {
                self.at += 1;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// YAML block style

#[derive(Debug)]
enum Container {
    Map { indent: usize, path: KeyPath },
    Seq { indent: usize, path: KeyPath, next: usize },
}

impl Container {
    fn indent(&self) -> usize {
        match self {
            Self::Map { indent, .. } | Self::Seq { indent, .. } => *indent,
        }
    }
}

struct YamlScanner<'a> {
    text: &'a str,
    lines: LineMap<'a>,
    stack: Vec<Container>,
    /// A key whose value is on the following lines: (its path, its column).
    pending: Option<(KeyPath, usize)>,
}

fn yaml_index(text: &str, index: &mut Index) {
    let mut s = YamlScanner { text, lines: LineMap::new(text), stack: Vec::new(), pending: None };
    // lines more indented than this belong to a block scalar or a multi-line flow collection
    let mut skip_deeper_than: Option<usize> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let content = line.trim_end_matches(['\n', '\r']);
        let indent = content.len() - content.trim_start_matches(' ').len();
        let rest = &content[indent..];
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        if let Some(limit) = skip_deeper_than {
            if indent > limit {
                continue;
            }
            skip_deeper_than = None;
        }
        if indent == 0 && (rest.starts_with("---") || rest.starts_with("...")) {
            continue;
        }
        if let Some(limit) = s.line(start + indent, indent, rest, index) {
            skip_deeper_than = Some(limit);
        }
    }
}

impl YamlScanner<'_> {
    /// Handles one line's content starting at byte `at`, column `indent` (0-based). Returns an
    /// indentation limit when the following deeper lines must be skipped.
    fn line(&mut self, at: usize, indent: usize, rest: &str, index: &mut Index) -> Option<usize> {
        while self.stack.last().is_some_and(|c| c.indent() > indent) {
            self.stack.pop();
        }
        let pending = self.pending.take();
        if rest == "-" || rest.starts_with("- ") {
            let item = self.seq_item(indent, pending);
            let after = rest[1..].trim_start_matches(' ');
            if after.is_empty() || after.starts_with('#') {
                index.value(&item, self.lines.pos(at));
                self.pending = Some((item, indent));
                return None;
            }
            let inner = indent + (rest.len() - after.len());
            // the item's content starts a mapping (or a nested sequence) at its own column
            if after == "-" || after.starts_with("- ") || key_of(after).is_some() {
                index.value(&item, self.lines.pos(at));
                self.pending = Some((item, indent));
                return self.line(at + (inner - indent), inner, after, index);
            }
            return self.scalar(at + (inner - indent), indent, after, &item, index);
        }
        let (key, after_colon) = key_of(rest)?;
        let map = self.map_at(indent, pending);
        let child = map.key(&key);
        index.key(&child, self.lines.pos(at));
        let value = after_colon.trim_start_matches(' ');
        if value.is_empty() || value.starts_with('#') {
            self.pending = Some((child, indent));
            return None;
        }
        let value_at = at + (rest.len() - value.len());
        self.scalar(value_at, indent, value, &child, index)
    }

    /// Records a value that starts on this line; returns a skip limit for block scalars and
    /// unfinished flow collections.
    fn scalar(&mut self, at: usize, indent: usize, value: &str, path: &KeyPath, index: &mut Index) -> Option<usize> {
        index.value(path, self.lines.pos(at));
        match value.as_bytes().first() {
            Some(b'|' | b'>') => Some(indent),
            Some(b'[' | b'{') => {
                let mut scanner = FlowScanner { text: self.text.as_bytes(), at, lines: &self.lines, json: false };
                scanner.value(path, index);
                // a flow collection that continues on later lines: skip them
                let ended_on_this_line = !self.text[at..scanner.at.min(self.text.len())].contains('\n');
                (!ended_on_this_line).then_some(indent)
            }
            _ => None,
        }
    }

    /// The path of a new item of the sequence at `indent`.
    fn seq_item(&mut self, indent: usize, pending: Option<(KeyPath, usize)>) -> KeyPath {
        if let Some(Container::Seq { indent: i, path, next }) = self.stack.last_mut()
            && *i == indent
        {
            let item = path.index(*next);
            *next += 1;
            return item;
        }
        let path = match pending {
            Some((path, key_indent)) if key_indent <= indent => path,
            _ => self.stack.last().map(|c| self.container_path(c)).unwrap_or_default(),
        };
        let item = path.index(0);
        self.stack.push(Container::Seq { indent, path, next: 1 });
        item
    }

    fn container_path(&self, c: &Container) -> KeyPath {
        match c {
            Container::Map { path, .. } | Container::Seq { path, .. } => path.clone(),
        }
    }

    /// The path of the mapping whose keys sit at `indent`.
    fn map_at(&mut self, indent: usize, pending: Option<(KeyPath, usize)>) -> KeyPath {
        // a key line ends a sequence written at the same column as its parent key
        if matches!(self.stack.last(), Some(Container::Seq { indent: i, .. }) if *i == indent) {
            self.stack.pop();
        }
        if let Some(Container::Map { indent: i, path }) = self.stack.last()
            && *i == indent
        {
            return path.clone();
        }
        let path = match pending {
            Some((path, key_indent)) if key_indent < indent || self.stack.is_empty() => path,
            _ => KeyPath::root(),
        };
        self.stack.push(Container::Map { indent, path: path.clone() });
        path
    }
}

/// `key: rest` → (key, rest after the colon); quoted keys are unquoted.
fn key_of(line: &str) -> Option<(String, &str)> {
    if let Some(quote) = line.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let body = &line[1..];
        let end = body.find(quote)?;
        let after = body[end + 1..].trim_start_matches(' ');
        let rest = after.strip_prefix(':')?;
        if !(rest.is_empty() || rest.starts_with(' ')) {
            return None;
        }
        let key = if quote == '"' { serde_json::from_str(&line[..end + 2]).ok()? } else { body[..end].to_owned() };
        return Some((key, rest));
    }
    if line.starts_with(['[', '{', '&', '*', '!', '|', '>', '?']) {
        return None;
    }
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' if i > 0 && bytes[i - 1] == b' ' => return None,
            b':' if i + 1 == bytes.len() || bytes[i + 1] == b' ' => {
                let key = line[..i].trim_end();
                return (!key.is_empty()).then(|| (key.to_owned(), &line[i + 1..]));
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(index: &Index, path: &str) -> Option<(usize, usize)> {
        index.value_pos(&KeyPath::parse(path)).map(|p| (p.line, p.column))
    }

    fn key_at(index: &Index, path: &str) -> Option<(usize, usize)> {
        index.key_pos(&KeyPath::parse(path)).map(|p| (p.line, p.column))
    }

    #[test]
    fn toml_positions() {
        let text = "version = 1\n\n[sso]\nresource = \"https://x\"\n\n[[sso.issuers]]\nissuer = \"https://a\"\n\
                    algorithms = [\"ES256\", \"RS256\"]\n\n[[sso.issuers]]\nissuer = \"https://b\"\n\
                    jwks = { keys = [] }\n[audit]\ndirectory = '/var/log'\n";
        let index = Index::build(Format::Toml, text);
        assert_eq!(at(&index, "version"), Some((1, 11)));
        assert_eq!(key_at(&index, "sso.resource"), Some((4, 1)));
        assert_eq!(at(&index, "sso.issuers[0].issuer"), Some((7, 10)));
        assert_eq!(at(&index, "sso.issuers[0].algorithms[1]"), Some((8, 24)));
        assert_eq!(at(&index, "sso.issuers[1].issuer"), Some((11, 10)));
        assert_eq!(key_at(&index, "sso.issuers[1].jwks.keys"), Some((12, 10)));
        assert_eq!(at(&index, "audit.directory"), Some((14, 13)));
        // not in the file: the nearest enclosing key
        assert_eq!(key_at(&index, "audit.fsync"), Some((13, 2)));
        assert!(at(&index, "audit").is_some());
    }

    #[test]
    fn json_positions() {
        let text = "{\n  \"version\": 1,\n  \"sso\": {\n    \"issuers\": [\n      {\"issuer\": \"https://a\", \"x\\\"y\": 2},\n\
                    \n      {\"issuer\": \"https://b\"}\n    ]\n  }\n}\n";
        let index = Index::build(Format::Json, text);
        assert_eq!(key_at(&index, "version"), Some((2, 3)));
        assert_eq!(at(&index, "version"), Some((2, 14)));
        assert_eq!(at(&index, "sso.issuers[0].issuer"), Some((5, 18)));
        assert_eq!(key_at(&index, "sso.issuers[0].x\"y"), Some((5, 31)));
        assert_eq!(at(&index, "sso.issuers[1].issuer"), Some((7, 18)));
    }

    #[test]
    fn yaml_positions() {
        let text = "\
# comment
version: 1
resource: \"https://mcp.example.com/mcp\"
sso:
  issuers:
    - issuer: https://a
      algorithms: [ES256, RS256]
      introspection:
        client_id: rs
    - issuer: https://b   # second
  scopes:
    rules:
    - method: tools/call
      scopes:
        - mcp:tools
        - mcp:admin
description: |
  key: not a key
  - not an item
audit:
  'directory': /var/log
  tools: {run: {clear: [db]}, other: {drop: [x]}}
listen:
  allowed_hosts:
  - a.example
  - b.example
  address: 0.0.0.0:1
";
        let index = Index::build(Format::Yaml, text);
        assert_eq!(at(&index, "version"), Some((2, 10)));
        assert_eq!(key_at(&index, "sso.issuers[0].issuer"), Some((6, 7)));
        assert_eq!(at(&index, "sso.issuers[0].issuer"), Some((6, 15)));
        assert_eq!(at(&index, "sso.issuers[0].algorithms[1]"), Some((7, 27)));
        assert_eq!(key_at(&index, "sso.issuers[0].introspection.client_id"), Some((9, 9)));
        assert_eq!(at(&index, "sso.issuers[1].issuer"), Some((10, 15)));
        assert_eq!(key_at(&index, "sso.scopes.rules[0].method"), Some((13, 7)));
        assert_eq!(at(&index, "sso.scopes.rules[0].scopes[1]"), Some((16, 11)));
        assert!(!index.contains(&KeyPath::parse("description.key")));
        assert_eq!(key_at(&index, "audit.directory"), Some((21, 3)));
        assert_eq!(key_at(&index, "audit.tools.other.drop"), Some((22, 39)));
        assert_eq!(at(&index, "listen.allowed_hosts[1]"), Some((26, 5)));
        assert_eq!(at(&index, "listen.address"), Some((27, 12)));
    }

    #[test]
    fn malformed_text_never_panics() {
        let samples = [
            "",
            "'",
            "\"",
            "- '",
            "a: '",
            "a: \"",
            "{",
            "[",
            "a: [",
            "a: {b: ",
            "- - -",
            "a:\n  - b:\n - c",
            "\u{e9}t\u{e9}: \"caf\u{e9}\"\n  - \u{1F600}: [x, 'y",
            "? complex\n: value",
            "a: |\n  x\nb: >\n",
            "\"k\":",
            "{\"a\": [1, {\"b\": \"\\u12\"",
            "[[x]]\n[y",
            "a = [1,\n",
            "''': x",
            "- 'it''s'\n- \"\\\"\"",
            "{'a': 'b'}",
        ];
        for text in samples {
            for format in [Format::Toml, Format::Json, Format::Yaml] {
                let index = Index::build(format, text);
                let _ = index.value_pos(&KeyPath::parse("a.b[0]"));
            }
        }
        // every prefix of a real document
        let doc = "version: 1\nsso:\n  issuers:\n    - issuer: 'https://a'\n      algorithms: [ES256, \"RS256\"]\n";
        for end in (0..=doc.len()).filter(|i| doc.is_char_boundary(*i)) {
            for format in [Format::Toml, Format::Json, Format::Yaml] {
                let _ = Index::build(format, &doc[..end]);
            }
        }
    }

    #[test]
    fn yaml_nested_sequences_and_top_level_items() {
        let text = "a:\n- - x\n  - y\n- z\nb:\n  - c: 1\n    d:\n      - e: 2\n";
        let index = Index::build(Format::Yaml, text);
        assert_eq!(at(&index, "a[0][0]"), Some((2, 5)));
        assert_eq!(at(&index, "a[0][1]"), Some((3, 5)));
        assert_eq!(at(&index, "a[1]"), Some((4, 3)));
        assert_eq!(key_at(&index, "b[0].d[0].e"), Some((8, 9)));
    }
}
