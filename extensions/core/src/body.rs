//! [`McpBody`]: the body type of requests and responses passing through this pack's layers.
//!
//! Layers stay generic over the inner body `B`. A layer that answers by itself (a rejection, a
//! metadata document) or hands on a body it had to read (the inspected request) uses the `full`
//! form; every other body passes through untouched. A layer that rewrites a response (capability
//! negotiation) boxes its streaming rewriter into a [`PackBody`] once, so `McpBody` stays as small
//! as its inner body: every request of the stack is moved with it.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// The boxed error type of [`McpBody`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    /// A body that is either the inner body or a buffered one.
    #[derive(Debug)]
    pub struct McpBody<B> {
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
    }
}

/// The error a server's request body reports when the body did not arrive within the server's
/// body read timeout. [`InspectLayer`](crate::InspectLayer) answers it with `408` instead of the
/// `400` of other read errors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, thiserror::Error)]
#[error("the request body was not received in time")]
pub struct BodyTimeout;

impl<B> McpBody<B> {
    /// Wraps an inner body unchanged.
    pub fn new(body: B) -> Self {
        Self { kind: Kind::Inner { body } }
    }

    /// A body made of these bytes.
    pub fn full(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        Self { kind: Kind::Full { data: (!data.is_empty()).then_some(data) } }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self { kind: Kind::Full { data: None } }
    }
}

impl<B> From<Bytes> for McpBody<B> {
    fn from(data: Bytes) -> Self {
        Self::full(data)
    }
}

impl<B> Body for McpBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            KindProj::Inner { body } => match ready!(body.poll_frame(cx)) {
                Some(Ok(frame)) => Poll::Ready(Some(Ok(frame))),
                Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
                None => Poll::Ready(None),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full { data } => data.is_none(),
            Kind::Inner { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full { data } => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Inner { body } => body.size_hint(),
        }
    }
}

/// The one response body type of the pack: every layer answers with it, whatever the inner
/// service's body is, so optional layers compose with `Either`/`option_layer` without an enum per
/// combination.
///
/// [`PackBody::new`] boxes a foreign body once; a `PackBody` given to it again is returned as it is
/// (no second box), so a stack of layers costs one allocation for the inner service's body.
pub struct PackBody {
    kind: PackKind,
}

enum PackKind {
    Full(Option<Bytes>),
    Boxed(Pin<Box<dyn Body<Data = Bytes, Error = BoxError> + Send + 'static>>),
}

impl std::fmt::Debug for PackBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            PackKind::Full(data) => {
                f.debug_struct("PackBody").field("len", &data.as_ref().map_or(0, Bytes::len)).finish()
            }
            PackKind::Boxed(_) => f.debug_struct("PackBody").finish_non_exhaustive(),
        }
    }
}

impl Default for PackBody {
    fn default() -> Self {
        Self::empty()
    }
}

impl PackBody {
    /// Wraps any body (a `PackBody` is returned unchanged, a `Full<Bytes>` is kept as its bytes:
    /// neither is boxed).
    pub fn new<B>(body: B) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let mut slot = Some(body);
        let any = &mut slot as &mut dyn std::any::Any;
        if let Some(same) = any.downcast_mut::<Option<PackBody>>() {
            return same.take().unwrap_or_default();
        }
        if let Some(full) = any.downcast_mut::<Option<http_body_util::Full<Bytes>>>().and_then(Option::take) {
            return Self { kind: PackKind::Full(full_bytes(full)) };
        }
        match slot {
            Some(body) => Self { kind: PackKind::Boxed(Box::pin(McpBody::new(body))) },
            None => Self::empty(),
        }
    }

    /// A body made of these bytes.
    pub fn full(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        Self { kind: PackKind::Full((!data.is_empty()).then_some(data)) }
    }

    /// Boxes a body of the pack's own error type as it is (a streaming rewriter: one box, no
    /// `McpBody` around it).
    pub(crate) fn boxed<B>(body: B) -> Self
    where
        B: Body<Data = Bytes, Error = BoxError> + Send + 'static,
    {
        Self { kind: PackKind::Boxed(Box::pin(body)) }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self { kind: PackKind::Full(None) }
    }
}

/// The bytes of a `Full` body: its one data frame, ready at once (`None` when empty).
fn full_bytes(mut full: http_body_util::Full<Bytes>) -> Option<Bytes> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match Pin::new(&mut full).poll_frame(&mut cx) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().ok().filter(|d| !d.is_empty()),
        _ => None,
    }
}

impl From<Bytes> for PackBody {
    fn from(data: Bytes) -> Self {
        Self::full(data)
    }
}

impl Body for PackBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().kind {
            PackKind::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            PackKind::Boxed(body) => body.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            PackKind::Full(data) => data.is_none(),
            PackKind::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            PackKind::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            PackKind::Boxed(body) => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod pack_body_tests {
    use super::*;

    #[test]
    fn an_mcp_body_is_as_small_as_its_inner_body() {
        // every request of a stack is moved with its body: no rewriter state inline
        type Inner = http_body_util::Full<Bytes>;
        assert!(std::mem::size_of::<McpBody<Inner>>() <= std::mem::size_of::<Option<Bytes>>() + 8);
        assert!(std::mem::size_of::<McpBody<PackBody>>() <= std::mem::size_of::<PackBody>() + 8);
    }

    #[test]
    fn a_rewriter_is_boxed_once() {
        let boxed = PackBody::boxed(McpBody::<PackBody>::full("rewritten"));
        assert!(matches!(boxed.kind, PackKind::Boxed(_)));
        assert_eq!(boxed.size_hint().exact(), Some(9));
    }

    #[test]
    fn a_pack_body_is_not_boxed_twice() {
        let inner = PackBody::full("abc");
        let again = PackBody::new(inner);
        assert!(matches!(again.kind, PackKind::Full(Some(ref d)) if d == "abc"));
        let boxed = PackBody::new(McpBody::<PackBody>::full("x"));
        assert!(matches!(boxed.kind, PackKind::Boxed(_)));
        let rewrapped = PackBody::new(boxed);
        assert!(matches!(rewrapped.kind, PackKind::Boxed(_)));
        assert_eq!(rewrapped.size_hint().exact(), Some(1));
    }

    #[test]
    fn a_full_body_is_kept_as_its_bytes() {
        let full = PackBody::new(http_body_util::Full::new(Bytes::from_static(b"answer")));
        assert!(matches!(full.kind, PackKind::Full(Some(ref d)) if d == "answer"));
        assert_eq!(full.size_hint().exact(), Some(6));
        let empty = PackBody::new(http_body_util::Full::new(Bytes::new()));
        assert!(matches!(empty.kind, PackKind::Full(None)) && empty.is_end_stream());
        // any other body is boxed once
        let other = PackBody::new(http_body_util::Empty::<Bytes>::new());
        assert!(matches!(other.kind, PackKind::Boxed(_)));
    }
}
