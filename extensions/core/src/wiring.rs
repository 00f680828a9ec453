//! The contracts between the pack's layers, checked on every request so that a stack put together
//! in a wrong order refuses requests instead of serving them.
//!
//! Each layer of the pack records itself in the request's [`Visited`] list (kept in its
//! [`RequestContext`]) as it passes the request inward. A layer that relies on another one outside it checks the list and, when the
//! prerequisite is missing, answers `500` with a JSON-RPC internal error naming it (a
//! [`Miswired`] and a [`Denial`] in the response extensions; logged once per process at error
//! level). The contracts:
//!
//! | layer | needs, outside it |
//! |---|---|
//! | audit | nothing: it must be outermost (it records every refusal of the layers inside) |
//! | policy | inspection (`InspectLayer`), which parses the call it decides on |
//! | integrity | inspection, which parses the call and the list request it checks |
//! | sso with per-method scope rules | inspection |
//! | an authentication layer that passes other credentials on | an authentication layer inside, armed by [`AuthChain`](crate::auth::AuthChain) |

use std::sync::Mutex;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};

use crate::context::RequestContext;
use crate::denial::Denial;
use crate::jsonrpc::{JsonRpcError, codes};

/// The pack layers a request has passed so far, outermost first (in the request's
/// [`RequestContext`]).
#[derive(Debug, Clone, Default)]
pub struct Visited {
    /// The first [`INLINE_LAYERS`] layers, without an allocation of their own.
    inline: [&'static str; INLINE_LAYERS],
    len: usize,
    /// Layers past the inline ones (a stack deeper than the pack's own).
    more: Vec<&'static str>,
}

impl PartialEq for Visited {
    fn eq(&self, other: &Self) -> bool {
        self.layers() == other.layers()
    }
}

impl Eq for Visited {}

/// Layers a [`Visited`] holds inline: more than the pack has.
const INLINE_LAYERS: usize = 10;

impl Visited {
    pub(crate) fn push(&mut self, layer: &'static str) {
        if self.len < INLINE_LAYERS && self.more.is_empty() {
            self.inline[self.len] = layer;
            self.len += 1;
        } else {
            if self.more.is_empty() {
                self.more.extend_from_slice(&self.inline[..self.len]);
            }
            self.more.push(layer);
        }
    }

    /// Whether `layer` has been passed.
    pub fn contains(&self, layer: &str) -> bool {
        self.layers().contains(&layer)
    }

    /// The layers, outermost first.
    pub fn layers(&self) -> &[&'static str] {
        if self.more.is_empty() { &self.inline[..self.len] } else { &self.more }
    }

    /// Whether no pack layer has been passed.
    pub fn is_empty(&self) -> bool {
        self.layers().is_empty()
    }
}

/// Records that `layer` passes `req` inward.
pub fn visit<B>(req: &mut Request<B>, layer: &'static str) {
    RequestContext::update(req.extensions_mut(), |c| c.visit(layer));
}

/// For a layer that decides on the parsed call: records that `layer` passes `req` inward, or,
/// without `InspectLayer` outside it, returns the [`Miswired`] it must answer with (`needs` says
/// what it needs, in words).
pub fn enter_inspected<B>(req: &mut Request<B>, layer: &'static str, needs: &'static str) -> Result<(), Miswired> {
    if !has_visited(req, "inspect") {
        return Err(Miswired::new(layer, needs));
    }
    visit(req, layer);
    Ok(())
}

/// Whether `req` has passed `layer`.
pub fn has_visited<B>(req: &Request<B>, layer: &str) -> bool {
    RequestContext::get(req.extensions()).is_some_and(|c| c.visited().contains(layer))
}

/// The pack layers `req` has passed, outermost first.
pub fn visited<B>(req: &Request<B>) -> &[&'static str] {
    RequestContext::get(req.extensions()).map_or(&[], |c| c.visited().layers())
}

/// A layer found its prerequisite missing: the stack is wired wrongly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the server is misconfigured: the {layer} layer {needs}")]
pub struct Miswired {
    layer: &'static str,
    needs: &'static str,
}

impl Miswired {
    /// `layer` found that it `needs` something it does not have, in words (e.g. "needs
    /// InspectLayer outside it").
    pub const fn new(layer: &'static str, needs: &'static str) -> Self {
        Self { layer, needs }
    }

    /// The layer that refused.
    pub fn layer(&self) -> &'static str {
        self.layer
    }

    /// What it needs.
    pub fn needs(&self) -> &'static str {
        self.needs
    }

    /// The `500` answer: a JSON-RPC internal error naming the prerequisite, with this error and a
    /// [`Denial`] in the response extensions. Logged at error level the first time each
    /// (layer, prerequisite) pair is seen in this process.
    pub fn into_response<B: From<Bytes>>(self) -> Response<B> {
        log_once(&self);
        let message = self.to_string();
        let body = JsonRpcError::new(codes::INTERNAL_ERROR, message.clone()).to_bytes();
        let mut response = Response::new(B::from(body));
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        response.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        response.extensions_mut().insert(Denial::new(self.layer, message).with_jsonrpc_code(codes::INTERNAL_ERROR));
        response.extensions_mut().insert(self);
        response
    }
}

static LOGGED: Mutex<Vec<(&str, &str)>> = Mutex::new(Vec::new());

fn log_once(m: &Miswired) {
    let mut logged = LOGGED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !logged.contains(&(m.layer, m.needs)) {
        logged.push((m.layer, m.needs));
        drop(logged);
        tracing::error!(
            layer = m.layer,
            "{m}; every request is refused until the stack is fixed (build it with mcp-enterprise-stack)"
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn visited_keeps_every_layer_in_order_past_the_inline_ones() {
        let names: Vec<&'static str> = (0..40).map(|i| &*Box::leak(format!("layer-{i}").into_boxed_str())).collect();
        let mut req = http::Request::new(());
        for (i, name) in names.iter().enumerate() {
            super::visit(&mut req, name);
            assert_eq!(super::visited(&req), &names[..=i]);
        }
        assert!(super::has_visited(&req, "layer-39") && !super::has_visited(&req, "layer-40"));
    }

    use super::*;

    #[test]
    fn visits_are_recorded_in_order() {
        let mut req = Request::new(());
        assert!(visited(&req).is_empty());
        visit(&mut req, "inspect");
        visit(&mut req, "sso");
        assert_eq!(visited(&req), ["inspect", "sso"]);
        assert!(has_visited(&req, "inspect") && !has_visited(&req, "policy"));
    }

    #[test]
    fn miswired_answers_500_with_a_denial() {
        let r: Response<Bytes> = Miswired::new("policy", "needs InspectLayer outside it").into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body: serde_json::Value = serde_json::from_slice(r.body()).expect("json");
        assert_eq!(body["error"]["code"], -32603);
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("InspectLayer")));
        let denial = r.extensions().get::<Denial>().expect("denial");
        assert_eq!(denial.layer(), "policy");
        assert!(r.extensions().get::<Miswired>().is_some());
    }
}
