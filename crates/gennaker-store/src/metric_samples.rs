//! The built-in load balancer's traffic samples, kept durably so canary analysis can
//! read windows that began before a server restart.
//!
//! One sample holds what one server group served through one load balancer during one
//! sample interval: requests by status class and a non-cumulative latency histogram
//! (self-describing bounds, so readers can merge samples exactly without knowing the
//! load balancer's buckets). Writers insert in batches and prune by age.

use async_trait::async_trait;

use crate::error::Result;

/// Requests completed in one interval, by how they ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Answered 1xx or 2xx.
    pub ok: u64,
    /// Answered 3xx.
    pub redirect: u64,
    /// Answered 4xx.
    pub client_error: u64,
    /// Answered 5xx.
    pub server_error: u64,
    /// No response (connect failure, broken connection, client gone).
    pub error: u64,
}

impl RequestCounts {
    /// Every request of the interval.
    pub fn total(&self) -> u64 {
        self.ok
            .saturating_add(self.redirect)
            .saturating_add(self.client_error)
            .saturating_add(self.server_error)
            .saturating_add(self.error)
    }
}

/// One bucket of a non-cumulative latency histogram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyBucket {
    /// Upper bound in seconds (inclusive); `None`: the unbounded last bucket.
    pub le: Option<f64>,
    /// Responses with a latency in this bucket (above the previous bucket's bound).
    pub count: u64,
}

/// What one server group served through one load balancer during one interval.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSample {
    /// The load balancer (its listener name).
    pub load_balancer: String,
    /// The server group (`shop-v001`).
    pub server_group: String,
    /// The end of the interval, epoch milliseconds.
    pub at_ms: i64,
    /// The interval's length in milliseconds.
    pub window_ms: i64,
    /// Requests completed in the interval.
    pub requests: RequestCounts,
    /// Latencies of the responses of the interval, by ascending bound; empty buckets
    /// may be left out.
    pub latency: Vec<LatencyBucket>,
}

/// Durable traffic samples, kept by [`SqlStore`](crate::SqlStore) on both backends.
#[async_trait]
pub trait MetricSampleStore: Send + Sync + std::fmt::Debug {
    /// Writes samples in one transaction; a sample already stored (same server group,
    /// load balancer and time) is kept as is, so a batch may be retried. Returns how
    /// many were new.
    async fn insert_metric_samples(&self, samples: &[MetricSample]) -> Result<u64>;

    /// The samples of `server_group` whose interval ends in `[from_ms, to_ms]`, by time
    /// then load balancer, at most `limit` of them (the oldest).
    async fn metric_samples(
        &self,
        server_group: &str,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<MetricSample>>;

    /// Deletes the samples that ended before `before_ms`; returns how many.
    async fn prune_metric_samples(&self, before_ms: i64) -> Result<u64>;
}
