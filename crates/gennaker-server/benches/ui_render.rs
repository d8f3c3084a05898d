//! Server-side render time of the web UI, printed as one JSON document: the execution
//! page of a 100-stage execution (target ≤ 50 ms) and the first page of an application
//! with 5,000 executions (target ≤ 100 ms), each measured through the whole router
//! (session lookup, permission check, store read, redaction, template) on SQLite, with
//! the response size (target < 150 KB).
//!
//! Run: `cargo bench -p gennaker-server --bench ui_render`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use gennaker_server::{AccessChanges, AppState, Metrics, ServerConfig, bootstrap_admin, router};
use gennaker_store::testing::{TestBackend, TestDatabase};
use gennaker_store::{ExecutionRow, ExecutionStore, ExecutionWrite, StepCommit, Store};
use serde_json::{Value, json};
use tower::ServiceExt;

const TOKEN: &str = "gnk_bench_ui_token_0123456789";
const RUNS: usize = 50;
const EXECUTIONS: usize = 5_000;

fn stage(i: usize, requisites: Vec<String>, status: &str, start: i64) -> Value {
    json!({
        "id": format!("s{i:03}"), "refId": i.to_string(), "type": "wait",
        "name": format!("Stage number {i}"), "status": status,
        "startTime": start, "endTime": start + 1500,
        "context": {"waitTime": 1, "comment": "x".repeat(200)}, "outputs": {"n": i},
        "tasks": [{"id": "1", "implementingClass": "wait", "name": "waitTask", "status": status,
                   "startTime": start, "endTime": start + 1500, "stageStart": true, "stageEnd": true}],
        "requisiteStageRefIds": requisites,
    })
}

/// An execution with `stages` stages in a diamond-rich DAG (every fourth stage joins
/// the three before it), all SUCCEEDED.
fn execution(id: &str, stages: usize, build_time: i64) -> Value {
    let list: Vec<Value> = (1..=stages)
        .map(|i| {
            let requisites = match i {
                1 => vec![],
                i if i % 4 == 0 => (i - 3..i).map(|r| r.to_string()).collect(),
                i if i % 4 == 1 => vec![(i - 1).to_string()],
                i => vec![(i - (i % 4 - 1) - 1).max(1).to_string()],
            };
            stage(i, requisites, "SUCCEEDED", build_time + i as i64 * 10)
        })
        .collect();
    json!({
        "id": id, "type": "PIPELINE", "application": "big", "name": "release",
        "status": "SUCCEEDED", "buildTime": build_time, "startTime": build_time,
        "endTime": build_time + 60_000, "authentication": {"user": "admin"}, "origin": "api",
        "trigger": {"type": "manual", "user": "admin", "parameters": {"version": "v1"}},
        "stages": list,
    })
}

fn row(document: &Value) -> ExecutionWrite {
    ExecutionWrite {
        row: ExecutionRow {
            id: document["id"].as_str().unwrap().to_owned(),
            application: "big".to_owned(),
            pipeline_config_id: None,
            pipeline_name: Some("release".to_owned()),
            status: gennaker_core::ExecutionStatus::Succeeded,
            created_at: document["buildTime"].as_i64().unwrap(),
            start_time: document["startTime"].as_i64(),
            end_time: document["endTime"].as_i64(),
            correlation_id: None,
            version: 1,
            document: document.to_string(),
        },
        expected_version: None,
    }
}

async fn call(app: &Router, request: Request<Body>) -> (u16, Vec<String>, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let cookies = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, cookies, String::from_utf8(body.to_vec()).unwrap())
}

async fn sign_in(app: &Router) -> String {
    let (_, cookies, html) = call(app, Request::get("/signin").body(Body::empty()).unwrap()).await;
    let marker = r#"name="csrf" value=""#;
    let start = html.find(marker).unwrap() + marker.len();
    let csrf = &html[start..start + 64];
    let (status, session, _) = call(
        app,
        Request::post("/signin")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", cookies.join("; "))
            .body(Body::from(format!("token={TOKEN}&csrf={csrf}")))
            .unwrap(),
    )
    .await;
    assert_eq!(status, 303);
    session
        .into_iter()
        .find(|c| c.starts_with("gennaker_session="))
        .unwrap()
}

async fn measure(app: &Router, cookie: &str, path: &str) -> Value {
    let mut samples = Vec::with_capacity(RUNS);
    let mut bytes = 0;
    for _ in 0..RUNS {
        let request = Request::get(path)
            .header("cookie", cookie)
            .body(Body::empty())
            .unwrap();
        let started = Instant::now();
        let (status, _, html) = call(app, request).await;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status, 200, "{path}: {html}");
        bytes = html.len();
    }
    samples.sort_by(f64::total_cmp);
    let at = |p: f64| {
        (samples[((samples.len() - 1) as f64 * p).round() as usize] * 100.0).round() / 100.0
    };
    json!({
        "path": path, "runs": RUNS, "p50_ms": at(0.5), "p99_ms": at(0.99),
        "mean_ms": (samples.iter().sum::<f64>() / samples.len() as f64 * 100.0).round() / 100.0,
        "page_bytes": bytes,
    })
}

#[tokio::main]
async fn main() {
    let (db, store) = TestDatabase::store(TestBackend::Sqlite).await.unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        admin_token: Some(TOKEN.to_owned()),
        ..ServerConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            data_dir.path().to_owned(),
            db.url.clone(),
        )
    };
    bootstrap_admin(&store, &config).await.unwrap();
    store
        .create_application("big", &json!({"name": "big"}), "admin")
        .await
        .unwrap();
    let base = 1_700_000_000_000i64;
    let mut writes: Vec<ExecutionWrite> = (0..EXECUTIONS)
        .map(|i| row(&execution(&format!("e{i:05}"), 8, base + i as i64 * 1000)))
        .collect();
    writes.push(row(&execution(
        "e-hundred",
        100,
        base + EXECUTIONS as i64 * 1000,
    )));
    for chunk in writes.chunks(500) {
        store
            .commit_step(&StepCommit {
                owner: "bench".to_owned(),
                acknowledged: Vec::new(),
                acknowledged_partition: None,
                executions: chunk.to_vec(),
                remove: Vec::new(),
                enqueue: Vec::new(),
                wake: Vec::new(),
                wake_at: 0,
                pipeline_lock: None,
                concurrency: None,
                notices: Vec::new(),
                notifications: Vec::new(),
            })
            .await
            .unwrap();
    }
    let key = gennaker_store::SealingKey::load_or_create(&config.secrets_key_path()).unwrap();
    let engine = gennaker_server::engine(
        &store,
        &key,
        &config,
        gennaker_engine::StageRegistry::standard(),
    )
    .unwrap();
    let triggers = gennaker_server::start_triggers(
        &store,
        &engine,
        &config,
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap();
    let state = AppState {
        store: Arc::new(store.clone()) as Arc<dyn Store>,
        canary_configs: Arc::new(store.clone()),
        notifications: Arc::new(store.clone()),
        metric_samples: Arc::new(store.clone()),
        engine,
        providers: gennaker_deploy::Providers::new(),
        triggers,
        more_metrics: Arc::new(gennaker_server::NoMoreMetrics),
        metrics: Arc::new(Metrics::new()),
        config: Arc::new(config),
        shutdown: tokio_util::sync::CancellationToken::new(),
        tasks: tokio_util::task::TaskTracker::new(),
        access_changes: AccessChanges::new(),
    };
    let app = router(state);
    let cookie = sign_in(&app).await;
    let execution_page = measure(&app, &cookie, "/executions/e-hundred").await;
    let list_page = measure(&app, &cookie, "/applications/big/executions").await;
    let report = json!({
        "backend": "sqlite",
        "execution_page_100_stages": execution_page,
        "executions_first_page_of_5000": list_page,
        "targets": {"execution_page_ms": 50, "executions_page_ms": 100, "page_bytes": 150 * 1024},
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}
