//! How long one analysis interval takes to read its metrics from the builtin source:
//! 10 metrics, control and experiment, from a SQLite store holding an hour of
//! 1-second samples for each server group behind two load balancers. Prints JSON.
//! Target: at most 50 ms per interval.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use gennaker_canary::source::builtin::{BuiltinSource, METRICS};
use gennaker_canary::{CanaryConfig, CanaryMetricConfig, MetricSource, ScopeQuery};
use gennaker_store::{LatencyBucket, MetricSample, MetricSampleStore, RequestCounts, SqlStore};

const SECONDS: i64 = 3600;
const ROUNDS: usize = 50;

fn samples(group: &str, lb: &str, end_ms: i64) -> Vec<MetricSample> {
    (0..SECONDS)
        .map(|i| MetricSample {
            load_balancer: lb.to_owned(),
            server_group: group.to_owned(),
            at_ms: end_ms - (SECONDS - i) * 1000,
            window_ms: 1000,
            requests: RequestCounts {
                ok: 95 + (i % 7) as u64,
                client_error: 2,
                server_error: (i % 3) as u64,
                ..RequestCounts::default()
            },
            latency: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05]
                .iter()
                .enumerate()
                .map(|(b, le)| LatencyBucket {
                    le: Some(*le),
                    count: 10 + ((i as u64 + b as u64) % 11),
                })
                .chain([LatencyBucket { le: None, count: 1 }])
                .collect(),
        })
        .collect()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let store = SqlStore::connect(&url).await.unwrap();
        let now = jiff::Timestamp::now().as_millisecond();
        for group in ["web-v001", "web-v002"] {
            for lb in ["front", "admin"] {
                for chunk in samples(group, lb, now).chunks(1000) {
                    store.insert_metric_samples(chunk).await.unwrap();
                }
            }
        }
        let source = BuiltinSource::new("builtin", Arc::new(store) as Arc<dyn MetricSampleStore>);
        let config = CanaryConfig::default();
        // The 7 builtin metrics, three of them again split by load balancer: 10.
        let metrics: Vec<CanaryMetricConfig> = METRICS
            .iter()
            .map(|(name, _)| serde_json::json!({"name": name, "query": {"type": "builtin", "metricName": name}}))
            .chain(METRICS.iter().take(3).map(|(name, _)| {
                serde_json::json!({"name": format!("{name}_by_lb"), "query": {"type": "builtin",
                    "metricName": name, "groupByFields": ["loadBalancer"]}})
            }))
            .map(|m| serde_json::from_value(m).unwrap())
            .collect();
        let window = |group: &str, minutes_ago: i64| ScopeQuery {
            scope: group.to_owned(),
            location: String::new(),
            start: jiff::Timestamp::from_millisecond(now - minutes_ago * 60_000).unwrap(),
            end: jiff::Timestamp::from_millisecond(now - minutes_ago * 60_000 + 30_000).unwrap(),
            step_seconds: 1,
            extended_params: BTreeMap::new(),
        };
        let mut times = Vec::with_capacity(ROUNDS);
        for round in 0..ROUNDS {
            // A different 30 s interval each round, as a canary's intervals are.
            let minutes_ago = 1 + (round as i64 % 50);
            let started = Instant::now();
            for metric in &metrics {
                for group in ["web-v001", "web-v002"] {
                    let sets = source.query(&config, metric, &window(group, minutes_ago)).await.unwrap();
                    assert!(sets.iter().all(|s| !s.values.is_empty()));
                }
            }
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        let result = serde_json::json!({
            "bench": "builtin source, SQLite",
            "metrics": metrics.len(),
            "sides": 2,
            "interval_seconds": 30,
            "stored_samples": 4 * SECONDS,
            "ms_per_interval": {"median": times[ROUNDS / 2], "p95": times[ROUNDS * 95 / 100], "max": times[ROUNDS - 1]},
            "target_ms": 50,
        });
        println!("{}", serde_json::to_string_pretty(&result).unwrap());
    });
}
