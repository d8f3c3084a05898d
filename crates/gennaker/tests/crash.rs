//! Crash safety end to end: the real server runs many executions — waits, webhooks to a
//! local HTTP server, parallel branches, judgments — and is killed with SIGKILL at
//! random moments, then restarted on the same database. Every execution must end as an
//! undisturbed run does, and every webhook side effect must carry one idempotency key
//! per stage execution (repeats after a crash reuse it). On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use gennaker_store::testing::{TestBackend, TestDatabase};
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

mod support;

use support::{Server, TOKEN};

/// Executions started before the kills begin.
const EXECUTIONS: usize = 20;
/// SIGKILLs per run (bounded, as the whole test must stay short).
const KILLS: usize = 8;
/// Real-time bound for everything to finish after the last restart.
const PATIENCE: Duration = Duration::from_secs(120);

/// Webhook calls received: idempotency key → bodies.
type Calls = Arc<Mutex<BTreeMap<String, Vec<Value>>>>;

async fn webhook_receiver() -> (String, Calls) {
    let calls: Calls = Arc::default();
    async fn hook(State(calls): State<Calls>, headers: HeaderMap, body: String) -> &'static str {
        let key = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("<missing>")
            .to_owned();
        let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
        calls.lock().unwrap().entry(key).or_default().push(body);
        r#"{"status": "SUCCESS"}"#
    }
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(calls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}

fn pipeline(hook: &str) -> Value {
    json!({
        "name": "release", "application": "crash",
        "stages": [
            {"refId": "1", "name": "vars", "type": "evaluateVariables",
             "variables": [{"key": "target", "value": "${trigger.user}-eu"}]},
            {"refId": "2", "name": "notify", "type": "webhook", "requisiteStageRefIds": ["1"],
             "url": hook, "method": "POST", "payload": {"execution": "${execution.id}", "target": "${target}"}},
            {"refId": "3", "name": "soak", "type": "wait", "waitTime": 1, "requisiteStageRefIds": ["1"]},
            {"refId": "4", "name": "approve", "type": "manualJudgment", "requisiteStageRefIds": ["2", "3"],
             "judgmentInputs": [{"value": "ship"}]},
            {"refId": "5", "name": "after", "type": "evaluateVariables", "requisiteStageRefIds": ["4"],
             "variables": [{"key": "choice", "value": "${#judgment('approve')}"}]}
        ]
    })
}

struct Api {
    http: reqwest::Client,
}

impl Api {
    async fn call(
        &self,
        server: &Server,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut request = self
            .http
            .request(method, server.url(path))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
        } else {
            Err(format!("{status}: {text}"))
        }
    }

    async fn execution(&self, server: &Server, id: &str) -> Option<Value> {
        self.call(
            server,
            reqwest::Method::GET,
            &format!("/api/v1/executions/{id}"),
            None,
        )
        .await
        .ok()
    }

    /// Judges every judgment stage waiting in `execution`; refusals (already judged,
    /// server down) are fine: the loop comes back.
    async fn judge_waiting(&self, server: &Server, execution: &Value) {
        let id = execution["id"].as_str().unwrap_or_default();
        for stage in execution["stages"].as_array().into_iter().flatten() {
            if stage["type"] == "manualJudgment"
                && stage["status"] == "RUNNING"
                && stage["context"]["judgmentStatus"].is_null()
            {
                let path = format!(
                    "/api/v1/executions/{id}/stages/{}/judgment",
                    stage["id"].as_str().unwrap_or_default()
                );
                let _ = self
                    .call(
                        server,
                        reqwest::Method::POST,
                        &path,
                        Some(json!({"judgmentStatus": "continue", "judgmentInput": "ship"})),
                    )
                    .await;
            }
        }
    }
}

/// What must be equal between an undisturbed and a disturbed run.
fn outcome(execution: &Value) -> Value {
    let stages: BTreeMap<String, Value> = execution["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let mut outputs = s["outputs"].clone();
            if let Some(map) = outputs.as_object_mut() {
                // The webhook's response headers carry a date.
                map.remove("webhook");
            }
            (
                s["name"].as_str().unwrap_or_default().to_owned(),
                json!({"status": s["status"], "outputs": outputs}),
            )
        })
        .collect();
    json!({"status": execution["status"], "stages": stages})
}

async fn run_crash_test(backend: TestBackend) {
    let seed: u64 = rand::random();
    println!("crash test seed: {seed} (set GENNAKER_CRASH_SEED to replay)");
    let seed = std::env::var("GENNAKER_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(seed);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let data_dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create(backend).await.unwrap();
    let (hook, calls) = webhook_receiver().await;
    let api = Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
    };
    let mut server = Server::start_loopback(data_dir.path().to_path_buf(), db.url.clone());
    server.ready(&api.http).await;
    api.call(
        &server,
        reqwest::Method::POST,
        "/api/v1/applications",
        Some(json!({"name": "crash", "email": "t@example.com"})),
    )
    .await
    .unwrap();
    api.call(
        &server,
        reqwest::Method::POST,
        "/api/v1/applications/crash/pipelines",
        Some(pipeline(&hook)),
    )
    .await
    .unwrap();
    // The undisturbed reference.
    let reference_id = start(&api, &server).await;
    let reference = finish(&api, &server, std::slice::from_ref(&reference_id))
        .await
        .remove(&reference_id)
        .unwrap();
    assert_eq!(reference["status"], "SUCCEEDED", "{reference:#}");

    let mut ids = Vec::new();
    for _ in 0..EXECUTIONS {
        ids.push(start(&api, &server).await);
    }
    for kill in 0..KILLS {
        let until = Instant::now() + Duration::from_millis(rng.random_range(100..900));
        while Instant::now() < until {
            for id in &ids {
                if let Some(execution) = api.execution(&server, id).await {
                    api.judge_waiting(&server, &execution).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.kill();
        println!("kill {kill} done");
        server.spawn();
        server.ready(&api.http).await;
    }
    let finished = finish(&api, &server, &ids).await;
    for (id, execution) in &finished {
        assert_eq!(
            outcome(execution),
            outcome(&reference),
            "execution {id} differs from the undisturbed run:\n{execution:#}\nlog:\n{}",
            server.log()
        );
    }
    // One idempotency key per webhook stage execution, and repeats identical.
    let calls = calls.lock().unwrap().clone();
    assert_eq!(
        calls.len(),
        EXECUTIONS + 1,
        "distinct idempotency keys: {:?}",
        calls.keys().collect::<Vec<_>>()
    );
    let mut per_execution: HashMap<String, usize> = HashMap::new();
    for (key, bodies) in &calls {
        assert!(
            bodies.windows(2).all(|w| w[0] == w[1]),
            "repeats of {key} differ: {bodies:?}"
        );
        let execution = bodies[0]["execution"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(key.starts_with(&execution), "key {key} names its execution");
        *per_execution.entry(execution).or_default() += 1;
    }
    assert!(per_execution.values().all(|n| *n == 1));
    drop(server);
    drop(db);
}

/// Starts an execution of the test pipeline.
async fn start(api: &Api, server: &Server) -> String {
    let path = "/api/v1/applications/crash/pipelines/release/executions";
    let execution = api
        .call(server, reqwest::Method::POST, path, Some(json!({})))
        .await
        .unwrap();
    execution["id"].as_str().unwrap().to_owned()
}

/// Judges and waits until every execution has ended (bounded).
async fn finish(api: &Api, server: &Server, ids: &[String]) -> HashMap<String, Value> {
    let deadline = Instant::now() + PATIENCE;
    let mut done = HashMap::new();
    while done.len() < ids.len() {
        assert!(
            Instant::now() < deadline,
            "executions did not finish; log:\n{}",
            server.log()
        );
        for id in ids {
            if done.contains_key(id) {
                continue;
            }
            let Some(execution) = api.execution(server, id).await else {
                continue;
            };
            let status = execution["status"].as_str().unwrap_or_default();
            if matches!(
                status,
                "SUCCEEDED" | "TERMINAL" | "CANCELED" | "STOPPED" | "FAILED_CONTINUE"
            ) {
                done.insert(id.clone(), execution);
            } else {
                api.judge_waiting(server, &execution).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_sqlite() {
    run_crash_test(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_postgres() {
    run_crash_test(TestBackend::Postgres).await;
}
