//! Per server group counters, kept in atomics so the request path takes no lock; the
//! Prometheus exposition and the traffic time series both read them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::StatusCode;
use tokio::time::Instant;

use super::series::{Series, Snapshot};

/// Upper bounds (seconds) of the request latency histogram buckets; a last, unbounded
/// bucket follows. Shared by `gennaker_lb_request_duration_seconds` and
/// [`TrafficSample::latency_buckets`](super::TrafficSample::latency_buckets).
pub const LATENCY_BUCKETS_SECONDS: [f64; 22] = [
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1,
    0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0,
];

/// The same bounds in microseconds, so recording compares integers.
const LATENCY_BUCKETS_MICROS: [u64; LATENCY_BUCKETS_SECONDS.len()] = {
    let mut out = [0; LATENCY_BUCKETS_SECONDS.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = (LATENCY_BUCKETS_SECONDS[i] * 1e6 + 0.5) as u64;
        i += 1;
    }
    out
};

/// Buckets including the unbounded last one.
pub(crate) const BUCKETS: usize = LATENCY_BUCKETS_SECONDS.len() + 1;

/// The status classes requests are counted by, in label order.
pub(crate) const CLASS_NAMES: [&str; 5] = ["2xx", "3xx", "4xx", "5xx", "error"];

/// How a request ended: the class of the status the backend answered, or `Error` when
/// no response came (connect failure everywhere, broken connection, client gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Success = 0,
    Redirection = 1,
    ClientError = 2,
    ServerError = 3,
    Error = 4,
}

impl Class {
    pub(crate) fn of(status: StatusCode) -> Self {
        match status.as_u16() {
            0..=299 => Self::Success,
            300..=399 => Self::Redirection,
            400..=499 => Self::ClientError,
            _ => Self::ServerError,
        }
    }
}

/// Counters of one server group behind one listener.
#[derive(Debug)]
pub(crate) struct GroupMetrics {
    pub(crate) server_group: String,
    in_flight: AtomicU64,
    by_class: [AtomicU64; CLASS_NAMES.len()],
    /// Non-cumulative counts per latency bucket.
    buckets: [AtomicU64; BUCKETS],
    latency_sum_micros: AtomicU64,
    ejections: AtomicU64,
    /// The time series, and since when the group has been out of the routing table.
    pub(crate) history: Mutex<History>,
}

/// The parts of a group's record only the sampler and readers touch.
#[derive(Debug)]
pub(crate) struct History {
    pub(crate) series: Series,
    pub(crate) out_of_table_since: Option<Instant>,
}

impl GroupMetrics {
    pub(crate) fn new(server_group: &str, now: Instant, series_capacity: usize) -> Self {
        Self {
            server_group: server_group.to_owned(),
            in_flight: AtomicU64::new(0),
            by_class: Default::default(),
            buckets: Default::default(),
            latency_sum_micros: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            history: Mutex::new(History {
                series: Series::new(now, series_capacity),
                out_of_table_since: None,
            }),
        }
    }

    pub(crate) fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A request that was retried elsewhere: it leaves without being counted.
    pub(crate) fn abandoned(&self) {
        self.in_flight.fetch_sub(1, Ordering::Release);
    }

    /// Records a finished request; latency counts only for requests that got a response.
    pub(crate) fn finished(&self, class: Class, latency: Duration) {
        self.by_class[class as usize].fetch_add(1, Ordering::Relaxed);
        if class != Class::Error {
            let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
            let bucket = LATENCY_BUCKETS_MICROS.partition_point(|&bound| bound < micros);
            self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
            self.latency_sum_micros.fetch_add(micros, Ordering::Relaxed);
        }
        self.in_flight.fetch_sub(1, Ordering::Release);
    }

    pub(crate) fn ejected(&self) {
        self.ejections.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Acquire)
    }

    pub(crate) fn ejections(&self) -> u64 {
        self.ejections.load(Ordering::Relaxed)
    }

    pub(crate) fn latency_sum_seconds(&self) -> f64 {
        self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// The cumulative counters now.
    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            by_class: std::array::from_fn(|i| self.by_class[i].load(Ordering::Relaxed)),
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
        }
    }

    /// Histogram buckets as the Prometheus encoder wants them: (upper bound, count).
    pub(crate) fn histogram_buckets(snapshot: &Snapshot) -> [(f64, u64); BUCKETS] {
        std::array::from_fn(|i| {
            let bound = LATENCY_BUCKETS_SECONDS
                .get(i)
                .copied()
                .unwrap_or(f64::INFINITY);
            (bound, snapshot.buckets[i])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_bounds_match_the_second_bounds() {
        assert_eq!(LATENCY_BUCKETS_MICROS[0], 100);
        assert_eq!(LATENCY_BUCKETS_MICROS[2], 500);
        assert_eq!(LATENCY_BUCKETS_MICROS[21], 30_000_000);
        assert!(LATENCY_BUCKETS_MICROS.windows(2).all(|w| w[0] < w[1]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_lands_in_the_bucket_of_its_latency() {
        let metrics = GroupMetrics::new("g", Instant::now(), 4);
        metrics.started();
        metrics.finished(Class::Success, Duration::from_micros(500));
        metrics.started();
        metrics.finished(Class::Error, Duration::from_secs(1));
        metrics.started();
        metrics.finished(Class::ServerError, Duration::from_secs(100));
        let snapshot = metrics.snapshot();
        assert_eq!(snapshot.by_class, [1, 0, 0, 1, 1]);
        assert_eq!(
            snapshot.buckets[2], 1,
            "500µs falls in the le=0.0005 bucket"
        );
        assert_eq!(snapshot.buckets[BUCKETS - 1], 1, "100 s falls in +Inf");
        assert_eq!(
            snapshot.buckets.iter().sum::<u64>(),
            2,
            "errors have no latency"
        );
        assert_eq!(metrics.in_flight(), 0);
    }
}
