//! The response rewriter that advertises our extensions in `initialize` results (core
//! `NegotiateLayer` behind `InspectLayer`), fed an arbitrary upstream body in arbitrary chunks,
//! as `text/event-stream` and as `application/json`.
//!
//! Input: one byte `n`, then `n % 16` big-endian `u16` cut points, then the upstream body (seeds
//! are real SSE streams and JSON responses).
//!
//! Invariants: the output does not depend on the chunking (it equals the output for the body in
//! one chunk), and a body without any JSON-RPC response in it passes through byte for byte.
#![no_main]

use std::collections::VecDeque;
use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use mcp_enterprise_core::{ExtensionSet, InspectLayer, McpBody, NegotiateLayer};
use mcp_enterprise_fuzz::{Chunked, block_on, chunks};
use serde_json::json;
use tower::{ServiceBuilder, ServiceExt, service_fn};

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"fuzz","version":"1"}}}"#;

fn rewrite(content_type: &'static str, parts: Vec<Bytes>) -> Bytes {
    let extensions = match ExtensionSet::builder().with_own("audit", json!({"chain": true})) {
        Ok(b) => b.build(),
        Err(e) => panic!("extension set: {e}"),
    };
    let svc = ServiceBuilder::new().layer(InspectLayer::new()).layer(NegotiateLayer::new(extensions)).service(
        service_fn(move |_req: Request<McpBody<Full<Bytes>>>| {
            let body = Chunked(parts.clone().into_iter().collect::<VecDeque<_>>());
            let mut res = Response::new(body);
            res.headers_mut().insert("content-type", http::HeaderValue::from_static(content_type));
            async move { Ok::<_, Infallible>(res) }
        }),
    );
    let req = match Request::post("/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(Full::new(Bytes::from_static(INITIALIZE.as_bytes())))
    {
        Ok(r) => r,
        Err(e) => panic!("request: {e}"),
    };
    let res = match block_on(svc.oneshot(req)) {
        Ok(r) => r,
        Err(never) => match never {},
    };
    assert_eq!(res.status(), http::StatusCode::OK);
    match block_on(res.into_body().collect()) {
        Ok(c) => c.to_bytes(),
        Err(e) => panic!("the rewritten body failed: {e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else { return };
    let n = usize::from(n % 16);
    if rest.len() < 2 * n {
        return;
    }
    let (cut_bytes, stream) = rest.split_at(2 * n);
    let cuts: Vec<u16> = cut_bytes.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
    for content_type in ["text/event-stream", "application/json"] {
        let whole = rewrite(content_type, vec![Bytes::copy_from_slice(stream)]);
        let chunked = rewrite(content_type, chunks(stream, &cuts));
        assert_eq!(chunked, whole, "{content_type}: the output depends on the chunking");
        let has_response = stream.windows(8).any(|w| w == b"\"result\"" || w == b"\"error\":")
            || (content_type == "application/json" && serde_json::from_slice::<serde_json::Value>(stream).is_ok());
        if !has_response {
            assert_eq!(whole.as_ref(), stream, "{content_type}: a body without a response was changed");
        }
    }
});
