//! Rewriting the answers to list requests (`tools/list`, `resources/list`,
//! `resources/templates/list`, `prompts/list`), in JSON and in SSE, with a bound: the machinery
//! layers that filter or check lists share (policy filters by authorization, integrity by pinned
//! definitions).
//!
//! A layer implements [`ListRewrite`] (what to do with the one JSON-RPC response it waits for).
//! A JSON answer is read whole, up to the limit, and rewritten before its head goes out
//! ([`json_answer`]: it then carries its exact length). An SSE answer streams through a
//! [`ListBody`]: only the event carrying the awaited response is re-encoded (an event larger than
//! the limit is refused), and everything after it passes through untouched. A list that cannot be
//! rewritten — too large, not JSON, or a stream cut inside the response — is never passed on as it
//! came: it is replaced by the layer's JSON-RPC error ([`ListRewrite::refusal`]).
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use mcp_enterprise_core::list::{ListKind, ListRewrite, Unrewritable, json_answer};
//! use serde_json::Value;
//!
//! /// Drops every tool whose name starts with `admin_`.
//! struct NoAdmin;
//! impl ListRewrite for NoAdmin {
//!     fn apply(&self, message: &mut Value) -> bool {
//!         if let Some(tools) = message.pointer_mut("/result/tools").and_then(Value::as_array_mut) {
//!             tools.retain(|t| !t["name"].as_str().unwrap_or("").starts_with("admin_"));
//!         }
//!         true
//!     }
//!     fn refusal(&self, _why: Unrewritable) -> Bytes {
//!         Bytes::from_static(br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"refused"}}"#)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! assert_eq!(ListKind::from_method("tools/list"), Some(ListKind::Tools));
//! let upstream = Full::new(Bytes::from(r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"admin_x"},{"name":"echo"}]}}"#));
//! let answer = json_answer(http::Response::new(upstream), NoAdmin, 1 << 20).await;
//! let out = answer.into_body().collect().await.expect("body").to_bytes();
//! let v: Value = serde_json::from_slice(&out).expect("json");
//! assert_eq!(v["result"]["tools"].as_array().map(Vec::len), Some(1));
//! # }
//! ```

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use serde_json::Value;

use crate::body::{BoxError, PackBody};
use crate::jsonrpc::JsonRpcId;

/// A list operation whose answer can be rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ListKind {
    /// `tools/list` → `result.tools`.
    Tools,
    /// `resources/list` → `result.resources`.
    Resources,
    /// `resources/templates/list` → `result.resourceTemplates`.
    ResourceTemplates,
    /// `prompts/list` → `result.prompts`.
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

    /// The MCP method listing this kind.
    pub fn method(self) -> &'static str {
        match self {
            Self::Tools => "tools/list",
            Self::Resources => "resources/list",
            Self::ResourceTemplates => "resources/templates/list",
            Self::Prompts => "prompts/list",
        }
    }

    /// The member of the result holding the items.
    pub fn key(self) -> &'static str {
        match self {
            Self::Tools => "tools",
            Self::Resources => "resources",
            Self::ResourceTemplates => "resourceTemplates",
            Self::Prompts => "prompts",
        }
    }
}

/// Whether `message` is the response to the request `id` (any message when `id` is `None`).
pub fn is_response_to(id: Option<&JsonRpcId>, message: &Value) -> bool {
    match (id, message.get("id")) {
        (Some(id), Some(v)) => id.matches(v),
        (None, _) => true,
        _ => false,
    }
}

/// Why a list answer could not be rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unrewritable {
    /// Larger than the limit.
    TooLarge,
    /// The JSON answer is not JSON.
    NotJson,
    /// The SSE stream ended inside the event carrying the response.
    Cut,
}

/// What a layer does with the one list response it waits for.
pub trait ListRewrite {
    /// Rewrites `message` when it is the awaited response; returns whether it was.
    fn apply(&self, message: &mut Value) -> bool;

    /// The JSON-RPC error body sent instead of a list that could not be rewritten.
    fn refusal(&self, why: Unrewritable) -> Bytes;

    /// Whether `body` (a JSON answer, or the data of one SSE event) is the awaited response and
    /// passes exactly as it came: [`apply`](Self::apply) would change nothing in it and the bytes
    /// say the same to every JSON parser (e.g. an empty list, no duplicate members). Asked before
    /// the answer is parsed into a `Value`; the default (`false`) always parses and re-encodes.
    fn unchanged(&self, body: &[u8]) -> bool {
        let _ = body;
        false
    }
}

pin_project! {
    /// An SSE list answer's body, its awaited response rewritten by `F` (see the [module docs](self)).
    #[derive(Debug)]
    pub struct ListBody<B, F> {
        #[pin]
        body: B,
        buf: BytesMut,
        limit: usize,
        rewrite: Option<F>,
        trailers: Option<Frame<Bytes>>,
        ended: bool,
    }
}

impl<B, F> ListBody<B, F> {
    /// An SSE answer: events stream; the one carrying the response (at most `limit` bytes) is
    /// rewritten.
    pub fn sse(body: B, rewrite: F, limit: usize) -> Self {
        Self { body, buf: BytesMut::new(), limit, rewrite: Some(rewrite), trailers: None, ended: false }
    }
}

fn rewrite_json<F: ListRewrite>(rewrite: &F, body: Bytes) -> Bytes {
    if rewrite.unchanged(&body) {
        return body;
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(mut message) => {
            if rewrite.apply(&mut message) {
                Bytes::from(message.to_string())
            } else {
                body
            }
        }
        Err(_) => rewrite.refusal(Unrewritable::NotJson),
    }
}

/// A JSON list answer read whole (up to `limit` bytes) and rewritten before its head is sent, so
/// that it goes out in one piece with its exact `Content-Length`. Too large or not JSON: the
/// layer's refusal instead. An answer that came in one frame and passes as it came is not copied.
/// An upstream body that fails fails this answer's body; trailers follow the data.
pub async fn json_answer<B, F>(response: http::Response<B>, rewrite: F, limit: usize) -> http::Response<PackBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    F: ListRewrite,
{
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(http::header::CONTENT_LENGTH);
    let mut body = std::pin::pin!(body);
    // the first frame as it came; later ones joined in `more`
    let (mut first, mut more) = (None::<Bytes>, BytesMut::new());
    let mut trailers = None;
    let refused = loop {
        match std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    if first.as_ref().map_or(0, Bytes::len) + more.len() + data.len() > limit {
                        // a list passed on as it came would defeat the rewriting
                        tracing::warn!(limit, "list answer too large to rewrite; refused");
                        break Some(rewrite.refusal(Unrewritable::TooLarge));
                    }
                    if first.is_none() && more.is_empty() {
                        first = Some(data);
                    } else {
                        if let Some(held) = first.take() {
                            more.extend_from_slice(&held);
                        }
                        more.extend_from_slice(&data);
                    }
                }
                Err(frame) => {
                    trailers = frame.into_trailers().ok();
                    break None;
                }
            },
            Some(Err(e)) => {
                let failed = Whole { data: None, last: Some(Err(e.into())) };
                return http::Response::from_parts(parts, PackBody::boxed(failed));
            }
            None => break None,
        }
    };
    let out = refused.unwrap_or_else(|| rewrite_json(&rewrite, first.unwrap_or_else(|| more.freeze())));
    parts.headers.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(out.len()));
    let body = match trailers {
        None => PackBody::full(out),
        Some(trailers) => PackBody::boxed(Whole { data: Some(out), last: Some(Ok(trailers)) }),
    };
    http::Response::from_parts(parts, body)
}

/// An answer read whole: its data, then its trailers or the error that ended it.
struct Whole {
    data: Option<Bytes>,
    last: Option<Result<http::HeaderMap, BoxError>>,
}

impl Body for Whole {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(data) = this.data.take().filter(|d| !d.is_empty()) {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(this.last.take().map(|last| last.map(Frame::trailers)))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.last.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

/// The end of the first complete SSE event in `buf` (just past its blank line), if any.
/// A `\r` at the very end might be the first half of `\r\n`: not complete yet unless `eof`.
pub fn event_end(buf: &[u8], eof: bool) -> Option<usize> {
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

/// The JSON data of one SSE event and its other lines; `None` when it carries no JSON data.
pub fn event_message(event: &[u8]) -> Option<(Value, Vec<&str>)> {
    let (data, others) = event_data(event)?;
    Some((serde_json::from_str(&data).ok()?, others))
}

/// The data of one SSE event (its `data:` lines joined) and its other lines; `None` when it has
/// no data.
fn event_data(event: &[u8]) -> Option<(String, Vec<&str>)> {
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
    Some((data, others))
}

/// What became of one SSE event.
enum Event {
    /// Not the awaited response: passed on as it is.
    Other,
    /// The awaited response, passed on as it is ([`ListRewrite::unchanged`]).
    Unchanged,
    /// The awaited response, rewritten.
    Rewritten(Bytes),
}

/// Rewrites one SSE event when its data is the target response.
fn rewrite_event<F: ListRewrite>(rewrite: &F, event: &[u8]) -> Event {
    let Some((data, others)) = event_data(event) else { return Event::Other };
    if rewrite.unchanged(data.as_bytes()) {
        return Event::Unchanged;
    }
    let Ok(mut message) = serde_json::from_str::<Value>(&data) else { return Event::Other };
    if !rewrite.apply(&mut message) {
        return Event::Other;
    }
    let mut out = String::with_capacity(event.len());
    for line in others {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("data: ");
    out.push_str(&message.to_string());
    out.push_str("\n\n");
    Event::Rewritten(Bytes::from(out))
}

impl<B, F> Body for ListBody<B, F>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    F: ListRewrite,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            // complete events first
            if let Some(rewrite) = this.rewrite.as_ref() {
                if let Some(end) = event_end(this.buf, *this.ended)
                    && end <= *this.limit
                {
                    let event = this.buf.split_to(end).freeze();
                    let out = match rewrite_event(rewrite, &event) {
                        Event::Rewritten(rewritten) => {
                            // the target passed: the rest streams through untouched
                            *this.rewrite = None;
                            rewritten
                        }
                        Event::Unchanged => {
                            *this.rewrite = None;
                            event
                        }
                        Event::Other => event,
                    };
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                if this.buf.len() > *this.limit || (*this.ended && !this.buf.is_empty()) {
                    // too large (an event, complete or not, past the limit), or a stream cut
                    // inside the response: never pass it on as it came
                    let why = if this.buf.len() > *this.limit { Unrewritable::TooLarge } else { Unrewritable::Cut };
                    this.buf.clear();
                    tracing::warn!(limit = *this.limit, "SSE list event too large or cut; refused");
                    let mut out = BytesMut::from(&b"event: message\ndata: "[..]);
                    out.extend_from_slice(&rewrite.refusal(why));
                    out.extend_from_slice(b"\n\n");
                    *this.rewrite = None;
                    *this.ended = true;
                    return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
                }
            }
            if !this.buf.is_empty() && (this.rewrite.is_none() || *this.ended) {
                return Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze()))));
            }
            if *this.ended {
                return Poll::Ready(this.trailers.take().map(Ok));
            }
            if this.rewrite.is_none() {
                return this.body.as_mut().poll_frame(cx).map_err(Into::into);
            }
            match ready!(this.body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.buf.extend_from_slice(&data),
                    Err(frame) => {
                        *this.trailers = frame.into_trailers().ok().map(Frame::trailers);
                        *this.ended = true;
                    }
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => *this.ended = true,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Whether a response's `Content-Type` is `text/event-stream`.
pub fn is_sse(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"))
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Full};

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

    struct Empty(Option<JsonRpcId>);
    impl ListRewrite for Empty {
        fn apply(&self, message: &mut Value) -> bool {
            if !is_response_to(self.0.as_ref(), message) {
                return false;
            }
            if let Some(items) = message.pointer_mut("/result/tools").and_then(Value::as_array_mut) {
                items.clear();
            }
            true
        }
        fn refusal(&self, why: Unrewritable) -> Bytes {
            Bytes::from(format!("refused {why:?}"))
        }
    }

    async fn collect<F: ListRewrite>(body: ListBody<Full<Bytes>, F>) -> String {
        String::from_utf8(body.collect().await.expect("body").to_bytes().to_vec()).expect("utf8")
    }

    #[tokio::test]
    async fn sse_rewrites_only_the_awaited_response() {
        let stream = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n\
                      data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"tools\":[{\"name\":\"a\"}]}}\n\ndata: after\n\n";
        let out = collect(ListBody::sse(Full::new(Bytes::from(stream)), Empty(Some(JsonRpcId::Number(7))), 1024)).await;
        assert!(out.contains("notifications/progress"));
        assert!(out.contains(r#""tools":[]"#) && !out.contains(r#""name":"a""#), "{out}");
        assert!(out.ends_with("data: after\n\n"));
    }

    /// A body of these frames (data, then trailers or an error), polled in turn.
    struct Frames(std::collections::VecDeque<Result<Frame<Bytes>, BoxError>>);
    impl Body for Frames {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.get_mut().0.pop_front())
        }
    }

    fn answer<B>(body: B) -> http::Response<B> {
        http::Response::builder().header("content-length", "999").body(body).expect("response")
    }

    async fn whole(response: http::Response<PackBody>) -> (Option<String>, Bytes, Option<http::HeaderMap>) {
        let length = response.headers().get("content-length").map(|v| v.to_str().expect("ascii").to_owned());
        let collected = response.into_body().collect().await.expect("body");
        let trailers = collected.trailers().cloned();
        (length, collected.to_bytes(), trailers)
    }

    #[tokio::test]
    async fn a_json_answer_is_rewritten_whole_and_sent_with_its_length() {
        let list = r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"a"}]}}"#;
        let (length, out, _) =
            whole(json_answer(answer(Full::new(Bytes::from(list))), Empty(Some(JsonRpcId::Number(7))), 1024).await)
                .await;
        assert_eq!(out, r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[]}}"#);
        assert_eq!(length, Some(out.len().to_string()), "the upstream's length is replaced by the answer's");
        // another response passes as it came, the same bytes (not copied when they came in one frame)
        let other = Bytes::from(r#"{"jsonrpc":"2.0","id":8,"result":{"tools":[{"name":"a"}]}}"#);
        let response = json_answer(answer(Full::new(other.clone())), Empty(Some(JsonRpcId::Number(7))), 1024).await;
        assert!(response.body().size_hint().exact() == Some(other.len() as u64));
        let (length, out, _) = whole(response).await;
        assert_eq!((out.as_ptr(), out.len()), (other.as_ptr(), other.len()));
        assert_eq!(length, Some(other.len().to_string()));
        // in several frames: joined, then rewritten; trailers follow
        let mut trailer = http::HeaderMap::new();
        trailer.insert("x-end", http::HeaderValue::from_static("1"));
        let frames = Frames(
            [&list[..10], &list[10..30], &list[30..]]
                .map(|part| Ok(Frame::data(Bytes::copy_from_slice(part.as_bytes()))))
                .into_iter()
                .chain([Ok(Frame::trailers(trailer.clone()))])
                .collect(),
        );
        let (length, out, trailers) =
            whole(json_answer(answer(frames), Empty(Some(JsonRpcId::Number(7))), 1024).await).await;
        assert_eq!(out, r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[]}}"#);
        assert_eq!(length, Some(out.len().to_string()));
        assert_eq!(trailers, Some(trailer));
    }

    #[tokio::test]
    async fn a_json_answer_too_large_not_json_or_failing_is_never_passed_as_it_came() {
        let big = format!(r#"{{"jsonrpc":"2.0","id":1,"result":{{"tools":[{{"name":"{}"}}]}}}}"#, "x".repeat(100));
        // too large, in one frame or past the limit in a later one
        let (length, out, _) =
            whole(json_answer(answer(Full::new(Bytes::from(big.clone()))), Empty(None), 50).await).await;
        assert_eq!((length.as_deref(), &out[..]), (Some("16"), &b"refused TooLarge"[..]));
        let frames =
            Frames([&big[..40], &big[40..]].map(|p| Ok(Frame::data(Bytes::copy_from_slice(p.as_bytes())))).into());
        assert_eq!(whole(json_answer(answer(frames), Empty(None), 50).await).await.1, "refused TooLarge");
        let (_, out, _) = whole(json_answer(answer(Full::new(Bytes::from("nope"))), Empty(None), 50).await).await;
        assert_eq!(out, "refused NotJson");
        // an upstream body that fails fails the answer's body, with no length claimed
        let failing =
            Frames([Ok(Frame::data(Bytes::from_static(b"{\"jsonrpc\""))), Err("upstream reset".into())].into());
        let response = json_answer(answer(failing), Empty(None), 1024).await;
        assert!(response.headers().get("content-length").is_none());
        let err = response.into_body().collect().await.expect_err("the body fails");
        assert_eq!(err.to_string(), "upstream reset");
    }

    #[tokio::test]
    async fn over_limit_and_cut_sse_answers_are_refused() {
        let big = format!(r#"{{"jsonrpc":"2.0","id":1,"result":{{"tools":[{{"name":"{}"}}]}}}}"#, "x".repeat(100));
        // an SSE event past the limit, complete or not
        let sse = format!("data: {big}\n\n");
        assert!(
            collect(ListBody::sse(Full::new(Bytes::from(sse)), Empty(None), 50)).await.contains("refused TooLarge")
        );
        let sse = format!("data: {big}");
        assert!(
            collect(ListBody::sse(Full::new(Bytes::from(sse)), Empty(None), 50)).await.contains("refused TooLarge")
        );
        let cut = "data: {\"jsonrpc\":\"2.0\",\"id\":1";
        assert!(collect(ListBody::sse(Full::new(Bytes::from(cut)), Empty(None), 500)).await.contains("refused Cut"));
    }
}
