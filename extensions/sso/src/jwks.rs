//! Signing keys and the JWKS cache that survives key rotation.
//!
//! - Lazy: nothing is fetched before the first token needs a key.
//! - TTL from `Cache-Control: max-age`, clamped to configured bounds.
//! - Single-flight: concurrent misses wait for one fetch.
//! - A token with an unknown `kid`, or whose signature fails with a cached key (the IdP may have
//!   re-keyed under the same `kid`), triggers a refetch — at most once per `min_refetch_interval`,
//!   so a flood of bogus kids cannot hammer the IdP.
//! - Expired keys keep serving for `max_stale` while the IdP is unreachable (a background refresh
//!   is attempted); after that the cache fails closed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::clock::Clock;
use crate::discovery::{self, ProviderMetadata};
use crate::error::AuthError;
use crate::http::HttpClient;

/// Key families, with the curve where it matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    P256,
    P384,
    Ed25519,
}

/// One public verification key from a JWKS.
pub(crate) struct VerifyKey {
    pub(crate) kid: Option<String>,
    family: Family,
    alg: Option<Algorithm>,
    pub(crate) key: DecodingKey,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .field("alg", &self.alg)
            .finish()
    }
}

impl VerifyKey {
    /// Whether this key may verify a token signed with `alg`: the key type (and curve) must fit the
    /// algorithm, and a key that names its algorithm only verifies that one.
    pub(crate) fn fits(&self, alg: Algorithm) -> bool {
        let family_fits = match alg {
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => self.family == Family::Rsa,
            Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512 => self.family == Family::Rsa,
            Algorithm::ES256 => self.family == Family::P256,
            Algorithm::ES384 => self.family == Family::P384,
            Algorithm::EdDSA => self.family == Family::Ed25519,
            // HMAC (and anything newer) never verifies with a published key
            _ => false,
        };
        family_fits && self.alg.is_none_or(|a| a == alg)
    }
}

/// Parses a JWKS, keeping the public signature keys it can use. Keys with private material,
/// symmetric keys, encryption keys and unknown types are skipped (with a warning).
pub(crate) fn parse_jwks(body: &[u8]) -> Result<Vec<VerifyKey>, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let keys = doc.get("keys").and_then(Value::as_array).ok_or("no \"keys\" array")?;
    let mut out = Vec::new();
    for jwk in keys {
        match parse_jwk(jwk) {
            Ok(Some(key)) => out.push(key),
            Ok(None) => {}
            Err(reason) => {
                let kid = jwk.get("kid").and_then(Value::as_str).unwrap_or("-");
                tracing::warn!(kid, reason, "skipping unusable key in JWKS");
            }
        }
    }
    Ok(out)
}

fn parse_jwk(jwk: &Value) -> Result<Option<VerifyKey>, &'static str> {
    let text = |k: &str| jwk.get(k).and_then(Value::as_str);
    if text("use").is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    if ["d", "p", "q", "dp", "dq", "qi", "k"].iter().any(|k| jwk.get(*k).is_some()) {
        return Err("contains private or symmetric key material");
    }
    let alg = match text("alg") {
        None => None,
        Some(a) => Some(a.parse::<Algorithm>().map_err(|_| "unsupported alg")?),
    };
    let (family, key) = match (text("kty"), text("crv")) {
        (Some("RSA"), _) => {
            let (n, e) = text("n").zip(text("e")).ok_or("RSA key without n/e")?;
            (Family::Rsa, DecodingKey::from_rsa_components(n, e).map_err(|_| "invalid RSA key")?)
        }
        (Some("EC"), Some(crv @ ("P-256" | "P-384"))) => {
            let (x, y) = text("x").zip(text("y")).ok_or("EC key without x/y")?;
            let family = if crv == "P-256" { Family::P256 } else { Family::P384 };
            (family, DecodingKey::from_ec_components(x, y).map_err(|_| "invalid EC key")?)
        }
        (Some("OKP"), Some("Ed25519")) => {
            let x = text("x").ok_or("OKP key without x")?;
            (Family::Ed25519, DecodingKey::from_ed_components(x).map_err(|_| "invalid Ed25519 key")?)
        }
        _ => return Err("unsupported key type or curve"),
    };
    Ok(Some(VerifyKey { kid: text("kid").map(str::to_owned), family, alg, key }))
}

/// Where an issuer's keys come from.
#[derive(Debug)]
pub(crate) enum KeySource {
    /// Keys given in the configuration.
    Static(Vec<Arc<VerifyKey>>),
    /// A JWKS URL given in the configuration.
    Url(String),
    /// The `jwks_uri` of the discovered metadata.
    Discover,
}

/// Cache settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JwksSettings {
    pub(crate) default_ttl: Duration,
    pub(crate) min_ttl: Duration,
    pub(crate) max_ttl: Duration,
    pub(crate) min_refetch_interval: Duration,
    pub(crate) max_stale: Duration,
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
}

/// One issuer's keys (and discovered metadata).
#[derive(Debug)]
pub(crate) struct JwksCache {
    issuer: String,
    source: KeySource,
    http: HttpClient,
    clock: Arc<dyn Clock>,
    settings: JwksSettings,
    state: RwLock<State>,
    fetch_lock: tokio::sync::Mutex<()>,
    refreshing: AtomicBool,
}

/// What a key lookup needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyQuery<'a> {
    pub(crate) kid: Option<&'a str>,
    pub(crate) alg: Algorithm,
}

impl JwksCache {
    pub(crate) fn new(
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
            Some(kid) => keys.iter().find(|k| k.kid.as_deref() == Some(kid)).cloned(),
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

    /// The key for a token, fetching or refreshing as the rules above say.
    pub(crate) async fn key_for(self: &Arc<Self>, q: KeyQuery<'_>) -> Result<(Arc<VerifyKey>, u64), AuthError> {
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

    /// Until when the cached key set is current (not stale); `Duration::MAX` for static keys.
    pub(crate) fn fresh_until(&self) -> Duration {
        self.read().expires_at
    }

    /// After a signature failed with a cached key: refetch (rate-limited) and return the new key
    /// if the published key under that kid changed.
    pub(crate) async fn refetch_after_failure(
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

    fn lookup_after_fetch(&self, q: KeyQuery<'_>, now: Duration) -> Result<(Arc<VerifyKey>, u64), AuthError> {
        let st = self.read();
        if !st.loaded || (now >= st.expires_at && now.saturating_sub(st.expires_at) >= self.settings.max_stale) {
            return Err(AuthError::IdpUnavailable);
        }
        match Self::select(&st.keys, q) {
            Some(k) => Ok((k, st.attempts)),
            // the IdP could not be asked: the key may be new, so this is "try again", not "invalid"
            None if !st.last_ok => Err(AuthError::IdpUnavailable),
            None => Err(AuthError::UnknownKey),
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
        let result = self.fetch().await;
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
            KeySource::Discover => {
                let meta = self.metadata_locked().await?;
                meta.jwks_uri.clone().ok_or_else(|| "the metadata has no jwks_uri".to_owned())?
            }
        };
        let fetched = self.http.get_json(&url).await.map_err(|e| format!("fetching {url}: {e}"))?;
        let keys = parse_jwks(&fetched.body).map_err(|e| format!("JWKS at {url}: {e}"))?;
        Ok((keys.into_iter().map(Arc::new).collect(), fetched.max_age))
    }

    /// The discovered metadata, fetching it if needed. Call with `fetch_lock` held.
    async fn metadata_locked(&self) -> Result<Arc<ProviderMetadata>, String> {
        if let Some(meta) = self.read().metadata.clone() {
            return Ok(meta);
        }
        let meta = Arc::new(discovery::discover(&self.http, &self.issuer).await.map_err(|e| e.to_string())?);
        self.write().metadata = Some(meta.clone());
        Ok(meta)
    }

    /// The discovered metadata (discovering if needed, single-flight).
    pub(crate) async fn metadata(&self) -> Result<Arc<ProviderMetadata>, String> {
        if let Some(meta) = self.read().metadata.clone() {
            return Ok(meta);
        }
        let _guard = self.fetch_lock.lock().await;
        self.metadata_locked().await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const P256_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const P256_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    fn ec(kid: &str) -> Value {
        json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": P256_X, "y": P256_Y})
    }

    #[test]
    fn jwks_parsing_skips_unusable_keys() {
        let doc = json!({"keys": [
            ec("a"),
            {"kty": "EC", "crv": "P-256", "kid": "priv", "x": P256_X, "y": P256_Y, "d": "secret"},
            {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
            {"kty": "EC", "crv": "P-256", "kid": "enc", "use": "enc", "x": P256_X, "y": P256_Y},
            {"kty": "EC", "crv": "P-521", "kid": "p521", "x": P256_X, "y": P256_Y},
            {"kty": "RSA", "kid": "r", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        ]});
        let keys = parse_jwks(doc.to_string().as_bytes()).expect("parsed");
        let kids: Vec<_> = keys.iter().map(|k| k.kid.clone().unwrap_or_default()).collect();
        assert_eq!(kids, ["a", "r", "ed"]);
        assert!(keys[0].fits(Algorithm::ES256) && !keys[0].fits(Algorithm::ES384) && !keys[0].fits(Algorithm::RS256));
        assert!(keys[1].fits(Algorithm::RS256) && keys[1].fits(Algorithm::PS256) && !keys[1].fits(Algorithm::HS256));
        assert!(keys[2].fits(Algorithm::EdDSA) && !keys[2].fits(Algorithm::ES256));
        assert!(parse_jwks(b"{}").is_err());
        assert!(parse_jwks(b"nope").is_err());
    }

    #[test]
    fn a_key_naming_its_alg_verifies_only_that_alg() {
        let mut jwk = ec("a");
        jwk["alg"] = json!("ES256");
        let key = parse_jwk(&jwk).expect("ok").expect("usable");
        assert!(key.fits(Algorithm::ES256));
        let mut jwk = json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "alg": "PS256"});
        jwk["kid"] = json!("r");
        let key = parse_jwk(&jwk).expect("ok").expect("usable");
        assert!(key.fits(Algorithm::PS256) && !key.fits(Algorithm::RS256));
    }

    #[test]
    fn kidless_selection_needs_exactly_one_fitting_key() {
        let one: Vec<Arc<VerifyKey>> = vec![Arc::new(parse_jwk(&ec("a")).expect("ok").expect("key"))];
        let q = KeyQuery { kid: None, alg: Algorithm::ES256 };
        assert!(JwksCache::select(&one, q).is_some());
        let two = vec![one[0].clone(), Arc::new(parse_jwk(&ec("b")).expect("ok").expect("key"))];
        assert!(JwksCache::select(&two, q).is_none());
        assert!(JwksCache::select(&two, KeyQuery { kid: Some("b"), alg: Algorithm::ES256 }).is_some());
        assert!(JwksCache::select(&one, KeyQuery { kid: None, alg: Algorithm::RS256 }).is_none());
    }
}

#[cfg(test)]
mod cache_tests {
    //! The cache's timing rules, against a tiny JWKS endpoint that counts its requests.

    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::clock::ManualClock;

    #[derive(Clone, Default)]
    struct Endpoint {
        hits: Arc<AtomicUsize>,
        answer: Arc<Mutex<(u16, String, Option<String>)>>,
    }

    impl Endpoint {
        fn set(&self, status: u16, body: String, cache_control: Option<&str>) {
            *self.answer.lock().expect("lock") = (status, body, cache_control.map(str::to_owned));
        }
        fn hits(&self) -> usize {
            self.hits.load(Ordering::SeqCst)
        }
    }

    async fn serve() -> (String, Endpoint) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/jwks", listener.local_addr().expect("addr"));
        let ep = Endpoint::default();
        let state = ep.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut read = 0;
                    while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf[read..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read += n,
                        }
                    }
                    state.hits.fetch_add(1, Ordering::SeqCst);
                    // let concurrent callers pile up behind the single flight
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let (status, body, cc) = state.answer.lock().expect("lock").clone();
                    let cc = cc.map(|c| format!("cache-control: {c}\r\n")).unwrap_or_default();
                    let head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{cc}content-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(body.as_bytes()).await;
                });
            }
        });
        (url, ep)
    }

    fn jwks(kids: &[&str]) -> String {
        let keys: Vec<Value> = kids
            .iter()
            .map(|k| json!({"kty": "EC", "crv": "P-256", "kid": k, "x": super::tests_support::X, "y": super::tests_support::Y}))
            .collect();
        json!({"keys": keys}).to_string()
    }

    fn settings() -> JwksSettings {
        JwksSettings {
            default_ttl: Duration::from_secs(300),
            min_ttl: Duration::from_secs(30),
            max_ttl: Duration::from_secs(3600),
            min_refetch_interval: Duration::from_secs(10),
            max_stale: Duration::from_secs(600),
        }
    }

    fn cache(url: &str, clock: &ManualClock) -> Arc<JwksCache> {
        let http = HttpClient::new(Duration::from_secs(2)).expect("client");
        Arc::new(JwksCache::new(
            "https://idp".into(),
            KeySource::Url(url.into()),
            http,
            Arc::new(clock.clone()),
            settings(),
        ))
    }

    fn q(kid: &str) -> KeyQuery<'_> {
        KeyQuery { kid: Some(kid), alg: Algorithm::ES256 }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lazy_and_single_flight() {
        let (url, ep) = serve().await;
        ep.set(200, jwks(&["a"]), None);
        let clock = ManualClock::at(1000);
        let c = cache(&url, &clock);
        assert_eq!(ep.hits(), 0, "nothing is fetched before a token needs a key");
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.key_for(q("a")).await.map(|(k, _)| k.kid.clone()) })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.expect("join"), Ok(Some("a".to_owned())));
        }
        assert_eq!(ep.hits(), 1, "twenty concurrent misses make one fetch");
    }

    #[tokio::test]
    async fn unknown_kids_refetch_at_most_once_per_interval() {
        let (url, ep) = serve().await;
        ep.set(200, jwks(&["a"]), None);
        let clock = ManualClock::at(1000);
        let c = cache(&url, &clock);
        c.key_for(q("a")).await.expect("a");
        clock.advance(Duration::from_secs(11));
        for i in 0..50 {
            let kid = format!("bogus-{i}");
            assert_eq!(c.key_for(q(&kid)).await.map(|_| ()), Err(AuthError::UnknownKey));
        }
        assert_eq!(ep.hits(), 2, "a flood of bogus kids costs one refetch");
        // a real new key is picked up once the interval has passed
        ep.set(200, jwks(&["a", "b"]), None);
        assert_eq!(c.key_for(q("b")).await.map(|_| ()), Err(AuthError::UnknownKey), "still inside the interval");
        clock.advance(Duration::from_secs(10));
        assert!(c.key_for(q("b")).await.is_ok());
        assert_eq!(ep.hits(), 3);
    }

    #[tokio::test]
    async fn cache_control_sets_the_ttl() {
        let (url, ep) = serve().await;
        ep.set(200, jwks(&["a"]), Some("public, max-age=100"));
        let clock = ManualClock::at(1000);
        let c = cache(&url, &clock);
        c.key_for(q("a")).await.expect("a");
        clock.advance(Duration::from_secs(89));
        c.key_for(q("a")).await.expect("a");
        assert_eq!(ep.hits(), 1, "fresh for max-age");
        clock.advance(Duration::from_secs(6));
        c.key_for(q("a")).await.expect("served while refreshing ahead in the background");
        for _ in 0..100 {
            if ep.hits() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(ep.hits(), 2, "the last tenth of the TTL triggers one background refresh");
    }

    #[tokio::test]
    async fn an_expired_set_is_confirmed_before_a_key_is_served() {
        let (url, ep) = serve().await;
        ep.set(200, jwks(&["a"]), Some("max-age=100"));
        let clock = ManualClock::at(1000);
        let c = cache(&url, &clock);
        c.key_for(q("a")).await.expect("a");
        // the IdP retires "a"; once the cached set expires the old key must not verify anything
        ep.set(200, jwks(&["b"]), Some("max-age=100"));
        clock.advance(Duration::from_secs(101));
        assert_eq!(c.key_for(q("a")).await.map(|_| ()), Err(AuthError::UnknownKey), "retired key refused");
        assert_eq!(ep.hits(), 2, "one synchronous refresh");
        c.key_for(q("b")).await.expect("the new key");
        assert_eq!(ep.hits(), 2);
    }

    #[tokio::test]
    async fn an_unknown_kid_while_the_idp_is_down_is_unavailable_not_invalid() {
        let (url, ep) = serve().await;
        ep.set(200, jwks(&["a"]), Some("max-age=60"));
        let clock = ManualClock::at(1000);
        let c = cache(&url, &clock);
        c.key_for(q("a")).await.expect("a");
        ep.set(503, "down".into(), None);
        clock.advance(Duration::from_secs(61));
        c.key_for(q("a")).await.expect("stale key served while the IdP is down");
        assert_eq!(c.key_for(q("new")).await.map(|_| ()), Err(AuthError::IdpUnavailable));
    }

    #[tokio::test]
    async fn stale_keys_serve_while_the_idp_is_down_then_fail_closed() {
        let (url, ep) = serve().await;
        ep.set(200, jwks(&["a"]), Some("max-age=60"));
        let clock = ManualClock::at(1000);
        let c = cache(&url, &clock);
        c.key_for(q("a")).await.expect("a");
        ep.set(503, "down".into(), None);
        clock.advance(Duration::from_secs(60 + 500));
        assert!(c.key_for(q("a")).await.is_ok(), "stale for 500 s < max_stale 600 s: still served");
        clock.advance(Duration::from_secs(200));
        assert_eq!(c.key_for(q("a")).await.map(|_| ()), Err(AuthError::IdpUnavailable), "too stale: fail closed");
        // a cold cache with the IdP down fails closed at once
        let cold = cache(&url, &clock);
        assert_eq!(cold.key_for(q("a")).await.map(|_| ()), Err(AuthError::IdpUnavailable));
        // and recovers when the IdP is back
        ep.set(200, jwks(&["a"]), None);
        clock.advance(Duration::from_secs(11));
        assert!(c.key_for(q("a")).await.is_ok());
    }
}

#[cfg(test)]
mod tests_support {
    pub(super) const X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    pub(super) const Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
}
