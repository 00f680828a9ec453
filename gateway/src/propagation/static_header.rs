//! `static`: the gateway's own credential for an upstream that does not know users — one header
//! (e.g. `Authorization: Bearer <the gateway's API key>`) whose value comes from a secret
//! reference in the configuration ([`StaticHeader`]), or `Authorization: Bearer <token>` from the
//! OAuth client-credentials grant ([`ClientCredentials`]: the token cached until shortly before it
//! expires, one request at a time). It says nothing about the caller.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use mcp_enterprise_config::ClientCredentialsConfig;
use mcp_enterprise_core::clock::{Clock, SystemClock};
use mcp_enterprise_core::outbound::{Egress, TlsSettings};

use super::PropagationError;
use super::token_exchange::{ClientSettings, TokenClient};

/// One header added to every upstream request. `Debug` never shows the value.
#[derive(Clone)]
pub struct StaticHeader {
    name: HeaderName,
    value: HeaderValue,
}

impl std::fmt::Debug for StaticHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticHeader").field("name", &self.name).field("value", &"***").finish()
    }
}

/// Headers that frame the message or address the upstream: never set from configuration.
const FRAMING: &[&str] = &["host", "connection", "content-length", "transfer-encoding", "te", "upgrade"];

impl StaticHeader {
    /// The header `name: value`; the value is marked sensitive (HPACK never indexes it, and
    /// `Debug` of the header map hides it).
    pub fn new(name: &str, value: &str) -> Result<Self, PropagationError> {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| PropagationError::Config(format!("static: {name:?} is not a header name")))?;
        if FRAMING.contains(&name.as_str()) {
            return Err(PropagationError::Config(format!("static: the header {name} cannot be set")));
        }
        let mut value = HeaderValue::from_str(value)
            .map_err(|_| PropagationError::Config("static: the value is not a valid header value".into()))?;
        value.set_sensitive(true);
        Ok(Self { name, value })
    }

    /// The header.
    pub fn header(&self) -> (HeaderName, HeaderValue) {
        (self.name.clone(), self.value.clone())
    }
}

/// The gateway's own token from the client-credentials grant. Cheap to clone.
#[derive(Clone)]
pub struct ClientCredentials {
    inner: Arc<Grant>,
}

struct Grant {
    client: TokenClient,
    scopes: String,
    resource: String,
    refresh_before: Duration,
    clock: Arc<dyn Clock>,
    cached: Mutex<Option<(Arc<str>, Duration)>>,
    flight: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("endpoint", &self.inner.client.endpoint())
            .field("client_id", &self.inner.client.client_id())
            .field("scopes", &self.inner.scopes)
            .finish_non_exhaustive()
    }
}

impl ClientCredentials {
    /// The grant for the upstream `upstream` (the default `resource`).
    pub fn from_config(config: &ClientCredentialsConfig, upstream: &str) -> Result<Self, PropagationError> {
        Self::build(config, upstream, None)
    }

    /// Like [`from_config`](Self::from_config), reaching the token endpoint through `egress` and
    /// trusting `tls`'s extra roots (the `egress` section).
    pub fn from_config_outbound(
        config: &ClientCredentialsConfig,
        upstream: &str,
        egress: &Egress,
        tls: &TlsSettings,
    ) -> Result<Self, PropagationError> {
        Self::build(config, upstream, Some((egress, tls)))
    }

    fn build(
        config: &ClientCredentialsConfig,
        upstream: &str,
        outbound: Option<(&Egress, &TlsSettings)>,
    ) -> Result<Self, PropagationError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let client = TokenClient::new(ClientSettings::from(config).via(outbound), clock.clone())?;
        Ok(Self {
            inner: Arc::new(Grant {
                client,
                scopes: config.scopes.join(" "),
                resource: config.resource.clone().unwrap_or_else(|| upstream.to_owned()),
                refresh_before: Duration::from_secs(config.refresh_before_secs),
                clock,
                cached: Mutex::new(None),
                flight: tokio::sync::Mutex::new(()),
            }),
        })
    }

    fn cached(&self) -> Option<Arc<str>> {
        let now = self.inner.clock.now();
        let cached = self.inner.cached.lock().unwrap_or_else(PoisonError::into_inner);
        cached.as_ref().filter(|(_, until)| *until > now).map(|(token, _)| token.clone())
    }

    /// `Authorization: Bearer <token>`, the token cached or requested now.
    pub async fn header(&self) -> Result<(HeaderName, HeaderValue), PropagationError> {
        let token = match self.cached() {
            Some(token) => token,
            None => {
                let _turn = self.inner.flight.lock().await;
                match self.cached() {
                    Some(token) => token,
                    None => self.request().await?,
                }
            }
        };
        let mut value = HeaderValue::try_from(format!("Bearer {token}"))
            .map_err(|_| PropagationError::ExchangeFailed("the issued token is not header-safe".into()))?;
        value.set_sensitive(true);
        Ok((http::header::AUTHORIZATION, value))
    }

    async fn request(&self) -> Result<Arc<str>, PropagationError> {
        let mut form = vec![("grant_type", "client_credentials".to_owned()), ("resource", self.inner.resource.clone())];
        if !self.inner.scopes.is_empty() {
            form.push(("scope", self.inner.scopes.clone()));
        }
        // every refusal is about the gateway's own registration: 502
        let (token, lifetime) = self.inner.client.request(form, false).await?;
        if let Some(lifetime) = lifetime {
            let until = self.inner.clock.now() + lifetime - self.inner.refresh_before.min(lifetime / 2);
            *self.inner.cached.lock().unwrap_or_else(PoisonError::into_inner) = Some((token.clone(), until));
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_values_and_redaction() {
        let h = StaticHeader::new("X-Api-Key", "s3cret").expect("header");
        assert_eq!(h.header().0.as_str(), "x-api-key");
        assert!(h.header().1.is_sensitive());
        assert!(!format!("{h:?}").contains("s3cret"));
        assert!(StaticHeader::new("bad name", "v").is_err());
        assert!(StaticHeader::new("host", "v").is_err());
        assert!(StaticHeader::new("Content-Length", "1").is_err());
        assert!(StaticHeader::new("authorization", "a\nb").is_err());
    }
}
