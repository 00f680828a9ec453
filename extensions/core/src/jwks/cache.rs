//! The JWKS cache that survives key rotation: one per issuer (or trust domain).
//!
//! - Lazy: nothing is fetched before the first token needs a key.
//! - TTL from `Cache-Control: max-age`, clamped to configured bounds.
//! - Single-flight: concurrent misses wait for one fetch.
//! - A token with an unknown `kid`, or whose signature fails with a cached key (the IdP may have
//!   re-keyed under the same `kid`), triggers a refetch — at most once per `min_refetch_interval`,
//!   so a flood of bogus kids cannot hammer the IdP.
//! - Close to expiry (the last tenth of the TTL) a hit refreshes in the background.
//! - An expired set is confirmed with the IdP before a key is served; if the IdP is unreachable,
//!   expired keys keep serving for `max_stale`, after which the cache fails closed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::discovery::{self, DiscoveryOrder, ProviderMetadata};
use super::http::HttpClient;
use super::keys::{JwksFormat, KeyError, VerifyKey, parse_jwks_as};
use crate::clock::Clock;

/// Where an issuer's keys come from.
#[derive(Debug)]
#[non_exhaustive]
pub enum KeySource {
    /// Keys given in the configuration (never refetched).
    Static(Vec<Arc<VerifyKey>>),
    /// A key set URL given in the configuration.
    Url(String),
    /// The `jwks_uri` of the issuer's metadata, discovered at the given locations.
    Discover(DiscoveryOrder),
}

/// What a `jwks_uri` found by discovery must look like before it is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UriRule {
    /// Any URL the client can fetch.
    #[default]
    Any,
    /// `https` only (SEP-1933: workload keys are fetched over TLS).
    HttpsOnly,
    /// `https`, or plain `http` on `127.0.0.1` (tests with a loopback issuer).
    HttpsOrLoopbackHttp,
}

impl UriRule {
    /// Whether `url` is acceptable.
    pub fn allows(self, url: &str) -> bool {
        let Ok(uri) = url.parse::<http::Uri>() else { return false };
        match (self, uri.scheme_str()) {
            (Self::Any, Some("http" | "https")) => true,
            (_, Some("https")) => uri.host().is_some(),
            (Self::HttpsOrLoopbackHttp, Some("http")) => uri.host() == Some("127.0.0.1"),
            _ => false,
        }
    }
}

/// Cache settings: `JwksSettings::default()` adjusted with the setters.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct JwksSettings {
    /// TTL when the server sends no `Cache-Control: max-age` (default 5 min).
    pub default_ttl: Duration,
    /// Lower bound of the TTL (default 30 s).
    pub min_ttl: Duration,
    /// Upper bound of the TTL (default 24 h).
    pub max_ttl: Duration,
    /// Shortest time between refetches caused by unknown kids or failed signatures (default 10 s).
    pub min_refetch_interval: Duration,
    /// How long expired keys serve while the server is unreachable (default 1 h).
    pub max_stale: Duration,
    /// What the fetched documents are (default a JWK Set).
    pub format: JwksFormat,
    /// What a discovered `jwks_uri` must look like (default: any http(s) URL).
    pub discovered_uri: UriRule,
}

impl Default for JwksSettings {
    fn default() -> Self {
        Self {
            default_ttl: Duration::from_secs(300),
            min_ttl: Duration::from_secs(30),
            max_ttl: Duration::from_secs(24 * 3600),
            min_refetch_interval: Duration::from_secs(10),
            max_stale: Duration::from_secs(3600),
            format: JwksFormat::Jwks,
            discovered_uri: UriRule::Any,
        }
    }
}

impl JwksSettings {
    /// The TTL without `max-age`, and the bounds any `max-age` is clamped to.
    #[must_use]
    pub fn ttl(mut self, default: Duration, min: Duration, max: Duration) -> Self {
        self.default_ttl = default;
        self.min_ttl = min.min(max);
        self.max_ttl = max;
        self
    }

    /// Shortest time between refetches caused by unknown kids or failed signatures.
    #[must_use]
    pub fn min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch_interval = interval;
        self
    }

    /// How long expired keys serve while the server is unreachable.
    #[must_use]
    pub fn max_stale(mut self, max_stale: Duration) -> Self {
        self.max_stale = max_stale;
        self
    }

    /// What the fetched documents are.
    #[must_use]
    pub fn format(mut self, format: JwksFormat) -> Self {
        self.format = format;
        self
    }

    /// What a discovered `jwks_uri` must look like.
    #[must_use]
    pub fn discovered_uri(mut self, rule: UriRule) -> Self {
        self.discovered_uri = rule;
        self
    }
}

#[derive(Debug, Default)]
struct State {
    keys: Vec<Arc<VerifyKey>>,
    /// Whether keys were ever fetched successfully.
    loaded: bool,
    expires_at: Duration,
    /// From here until `expires_at`, hits start a background refresh (the last tenth of the TTL).
    refresh_at: Duration,
    /// Whether the latest fetch attempt succeeded.
    last_ok: bool,
    last_attempt: Option<Duration>,
    /// Incremented by every fetch attempt: the single-flight token.
    attempts: u64,
    metadata: Option<Arc<ProviderMetadata>>,
    /// When the keys were last fetched successfully.
    fetched_at: Option<Duration>,
}

/// One issuer's keys (and discovered metadata). Share it in an `Arc`.
#[derive(Debug)]
pub struct JwksCache {
    issuer: String,
    source: KeySource,
    http: HttpClient,
    clock: Arc<dyn Clock>,
    settings: JwksSettings,
    state: RwLock<State>,
    fetch_lock: tokio::sync::Mutex<()>,
    refreshing: AtomicBool,
    fetches: crate::stats::Count,
    fetch_failures: crate::stats::Count,
}

/// Where an issuer's key set stands (readiness: keys loaded and not past the staleness bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySetState {
    /// Keys are there and may be used.
    Usable,
    /// Nothing has been fetched yet (keys are fetched when the first token needs one).
    NotFetched,
    /// Keys were fetched but have been expired for longer than the staleness bound.
    TooStale,
}

impl crate::stats::Instrumented for JwksCache {
    fn readings(&self, out: &mut Vec<crate::stats::Reading>) {
        use crate::stats::Reading;
        if matches!(self.source, KeySource::Static(_)) {
            return;
        }
        let issuer = || vec![("issuer", self.issuer.clone())];
        out.push(Reading::counter("mcpe_jwks_fetches", "JWKS fetch attempts, by issuer", issuer(), self.fetches.get()));
        out.push(Reading::counter(
            "mcpe_jwks_fetch_failures",
            "JWKS fetches that failed (unreachable, bad answer), by issuer",
            issuer(),
            self.fetch_failures.get(),
        ));
        if let Some(at) = self.read().fetched_at {
            let age = self.clock.now().saturating_sub(at).as_secs_f64();
            out.push(Reading::gauge(
                "mcpe_jwks_key_set_age_seconds",
                "Seconds since the issuer's keys were last fetched successfully",
                issuer(),
                age,
            ));
        }
    }
}

/// What a key lookup needs: the token's `kid` (if any) and `alg`.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct KeyQuery<'a> {
    /// The `kid` header.
    pub kid: Option<&'a str>,
    /// The `alg` header.
    pub alg: Algorithm,
}

impl<'a> KeyQuery<'a> {
    /// A lookup for a token with this `kid` and `alg`.
    pub fn new(kid: Option<&'a str>, alg: Algorithm) -> Self {
        Self { kid, alg }
    }
}

impl JwksCache {
    /// A cache for `issuer`'s keys from `source`. Nothing is fetched until a key is needed.
    pub fn new(
        issuer: String,
        source: KeySource,
        http: HttpClient,
        clock: Arc<dyn Clock>,
        settings: JwksSettings,
    ) -> Self {
        let mut state = State::default();
        if let KeySource::Static(keys) = &source {
            state.keys = keys.clone();
            state.loaded = true;
            state.expires_at = Duration::MAX;
            state.refresh_at = Duration::MAX;
            state.last_ok = true;
        }
        Self {
            issuer,
            source,
            http,
            clock,
            settings,
            state: RwLock::new(state),
            fetch_lock: tokio::sync::Mutex::new(()),
            refreshing: AtomicBool::new(false),
            fetches: crate::stats::Count::default(),
            fetch_failures: crate::stats::Count::default(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn select(keys: &[Arc<VerifyKey>], q: KeyQuery<'_>) -> Option<Arc<VerifyKey>> {
        match q.kid {
            Some(kid) => keys.iter().find(|k| k.kid() == Some(kid)).cloned(),
            None => {
                // kid-less tokens verify only when exactly one key fits the algorithm
                let mut fitting = keys.iter().filter(|k| k.fits(q.alg));
                match (fitting.next(), fitting.next()) {
                    (Some(k), None) => Some(k.clone()),
                    _ => None,
                }
            }
        }
    }

    /// The issuer (or trust domain) these keys belong to.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Verifies a JWS signature with the key the token names, following the cache rules: a
    /// failed signature with a cached key refetches once (rate-limited) in case the server
    /// re-keyed under the same `kid`.
    pub async fn verify(
        self: &Arc<Self>,
        q: KeyQuery<'_>,
        signing_input: &[u8],
        signature: &str,
    ) -> Result<(), KeyError> {
        let (key, attempts) = self.key_for(q).await?;
        if key.verify(q.alg, signing_input, signature)? {
            return Ok(());
        }
        match self.refetch_after_failure(q, attempts, &key).await {
            Some(fresh) if fresh.verify(q.alg, signing_input, signature)? => Ok(()),
            _ => Err(KeyError::BadSignature),
        }
    }

    /// The key for a token, fetching or refreshing as the rules above say, with the fetch
    /// counter it was read at (for [`refetch_after_failure`](Self::refetch_after_failure)).
    pub async fn key_for(self: &Arc<Self>, q: KeyQuery<'_>) -> Result<(Arc<VerifyKey>, u64), KeyError> {
        let now = self.clock.now();
        let (found, loaded, expires_at, refresh_at, attempts, last_attempt) = {
            let st = self.read();
            (Self::select(&st.keys, q), st.loaded, st.expires_at, st.refresh_at, st.attempts, st.last_attempt)
        };
        if !loaded {
            self.refresh(attempts).await;
            return self.lookup_after_fetch(q, now);
        }
        if now >= expires_at {
            // Expired: confirm against the IdP before trusting the old set (a retired key must not
            // keep verifying while the IdP is up). Single-flight and rate-limited; if the fetch fails,
            // `lookup_after_fetch` serves the stale set for the bounded staleness window.
            // Beyond the staleness bound nothing can be served, so every request may ask (still
            // single-flight: one fetch in flight at a time, shared by all who wait for it).
            let unusable = now.saturating_sub(expires_at) >= self.settings.max_stale;
            if unusable || self.may_refetch(now, last_attempt) {
                self.refresh(attempts).await;
            }
            return self.lookup_after_fetch(q, now);
        }
        if now >= refresh_at && found.is_some() && self.may_refetch(now, last_attempt) {
            // close to expiry: refresh ahead in the background so requests rarely wait on the IdP
            self.refresh_in_background(attempts);
        }
        if let Some(key) = found {
            return Ok((key, attempts));
        }
        // unknown kid while the cache is fresh: refetch, rate-limited
        if self.may_refetch(now, last_attempt) {
            self.refresh(attempts).await;
        }
        self.lookup_after_fetch(q, now)
    }

    /// Whether the keys may be used now (see [`KeySetState`]); static keys always may.
    pub fn key_set_state(&self) -> KeySetState {
        let now = self.clock.now();
        let st = self.read();
        if !st.loaded {
            KeySetState::NotFetched
        } else if now >= st.expires_at && now.saturating_sub(st.expires_at) >= self.settings.max_stale {
            KeySetState::TooStale
        } else {
            KeySetState::Usable
        }
    }

    /// [`key_set_state`](Self::key_set_state), after a refetch (rate-limited like every refetch)
    /// when the keys are too stale: a readiness probe brings the keys back without waiting for
    /// traffic, which a not-ready server does not get.
    pub async fn probe(&self) -> KeySetState {
        let state = self.key_set_state();
        if state != KeySetState::TooStale {
            return state;
        }
        let (attempts, last_attempt) = {
            let st = self.read();
            (st.attempts, st.last_attempt)
        };
        if self.may_refetch(self.clock.now(), last_attempt) {
            self.refresh(attempts).await;
        }
        self.key_set_state()
    }

    /// Until when the cached key set is current (not stale); `Duration::MAX` for static keys.
    pub fn fresh_until(&self) -> Duration {
        self.read().expires_at
    }

    /// After a signature failed with a cached key: refetch (rate-limited) and return the new key
    /// if the published key under that kid changed.
    pub async fn refetch_after_failure(
        self: &Arc<Self>,
        q: KeyQuery<'_>,
        seen_attempts: u64,
        failed: &Arc<VerifyKey>,
    ) -> Option<Arc<VerifyKey>> {
        if matches!(self.source, KeySource::Static(_)) {
            return None;
        }
        let now = self.clock.now();
        let last_attempt = self.read().last_attempt;
        if !self.may_refetch(now, last_attempt) {
            return None;
        }
        self.refresh(seen_attempts).await;
        let st = self.read();
        Self::select(&st.keys, q).filter(|k| !Arc::ptr_eq(k, failed))
    }

    fn may_refetch(&self, now: Duration, last_attempt: Option<Duration>) -> bool {
        !matches!(self.source, KeySource::Static(_))
            && last_attempt.is_none_or(|t| now.saturating_sub(t) >= self.settings.min_refetch_interval)
    }

    fn lookup_after_fetch(&self, q: KeyQuery<'_>, now: Duration) -> Result<(Arc<VerifyKey>, u64), KeyError> {
        let st = self.read();
        if !st.loaded || (now >= st.expires_at && now.saturating_sub(st.expires_at) >= self.settings.max_stale) {
            return Err(KeyError::Unavailable);
        }
        match Self::select(&st.keys, q) {
            Some(k) => Ok((k, st.attempts)),
            // the IdP could not be asked: the key may be new, so this is "try again", not "invalid"
            None if !st.last_ok => Err(KeyError::Unavailable),
            None => Err(KeyError::UnknownKey),
        }
    }

    fn refresh_in_background(self: &Arc<Self>, seen_attempts: u64) {
        if self.refreshing.swap(true, Ordering::SeqCst) {
            return;
        }
        let this = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    this.refresh(seen_attempts).await;
                    this.refreshing.store(false, Ordering::SeqCst);
                });
            }
            Err(_) => self.refreshing.store(false, Ordering::SeqCst),
        }
    }

    /// Fetches once for everyone who saw `seen_attempts` attempts: later callers find the counter
    /// moved and use the result instead of fetching again.
    async fn refresh(&self, seen_attempts: u64) {
        let _guard = self.fetch_lock.lock().await;
        if self.read().attempts != seen_attempts {
            return;
        }
        self.fetches.inc();
        let result = self.fetch().await;
        if result.is_err() {
            self.fetch_failures.inc();
        }
        let now = self.clock.now();
        let mut st = self.write();
        st.attempts += 1;
        st.last_attempt = Some(now);
        match result {
            Ok((keys, max_age)) => {
                let ttl =
                    max_age.unwrap_or(self.settings.default_ttl).clamp(self.settings.min_ttl, self.settings.max_ttl);
                tracing::debug!(issuer = %self.issuer, keys = keys.len(), ttl_secs = ttl.as_secs(), "JWKS refreshed");
                st.keys = keys;
                st.loaded = true;
                st.last_ok = true;
                st.fetched_at = Some(now);
                st.expires_at = now + ttl;
                st.refresh_at = now + ttl - ttl / 10;
            }
            Err(error) => {
                st.last_ok = false;
                tracing::warn!(issuer = %self.issuer, %error, "JWKS refresh failed; serving cached keys while allowed");
            }
        }
    }

    async fn fetch(&self) -> Result<(Vec<Arc<VerifyKey>>, Option<Duration>), String> {
        let url = match &self.source {
            KeySource::Static(keys) => return Ok((keys.clone(), None)),
            KeySource::Url(url) => url.clone(),
            KeySource::Discover(_) => {
                let meta = self.metadata_locked().await?;
                let url = meta.jwks_uri.clone().ok_or_else(|| "the metadata has no jwks_uri".to_owned())?;
                if !self.settings.discovered_uri.allows(&url) {
                    return Err(format!("the metadata's jwks_uri {url:?} is not allowed (https required)"));
                }
                url
            }
        };
        let fetched = self.http.get_json(&url).await.map_err(|e| format!("fetching {url}: {e}"))?;
        let keys = parse_jwks_as(&fetched.body, self.settings.format).map_err(|e| format!("JWKS at {url}: {e}"))?;
        Ok((keys.into_iter().map(Arc::new).collect(), fetched.max_age))
    }

    /// The discovered metadata, fetching it if needed. Call with `fetch_lock` held.
    async fn metadata_locked(&self) -> Result<Arc<ProviderMetadata>, String> {
        if let Some(meta) = self.read().metadata.clone() {
            return Ok(meta);
        }
        let order = match self.source {
            KeySource::Discover(order) => order,
            _ => DiscoveryOrder::Mcp,
        };
        let meta = Arc::new(discovery::discover(&self.http, &self.issuer, order).await.map_err(|e| e.to_string())?);
        self.write().metadata = Some(meta.clone());
        Ok(meta)
    }

    /// The discovered metadata (discovering if needed, single-flight).
    pub async fn metadata(&self) -> Result<Arc<ProviderMetadata>, String> {
        if let Some(meta) = self.read().metadata.clone() {
            return Ok(meta);
        }
        let _guard = self.fetch_lock.lock().await;
        self.metadata_locked().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwks::keys::tests::{ec, key};

    #[test]
    fn kidless_selection_needs_exactly_one_fitting_key() {
        let one: Vec<Arc<VerifyKey>> = vec![Arc::new(key(&ec("a")))];
        let q = KeyQuery::new(None, Algorithm::ES256);
        assert!(JwksCache::select(&one, q).is_some());
        let two = vec![one[0].clone(), Arc::new(key(&ec("b")))];
        assert!(JwksCache::select(&two, q).is_none());
        assert!(JwksCache::select(&two, KeyQuery::new(Some("b"), Algorithm::ES256)).is_some());
        assert!(JwksCache::select(&one, KeyQuery::new(None, Algorithm::RS256)).is_none());
    }

    #[test]
    fn discovered_uri_rules() {
        assert!(UriRule::Any.allows("http://idp.example.com/jwks"));
        assert!(!UriRule::Any.allows("ftp://idp.example.com/jwks"));
        assert!(UriRule::HttpsOnly.allows("https://idp.example.com/jwks"));
        assert!(!UriRule::HttpsOnly.allows("http://127.0.0.1/jwks"));
        assert!(UriRule::HttpsOrLoopbackHttp.allows("http://127.0.0.1:9/jwks"));
        assert!(!UriRule::HttpsOrLoopbackHttp.allows("http://localhost:9/jwks"));
        assert!(!UriRule::HttpsOrLoopbackHttp.allows("http://10.0.0.1/jwks"));
        assert!(!UriRule::HttpsOnly.allows("not a url"));
    }
}

#[cfg(test)]
mod cache_tests;

#[cfg(test)]
mod verify_tests;
