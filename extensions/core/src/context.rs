//! [`RequestContext`]: what the pack's layers share about one request, in **one** request
//! extension.
//!
//! An `http::Extensions` map is allocated by its first insert and boxes every value it holds, so
//! each extension a layer adds costs an allocation (and its free) per request. The pack's own
//! per-request facts — the message [`InspectLayer`](crate::InspectLayer) parsed, the layers
//! passed so far ([`Visited`]), the negotiated extensions — live together in one
//! `RequestContext`: one map entry and one box for all of them.
//!
//! Read them through the accessors, which every layer of the pack uses:
//! [`McpRequest::of`], [`NegotiatedExtensions::of`] and the [`wiring`](crate::wiring) functions
//! ([`visited`](crate::wiring::visited), [`has_visited`](crate::wiring::has_visited)). Responses are
//! unchanged: `InspectLayer` leaves the [`McpRequest`] itself in the response extensions, for the
//! layers outside it, and [`McpRequest::of`] finds it there too.
//!
//! ```
//! use mcp_enterprise_core::{McpRequest, RequestContext};
//!
//! let mcp = McpRequest::parse(&http::HeaderMap::new(), br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#, |_| None)?;
//! let mut req = http::Request::new(());
//! RequestContext::get_or_default(req.extensions_mut()).set_mcp(mcp);
//! mcp_enterprise_core::wiring::visit(&mut req, "inspect");
//! assert_eq!(McpRequest::of(req.extensions()).and_then(McpRequest::method), Some("tools/list"));
//! assert_eq!(mcp_enterprise_core::wiring::visited(&req), ["inspect"]);
//! # Ok::<(), mcp_enterprise_core::Rejection>(())
//! ```

use http::Extensions;

use crate::extensions::NegotiatedExtensions;
use crate::message::McpRequest;
use crate::wiring::Visited;

/// The pack's per-request facts, kept in one request extension (see the [module](self)).
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    mcp: Option<McpRequest>,
    visited: Visited,
    negotiated: Option<NegotiatedExtensions>,
}

impl RequestContext {
    /// The context in these (request) extensions, if a layer of the pack has set one.
    #[inline]
    pub fn get(extensions: &Extensions) -> Option<&Self> {
        extensions.get::<Self>()
    }

    /// The context in these extensions, inserted empty if there is none yet.
    pub fn get_or_default(extensions: &mut Extensions) -> &mut Self {
        // not `Extensions::get_or_insert_default`: it needs a newer `http` than the workspace asks for
        if extensions.get_mut::<Self>().is_none() {
            extensions.insert(Self::default());
        }
        extensions.get_mut::<Self>().expect("inserted above")
    }

    /// Applies `change` to the context in these extensions, inserting it (once, already changed)
    /// if there is none yet.
    pub(crate) fn update(extensions: &mut Extensions, change: impl FnOnce(&mut Self)) {
        match extensions.get_mut::<Self>() {
            Some(context) => change(context),
            None => {
                let mut context = Self::default();
                change(&mut context);
                extensions.insert(context);
            }
        }
    }

    /// The message [`InspectLayer`](crate::InspectLayer) parsed, if it has.
    #[inline]
    pub fn mcp(&self) -> Option<&McpRequest> {
        self.mcp.as_ref()
    }

    /// Sets the inspected message (what `InspectLayer` does; tests and other front ends that
    /// parse the message themselves may too).
    pub fn set_mcp(&mut self, mcp: McpRequest) {
        self.mcp = Some(mcp);
    }

    /// Takes the inspected message out (a terminal service that no longer needs it there).
    pub fn take_mcp(&mut self) -> Option<McpRequest> {
        self.mcp.take()
    }

    /// The pack layers passed so far, outermost first.
    #[inline]
    pub fn visited(&self) -> &Visited {
        &self.visited
    }

    /// Records that `layer` passes the request inward.
    pub fn visit(&mut self, layer: &'static str) {
        self.visited.push(layer);
    }

    /// The extensions both sides support, once [`NegotiateLayer`](crate::NegotiateLayer) has
    /// negotiated them.
    #[inline]
    pub fn negotiated(&self) -> Option<&NegotiatedExtensions> {
        self.negotiated.as_ref()
    }

    /// Sets the negotiated extensions (what `NegotiateLayer` does).
    pub fn set_negotiated(&mut self, negotiated: NegotiatedExtensions) {
        self.negotiated = Some(negotiated);
    }
}

impl McpRequest {
    /// The inspected message in these extensions: in a request, the one in its
    /// [`RequestContext`]; in a response (or a request without a context holding one), an
    /// `McpRequest` inserted as an extension of its own — what `InspectLayer` leaves in the
    /// response for the layers outside it.
    #[inline]
    pub fn of(extensions: &Extensions) -> Option<&McpRequest> {
        match RequestContext::get(extensions).and_then(RequestContext::mcp) {
            Some(mcp) => Some(mcp),
            None => extensions.get::<McpRequest>(),
        }
    }

    /// Takes the inspected message out of these extensions (from the [`RequestContext`], else an
    /// `McpRequest` of its own).
    pub fn take(extensions: &mut Extensions) -> Option<McpRequest> {
        match extensions.get_mut::<RequestContext>().and_then(RequestContext::take_mcp) {
            Some(mcp) => Some(mcp),
            None => extensions.remove::<McpRequest>(),
        }
    }
}

impl NegotiatedExtensions {
    /// The negotiated extensions in these request extensions (the [`RequestContext`]'s, else a
    /// `NegotiatedExtensions` inserted as an extension of its own).
    #[inline]
    pub fn of(extensions: &Extensions) -> Option<&NegotiatedExtensions> {
        match RequestContext::get(extensions).and_then(RequestContext::negotiated) {
            Some(negotiated) => Some(negotiated),
            None => extensions.get::<NegotiatedExtensions>(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(method: &str) -> McpRequest {
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}"}}"#);
        McpRequest::parse(&http::HeaderMap::new(), body.as_bytes(), |_| None).expect("valid")
    }

    #[test]
    fn one_extension_holds_the_message_the_visits_and_the_negotiation() {
        let mut ext = Extensions::new();
        assert!(RequestContext::get(&ext).is_none() && McpRequest::of(&ext).is_none());
        let ctx = RequestContext::get_or_default(&mut ext);
        ctx.set_mcp(parsed("tools/list"));
        ctx.visit("inspect");
        ctx.set_negotiated(NegotiatedExtensions::default());
        RequestContext::get_or_default(&mut ext).visit("sso");
        let ctx = RequestContext::get(&ext).expect("set");
        assert_eq!(ctx.visited().layers(), ["inspect", "sso"]);
        assert_eq!(McpRequest::of(&ext).and_then(McpRequest::method), Some("tools/list"));
        assert!(NegotiatedExtensions::of(&ext).is_some());
        assert_eq!(
            McpRequest::take(&mut ext).and_then(|m| m.method().map(str::to_owned)).as_deref(),
            Some("tools/list")
        );
        assert!(McpRequest::of(&ext).is_none(), "taken");
        assert_eq!(RequestContext::get(&ext).expect("kept").visited().layers(), ["inspect", "sso"]);
    }

    #[test]
    fn a_message_of_its_own_is_found_where_the_context_has_none() {
        // a response: InspectLayer leaves the message as an extension of its own
        let mut ext = Extensions::new();
        ext.insert(parsed("tools/call"));
        assert_eq!(McpRequest::of(&ext).and_then(McpRequest::method), Some("tools/call"));
        // a context without a message does not hide it
        RequestContext::get_or_default(&mut ext).visit("x");
        assert_eq!(McpRequest::of(&ext).and_then(McpRequest::method), Some("tools/call"));
        // the context's message comes first
        RequestContext::get_or_default(&mut ext).set_mcp(parsed("tools/list"));
        assert_eq!(McpRequest::of(&ext).and_then(McpRequest::method), Some("tools/list"));
        assert!(McpRequest::take(&mut ext).is_some() && McpRequest::take(&mut ext).is_some());
        assert!(McpRequest::take(&mut ext).is_none());
        ext.insert(NegotiatedExtensions::default());
        assert!(NegotiatedExtensions::of(&ext).is_some());
    }
}
