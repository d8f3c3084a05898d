//! How long one analysis interval takes on the Prometheus source: 10 metrics, control
//! and experiment, range-queried (30 s, step 1 s) from a real Prometheus (Debian's
//! `prometheus`, on a free port) holding an hour of 1-second samples per server group
//! (backfilled with `promtool tsdb create-blocks-from openmetrics`), then judged.
//! Prints JSON: the query part, the judge part and both together.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gennaker_canary::source::prometheus::{
    DEFAULT_MAX_RESPONSE_BYTES, PrometheusAccount, PrometheusAuth, PrometheusSource,
};
use gennaker_canary::{
    CanaryConfig, JudgeOptions, MetricSetPair, MetricSource, PairValues, ScopeQuery,
    ScoreThresholds, judge,
};

const SECONDS: i64 = 3600;
const METRICS: usize = 10;
const ROUNDS: usize = 50;
const GROUPS: [&str; 2] = ["web-v001", "web-v002"];

/// An hour of samples of `bench_metric_<i>{server_group}`, ending `end_s`, as
/// OpenMetrics text (families contiguous, each series in time order).
fn openmetrics(end_s: i64) -> String {
    let mut text = String::new();
    for metric in 0..METRICS {
        writeln!(text, "# TYPE bench_metric_{metric} gauge").unwrap();
        for (g, group) in GROUPS.iter().enumerate() {
            for i in 0..SECONDS {
                let value = 10.0 + ((i + metric as i64 + g as i64) % 7) as f64 * 0.1;
                writeln!(
                    text,
                    "bench_metric_{metric}{{server_group=\"{group}\"}} {value} {}",
                    end_s - SECONDS + i
                )
                .unwrap();
            }
        }
    }
    text.push_str("# EOF\n");
    text
}

struct Prometheus(std::process::Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let input = dir.path().join("bench.om");
    let end_s = jiff::Timestamp::now().as_second() - 60;
    std::fs::write(&input, openmetrics(end_s)).unwrap();
    let backfill = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&data)
        .output()
        .expect("promtool (Debian's prometheus package; scripts/test.sh installs it)");
    assert!(
        backfill.status.success(),
        "{}",
        String::from_utf8_lossy(&backfill.stderr)
    );
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1m\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _prometheus = Prometheus(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (scripts/test.sh installs it)"),
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let source = PrometheusSource::new(PrometheusAccount {
            name: "bench".to_owned(),
            url: format!("http://127.0.0.1:{port}").parse().unwrap(),
            auth: PrometheusAuth::None,
            timeout: Duration::from_secs(10),
            scope_label: "instance".to_owned(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        })
        .unwrap();
        // Kayenta's query building: avg(metric{server_group="<scope>"}).
        let canary: CanaryConfig = serde_json::from_value(serde_json::json!({
            "name": "bench", "applications": ["web"],
            "metrics": (0..METRICS).map(|i| serde_json::json!({
                "name": format!("m{i}"), "groups": ["all"],
                "query": {"type": "prometheus", "metricName": format!("bench_metric_{i}"),
                          "customInlineTemplate": "server_group=\"${scope}\""},
                "analysisConfigurations": {"canary": {"direction": "either"}}
            })).collect::<Vec<_>>(),
            "classifier": {"groupWeights": {"all": 100}}
        }))
        .unwrap();
        let window = |group: &str, minutes_ago: i64| ScopeQuery {
            scope: group.to_owned(),
            location: String::new(),
            start: jiff::Timestamp::from_second(end_s - minutes_ago * 60).unwrap(),
            end: jiff::Timestamp::from_second(end_s - minutes_ago * 60 + 30).unwrap(),
            step_seconds: 1,
            extended_params: BTreeMap::new(),
        };
        // Prometheus loads the blocks while it starts: wait (bounded) for the data.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = source
                .query(&canary, &canary.metrics[0], &window(GROUPS[0], 1))
                .await
                .is_ok_and(|sets| sets.iter().any(|s| !s.values.is_empty()));
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "prometheus never served the data");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (mut query_ms, mut judge_ms, mut total_ms) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            // A different 30 s interval each round, as a canary's intervals are.
            let minutes_ago = 1 + (round as i64 % 50);
            let started = Instant::now();
            let mut pairs = Vec::with_capacity(METRICS);
            for metric in &canary.metrics {
                let mut sides = Vec::with_capacity(2);
                for group in GROUPS {
                    let sets = source
                        .query(&canary, metric, &window(group, minutes_ago))
                        .await
                        .unwrap();
                    assert_eq!(sets.len(), 1);
                    sides.push(sets.into_iter().next().unwrap().values);
                }
                let experiment = sides.pop().unwrap();
                let control = sides.pop().unwrap();
                pairs.push(MetricSetPair {
                    name: metric.name.clone(),
                    id: None,
                    tags: BTreeMap::new(),
                    values: PairValues {
                        control,
                        experiment,
                    },
                    extra: serde_json::Map::new(),
                });
            }
            let queried = Instant::now();
            let result = judge(
                &canary,
                &pairs,
                &ScoreThresholds::default(),
                &JudgeOptions::default(),
            )
            .unwrap();
            assert_eq!(result.results.len(), METRICS);
            let judged = Instant::now();
            query_ms.push((queried - started).as_secs_f64() * 1000.0);
            judge_ms.push((judged - queried).as_secs_f64() * 1000.0);
            total_ms.push((judged - started).as_secs_f64() * 1000.0);
        }
        let summary = |times: &mut Vec<f64>| {
            times.sort_by(f64::total_cmp);
            serde_json::json!({"median": times[ROUNDS / 2], "p95": times[ROUNDS * 95 / 100], "max": times[ROUNDS - 1]})
        };
        let result = serde_json::json!({
            "bench": "prometheus source + judge, real Prometheus",
            "metrics": METRICS,
            "sides": 2,
            "interval_seconds": 30,
            "step_seconds": 1,
            "stored_samples": METRICS as i64 * GROUPS.len() as i64 * SECONDS,
            "query_ms_per_interval": summary(&mut query_ms),
            "judge_ms_per_interval": summary(&mut judge_ms),
            "ms_per_interval": summary(&mut total_ms),
        });
        println!("{}", serde_json::to_string_pretty(&result).unwrap());
    });
}
