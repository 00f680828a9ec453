//! List filtering: `tools/list`, `resources/list`, `resources/templates/list` and `prompts/list`
//! results lose the items the caller could not use with any arguments, in JSON and SSE
//! responses. `nextCursor` is left as the upstream sent it, so paging keeps working (a page may
//! come back shorter, or empty, with a cursor to the next). A filtered list's `cacheScope` (SEP-2549)
//! becomes `"private"`: what it holds depends on the caller. The JSON and SSE rewriting itself is
//! core's [`list`](mcp_enterprise_core::list) machinery.

use std::sync::Arc;

use bytes::Bytes;
use mcp_enterprise_core::json::Checked;
use mcp_enterprise_core::jsonrpc::codes;
use mcp_enterprise_core::list::{ListRewrite, Unrewritable, is_response_to};
use mcp_enterprise_core::{JsonRpcError, JsonRpcId, Principal};
use serde_json::Value;

use crate::engine::Engine;
use crate::model::{Action, CallContext};

pub use mcp_enterprise_core::list::ListKind;

/// The call a listed item is decided as.
fn action(kind: ListKind) -> Action {
    match kind {
        ListKind::Tools => Action::ToolsCall,
        ListKind::Prompts => Action::PromptsGet,
        _ => Action::ResourcesRead,
    }
}

/// The target a listed item is decided on (`Some(None)`: a template, an unknown URI).
fn item_target(kind: ListKind, item: &Value) -> Option<Option<&str>> {
    match kind {
        ListKind::Tools | ListKind::Prompts => item.get("name").and_then(Value::as_str).map(Some),
        ListKind::Resources => item.get("uri").and_then(Value::as_str).map(Some),
        _ => Some(None),
    }
}

/// Everything needed to filter one list response; cheap to move into a body. The principal's
/// entity and the Cedar context are built only when the list has items to decide on.
#[derive(Clone)]
pub(crate) struct ListFilter {
    engine: Arc<Engine>,
    principal: Option<Principal>,
    context: CallContext,
    kind: ListKind,
    id: Option<JsonRpcId>,
    filter: bool,
}

impl std::fmt::Debug for ListFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListFilter")
            .field("kind", &self.kind)
            .field("id", &self.id)
            .field("filter", &self.filter)
            .finish()
    }
}

impl ListFilter {
    pub(crate) fn new(
        engine: Arc<Engine>,
        principal: Option<Principal>,
        context: CallContext,
        kind: ListKind,
        id: Option<JsonRpcId>,
        filter: bool,
    ) -> Self {
        Self { engine, principal, context, kind, id, filter }
    }

    /// Learns from and filters `message` when it is the response we wait for; returns whether it was.
    fn apply(&self, message: &mut Value) -> bool {
        if !is_response_to(self.id.as_ref(), message) {
            return false;
        }
        let Some(result) = message.get_mut("result") else { return true };
        self.engine.learn(self.kind.method(), result);
        if !self.filter {
            return true;
        }
        let Some(items) = result.get_mut(self.kind.key()).and_then(Value::as_array_mut) else { return true };
        if items.is_empty() {
            return true;
        }
        let before = items.len();
        // one caller and context for every item; each decision cached per (caller, target)
        let viewer = self.engine.viewer(self.principal.as_ref(), &self.context);
        items.retain(|item| match item_target(self.kind, item) {
            Some(target) => self.engine.shown(&viewer, action(self.kind), target),
            None => false,
        });
        if items.len() != before {
            tracing::debug!(list = self.kind.method(), hidden = before - items.len(), "list filtered by policy");
        }
        // what is left depends on the caller, whether or not this caller lost an item: a cache
        // shared between users (SEP-2549's "public") could hand one caller another's list
        if let Some(scope) = result.get_mut("cacheScope")
            && scope.as_str() != Some("private")
        {
            *scope = Value::from("private");
        }
        true
    }
}

impl ListRewrite for ListFilter {
    fn apply(&self, message: &mut Value) -> bool {
        ListFilter::apply(self, message)
    }

    fn unchanged(&self, body: &[u8]) -> bool {
        empty_answer(self.kind, self.id.as_ref(), body)
    }

    fn refusal(&self, why: Unrewritable) -> Bytes {
        let message = match why {
            Unrewritable::NotJson => "the upstream's list response is not JSON",
            _ => "the list response is too large to filter by policy",
        };
        JsonRpcError::new(codes::INTERNAL_ERROR, message).with_id(self.id.clone()).to_bytes()
    }
}

/// Filters a JSON-RPC list response body (`tools/list`, `resources/list`,
/// `resources/templates/list`, `prompts/list`) for `principal`: returns the new body, or `None`
/// when `method` is not a list, the body is not JSON, or it is not a response. Tools and prompts
/// listed are learned by the engine.
///
/// Never panics. This is a fuzz target.
pub fn filter_list_body(
    engine: &Arc<Engine>,
    principal: Option<&Principal>,
    method: &str,
    context: &CallContext,
    body: &[u8],
) -> Option<Bytes> {
    let kind = ListKind::from_method(method)?;
    if empty_answer(kind, None, body) {
        return Some(Bytes::copy_from_slice(body));
    }
    let mut message: Value = serde_json::from_slice(body).ok()?;
    let filter = ListFilter::new(engine.clone(), principal.cloned(), context.clone(), kind, None, true);
    message.get("result")?;
    filter.apply(&mut message);
    Some(Bytes::from(message.to_string()))
}

/// Whether `body` is the awaited response (`id`; any when `None`) to a `kind` list with an empty
/// item list: nothing to filter and nothing to learn, so it passes exactly as it came, without
/// being parsed into a `Value` and encoded again. Only a strictly valid JSON text qualifies (UTF-8,
/// serde_json's grammar), with unescaped member names and no member named twice in the message
/// or its `result` — where parsers could disagree on which one counts, the answer takes the
/// full path (parsed and encoded again, the one reading every client then sees). What is not
/// looked at is still read as a `Value` would be (core's [`Checked`]: numbers in range, no lone
/// surrogates, no member named twice at any depth), so an answer passed as it came is one the
/// full path would have accepted.
pub(crate) fn empty_answer(kind: ListKind, id: Option<&JsonRpcId>, body: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(body) else { return false };
    let mut de = serde_json::Deserializer::from_str(text);
    let answer = Members { level: Level::Message { id }, key: kind.key() };
    matches!(serde::de::Deserializer::deserialize_map(&mut de, answer), Ok(true)) && de.end().is_ok()
}

/// The members of one object of a list answer: the message, or its `result`.
struct Members<'a> {
    level: Level<'a>,
    /// The member of `result` holding the items.
    key: &'static str,
}

#[derive(Clone, Copy)]
enum Level<'a> {
    Message { id: Option<&'a JsonRpcId> },
    Result,
}

/// At most this many members are looked at (a list answer has a handful).
const MAX_MEMBERS: usize = 16;

impl<'de> serde::de::Visitor<'de> for Members<'_> {
    /// Whether this object says "the awaited response, with an empty list".
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON-RPC list response")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut seen: [&'de str; MAX_MEMBERS] = [""; MAX_MEMBERS];
        let mut count = 0;
        let (mut id_matches, mut empty) = (matches!(self.level, Level::Message { id: None }), false);
        // an escaped member name is not borrowed: an error here, which means the full path
        while let Some(name) = map.next_key::<&'de str>()? {
            if count == MAX_MEMBERS || seen[..count].contains(&name) {
                return Ok(false);
            }
            seen[count] = name;
            count += 1;
            match (self.level, name) {
                (Level::Message { id: Some(id) }, "id") => id_matches = id.matches(&map.next_value::<Value>()?),
                (Level::Message { .. }, "result") => {
                    empty = map.next_value_seed(Members { level: Level::Result, key: self.key })?;
                }
                (Level::Result, name) if name == self.key => empty = map.next_value::<EmptyList>()?.0,
                _ => {
                    map.next_value::<Checked>()?;
                }
            }
        }
        Ok(match self.level {
            Level::Message { .. } => id_matches && empty,
            Level::Result => empty,
        })
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Members<'_> {
    type Value = bool;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_map(self)
    }
}

/// Whether a JSON array is empty (an error when it is not an array).
struct EmptyList(bool);

impl<'de> serde::Deserialize<'de> for EmptyList {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Items;
        impl<'de> serde::de::Visitor<'de> for Items {
            type Value = EmptyList;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<EmptyList, A::Error> {
                // an item: the rest is not read (the parse then fails: the answer takes the full path)
                Ok(EmptyList(seq.next_element::<Checked>()?.is_none()))
            }
        }
        deserializer.deserialize_seq(Items)
    }
}
