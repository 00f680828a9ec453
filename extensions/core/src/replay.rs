//! Replay defence shared by the auth extensions: a store remembers each accepted identifier (a
//! DPoP proof's or a workload token's `jti`, scoped by the caller) until it could no longer be
//! accepted anyway, so it is accepted once. The in-memory store is bounded and exact: when it is
//! full of live entries it refuses (fail closed) rather than forget one early. Implement
//! [`ReplayStore`] over a shared store to let replicas refuse each other's replays.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// A boxed future, as returned by [`ReplayStore`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why the store could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// Full of entries that are all still live: refusing is the only exact answer.
    #[error("the replay cache is full")]
    Full,
    /// A shared store is unreachable.
    #[error("the replay store is unavailable: {0}")]
    Unavailable(String),
}

/// Remembers identifiers.
pub trait ReplayStore: Send + Sync + std::fmt::Debug + 'static {
    /// Records `key` until `expires_at` (since the epoch). `Ok(true)`: first use; `Ok(false)`: a
    /// replay.
    fn check_and_insert<'a>(
        &'a self,
        key: &'a str,
        now: Duration,
        expires_at: Duration,
    ) -> BoxFuture<'a, Result<bool, ReplayError>>;
}

/// Live entries and their insertion order (for cheap expiry).
type Entries = (HashMap<String, Duration>, VecDeque<(Duration, String)>);

/// A bounded in-memory store.
#[derive(Debug)]
pub struct MemoryReplayStore {
    capacity: usize,
    state: Mutex<Entries>,
}

impl MemoryReplayStore {
    /// Remembers at most `capacity` identifiers at once.
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), state: Mutex::new((HashMap::new(), VecDeque::new())) }
    }

    fn insert(&self, key: &str, now: Duration, expires_at: Duration) -> Result<bool, ReplayError> {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (map, order) = &mut *guard;
        // drop expired entries at the front (expiries roughly follow insertion order)
        while let Some((exp, k)) = order.front() {
            if *exp > now {
                break;
            }
            if map.get(k).is_some_and(|e| e == exp) {
                map.remove(k);
            }
            order.pop_front();
        }
        if let Some(exp) = map.get(key)
            && *exp > now
        {
            return Ok(false);
        }
        if map.len() >= self.capacity {
            map.retain(|_, exp| *exp > now);
            if map.len() >= self.capacity {
                return Err(ReplayError::Full);
            }
        }
        map.insert(key.to_owned(), expires_at);
        order.push_back((expires_at, key.to_owned()));
        if order.len() > self.capacity.saturating_mul(2).max(16) {
            order.retain(|(exp, k)| map.get(k) == Some(exp));
        }
        Ok(true)
    }

    /// How many entries are held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).0.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ReplayStore for MemoryReplayStore {
    fn check_and_insert<'a>(
        &'a self,
        key: &'a str,
        now: Duration,
        expires_at: Duration,
    ) -> BoxFuture<'a, Result<bool, ReplayError>> {
        Box::pin(std::future::ready(self.insert(key, now, expires_at)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exact_within_window_and_bounded() {
        let s = MemoryReplayStore::new(2);
        let t = Duration::from_secs;
        assert_eq!(s.check_and_insert("a", t(0), t(10)).await, Ok(true));
        assert_eq!(s.check_and_insert("a", t(5), t(15)).await, Ok(false), "replay inside the window");
        assert_eq!(s.check_and_insert("b", t(5), t(15)).await, Ok(true));
        assert_eq!(s.check_and_insert("c", t(6), t(16)).await, Err(ReplayError::Full), "full of live entries");
        assert_eq!(s.check_and_insert("c", t(11), t(21)).await, Ok(true), "a expired: room again");
        assert_eq!(s.len(), 2);
        assert_eq!(s.check_and_insert("a", t(16), t(26)).await, Ok(true), "after its expiry a jti is forgotten");
        // long-lived churn never grows the store beyond its capacity
        let s = MemoryReplayStore::new(10);
        for i in 0..1000u64 {
            let _ = s.check_and_insert(&i.to_string(), t(i), t(i + 5)).await;
            assert!(s.len() <= 10);
        }
    }
}
