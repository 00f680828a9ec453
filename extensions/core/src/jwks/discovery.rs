//! Authorization server metadata discovery (RFC 8414 and OpenID Connect Discovery), in the order
//! the MCP authorization spec gives — or OpenID Connect Discovery alone, as workload identity
//! issuers (Kubernetes, SPIRE) publish it — with the fetched `issuer` checked for exact equality.

use serde::Deserialize;

use super::http::{FetchError, HttpClient};

/// Which metadata locations are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DiscoveryOrder {
    /// The MCP authorization spec's order ([`discovery_urls`]): RFC 8414 first, then OpenID
    /// Connect (inserted, then appended).
    #[default]
    Mcp,
    /// OpenID Connect Discovery 1.0 §4 only: `{issuer}/.well-known/openid-configuration`
    /// ([`openid_configuration_url`]). Kubernetes service-account issuers and SPIRE's OIDC
    /// discovery provider publish only this document.
    OpenIdConnect,
}

/// The parts of the metadata this layer uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct ProviderMetadata {
    /// The issuer identifier.
    pub issuer: String,
    /// Where the signing keys are published.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// RFC 7662 introspection endpoint.
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
    /// Token endpoint.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// Scopes the server supports.
    #[serde(default)]
    pub scopes_supported: Option<Vec<String>>,
}

/// Why discovery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// No metadata document was found at any of the well-known locations.
    #[error("no metadata found for {issuer} (tried {tried})")]
    NotFound {
        /// The issuer.
        issuer: String,
        /// The URLs tried.
        tried: String,
    },
    /// A document names another issuer: refused (mix-up or misconfiguration).
    #[error("metadata at {url} names issuer {found:?}, expected exactly {expected:?}")]
    IssuerMismatch {
        /// Where it was found.
        url: String,
        /// What it says.
        found: String,
        /// What is configured.
        expected: String,
    },
    /// The identity provider could not be reached.
    #[error("fetching {url}: {error}")]
    Fetch {
        /// The URL.
        url: String,
        /// What happened.
        error: FetchError,
    },
}

/// The metadata URLs to try for an issuer, in the MCP spec's order: RFC 8414 with the path inserted,
/// OpenID Connect with the path inserted, OpenID Connect with the path appended. Without a path: RFC
/// 8414, then OpenID Connect.
pub fn discovery_urls(issuer: &str) -> Vec<String> {
    let trimmed = issuer.trim_end_matches('/');
    let (origin, path) = match trimmed.find("://").map(|i| i + 3) {
        Some(start) => match trimmed[start..].find('/') {
            Some(slash) => trimmed.split_at(start + slash),
            None => (trimmed, ""),
        },
        None => (trimmed, ""),
    };
    if path.is_empty() {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server"),
            format!("{origin}/.well-known/openid-configuration"),
        ]
    } else {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
            format!("{origin}/.well-known/openid-configuration{path}"),
            format!("{origin}{path}/.well-known/openid-configuration"),
        ]
    }
}

/// The OpenID Connect Discovery 1.0 §4 location: `/.well-known/openid-configuration` appended to
/// the issuer (a trailing `/` of the issuer is not doubled).
pub fn openid_configuration_url(issuer: &str) -> String {
    format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'))
}

/// Discovers the metadata of `issuer` at the locations `order` names, in order. A location that
/// answers 404 (or 400/405/410) is skipped; a document naming another issuer ends the search.
pub async fn discover(
    http: &HttpClient,
    issuer: &str,
    order: DiscoveryOrder,
) -> Result<ProviderMetadata, DiscoveryError> {
    let urls = match order {
        DiscoveryOrder::Mcp => discovery_urls(issuer),
        DiscoveryOrder::OpenIdConnect => vec![openid_configuration_url(issuer)],
    };
    for url in &urls {
        match http.get_json(url).await {
            Ok(fetched) => {
                let Ok(meta) = serde_json::from_slice::<ProviderMetadata>(&fetched.body) else {
                    tracing::warn!(%url, "metadata document is not valid JSON metadata; trying the next location");
                    continue;
                };
                if meta.issuer != issuer {
                    return Err(DiscoveryError::IssuerMismatch {
                        url: url.clone(),
                        found: meta.issuer,
                        expected: issuer.to_owned(),
                    });
                }
                return Ok(meta);
            }
            Err(FetchError::Status(404 | 400 | 405 | 410)) => continue,
            Err(error) => return Err(DiscoveryError::Fetch { url: url.clone(), error }),
        }
    }
    Err(DiscoveryError::NotFound { issuer: issuer.to_owned(), tried: urls.join(", ") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_spec_order() {
        assert_eq!(
            discovery_urls("https://idp.example.com/tenant/1"),
            [
                "https://idp.example.com/.well-known/oauth-authorization-server/tenant/1",
                "https://idp.example.com/.well-known/openid-configuration/tenant/1",
                "https://idp.example.com/tenant/1/.well-known/openid-configuration",
            ]
        );
        assert_eq!(
            discovery_urls("https://idp.example.com"),
            [
                "https://idp.example.com/.well-known/oauth-authorization-server",
                "https://idp.example.com/.well-known/openid-configuration",
            ]
        );
        assert_eq!(
            discovery_urls("http://127.0.0.1:9/")[0],
            "http://127.0.0.1:9/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            openid_configuration_url("https://container.googleapis.com/v1/projects/p/clusters/c/"),
            "https://container.googleapis.com/v1/projects/p/clusters/c/.well-known/openid-configuration"
        );
    }
}
