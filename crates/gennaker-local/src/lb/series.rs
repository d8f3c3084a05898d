//! The bounded in-memory traffic time series of each (load balancer, server group):
//! one sample per interval, holding what happened during that interval only, so the
//! canary analysis can compare server groups over recent windows without Prometheus.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::metrics::{BUCKETS, CLASS_NAMES, LATENCY_BUCKETS_SECONDS};

/// What one server group served through one load balancer during one interval.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficSample {
    /// The end of the interval (tokio's clock).
    pub at: Instant,
    /// The interval's length.
    pub window: Duration,
    /// Requests completed in the interval by status class (`2xx`, `3xx`, `4xx`,
    /// `5xx`, `error`); every class is present.
    pub by_class: BTreeMap<String, u64>,
    /// Requests completed with a response in the interval per latency bucket
    /// (non-cumulative; bounds in [`LATENCY_BUCKETS_SECONDS`], then one unbounded).
    pub latency_buckets: Vec<u64>,
    /// Median latency, interpolated within its bucket; `None` without responses.
    pub latency_p50: Option<Duration>,
    /// 99th percentile latency, interpolated within its bucket; `None` without
    /// responses.
    pub latency_p99: Option<Duration>,
}

/// Cumulative counters at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Snapshot {
    pub(crate) by_class: [u64; CLASS_NAMES.len()],
    pub(crate) buckets: [u64; BUCKETS],
}

/// The ring of samples and the counters at the previous sample.
#[derive(Debug)]
pub(crate) struct Series {
    previous: Snapshot,
    previous_at: Instant,
    samples: VecDeque<TrafficSample>,
    capacity: usize,
}

impl Series {
    pub(crate) fn new(now: Instant, capacity: usize) -> Self {
        Self {
            previous: Snapshot::default(),
            previous_at: now,
            samples: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Closes the interval ending `now`, given the cumulative counters now; returns
    /// the new sample.
    pub(crate) fn sample(&mut self, now: Instant, current: Snapshot) -> &TrafficSample {
        let by_class: [u64; CLASS_NAMES.len()] =
            std::array::from_fn(|i| current.by_class[i].saturating_sub(self.previous.by_class[i]));
        let buckets: [u64; BUCKETS] =
            std::array::from_fn(|i| current.buckets[i].saturating_sub(self.previous.buckets[i]));
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(TrafficSample {
            at: now,
            window: now.saturating_duration_since(self.previous_at),
            by_class: CLASS_NAMES
                .iter()
                .zip(by_class)
                .map(|(name, count)| ((*name).to_owned(), count))
                .collect(),
            latency_buckets: buckets.to_vec(),
            latency_p50: quantile(&buckets, 0.5),
            latency_p99: quantile(&buckets, 0.99),
        });
        self.previous = current;
        self.previous_at = now;
        // Just pushed, so never empty.
        &self.samples[self.samples.len() - 1]
    }

    pub(crate) fn samples(&self) -> Vec<TrafficSample> {
        self.samples.iter().cloned().collect()
    }
}

/// The `q` quantile of non-cumulative bucket counts, interpolated linearly inside its
/// bucket (the unbounded bucket reports its lower bound: the best it can say).
fn quantile(buckets: &[u64; BUCKETS], q: f64) -> Option<Duration> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &count) in buckets.iter().enumerate() {
        if count == 0 {
            continue;
        }
        if (below + count) as f64 >= rank {
            let lower = if i == 0 {
                0.0
            } else {
                LATENCY_BUCKETS_SECONDS[i - 1]
            };
            let Some(&upper) = LATENCY_BUCKETS_SECONDS.get(i) else {
                return Some(Duration::from_secs_f64(lower));
            };
            let within = ((rank - below as f64) / count as f64).clamp(0.0, 1.0);
            return Some(Duration::from_secs_f64(lower + (upper - lower) * within));
        }
        below += count;
    }
    LATENCY_BUCKETS_SECONDS
        .last()
        .map(|&last| Duration::from_secs_f64(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(ok: u64, errors: u64, bucket: usize, in_bucket: u64) -> Snapshot {
        let mut s = Snapshot::default();
        s.by_class[0] = ok;
        s.by_class[4] = errors;
        s.buckets[bucket] = in_bucket;
        s
    }

    #[tokio::test(start_paused = true)]
    async fn each_sample_holds_only_its_interval_and_old_ones_fall_off() {
        let start = Instant::now();
        let mut series = Series::new(start, 3);
        for i in 1..=5u64 {
            tokio::time::advance(Duration::from_secs(10)).await;
            // 10 more 2xx per interval, all between 1 ms and 2.5 ms.
            series.sample(Instant::now(), snapshot(10 * i, i, 5, 10 * i));
        }
        let samples = series.samples();
        assert_eq!(samples.len(), 3, "capacity bounds the series");
        assert_eq!(samples[0].at, start + Duration::from_secs(30));
        for sample in &samples {
            assert_eq!(sample.window, Duration::from_secs(10));
            assert_eq!(sample.by_class["2xx"], 10);
            assert_eq!(sample.by_class["error"], 1);
            assert_eq!(sample.by_class["5xx"], 0);
            assert_eq!(sample.latency_buckets[5], 10);
            let p50 = sample.latency_p50.unwrap();
            assert!(p50 > Duration::from_millis(1) && p50 <= Duration::from_micros(2500));
        }
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let mut buckets = [0u64; BUCKETS];
        buckets[4] = 50; // (0.75 ms, 1 ms]
        buckets[8] = 50; // (7.5 ms, 10 ms]
        let p50 = quantile(&buckets, 0.5).unwrap();
        assert!((p50.as_secs_f64() - 0.001).abs() < 1e-9, "{p50:?}");
        let p99 = quantile(&buckets, 0.99).unwrap();
        assert!(p99 > Duration::from_micros(9900) && p99 <= Duration::from_millis(10));
        assert_eq!(quantile(&[0; BUCKETS], 0.5), None);
        let mut slow = [0u64; BUCKETS];
        slow[BUCKETS - 1] = 3;
        assert_eq!(quantile(&slow, 0.99), Some(Duration::from_secs(30)));
    }
}
