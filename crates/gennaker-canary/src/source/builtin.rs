//! The `builtin` metric source: the built-in load balancer's per-server-group traffic
//! samples, read from the store ([`MetricSampleStore`]), so no Prometheus is needed
//! and windows that began before a server restart are still there.
//!
//! A query is `{"type": "builtin", "metricName": <name>}` with the scope a server group
//! name. Samples whose interval ends in `(start, end]` are summed into `step`-second
//! buckets (a bucket without samples is a gap, not a zero, as with Prometheus), one
//! series over every load balancer the group is behind; `"loadBalancer": "<name>"`
//! keeps one, `"groupByFields": ["loadBalancer"]` gives one series per load balancer.
//!
//! The metrics ([`METRICS`]):
//! * `request_rate` — requests completed per second;
//! * `error_ratio` — (5xx + requests without a response) / all requests;
//! * `error_ratio_4xx`, `error_ratio_5xx` — 4xx or 5xx answers / all requests;
//! * `latency_p50`, `latency_p90`, `latency_p99` — quantiles of response latency in
//!   seconds, from the merged histograms of the bucket (linear within a histogram
//!   bucket).
//!
//! Ratios and latencies of a bucket without requests are NaN (the judge's
//! `nanStrategy` decides what that means).

use std::collections::BTreeMap;
use std::sync::Arc;

use gennaker_store::{LatencyBucket, MetricSample, MetricSampleStore, RequestCounts};

use super::{MetricSet, MetricSource, ScopeQuery, SourceError};
use crate::config::{CanaryConfig, CanaryMetricConfig};

/// The metric names the builtin source answers, with what each is.
pub const METRICS: [(&str, &str); 7] = [
    ("request_rate", "requests completed per second"),
    (
        "error_ratio",
        "(5xx answers + requests without a response) / all requests",
    ),
    ("error_ratio_4xx", "4xx answers / all requests"),
    ("error_ratio_5xx", "5xx answers / all requests"),
    ("latency_p50", "median response latency, seconds"),
    ("latency_p90", "90th percentile response latency, seconds"),
    ("latency_p99", "99th percentile response latency, seconds"),
];

/// The most samples one query reads (a day of 1 s samples behind one load balancer
/// fits); a longer window is refused rather than read into memory.
pub const MAX_SAMPLES_PER_QUERY: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Metric {
    RequestRate,
    ErrorRatio,
    ErrorRatio4xx,
    ErrorRatio5xx,
    Latency(f64),
}

impl Metric {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "request_rate" => Self::RequestRate,
            "error_ratio" => Self::ErrorRatio,
            "error_ratio_4xx" => Self::ErrorRatio4xx,
            "error_ratio_5xx" => Self::ErrorRatio5xx,
            "latency_p50" => Self::Latency(0.5),
            "latency_p90" => Self::Latency(0.9),
            "latency_p99" => Self::Latency(0.99),
            _ => return None,
        })
    }

    fn value(self, bucket: &Bucket) -> f64 {
        let total = bucket.requests.total() as f64;
        let ratio = |part: u64| {
            if total == 0.0 {
                f64::NAN
            } else {
                part as f64 / total
            }
        };
        match self {
            Self::RequestRate if bucket.window_ms > 0 => total / (bucket.window_ms as f64 / 1000.0),
            Self::RequestRate => f64::NAN,
            Self::ErrorRatio => ratio(
                bucket
                    .requests
                    .server_error
                    .saturating_add(bucket.requests.error),
            ),
            Self::ErrorRatio4xx => ratio(bucket.requests.client_error),
            Self::ErrorRatio5xx => ratio(bucket.requests.server_error),
            Self::Latency(q) => quantile(&bucket.latency, q),
        }
    }
}

/// What the samples of one step bucket add up to.
#[derive(Debug, Default)]
struct Bucket {
    requests: RequestCounts,
    window_ms: i64,
    /// Counts by upper bound in µs (`u64::MAX`: unbounded), so equal bounds merge.
    latency: BTreeMap<u64, (Option<f64>, u64)>,
}

impl Bucket {
    fn add(&mut self, sample: &MetricSample) {
        let (r, s) = (&mut self.requests, &sample.requests);
        r.ok = r.ok.saturating_add(s.ok);
        r.redirect = r.redirect.saturating_add(s.redirect);
        r.client_error = r.client_error.saturating_add(s.client_error);
        r.server_error = r.server_error.saturating_add(s.server_error);
        r.error = r.error.saturating_add(s.error);
        self.window_ms = self.window_ms.saturating_add(sample.window_ms);
        for LatencyBucket { le, count } in &sample.latency {
            let key = le.map_or(u64::MAX, |le| (le * 1e6).round() as u64);
            let entry = self.latency.entry(key).or_insert((*le, 0));
            entry.1 = entry.1.saturating_add(*count);
        }
    }
}

/// The `q` quantile of a merged, non-cumulative histogram, interpolated linearly in
/// its bucket (the unbounded bucket reports its lower bound); NaN without responses.
fn quantile(buckets: &BTreeMap<u64, (Option<f64>, u64)>, q: f64) -> f64 {
    let total: u64 = buckets.values().map(|(_, c)| *c).sum();
    if total == 0 {
        return f64::NAN;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    let mut lower = 0.0;
    for (le, count) in buckets.values() {
        if *count > 0 && (below + count) as f64 >= rank {
            let Some(upper) = le else {
                return lower;
            };
            let within = ((rank - below as f64) / *count as f64).clamp(0.0, 1.0);
            return lower + (upper - lower) * within;
        }
        below += count;
        if let Some(upper) = le {
            lower = *upper;
        }
    }
    lower
}

/// The builtin source over a store's samples.
#[derive(Debug, Clone)]
pub struct BuiltinSource {
    account: String,
    samples: Arc<dyn MetricSampleStore>,
}

impl BuiltinSource {
    /// A source named `account` reading `samples`.
    pub fn new(account: impl Into<String>, samples: Arc<dyn MetricSampleStore>) -> Self {
        Self {
            account: account.into(),
            samples,
        }
    }
}

#[async_trait::async_trait]
impl MetricSource for BuiltinSource {
    fn kind(&self) -> &'static str {
        "builtin"
    }

    async fn query(
        &self,
        _config: &CanaryConfig,
        metric: &CanaryMetricConfig,
        scope: &ScopeQuery,
    ) -> Result<Vec<MetricSet>, SourceError> {
        let bad = |message: String| SourceError::BadQuery {
            metric: metric.name.clone(),
            source_kind: "builtin".to_owned(),
            message,
        };
        let query = &metric.query;
        if let Some(kind) = query.kind.as_deref()
            && kind != "builtin"
        {
            return Err(bad(format!(
                "query.type is {kind:?}, but this metrics account is the built-in load balancer's; use a {kind} account or write {{\"type\": \"builtin\", \"metricName\": ...}}"
            )));
        }
        let known = || {
            METRICS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let name = query.metric_name.as_deref().unwrap_or_default();
        let Some(kind) = Metric::parse(name) else {
            return Err(bad(format!(
                "query.metricName {name:?} is not a builtin metric; use one of {}",
                known()
            )));
        };
        let load_balancer = match query.fields.get("loadBalancer") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(lb)) if !lb.is_empty() => Some(lb.clone()),
            Some(other) => {
                return Err(bad(format!(
                    "query.loadBalancer must be a load balancer name, found {other}"
                )));
            }
        };
        let by_load_balancer = match query.fields.get("groupByFields") {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::Array(fields)) => {
                for field in fields {
                    if field.as_str() != Some("loadBalancer") {
                        return Err(bad(format!(
                            "query.groupByFields may only hold \"loadBalancer\" for builtin metrics, found {field}"
                        )));
                    }
                }
                !fields.is_empty()
            }
            Some(other) => {
                return Err(bad(format!(
                    "query.groupByFields must be a list, found {other}"
                )));
            }
        };
        let text = format!(
            "builtin {name} of server group {:?}{}{}",
            scope.scope,
            load_balancer
                .as_ref()
                .map(|lb| format!(" through {lb:?}"))
                .unwrap_or_default(),
            if by_load_balancer {
                " by loadBalancer"
            } else {
                ""
            }
        );
        let start_ms = scope.start.as_millisecond();
        let end_ms = scope.end.as_millisecond();
        let step_ms = i64::try_from(scope.step_seconds.max(1))
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000);
        let samples = self
            .samples
            .metric_samples(
                &scope.scope,
                start_ms.saturating_add(1),
                end_ms,
                MAX_SAMPLES_PER_QUERY,
            )
            .await
            .map_err(|e| SourceError::QueryFailed {
                account: self.account.clone(),
                query: text.clone(),
                message: format!("reading the samples failed: {e}"),
            })?;
        if samples.len() >= MAX_SAMPLES_PER_QUERY {
            return Err(SourceError::QueryFailed {
                account: self.account.clone(),
                query: text,
                message: format!(
                    "the window holds more than {MAX_SAMPLES_PER_QUERY} samples; shorten the analysis interval"
                ),
            });
        }
        // series tag → step index → bucket
        let mut series: BTreeMap<BTreeMap<String, String>, BTreeMap<i64, Bucket>> = BTreeMap::new();
        for sample in &samples {
            if load_balancer
                .as_ref()
                .is_some_and(|lb| *lb != sample.load_balancer)
            {
                continue;
            }
            let tags = if by_load_balancer {
                BTreeMap::from([("loadBalancer".to_owned(), sample.load_balancer.clone())])
            } else {
                BTreeMap::new()
            };
            let index = (sample.at_ms - start_ms - 1) / step_ms;
            series
                .entry(tags)
                .or_default()
                .entry(index)
                .or_default()
                .add(sample);
        }
        if series.is_empty() {
            return Ok(vec![MetricSet {
                tags: BTreeMap::new(),
                values: Vec::new(),
                start: scope.start,
                step_seconds: scope.step_seconds,
                query: text,
            }]);
        }
        Ok(series
            .into_iter()
            .map(|(tags, buckets)| {
                let first = buckets.keys().next().copied().unwrap_or(0);
                MetricSet {
                    tags,
                    values: buckets.values().map(|b| kind.value(b)).collect(),
                    start: jiff::Timestamp::from_millisecond(
                        start_ms.saturating_add(first.saturating_mul(step_ms)),
                    )
                    .unwrap_or(scope.start),
                    step_seconds: scope.step_seconds.max(1),
                    query: text.clone(),
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(pairs: &[(Option<f64>, u64)]) -> BTreeMap<u64, (Option<f64>, u64)> {
        let mut bucket = Bucket::default();
        bucket.add(&MetricSample {
            load_balancer: "lb".to_owned(),
            server_group: "g".to_owned(),
            at_ms: 1,
            window_ms: 1000,
            requests: RequestCounts::default(),
            latency: pairs
                .iter()
                .map(|(le, count)| LatencyBucket {
                    le: *le,
                    count: *count,
                })
                .collect(),
        });
        bucket.latency
    }

    #[test]
    fn quantiles_interpolate_within_the_merged_bucket() {
        let b = buckets(&[(Some(0.001), 50), (Some(0.0075), 0), (Some(0.01), 50)]);
        assert!((quantile(&b, 0.5) - 0.001).abs() < 1e-12);
        let p99 = quantile(&b, 0.99);
        assert!(p99 > 0.0099 && p99 <= 0.01, "{p99}");
        assert!(quantile(&buckets(&[]), 0.5).is_nan());
        assert_eq!(
            quantile(&buckets(&[(Some(30.0), 0), (None, 3)]), 0.99),
            30.0
        );
    }

    #[test]
    fn ratios_and_rates_of_a_bucket() {
        let mut bucket = Bucket::default();
        for _ in 0..2 {
            bucket.add(&MetricSample {
                load_balancer: "lb".to_owned(),
                server_group: "g".to_owned(),
                at_ms: 1,
                window_ms: 1000,
                requests: RequestCounts {
                    ok: 6,
                    client_error: 1,
                    server_error: 2,
                    error: 1,
                    redirect: 0,
                },
                latency: vec![],
            });
        }
        assert_eq!(Metric::RequestRate.value(&bucket), 10.0);
        assert_eq!(Metric::ErrorRatio.value(&bucket), 0.3);
        assert_eq!(Metric::ErrorRatio4xx.value(&bucket), 0.1);
        assert_eq!(Metric::ErrorRatio5xx.value(&bucket), 0.2);
        assert!(Metric::ErrorRatio.value(&Bucket::default()).is_nan());
        assert!(
            METRICS
                .iter()
                .all(|(name, _)| Metric::parse(name).is_some())
        );
    }
}
