//! Building the ID-JAG validator from an authorization server's `id_jag` section (registered
//! clients with a secret, `jwks` or `jwks_uri`; Client ID Metadata Documents).

use std::sync::Arc;
use std::time::Duration;

use mcp_enterprise_core::jwks::HttpClient;

use crate::cimd::ClientIdMetadataDocuments;
use crate::config::{AuthorizationServerConfig, IdJagConfig, Outbound, WorkloadIdentityConfig};
use crate::error::WorkloadConfigError;
use crate::id_jag::{IdJagValidator, RegisteredClient};
use crate::replay::MemoryReplayStore;
use crate::trust::TrustPolicy;

/// The ID-JAG validator of an authorization server's `id_jag` section.
pub(crate) fn id_jag_validator(
    cfg: &WorkloadIdentityConfig,
    a: &AuthorizationServerConfig,
    j: &IdJagConfig,
    leeway: Duration,
    replay: Option<Arc<dyn crate::replay::ReplayStore>>,
    outbound: Option<&Outbound>,
) -> Result<IdJagValidator, WorkloadConfigError> {
    if j.idps.is_empty() {
        return Err(WorkloadConfigError::Limit {
            what: "id_jag.idps",
            reason: "at least one enterprise IdP is required",
        });
    }
    let idps = TrustPolicy::from_issuers(cfg, &j.idps, outbound)?;
    let clock = idps.clock().clone();
    let mut v = IdJagValidator::builder(idps, &a.issuer)
        .resource(&cfg.resource)
        .leeway(leeway)
        .max_assertion_lifetime(Duration::from_secs(j.max_lifetime_secs.unwrap_or(300)));
    for r in &a.resources {
        v = v.resource(r);
    }
    let mut http: Option<HttpClient> = None;
    let outbound_http = || -> Result<HttpClient, WorkloadConfigError> {
        match outbound {
            Some((egress, tls)) => HttpClient::with_outbound(Duration::from_secs(10), egress, tls),
            None => HttpClient::new(Duration::from_secs(10)),
        }
        .map_err(|e| WorkloadConfigError::Http(e.to_string()))
    };
    if let Some(c) = &j.client_id_metadata_documents {
        let mut docs = ClientIdMetadataDocuments::new(c.allowed_prefixes.clone(), outbound_http()?, clock.clone())?;
        if let Some(n) = c.max_bytes {
            docs = docs.max_bytes(n)?;
        }
        docs = docs.cache(Duration::from_secs(c.cache_ttl_secs.unwrap_or(300)), c.cache_capacity.unwrap_or(1000))?;
        v = v.client_id_metadata_documents(docs);
    }
    for c in &j.clients {
        v = v.client(match (&c.client_secret, &c.jwks, &c.jwks_uri) {
            (Some(secret), None, None) => RegisteredClient::with_secret(&c.client_id, secret),
            (None, Some(jwks), None) => RegisteredClient::with_jwks(&c.client_id, jwks)?,
            (None, None, Some(uri)) => {
                let http = match &mut http {
                    Some(h) => h,
                    None => http.insert(outbound_http()?),
                };
                RegisteredClient::with_jwks_uri(
                    &c.client_id,
                    uri,
                    http.clone(),
                    clock.clone(),
                    a.insecure_http_loopback,
                )?
            }
            _ => {
                return Err(WorkloadConfigError::Rule {
                    rule: c.client_id.clone(),
                    reason: "a client has exactly one of client_secret, jwks and jwks_uri".into(),
                });
            }
        });
    }
    let token_path = a.token_path.as_deref().unwrap_or("/oauth/token");
    v = v.token_endpoint(format!("{}{token_path}", a.issuer.trim_end_matches('/')));
    if let Some(store) = replay {
        v = v.replay_store(store);
    } else if let Some(n) = j.replay_capacity {
        v = v.replay_store(Arc::new(MemoryReplayStore::new(n)));
    }
    if a.insecure_http_loopback {
        v = v.insecure_http_loopback();
    }
    v.build()
}
