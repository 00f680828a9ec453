//! An MCP client using Enterprise-Managed Authorization (SEP-990) through
//! `mcp_enterprise_workload_identity::IdJagTokenSource`: the employee's ID token is exchanged
//! (RFC 8693) for an ID-JAG at the enterprise IdP, the ID-JAG for an access token at the MCP
//! server's authorization server (RFC 7523, discovered from the server's RFC 9728 metadata), and
//! the token is attached to the MCP requests by `IdJagTokenLayer`.
//!
//! ```text
//! id-jag-client [--tool NAME] <MCP server URL>
//! ```
//!
//! Settings come from the environment: `IDJAG_ID_TOKEN` (or `IDJAG_ID_TOKEN_FILE`), or instead
//! `IDJAG_REFRESH_TOKEN` (or `IDJAG_REFRESH_TOKEN_FILE`: the employee's refresh token at the IdP,
//! redeemed for a fresh ID token before each exchange),
//! `IDJAG_IDP_TOKEN_ENDPOINT`, `IDJAG_IDP_CLIENT_ID` (+ `IDJAG_IDP_CLIENT_SECRET` for a
//! confidential IdP client), `IDJAG_CLIENT_ID` + `IDJAG_CLIENT_SECRET` (the client at the MCP
//! authorization server), `IDJAG_SCOPE`, `IDJAG_INSECURE_HTTP_LOOPBACK=1` (plain http on
//! loopback, tests). Run by the MCP conformance suite's `auth/enterprise-managed-authorization`
//! client scenario, it reads them from `MCP_CONFORMANCE_CONTEXT` instead.
//!
//! It initializes a session, lists the tools and, with `--tool`, calls one; the results are
//! printed as JSON lines. Tokens are never printed.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::Full;
use mcp_enterprise_core::BoxError;
use mcp_enterprise_core::jwks::HttpClient;
use mcp_enterprise_workload_identity::{ClientCredentials, IdJagTokenLayer, IdJagTokenSource, IdpSubject};
use serde_json::{Value, json};
use tower::{Service, ServiceBuilder, ServiceExt as _, service_fn};

struct Settings {
    subject: IdpSubject,
    idp_token_endpoint: String,
    idp_client: ClientCredentials,
    client: ClientCredentials,
    scope: Option<String>,
    insecure: bool,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn required(name: &str) -> Result<String, BoxError> {
    env(name).ok_or_else(|| format!("{name} is required").into())
}

fn settings() -> Result<Settings, BoxError> {
    if let Some(context) = env("MCP_CONFORMANCE_CONTEXT") {
        // the conformance suite's scenario context (a loopback IdP and authorization server)
        let c: Value = serde_json::from_str(&context)?;
        let text =
            |k: &str| c.get(k).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| format!("context has no {k}"));
        return Ok(Settings {
            subject: IdpSubject::IdToken(text("idp_id_token")?),
            idp_token_endpoint: text("idp_token_endpoint")?,
            idp_client: ClientCredentials::public(text("idp_client_id")?),
            client: ClientCredentials::secret(text("client_id")?, text("client_secret")?),
            scope: None,
            insecure: true,
        });
    }
    let file = |name: &str| -> Result<Option<String>, BoxError> {
        Ok(match env(name) {
            Some(path) => Some(std::fs::read_to_string(path)?.trim().to_owned()),
            None => None,
        })
    };
    let subject = if let Some(t) = env("IDJAG_REFRESH_TOKEN").or(file("IDJAG_REFRESH_TOKEN_FILE")?) {
        IdpSubject::RefreshToken(t)
    } else {
        match env("IDJAG_ID_TOKEN").or(file("IDJAG_ID_TOKEN_FILE")?) {
            Some(t) => IdpSubject::IdToken(t),
            None => return Err("IDJAG_ID_TOKEN(_FILE) or IDJAG_REFRESH_TOKEN(_FILE) is required".into()),
        }
    };
    let idp_client_id = required("IDJAG_IDP_CLIENT_ID")?;
    Ok(Settings {
        subject,
        idp_token_endpoint: required("IDJAG_IDP_TOKEN_ENDPOINT")?,
        idp_client: match env("IDJAG_IDP_CLIENT_SECRET") {
            Some(secret) => ClientCredentials::secret(idp_client_id, secret),
            None => ClientCredentials::public(idp_client_id),
        },
        client: ClientCredentials::secret(required("IDJAG_CLIENT_ID")?, required("IDJAG_CLIENT_SECRET")?),
        scope: env("IDJAG_SCOPE"),
        insecure: env("IDJAG_INSECURE_HTTP_LOOPBACK").is_some_and(|v| v == "1"),
    })
}

/// The JSON-RPC message of a response (a JSON body, or the last `data:` event of an SSE body).
fn message(res: &Response<Bytes>) -> Result<Value, BoxError> {
    let sse = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let body = std::str::from_utf8(res.body())?;
    if !sse {
        return Ok(serde_json::from_str(body)?);
    }
    body.lines()
        .rev()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|m| m.get("id").is_some())
        .ok_or_else(|| "no JSON-RPC response in the event stream".into())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter("warn").init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = args.last().ok_or("usage: id-jag-client [--tool NAME] <MCP server URL>")?.clone();
    let tool = args.windows(2).find(|w| w[0] == "--tool").map(|w| w[1].clone());
    let s = settings()?;

    let mut builder = IdJagTokenSource::builder(&url, &s.idp_token_endpoint, s.idp_client, s.client).subject(s.subject);
    if let Some(scope) = &s.scope {
        for one in scope.split(' ').filter(|x| !x.is_empty()) {
            builder = builder.scope(one);
        }
    }
    if s.insecure {
        builder = builder.insecure_http_loopback();
    }
    let source = builder.build()?;

    let http = HttpClient::new(Duration::from_secs(30))?;
    let mut mcp = ServiceBuilder::new().layer(IdJagTokenLayer::new(source)).service(service_fn(
        move |req: Request<Full<Bytes>>| {
            let http = http.clone();
            async move { http.request(req).await.map_err(BoxError::from) }
        },
    ));
    let version = env("MCP_CONFORMANCE_PROTOCOL_VERSION").unwrap_or_else(|| "2025-11-25".to_owned());
    let mut session: Option<String> = None;
    let mut id = 0;
    let mut send = async |method: &str, params: Value, notification: bool| -> Result<Value, BoxError> {
        let mut body = json!({"jsonrpc": "2.0", "method": method, "params": params});
        if !notification {
            id += 1;
            body["id"] = json!(id);
        }
        let mut req = Request::post(&url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream");
        if method != "initialize" {
            req = req.header("mcp-protocol-version", &version);
        }
        if let Some(s) = &session {
            req = req.header("mcp-session-id", s);
        }
        let req = req.body(Full::new(Bytes::from(body.to_string())))?;
        let res = mcp.ready().await?.call(req).await?;
        if !res.status().is_success() {
            return Err(format!("{method}: HTTP status {}", res.status().as_u16()).into());
        }
        if let Some(s) = res.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()) {
            session = Some(s.to_owned());
        }
        if notification { Ok(Value::Null) } else { message(&res) }
    };
    let init = send(
        "initialize",
        json!({"protocolVersion": version, "capabilities": {},
            "clientInfo": {"name": "example-id-jag-client", "version": env!("CARGO_PKG_VERSION")}}),
        false,
    )
    .await?;
    println!("{}", json!({"initialize": init["result"]["serverInfo"]}));
    send("notifications/initialized", json!({}), true).await?;
    let tools = send("tools/list", json!({}), false).await?;
    println!(
        "{}",
        json!({"tools": tools["result"]["tools"].as_array().map(|t| t.iter().map(|x| x["name"].clone()).collect::<Vec<_>>())})
    );
    if let Some(name) = tool {
        let result = send("tools/call", json!({"name": name, "arguments": {}}), false).await?;
        println!("{}", json!({"call": result.get("result").or(result.get("error"))}));
    }
    Ok(())
}
