//! [`KeyedLimiter`]: GCRA (the token bucket's exact equivalent) per key, in memory, with a bounded
//! number of keys — [`governor`]'s keyed state store (a `DashMap` of atomic arrival times) on the
//! pack's injectable [`Clock`]. Shared by the pre-authentication limit ([`preauth`](crate::preauth))
//! and the gateway's rate limits. The GCRA step is governor's own (`Gcra::test_and_update`),
//! applied at a time the caller may read once for several checks ([`KeyedLimiter::check_at`]).

use std::fmt;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};

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

/// A key of a [`KeyedLimiter`] held inline: up to [`LimitKey::CAPACITY`] bytes, no allocation
/// per check (a lookup copies the bytes onto the stack; a new key is stored in the table's own
/// memory). Equal keys are equal byte strings.
#[derive(Clone, Copy)]
pub struct LimitKey {
    len: u8,
    bytes: [u8; LimitKey::CAPACITY],
}

impl LimitKey {
    /// The longest key kept as is (a longer one must be replaced by a digest of it by its maker).
    pub const CAPACITY: usize = 128;

    /// An empty key, to [`push`](Self::push) parts onto.
    #[inline]
    pub const fn new() -> Self {
        Self { len: 0, bytes: [0; Self::CAPACITY] }
    }

    /// The key made of `bytes`, or `None` when they are longer than [`CAPACITY`](Self::CAPACITY).
    #[inline]
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let mut key = Self::new();
        key.push(bytes).then_some(key)
    }

    /// Appends `part`; false (and the key unchanged) when it would not fit.
    #[inline]
    pub fn push(&mut self, part: &[u8]) -> bool {
        let at = usize::from(self.len);
        let Some(slot) = self.bytes.get_mut(at..at + part.len()) else { return false };
        slot.copy_from_slice(part);
        // at + part.len() <= CAPACITY (128) fits a u8
        self.len = u8::try_from(at + part.len()).unwrap_or(u8::MAX);
        true
    }

    /// The key's bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl Default for LimitKey {
    fn default() -> Self {
        Self::new()
    }
}

impl PartialEq for LimitKey {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for LimitKey {}

impl std::hash::Hash for LimitKey {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl fmt::Debug for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // a key may name a caller: its length only
        f.debug_struct("LimitKey").field("len", &self.len).finish_non_exhaustive()
    }
}

/// What a [`KeyedLimiter`] can be keyed by: a fixed-size value (no allocation per check).
pub trait Key: Hash + Eq + Clone + Send + Sync + 'static {}

impl<T: Hash + Eq + Clone + Send + Sync + 'static> Key for T {}

/// The table's hasher: keyed at random per process (keys are partly chosen by callers).
type Hasher = ahash::RandomState;

type Store<K> = DashMapStateStore<K, Hasher>;

/// How many checks pass between two sweeps of idle keys.
pub const SWEEP_EVERY: u64 = 4096;

/// How many checks pass between two counts of the keys while the table is far from full (within
/// this many keys of `max_keys`, every check counts them).
const LEN_EVERY: u64 = 64;

/// GCRA per key with at most `max_keys` keys: `burst` at once, then one per `interval`. Idle keys
/// (whose state is that of a fresh key) are swept every [`SWEEP_EVERY`] checks and whenever the
/// table is full.
#[derive(Debug)]
pub struct KeyedLimiter<K: Key = LimitKey> {
    /// Each key's theoretical arrival time (ns since `start`), governor's atomic state.
    store: Store<K>,
    clock: Arc<dyn Clock>,
    /// The clock's reading at construction: arrival times count from it.
    start: Duration,
    /// The emission interval (ns): one request's worth of time.
    t: u64,
    /// The tolerance (ns): `(burst - 1) × t`.
    tau: u64,
    max_keys: usize,
    checks: AtomicU64,
    /// The number of keys, refreshed every [`LEN_EVERY`] checks (counting the shards' entries on
    /// every request costs more than the check itself) and on every check near the cap.
    known_len: AtomicUsize,
    /// When the last sweep forced by a full table ran (ms since the epoch), so a full table of
    /// active keys is not swept on every request.
    last_full_sweep: AtomicU64,
}

impl<K: Key> KeyedLimiter<K> {
    /// One request per `interval` sustained (a zero interval counts as 1 ns), `burst` at once, at
    /// most `max_keys` keys, on `clock`.
    pub fn new(interval: Duration, burst: NonZeroU32, max_keys: usize, clock: Arc<dyn Clock>) -> Self {
        // as governor's quota: t = max(interval, 1 ns), tau = t × (burst − 1)
        let t = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX).max(1);
        Self {
            store: Store::with_hasher(Hasher::new()),
            start: clock.now(),
            clock,
            t,
            tau: t.saturating_mul(u64::from(burst.get() - 1)),
            max_keys,
            checks: AtomicU64::new(0),
            known_len: AtomicUsize::new(0),
            last_full_sweep: AtomicU64::new(0),
        }
    }

    /// The limiter's clock now: one reading may serve several checks of one request
    /// ([`check_at`](Self::check_at)), on this limiter or on others sharing its clock.
    #[inline]
    pub fn now(&self) -> Duration {
        self.clock.now()
    }

    /// Counts one request under `key`, now. A new key finding the table full (after evicting idle
    /// keys) is refused; concurrent new keys may overshoot `max_keys` by the number of threads.
    pub fn check(&self, key: &K) -> Verdict {
        self.check_at(key, self.clock.now())
    }

    /// [`check`](Self::check) at `now`, a reading of this limiter's clock ([`now`](Self::now))
    /// taken for the request being counted.
    pub fn check_at(&self, key: &K, now: Duration) -> Verdict {
        let checks = self.checks.fetch_add(1, Ordering::Relaxed);
        if checks % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.retain_recent(now);
        }
        if checks.is_multiple_of(LEN_EVERY) {
            self.known_len.store(self.store.len(), Ordering::Relaxed);
        }
        // at most LEN_EVERY keys can have come since the last count: near the cap, count exactly
        let mut len = self.known_len.load(Ordering::Relaxed);
        if len.saturating_add(usize::try_from(LEN_EVERY).unwrap_or(usize::MAX)) >= self.max_keys {
            len = self.store.len();
            self.known_len.store(len, Ordering::Relaxed);
        }
        if len >= self.max_keys && !self.store.contains_key(key) {
            let room = self.make_room(now);
            self.known_len.store(self.store.len(), Ordering::Relaxed);
            if !room {
                return Verdict::Full;
            }
        }
        // governor's GCRA step (`Gcra::test_and_update`) on its atomic per-key state
        let t0 = self.since_start(now);
        let (t, tau) = (self.t, self.tau);
        let outcome = self.store.measure_and_replace(key, |tat: Option<Nanos>| {
            let tat = tat.map_or(t0, Nanos::as_u64);
            let earliest = tat.saturating_sub(tau);
            if t0 < earliest { Err(earliest - t0) } else { Ok(((), Nanos::from(tat.max(t0).saturating_add(t)))) }
        });
        match outcome {
            Ok(()) => Verdict::Allowed,
            Err(wait) => Verdict::Limited(Duration::from_nanos(wait)),
        }
    }

    /// Nanoseconds from the limiter's start to `now` (0 before it).
    #[inline]
    fn since_start(&self, now: Duration) -> u64 {
        u64::try_from(now.saturating_sub(self.start).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Drops the keys whose state is that of a fresh key (governor's `retain_recent`).
    fn retain_recent(&self, now: Duration) {
        let drop_below = self.since_start(now).saturating_sub(self.t);
        ShrinkableKeyedStateStore::retain_recent(&self.store, Nanos::from(drop_below));
    }

    /// Evicts idle keys (at most once per 100 ms when the table stays full); whether there is room.
    fn make_room(&self, now: Duration) -> bool {
        let now_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
        let last = self.last_full_sweep.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) >= 100
            && self.last_full_sweep.compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            self.retain_recent(now);
            self.store.shrink_to_fit();
        }
        self.store.len() < self.max_keys
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.store.len()
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

    fn limiter(interval: Duration, burst: u32, max_keys: usize) -> (KeyedLimiter<LimitKey>, ManualClock) {
        let clock = ManualClock::at(1_800_000_000);
        let burst = NonZeroU32::new(burst).expect("non-zero");
        (KeyedLimiter::new(interval, burst, max_keys, Arc::new(clock.clone())), clock)
    }

    fn key(s: &str) -> LimitKey {
        LimitKey::from_bytes(s.as_bytes()).expect("short")
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

    #[test]
    fn keys_are_their_bytes_up_to_the_capacity() {
        let mut k = LimitKey::new();
        assert!(k.push(b"ab") && k.push(b"c"));
        assert_eq!(k.as_bytes(), b"abc");
        assert_eq!(k, key("abc"));
        assert_ne!(k, key("abcd"));
        assert_ne!(key("a\0"), key("a"), "trailing zero bytes count");
        let full = [7u8; LimitKey::CAPACITY];
        let mut long = LimitKey::from_bytes(&full).expect("fits exactly");
        assert!(!long.push(b"x"), "no room left");
        assert_eq!(long.as_bytes(), &full[..], "unchanged by a refused push");
        assert!(LimitKey::from_bytes(&[0; LimitKey::CAPACITY + 1]).is_none());
        assert!(!format!("{k:?}").contains("abc"), "no key bytes in debug output");
    }

    #[test]
    fn fixed_size_keys_of_another_type() {
        let clock = ManualClock::at(1_800_000_000);
        let burst = NonZeroU32::new(1).expect("non-zero");
        let limit: KeyedLimiter<[u8; 16]> = KeyedLimiter::new(Duration::from_secs(60), burst, 10, Arc::new(clock));
        assert_eq!(limit.check(&[1; 16]), Verdict::Allowed);
        assert!(matches!(limit.check(&[1; 16]), Verdict::Limited(_)));
        assert_eq!(limit.check(&[2; 16]), Verdict::Allowed);
    }

    proptest::proptest! {
        /// Decisions equal governor's own keyed limiter (its `RateLimiter` on its `DashMap`
        /// store, keyed by the whole `LimitKey`, on a fake clock advanced in step), for any
        /// sequence of keys and arrival times: the GCRA step and the lookup by borrowed bytes
        /// in the compact table decide as governor does.
        #[test]
        fn decisions_equal_governors_keyed_limiter(
            interval_ms in 1u64..2_000,
            burst in 1u32..6,
            steps in proptest::collection::vec((0usize..6, 0u64..3_000), 1..200),
        ) {
            use governor::clock::FakeRelativeClock;
            let interval = Duration::from_millis(interval_ms);
            let (ours, clock) = limiter(interval, burst, 1_000);
            let fake = FakeRelativeClock::default();
            let quota = governor::Quota::with_period(interval)
                .expect("non-zero")
                .allow_burst(NonZeroU32::new(burst).expect("non-zero"));
            let theirs: governor::RateLimiter<LimitKey, _, FakeRelativeClock, _> =
                governor::RateLimiter::dashmap_with_clock(quota, fake.clone());
            // keys of different lengths, one the prefix of another
            let keys = ["a", "ab", "https://idp\0alice", "https://idp\0alice\0search", "", "b"].map(key);
            for (k, advance) in steps {
                clock.advance(Duration::from_millis(advance));
                fake.advance(Duration::from_millis(advance));
                let expected = match theirs.check_key(&keys[k]) {
                    Ok(()) => Verdict::Allowed,
                    Err(not_until) => {
                        use governor::clock::Clock as _;
                        Verdict::Limited(not_until.wait_time_from(fake.now()))
                    }
                };
                proptest::prop_assert_eq!(ours.check(&keys[k]), expected);
            }
            proptest::prop_assert!(ours.len() <= 6);
        }
    }
}
