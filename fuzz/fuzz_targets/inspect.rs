//! JSON-RPC inspection of both protocol eras: `McpRequest::parse` and the `InspectLayer` on an
//! arbitrary header block and body, including the SEP-2243 header/body cross-check and the
//! `=?base64?…?=` sentinel encoding of `Mcp-*` header values.
//!
//! Input: `name: value` header lines, an empty line, the body (seeds are real messages of both
//! eras). A byte `0x00` in the body marks chunk boundaries for the layer.
//!
//! Invariants: a message is accepted only when every standard header present agrees with the body
//! (decoded), the modern era's required headers are there, and every `Mcp-Param-*` value decodes;
//! the layer lets exactly the accepted messages through, chunked or not, and refuses the others
//! with the rejection's status and a JSON-RPC error; header values round-trip through the encoding.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use mcp_enterprise_core::headers::{self, decode_value, encode_value};
use mcp_enterprise_core::message::{MODERN_PROTOCOL_VERSION, is_modern_version};
use mcp_enterprise_core::{Era, InspectLayer, McpRequest, MessageKind};
use mcp_enterprise_fuzz::{Chunked, send_chunked};
use serde_json::Value;

fn split(data: &[u8]) -> (Vec<(HeaderName, HeaderValue)>, &[u8]) {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (&[][..], data),
    };
    let mut out = Vec::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            // the server's HTTP stack owns Content-Length (the layer refuses a declared oversize
            // before parsing); it is not what this target explores
            if n != http::header::CONTENT_LENGTH {
                out.push((n, v));
            }
        }
    }
    (out, body)
}

fn single(h: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut all = h.get_all(name).iter();
    let first = all.next()?;
    assert!(all.next().is_none(), "an accepted message has {name} at most once");
    Some(decode_value(first.as_bytes()).expect("an accepted message's headers decode"))
}

fn check_accepted(h: &HeaderMap, req: &McpRequest) {
    let message = req.message();
    assert_eq!(message.get("jsonrpc").and_then(Value::as_str), Some("2.0"));
    assert_eq!(req.method(), message.get("method").and_then(Value::as_str));
    let version = single(h, &headers::MCP_PROTOCOL_VERSION);
    let method = single(h, &headers::MCP_METHOD);
    let name = single(h, &headers::MCP_NAME);
    if let Some(m) = &method {
        assert_eq!(Some(m.as_str()), req.method(), "Mcp-Method disagrees with the body");
    }
    if let (Some(n), Some("tools/call" | "prompts/get" | "resources/read")) = (&name, req.method()) {
        assert_eq!(Some(n.as_str()), req.target(), "Mcp-Name disagrees with the body");
    }
    if req.era() == Era::Modern {
        assert!(req.method() != Some("initialize"));
        if req.kind() != MessageKind::Response {
            let v = version.as_deref().expect("a modern message carries MCP-Protocol-Version");
            assert_eq!(req.protocol_version(), Some(v));
        }
        if req.kind() == MessageKind::Request {
            assert!(method.is_some(), "a modern request carries Mcp-Method");
            if matches!(req.method(), Some("tools/call" | "prompts/get" | "resources/read")) {
                assert!(name.is_some(), "a modern request on a target carries Mcp-Name");
            }
        }
        if let Some(v) = req.protocol_version() {
            assert!(is_modern_version(v) && v >= MODERN_PROTOCOL_VERSION);
        }
    }
    for (n, v) in h {
        if n.as_str().starts_with(headers::MCP_PARAM_PREFIX) {
            assert!(decode_value(v.as_bytes()).is_ok(), "an accepted message's {n} decodes");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (list, body) = split(data);
    let mut h = HeaderMap::new();
    for (n, v) in &list {
        h.append(n.clone(), v.clone());
    }

    // the encoding round-trips any text, and decoding is the inverse of encoding
    let text = String::from_utf8_lossy(body);
    assert_eq!(decode_value(encode_value(&text).as_bytes()).as_deref(), Ok(text.as_ref()));
    for (_, v) in &list {
        if let Ok(decoded) = decode_value(v.as_bytes()) {
            assert_eq!(decode_value(encode_value(&decoded).as_bytes()), Ok(decoded));
        }
    }

    let whole: Vec<u8> = body.iter().copied().filter(|b| *b != 0).collect();
    let parsed = McpRequest::parse(&h, &whole, |_| None);
    match &parsed {
        Ok(req) => check_accepted(&h, req),
        Err(rejection) => {
            let status = rejection.status();
            assert!(status.is_client_error());
            let error = rejection.to_jsonrpc().to_value();
            assert!(error["error"]["code"].as_i64().is_some_and(|c| c < 0));
        }
    }

    // the layer, with the body in the chunks the 0x00 bytes mark
    let chunks: std::collections::VecDeque<bytes::Bytes> =
        body.split(|b| *b == 0).map(bytes::Bytes::copy_from_slice).collect();
    let headers: Vec<(&str, &[u8])> = list.iter().map(|(n, v)| (n.as_str(), v.as_bytes())).collect();
    if let Some(answer) = send_chunked(&InspectLayer::new(), &headers, Chunked(chunks)) {
        match &parsed {
            Ok(req) => {
                assert!(answer.reached, "the layer refused what parse accepts: {answer:?}");
                let seen = answer.mcp.as_ref().expect("the layer hands on the parsed message");
                assert_eq!(seen.message(), req.message());
                assert_eq!(seen.era(), req.era());
            }
            Err(rejection) => {
                assert!(!answer.reached, "the layer let through what parse refuses: {rejection:?}");
                let error: Value = serde_json::from_slice(&answer.body).expect("a JSON-RPC error body");
                assert!(error["error"]["code"].as_i64().is_some());
                assert_eq!(answer.status, rejection.status());
                assert_eq!(error, rejection.to_jsonrpc().to_value());
            }
        }
    }
});
