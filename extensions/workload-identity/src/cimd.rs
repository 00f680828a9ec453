//! Client ID Metadata Documents (CIMD, draft-ietf-oauth-client-id-metadata-document) for
//! `private_key_jwt`: opt-in, a client id that is an https URL under a configured prefix names a
//! JSON document at that URL, fetched through the pack's outbound client (egress, CA bundle,
//! timeout), at most `max_bytes`, whose `client_id` must equal the URL and whose `jwks` or
//! `jwks_uri` (https) give the keys for the client assertion. Documents are cached for a bounded
//! time, a bounded number of them; a failed fetch stands for 30 s (no fetch per request).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::Full;
use mcp_enterprise_core::clock::Clock;
use mcp_enterprise_core::jwks::{HttpClient, JwksCache, JwksFormat, JwksSettings, KeySource};
use serde_json::Value;

use crate::client_auth::ClientKeys;
use crate::error::{GrantError, WorkloadConfigError};
use crate::trust::check_url;

/// Default largest document (bytes).
const DEFAULT_MAX_BYTES: usize = 5 * 1024;

/// Where URL client ids may point, and how their documents are fetched and kept.
pub struct ClientIdMetadataDocuments {
    prefixes: Vec<String>,
    http: HttpClient,
    clock: Arc<dyn Clock>,
    max_bytes: usize,
    ttl: Duration,
    capacity: usize,
    /// Keys (or the refusal, for [`FAILURE_TTL`] at most) and until when.
    cache: Mutex<HashMap<String, Cached>>,
}

type Cached = (Result<ClientKeys, GrantError>, Duration);

/// How long a failed fetch stands (at most the cache TTL): no fetch storm for a bad document.
const FAILURE_TTL: Duration = Duration::from_secs(30);

impl fmt::Debug for ClientIdMetadataDocuments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdMetadataDocuments").field("prefixes", &self.prefixes).finish_non_exhaustive()
    }
}

fn bad(reason: &'static str) -> GrantError {
    GrantError::InvalidClient(reason)
}

impl ClientIdMetadataDocuments {
    /// URL client ids under `allowed_prefixes` (each an https URL ending in `/`, so it fixes the
    /// host), fetched with `http`. Defaults: documents up to 5 KiB, cached 5 minutes, 1000 at most.
    pub fn new(
        allowed_prefixes: Vec<String>,
        http: HttpClient,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, WorkloadConfigError> {
        if allowed_prefixes.is_empty() {
            return Err(WorkloadConfigError::Limit {
                what: "client_id_metadata_documents.allowed_prefixes",
                reason: "at least one prefix is required",
            });
        }
        for p in &allowed_prefixes {
            let reason = match check_url(p, false) {
                Err(reason) => Some(reason),
                Ok(()) if !p.ends_with('/') || p.matches('/').count() < 3 => {
                    Some("must end in '/' after the host (it fixes the host)".to_owned())
                }
                Ok(()) => None,
            };
            if let Some(reason) = reason {
                return Err(WorkloadConfigError::Url {
                    what: "client metadata document prefix",
                    value: p.clone(),
                    reason,
                });
            }
        }
        Ok(Self {
            prefixes: allowed_prefixes,
            http,
            clock,
            max_bytes: DEFAULT_MAX_BYTES,
            ttl: Duration::from_secs(300),
            capacity: 1000,
            cache: Mutex::default(),
        })
    }

    /// Largest document accepted (bytes, 256..=65 536).
    pub fn max_bytes(mut self, max: usize) -> Result<Self, WorkloadConfigError> {
        if !(256..=65_536).contains(&max) {
            return Err(WorkloadConfigError::Limit {
                what: "client_id_metadata_documents.max_bytes",
                reason: "must be between 256 and 65536",
            });
        }
        self.max_bytes = max;
        Ok(self)
    }

    /// How long a document is kept (1 s ..= 1 day) and how many at most (1 ..= 100 000).
    pub fn cache(mut self, ttl: Duration, capacity: usize) -> Result<Self, WorkloadConfigError> {
        if ttl.is_zero() || ttl > Duration::from_secs(86_400) || !(1..=100_000).contains(&capacity) {
            return Err(WorkloadConfigError::Limit {
                what: "client_id_metadata_documents cache",
                reason: "cache_ttl_secs must be 1..=86400 and cache_capacity 1..=100000",
            });
        }
        self.ttl = ttl;
        self.capacity = capacity;
        Ok(self)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The keys of the client whose id is the URL `client_id`.
    pub(crate) async fn keys(&self, client_id: &str) -> Result<ClientKeys, GrantError> {
        let uri: http::Uri = client_id.parse().map_err(|_| bad("the client id is not a valid URL"))?;
        if uri.scheme_str() != Some("https") {
            return Err(bad("a URL client id must be https"));
        }
        if client_id.contains('#') || uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(bad("a URL client id has no fragment or user info"));
        }
        if !self.prefixes.iter().any(|p| client_id.starts_with(p.as_str())) {
            return Err(bad("the client id URL is not an allowed client metadata document location"));
        }
        let now = self.clock.now();
        if let Some((keys, until)) = self.lock().get(client_id)
            && now < *until
        {
            return keys.clone();
        }
        let keys = self.fetch(client_id).await;
        let until = now + if keys.is_ok() { self.ttl } else { FAILURE_TTL.min(self.ttl) };
        let mut cache = self.lock();
        if cache.len() >= self.capacity {
            cache.retain(|_, (_, until)| now < *until);
        }
        if cache.len() >= self.capacity
            && let Some(oldest) = cache.iter().min_by_key(|(_, (_, until))| *until).map(|(k, _)| k.clone())
        {
            cache.remove(&oldest);
        }
        cache.insert(client_id.to_owned(), (keys.clone(), until));
        keys
    }

    async fn fetch(&self, url: &str) -> Result<ClientKeys, GrantError> {
        let req = Request::get(url)
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|_| bad("the client id is not a valid URL"))?;
        let res = self.http.request(req).await.map_err(|e| {
            tracing::warn!(client_id = %url, error = %e, "client metadata document fetch failed");
            bad("the client metadata document could not be fetched")
        })?;
        if res.status() != StatusCode::OK {
            return Err(bad("the client metadata document could not be fetched"));
        }
        if res.body().len() > self.max_bytes {
            return Err(bad("the client metadata document is too large"));
        }
        let doc: Value = serde_json::from_slice(res.body())
            .ok()
            .filter(Value::is_object)
            .ok_or(bad("the client metadata document is not a JSON object"))?;
        if doc.get("client_id").and_then(Value::as_str) != Some(url) {
            return Err(bad("the client metadata document's client_id is not its URL"));
        }
        if doc.get("token_endpoint_auth_method").is_some_and(|m| m != "private_key_jwt") {
            return Err(bad("the client metadata document's token_endpoint_auth_method is not private_key_jwt"));
        }
        match (doc.get("jwks"), doc.get("jwks_uri").and_then(Value::as_str)) {
            (Some(jwks), None) => ClientKeys::from_jwks(url, jwks)
                .map_err(|_| bad("the client metadata document's jwks has no usable key")),
            (None, Some(uri)) if check_url(uri, false).is_ok() => {
                let settings = JwksSettings::default().format(JwksFormat::Jwks);
                let cache = JwksCache::new(
                    url.to_owned(),
                    KeySource::Url(uri.to_owned()),
                    self.http.clone(),
                    self.clock.clone(),
                    settings,
                );
                Ok(ClientKeys::Remote(Arc::new(cache)))
            }
            _ => Err(bad("the client metadata document has neither jwks nor an https jwks_uri")),
        }
    }
}
