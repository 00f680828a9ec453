//! The response body wrapper that completes a record when the response has been sent.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use aws_lc_rs::hmac;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use mcp_enterprise_core::{BoxError, JsonRpcId, McpBody};
use pin_project_lite::pin_project;
use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;

use crate::layer::Recorder;
use crate::record::Departure;

/// How much of the end of a response is kept to find a JSON-RPC error code in it.
const TAIL: usize = 64 * 1024;

pub(crate) struct Pending {
    pub(crate) departure: Departure,
    pub(crate) recorder: Arc<Recorder>,
    pub(crate) permit: Option<OwnedSemaphorePermit>,
    pub(crate) bytes: u64,
    pub(crate) tail: Vec<u8>,
    /// Boxed: an HMAC context is ~700 bytes, which every call's body would otherwise carry and
    /// move whether results are digested or not.
    pub(crate) result_mac: Option<Box<hmac::Context>>,
    /// The span the call was served in (the enqueueing's parent in a trace).
    pub(crate) span: tracing::Span,
}

impl Pending {
    fn observe(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        if let Some(mac) = self.result_mac.as_mut() {
            mac.update(data);
        }
        if data.len() >= TAIL {
            self.tail.clear();
            self.tail.extend_from_slice(&data[data.len() - TAIL..]);
        } else {
            self.tail.extend_from_slice(data);
            if self.tail.len() > 2 * TAIL {
                self.tail.drain(..self.tail.len() - TAIL);
            }
        }
    }

    fn finish(self, aborted: bool) {
        self.finish_with(&[], aborted);
    }

    /// [`finish`](Self::finish) with `last`, the body's last data, not observed yet: an answer
    /// that came in one frame is looked at where it is, never copied into the tail.
    fn finish_with(mut self, last: &[u8], aborted: bool) {
        let tail: &[u8] = if self.tail.is_empty() {
            self.bytes += last.len() as u64;
            if let Some(mac) = self.result_mac.as_mut() {
                mac.update(last);
            }
            &last[last.len().saturating_sub(TAIL)..]
        } else {
            self.observe(last);
            &self.tail
        };
        let code = if self.bytes as usize > tail.len() && !self.departure.sse {
            None // a JSON body larger than the kept tail is a result, not an error object
        } else {
            error_code(tail, self.departure.sse, self.departure.request_id.as_ref())
        };
        let Pending { departure, recorder, permit, bytes, tail: _, result_mac, span } = self;
        let _enqueue = mcp_enterprise_core::trace::step(&span, "audit").entered();
        let digest = result_mac.map(|mac| recorder.redaction.digest_bytes(*mac));
        let record = departure.finish(bytes, code, aborted, digest);
        recorder.shared.push(record, permit);
    }
}

pin_project! {
    /// A response body that records the call when it ends (or is dropped unfinished).
    pub struct AuditBody<B> {
        #[pin]
        inner: McpBody<B>,
        pending: Option<Pending>,
        empty: bool,
    }

    impl<B> PinnedDrop for AuditBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(pending) = this.pending.take() {
                // dropped before its end: sent completely only if there was nothing to send
                let complete = *this.empty;
                pending.finish(!complete);
            }
        }
    }
}

impl<B> AuditBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    pub(crate) fn new(inner: McpBody<B>, pending: Option<Pending>) -> Self {
        let empty = inner.is_end_stream();
        Self { inner, pending, empty }
    }
}

impl<B> std::fmt::Debug for AuditBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditBody").field("recording", &self.pending.is_some()).finish_non_exhaustive()
    }
}

impl<B> Body for AuditBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                // a body that knows it has ended may not be polled again
                if this.inner.is_end_stream() {
                    if let Some(pending) = this.pending.take() {
                        pending.finish_with(f.data_ref().map_or(&[][..], |d| &d[..]), false);
                    }
                } else if let (Some(data), Some(pending)) = (f.data_ref(), this.pending.as_mut()) {
                    pending.observe(data);
                }
            }
            Some(Err(_)) => {
                if let Some(pending) = this.pending.take() {
                    pending.finish(true);
                }
            }
            None => {
                if let Some(pending) = this.pending.take() {
                    pending.finish(false);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The members of a JSON-RPC answer the trail needs; everything else (a result of any size) is
/// skipped by the parser without being built.
#[derive(serde::Deserialize)]
struct Answer {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    error: Option<AnswerError>,
}

#[derive(serde::Deserialize)]
struct AnswerError {
    #[serde(default)]
    code: Option<Value>,
}

impl Answer {
    fn code(&self) -> Option<i64> {
        self.error.as_ref()?.code.as_ref()?.as_i64()
    }
}

/// The JSON-RPC error code in a response: the body itself (JSON) or the last response event
/// answering `id` (SSE).
fn error_code(tail: &[u8], sse: bool, id: Option<&JsonRpcId>) -> Option<i64> {
    if !sse {
        // most answers are results: no `"error"` member, nothing to parse
        if !tail.windows(7).any(|w| w[0] == b'"' && w[6] == b'"' && w == b"\"error\"") {
            return None;
        }
        return serde_json::from_slice::<Answer>(tail).ok()?.code();
    }
    let text = String::from_utf8_lossy(tail);
    let mut code = None;
    for event in text.replace("\r\n", "\n").split("\n\n") {
        let data: Vec<&str> =
            event.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| d.strip_prefix(' ').unwrap_or(d)).collect();
        if data.is_empty() {
            continue;
        }
        let Ok(answer) = serde_json::from_str::<Answer>(&data.join("\n")) else { continue };
        let answers = match (&answer.id, id) {
            (Some(got), Some(JsonRpcId::Number(n))) => got.as_i64() == Some(*n),
            (Some(got), Some(JsonRpcId::String(s))) => got.as_str() == Some(s),
            _ => false,
        };
        if answers {
            code = answer.code();
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_from_json_and_sse() {
        assert_eq!(
            error_code(br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"x"}}"#, false, None),
            Some(-32602)
        );
        assert_eq!(error_code(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#, false, None), None);
        assert_eq!(error_code(b"not json", false, None), None);
        assert_eq!(error_code(br#"{"jsonrpc":"2.0","id":1,"error":"text"}"#, false, None), None);
        assert_eq!(error_code(br#"{"jsonrpc":"2.0","id":1,"error":{"code":1.5,"message":"x"}}"#, false, None), None);
        let result_naming_errors = br#"{"jsonrpc":"2.0","id":1,"result":{"structuredContent":{"error":{"code":5}}}}"#;
        assert_eq!(error_code(result_naming_errors, false, None), None, "a result mentioning errors is no error");
        let sse = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n\
                    data: {\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32001,\"message\":\"m\"}}\r\n\r\n";
        assert_eq!(error_code(sse, true, Some(&JsonRpcId::Number(7))), Some(-32001));
        assert_eq!(error_code(sse, true, Some(&JsonRpcId::Number(8))), None, "another request's answer");
        let ok = b"data: {\"jsonrpc\":\"2.0\",\"id\":\"a\",\"result\":{}}\n\n";
        assert_eq!(error_code(ok, true, Some(&JsonRpcId::String("a".into()))), None);
    }
}
