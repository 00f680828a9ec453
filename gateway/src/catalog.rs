//! Reading an upstream's definitions: [`fetch_listing`] (every page of a list, either protocol
//! era, with the route's upstream credential; what `mcp-enterprise tools pin|diff|approve` pins)
//! and [`fetch_catalog`] (the tools and prompts a `policy` section with `fetch_tools_at_startup`
//! validates its policies against, and what `mcp-enterprise policy check --upstream` uses).
//! Requests go out like the gateway's own upstream calls: through the egress proxy, with the
//! upstream's TLS settings ([`UpstreamClient`]).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mcp_enterprise_core::outbound::{self, Egress, OutboundConnector, OutboundError, TlsSettings};
use mcp_enterprise_policy::Catalog;
use serde_json::{Value, json};

/// The protocol version the start-up fetch speaks (stateless: no session to set up).
const FETCH_PROTOCOL_VERSION: &str = "2026-07-28";

/// The HTTP client listing requests go out with: the egress proxy and the upstream's TLS
/// settings (CA bundle, client certificate, SNI), HTTP/1.1 or HTTP/2 by ALPN. Cheap to clone.
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    client: Client<OutboundConnector, Full<Bytes>>,
}

impl UpstreamClient {
    /// A client reaching upstreams through `egress` with `tls`.
    pub fn new(egress: &Egress, tls: &TlsSettings) -> Result<Self, OutboundError> {
        let connector = outbound::connector(egress, tls, outbound::DEFAULT_CONNECT_TIMEOUT, true)?;
        Ok(Self { client: Client::builder(TokioExecutor::new()).build(connector) })
    }

    /// The proxy of the environment (`HTTPS_PROXY`, `NO_PROXY`...), the system's roots.
    pub fn from_env() -> Result<Self, OutboundError> {
        Self::new(&Egress::from_env(), &TlsSettings::new())
    }
}

/// Fetches `tools/list` (and `prompts/list`, when the upstream has prompts) from a live upstream,
/// through the environment's proxy with the system's roots ([`fetch_catalog_via`] to choose).
pub async fn fetch_catalog(url: &str) -> Result<Catalog, mcp_enterprise_policy::PolicyConfigError> {
    let client = UpstreamClient::from_env()
        .map_err(|e| mcp_enterprise_policy::PolicyConfigError::Fetch { url: url.to_owned(), reason: e.to_string() })?;
    fetch_catalog_via(&client, url).await
}

/// [`fetch_catalog`] with `client` (the route's egress proxy and upstream TLS settings).
pub async fn fetch_catalog_via(
    client: &UpstreamClient,
    url: &str,
) -> Result<Catalog, mcp_enterprise_policy::PolicyConfigError> {
    let fetch_error = |reason: String| mcp_enterprise_policy::PolicyConfigError::Fetch { url: url.to_owned(), reason };
    let tools = fetch_listing_via(client, url, "tools/list", &None)
        .await
        .map_err(fetch_error)?
        .ok_or_else(|| fetch_error("the upstream has no tools/list".to_owned()))?;
    let mut catalog = Catalog::from_listing(&tools);
    if let Ok(Some(prompts)) = fetch_listing_via(client, url, "prompts/list", &None).await {
        catalog.learn_prompts(&prompts);
    }
    Ok(catalog)
}

/// A credential header to send upstream (the route's propagation), if any.
pub type Credential = Option<(http::HeaderName, http::HeaderValue)>;

/// The legacy protocol version the fallback handshake offers.
const LEGACY_PROTOCOL_VERSION: &str = "2025-11-25";

/// Every item of a list method (`tools/list`, `prompts/list`, `resources/templates/list`) of a live
/// upstream, all pages followed (`nextCursor`, at most 1 000 pages), as one result object
/// (`{"tools": [...]}`). Speaks the modern (stateless) era, and falls back to a legacy session
/// (`initialize`) when the upstream answers the modern request with an error. `credential` is sent
/// on every request (the route's propagation). `Ok(None)`: the upstream does not offer the method.
pub async fn fetch_listing(url: &str, method: &str, credential: &Credential) -> Result<Option<Value>, String> {
    fetch_listing_via(&UpstreamClient::from_env().map_err(|e| e.to_string())?, url, method, credential).await
}

/// [`fetch_listing`] with `client` (the route's egress proxy and upstream TLS settings).
pub async fn fetch_listing_via(
    client: &UpstreamClient,
    url: &str,
    method: &str,
    credential: &Credential,
) -> Result<Option<Value>, String> {
    let field = match method {
        "tools/list" => "tools",
        "prompts/list" => "prompts",
        "resources/templates/list" => "resourceTemplates",
        other => return Err(format!("{other} is not a list of definitions")),
    };
    let mut session = Session::modern(client);
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0.. {
        if page == 1000 {
            return Err(format!("{method}: more than 1000 pages"));
        }
        let mut params = serde_json::Map::new();
        if let Some(c) = &cursor {
            params.insert("cursor".into(), Value::String(c.clone()));
        }
        let answer = session.request(url, method, params.clone(), credential).await;
        let refused = |r: &Result<Value, String>| match r {
            Err(_) => true,
            Ok(v) => v.get("error").is_some_and(|e| e.get("code").and_then(Value::as_i64) != Some(-32601)),
        };
        let response = if page == 0 && session.is_modern() && refused(&answer) {
            // a 2025-era server: open a legacy session and ask again
            session = Session::legacy(client, url, credential).await?;
            session.request(url, method, params, credential).await?
        } else {
            answer?
        };
        if let Some(error) = response.get("error") {
            // -32601: the server has no such list (no prompts, no templates)
            if page == 0 && error.get("code").and_then(Value::as_i64) == Some(-32601) {
                return Ok(None);
            }
            return Err(format!("{method}: JSON-RPC error {error}"));
        }
        let result = response.get("result").ok_or_else(|| format!("{method}: no result"))?;
        items.extend(result.get(field).and_then(Value::as_array).cloned().unwrap_or_default());
        cursor = result.get("nextCursor").and_then(Value::as_str).map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    Ok(Some(json!({ field: items })))
}

/// How the listing requests are sent: stateless (modern) or in a legacy session.
struct Session {
    client: UpstreamClient,
    legacy: Option<Option<String>>,
    next_id: u64,
}

impl Session {
    fn modern(client: &UpstreamClient) -> Self {
        Self { client: client.clone(), legacy: None, next_id: 1 }
    }

    fn is_modern(&self) -> bool {
        self.legacy.is_none()
    }

    async fn legacy(client: &UpstreamClient, url: &str, credential: &Credential) -> Result<Self, String> {
        let mut session = Self { client: client.clone(), legacy: Some(None), next_id: 1 };
        let params = json!({"protocolVersion": LEGACY_PROTOCOL_VERSION, "capabilities": {},
            "clientInfo": {"name": "mcp-enterprise", "version": env!("CARGO_PKG_VERSION")}});
        let Value::Object(params) = params else { return Err("initialize params".into()) };
        let (response, session_id) = session.post(url, "initialize", Some(params), credential).await?;
        if response.get("error").is_some() {
            return Err(format!("initialize: {}", response["error"]));
        }
        session.legacy = Some(session_id);
        session.post(url, "notifications/initialized", None, credential).await?;
        Ok(session)
    }

    async fn request(
        &mut self,
        url: &str,
        method: &str,
        params: serde_json::Map<String, Value>,
        credential: &Credential,
    ) -> Result<Value, String> {
        Ok(self.post(url, method, Some(params), credential).await?.0)
    }

    /// Posts one message; `params: None` is a notification (no answer awaited beyond the status).
    async fn post(
        &mut self,
        url: &str,
        method: &str,
        params: Option<serde_json::Map<String, Value>>,
        credential: &Credential,
    ) -> Result<(Value, Option<String>), String> {
        let notification = params.is_none();
        let mut params = params.unwrap_or_default();
        let id = self.next_id;
        self.next_id += 1;
        let mut request = http::Request::post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        match &self.legacy {
            None => {
                params.insert(
                    "_meta".into(),
                    json!({"io.modelcontextprotocol/protocolVersion": FETCH_PROTOCOL_VERSION,
                        "io.modelcontextprotocol/clientCapabilities": {},
                        "io.modelcontextprotocol/clientInfo": {"name": "mcp-enterprise", "version": env!("CARGO_PKG_VERSION")}}),
                );
                request = request.header("mcp-protocol-version", FETCH_PROTOCOL_VERSION).header("mcp-method", method);
            }
            Some(session_id) => {
                if method != "initialize" {
                    request = request.header("mcp-protocol-version", LEGACY_PROTOCOL_VERSION);
                }
                if let Some(sid) = session_id {
                    request = request.header("mcp-session-id", sid.as_str());
                }
            }
        }
        if let Some((name, value)) = credential {
            request = request.header(name, value);
        }
        let mut message = json!({"jsonrpc": "2.0", "method": method, "params": params});
        if !notification {
            message["id"] = json!(id);
        }
        let request = request.body(Full::new(Bytes::from(message.to_string()))).map_err(|e| format!("request: {e}"))?;
        let response = tokio::time::timeout(Duration::from_secs(10), self.client.client.request(request))
            .await
            .map_err(|_| format!("{method}: timed out"))?
            .map_err(|e| format!("{method}: connect: {e}"))?;
        let status = response.status();
        let session_id = response.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        if notification {
            return if status.is_success() {
                Ok((Value::Null, session_id))
            } else {
                Err(format!("{method}: HTTP {status}"))
            };
        }
        let sse = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let bytes = tokio::time::timeout(Duration::from_secs(30), response.into_body().collect())
            .await
            .map_err(|_| format!("{method}: timed out reading"))?
            .map_err(|e| format!("{method}: read: {e}"))?
            .to_bytes();
        if bytes.len() > 16 * 1024 * 1024 {
            return Err(format!("{method}: response larger than 16 MiB"));
        }
        let text = String::from_utf8_lossy(&bytes);
        let messages: Vec<Value> = if sse {
            text.split("\n\n")
                .filter_map(|event| {
                    let data: Vec<&str> =
                        event.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
                    serde_json::from_str(&data.join("\n")).ok()
                })
                .collect()
        } else {
            match serde_json::from_str(&text) {
                Ok(v) => vec![v],
                Err(e) if status.is_success() => return Err(format!("{method}: not JSON: {e}")),
                Err(_) => return Err(format!("{method}: HTTP {status}")),
            }
        };
        let answer = messages
            .into_iter()
            .find(|m| m.get("id") == Some(&json!(id)))
            .ok_or_else(|| format!("{method}: HTTP {status}, no answer"))?;
        if !status.is_success() && answer.get("error").is_none() {
            return Err(format!("{method}: HTTP {status}"));
        }
        Ok((answer, session_id))
    }
}
