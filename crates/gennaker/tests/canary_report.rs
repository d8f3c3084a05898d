//! `gennaker canary report` as a real child process against a server with the canary
//! stage on a deterministic metric source: the table, `-o json`, and `--html FILE`
//! writing the standalone page.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use gennaker_canary::testing::canary_fixture;
use gennaker_server::{NoMoreMetrics, ServerConfig, Shutdown, Wiring};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_gennaker");
const ADMIN: &str = "gnk_canary_report_admin_0123456789";

struct Nothing;

impl Shutdown for Nothing {
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

fn registry() -> gennaker_engine::StageRegistry {
    let (sources, configs) = canary_fixture("cfg-web", "web-canary", "web").unwrap();
    let mut registry = gennaker_engine::StageRegistry::standard();
    gennaker_canary::stage::register(&mut registry, sources, Arc::new(configs));
    registry
}

fn cli(url: &str, home: &std::path::Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("GENNAKER_URL", url)
        .env("GENNAKER_TOKEN", ADMIN)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_report_prints_a_table_json_and_writes_the_html_page() {
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.path().join("data"),
        format!("sqlite://{}/gennaker.db", dir.path().display()),
    );
    config.admin_token = Some(ADMIN.to_owned());
    let open = gennaker_server::open(&config).await.unwrap();
    let wiring = Wiring {
        registry: registry(),
        providers: gennaker_deploy::Providers::new(),
        metrics: Arc::new(NoMoreMetrics),
        shutdown: Box::new(Nothing),
    };
    let server = gennaker_server::start(open, config, wiring).await.unwrap();
    let url = format!("http://{}", server.address());
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{url}/api/v1{path}");
    let post =
        |path: String, body: Value| http.post(api(&path)).bearer_auth(ADMIN).json(&body).send();
    assert!(
        post("/applications".into(), json!({"name": "web"}))
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let pipeline = json!({"application": "web", "name": "release", "stages": [
        {"refId": "1", "type": "kayentaCanary", "name": "Canary Analysis", "analysisType": "retrospective",
         "canaryConfig": {"canaryConfigId": "cfg-web", "metricsAccountName": "fake",
            "canaryAnalysisIntervalMins": "1", "scoreThresholds": {"marginal": "40", "pass": "90"},
            "scopes": [{"scopeName": "default", "controlScope": "web-baseline", "experimentScope": "web-canary",
                        "startTimeIso": "2024-05-01T12:00:00Z", "endTimeIso": "2024-05-01T12:02:00Z", "step": 10}]}}
    ]});
    assert!(
        post("/applications/web/pipelines".into(), pipeline)
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let started: Value = post(
        "/applications/web/pipelines/release/executions".into(),
        json!({}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let id = started["id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let execution: Value = http
            .get(api(&format!("/executions/{id}")))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if execution["status"] != "RUNNING" && execution["status"] != "NOT_STARTED" {
            // 50 each interval: above marginal 40, below pass 90, so the stage fails
            // after both intervals.
            assert_eq!(execution["status"], "TERMINAL", "{execution}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{execution}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The table: every interval, then each metric of the last one with why.
    let home = home.path().to_owned();
    let (url2, home2, id2) = (url.clone(), home.clone(), id.clone());
    let table =
        tokio::task::spawn_blocking(move || cli(&url2, &home2, &["canary", "report", &id2]))
            .await
            .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&table.stderr)
    );
    assert!(
        text.contains("Canary Analysis (TERMINAL): score 50 - Marginal"),
        "{text}"
    );
    assert!(
        text.contains("Run Canary #1") && text.contains("Run Canary #2"),
        "{text}"
    );
    assert!(text.contains("Metrics of Run Canary #2:"), "{text}");
    assert!(text.contains("+200.0%"), "{text}");
    assert!(text.contains("lies entirely above the tolerance"), "{text}");

    // -o json: the report itself, by the stage's name.
    let (url2, home2, id2) = (url.clone(), home.clone(), id.clone());
    let json_out = tokio::task::spawn_blocking(move || {
        cli(
            &url2,
            &home2,
            &[
                "canary",
                "report",
                &id2,
                "--stage",
                "Canary Analysis",
                "-o",
                "json",
            ],
        )
    })
    .await
    .unwrap();
    assert!(
        json_out.status.success(),
        "{}",
        String::from_utf8_lossy(&json_out.stderr)
    );
    let report: Value = serde_json::from_slice(&json_out.stdout).unwrap();
    assert_eq!(report["overall"]["scores"], json!([50.0, 50.0]));
    assert_eq!(
        report["intervals"][1]["metrics"][0]["classification"],
        "High"
    );

    // --html FILE: the standalone page.
    let file = dir.path().join("report.html");
    let (url2, home2, id2, file2) = (url.clone(), home.clone(), id.clone(), file.clone());
    let html_out = tokio::task::spawn_blocking(move || {
        cli(
            &url2,
            &home2,
            &["canary", "report", &id2, "--html", file2.to_str().unwrap()],
        )
    })
    .await
    .unwrap();
    assert!(
        html_out.status.success(),
        "{}",
        String::from_utf8_lossy(&html_out.stderr)
    );
    assert!(String::from_utf8_lossy(&html_out.stdout).contains("Wrote the canary report to"));
    let page = std::fs::read_to_string(&file).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert_eq!(
        page.matches("<svg").count(),
        2 * 2 * 2,
        "2 charts × 2 metrics × 2 intervals"
    );
    assert!(!page.contains("<script"));

    // A stage that is not a canary: the server's 404, named.
    let (url2, home2, id2) = (url.clone(), home.clone(), id.clone());
    let missing = tokio::task::spawn_blocking(move || {
        cli(
            &url2,
            &home2,
            &["canary", "report", &id2, "--stage", "nope"],
        )
    })
    .await
    .unwrap();
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no stage with id or name 'nope'"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    server.stop().await.unwrap();
}
