//! [`KeyedLimiter`]: GCRA (the token bucket's exact equivalent) per key, in memory, with a bounded
//! number of keys — [`governor`]'s keyed state on the pack's injectable [`Clock`]. Shared by the
//! pre-authentication limit ([`preauth`](crate::preauth)) and the gateway's rate limits.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::{Quota, RateLimiter};

use crate::clock::Clock;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Counted and allowed.
    Allowed,
    /// Over the limit; conforming again after this long.
    Limited(Duration),
    /// The key table is full of active keys (a new key is not tracked, so not allowed).
    Full,
}

/// [`governor`]'s clock on top of the pack's injectable clock (time since the Unix epoch).
#[derive(Debug, Clone)]
struct GovernorClock(Arc<dyn Clock>);

impl governor::clock::Clock for GovernorClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.0.now()
    }
}

/// A monotonic clock (wall time at start + elapsed), the limiters' default: a wall clock stepped
/// back must not hand out a fresh burst.
#[derive(Debug)]
pub struct MonotonicClock {
    origin: std::time::Instant,
    wall: Duration,
}

impl MonotonicClock {
    /// Starts now.
    pub fn new() -> Self {
        Self { origin: std::time::Instant::now(), wall: crate::clock::SystemClock.now() }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.wall + self.origin.elapsed()
    }
}

type Keyed = RateLimiter<Box<[u8]>, SharedMap, GovernorClock, NoOpMiddleware<Duration>>;

/// governor's `DashMap` store behind an `Arc`, so the limiter can also ask whether a key is known.
#[derive(Debug, Clone, Default)]
struct SharedMap(Arc<DashMapStateStore<Box<[u8]>>>);

impl StateStore for SharedMap {
    type Key = Box<[u8]>;

    fn measure_and_replace<T, F, E>(&self, key: &Self::Key, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

impl ShrinkableKeyedStateStore<Box<[u8]>> for SharedMap {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(&*self.0, drop_below);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&*self.0);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// How many checks pass between two sweeps of idle keys.
pub const SWEEP_EVERY: u64 = 4096;

/// How many checks pass between two counts of the keys while the table is far from full (within
/// this many keys of `max_keys`, every check counts them).
const LEN_EVERY: u64 = 64;

/// GCRA per key with at most `max_keys` keys: `burst` at once, then one per `interval`. Idle keys
/// (whose state is that of a fresh key) are swept every [`SWEEP_EVERY`] checks and whenever the
/// table is full.
#[derive(Debug)]
pub struct KeyedLimiter {
    limiter: Keyed,
    keys: SharedMap,
    clock: Arc<dyn Clock>,
    max_keys: usize,
    checks: AtomicU64,
    /// The number of keys, refreshed every [`LEN_EVERY`] checks (counting the shards' entries on
    /// every request costs more than the check itself) and on every check near the cap.
    known_len: AtomicUsize,
    /// When the last sweep forced by a full table ran (ms since the epoch), so a full table of
    /// active keys is not swept on every request.
    last_full_sweep: AtomicU64,
}

impl KeyedLimiter {
    /// One request per `interval` sustained (a zero interval counts as 1 ns), `burst` at once, at
    /// most `max_keys` keys, on `clock`.
    pub fn new(interval: Duration, burst: NonZeroU32, max_keys: usize, clock: Arc<dyn Clock>) -> Self {
        let quota =
            Quota::with_period(interval.max(Duration::from_nanos(1))).unwrap_or_else(|| Quota::per_second(burst));
        let keys = SharedMap::default();
        Self {
            limiter: RateLimiter::new(quota.allow_burst(burst), keys.clone(), GovernorClock(clock.clone())),
            keys,
            clock,
            max_keys,
            checks: AtomicU64::new(0),
            known_len: AtomicUsize::new(0),
            last_full_sweep: AtomicU64::new(0),
        }
    }

    /// Counts one request under `key`. A new key finding the table full (after evicting idle
    /// keys) is refused; concurrent new keys may overshoot `max_keys` by the number of threads.
    #[expect(clippy::borrowed_box, reason = "governor's keyed check takes a reference to the key type")]
    pub fn check(&self, key: &Box<[u8]>) -> Verdict {
        let checks = self.checks.fetch_add(1, Ordering::Relaxed);
        if checks % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
        }
        if checks.is_multiple_of(LEN_EVERY) {
            self.known_len.store(self.limiter.len(), Ordering::Relaxed);
        }
        // at most LEN_EVERY keys can have come since the last count: near the cap, count exactly
        let mut len = self.known_len.load(Ordering::Relaxed);
        if len.saturating_add(usize::try_from(LEN_EVERY).unwrap_or(usize::MAX)) >= self.max_keys {
            len = self.limiter.len();
            self.known_len.store(len, Ordering::Relaxed);
        }
        if len >= self.max_keys && !self.keys.0.contains_key(key) {
            let room = self.make_room();
            self.known_len.store(self.limiter.len(), Ordering::Relaxed);
            if !room {
                return Verdict::Full;
            }
        }
        match self.limiter.check_key(key) {
            Ok(()) => Verdict::Allowed,
            Err(not_until) => Verdict::Limited(not_until.wait_time_from(self.clock.now())),
        }
    }

    /// Evicts idle keys (at most once per 100 ms when the table stays full); whether there is room.
    fn make_room(&self) -> bool {
        let now = u64::try_from(self.clock.now().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_full_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 100
            && self.last_full_sweep.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter.len() < self.max_keys
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn limiter(interval: Duration, burst: u32, max_keys: usize) -> (KeyedLimiter, ManualClock) {
        let clock = ManualClock::at(1_800_000_000);
        let burst = NonZeroU32::new(burst).expect("non-zero");
        (KeyedLimiter::new(interval, burst, max_keys, Arc::new(clock.clone())), clock)
    }

    fn key(s: &str) -> Box<[u8]> {
        s.as_bytes().into()
    }

    #[test]
    fn gcra_allows_the_burst_then_one_per_interval() {
        let (limit, clock) = limiter(Duration::from_secs(10), 3, 10);
        let k = key("a");
        for _ in 0..3 {
            assert_eq!(limit.check(&k), Verdict::Allowed);
        }
        assert_eq!(limit.check(&k), Verdict::Limited(Duration::from_secs(10)));
        clock.advance(Duration::from_secs(4));
        assert_eq!(limit.check(&k), Verdict::Limited(Duration::from_secs(6)), "refused checks do not count");
        clock.advance(Duration::from_secs(6));
        assert_eq!(limit.check(&k), Verdict::Allowed, "one interval refilled one request");
        assert_eq!(limit.check(&k), Verdict::Limited(Duration::from_secs(10)));
    }

    #[test]
    fn keys_are_independent_and_bounded() {
        let (limit, clock) = limiter(Duration::from_secs(60), 1, 2);
        assert_eq!(limit.check(&key("a")), Verdict::Allowed);
        assert_eq!(limit.check(&key("b")), Verdict::Allowed);
        assert!(matches!(limit.check(&key("a")), Verdict::Limited(_)));
        assert_eq!(limit.check(&key("c")), Verdict::Full);
        assert_eq!(limit.len(), 2);
        clock.advance(Duration::from_secs(121));
        assert_eq!(limit.check(&key("c")), Verdict::Allowed);
        assert!(limit.len() <= 2, "{}", limit.len());
    }
}
