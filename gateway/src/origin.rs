//! The DNS-rebinding defence: `Host` and `Origin` checks, inside audit (so refusals are recorded);
//! and CORS for browser clients, inside it.
//!
//! Order on the MCP listener, outermost first: audit → [`check_origin`] (a `Host` that is not an
//! allowed name, or an `Origin` neither same-origin nor listed in `listen.allowed_origins`, is
//! refused with `403` — preflights included: the rebinding defence always stays on) → [`cors`]
//! (tower-http's `CorsLayer` for the listed origins: answers preflights itself, before any
//! authentication, and exposes `Mcp-Session-Id`, `WWW-Authenticate` and `DPoP-Nonce`) → the
//! pack's layers → the upstream. With no origin listed there is no CORS layer: only same-origin
//! browser requests are possible.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use mcp_enterprise_core::jsonrpc::codes;
use mcp_enterprise_core::{Denial, JsonRpcError};

/// Which `Host` and `Origin` values are accepted.
#[derive(Debug, Clone)]
pub(crate) struct OriginPolicy {
    pub(crate) hosts: Vec<String>,
    pub(crate) origins: Vec<String>,
    /// Public discovery documents: any `Origin` (CORS `*`), the `Host` still checked.
    pub(crate) any_origin: bool,
}

/// The host part of a `Host` value (`name`, `name:port`, `[v6]`, `[v6]:port`), lowercased.
fn host_name(authority: &str) -> Option<String> {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.starts_with(':')) {
            return None;
        }
        v6
    } else {
        match authority.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            Some(_) => return None,
            None => authority,
        }
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

fn forbidden(message: &str) -> Response {
    refusal(StatusCode::FORBIDDEN, message)
}

/// A gateway refusal, with the [`Denial`] the audit layer records.
fn refusal(status: StatusCode, message: &str) -> Response {
    let body = JsonRpcError::new(codes::INVALID_REQUEST, message);
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body.to_bytes()).into_response();
    response.extensions_mut().insert(Denial::new("gateway", message).with_jsonrpc_code(codes::INVALID_REQUEST));
    response
}

/// DNS-rebinding defence: the `Host` must be an allowed name, and a browser `Origin` must be
/// same-origin with it or explicitly allowed.
pub(crate) async fn check_origin(State(policy): State<Arc<OriginPolicy>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    let Some(host) = host else {
        return refusal(StatusCode::BAD_REQUEST, "the Host header is required");
    };
    if !host_name(host).is_some_and(|name| policy.hosts.contains(&name)) {
        return forbidden(
            "the Host is not one this gateway serves (DNS rebinding defence); allow it with --allowed-host",
        );
    }
    if let Some(origin) = req.headers().get(header::ORIGIN).filter(|_| !policy.any_origin) {
        let ok = origin.to_str().is_ok_and(|o| {
            policy.origins.iter().any(|a| a == o)
                || o.strip_prefix("http://")
                    .or_else(|| o.strip_prefix("https://"))
                    .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
        });
        if !ok {
            return forbidden("cross-origin request refused: Origin is not allowed");
        }
    }
    next.run(req).await
}

/// The response headers a browser client must be able to read: the session, the authentication
/// challenge and the DPoP nonce.
const EXPOSED: [&str; 3] = ["mcp-session-id", "www-authenticate", "dpop-nonce"];

/// CORS for the MCP endpoint (and the RFC 9728 metadata beside it) from `origins`; `None` when
/// no origin is listed. Request headers are mirrored (MCP clients send `Mcp-Param-*` headers
/// whose names the gateway cannot know); origins are never mirrored, only listed ones allowed.
pub(crate) fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
    let origins: Vec<http::HeaderValue> = origins.iter().filter_map(|o| http::HeaderValue::from_str(o).ok()).collect();
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([http::Method::GET, http::Method::POST, http::Method::DELETE])
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers(EXPOSED.map(http::HeaderName::from_static))
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// A CORS preflight answer (it alone carries `Access-Control-Allow-Methods`) is `204 No Content`.
pub(crate) async fn preflight_no_content(mut response: Response) -> Response {
    if response.status() == StatusCode::OK && response.headers().contains_key(header::ACCESS_CONTROL_ALLOW_METHODS) {
        *response.status_mut() = StatusCode::NO_CONTENT;
    }
    response
}

#[cfg(test)]
mod tests {
    use super::host_name;

    #[test]
    fn host_names() {
        assert_eq!(host_name("localhost:8787").as_deref(), Some("localhost"));
        assert_eq!(host_name("LocalHost").as_deref(), Some("localhost"));
        assert_eq!(host_name("127.0.0.1:1").as_deref(), Some("127.0.0.1"));
        assert_eq!(host_name("[::1]:8787").as_deref(), Some("::1"));
        assert_eq!(host_name("[::1]").as_deref(), Some("::1"));
        assert_eq!(host_name("[::1]x"), None);
        assert_eq!(host_name("evil.example.com:80").as_deref(), Some("evil.example.com"));
        assert_eq!(host_name("a:b"), None);
        assert_eq!(host_name(":80"), None);
    }
}
