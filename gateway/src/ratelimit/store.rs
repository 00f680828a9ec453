//! Where the counts live: in memory ([`governor`]'s keyed GCRA, bounded) or in Redis (one atomic
//! Lua script per check, on Redis' clock, so every replica agrees).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcp_enterprise_core::clock::Clock;
use mcp_enterprise_core::limiter::{KeyedLimiter, LimitKey, Verdict};
use mcp_enterprise_core::redis::RedisClient;

use super::limit::Limit;

pub(crate) use mcp_enterprise_core::limiter::MonotonicClock;

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Counted and allowed.
    Allowed,
    /// Over the limit; conforming again after this long.
    Limited(Duration),
    /// The local key table is full of active keys.
    Full,
    /// The shared store gave no answer.
    Unavailable(String),
}

/// One limit's in-memory state: the pack's bounded keyed GCRA ([`KeyedLimiter`]) with at most
/// `max_keys` keys.
#[derive(Debug)]
pub(crate) struct LocalLimit(KeyedLimiter);

impl LocalLimit {
    pub(crate) fn new(limit: &Limit, clock: Arc<dyn Clock>) -> Self {
        Self(KeyedLimiter::new(limit.interval, limit.burst, limit.max_keys, clock))
    }

    /// The table's clock now (every table of a layer shares the layer's clock).
    #[inline]
    pub(crate) fn now(&self) -> Duration {
        self.0.now()
    }

    /// Counts one request under `key`. A new key finding the table full (after evicting idle
    /// keys) is refused; concurrent new keys may overshoot `max_keys` by the number of threads.
    #[cfg(test)]
    pub(crate) fn check(&self, key: &LimitKey) -> Decision {
        self.check_at(key, self.now())
    }

    /// [`check`](Self::check) at `now`, a reading of [`now`](Self::now) for this request.
    #[inline]
    pub(crate) fn check_at(&self, key: &LimitKey, now: Duration) -> Decision {
        match self.0.check_at(key, now) {
            Verdict::Allowed => Decision::Allowed,
            Verdict::Limited(wait) => Decision::Limited(wait),
            // a verdict this version does not know: not allowed (fail closed)
            _ => Decision::Full,
        }
    }

    /// Keys held now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// GCRA in one atomic script on Redis' clock (`TIME`, microseconds). `KEYS[1]`: the key;
/// `ARGV[1]`: the emission interval, `ARGV[2]`: the tolerance ((burst − 1) × interval), both µs.
/// Returns 0 when allowed, else the µs to wait. The key expires when its state equals a fresh one.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local allow_at = tat - tolerance
if now < allow_at then
  return allow_at - now
end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000))
return 0
";

/// The default key prefix in Redis.
pub const DEFAULT_REDIS_PREFIX: &str = "mcp-enterprise:ratelimit:";

/// Counts shared by every replica through Redis.
#[derive(Debug)]
pub(crate) struct RedisStore {
    client: RedisClient,
    prefix: String,
    script: mcp_enterprise_core::redis::Script,
}

impl RedisStore {
    pub(crate) fn new(client: RedisClient, prefix: String) -> Self {
        Self { client, prefix, script: mcp_enterprise_core::redis::Script::new(SCRIPT) }
    }

    /// The Redis target (host:port or the Sentinel master's name), without credentials.
    pub(crate) fn addr(&self) -> &str {
        self.client.target()
    }

    /// Whether Redis answers `PING` within `timeout`.
    pub(crate) async fn ping(&self, timeout: Duration) -> Result<(), String> {
        match tokio::time::timeout(timeout, self.client.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        }
    }

    /// Counts one request under `key` of `limit`: `EVALSHA`, and `EVAL` when Redis does not
    /// know the script yet (a restart, a flush), bounded by the client's timeouts.
    pub(crate) async fn check(&self, limit: &Limit, key: &[u8]) -> Decision {
        // a fixed-length digest: no caller identity or tool name is stored in Redis
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key);
        let redis_key = format!("{}{}:{}", self.prefix, limit.name, URL_SAFE_NO_PAD.encode(&digest.as_ref()[..18]));
        let interval = micros(limit.interval);
        let tolerance = micros(limit.interval.saturating_mul(limit.burst.get() - 1));
        match self.client.script_i64(&self.script, &redis_key, &[interval, tolerance]).await {
            Ok(0) => Decision::Allowed,
            Ok(wait) if wait > 0 => Decision::Limited(Duration::from_micros(u64::try_from(wait).unwrap_or(u64::MAX))),
            Ok(_) => Decision::Unavailable("unexpected redis reply (a negative wait)".into()),
            Err(e) => Decision::Unavailable(e.to_string()),
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_enterprise_core::clock::ManualClock;

    fn local(requests: u32, per: Duration, burst: u32, max_keys: usize) -> (LocalLimit, ManualClock) {
        let clock = ManualClock::at(1_800_000_000);
        let limit = Limit::new("l", requests, per).and_then(|l| l.burst(burst)).and_then(|l| l.max_keys(max_keys));
        (LocalLimit::new(&limit.expect("limit"), Arc::new(clock.clone())), clock)
    }

    fn key(s: &str) -> LimitKey {
        LimitKey::from_bytes(s.as_bytes()).expect("short")
    }

    #[test]
    fn gcra_allows_the_burst_then_one_per_interval() {
        // 6 per minute = one per 10 s, burst 3
        let (limit, clock) = local(6, Duration::from_secs(60), 3, 10);
        let k = key("a");
        for _ in 0..3 {
            assert_eq!(limit.check(&k), Decision::Allowed);
        }
        assert_eq!(limit.check(&k), Decision::Limited(Duration::from_secs(10)));
        clock.advance(Duration::from_secs(4));
        assert_eq!(limit.check(&k), Decision::Limited(Duration::from_secs(6)), "refused checks do not count");
        clock.advance(Duration::from_secs(6));
        assert_eq!(limit.check(&k), Decision::Allowed, "one interval refilled one request");
        assert_eq!(limit.check(&k), Decision::Limited(Duration::from_secs(10)));
        // idle for the whole bucket: the full burst again, and no more
        clock.advance(Duration::from_secs(60));
        for _ in 0..3 {
            assert_eq!(limit.check(&k), Decision::Allowed);
        }
        assert!(matches!(limit.check(&k), Decision::Limited(_)));
    }

    #[test]
    fn keys_are_independent_and_bounded() {
        let (limit, clock) = local(1, Duration::from_secs(60), 1, 2);
        assert_eq!(limit.check(&key("a")), Decision::Allowed);
        assert_eq!(limit.check(&key("b")), Decision::Allowed);
        assert!(matches!(limit.check(&key("a")), Decision::Limited(_)));
        // two active keys fill the table: a third is refused, not tracked; known keys go on
        assert_eq!(limit.check(&key("c")), Decision::Full);
        assert!(matches!(limit.check(&key("b")), Decision::Limited(_)));
        assert_eq!(limit.len(), 2);
        // once the keys are idle (governor: their state has been that of a fresh key for one
        // interval) they are evicted
        clock.advance(Duration::from_secs(121));
        assert_eq!(limit.check(&key("c")), Decision::Allowed);
        assert!(limit.len() <= 2, "{}", limit.len());
    }

    #[test]
    fn the_cap_holds_with_lazily_counted_keys() {
        let (limit, _clock) = local(1, Duration::from_secs(60), 1, 300);
        for i in 0..300 {
            assert_eq!(limit.check(&key(&i.to_string())), Decision::Allowed, "{i}");
        }
        assert_eq!(limit.check(&key("one too many")), Decision::Full);
        assert_eq!(limit.len(), 300);
        assert!(matches!(limit.check(&key("7")), Decision::Limited(_)), "known keys go on");
    }

    #[test]
    fn periodic_sweeps_evict_idle_keys() {
        let (limit, clock) = local(1, Duration::from_secs(1), 1, 1_000_000);
        for i in 0..mcp_enterprise_core::limiter::SWEEP_EVERY - 1 {
            assert_eq!(limit.check(&key(&i.to_string())), Decision::Allowed);
        }
        assert_eq!(limit.len(), usize::try_from(mcp_enterprise_core::limiter::SWEEP_EVERY - 1).expect("fits"));
        clock.advance(Duration::from_secs(3));
        assert_eq!(limit.check(&key("last")), Decision::Allowed);
        assert!(limit.len() <= 1, "{}", limit.len());
    }
}
