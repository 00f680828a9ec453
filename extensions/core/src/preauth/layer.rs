//! [`PreAuthLimitLayer`]: the tower layer of the pre-authentication limit.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::service::PreAuthLimit;
use super::{DEFAULT_IPV6_PREFIX_LEN, DEFAULT_MAX_ADDRESSES};
use crate::ConfigError;
use crate::clock::Clock;
use crate::limiter::{KeyedLimiter, MonotonicClock};
use crate::stats::{Count, Instrumented, Reading};

/// Counts requests per client address and refuses what exceeds the limit (see the
/// [module docs](super)). Clones share one table.
#[derive(Clone)]
pub struct PreAuthLimitLayer {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) limiter: KeyedLimiter<[u8; 16]>,
    pub(crate) v6_prefix: u8,
    pub(crate) refused: Count,
    requests_per_sec: NonZeroU32,
    burst: NonZeroU32,
    max_addresses: usize,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for PreAuthLimitLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreAuthLimitLayer")
            .field("requests_per_sec", &self.inner.requests_per_sec)
            .field("burst", &self.inner.burst)
            .field("max_addresses", &self.inner.max_addresses)
            .field("ipv6_prefix_len", &self.inner.v6_prefix)
            .finish_non_exhaustive()
    }
}

fn non_zero(value: u32, what: &'static str) -> Result<NonZeroU32, ConfigError> {
    NonZeroU32::new(value).ok_or(ConfigError::InvalidLimit { what, reason: "must be at least 1" })
}

impl PreAuthLimitLayer {
    /// `requests_per_sec` sustained and `burst` at once per client address (both at least 1),
    /// the other settings at their defaults.
    pub fn new(requests_per_sec: u32, burst: u32) -> Result<Self, ConfigError> {
        let requests_per_sec = non_zero(requests_per_sec, "pre_auth_limit.requests_per_sec")?;
        let burst = non_zero(burst, "pre_auth_limit.burst")?;
        Ok(Self::build(requests_per_sec, burst, DEFAULT_MAX_ADDRESSES, DEFAULT_IPV6_PREFIX_LEN, monotonic()))
    }

    fn build(
        requests_per_sec: NonZeroU32,
        burst: NonZeroU32,
        max_addresses: usize,
        v6_prefix: u8,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let interval = Duration::from_secs(1) / requests_per_sec.get();
        Self {
            inner: Arc::new(Inner {
                limiter: KeyedLimiter::new(interval, burst, max_addresses, clock.clone()),
                v6_prefix,
                refused: Count::default(),
                requests_per_sec,
                burst,
                max_addresses,
                clock,
            }),
        }
    }

    fn rebuild(&self, max_addresses: usize, v6_prefix: u8, clock: Arc<dyn Clock>) -> Self {
        Self::build(self.inner.requests_per_sec, self.inner.burst, max_addresses, v6_prefix, clock)
    }

    /// At most this many addresses tracked at once (at least 1). Resets the counts.
    pub fn max_addresses(self, max: usize) -> Result<Self, ConfigError> {
        if max == 0 {
            return Err(ConfigError::InvalidLimit {
                what: "pre_auth_limit.max_addresses",
                reason: "must be at least 1",
            });
        }
        Ok(self.rebuild(max, self.inner.v6_prefix, self.inner.clock.clone()))
    }

    /// IPv6 clients are counted per prefix of this many bits (1 to 128). Resets the counts.
    pub fn ipv6_prefix_len(self, bits: u8) -> Result<Self, ConfigError> {
        if !(1..=128).contains(&bits) {
            return Err(ConfigError::InvalidLimit {
                what: "pre_auth_limit.ipv6_prefix_len",
                reason: "must be from 1 to 128",
            });
        }
        Ok(self.rebuild(self.inner.max_addresses, bits, self.inner.clock.clone()))
    }

    /// Counts on `clock` instead of the monotonic system clock (tests). Resets the counts.
    #[must_use]
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        self.rebuild(self.inner.max_addresses, self.inner.v6_prefix, clock)
    }

    /// Requests refused so far.
    pub fn refused(&self) -> u64 {
        self.inner.refused.get()
    }

    /// Addresses tracked now.
    pub fn addresses(&self) -> usize {
        self.inner.limiter.len()
    }
}

fn monotonic() -> Arc<dyn Clock> {
    Arc::new(MonotonicClock::new())
}

impl<S> Layer<S> for PreAuthLimitLayer {
    type Service = PreAuthLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PreAuthLimit { inner, layer: self.clone() }
    }
}

impl Instrumented for PreAuthLimitLayer {
    fn readings(&self, out: &mut Vec<Reading>) {
        out.push(Reading::counter(
            "mcpe_pre_auth_limit_refused",
            "Requests refused by the pre-authentication limit (per client address, before any credential check)",
            Vec::new(),
            self.refused(),
        ));
        #[expect(clippy::cast_precision_loss, reason = "a gauge of at most max_addresses")]
        out.push(Reading::gauge(
            "mcpe_pre_auth_limit_addresses",
            "Client addresses the pre-authentication limit tracks now",
            Vec::new(),
            self.addresses() as f64,
        ));
    }
}
