//! List filtering: `tools/list`, `resources/list`, `resources/templates/list` and `prompts/list`
//! results lose the items the caller could not use with any arguments, in JSON and SSE
//! responses. `nextCursor` is left as the upstream sent it, so paging keeps working (a page may
//! come back shorter, or empty, with a cursor to the next).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use mcp_enterprise_core::jsonrpc::codes;
use mcp_enterprise_core::{BoxError, JsonRpcError, JsonRpcId, Principal};
use pin_project_lite::pin_project;
use serde_json::Value;

use crate::engine::Engine;
use crate::model::{Action, CallContext, principal_entity};

/// A list operation whose result is filtered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListKind {
    /// `tools/list` → `result.tools`, decided as `tools/call`.
    Tools,
    /// `resources/list` → `result.resources`, decided as `resources/read` of each URI.
    Resources,
    /// `resources/templates/list` → `result.resourceTemplates`, decided as `resources/read` of an
    /// unknown URI.
    ResourceTemplates,
    /// `prompts/list` → `result.prompts`, decided as `prompts/get`.
    Prompts,
}

impl ListKind {
    /// The list kind of an MCP method.
    pub fn from_method(method: &str) -> Option<Self> {
        match method {
            "tools/list" => Some(Self::Tools),
            "resources/list" => Some(Self::Resources),
            "resources/templates/list" => Some(Self::ResourceTemplates),
            "prompts/list" => Some(Self::Prompts),
            _ => None,
        }
    }

    fn method(self) -> &'static str {
        match self {
            Self::Tools => "tools/list",
            Self::Resources => "resources/list",
            Self::ResourceTemplates => "resources/templates/list",
            Self::Prompts => "prompts/list",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Self::Tools => "tools",
            Self::Resources => "resources",
            Self::ResourceTemplates => "resourceTemplates",
            Self::Prompts => "prompts",
        }
    }

    fn action(self) -> Action {
        match self {
            Self::Tools => Action::ToolsCall,
            Self::Resources | Self::ResourceTemplates => Action::ResourcesRead,
            Self::Prompts => Action::PromptsGet,
        }
    }

    fn item_target(self, item: &Value) -> Option<Option<&str>> {
        match self {
            Self::Tools | Self::Prompts => item.get("name").and_then(Value::as_str).map(Some),
            Self::Resources => item.get("uri").and_then(Value::as_str).map(Some),
            Self::ResourceTemplates => Some(None),
        }
    }
}

/// Everything needed to filter one list response; cheap to move into a body.
#[derive(Clone)]
pub(crate) struct ListFilter {
    engine: Arc<Engine>,
    principal: cedar_policy::Entity,
    context: Option<cedar_policy::Context>,
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
        principal: Option<&Principal>,
        context: &CallContext,
        kind: ListKind,
        id: Option<JsonRpcId>,
        filter: bool,
    ) -> Self {
        Self {
            engine,
            principal: principal_entity(principal),
            // arguments unknown: partial evaluation
            context: context.to_cedar(None).ok(),
            kind,
            id,
            filter,
        }
    }

    /// Learns from and filters `message` when it is the response we wait for; returns whether it was.
    fn apply(&self, message: &mut Value) -> bool {
        let is_target = match (&self.id, message.get("id")) {
            (Some(id), Some(v)) => id.matches(v),
            (None, _) => true,
            _ => false,
        };
        if !is_target {
            return false;
        }
        let Some(result) = message.get_mut("result") else { return true };
        self.engine.learn(self.kind.method(), result);
        if !self.filter {
            return true;
        }
        let Some(items) = result.get_mut(self.kind.key()).and_then(Value::as_array_mut) else { return true };
        let before = items.len();
        items.retain(|item| match (self.kind.item_target(item), &self.context) {
            (Some(target), Some(context)) => self.engine.visible(&self.principal, self.kind.action(), target, context),
            _ => false,
        });
        if items.len() != before {
            tracing::debug!(list = self.kind.method(), hidden = before - items.len(), "list filtered by policy");
        }
        true
    }

    /// Rewrites a complete JSON body. A body that is not JSON is refused (fail closed).
    fn rewrite_json(&self, body: &[u8]) -> Bytes {
        match serde_json::from_slice::<Value>(body) {
            Ok(mut message) => {
                if self.apply(&mut message) {
                    Bytes::from(message.to_string())
                } else {
                    Bytes::copy_from_slice(body)
                }
            }
            Err(_) => self.refusal("the upstream's list response is not JSON"),
        }
    }

    fn refusal(&self, message: &str) -> Bytes {
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
    let mut message: Value = serde_json::from_slice(body).ok()?;
    let filter = ListFilter::new(engine.clone(), principal, context, kind, None, true);
    message.get("result")?;
    filter.apply(&mut message);
    Some(Bytes::from(message.to_string()))
}

pin_project! {
    /// The response body of the policy layer: the inner body, a refusal, or a filtered list.
    #[derive(Debug)]
    pub struct PolicyBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<B> {
        Full { data: Option<Bytes> },
        Inner { #[pin] body: B },
        Json { #[pin] body: B, buf: BytesMut, limit: usize, filter: ListFilter, trailers: Option<Frame<Bytes>>, done: bool },
        Sse { #[pin] body: B, buf: BytesMut, limit: usize, filter: Option<ListFilter>, trailers: Option<Frame<Bytes>>, ended: bool },
    }
}

impl<B> PolicyBody<B> {
    /// Wraps an inner body unchanged.
    pub fn new(body: B) -> Self {
        Self { kind: Kind::Inner { body } }
    }

    /// A body made of these bytes.
    pub fn full(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        Self { kind: Kind::Full { data: (!data.is_empty()).then_some(data) } }
    }

    pub(crate) fn json(body: B, filter: ListFilter, limit: usize) -> Self {
        Self { kind: Kind::Json { body, buf: BytesMut::new(), limit, filter, trailers: None, done: false } }
    }

    pub(crate) fn sse(body: B, filter: ListFilter, limit: usize) -> Self {
        Self {
            kind: Kind::Sse { body, buf: BytesMut::new(), limit, filter: Some(filter), trailers: None, ended: false },
        }
    }
}

impl<B> From<Bytes> for PolicyBody<B> {
    fn from(data: Bytes) -> Self {
        Self::full(data)
    }
}

/// The end of the first complete SSE event in `buf` (just past its blank line), if any.
/// A `\r` at the very end might be the first half of `\r\n`: not complete yet unless `eof`.
fn event_end(buf: &[u8], eof: bool) -> Option<usize> {
    let mut line_start = 0;
    let mut i = 0;
    while i < buf.len() {
        let terminator = match buf[i] {
            b'\n' => 1,
            b'\r' if i + 1 < buf.len() => {
                if buf[i + 1] == b'\n' {
                    2
                } else {
                    1
                }
            }
            b'\r' if eof => 1,
            b'\r' => return None,
            _ => {
                i += 1;
                continue;
            }
        };
        if i == line_start {
            return Some(i + terminator);
        }
        i += terminator;
        line_start = i;
    }
    None
}

/// Rewrites one SSE event when its data is the target response; `None` to keep it as it is.
fn rewrite_event(filter: &ListFilter, event: &[u8]) -> Option<Bytes> {
    let text = std::str::from_utf8(event).ok()?;
    let mut data = String::new();
    let mut others = Vec::new();
    let mut has_data = false;
    for line in text.split(['\n', '\r']).filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("data:") {
            if has_data {
                data.push('\n');
            }
            data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
            has_data = true;
        } else {
            others.push(line);
        }
    }
    if !has_data {
        return None;
    }
    let mut message: Value = serde_json::from_str(&data).ok()?;
    if !filter.apply(&mut message) {
        return None;
    }
    let mut out = String::with_capacity(event.len());
    for line in others {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("data: ");
    out.push_str(&message.to_string());
    out.push_str("\n\n");
    Some(Bytes::from(out))
}

impl<B> Body for PolicyBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            KindProj::Inner { body } => body.poll_frame(cx).map_err(Into::into),
            KindProj::Json { mut body, buf, limit, filter, trailers, done } => loop {
                if *done {
                    return Poll::Ready(trailers.take().map(Ok));
                }
                match ready!(body.as_mut().poll_frame(cx)) {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => {
                            buf.extend_from_slice(&data);
                            if buf.len() > *limit {
                                // an unfiltered list would show what the caller may not see
                                *done = true;
                                buf.clear();
                                tracing::warn!(limit = *limit, "list response too large to filter; refused");
                                return Poll::Ready(Some(Ok(Frame::data(
                                    filter.refusal("the list response is too large to filter by policy"),
                                ))));
                            }
                        }
                        Err(frame) => {
                            *trailers = frame.into_trailers().ok().map(Frame::trailers);
                            *done = true;
                            return Poll::Ready(Some(Ok(Frame::data(filter.rewrite_json(&buf.split())))));
                        }
                    },
                    Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                    None => {
                        *done = true;
                        return Poll::Ready(Some(Ok(Frame::data(filter.rewrite_json(&buf.split())))));
                    }
                }
            },
            KindProj::Sse { mut body, buf, limit, filter, trailers, ended } => loop {
                // complete events first
                if filter.is_some() {
                    if let Some(end) = event_end(buf, *ended) {
                        let event = buf.split_to(end).freeze();
                        let out = match filter.as_ref().and_then(|f| rewrite_event(f, &event)) {
                            Some(rewritten) => {
                                // the target passed: the rest streams through untouched
                                *filter = None;
                                rewritten
                            }
                            None => event,
                        };
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                    if (buf.len() > *limit || (*ended && !buf.is_empty()))
                        && let Some(f) = filter.take()
                    {
                        // too large, or a stream cut inside the response: never pass it on unfiltered
                        buf.clear();
                        tracing::warn!(limit = *limit, "SSE list event too large or cut; refused");
                        let mut out = BytesMut::from(&b"event: message\ndata: "[..]);
                        out.extend_from_slice(&f.refusal("the list response is too large to filter by policy"));
                        out.extend_from_slice(b"\n\n");
                        *ended = true;
                        return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
                    }
                }
                if !buf.is_empty() && (filter.is_none() || *ended) {
                    return Poll::Ready(Some(Ok(Frame::data(buf.split().freeze()))));
                }
                if *ended {
                    return Poll::Ready(trailers.take().map(Ok));
                }
                if filter.is_none() {
                    return body.as_mut().poll_frame(cx).map_err(Into::into);
                }
                match ready!(body.as_mut().poll_frame(cx)) {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => buf.extend_from_slice(&data),
                        Err(frame) => {
                            *trailers = frame.into_trailers().ok().map(Frame::trailers);
                            *ended = true;
                        }
                    },
                    Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                    None => *ended = true,
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full { data } => data.is_none(),
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Json { .. } | Kind::Sse { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full { data } => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Inner { body } => body.size_hint(),
            Kind::Json { .. } | Kind::Sse { .. } => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ends() {
        assert_eq!(event_end(b"data: x\n\nrest", false), Some(9));
        assert_eq!(event_end(b"data: x\r\n\r\n", false), Some(11));
        assert_eq!(event_end(b"data: x\r\r", false), None);
        assert_eq!(event_end(b"data: x\r\r", true), Some(9));
        assert_eq!(event_end(b"data: x\n", false), None);
        assert_eq!(event_end(b"\n", false), Some(1));
    }
}
