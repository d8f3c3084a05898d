//! Engine throughput and stage-to-stage latency on SQLite and PostgreSQL, printed as
//! one JSON line. Run with `cargo bench -p gennaker-engine --bench throughput`.
//!
//! A 10-stage pipeline runs with 1, 100 and 1,000 executions in flight (and 10,000 for
//! the `wait` pipeline). Two pipelines are measured: `evaluateVariables` stages (their
//! task is pure, so the engine runs a whole chain within one committed step), and
//! `wait` stages of 0 s (every stage is a separate trip through the durable queue: the
//! cost of a stage that does I/O).
//!
//! `GENNAKER_BENCH_BACKENDS` (default `sqlite,postgres`) and `GENNAKER_BENCH_IN_FLIGHT`
//! (default `1,100,1000,10000`; the `evaluateVariables` pipeline skips 10,000) narrow a
//! run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use gennaker_engine::{
    Engine, EngineConfig, Execution, ExecutionStatus, Requester, RunRequest, StageRegistry,
    SystemClock,
};
use gennaker_store::testing::{TestBackend, TestDatabase};
use gennaker_store::{ExecutionQuery, PipelineSave, SqlStore, Store};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Upper bound for one measurement, so a regression cannot hang the bench.
const MAX_BATCH_TIME: Duration = Duration::from_secs(300);

fn pipeline(kind: &str) -> Value {
    let stages: Vec<Value> = (1..=10)
        .map(|i| {
            let mut stage = match kind {
                "wait" => json!({"type": "wait", "waitTime": 0}),
                _ => json!({"type": "evaluateVariables", "variables": [{"key": format!("v{i}"), "value": "${execution.application}"}]}),
            };
            stage["refId"] = json!(i.to_string());
            stage["name"] = json!(format!("stage {i}"));
            if i > 1 {
                stage["requisiteStageRefIds"] = json!([(i - 1).to_string()]);
            }
            stage
        })
        .collect();
    json!({"name": kind, "application": "bench", "stages": stages})
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Gaps between one stage's end and the next one's start, in ms.
fn gaps(execution: &Execution, out: &mut Vec<f64>) {
    for pair in execution.stages.windows(2) {
        if let (Some(end), Some(start)) = (pair[0].end_time, pair[1].start_time) {
            out.push((start - end) as f64);
        }
    }
}

/// From a stage's start to its first task's end, in ms: for a 0 s wait, one trip of
/// the task through the durable queue.
fn hops(execution: &Execution, out: &mut Vec<f64>) {
    for stage in &execution.stages {
        if let (Some(start), Some(end)) = (
            stage.start_time,
            stage.tasks.first().and_then(|t| t.end_time),
        ) {
            out.push((end - start) as f64);
        }
    }
}

async fn batch(engine: &Engine, config: &gennaker_core::Pipeline, in_flight: usize) -> Value {
    let requester = Requester {
        user: "bench".into(),
        roles: vec![],
        origin: "bench".into(),
    };
    let mut events = engine.subscribe();
    let started = Instant::now();
    let started_ms = epoch_ms();
    let mut ids = Vec::with_capacity(in_flight);
    for _ in 0..in_flight {
        let execution = engine
            .run_pipeline("bench", config, &RunRequest::default(), &requester)
            .await
            .unwrap();
        ids.push(execution.id);
    }
    let mut remaining: std::collections::HashSet<String> = ids.iter().cloned().collect();
    let mut peak_rss = rss_mib();
    // After missing events the bench re-reads which executions still run, but at most
    // once a second: that listing parses every running execution's document, and done
    // on every lag it took a third of the process's CPU from the engine it measures.
    // The figure comes from the executions' end times, so a late check changes nothing.
    let mut missed_events = false;
    let mut last_listing = Instant::now();
    while !remaining.is_empty() && started.elapsed() < MAX_BATCH_TIME {
        let quiet = match tokio::time::timeout(Duration::from_millis(500), events.recv()).await {
            Ok(Ok(event)) => {
                if event.stage_id.is_none() && event.status.is_complete() {
                    remaining.remove(&event.execution_id);
                }
                false
            }
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {
                missed_events = true;
                false
            }
            Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) | Err(_) => true,
        };
        if quiet || (missed_events && last_listing.elapsed() >= Duration::from_secs(1)) {
            let active: std::collections::HashSet<String> = engine
                .executions(&ExecutionQuery {
                    pipeline_config_id: config.id.clone(),
                    statuses: vec![
                        ExecutionStatus::NotStarted,
                        ExecutionStatus::Running,
                        ExecutionStatus::Buffered,
                    ],
                    limit: 10_000,
                    ..ExecutionQuery::default()
                })
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.id)
                .collect();
            remaining.retain(|id| active.contains(id));
            missed_events = false;
            last_listing = Instant::now();
        }
        peak_rss = peak_rss.max(rss_mib());
    }
    let mut latencies = Vec::new();
    let mut hop_times = Vec::new();
    let mut succeeded = 0;
    let mut last_end_ms = started_ms;
    for id in &ids {
        let execution = engine.execution(id).await.unwrap().unwrap();
        if execution.status == ExecutionStatus::Succeeded {
            succeeded += 1;
        }
        last_end_ms = last_end_ms.max(execution.end_time.unwrap_or(started_ms));
        gaps(&execution, &mut latencies);
        hops(&execution, &mut hop_times);
    }
    // From the first submission to the last execution's end, as the executions record it.
    let elapsed = ((last_end_ms - started_ms) as f64 / 1000.0).max(0.001);
    latencies.sort_by(f64::total_cmp);
    hop_times.sort_by(f64::total_cmp);
    json!({
        "in_flight": in_flight,
        "succeeded": succeeded,
        "seconds": (elapsed * 1000.0).round() / 1000.0,
        "executions_per_s": ((ids.len() as f64 / elapsed) * 10.0).round() / 10.0,
        "stage_completions_per_s": ((ids.len() as f64 * 10.0 / elapsed) * 10.0).round() / 10.0,
        "stage_to_stage_ms": {"p50": percentile(&latencies, 50.0), "p99": percentile(&latencies, 99.0)},
        "stage_start_to_task_end_ms": {"p50": percentile(&hop_times, 50.0), "p99": percentile(&hop_times, 99.0)},
        "peak_rss_mib": (peak_rss * 10.0).round() / 10.0,
    })
}

/// Milliseconds since the Unix epoch, the engine's clock for `endTime`.
fn epoch_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

async fn backend(kind: TestBackend) -> Value {
    let (db, store): (TestDatabase, SqlStore) = TestDatabase::store(kind).await.unwrap();
    store
        .create_application("bench", &json!({"name": "bench"}), "bench")
        .await
        .unwrap();
    let engine = Engine::new(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        StageRegistry::standard(),
        Arc::new(SystemClock),
        EngineConfig {
            single_server: kind == TestBackend::Sqlite,
            ..EngineConfig::default()
        },
    )
    .unwrap();
    let shutdown = CancellationToken::new();
    let mut workers = engine
        .start(store.queue_listener().await.unwrap(), shutdown.clone())
        .await
        .unwrap();
    let mut results = serde_json::Map::new();
    for stage_kind in ["evaluateVariables", "wait"] {
        let (record, _) = store
            .save_pipeline(
                "bench",
                &PipelineSave {
                    id: None,
                    name: stage_kind.into(),
                    config: pipeline(stage_kind),
                },
                "bench",
            )
            .await
            .unwrap();
        let mut config = gennaker_core::Pipeline::from_value(record.config.clone()).unwrap();
        config.id = Some(record.id.clone());
        let mut runs = Vec::new();
        for in_flight in in_flight_list() {
            if stage_kind != "wait" && in_flight > 1000 {
                continue;
            }
            if in_flight == 1 {
                // One at a time, 50 times, for a stable single-execution figure.
                let started = Instant::now();
                let mut latencies = Vec::new();
                let mut hop_times = Vec::new();
                for _ in 0..50 {
                    let one = batch(&engine, &config, 1).await;
                    latencies.push(one["stage_to_stage_ms"]["p50"].as_f64().unwrap_or(0.0));
                    hop_times.push(
                        one["stage_start_to_task_end_ms"]["p50"]
                            .as_f64()
                            .unwrap_or(0.0),
                    );
                }
                hop_times.sort_by(f64::total_cmp);
                let elapsed = started.elapsed().as_secs_f64();
                latencies.sort_by(f64::total_cmp);
                runs.push(json!({
                    "in_flight": 1,
                    "executions": 50,
                    "executions_per_s": ((50.0 / elapsed) * 10.0).round() / 10.0,
                    "stage_completions_per_s": ((500.0 / elapsed) * 10.0).round() / 10.0,
                    "stage_to_stage_ms": {"p50": percentile(&latencies, 50.0), "p99": percentile(&latencies, 99.0)},
                    "stage_start_to_task_end_ms": {"p50": percentile(&hop_times, 50.0), "p99": percentile(&hop_times, 99.0)},
                }));
            } else {
                runs.push(batch(&engine, &config, in_flight).await);
            }
        }
        results.insert(stage_kind.to_owned(), Value::Array(runs));
    }
    shutdown.cancel();
    while workers.join_next().await.is_some() {}
    store.close().await;
    drop(db);
    json!({"backend": if kind == TestBackend::Sqlite { "sqlite" } else { "postgres" }, "pipelines": results})
}

fn in_flight_list() -> Vec<usize> {
    std::env::var("GENNAKER_BENCH_IN_FLIGHT")
        .unwrap_or_else(|_| "1,100,1000,10000".to_owned())
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .expect("GENNAKER_BENCH_IN_FLIGHT: numbers, comma-separated")
        })
        .collect()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let wanted =
        std::env::var("GENNAKER_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".to_owned());
    let report = runtime.block_on(async {
        let mut backends = Vec::new();
        if wanted.contains("sqlite") {
            backends.push(backend(TestBackend::Sqlite).await);
        }
        if wanted.contains("postgres") {
            backends.push(backend(TestBackend::Postgres).await);
        }
        json!({"bench": "engine_throughput", "stages_per_pipeline": 10, "backends": backends})
    });
    println!("{report}");
}
