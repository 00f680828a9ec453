//! Streaming rewriters that add our extensions to an `initialize` / `server/discover` result.
//!
//! JSON responses are buffered (bounded) and rewritten once complete. SSE responses stay
//! streaming: complete events are handed on as soon as they are complete, only the event carrying
//! the matching response is re-encoded, and once it has passed the rest of the stream is forwarded
//! chunk by chunk without inspection.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use pin_project_lite::pin_project;
use serde_json::{Map, Value};

use crate::body::BoxError;
use crate::extensions::ExtensionSet;
use crate::jsonrpc::JsonRpcId;

/// Adds the server's extensions to the result with a given id.
#[derive(Debug, Clone)]
pub(crate) struct Injector {
    id: JsonRpcId,
    extensions: ExtensionSet,
}

impl Injector {
    pub(crate) fn new(id: JsonRpcId, extensions: ExtensionSet) -> Self {
        Self { id, extensions }
    }

    /// Merges our extensions into `message.result.capabilities.extensions` when `message` is the
    /// successful response we wait for. Settings we offer win over same-named upstream settings;
    /// upstream extensions we do not know are kept. Returns whether the message was the target.
    pub(crate) fn inject(&self, message: &mut Value) -> bool {
        if !message.get("id").is_some_and(|id| self.id.matches(id)) {
            return false;
        }
        let Some(result) = message.get_mut("result").and_then(Value::as_object_mut) else {
            // an error response to our request: nothing to advertise, but it is the target
            return true;
        };
        let capabilities = result.entry("capabilities").or_insert_with(|| Value::Object(Map::new()));
        let Some(capabilities) = capabilities.as_object_mut() else {
            tracing::warn!("upstream result.capabilities is not an object; extensions not advertised");
            return true;
        };
        let extensions = capabilities.entry("extensions").or_insert_with(|| Value::Object(Map::new()));
        let Some(extensions) = extensions.as_object_mut() else {
            tracing::warn!("upstream result.capabilities.extensions is not an object; extensions not advertised");
            return true;
        };
        for (id, ours) in self.extensions.advertised() {
            match (extensions.get_mut(id), ours) {
                (Some(Value::Object(theirs)), Value::Object(ours)) => {
                    for (k, v) in ours {
                        theirs.insert(k.clone(), v.clone());
                    }
                }
                _ => {
                    extensions.insert(id.clone(), ours.clone());
                }
            }
        }
        true
    }

    /// Rewrites a complete JSON body; `None` when it is not the target or not JSON.
    fn rewrite_json(&self, body: &[u8]) -> Option<Bytes> {
        let mut message: Value = serde_json::from_slice(body).ok()?;
        self.inject(&mut message).then(|| Bytes::from(message.to_string()))
    }
}

pin_project! {
    /// Buffers a JSON response (up to `limit` bytes) and rewrites it at the end.
    #[derive(Debug)]
    pub(crate) struct JsonRewrite<B> {
        #[pin]
        body: B,
        buf: BytesMut,
        limit: usize,
        injector: Option<Injector>,
        trailers: Option<Frame<Bytes>>,
        done: bool,
    }
}

impl<B> JsonRewrite<B> {
    pub(crate) fn new(body: B, injector: Injector, limit: usize) -> Self {
        Self { body, buf: BytesMut::new(), limit, injector: Some(injector), trailers: None, done: false }
    }
}

impl<B> Body for JsonRewrite<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            if *this.done {
                if let Some(t) = this.trailers.take() {
                    return Poll::Ready(Some(Ok(t)));
                }
                return Poll::Ready(None);
            }
            let Some(injector) = this.injector.as_ref() else {
                // gave up rewriting (too large): pass the rest through
                return this.body.poll_frame(cx).map_err(Into::into);
            };
            match ready!(this.body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        this.buf.extend_from_slice(&data);
                        if this.buf.len() > *this.limit {
                            tracing::warn!(
                                limit = *this.limit,
                                "response too large to advertise extensions in; passed through unchanged"
                            );
                            *this.injector = None;
                            return Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze()))));
                        }
                    }
                    Err(frame) => {
                        *this.trailers = Some(frame);
                        *this.done = true;
                        let out = finish(injector, this.buf);
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => {
                    *this.done = true;
                    let out = finish(injector, this.buf);
                    if out.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
            }
        }
    }
}

fn finish(injector: &Injector, buf: &mut BytesMut) -> Bytes {
    let raw = buf.split().freeze();
    injector.rewrite_json(&raw).unwrap_or(raw)
}

pin_project! {
    /// Rewrites the one SSE event carrying the target response; everything else streams through.
    #[derive(Debug)]
    pub(crate) struct SseRewrite<B> {
        #[pin]
        body: B,
        // bytes of the current, not yet complete event(s)
        buf: BytesMut,
        // how far `buf` has been scanned for an event end, and whether that point starts a line
        scanned: usize,
        line_start: bool,
        limit: usize,
        injector: Option<Injector>,
        trailers: Option<Frame<Bytes>>,
        ended: bool,
    }
}

impl<B> SseRewrite<B> {
    pub(crate) fn new(body: B, injector: Injector, limit: usize) -> Self {
        Self {
            body,
            buf: BytesMut::new(),
            scanned: 0,
            line_start: true,
            limit,
            injector: Some(injector),
            trailers: None,
            ended: false,
        }
    }
}

impl<B> Body for SseRewrite<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            if !this.buf.is_empty() && (this.injector.is_none() || *this.ended) {
                *this.scanned = 0;
                return Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze()))));
            }
            if *this.ended {
                return Poll::Ready(this.trailers.take().map(Ok));
            }
            if this.injector.is_none() {
                return this.body.poll_frame(cx).map_err(Into::into);
            }
            match ready!(this.body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        this.buf.extend_from_slice(&data);
                        // complete events that stay unchanged are handed on without copying
                        let mut passed = 0;
                        let mut rewritten_stream = None;
                        while let Some(end) = find_event_end(&this.buf[passed..], this.scanned, this.line_start) {
                            *this.scanned = 0;
                            *this.line_start = true;
                            let event = &this.buf[passed..passed + end];
                            match this.injector.as_ref().and_then(|inj| rewrite_event(inj, event)) {
                                Some(rewritten) => {
                                    let mut out = BytesMut::with_capacity(this.buf.len() + rewritten.len());
                                    out.extend_from_slice(&this.buf[..passed]);
                                    out.extend_from_slice(&rewritten);
                                    // the rest of the stream is not inspected any more
                                    out.extend_from_slice(&this.buf[passed + end..]);
                                    this.buf.clear();
                                    *this.injector = None;
                                    rewritten_stream = Some(out);
                                    break;
                                }
                                None => passed += end,
                            }
                        }
                        if let Some(out) = rewritten_stream {
                            return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
                        }
                        if this.injector.is_some() && this.buf.len() - passed > *this.limit {
                            tracing::warn!(
                                limit = *this.limit,
                                "SSE event too large to advertise extensions in; passed through unchanged"
                            );
                            *this.injector = None;
                        }
                        if passed > 0 {
                            return Poll::Ready(Some(Ok(Frame::data(this.buf.split_to(passed).freeze()))));
                        }
                    }
                    Err(trailers) => {
                        *this.trailers = Some(trailers);
                        *this.ended = true;
                    }
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => *this.ended = true,
            }
        }
    }
}

/// Finds the end (exclusive) of the first complete event in `buf`, resuming a scan that stopped at
/// `*scanned`. An event ends with an empty line; lines end with CRLF, LF or CR. A CR at the very
/// end of `buf` is left unscanned until the next byte shows whether an LF follows.
fn find_event_end(buf: &[u8], scanned: &mut usize, line_start: &mut bool) -> Option<usize> {
    let mut i = *scanned;
    while i < buf.len() {
        match buf[i] {
            b'\n' => {
                if *line_start {
                    return Some(i + 1);
                }
                *line_start = true;
                i += 1;
            }
            b'\r' => {
                let Some(next) = buf.get(i + 1) else { break };
                let len = if *next == b'\n' { 2 } else { 1 };
                if *line_start {
                    return Some(i + len);
                }
                *line_start = true;
                i += len;
            }
            _ => {
                *line_start = false;
                i += 1;
            }
        }
    }
    *scanned = i;
    None
}

/// Splits an event into lines, each with its terminator.
fn lines(event: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < event.len() {
        let term = match event[i] {
            b'\n' => 1,
            b'\r' if event.get(i + 1) == Some(&b'\n') => 2,
            b'\r' => 1,
            _ => {
                i += 1;
                continue;
            }
        };
        out.push((&event[start..i], &event[i..i + term]));
        i += term;
        start = i;
    }
    if start < event.len() {
        out.push((&event[start..], &[][..]));
    }
    out
}

fn data_value(line: &[u8]) -> Option<&[u8]> {
    if line == b"data" {
        return Some(b"");
    }
    let rest = line.strip_prefix(b"data:")?;
    Some(rest.strip_prefix(b" ").unwrap_or(rest))
}

/// Rewrites the event when its data is the target response; `None` otherwise (pass it unchanged).
fn rewrite_event(injector: &Injector, event: &[u8]) -> Option<Bytes> {
    // cheap pre-filter on the raw bytes: only responses are candidates (no allocation otherwise)
    if !event.windows(8).any(|w| w == b"\"result\"" || w == b"\"error\":") {
        return None;
    }
    let lines = lines(event);
    let mut data = Vec::new();
    for (line, _) in &lines {
        if let Some(value) = data_value(line) {
            if !data.is_empty() {
                data.push(b'\n');
            }
            data.extend_from_slice(value);
        }
    }
    // cheap pre-filter: only responses are candidates
    if data.is_empty() || !data.windows(8).any(|w| w == b"\"result\"" || w == b"\"error\":") {
        return None;
    }
    let mut message: Value = serde_json::from_slice(&data).ok()?;
    if !injector.inject(&mut message) {
        return None;
    }
    let json = message.to_string();
    let mut out = BytesMut::with_capacity(event.len() + 256);
    let mut wrote_data = false;
    for (line, term) in &lines {
        if data_value(line).is_some() {
            if !wrote_data {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(json.as_bytes());
                out.extend_from_slice(if term.is_empty() { b"\n" } else { term });
                wrote_data = true;
            }
        } else {
            out.extend_from_slice(line);
            out.extend_from_slice(term);
        }
    }
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use http_body_util::BodyExt;
    use serde_json::json;

    use super::*;

    /// A body that yields the given chunks one poll at a time.
    struct Chunks(VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    fn chunks(parts: &[&str]) -> Chunks {
        Chunks(parts.iter().map(|p| Bytes::copy_from_slice(p.as_bytes())).collect())
    }

    fn injector(id: i64) -> Injector {
        let set = ExtensionSet::builder().with_own("audit", json!({"chain": true})).expect("valid").build();
        Injector::new(JsonRpcId::Number(id), set)
    }

    async fn frames<B: Body<Data = Bytes, Error = BoxError> + Unpin>(mut body: B) -> Vec<Bytes> {
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("frame").into_data() {
                out.push(data);
            }
        }
        out
    }

    fn sse_json(event: &str) -> Value {
        let data: String = event.lines().filter_map(|l| l.strip_prefix("data: ")).collect::<Vec<_>>().join("\n");
        serde_json::from_str(&data).expect("event data is JSON")
    }

    #[test]
    fn inject_merges_with_upstream() {
        let inj = injector(1);
        let mut msg = json!({"jsonrpc":"2.0","id":1,"result":{"capabilities":{"tools":{},"extensions":{
            "io.modelcontextprotocol/ui": {"mimeTypes": ["text/html"]},
            "io.github.mcp-enterprise/audit": {"upstream": 1, "chain": false}}}}});
        assert!(inj.inject(&mut msg));
        let ext = &msg["result"]["capabilities"]["extensions"];
        assert_eq!(ext["io.modelcontextprotocol/ui"], json!({"mimeTypes": ["text/html"]}));
        assert_eq!(ext["io.github.mcp-enterprise/audit"], json!({"upstream": 1, "chain": true}));
        assert_eq!(msg["result"]["capabilities"]["tools"], json!({}));
        // no capabilities at all: created
        let mut msg = json!({"jsonrpc":"2.0","id":1,"result":{}});
        assert!(inj.inject(&mut msg));
        assert_eq!(
            msg["result"]["capabilities"]["extensions"]["io.github.mcp-enterprise/audit"],
            json!({"chain": true})
        );
        // other ids are left alone
        let mut msg = json!({"jsonrpc":"2.0","id":2,"result":{}});
        assert!(!inj.inject(&mut msg));
        assert_eq!(msg, json!({"jsonrpc":"2.0","id":2,"result":{}}));
    }

    #[tokio::test]
    async fn json_rewrite_across_chunks() {
        let body = JsonRewrite::new(
            chunks(&[r#"{"jsonrpc":"2.0","id":1,"res"#, r#"ult":{"capabilities":{}}}"#]),
            injector(1),
            1 << 20,
        );
        let out = frames(body).await.concat();
        let v: Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["result"]["capabilities"]["extensions"]["io.github.mcp-enterprise/audit"], json!({"chain": true}));
    }

    #[tokio::test]
    async fn json_rewrite_over_limit_passes_through() {
        let parts = [r#"{"jsonrpc":"2.0","id":1,"#, r#""result":{"capabilities":{}}}"#];
        let body = JsonRewrite::new(chunks(&parts), injector(1), 10);
        assert_eq!(frames(body).await.concat(), parts.concat().as_bytes());
        // non-JSON passes through unchanged
        let body = JsonRewrite::new(chunks(&["not json"]), injector(1), 1 << 20);
        assert_eq!(frames(body).await.concat(), b"not json"[..]);
    }

    #[tokio::test]
    async fn sse_rewrite_split_inside_event() {
        let progress =
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n";
        let keepalive = ":\n\n";
        let response =
            "event: message\nid: 7\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"capabilities\":{}}}\n\n";
        let after = "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"late\":true}}\n\n";
        // split the response event in the middle of its data line, and glue the keep-alive to the progress event
        let (r1, r2) = response.split_at(40);
        let input = [&format!("{progress}{keepalive}"), r1, r2, after];
        let body = SseRewrite::new(chunks(&input), injector(1), 1 << 20);
        let out = frames(body).await;
        // the untouched events come out first, byte for byte, before the response completes
        assert_eq!(out[0], format!("{progress}{keepalive}").as_bytes());
        let text = String::from_utf8(out[1..].concat()).expect("utf8");
        let events: Vec<&str> = text.split_inclusive("\n\n").collect();
        assert_eq!(events.len(), 2, "{text}");
        assert!(events[0].starts_with("event: message\nid: 7\ndata: "), "{}", events[0]);
        let v = sse_json(events[0]);
        assert_eq!(v["result"]["capabilities"]["extensions"]["io.github.mcp-enterprise/audit"], json!({"chain": true}));
        // only the first matching event is rewritten; the rest is forwarded verbatim
        assert_eq!(events[1], after);
    }

    #[tokio::test]
    async fn sse_crlf_and_multiline_data() {
        let input = "data: {\"jsonrpc\":\"2.0\",\r\ndata: \"id\":1,\"result\":{}}\r\n\r\n";
        // split between CR and LF
        let (a, b) = input.split_at(input.len() - 3);
        let body = SseRewrite::new(chunks(&[a, b]), injector(1), 1 << 20);
        let text = String::from_utf8(frames(body).await.concat()).expect("utf8");
        assert!(text.ends_with("\r\n\r\n"), "{text:?}");
        let data = text.trim_end().strip_prefix("data: ").expect("data line");
        let v: Value = serde_json::from_str(data).expect("json");
        assert!(v["result"]["capabilities"]["extensions"].is_object());
    }

    #[tokio::test]
    async fn sse_oversized_event_passes_through() {
        let big = format!("data: {{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{{\"x\":\"{}\"}}}}\n\n", "a".repeat(100));
        let (a, b) = big.split_at(60);
        let body = SseRewrite::new(chunks(&[a, b]), injector(1), 50);
        assert_eq!(frames(body).await.concat(), big.as_bytes());
    }

    #[tokio::test]
    async fn sse_incomplete_tail_is_flushed() {
        let body = SseRewrite::new(chunks(&["data: partial"]), injector(1), 1 << 20);
        assert_eq!(frames(body).await.concat(), b"data: partial"[..]);
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        #[derive(Debug, Clone)]
        enum Event {
            Progress(String),
            Answer,
            OtherAnswer,
            Comment(String),
        }

        fn event() -> impl Strategy<Value = Event> {
            prop_oneof![
                "[a-z \"\\\\]{0,40}".prop_map(Event::Progress),
                Just(Event::Answer),
                Just(Event::OtherAnswer),
                "[a-z ]{0,20}".prop_map(Event::Comment),
            ]
        }

        fn render(events: &[(Event, bool)]) -> Vec<u8> {
            let mut out = String::new();
            for (e, crlf) in events {
                let nl = if *crlf { "\r\n" } else { "\n" };
                match e {
                    Event::Progress(text) => {
                        let data =
                            json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"message": text}});
                        out.push_str(&format!("event: message{nl}data: {data}{nl}{nl}"));
                    }
                    Event::Answer => out.push_str(&format!(
                        "data: {{\"jsonrpc\":\"2.0\",\"id\":1,{nl}data: \"result\":{{\"capabilities\":{{}}}}}}{nl}{nl}"
                    )),
                    Event::OtherAnswer => {
                        out.push_str(&format!("data: {{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{{}}}}{nl}{nl}"))
                    }
                    Event::Comment(text) => out.push_str(&format!(": {text}{nl}{nl}")),
                }
            }
            out.into_bytes()
        }

        /// The oracle: split the whole stream into events, rewrite the first one that answers
        /// the request, pass everything else through byte for byte.
        fn oracle(stream: &[u8]) -> Vec<u8> {
            let inj = injector(1);
            let mut out = Vec::new();
            let mut rest = stream;
            let mut done = false;
            let mut scanned = 0;
            let mut line_start = true;
            while let Some(end) = find_event_end(rest, &mut scanned, &mut line_start) {
                scanned = 0;
                line_start = true;
                let event = &rest[..end];
                match (!done).then(|| rewrite_event(&inj, event)).flatten() {
                    Some(rewritten) => {
                        out.extend_from_slice(&rewritten);
                        done = true;
                    }
                    None => out.extend_from_slice(event),
                }
                rest = &rest[end..];
            }
            out.extend_from_slice(rest);
            out
        }

        proptest! {
            #[test]
            fn every_chunking_gives_the_oracle_output(
                events in proptest::collection::vec((event(), any::<bool>()), 0..12),
                cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
            ) {
                let stream = render(&events);
                let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
                points.sort_unstable();
                points.dedup();
                let mut parts = Vec::new();
                let mut last = 0;
                for p in points.into_iter().chain([stream.len()]) {
                    parts.push(Bytes::copy_from_slice(&stream[last..p]));
                    last = p;
                }
                let rt = tokio::runtime::Builder::new_current_thread().build().expect("rt");
                let body = SseRewrite::new(Chunks(parts.into_iter().collect()), injector(1), 1 << 20);
                let got = rt.block_on(body.collect()).expect("body").to_bytes();
                let expected = oracle(&stream);
                prop_assert_eq!(got.as_ref(), expected.as_slice());
                // the answer, when present, carries the extensions; nothing else changed
                if events.iter().any(|(e, _)| matches!(e, Event::Answer)) {
                    prop_assert!(String::from_utf8_lossy(&got).contains("io.github.mcp-enterprise/audit"));
                } else {
                    prop_assert_eq!(got.as_ref(), stream.as_slice());
                }
            }
        }
    }
}
