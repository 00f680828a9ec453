//! Counters a layer keeps about its own work (key fetches, cache hits, ...), read by an exporter
//! when it is scraped. Layers keep plain atomics and describe them as [`Reading`]s; the exporter
//! (the gateway's Prometheus metrics) turns readings into its own format, so no layer depends on
//! a metrics crate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Count(AtomicU64);

impl Count {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The count now.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds (seconds) of [`Histogram`]'s buckets: 100 µs to ~3.3 s, doubling (disk syncs and
/// other short waits); a last bucket takes everything above.
pub const DURATION_BUCKETS: [f64; 16] = [
    0.0001, 0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.0064, 0.0128, 0.0256, 0.0512, 0.1024, 0.2048, 0.4096, 0.8192,
    1.6384, 3.2768,
];

/// A distribution of durations over [`DURATION_BUCKETS`]: lock-free, a few atomic adds per
/// observation.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last one is above every bound.
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let bucket = DURATION_BUCKETS.iter().position(|bound| seconds <= *bound).unwrap_or(DURATION_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The distribution now.
    pub fn snapshot(&self) -> Distribution {
        let buckets = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, n)| (DURATION_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), n.load(Ordering::Relaxed)))
            .collect::<Vec<_>>();
        Distribution {
            // the count is the buckets' total, so a scrape between two adds stays consistent
            count: buckets.iter().map(|(_, n)| n).sum(),
            sum: Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed)).as_secs_f64(),
            buckets,
        }
    }
}

/// A [`Histogram`]'s values at one moment.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Distribution {
    /// `(upper bound, observations in this bucket)`, not cumulative; the last bound is infinite.
    pub buckets: Vec<(f64, u64)>,
    /// The sum of the observations, in seconds.
    pub sum: f64,
    /// How many observations.
    pub count: u64,
}

/// What a reading measures.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// A count since the process started.
    Counter(u64),
    /// A value now.
    Gauge(f64),
    /// A distribution of durations (seconds) since the process started.
    Histogram(Distribution),
}

/// One named value of a layer, with its labels (a small, bounded set: configured names only).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Reading {
    /// The metric name, e.g. `mcpe_sso_token_cache_hits` (a counter's exporter may add `_total`).
    pub name: &'static str,
    /// What it means.
    pub help: &'static str,
    /// Label names and values.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: Value,
}

impl Reading {
    /// A counter reading.
    pub fn counter(name: &'static str, help: &'static str, labels: Vec<(&'static str, String)>, value: u64) -> Self {
        Self { name, help, labels, value: Value::Counter(value) }
    }

    /// A gauge reading.
    pub fn gauge(name: &'static str, help: &'static str, labels: Vec<(&'static str, String)>, value: f64) -> Self {
        Self { name, help, labels, value: Value::Gauge(value) }
    }

    /// A histogram reading (durations in seconds).
    pub fn histogram(
        name: &'static str,
        help: &'static str,
        labels: Vec<(&'static str, String)>,
        value: &Histogram,
    ) -> Self {
        Self { name, help, labels, value: Value::Histogram(value.snapshot()) }
    }
}

/// A layer (or part of one) that reports readings.
pub trait Instrumented: std::fmt::Debug {
    /// Appends this part's readings to `out`.
    fn readings(&self, out: &mut Vec<Reading>);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_puts_each_duration_in_its_bucket() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(10));
        let d = h.snapshot();
        assert_eq!(d.count, 4);
        assert_eq!(d.buckets.len(), DURATION_BUCKETS.len() + 1);
        assert_eq!(d.buckets[0], (0.0001, 2));
        assert_eq!(d.buckets[5], (0.0032, 1));
        assert_eq!(d.buckets[DURATION_BUCKETS.len()], (f64::INFINITY, 1));
        assert!((d.sum - 10.00315).abs() < 1e-9, "{}", d.sum);
    }
}
