//! Multi-server throughput (issue 16), printed as one JSON document: 1, then 2,
//! `gennaker server` processes on one PostgreSQL database run executions of a pipeline
//! of ten chained `wait 0` stages (each stage takes a queue hop, as webhook, deploy,
//! judgment and canary stages do), submitted round-robin to the servers. The figure is
//! stage completions per second from the first execution's start to the last one's end
//! (read from the executions), with how many tasks each server ran, and how many
//! executions per second `POST …/executions` accepted.
//!
//! Run: `cargo bench -p gennaker --bench multi_server` (PostgreSQL from
//! GENNAKER_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test;
//! GENNAKER_BENCH_EXECUTIONS sets how many executions, 1 to 1000, default 300).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gennaker_store::testing::{TestBackend, TestDatabase};
use serde_json::{Value, json};

const TOKEN: &str = "gnk_bench_token_0123456789abcdefghijkl";
const STAGES: usize = 10;
/// Concurrent clients submitting executions.
const CLIENTS: usize = 8;
const PATIENCE: Duration = Duration::from_secs(600);

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(database_url: &str, data_dir: &Path, key_file: &Path) -> Server {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = data_dir.join("gennaker.toml");
    std::fs::write(
        &config,
        format!(
            "[secrets]\nkey_file = {:?}\n",
            key_file.display().to_string()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_gennaker"))
        .args([
            "server",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            database_url,
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--config")
        .arg(&config)
        .env("GENNAKER_ADMIN_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

async fn ready(client: &reqwest::Client, server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = client.get(format!("{}/readyz", server.base)).send().await
            && response.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "{} did not start", server.base);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> Value {
    let mut request = client.request(method, &url).bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let value: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{url}: {status} {value}");
    value
}

async fn measure(servers: usize, executions: usize) -> Value {
    let database = TestDatabase::create(TestBackend::Postgres).await.unwrap();
    let shared = tempfile::tempdir().unwrap();
    let key_file = shared.path().join("secrets.key");
    let dirs: Vec<tempfile::TempDir> = (0..servers).map(|_| tempfile::tempdir().unwrap()).collect();
    let client = reqwest::Client::new();
    let processes: Vec<Server> = dirs
        .iter()
        .map(|dir| start(&database.url, dir.path(), &key_file))
        .collect();
    for server in &processes {
        ready(&client, server).await;
    }
    let first = &processes[0].base;
    call(
        &client,
        reqwest::Method::POST,
        format!("{first}/api/v1/applications"),
        Some(json!({"name": "bench", "email": "bench@example.com"})),
    )
    .await;
    let stages: Vec<Value> = (1..=STAGES)
        .map(|i| {
            let after: Vec<String> = if i == 1 { vec![] } else { vec![(i - 1).to_string()] };
            json!({"refId": i.to_string(), "type": "wait", "waitTime": 0, "requisiteStageRefIds": after})
        })
        .collect();
    call(
        &client,
        reqwest::Method::POST,
        format!("{first}/api/v1/applications/bench/pipelines"),
        Some(json!({"name": "hops", "stages": stages})),
    )
    .await;

    let bases: Vec<String> = processes.iter().map(|s| s.base.clone()).collect();
    let submit_started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let (client, bases) = (client.clone(), bases.clone());
        clients.spawn(async move {
            let mut ids = Vec::new();
            for n in (c..executions).step_by(CLIENTS) {
                let base = &bases[n % bases.len()];
                let accepted = call(
                    &client,
                    reqwest::Method::POST,
                    format!("{base}/api/v1/applications/bench/pipelines/hops/executions"),
                    Some(json!({})),
                )
                .await;
                ids.push(accepted["id"].as_str().unwrap().to_owned());
            }
            ids
        });
    }
    let mut ids = Vec::new();
    while let Some(done) = clients.join_next().await {
        ids.extend(done.unwrap());
    }
    let submit_seconds = submit_started.elapsed().as_secs_f64();

    let deadline = Instant::now() + PATIENCE;
    loop {
        let done = call(
            &client,
            reqwest::Method::GET,
            format!("{first}/api/v1/executions?application=bench&status=SUCCEEDED&limit=1000"),
            None,
        )
        .await;
        if done.as_array().map_or(0, Vec::len) >= executions {
            break;
        }
        assert!(Instant::now() < deadline, "the executions did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut first_start = i64::MAX;
    let mut last_end = 0;
    let mut by_server: BTreeMap<String, usize> = BTreeMap::new();
    for id in &ids {
        let execution = call(
            &client,
            reqwest::Method::GET,
            format!("{first}/api/v1/executions/{id}"),
            None,
        )
        .await;
        assert_eq!(execution["status"], "SUCCEEDED", "{execution}");
        first_start = first_start.min(execution["startTime"].as_i64().unwrap());
        last_end = last_end.max(execution["endTime"].as_i64().unwrap());
        for stage in execution["stages"].as_array().unwrap() {
            for task in stage["tasks"].as_array().unwrap() {
                let server = task["server"].as_str().unwrap_or("?").to_owned();
                *by_server.entry(server).or_default() += 1;
            }
        }
    }
    let seconds = (last_end - first_start) as f64 / 1000.0;
    let completions = (executions * STAGES) as f64;
    json!({
        "servers": servers,
        "executions": executions,
        "stage_completions": executions * STAGES,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "stage_completions_per_s": (completions / seconds).round(),
        "submit_seconds": (submit_seconds * 1000.0).round() / 1000.0,
        // POST …/executions accepted per second from CLIENTS keep-alive clients (the
        // servers run the executions meanwhile).
        "submissions_per_s": (executions as f64 / submit_seconds).round(),
        "tasks_by_server": by_server.into_values().collect::<Vec<_>>(),
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let executions = std::env::var("GENNAKER_BENCH_EXECUTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    assert!(
        (1..=1000).contains(&executions),
        "GENNAKER_BENCH_EXECUTIONS must be 1 to 1000 (the most one list call returns)"
    );
    let one = measure(1, executions).await;
    let two = measure(2, executions).await;
    let speedup = two["stage_completions_per_s"].as_f64().unwrap()
        / one["stage_completions_per_s"].as_f64().unwrap();
    let report = json!({
        "benchmark": "multi_server",
        "pipeline": format!("{STAGES} chained wait 0 stages"),
        "database": "postgres",
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "runs": [one, two],
        "two_over_one": (speedup * 100.0).round() / 100.0,
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}
