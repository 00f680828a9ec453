//! Discovery without connecting: the MCP server card (experimental `experimental-ext-server-card`,
//! SEP-2127) at `<mcp-url>/server-card` and an AI Catalog listing it at
//! `/.well-known/ai-catalog.json`.
//!
//! - `application/mcp-server-card+json` / `application/ai-catalog+json`;
//! - CORS for any origin (`GET`; `Content-Type`, `If-None-Match`; `ETag` exposed) — the documents
//!   are public and read-only, so browser clients may fetch them cross-origin;
//! - a strong `ETag` (SHA-256 of the body) honoured by `If-None-Match` with `304`, and
//!   `Cache-Control: public, max-age=…`;
//! - the card has no `capabilities` field, so the extensions the gateway negotiates are listed in
//!   its `_meta` under `{vendor prefix}/extensions` (and the required ones under
//!   `{vendor prefix}/required-extensions`). Clients must not base security decisions on a card.
//!
//! A card never holds credentials or the upstream address.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use mcp_enterprise_core::ExtensionSet;
use serde_json::{Map, Value, json};
use tower_service::Service;

/// The `$schema` of the cards served.
pub const SERVER_CARD_SCHEMA: &str = "https://static.modelcontextprotocol.io/schemas/v1/server-card.schema.json";
/// Media type of a server card.
pub const SERVER_CARD_MEDIA_TYPE: &str = "application/mcp-server-card+json";
/// Media type of an AI Catalog.
pub const AI_CATALOG_MEDIA_TYPE: &str = "application/ai-catalog+json";
/// Where the AI Catalog is served.
pub const AI_CATALOG_PATH: &str = "/.well-known/ai-catalog.json";
/// The protocol versions the gateway serves on one endpoint.
pub const SUPPORTED_PROTOCOL_VERSIONS: &[&str] =
    &[mcp_enterprise_core::message::LEGACY_PROTOCOL_VERSION, mcp_enterprise_core::message::MODERN_PROTOCOL_VERSION];

/// A header a client sends, as the card describes it (`KeyValueInput`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CardHeader {
    /// Header name.
    pub name: String,
    /// A fixed value (absent: the client supplies it).
    pub value: Option<String>,
    /// What it is.
    pub description: Option<String>,
    /// The client's value is a secret.
    pub is_secret: bool,
}

impl CardHeader {
    /// A header with a fixed value.
    pub fn fixed(name: &str, value: &str) -> Self {
        Self { name: name.to_owned(), value: Some(value.to_owned()), description: None, is_secret: false }
    }

    /// A secret header each client supplies.
    pub fn secret(name: &str, description: Option<&str>) -> Self {
        Self { name: name.to_owned(), value: None, description: description.map(str::to_owned), is_secret: true }
    }
}

/// A server card to serve.
#[derive(Debug, Clone)]
#[must_use]
pub struct ServerCard {
    name: String,
    version: String,
    description: String,
    url: String,
    title: Option<String>,
    website_url: Option<String>,
    repository: Option<Value>,
    headers: Vec<CardHeader>,
    catalog_identifier: Option<String>,
    max_age: Duration,
}

/// Why a server card is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CardError {
    /// A field breaks the card schema.
    #[error("server card {field}: {reason}")]
    Field {
        /// The field.
        field: &'static str,
        /// Why.
        reason: &'static str,
    },
}

impl ServerCard {
    /// A card for the server `name` (reverse DNS with one `/`, e.g. `com.example/weather`) at the
    /// MCP endpoint `url`.
    pub fn new(name: &str, version: &str, description: &str, url: &str) -> Result<Self, CardError> {
        let field = |field, reason| CardError::Field { field, reason };
        let valid_name = name.len() >= 3
            && name.len() <= 200
            && name.split_once('/').is_some_and(|(ns, n)| {
                !ns.is_empty()
                    && !n.is_empty()
                    && ns.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
                    && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            });
        if !valid_name {
            return Err(field("name", "must be reverse DNS with exactly one '/', e.g. com.example/weather"));
        }
        if version.is_empty() || version.len() > 255 {
            return Err(field("version", "must be 1 to 255 characters"));
        }
        if description.is_empty() || description.chars().count() > 100 {
            return Err(field("description", "must be 1 to 100 characters"));
        }
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(field("url", "must be an absolute http(s) URL"));
        }
        Ok(Self {
            name: name.to_owned(),
            version: version.to_owned(),
            description: description.to_owned(),
            url: url.to_owned(),
            title: None,
            website_url: None,
            repository: None,
            headers: Vec::new(),
            catalog_identifier: None,
            max_age: Duration::from_secs(3600),
        })
    }

    /// Display title.
    pub fn title(mut self, title: &str) -> Self {
        self.title = Some(title.to_owned());
        self
    }

    /// Homepage.
    pub fn website_url(mut self, url: &str) -> Self {
        self.website_url = Some(url.to_owned());
        self
    }

    /// Source repository.
    pub fn repository(mut self, url: &str, source: &str, subfolder: Option<&str>) -> Self {
        let mut repo = json!({"url": url, "source": source});
        if let Some(sub) = subfolder {
            repo["subfolder"] = json!(sub);
        }
        self.repository = Some(repo);
        self
    }

    /// A header clients send.
    pub fn header(mut self, header: CardHeader) -> Self {
        self.headers.push(header);
        self
    }

    /// The AI Catalog identifier (default `urn:air:{host}:{name after the /}`).
    pub fn catalog_identifier(mut self, identifier: &str) -> Self {
        self.catalog_identifier = Some(identifier.to_owned());
        self
    }

    /// `max-age` of `Cache-Control` (default one hour).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Where the card is served: `<url>/server-card`.
    pub fn card_url(&self) -> String {
        format!("{}/server-card", self.url.trim_end_matches('/'))
    }

    /// The card document, listing `extensions` in its `_meta`.
    pub fn document(&self, extensions: &ExtensionSet) -> Value {
        let mut card = Map::new();
        card.insert("$schema".into(), json!(SERVER_CARD_SCHEMA));
        card.insert("name".into(), json!(self.name));
        card.insert("version".into(), json!(self.version));
        card.insert("description".into(), json!(self.description));
        if let Some(t) = &self.title {
            card.insert("title".into(), json!(t));
        }
        if let Some(w) = &self.website_url {
            card.insert("websiteUrl".into(), json!(w));
        }
        if let Some(r) = &self.repository {
            card.insert("repository".into(), r.clone());
        }
        let mut remote = json!({"type": "streamable-http", "url": self.url, "supportedProtocolVersions": SUPPORTED_PROTOCOL_VERSIONS});
        if !self.headers.is_empty() {
            let headers: Vec<Value> = self
                .headers
                .iter()
                .map(|h| {
                    let mut v = json!({"name": h.name, "isRequired": true, "isSecret": h.is_secret});
                    if let Some(value) = &h.value {
                        v["value"] = json!(value);
                    }
                    if let Some(d) = &h.description {
                        v["description"] = json!(d);
                    }
                    v
                })
                .collect();
            remote["headers"] = Value::Array(headers);
        }
        card.insert("remotes".into(), json!([remote]));
        let prefix = extensions.vendor_prefix();
        let mut meta = Map::new();
        meta.insert(format!("{prefix}/extensions"), Value::Object(extensions.advertised().clone()));
        if !extensions.required().is_empty() {
            let required: Vec<&str> = extensions.required().iter().map(|id| id.as_str()).collect();
            meta.insert(format!("{prefix}/required-extensions"), json!(required));
        }
        card.insert("_meta".into(), Value::Object(meta));
        Value::Object(card)
    }

    /// The AI Catalog listing this card.
    pub fn catalog(&self) -> Value {
        json!({"specVersion": "1.0", "entries": [self.catalog_entry()]})
    }

    /// This card's entry in an AI Catalog.
    fn catalog_entry(&self) -> Value {
        let host = self.url.parse::<http::Uri>().ok().and_then(|u| u.host().map(str::to_owned)).unwrap_or_default();
        let suffix = self.name.split_once('/').map_or(self.name.as_str(), |(_, n)| n);
        let identifier = self.catalog_identifier.clone().unwrap_or_else(|| format!("urn:air:{host}:{suffix}"));
        json!({
            "identifier": identifier,
            "displayName": self.title.clone().unwrap_or_else(|| self.name.clone()),
            "type": SERVER_CARD_MEDIA_TYPE,
            "url": self.card_url(),
        })
    }

    /// The two services: the card and the catalog.
    pub fn services(&self, extensions: &ExtensionSet) -> (DiscoveryDocument, DiscoveryDocument) {
        (
            DiscoveryDocument::new(&self.document(extensions), SERVER_CARD_MEDIA_TYPE, self.max_age),
            DiscoveryDocument::new(&self.catalog(), AI_CATALOG_MEDIA_TYPE, self.max_age),
        )
    }
}

/// The AI Catalog listing `cards` (every route's), cacheable for the shortest of their lifetimes;
/// `None` without cards.
pub(crate) fn catalog_document(cards: &[&ServerCard]) -> Option<DiscoveryDocument> {
    let max_age = cards.iter().map(|c| c.max_age).min()?;
    let entries: Vec<Value> = cards.iter().map(|c| c.catalog_entry()).collect();
    Some(DiscoveryDocument::new(&json!({"specVersion": "1.0", "entries": entries}), AI_CATALOG_MEDIA_TYPE, max_age))
}

/// Serves one public JSON document with CORS, `ETag`/`304` and `Cache-Control`.
#[derive(Debug, Clone)]
pub struct DiscoveryDocument {
    inner: Arc<DocInner>,
}

#[derive(Debug)]
struct DocInner {
    body: Bytes,
    etag: HeaderValue,
    media_type: HeaderValue,
    cache_control: HeaderValue,
}

impl DiscoveryDocument {
    /// Serves `document` as `media_type`, cacheable for `max_age`.
    pub fn new(document: &Value, media_type: &'static str, max_age: Duration) -> Self {
        let body = Bytes::from(serde_json::to_vec_pretty(document).unwrap_or_default());
        let hash = digest::digest(&digest::SHA256, &body);
        let etag = format!("\"{}\"", URL_SAFE_NO_PAD.encode(&hash.as_ref()[..18]));
        let cache = format!("public, max-age={}", max_age.as_secs());
        Self {
            inner: Arc::new(DocInner {
                body,
                etag: HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"0\"")),
                media_type: HeaderValue::from_static(media_type),
                cache_control: HeaderValue::from_str(&cache)
                    .unwrap_or(HeaderValue::from_static("public, max-age=3600")),
            }),
        }
    }

    /// The body served.
    pub fn body(&self) -> &Bytes {
        &self.inner.body
    }

    fn respond(&self, method: &Method, if_none_match: Option<&HeaderValue>) -> Response<Full<Bytes>> {
        let d = &self.inner;
        let mut response = Response::new(Full::new(Bytes::new()));
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET"));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Content-Type, If-None-Match"));
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("ETag"));
        match *method {
            Method::OPTIONS => {
                h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
                *response.status_mut() = StatusCode::NO_CONTENT;
                return response;
            }
            Method::GET | Method::HEAD => {}
            _ => {
                h.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
                *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
                return response;
            }
        }
        h.insert(header::ETAG, d.etag.clone());
        h.insert(header::CACHE_CONTROL, d.cache_control.clone());
        h.insert(header::VARY, HeaderValue::from_static("Accept"));
        if if_none_match.and_then(|v| v.to_str().ok()).is_some_and(|v| etag_matches(v, &d.etag)) {
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            return response;
        }
        h.insert(header::CONTENT_TYPE, d.media_type.clone());
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(d.body.len()));
        if *method == Method::GET {
            *response.body_mut() = Full::new(d.body.clone());
        }
        response
    }
}

/// `If-None-Match` (weak comparison, RFC 9110 §13.1.2): `*`, or a list holding our tag.
fn etag_matches(if_none_match: &str, etag: &HeaderValue) -> bool {
    let ours = etag.to_str().unwrap_or_default();
    if_none_match.split(',').map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/") == ours)
}

impl<B> Service<Request<B>> for DiscoveryDocument {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        ready(Ok(self.respond(req.method(), req.headers().get(header::IF_NONE_MATCH))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_fields_and_catalog() {
        assert!(ServerCard::new("weather", "1", "d", "https://x/mcp").is_err(), "no slash");
        assert!(ServerCard::new("com.example/a/b", "1", "d", "https://x/mcp").is_err(), "two slashes");
        assert!(ServerCard::new("com.example/w", "1", &"d".repeat(101), "https://x/mcp").is_err());
        let card = ServerCard::new("com.example/weather", "1.2.0", "Forecasts", "https://mcp.example.com/mcp")
            .expect("card")
            .title("Weather")
            .header(CardHeader::secret("X-Api-Key", Some("your key")))
            .header(CardHeader::fixed("X-Tenant", "acme"));
        let set = ExtensionSet::builder()
            .with_own("audit", json!({"tamperEvident": true}))
            .and_then(|b| b.require("io.github.mcp-enterprise/audit"))
            .expect("ids")
            .build();
        let doc = card.document(&set);
        assert_eq!(doc["$schema"], SERVER_CARD_SCHEMA);
        assert_eq!(doc["remotes"][0]["url"], "https://mcp.example.com/mcp");
        assert_eq!(
            doc["remotes"][0]["headers"][0],
            json!({"name": "X-Api-Key", "isRequired": true, "isSecret": true, "description": "your key"})
        );
        assert_eq!(
            doc["_meta"]["io.github.mcp-enterprise/extensions"]["io.github.mcp-enterprise/audit"],
            json!({"tamperEvident": true})
        );
        assert_eq!(
            doc["_meta"]["io.github.mcp-enterprise/required-extensions"],
            json!(["io.github.mcp-enterprise/audit"])
        );
        assert!(doc.get("capabilities").is_none());
        let catalog = card.catalog();
        assert_eq!(catalog["entries"][0]["identifier"], "urn:air:mcp.example.com:weather");
        assert_eq!(catalog["entries"][0]["url"], "https://mcp.example.com/mcp/server-card");
    }

    #[test]
    fn etags() {
        let tag = HeaderValue::from_static("\"abc\"");
        assert!(etag_matches("\"abc\"", &tag));
        assert!(etag_matches("W/\"abc\"", &tag));
        assert!(etag_matches("\"x\", \"abc\"", &tag));
        assert!(etag_matches("*", &tag));
        assert!(!etag_matches("\"abd\"", &tag));
    }
}
