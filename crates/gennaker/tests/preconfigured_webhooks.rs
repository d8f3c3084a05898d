//! Preconfigured webhook stages through the real binary: a gennaker.toml with
//! `[[webhooks.preconfigured]]`, a server on SQLite and PostgreSQL that lists, accepts
//! and runs the type against a local HTTP server, offline validation with the same
//! file, and the bad entries that stop `gennaker server`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use gennaker_store::testing::{TestBackend, TestDatabase};
use serde_json::{Value, json};
use support::{BIN, LOOPBACK_OUTBOUND, Server, TOKEN, refused_server_start};

/// What the deployer received: method, path, `x-team` header, body.
type Calls = Arc<Mutex<Vec<(String, String, String, Value)>>>;

/// A deployer: `POST /deploy/<env>` starts job 1, `GET /jobs/1` says it succeeded.
async fn deployer() -> (String, Calls) {
    let calls: Calls = Arc::default();
    async fn serve(
        State(calls): State<Calls>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> String {
        let team = headers
            .get("x-team")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
        calls
            .lock()
            .unwrap()
            .push((method.to_string(), uri.path().to_owned(), team, body));
        if method == Method::GET {
            json!({"state": "SUCCESS"}).to_string()
        } else {
            json!({"job": "/jobs/1"}).to_string()
        }
    }
    let app = axum::Router::new()
        .fallback(serve)
        .with_state(calls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, calls)
}

/// A gennaker.toml defining `deployHook` against `base`.
fn config_file(dir: &Path, base: &str) -> String {
    let path = dir.join("gennaker.toml");
    let text = format!(
        r#"
[[webhooks.preconfigured]]
type = "deployHook"
label = "Deploy hook"
description = "asks the deployer to roll out a service"
url = "{base}/deploy/${{parameterValues.env}}"
customHeaders = {{ X-Team = "shop" }}
payload = '{{"service": "${{parameterValues.service}}", "env": "${{parameterValues.env}}", "execution": "${{execution.id}}"}}'
waitForCompletion = true
statusUrlResolution = "webhookResponse"
statusUrlJsonPath = "$.job"
statusJsonPath = "$.state"
successStatuses = "SUCCESS"
terminalStatuses = "FAILED"
parameters = [{{ name = "service", label = "Service" }}, {{ name = "env", label = "Environment", defaultValue = "staging" }}]

{LOOPBACK_OUTBOUND}"#
    );
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn pipeline(parameter_values: Value) -> Value {
    json!({
        "name": "release", "application": "shop",
        "stages": [{"refId": "1", "name": "roll out", "type": "deployHook",
                    "parameterValues": parameter_values}]
    })
}

/// A call of the API with the admin token: its status and JSON body.
async fn call(
    http: &reqwest::Client,
    server: &Server,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http.request(method, server.url(path)).bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn a_preconfigured_stage_is_listed_saved_and_run(backend: TestBackend) {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create(backend).await.unwrap();
    let (base, calls) = deployer().await;
    let config = config_file(dir.path(), &base);
    let server = Server::start_with(
        dir.path().to_path_buf(),
        db.url.clone(),
        vec!["--config".into(), config],
    );
    let http = reqwest::Client::new();
    server.ready(&http).await;

    let (status, types) = call(&http, &server, Method::GET, "/api/v1/stageTypes", None).await;
    assert_eq!(status, 200);
    let hook = types
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "deployHook")
        .unwrap_or_else(|| panic!("deployHook is not listed: {types}"));
    assert_eq!(hook["origin"], "preconfigured");
    assert_eq!(hook["runnable"], true);
    assert_eq!(hook["label"], "Deploy hook");

    let app = json!({"name": "shop", "email": "t@example.com"});
    let (status, _) = call(
        &http,
        &server,
        Method::POST,
        "/api/v1/applications",
        Some(app),
    )
    .await;
    assert!(status < 300, "{status}");
    let pipelines = "/api/v1/applications/shop/pipelines";
    let (status, refused) = call(
        &http,
        &server,
        Method::POST,
        pipelines,
        Some(pipeline(json!({}))),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    let paths: Vec<&Value> = refused["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["path"])
        .collect();
    assert!(
        paths.contains(&&json!("$.stages[0].parameterValues.service")),
        "{refused}"
    );
    let release = pipeline(json!({"service": "api"}));
    let (status, saved) = call(&http, &server, Method::POST, pipelines, Some(release)).await;
    assert!((200..300).contains(&status), "{status}: {saved}");

    let run = "/api/v1/applications/shop/pipelines/release/executions";
    let (status, execution) = call(&http, &server, Method::POST, run, Some(json!({}))).await;
    assert!((200..300).contains(&status), "{status}: {execution}");
    let id = execution["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let (_, execution) = call(
            &http,
            &server,
            Method::GET,
            &format!("/api/v1/executions/{id}"),
            None,
        )
        .await;
        if !matches!(
            execution["status"].as_str(),
            Some("NOT_STARTED" | "RUNNING")
        ) {
            break execution;
        }
        assert!(
            Instant::now() < deadline,
            "the run did not end: {execution:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done["status"], "SUCCEEDED", "{done:#}\n{}", server.log());
    let calls = calls.lock().unwrap().clone();
    let (method, path, team, body) = &calls[0];
    assert_eq!(
        (method.as_str(), path.as_str()),
        ("POST", "/deploy/staging")
    );
    assert_eq!(team, "shop");
    assert_eq!(
        body,
        &json!({"service": "api", "env": "staging", "execution": id})
    );
    assert!(
        calls[1..]
            .iter()
            .all(|(m, p, _, _)| m == "GET" && p == "/jobs/1")
    );
    assert!(calls.len() >= 2, "{calls:?}");
    drop(server);
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preconfigured_stage_is_listed_saved_and_run_sqlite() {
    a_preconfigured_stage_is_listed_saved_and_run(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preconfigured_stage_is_listed_saved_and_run_postgres() {
    a_preconfigured_stage_is_listed_saved_and_run(TestBackend::Postgres).await;
}

/// `gennaker pipeline validate` on `pipeline`, with these extra flags: success, output.
fn validate(dir: &Path, pipeline: &Value, flags: &[&str]) -> (bool, String) {
    let file = dir.join("pipeline.json");
    std::fs::write(&file, pipeline.to_string()).unwrap();
    let output = Command::new(BIN)
        .args(["pipeline", "validate", "-f"])
        .arg(&file)
        .args(flags)
        .env_remove("GENNAKER_CONFIG")
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), printed)
}

#[test]
fn offline_validation_knows_the_types_of_the_given_server_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), "http://127.0.0.1:9");
    let with_config = ["--server-config", config.as_str()];

    let (ok, printed) = validate(
        dir.path(),
        &pipeline(json!({"service": "api"})),
        &with_config,
    );
    assert!(ok, "{printed}");
    assert!(!printed.contains("unknown stage type"), "{printed}");
    let (ok, printed) = validate(dir.path(), &pipeline(json!({})), &with_config);
    assert!(!ok, "{printed}");
    assert!(
        printed.contains("$.stages[0].parameterValues.service"),
        "{printed}"
    );

    // Without the server's file the type is unknown: a warning, not a failure.
    let (ok, printed) = validate(dir.path(), &pipeline(json!({})), &[]);
    assert!(ok, "{printed}");
    assert!(
        printed.contains("unknown stage type 'deployHook'"),
        "{printed}"
    );
}

#[test]
fn offline_validation_applies_the_server_configs_stage_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gennaker.toml");
    std::fs::write(&config, "[engine]\nmax_pipeline_stages = 3\n").unwrap();
    let stages: Vec<Value> = (1..=4)
        .map(|i| json!({"refId": i.to_string(), "type": "wait", "waitTime": 1}))
        .collect();
    let four = json!({"application": "shop", "name": "four", "stages": stages});
    let config = config.display().to_string();
    let (ok, printed) = validate(dir.path(), &four, &["--server-config", config.as_str()]);
    assert!(!ok, "{printed}");
    assert!(
        printed.contains("the pipeline has 4 stages; a pipeline may have at most 3"),
        "{printed}"
    );
    let (ok, printed) = validate(dir.path(), &four, &[]);
    assert!(ok, "the default limit allows it: {printed}");
}

#[test]
fn a_bad_entry_stops_the_server_with_its_index_and_field() {
    let good = "[[webhooks.preconfigured]]\ntype = \"deployHook\"\nurl = \"https://deployer.example.com\"\n";
    let cases = [
        (
            "[[webhooks.preconfigured]]\ntype = \"webhook\"\nurl = \"https://x.example.com\"\n",
            "webhooks.preconfigured[1].type: 'webhook' is a built-in stage type",
        ),
        (
            "[[webhooks.preconfigured]]\ntype = \"ftpHook\"\nurl = \"ftp://x.example.com\"\n",
            "webhooks.preconfigured[1].url: 'ftp://x.example.com' is not an http:// or https:// URL",
        ),
        (
            "[[webhooks.preconfigured]]\nurl = \"https://x.example.com\"\n",
            "webhooks.preconfigured[1].type: is missing",
        ),
        (
            good,
            "webhooks.preconfigured[1].type: 'deployHook' is already defined by webhooks.preconfigured[0]",
        ),
    ];
    for (entry, expected) in cases {
        let printed = refused_server_start(&format!("{good}\n{entry}"));
        assert!(printed.contains("invalid server settings"), "{printed}");
        assert!(
            printed.contains(expected),
            "expected {expected:?} in:\n{printed}"
        );
    }
}
