//! The access-token cache both client token sources ([`WorkloadTokenSource`](crate::WorkloadTokenSource)
//! and [`IdJagTokenSource`](crate::IdJagTokenSource)) are built on: the token until its refresh
//! time, one fetch at a time (single flight), and the last failure, which stands for the
//! credential it was for — a refusal until the credential changes, a transport failure for the
//! retry pause.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mcp_enterprise_core::clock::Clock;
use mcp_enterprise_core::jwks;

use crate::client::{AccessToken, TokenSourceError};

#[derive(Debug, Default)]
struct CacheState {
    /// The token and when to refresh it.
    cached: Option<(AccessToken, Duration)>,
    /// The last failure, the SHA-256 of the credential it was for, and until when it stands
    /// (`None`: until another credential).
    failure: Option<(TokenSourceError, [u8; 32], Option<Duration>)>,
}

/// See the module documentation.
pub(crate) struct TokenCache {
    state: Mutex<CacheState>,
    fetch: tokio::sync::Mutex<()>,
    clock: Arc<dyn Clock>,
    retry_pause: Duration,
}

impl TokenCache {
    pub(crate) fn new(clock: Arc<dyn Clock>, retry_pause: Duration) -> Self {
        Self { state: Mutex::default(), fetch: tokio::sync::Mutex::new(()), clock, retry_pause }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached token while it is fresh.
    pub(crate) fn fresh(&self) -> Option<AccessToken> {
        let now = self.clock.now();
        self.lock().cached.as_ref().filter(|(_, refresh_at)| now < *refresh_at).map(|(t, _)| t.clone())
    }

    /// Forgets the cached token if it is `token`.
    pub(crate) fn invalidate(&self, token: &AccessToken) {
        let mut st = self.lock();
        if st.cached.as_ref().is_some_and(|(t, _)| t == token) {
            st.cached = None;
        }
    }

    /// Forgets the cached token and any failure (a new credential).
    pub(crate) fn clear(&self) {
        *self.lock() = CacheState::default();
    }

    /// The fresh token, or (one caller at a time) `obtain` with the `credential` read after
    /// waiting for the others — unless the last failure stands for that credential. `log` is
    /// told about a new failure.
    pub(crate) async fn get<C, F, Fut>(
        &self,
        credential: C,
        obtain: F,
        log: impl FnOnce(&TokenSourceError),
    ) -> Result<AccessToken, TokenSourceError>
    where
        C: Future<Output = Result<String, TokenSourceError>>,
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<(AccessToken, Duration), TokenSourceError>>,
    {
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        let _single_flight = self.fetch.lock().await;
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        let credential = credential.await?;
        let digest = jwks::sha256(credential.as_bytes());
        let now = self.clock.now();
        if let Some((error, for_credential, until)) = &self.lock().failure
            && *for_credential == digest
            && until.is_none_or(|u| now < u)
        {
            return Err(error.clone());
        }
        match obtain(credential).await {
            Ok((token, refresh_at)) => {
                let mut st = self.lock();
                st.failure = None;
                st.cached = Some((token.clone(), refresh_at));
                Ok(token)
            }
            Err(error) => {
                let until = match error {
                    TokenSourceError::Rejected { .. } | TokenSourceError::RefreshRefused { .. } => None,
                    _ => Some(now + self.retry_pause),
                };
                log(&error);
                self.lock().failure = Some((error.clone(), digest, until));
                Err(error)
            }
        }
    }
}
