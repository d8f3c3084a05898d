//! Foundation figures for issue 2, printed as one JSON document: binary size, time from
//! exec to `/readyz` = 200, idle RSS, and API latency (p50/p99 over 1,000 calls) for saving
//! and reading a pipeline, on SQLite and on PostgreSQL.
//!
//! Run: `cargo bench -p gennaker --bench foundation` (PostgreSQL from
//! GENNAKER_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test; set
//! GENNAKER_BENCH_SKIP_POSTGRES=1 to measure SQLite only).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gennaker_store::testing::{TestBackend, TestDatabase};
use serde_json::{Value, json};

const CALLS: usize = 1_000;
const TOKEN: &str = "gnk_bench_token_0123456789";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn summary(mut samples: Vec<f64>) -> Value {
    samples.sort_by(f64::total_cmp);
    json!({
        "calls": samples.len(),
        "p50_ms": (percentile(&samples, 0.50) * 1000.0).round() / 1000.0,
        "p99_ms": (percentile(&samples, 0.99) * 1000.0).round() / 1000.0,
        "mean_ms": (samples.iter().sum::<f64>() / samples.len() as f64 * 1000.0).round() / 1000.0,
    })
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn measure(backend: &str, database_url: &str) -> Value {
    let data_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_gennaker"))
        .args([
            "server",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            database_url,
        ])
        .arg("--data-dir")
        .arg(data_dir.path())
        .env("GENNAKER_ADMIN_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    let deadline = started + Duration::from_secs(30);
    loop {
        if let Ok(response) = client.get(format!("{base}/readyz")).send().await
            && response.status() == 200
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "server on {backend} did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let ready_ms = started.elapsed().as_secs_f64() * 1000.0;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss_mib = rss_kib(server.0.id()) as f64 / 1024.0;

    let auth = format!("Bearer {TOKEN}");
    let created = client
        .post(format!("{base}/api/v1/applications"))
        .header("Authorization", &auth)
        .json(&json!({"name": "bench", "email": "bench@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let mut saves = Vec::with_capacity(CALLS);
    for n in 0..CALLS {
        let pipeline = json!({
            "application": "bench", "name": "Deploy", "limitConcurrent": true, "keepWaitingPipelines": false,
            "parameterConfig": [{"name": "version", "default": n.to_string(), "required": false}],
            "stages": [
                {"refId": "1", "requisiteStageRefIds": [], "type": "wait", "name": "Wait", "waitTime": 5},
                {"refId": "2", "requisiteStageRefIds": ["1"], "type": "manualJudgment", "name": "Judge", "instructions": "ok?"},
                {"refId": "3", "requisiteStageRefIds": ["2"], "type": "webhook", "name": "Notify", "url": "https://example.com/hook", "method": "POST"}
            ],
            "triggers": [{"type": "cron", "enabled": true, "cronExpression": "0 0 12 * * ?"}]
        });
        let t = Instant::now();
        let response = client
            .post(format!("{base}/api/v1/applications/bench/pipelines"))
            .header("Authorization", &auth)
            .json(&pipeline)
            .send()
            .await
            .unwrap();
        let status = response.status();
        response.bytes().await.unwrap();
        saves.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(status.is_success(), "save failed: {status}");
    }
    let mut reads = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let t = Instant::now();
        let response = client
            .get(format!("{base}/api/v1/applications/bench/pipelines/Deploy"))
            .header("Authorization", &auth)
            .send()
            .await
            .unwrap();
        let status = response.status();
        response.bytes().await.unwrap();
        reads.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status, 200);
    }
    let rss_after_mib = rss_kib(server.0.id()) as f64 / 1024.0;
    drop(server);
    json!({
        "backend": backend,
        "ready_ms": (ready_ms * 10.0).round() / 10.0,
        "idle_rss_mib": (idle_rss_mib * 10.0).round() / 10.0,
        "rss_after_load_mib": (rss_after_mib * 10.0).round() / 10.0,
        "save_pipeline": summary(saves),
        "get_pipeline": summary(reads),
    })
}

#[tokio::main]
async fn main() {
    let binary = std::fs::metadata(env!("CARGO_BIN_EXE_gennaker"))
        .unwrap()
        .len();
    let sqlite_dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}", sqlite_dir.path().join("bench.db").display());
    let mut results = vec![measure("sqlite", &sqlite_url).await];
    if std::env::var("GENNAKER_BENCH_SKIP_POSTGRES").is_err() {
        let database = TestDatabase::create(TestBackend::Postgres).await.unwrap();
        results.push(measure("postgres", &database.url).await);
    }
    let report = json!({
        "bench": "foundation",
        "binary_bytes": binary,
        "binary_mib": (binary as f64 / 1048576.0 * 10.0).round() / 10.0,
        "backends": results,
    });
    println!("{report}");
}
