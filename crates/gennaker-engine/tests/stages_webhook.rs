//! The `webhook` stage against a real HTTP server on 127.0.0.1, on SQLite and
//! PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod remote;

use std::time::Duration;

use gennaker_engine::ExecutionStatus::*;
use gennaker_engine::testing::{loopback, stage, summary};
use gennaker_engine::{Execution, engine_test};
use remote::{Answer, Remote, answer, key_of};
use serde_json::{Value, json};

fn webhook(name: &str, fields: Value) -> Value {
    let mut stage = json!({"refId": "1", "name": name, "type": "webhook"});
    for (k, v) in fields.as_object().unwrap() {
        stage[k] = v.clone();
    }
    json!({"stages": [stage]})
}

fn error_of(execution: &Execution, name: &str) -> String {
    stage(execution, name).context["exception"]["details"]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in\n{}", summary(execution)))
        .to_owned()
}

engine_test!(
    webhook_sends_method_headers_payload_and_idempotency_key,
    outbound = loopback(),
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
    outbound = loopback(),
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

engine_test!(
    webhook_fails_on_400_without_retrying,
    outbound = loopback(),
    |h| {
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
    }
);

engine_test!(
    webhook_connection_errors_are_retried_then_given_up,
    outbound = loopback(),
    |h| {
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
    }
);

engine_test!(
    webhook_monitors_its_own_url_until_success,
    outbound = loopback(),
    |h| {
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
    }
);

engine_test!(
    webhook_waits_before_monitoring,
    outbound = loopback(),
    |h| {
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
    }
);

engine_test!(
    webhook_polls_the_location_header,
    outbound = loopback(),
    |h| {
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
    }
);

engine_test!(
    webhook_terminal_and_canceled_statuses_end_the_stage,
    outbound = loopback(),
    |h| {
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
    }
);

engine_test!(
    webhook_monitoring_times_out_after_an_hour,
    outbound = loopback(),
    |h| {
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
    }
);

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

engine_test!(
    cancelling_the_execution_calls_the_cancel_endpoint,
    outbound = loopback(),
    |h| {
        let remote = Remote::start().await;
        let execution = h.run("cancel", cancellable_job(&remote)).await;
        h.until(&execution.id, "the job to be monitored", |e| {
            e.stages[0].context.get("webhook").unwrap_or(&Value::Null)["monitor"]["status"]
                == "RUNNING"
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
    }
);

engine_test!(
    /// Orca cancels a stage that fails (CompleteStageHandler pushes CancelStage for every
    /// halting status), so a webhook whose monitoring times out stops its remote job.
    a_failed_webhook_stage_calls_its_cancel_endpoint,
    outbound = loopback(),
    |h| {
        let remote = Remote::start().await;
        let execution = h.run("timeout-cancel", cancellable_job(&remote)).await;
        remote.wait_for("GET", "/jobs", 1).await;
        h.clock.advance(Duration::from_secs(2 * 3600));
        let done = h.finished(&execution.id).await;
        assert_eq!(done.status, Terminal);
        remote.wait_for("POST", "/jobs/42/cancel", 1).await;
        h.stop().await;
    }
);

engine_test!(webhooks_to_this_machine_are_refused_by_default, |h| {
    let remote = Remote::start().await;
    remote.on("POST", "/hook", vec![answer(200, json!({"secret": 1}))]);
    let port = remote.base.rsplit(':').next().unwrap().to_owned();
    let direct = remote.url("/hook");
    let cases = [
        (
            direct.clone(),
            format!(
                "webhook url {direct} resolves to 127.0.0.1, a loopback address, which outbound requests may not reach; an operator can allow it with [outbound] allow = [\"127.0.0.1/32\"] in gennaker.toml"
            ),
        ),
        // A name that resolves to this machine: refused after resolution.
        (
            format!("http://localhost:{port}/hook"),
            "localhost resolves to".to_owned(),
        ),
        (
            format!("http://0.0.0.0:{port}/hook"),
            format!(
                "webhook url http://0.0.0.0:{port}/hook resolves to 0.0.0.0, an unspecified address (it reaches this machine)"
            ),
        ),
    ];
    for (url, expected) in cases {
        let execution = h.run("ssrf", webhook("call", json!({"url": url}))).await;
        let done = h.finished(&execution.id).await;
        assert_eq!(done.status, Terminal, "{}", summary(&done));
        let error = error_of(&done, "call");
        assert!(error.contains(&expected), "{url}: {error}");
        assert!(error.contains("[outbound] allow = ["), "{error}");
        assert_eq!(
            stage(&done, "call").tasks[0].retries,
            0,
            "a refusal is not retried"
        );
    }
    assert!(
        remote.seen("POST", "/hook").is_empty(),
        "nothing reached the server"
    );
    h.stop().await;
});

engine_test!(
    a_redirect_to_a_refused_address_is_not_followed,
    outbound = gennaker_outbound::OutboundPolicy::allowing(&["localhost"]).unwrap(),
    |h| {
        let remote = Remote::start().await;
        let port = remote.base.rsplit(':').next().unwrap().to_owned();
        let target = remote.url("/inside");
        let mut hop = answer(307, json!({}));
        hop.headers.push(("location", target.clone()));
        remote.on("POST", "/hop", vec![hop]);
        remote.on("POST", "/inside", vec![answer(200, json!({"secret": 1}))]);
        let url = format!("http://localhost:{port}/hop");
        let execution = h.run("hop", webhook("call", json!({"url": url}))).await;
        let done = h.finished(&execution.id).await;
        assert_eq!(done.status, Terminal, "{}", summary(&done));
        let error = error_of(&done, "call");
        assert!(
            error.contains(&format!(
                "was redirected somewhere outbound requests may not go: {target} resolves to 127.0.0.1, a loopback address"
            )),
            "{error}"
        );
        assert_eq!(remote.seen("POST", "/hop").len(), 1);
        assert!(remote.seen("POST", "/inside").is_empty());
        h.stop().await;
    }
);

engine_test!(
    a_huge_response_is_stored_cut_at_the_cap_and_marked,
    outbound = loopback(),
    |h| {
        let remote = Remote::start().await;
        let huge = "x".repeat(10 * 1024 * 1024);
        remote.on("POST", "/huge", vec![answer(200, json!(huge))]);
        let execution = h
            .run("huge", webhook("call", json!({"url": remote.url("/huge")})))
            .await;
        let done = h.finished(&execution.id).await;
        assert_eq!(done.status, Succeeded, "{}", summary(&done));
        let record = &stage(&done, "call").context["webhook"];
        assert_eq!(record["truncated"], true);
        let body = record["body"].as_str().unwrap();
        let suffix = "… (truncated at 1048576 bytes)";
        assert!(body.ends_with(suffix), "{}", &body[body.len() - 60..]);
        assert_eq!(body.len() - suffix.len(), 1 << 20);
        h.stop().await;
    }
);

engine_test!(
    a_status_url_to_a_refused_address_fails_the_monitor,
    outbound = loopback(),
    |h| {
        let remote = Remote::start().await;
        let metadata = "http://169.254.169.254/latest/meta-data/";
        remote.on("POST", "/job", vec![answer(202, json!({"poll": metadata}))]);
        let execution = h
            .run(
                "status",
                webhook(
                    "call",
                    json!({
                        "url": remote.url("/job"),
                        "waitForCompletion": true,
                        "statusUrlResolution": "webhookResponse",
                        "statusUrlJsonPath": "$.poll",
                        "statusJsonPath": "$.state",
                        "successStatuses": "DONE",
                    }),
                ),
            )
            .await;
        let done = h.finished(&execution.id).await;
        assert_eq!(done.status, Terminal, "{}", summary(&done));
        let error = error_of(&done, "call");
        assert!(
            error.starts_with(&format!(
                "webhook statusEndpoint {metadata} resolves to 169.254.169.254, the cloud metadata service's link-local address"
            )),
            "{error}"
        );
        h.stop().await;
    }
);
