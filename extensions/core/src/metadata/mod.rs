//! RFC 9728 OAuth 2.0 Protected Resource Metadata, assembled from what each enabled layer
//! contributes, and a layer that serves it at the well-known URIs.
//!
//! ```
//! use mcp_enterprise_core::{MetadataContribution, ProtectedResourceMetadata, ProtectedResourceMetadataLayer};
//!
//! # fn main() -> Result<(), mcp_enterprise_core::ConfigError> {
//! let prm = ProtectedResourceMetadata::builder("https://mcp.example.com/mcp")?
//!     .contribute(MetadataContribution::new()
//!         .authorization_server("https://idp.example.com")
//!         .scopes(["tools:read", "tools:call"]))
//!     .contribute(MetadataContribution::new().dpop_algs(["ES256"]).dpop_required(true))
//!     .build();
//! assert_eq!(prm.metadata_url(), "https://mcp.example.com/.well-known/oauth-protected-resource/mcp");
//! assert_eq!(prm.to_json()["dpop_bound_access_tokens_required"], true);
//! let _layer = ProtectedResourceMetadataLayer::new(prm);
//! # Ok(()) }
//! ```

mod service;

use std::sync::Arc;

use bytes::Bytes;
use http::Uri;
use serde_json::{Map, Value};

pub use service::{ProtectedResourceMetadataLayer, ProtectedResourceMetadataService, ResponseFuture};

use crate::error::ConfigError;

/// The well-known path prefix (RFC 9728 §3).
pub const WELL_KNOWN_PREFIX: &str = "/.well-known/oauth-protected-resource";

/// What one layer adds to the metadata document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct MetadataContribution {
    authorization_servers: Vec<String>,
    scopes: Vec<String>,
    dpop_algs: Vec<String>,
    dpop_required: bool,
    resource_name: Option<String>,
}

impl MetadataContribution {
    /// An empty contribution.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds an authorization server issuer URL.
    pub fn authorization_server(mut self, issuer: impl Into<String>) -> Self {
        self.authorization_servers.push(issuer.into());
        self
    }
    /// Adds supported scopes.
    pub fn scopes<I: IntoIterator<Item = T>, T: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }
    /// Adds accepted DPoP proof algorithms.
    pub fn dpop_algs<I: IntoIterator<Item = T>, T: Into<String>>(mut self, algs: I) -> Self {
        self.dpop_algs.extend(algs.into_iter().map(Into::into));
        self
    }
    /// Says that only DPoP-bound tokens are accepted.
    pub fn dpop_required(mut self, required: bool) -> Self {
        self.dpop_required = required;
        self
    }
    /// Sets the human-readable resource name.
    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.resource_name = Some(name.into());
        self
    }
}

/// A protected resource metadata document. Cheap to clone (one shared allocation): the layer
/// serving it is cloned with the rest of the stack for every request.
#[derive(Debug, Clone)]
pub struct ProtectedResourceMetadata {
    document: Arc<Document>,
}

#[derive(Debug)]
struct Document {
    resource: String,
    metadata_url: String,
    paths: Vec<String>,
    json: Bytes,
    value: Value,
}

impl ProtectedResourceMetadata {
    /// Starts a document for the canonical URI of the MCP server (RFC 8707), e.g.
    /// `https://mcp.example.com/mcp`. It must be absolute `https` (or `http`), without userinfo,
    /// query or fragment.
    pub fn builder(resource: &str) -> Result<ProtectedResourceMetadataBuilder, ConfigError> {
        let invalid = |reason| ConfigError::InvalidUri { what: "resource", value: resource.to_owned(), reason };
        if resource.contains('#') {
            return Err(invalid("must not have a fragment"));
        }
        let uri: Uri = resource.parse().map_err(|_| invalid("not a valid URI"))?;
        match uri.scheme_str() {
            Some("https" | "http") => {}
            _ => return Err(invalid("must be an absolute https:// (or http://) URI")),
        }
        let authority = uri.authority().ok_or_else(|| invalid("must have a host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("must not carry userinfo"));
        }
        if uri.query().is_some() {
            return Err(invalid("must not have a query"));
        }
        Ok(ProtectedResourceMetadataBuilder {
            resource: resource.to_owned(),
            uri,
            contribution: MetadataContribution::default(),
        })
    }

    /// The canonical resource URI.
    pub fn resource(&self) -> &str {
        &self.document.resource
    }

    /// The URL of this document (path-suffixed form), for `resource_metadata` in challenges.
    pub fn metadata_url(&self) -> &str {
        &self.document.metadata_url
    }

    /// The paths it is served at: the path-suffixed well-known URI and the root one.
    pub fn paths(&self) -> &[String] {
        &self.document.paths
    }

    /// The document.
    pub fn to_json(&self) -> &Value {
        &self.document.value
    }

    pub(crate) fn body(&self) -> Bytes {
        self.document.json.clone()
    }
}

/// Builds a [`ProtectedResourceMetadata`].
#[derive(Debug)]
#[must_use]
pub struct ProtectedResourceMetadataBuilder {
    resource: String,
    uri: Uri,
    contribution: MetadataContribution,
}

impl ProtectedResourceMetadataBuilder {
    /// Merges one layer's contribution (lists are de-duplicated, `dpop_required` is OR-ed).
    pub fn contribute(mut self, other: MetadataContribution) -> Self {
        let c = &mut self.contribution;
        merge(&mut c.authorization_servers, other.authorization_servers);
        merge(&mut c.scopes, other.scopes);
        merge(&mut c.dpop_algs, other.dpop_algs);
        c.dpop_required |= other.dpop_required;
        if other.resource_name.is_some() {
            c.resource_name = other.resource_name;
        }
        self
    }

    /// Finishes the document.
    pub fn build(self) -> ProtectedResourceMetadata {
        let c = self.contribution;
        let mut doc = Map::new();
        doc.insert("resource".into(), Value::String(self.resource.clone()));
        let list = |v: &[String]| Value::Array(v.iter().cloned().map(Value::String).collect());
        if !c.authorization_servers.is_empty() {
            doc.insert("authorization_servers".into(), list(&c.authorization_servers));
        }
        if !c.scopes.is_empty() {
            doc.insert("scopes_supported".into(), list(&c.scopes));
        }
        doc.insert("bearer_methods_supported".into(), list(&["header".to_owned()]));
        if !c.dpop_algs.is_empty() {
            doc.insert("dpop_signing_alg_values_supported".into(), list(&c.dpop_algs));
        }
        if c.dpop_required {
            doc.insert("dpop_bound_access_tokens_required".into(), Value::Bool(true));
        }
        if let Some(name) = c.resource_name {
            doc.insert("resource_name".into(), Value::String(name));
        }
        let path = self.uri.path().trim_end_matches('/');
        let suffixed = format!("{WELL_KNOWN_PREFIX}{path}");
        let mut paths = vec![suffixed.clone()];
        if suffixed != WELL_KNOWN_PREFIX {
            paths.push(WELL_KNOWN_PREFIX.to_owned());
        }
        let scheme = self.uri.scheme_str().unwrap_or("https");
        let authority = self.uri.authority().map(|a| a.as_str()).unwrap_or_default();
        let value = Value::Object(doc);
        ProtectedResourceMetadata {
            document: Arc::new(Document {
                resource: self.resource,
                metadata_url: format!("{scheme}://{authority}{suffixed}"),
                paths,
                json: Bytes::from(value.to_string()),
                value,
            }),
        }
    }
}

fn merge(into: &mut Vec<String>, from: Vec<String>) {
    for item in from {
        if !into.contains(&item) {
            into.push(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn assembled_document() {
        let prm = ProtectedResourceMetadata::builder("https://mcp.example.com/mcp")
            .expect("valid")
            .contribute(MetadataContribution::new().authorization_server("https://a").scopes(["x", "y"]))
            .contribute(
                MetadataContribution::new()
                    .authorization_server("https://a")
                    .authorization_server("https://b")
                    .scopes(["y"]),
            )
            .contribute(MetadataContribution::new().dpop_algs(["ES256"]).dpop_required(true).resource_name("Demo"))
            .build();
        assert_eq!(
            prm.to_json(),
            &json!({
                "resource": "https://mcp.example.com/mcp",
                "authorization_servers": ["https://a", "https://b"],
                "scopes_supported": ["x", "y"],
                "bearer_methods_supported": ["header"],
                "dpop_signing_alg_values_supported": ["ES256"],
                "dpop_bound_access_tokens_required": true,
                "resource_name": "Demo",
            })
        );
        assert_eq!(prm.paths(), ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"]);
        let root = ProtectedResourceMetadata::builder("http://127.0.0.1:8080/").expect("valid").build();
        assert_eq!(root.paths(), ["/.well-known/oauth-protected-resource"]);
        assert_eq!(root.metadata_url(), "http://127.0.0.1:8080/.well-known/oauth-protected-resource");
    }

    #[test]
    fn resource_must_be_canonical() {
        for bad in [
            "mcp.example.com",
            "/mcp",
            "ftp://x/mcp",
            "https://u@x/mcp",
            "https://x/mcp#f",
            "https://x/mcp?q=1",
            "https://",
        ] {
            assert!(ProtectedResourceMetadata::builder(bad).is_err(), "{bad}");
        }
    }
}
