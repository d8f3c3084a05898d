//! The `webhook` stage against a real HTTP server on 127.0.0.1, on SQLite and
//! PostgreSQL; and the generic stages under fault injection (every step done twice).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// support/ is shared by several test crates: its items are `pub` for them, not for export.
#![allow(unreachable_pub)]

mod support;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri};
use gennaker_engine::Execution;
use gennaker_engine::ExecutionStatus::*;
use serde_json::{Value, json};
use support::{stage, summary};

/// A request the remote received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Value,
}

impl Seen {
    fn key(&self) -> &str {
        self.headers
            .get("idempotency-key")
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// An answer the remote gives.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    body: Value,
    headers: Vec<(&'static str, String)>,
}

fn answer(status: u16, body: Value) -> Answer {
    Answer {
        status,
        body,
        headers: Vec::new(),
    }
}

#[derive(Default)]
struct RemoteState {
    seen: Vec<Seen>,
    /// `METHOD /path` → answers in turn; the last one repeats.
    script: HashMap<String, VecDeque<Answer>>,
}

/// A scripted HTTP server that records what it receives.
#[derive(Clone)]
struct Remote {
    state: Arc<Mutex<RemoteState>>,
    base: String,
}

impl Remote {
    async fn start() -> Remote {
        let state = Arc::new(Mutex::new(RemoteState::default()));
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Remote { state, base }
    }

    fn on(&self, method: &str, path: &str, answers: Vec<Answer>) {
        let mut state = self.state.lock().unwrap();
        state
            .script
            .insert(format!("{method} {path}"), answers.into());
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn seen(&self, method: &str, path: &str) -> Vec<Seen> {
        let state = self.state.lock().unwrap();
        state
            .seen
            .iter()
            .filter(|s| s.method == method && s.path == path)
            .cloned()
            .collect()
    }

    /// Waits (real time, bounded) until `method path` was requested `count` times.
    async fn wait_for(&self, method: &str, path: &str, count: usize) -> Vec<Seen> {
        let deadline = tokio::time::Instant::now() + support::PATIENCE;
        loop {
            let seen = self.seen(method, path);
            if seen.len() >= count {
                return seen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {count} × {method} {path}; saw {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn serve(
    State(state): State<Arc<Mutex<RemoteState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let mut recorded = HashMap::new();
    for name in headers.keys() {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        recorded.insert(name.as_str().to_owned(), values.join(", "));
    }
    let seen = Seen {
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        headers: recorded,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let key = format!("{} {}", seen.method, seen.path);
    let mut state = state.lock().unwrap();
    state.seen.push(seen);
    let answer = match state.script.get_mut(&key) {
        Some(answers) if answers.len() > 1 => answers.pop_front(),
        Some(answers) => answers.front().cloned(),
        None => None,
    }
    .unwrap_or_else(|| answer(404, json!({"error": format!("nothing scripted for {key}")})));
    let mut response = Response::builder()
        .status(StatusCode::from_u16(answer.status).unwrap())
        .header("content-type", "application/json");
    for (name, value) in &answer.headers {
        response = response.header(*name, value);
    }
    response.body(Body::from(answer.body.to_string())).unwrap()
}

fn webhook(name: &str, fields: Value) -> Value {
    let mut stage = json!({"refId": "1", "name": name, "type": "webhook"});
    for (k, v) in fields.as_object().unwrap() {
        stage[k] = v.clone();
    }
    json!({"stages": [stage]})
}

fn key_of(execution: &Execution, name: &str, restarts: u32) -> String {
    format!("{}:{}:{restarts}", execution.id, stage(execution, name).id)
}

fn error_of(execution: &Execution, name: &str) -> String {
    stage(execution, name).context["exception"]["details"]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in\n{}", summary(execution)))
        .to_owned()
}

engine_test!(
    webhook_sends_method_headers_payload_and_idempotency_key,
    |h| {
        let remote = Remote::start().await;
        remote.on(
            "PUT",
            "/deploy",
            vec![answer(200, json!({"accepted": true}))],
        );
        let execution = h
            .run(
                "hook",
                webhook(
                    "notify",
                    json!({
                        "url": remote.url("/deploy"),
                        "method": "put",
                        "payload": {"service": "shop", "by": "${trigger.user}"},
                        "customHeaders": {"X-Token": "secret-1", "X-Multi": ["a", "b"]},
                    }),
                ),
            )
            .await;
        let done = h.finished(&execution.id).await;
        assert_eq!(done.status, Succeeded, "{}", summary(&done));
        let seen = remote.seen("PUT", "/deploy");
        assert_eq!(seen.len(), 1);
        let request = &seen[0];
        assert_eq!(request.headers["x-token"], "secret-1");
        assert_eq!(request.headers["x-multi"], "a, b");
        assert_eq!(request.headers["content-type"], "application/json");
        assert_eq!(request.key(), key_of(&done, "notify", 0));
        assert_eq!(request.body, json!({"service": "shop", "by": "alice"}));
        let notify = stage(&done, "notify");
        assert_eq!(
            notify.tasks.len(),
            1,
            "no monitor without waitForCompletion"
        );
        assert_eq!(notify.context["webhook"]["statusCode"], 200);
        assert_eq!(notify.context["webhook"]["body"], json!({"accepted": true}));
        assert_eq!(
            notify.context["webhook"]["headers"]["content-type"],
            "application/json"
        );
        assert_eq!(notify.outputs["webhook"], notify.context["webhook"]);
        h.stop().await;
    }
);

engine_test!(
    webhook_retries_503_with_the_same_key_and_a_restart_gets_a_new_one,
    |h| {
        let remote = Remote::start().await;
        remote.on(
            "POST",
            "/flaky",
            vec![
                answer(503, json!({"error": "busy"})),
                answer(201, json!({"ok": true})),
            ],
        );
        let execution = h
            .run(
                "flaky",
                webhook("call", json!({"url": remote.url("/flaky")})),
            )
            .await;
        let retrying = h
            .until(&execution.id, "the 503 to be retried", |e| {
                e.stages[0].tasks.first().is_some_and(|t| t.retries == 1)
            })
            .await;
        let exception = &stage(&retrying, "call").context["exception"];
        assert_eq!(exception["shouldRetry"], true);
        let error = exception["details"]["error"].as_str().unwrap();
        assert!(
            error.contains("answered 503") && error.contains("busy"),
            "{error}"
        );
        h.clock.advance(Duration::from_secs(1));
        let done = h.finished(&execution.id).await;
        assert_eq!(done.status, Succeeded, "{}", summary(&done));
        let seen = remote.seen("POST", "/flaky");
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].key(), key_of(&done, "call", 0));
        assert_eq!(
            seen[1].key(),
            seen[0].key(),
            "a repeated run sends the same key"
        );
        assert_eq!(stage(&done, "call").context["webhook"]["statusCode"], 201);

        // A user's restart is a new attempt: a new key.
        let call = stage(&done, "call").id.clone();
        h.engine
            .restart_stage(&execution.id, &call, "bob")
            .await
            .unwrap();
        let again = h
            .until(&execution.id, "the restarted stage to succeed", |e| {
                e.stages[0].restarts == 1 && e.status == Succeeded
            })
            .await;
        let seen = remote.seen("POST", "/flaky");
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[2].key(), key_of(&again, "call", 1));
        h.stop().await;
    }
);

engine_test!(webhook_fails_on_400_without_retrying, |h| {
    let remote = Remote::start().await;
    remote.on(
        "POST",
        "/strict",
        vec![answer(400, json!({"message": "bad payload"}))],
    );
    let execution = h
        .run(
            "strict",
            webhook(
                "call",
                json!({"url": remote.url("/strict"), "payload": {"x": 1}}),
            ),
        )
        .await;
    let done = h.finished(&execution.id).await;
    assert_eq!(done.status, Terminal, "{}", summary(&done));
    assert_eq!(remote.seen("POST", "/strict").len(), 1);
    let error = error_of(&done, "call");
    assert!(
        error.starts_with(&format!(
            "webhook POST {} answered 400: ",
            remote.url("/strict")
        )) && error.contains("bad payload")
            && error.contains("check the url, method, payload and customHeaders"),
        "{error}"
    );
    let call = stage(&done, "call");
    assert_eq!(call.context["webhook"]["statusCode"], 400);
    assert_eq!(call.context["webhook"]["error"], json!(error));
    h.stop().await;
});

engine_test!(webhook_connection_errors_are_retried_then_given_up, |h| {
    // A port nothing listens on: bind one, then free it.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let execution = h
        .run("unreachable", webhook("call", json!({"url": url})))
        .await;
    let retrying = h
        .until(&execution.id, "the first retry", |e| {
            e.stages[0].tasks.first().is_some_and(|t| t.retries == 1)
        })
        .await;
    let error = stage(&retrying, "call").context["exception"]["details"]["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.starts_with(&format!("webhook POST {url} failed: "))
            && error.to_lowercase().contains("refused")
            && error.ends_with("; retrying"),
        "the cause is spelled out: {error}"
    );
    for _ in 0..12 {
        h.clock.advance(Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = h.finished(&execution.id).await;
    assert_eq!(done.status, Terminal, "{}", summary(&done));
    assert!(error_of(&done, "call").contains("gave up after 8 retries"));
    h.stop().await;
});

engine_test!(webhook_monitors_its_own_url_until_success, |h| {
    let remote = Remote::start().await;
    remote.on(
        "POST",
        "/build",
        vec![answer(202, json!({"status": "QUEUED"}))],
    );
    remote.on(
        "GET",
        "/build",
        vec![
            answer(200, json!({"status": "RUNNING", "msg": "compiling"})),
            answer(200, json!({"status": "success", "msg": "done"})),
        ],
    );
    let execution = h
        .run(
            "build",
            webhook(
                "build",
                json!({
                    "url": remote.url("/build"),
                    "waitForCompletion": true,
                    "statusUrlResolution": "getMethod",
                    "statusJsonPath": "$.status",
                    "progressJsonPath": "msg",
                    "successStatuses": "SUCCESS",
                    "terminalStatuses": "FAILED",
                }),
            ),
        )
        .await;
    let polling = h
        .until(&execution.id, "the first poll", |e| {
            e.stages[0].context.get("webhook").unwrap_or(&Value::Null)["monitor"]["status"]
                == "RUNNING"
        })
        .await;
    assert_eq!(
        stage(&polling, "build").context["webhook"]["monitor"]["progressMessage"],
        "compiling"
    );
    h.clock.advance(Duration::from_secs(1));
    let done = h.finished(&execution.id).await;
    assert_eq!(done.status, Succeeded, "{}", summary(&done));
    let build = stage(&done, "build");
    assert_eq!(build.context["statusEndpoint"], json!(remote.url("/build")));
    assert_eq!(
        build.context["webhook"]["statusEndpoint"],
        json!(remote.url("/build"))
    );
    let monitor = &build.context["webhook"]["monitor"];
    assert_eq!(monitor["status"], "SUCCESS", "compared upper-cased");
    assert_eq!(monitor["progressMessage"], "done");
    assert_eq!(monitor["statusCode"], 200);
    assert_eq!(
        build.context["webhook"]["statusCode"], 202,
        "the create response stays"
    );
    let polls = remote.seen("GET", "/build");
    assert_eq!(polls.len(), 2);
    let key = key_of(&done, "build", 0);
    assert!(polls.iter().all(|p| p.key() == key));
    assert_eq!(remote.seen("POST", "/build")[0].key(), key);
    h.stop().await;
});

engine_test!(webhook_waits_before_monitoring, |h| {
    let remote = Remote::start().await;
    remote.on("POST", "/deploy", vec![answer(200, json!({}))]);
    remote.on(
        "GET",
        "/deploy",
        vec![answer(200, json!({"status": "SUCCESS"}))],
    );
    let execution = h
        .run(
            "wait-first",
            webhook(
                "deploy",
                json!({"url": remote.url("/deploy"), "waitForCompletion": true, "waitBeforeMonitor": "30",
                       "statusJsonPath": "$.status", "successStatuses": "SUCCESS"}),
            ),
        )
        .await;
    remote.wait_for("POST", "/deploy", 1).await;
    h.clock.advance(Duration::from_secs(29));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        remote.seen("GET", "/deploy").is_empty(),
        "29 s of 30: no poll yet"
    );
    h.clock.advance(Duration::from_secs(1));
    let done = h.finished(&execution.id).await;
    assert_eq!(done.status, Succeeded, "{}", summary(&done));
    assert_eq!(remote.seen("GET", "/deploy").len(), 1);
    h.stop().await;
});

engine_test!(webhook_polls_the_location_header, |h| {
    let remote = Remote::start().await;
    remote.on(
        "POST",
        "/jobs",
        vec![Answer {
            status: 201,
            body: json!({}),
            headers: vec![("location", "/jobs/7".into())],
        }],
    );
    remote.on(
        "GET",
        "/jobs/7",
        vec![answer(200, json!({"state": "done"}))],
    );
    let execution = h
        .run(
            "jobs",
            webhook(
                "job",
                json!({
                    "url": remote.url("/jobs"),
                    "waitForCompletion": true,
                    "statusUrlResolution": "locationHeader",
                    "statusJsonPath": "state",
                    "successStatuses": "DONE, FINISHED",
                }),
            ),
        )
        .await;
    let done = h.finished(&execution.id).await;
    assert_eq!(done.status, Succeeded, "{}", summary(&done));
    assert_eq!(
        stage(&done, "job").context["statusEndpoint"],
        json!(remote.url("/jobs/7"))
    );
    assert_eq!(remote.seen("GET", "/jobs/7").len(), 1);
    h.stop().await;
});

engine_test!(webhook_terminal_and_canceled_statuses_end_the_stage, |h| {
    let remote = Remote::start().await;
    // webhookResponse: the status URL is in the response.
    remote.on(
        "POST",
        "/a",
        vec![answer(
            200,
            json!({"links": {"status": remote.url("/a/status")}}),
        )],
    );
    remote.on(
        "GET",
        "/a/status",
        vec![answer(200, json!({"status": "failed"}))],
    );
    remote.on("POST", "/b", vec![answer(200, json!({}))]);
    remote.on("GET", "/b", vec![answer(200, json!({"status": "ABORTED"}))]);
    let common = json!({
        "waitForCompletion": true,
        "statusJsonPath": "$.status",
        "successStatuses": "SUCCESS",
        "canceledStatuses": "ABORTED",
        "terminalStatuses": "FAILED, ERROR",
    });
    let mut a = common.clone();
    a["url"] = json!(remote.url("/a"));
    a["statusUrlResolution"] = json!("webhookResponse");
    a["statusUrlJsonPath"] = json!("$.links.status");
    let mut b = common;
    b["url"] = json!(remote.url("/b"));
    let failed = h.run("a", webhook("job", a)).await;
    let canceled = h.run("b", webhook("job", b)).await;

    let failed = h.finished(&failed.id).await;
    assert_eq!(failed.status, Terminal, "{}", summary(&failed));
    let error = error_of(&failed, "job");
    assert_eq!(
        error,
        format!(
            "the remote job at {} reported 'FAILED', one of terminalStatuses (FAILED, ERROR)",
            remote.url("/a/status")
        )
    );
    let canceled = h.finished(&canceled.id).await;
    assert_eq!(
        stage(&canceled, "job").status,
        Canceled,
        "{}",
        summary(&canceled)
    );
    assert_eq!(canceled.status, Canceled);
    assert!(error_of(&canceled, "job").contains("one of canceledStatuses (ABORTED)"));
    h.stop().await;
});

engine_test!(webhook_monitoring_times_out_after_an_hour, |h| {
    let remote = Remote::start().await;
    remote.on("POST", "/slow", vec![answer(202, json!({}))]);
    remote.on(
        "GET",
        "/slow",
        vec![answer(200, json!({"status": "RUNNING"}))],
    );
    let execution = h
        .run(
            "slow",
            webhook(
                "job",
                json!({"url": remote.url("/slow"), "waitForCompletion": true,
                       "statusJsonPath": "$.status", "successStatuses": "SUCCESS"}),
            ),
        )
        .await;
    remote.wait_for("GET", "/slow", 1).await;
    h.clock.advance(Duration::from_secs(59 * 60));
    remote.wait_for("GET", "/slow", 2).await;
    let still = h.engine.execution(&execution.id).await.unwrap().unwrap();
    assert_eq!(still.status, Running, "59 minutes are not an hour");
    h.clock.advance(Duration::from_secs(2 * 60));
    let done = h.finished(&execution.id).await;
    assert_eq!(done.status, Terminal, "{}", summary(&done));
    let error = error_of(&done, "job");
    assert!(
        error.contains("task 'monitorWebhook' of stage 'job' timed out"),
        "{error}"
    );
    h.stop().await;
});

/// A cancellable remote job: `POST /jobs` starts job 42, `GET /jobs` reports it
/// running, `POST /jobs/42/cancel` stops it.
fn cancellable_job(remote: &Remote) -> Value {
    remote.on("POST", "/jobs", vec![answer(202, json!({"id": 42}))]);
    remote.on(
        "GET",
        "/jobs",
        vec![answer(200, json!({"status": "RUNNING"}))],
    );
    remote.on(
        "POST",
        "/jobs/42/cancel",
        vec![answer(200, json!({"canceled": true}))],
    );
    webhook(
        "job",
        json!({
            "url": remote.url("/jobs"),
            "waitForCompletion": true,
            "statusJsonPath": "$.status",
            "successStatuses": "SUCCESS",
            "cancelEndpoint": format!("{}/jobs/${{webhook.body.id}}/cancel", remote.base),
            "cancelPayload": {"by": "${execution.canceledBy}"},
        }),
    )
}

engine_test!(cancelling_the_execution_calls_the_cancel_endpoint, |h| {
    let remote = Remote::start().await;
    let execution = h.run("cancel", cancellable_job(&remote)).await;
    h.until(&execution.id, "the job to be monitored", |e| {
        e.stages[0].context.get("webhook").unwrap_or(&Value::Null)["monitor"]["status"] == "RUNNING"
    })
    .await;
    h.engine
        .cancel(&execution.id, "bob", Some("wrong build".into()))
        .await
        .unwrap();
    let seen = remote.wait_for("POST", "/jobs/42/cancel", 1).await;
    let done = h
        .until(&execution.id, "the cancel call to be recorded", |e| {
            e.stages[0].context.get("webhook").unwrap_or(&Value::Null)["cancel"]["statusCode"]
                == 200
        })
        .await;
    assert_eq!(done.status, Canceled);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, json!({"by": "bob"}));
    assert_eq!(seen[0].key(), format!("{}:cancel", key_of(&done, "job", 0)));
    assert_eq!(
        stage(&done, "job").context["webhook"]["cancel"]["body"],
        json!({"canceled": true})
    );
    h.stop().await;
});

/// Orca cancels a stage that fails (CompleteStageHandler pushes CancelStage for every
/// halting status), so a webhook whose monitoring times out stops its remote job.
mod a_failed_webhook_stage_calls_its_cancel_endpoint {
    use super::*;

    async fn run(h: support::Harness) {
        let remote = Remote::start().await;
        let execution = h.run("timeout-cancel", cancellable_job(&remote)).await;
        remote.wait_for("GET", "/jobs", 1).await;
        h.clock.advance(Duration::from_secs(2 * 3600));
        let done = h.finished(&execution.id).await;
        assert_eq!(done.status, Terminal);
        remote.wait_for("POST", "/jobs/42/cancel", 1).await;
        h.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        run(support::Harness::new(gennaker_store::testing::TestBackend::Sqlite).await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        run(support::Harness::new(gennaker_store::testing::TestBackend::Postgres).await).await;
    }
}

// ----- under fault injection -----

/// Every step of a pipeline with the three generic stages is done twice: the webhook
/// is called again with the same key, exactly one child pipeline is started, and the
/// outcome is that of an undisturbed run.
async fn generic_stages_survive_repeated_steps(backend: gennaker_store::testing::TestBackend) {
    use gennaker_engine::{Engine, EngineConfig, ManualClock, RunRequest, StageRegistry};
    use gennaker_store::{ExecutionQuery, ExecutionStore, PipelineSave, Store};

    let remote = Remote::start().await;
    remote.on("POST", "/jobs", vec![answer(202, json!({"id": 42}))]);
    remote.on(
        "GET",
        "/jobs",
        vec![
            answer(200, json!({"status": "RUNNING"})),
            answer(200, json!({"status": "SUCCESS"})),
        ],
    );
    let (db, sql) = gennaker_store::testing::TestDatabase::store(backend)
        .await
        .unwrap();
    sql.create_application("shop", &json!({"name": "shop"}), "t")
        .await
        .unwrap();
    let save = |name: &str, config: Value| PipelineSave {
        id: None,
        name: name.into(),
        config,
    };
    sql.save_pipeline(
        "shop",
        &save("child", json!({"stages": [{"refId": "1", "name": "work", "type": "test", "outcome": "poll:1"}]})),
        "t",
    )
    .await
    .unwrap();
    let (parent, _) = sql
        .save_pipeline(
            "shop",
            &save(
                "parent",
                json!({"stages": [
                    {"refId": "1", "name": "check", "type": "checkPreconditions",
                     "preconditions": [{"type": "expression", "context": {"expression": "trigger.user == 'alice'"}}]},
                    {"refId": "2", "name": "job", "type": "webhook", "requisiteStageRefIds": ["1"],
                     "url": remote.url("/jobs"), "waitForCompletion": true,
                     "statusJsonPath": "$.status", "successStatuses": "SUCCESS"},
                    {"refId": "3", "name": "child", "type": "pipeline", "pipeline": "child", "requisiteStageRefIds": ["1"]},
                ]}),
            ),
            "t",
        )
        .await
        .unwrap();
    let mut config = parent.config.clone();
    config["id"] = json!(parent.id);
    let store = Arc::new(gennaker_store::testing::FaultyExecutions::new(
        sql.clone(),
        true,
    ));
    let clock = ManualClock::new(1_700_000_000_000);
    let calls = Arc::new(support::Calls::default());
    let engine = Engine::new(
        Arc::new(sql.clone()),
        store.clone(),
        support::registry_with_test_stage(StageRegistry::standard(), calls),
        Arc::new(clock.clone()),
        EngineConfig {
            workers: 3,
            idle_recheck: Duration::from_millis(50),
            ..EngineConfig::default()
        },
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut workers = engine.start(None, shutdown.clone()).await.unwrap();
    let execution = engine
        .run_pipeline(
            "shop",
            &config,
            &RunRequest::default(),
            &support::requester(),
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    let done = loop {
        let current = engine.execution(&execution.id).await.unwrap().unwrap();
        if current.status.is_complete() {
            break current;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "did not finish:\n{}",
            summary(&current)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        clock.advance(Duration::from_millis(500));
    };
    shutdown.cancel();
    while workers.join_next().await.is_some() {}
    assert_eq!(done.status, Succeeded, "{}", summary(&done));
    assert!(
        store.repeated.load(std::sync::atomic::Ordering::SeqCst) > 5,
        "steps were repeated"
    );

    let calls = remote.seen("POST", "/jobs");
    assert!(calls.len() >= 2, "the create step was repeated: {calls:?}");
    let key = key_of(&done, "job", 0);
    assert!(
        calls.iter().all(|c| c.key() == key),
        "one key for every attempt: {calls:?}"
    );
    assert!(remote.seen("GET", "/jobs").iter().all(|c| c.key() == key));

    let all = sql
        .list_executions(&ExecutionQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 2, "the parent and ONE child");
    let child_id = stage(&done, "child").context["executionId"]
        .as_str()
        .unwrap();
    assert!(
        all.iter()
            .any(|row| row.id == child_id && row.status == Succeeded)
    );
    assert_eq!(stage(&done, "check").status, Succeeded);
    sql.close().await;
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_stages_survive_repeated_steps_sqlite() {
    generic_stages_survive_repeated_steps(gennaker_store::testing::TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_stages_survive_repeated_steps_postgres() {
    generic_stages_survive_repeated_steps(gennaker_store::testing::TestBackend::Postgres).await;
}
