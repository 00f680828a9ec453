//! Browser clients: CORS (tower-http's `CorsLayer`) on the MCP endpoint for the configured
//! origins. A preflight from an allowed origin is answered `204` by the gateway itself, before
//! authentication; answers expose `Mcp-Session-Id`, `WWW-Authenticate` and `DPoP-Nonce`; any
//! other origin is refused, and the DNS-rebinding defence (the `Host` check) still applies to
//! preflights.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use mcp_enterprise_gateway::{Gateway, RunningGateway};
use mcp_enterprise_sso::{Issuer, SsoLayer};
use serde_json::json;

use crate::common::{self, legacy_initialize, send};

const APP: &str = "https://app.example.com";

async fn gateway(upstream: &str, sso: bool) -> RunningGateway {
    let mut builder = Gateway::builder()
        .upstream(upstream)
        .expect("upstream")
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .allowed_origins([APP.to_owned()]);
    if sso {
        // an identity provider nobody can reach: a preflight must not need it
        let layer = SsoLayer::builder("http://localhost/mcp")
            .issuer(Issuer::new("https://idp.invalid"))
            .build()
            .expect("sso layer");
        builder = builder.sso(layer);
    }
    builder.build().expect("gateway").spawn().await.expect("spawn")
}

fn preflight(url: &str, origin: &str, host: Option<&str>) -> Request<Full<Bytes>> {
    let mut req = Request::options(url)
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type, mcp-session-id, dpop, mcp-param-region")
        .body(Full::new(Bytes::new()))
        .expect("request");
    if let Some(host) = host {
        req.headers_mut().insert("host", host.parse().expect("host"));
    }
    req
}

fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_is_answered_without_authentication() {
    let upstream = common::demo_upstream().await;
    let gw = gateway(&upstream.url, true).await;

    let res = send(preflight(&gw.mcp_url(), APP, None)).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let h = res.headers();
    assert_eq!(header(h, "access-control-allow-origin"), APP);
    assert!(header(h, "access-control-allow-methods").contains("POST"), "{h:?}");
    let allowed = header(h, "access-control-allow-headers").to_ascii_lowercase();
    for name in ["authorization", "mcp-session-id", "dpop", "mcp-param-region"] {
        assert!(allowed.contains(name), "{name} allowed: {allowed}");
    }
    assert!(h.contains_key("access-control-max-age"), "{h:?}");
    assert!(!h.contains_key("www-authenticate"), "no challenge on a preflight: {h:?}");

    // the call itself is authenticated; its challenge is readable by the page
    let mut req = legacy_initialize(&gw.mcp_url(), json!({}));
    req.headers_mut().insert("origin", APP.parse().expect("origin"));
    let res = send(req).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let h = res.headers();
    assert!(h.contains_key("www-authenticate"));
    assert_eq!(header(h, "access-control-allow-origin"), APP);
    let exposed = header(h, "access-control-expose-headers").to_ascii_lowercase();
    for name in ["mcp-session-id", "www-authenticate", "dpop-nonce"] {
        assert!(exposed.contains(name), "{name} exposed: {exposed}");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn the_session_id_is_exposed_to_an_allowed_origin() {
    let upstream = common::demo_upstream().await;
    let gw = gateway(&upstream.url, false).await;
    let mut req = legacy_initialize(&gw.mcp_url(), json!({}));
    req.headers_mut().insert("origin", APP.parse().expect("origin"));
    let res = send(req).await;
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers();
    assert!(h.contains_key("mcp-session-id"), "{h:?}");
    assert_eq!(header(h, "access-control-allow-origin"), APP);
    assert!(header(h, "access-control-expose-headers").to_ascii_lowercase().contains("mcp-session-id"));
    gw.shutdown().await;
}

#[tokio::test]
async fn other_origins_and_rebinding_hosts_are_refused() {
    let upstream = common::demo_upstream().await;
    let gw = gateway(&upstream.url, true).await;
    let port = gw.local_addr().port();

    // another origin: refused, and no CORS grant
    let res = send(preflight(&gw.mcp_url(), "https://evil.example.com", None)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(!res.headers().contains_key("access-control-allow-origin"));
    let mut req = legacy_initialize(&gw.mcp_url(), json!({}));
    req.headers_mut().insert("origin", "https://evil.example.com".parse().expect("origin"));
    assert_eq!(send(req).await.status(), StatusCode::FORBIDDEN);

    // the DNS-rebinding defence applies to preflights too: an allowed Origin, a foreign Host
    let res = send(preflight(&gw.mcp_url(), APP, Some(&format!("evil.example.com:{port}")))).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(!res.headers().contains_key("access-control-allow-origin"));
    gw.shutdown().await;

    // no origin configured: no CORS layer, a cross-origin preflight is refused
    let plain = common::gateway(&upstream.url, mcp_enterprise_core::ExtensionSet::default()).await;
    let res = send(preflight(&plain.mcp_url(), APP, None)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    plain.shutdown().await;
}
