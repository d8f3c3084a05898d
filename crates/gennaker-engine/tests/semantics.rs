//! Spinnaker's execution semantics, each proven on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use gennaker_engine::ExecutionStatus::{self, *};
use gennaker_engine::engine_test;
use gennaker_engine::testing::{stage, status_of, summary};
use serde_json::json;

fn s(ref_id: &str, name: &str, requisites: &[&str], extra: serde_json::Value) -> serde_json::Value {
    let mut stage =
        json!({"refId": ref_id, "name": name, "type": "test", "requisiteStageRefIds": requisites});
    if let Some(extra) = extra.as_object() {
        for (k, v) in extra {
            stage[k] = v.clone();
        }
    }
    stage
}

engine_test!(dag_runs_in_order_with_parallel_branches_and_a_join, |h| {
    // 1 → (2, 3) → 4
    let execution = h
        .run(
            "dag",
            json!({"stages": [
                s("1", "first", &[], json!({})),
                s("2", "left", &["1"], json!({})),
                s("3", "right", &["1"], json!({})),
                s("4", "join", &["2", "3"], json!({})),
            ]}),
        )
        .await;
    let done = h.finished(&execution.id).await;
    assert_eq!(done.status, Succeeded, "{}", summary(&done));
    let start = |n: &str| stage(&done, n).start_time.unwrap();
    let end = |n: &str| stage(&done, n).end_time.unwrap();
    assert!(start("left") >= end("first") && start("right") >= end("first"));
    assert!(start("join") >= end("left").max(end("right")));
    // Outputs of every ancestor are visible downstream.
    assert!(h.queue_is_empty().await);
    h.stop().await;
});

engine_test!(stage_enabled_false_skips_and_the_pipeline_goes_on, |h| {
    let execution = h
        .run(
            "skip",
            json!({"stages": [
                s("1", "maybe", &[], json!({"stageEnabled": {"type": "expression", "expression": "parameters.env == 'prod'"}})),
                s("2", "after", &["1"], json!({})),
            ], "parameterConfig": [{"name": "env", "default": "staging"}]}),
        )
        .await;
    let done = h.finished(&execution.id).await;
    assert_eq!(done.status, Succeeded);
    assert_eq!(status_of(&done, "maybe"), Skipped);
    assert_eq!(status_of(&done, "after"), Succeeded);
    assert!(
        stage(&done, "maybe").tasks.is_empty(),
        "a skipped stage runs no task"
    );
    h.stop().await;
});

engine_test!(
    fail_pipeline_false_is_failed_continue_and_the_pipeline_goes_on,
    |h| {
        let execution = h
        .run(
            "soft-fail",
            json!({"stages": [
                s("1", "flaky", &[], json!({"outcome": "fail", "failPipeline": false, "continuePipeline": true})),
                s("2", "after", &["1"], json!({})),
            ]}),
        )
        .await;
        let done = h.finished(&execution.id).await;
        assert_eq!(status_of(&done, "flaky"), FailedContinue);
        assert_eq!(status_of(&done, "after"), Succeeded);
        assert_eq!(done.status, Succeeded);
        h.stop().await;
    }
);

engine_test!(
    a_terminal_stage_fails_the_pipeline_and_cancels_other_branches,
    |h| {
        let execution = h
            .run(
                "hard-fail",
                json!({"stages": [
                    s("1", "breaks", &[], json!({"outcome": "fail"})),
                    s("2", "slow", &[], json!({"outcome": "forever"})),
                    s("3", "never", &["1"], json!({})),
                ]}),
            )
            .await;
        let done = h.finished(&execution.id).await;
        assert_eq!(done.status, Terminal, "{}", summary(&done));
        assert_eq!(status_of(&done, "breaks"), Terminal);
        assert_eq!(status_of(&done, "slow"), Canceled);
        assert_eq!(status_of(&done, "never"), NotStarted);
        let error = &stage(&done, "breaks").context["exception"]["details"]["error"];
        assert_eq!(error, "told to fail");
        h.stop().await;
    }
);

engine_test!(
    fail_pipeline_false_without_continue_stops_only_its_branch,
    |h| {
        let execution = h
            .run(
                "stop-branch",
                json!({"stages": [
                    s("1", "stops", &[], json!({"outcome": "fail", "failPipeline": false})),
                    s("2", "blocked", &["1"], json!({})),
                    s("3", "other", &[], json!({"outcome": "poll:1"})),
                ]}),
            )
            .await;
        h.stage_is(&execution.id, "stops", Stopped).await;
        h.clock.advance(Duration::from_secs(5));
        let done = h.finished(&execution.id).await;
        assert_eq!(status_of(&done, "stops"), Stopped);
        assert_eq!(status_of(&done, "blocked"), NotStarted);
        assert_eq!(status_of(&done, "other"), Succeeded);
        assert_eq!(
            done.status, Succeeded,
            "STOPPED with no active branch is a success"
        );
        h.stop().await;
    }
);

engine_test!(complete_other_branches_then_fail, |h| {
    let execution = h
        .run(
            "cobtf",
            json!({"stages": [
                s("1", "fails", &[], json!({"outcome": "fail", "failPipeline": false, "completeOtherBranchesThenFail": true})),
                s("2", "other", &[], json!({"outcome": "poll:1"})),
                s("3", "after-other", &["2"], json!({})),
            ]}),
        )
        .await;
    h.stage_is(&execution.id, "fails", Stopped).await;
    h.clock.advance(Duration::from_secs(2));
    let done = h.finished(&execution.id).await;
    assert_eq!(status_of(&done, "other"), Succeeded);
    assert_eq!(
        status_of(&done, "after-other"),
        Succeeded,
        "other branches complete"
    );
    assert_eq!(done.status, Terminal, "then the pipeline fails");
    h.stop().await;
});

engine_test!(transient_errors_are_retried_with_backoff, |h| {
    let execution = h
        .run(
            "retry",
            json!({"stages": [s("1", "flaky", &[], json!({"outcome": "transient:2"}))]}),
        )
        .await;
    let running = h
        .until(&execution.id, "the first retry to be scheduled", |e| {
            e.stages[0].tasks.first().is_some_and(|t| t.retries == 1)
        })
        .await;
    assert_eq!(running.stages[0].context["exception"]["shouldRetry"], true);
    h.clock.advance(Duration::from_secs(1));
    h.until(&execution.id, "the second retry", |e| {
        e.stages[0].tasks[0].retries == 2
    })
    .await;
    // Backoff doubles: 1 s is not enough for the second retry.
    h.clock.advance(Duration::from_millis(1500));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting = h.engine.execution(&execution.id).await.unwrap().unwrap();
    assert_eq!(waiting.status, Running);
    h.clock.advance(Duration::from_secs(1));
    let done = h.finished(&execution.id).await;
    assert_eq!(done.status, Succeeded, "{}", summary(&done));
    h.stop().await;
});

engine_test!(retries_give_up_after_the_limit, |h| {
    let execution = h
        .run(
            "give-up",
            json!({"stages": [s("1", "broken", &[], json!({"outcome": "transient:99"}))]}),
        )
        .await;
    for _ in 0..8 {
        h.clock.advance(Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let done = h.finished(&execution.id).await;
    assert_eq!(done.status, Terminal);
    let error = stage(&done, "broken").context["exception"]["details"]["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.contains("gave up after 5 retries"), "{error}");
    h.stop().await;
});

engine_test!(stage_timeout_fails_the_stage, |h| {
    let execution = h
        .run(
            "timeout",
            json!({"stages": [s("1", "slow", &[], json!({"outcome": "forever", "stageTimeoutMs": 5000}))]}),
        )
        .await;
    h.stage_is(&execution.id, "slow", Running).await;
    for _ in 0..7 {
        h.clock.advance(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = h.finished(&execution.id).await;
    assert_eq!(done.status, Terminal);
    let error = stage(&done, "slow").context["exception"]["details"]["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.contains("timed out") && error.contains("stageTimeoutMs is 5000"),
        "{error}"
    );
    h.stop().await;
});

engine_test!(wait_stage_waits_on_the_clock_and_can_be_skipped, |h| {
    let execution = h
        .run(
            "waits",
            json!({"stages": [
                {"refId": "1", "name": "pause", "type": "wait", "waitTime": 30},
                {"refId": "2", "name": "long", "type": "wait", "waitTime": 3600, "requisiteStageRefIds": ["1"]},
            ]}),
        )
        .await;
    h.stage_is(&execution.id, "pause", Running).await;
    h.clock.advance(Duration::from_secs(29));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let now = h.engine.execution(&execution.id).await.unwrap().unwrap();
    assert_eq!(status_of(&now, "pause"), Running, "29 s of 30");
    h.clock.advance(Duration::from_secs(1));
    let running = h.stage_is(&execution.id, "long", Running).await;
    let long = stage(&running, "long").id.clone();
    h.engine
        .skip_stage(&execution.id, &long, "bob")
        .await
        .unwrap();
    let done = h.finished(&execution.id).await;
    assert_eq!(done.status, Succeeded);
    assert_eq!(stage(&done, "long").context["skipRemainingWait"], true);
    h.stop().await;
});

engine_test!(evaluate_variables_in_order_and_visible_downstream, |h| {
    let execution = h
        .run(
            "vars",
            json!({"stages": [
                {"refId": "1", "name": "vars", "type": "evaluateVariables", "variables": [
                    {"key": "region", "value": "${parameters.region}"},
                    {"key": "target", "value": "${region + '-' + trigger.user}"}
                ]},
                {"refId": "2", "name": "use", "type": "evaluateVariables", "requisiteStageRefIds": ["1"], "variables": [
                    {"key": "copy", "value": "${target}"},
                    {"key": "viaStage", "value": "${#stage('vars').outputs.region}"}
                ]},
            ], "parameterConfig": [{"name": "region", "default": "eu-west-1"}]}),
        )
        .await;
    let done = h.finished(&execution.id).await;
    assert_eq!(done.status, Succeeded, "{}", summary(&done));
    assert_eq!(stage(&done, "vars").outputs["target"], "eu-west-1-alice");
    assert_eq!(stage(&done, "use").outputs["copy"], "eu-west-1-alice");
    assert_eq!(stage(&done, "use").outputs["viaStage"], "eu-west-1");
    h.stop().await;
});

engine_test!(failed_expressions_are_summarised_or_fail_the_stage, |h| {
    let execution = h
        .run(
            "exprs",
            json!({"stages": [
                s("1", "lenient", &[], json!({"target": "${trigger.nope.length()}"})),
                s("2", "strict", &["1"], json!({"target": "${trigger.nope.length()}", "failOnFailedExpressions": true})),
            ]}),
        )
        .await;
    let done = h.finished(&execution.id).await;
    let lenient = stage(&done, "lenient");
    assert_eq!(lenient.status, Succeeded);
    assert_eq!(
        lenient.context["target"], "${trigger.nope.length()}",
        "the text stays"
    );
    assert!(lenient.context["expressionEvaluationSummary"].is_object());
    assert_eq!(status_of(&done, "strict"), Terminal);
    assert_eq!(done.status, Terminal);
    h.stop().await;
});

fn assert_status(actual: ExecutionStatus, expected: ExecutionStatus) {
    assert_eq!(actual, expected);
}

engine_test!(unknown_stage_types_fail_with_a_clear_error, |h| {
    // failPipeline: false does not turn "cannot run" into a quiet success.
    let execution = h
        .run(
            "unknown",
            json!({"stages": [{"refId": "1", "name": "bake", "type": "bake", "failPipeline": false}]}),
        )
        .await;
    let done = h.finished(&execution.id).await;
    assert_status(done.status, Terminal);
    let error = stage(&done, "bake").context["exception"]["details"]["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.contains(
            "stage 'bake': type 'bake' is a Spinnaker stage type Gennaker cannot run yet"
        ),
        "{error}"
    );
    assert!(
        !error.contains("restart"),
        "no restart can succeed: {error}"
    );
    h.stop().await;
});

engine_test!(cancel_records_who_and_why_and_stops_running_stages, |h| {
    let execution = h
        .run(
            "cancel",
            json!({"stages": [
                s("1", "busy", &[], json!({"outcome": "forever"})),
                s("2", "next", &["1"], json!({})),
            ]}),
        )
        .await;
    h.stage_is(&execution.id, "busy", Running).await;
    h.engine
        .cancel(&execution.id, "bob", Some("wrong build".into()))
        .await
        .unwrap();
    let done = h.finished(&execution.id).await;
    assert_eq!(done.status, Canceled);
    assert!(done.canceled);
    assert_eq!(done.canceled_by.as_deref(), Some("bob"));
    assert_eq!(done.cancellation_reason.as_deref(), Some("wrong build"));
    assert_eq!(status_of(&done, "busy"), Canceled);
    assert_eq!(status_of(&done, "next"), NotStarted);
    let again = h
        .engine
        .cancel(&execution.id, "bob", None)
        .await
        .unwrap_err();
    assert!(again.to_string().contains("already ended"), "{again}");
    assert!(
        h.queue_is_empty().await,
        "the canceled task's scheduled run is gone"
    );
    h.stop().await;
});

engine_test!(pause_and_resume_exclude_paused_time_from_timeouts, |h| {
    let execution = h
        .run(
            "pause",
            json!({"stages": [
                {"refId": "1", "name": "soak", "type": "wait", "waitTime": 10, "stageTimeoutMs": 15000},
                s("2", "after", &["1"], json!({})),
            ]}),
        )
        .await;
    h.stage_is(&execution.id, "soak", Running).await;
    h.clock.advance(Duration::from_secs(4));
    h.engine.pause(&execution.id, "bob").await.unwrap();
    let paused = h
        .until(&execution.id, "the pause", |e| e.status == Paused)
        .await;
    assert_eq!(status_of(&paused, "soak"), Paused);
    // A long pause: neither the wait nor the stage timeout may count it.
    h.clock.advance(Duration::from_secs(600));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        h.engine
            .execution(&execution.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        Paused
    );
    h.engine.resume(&execution.id, "carol").await.unwrap();
    let resumed = h
        .until(&execution.id, "the resume", |e| e.status == Running)
        .await;
    let details = resumed.paused.clone().unwrap();
    assert_eq!(details.paused_by.as_deref(), Some("bob"));
    assert_eq!(details.resumed_by.as_deref(), Some("carol"));
    assert_eq!(details.paused_ms, 600_000);
    h.clock.advance(Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        status_of(
            &h.engine.execution(&execution.id).await.unwrap().unwrap(),
            "soak"
        ),
        Running,
        "9 s of a 10 s wait ran"
    );
    h.clock.advance(Duration::from_secs(2));
    let done = h.finished(&execution.id).await;
    assert_eq!(done.status, Succeeded, "{}", summary(&done));
    h.stop().await;
});

engine_test!(restart_a_failed_stage_runs_it_and_what_follows_again, |h| {
    let execution = h
        .run(
            "restart",
            json!({"stages": [
                s("1", "ok", &[], json!({})),
                s("2", "broken", &["1"], json!({"outcome": "fail"})),
                s("3", "after", &["2"], json!({})),
            ]}),
        )
        .await;
    let failed = h.finished(&execution.id).await;
    assert_eq!(failed.status, Terminal);
    let broken = stage(&failed, "broken").id.clone();
    // The fix: the stage's config can't change, but a restart re-runs it from the
    // frozen config; make the test task succeed on its second life via `runs`.
    h.engine
        .restart_stage(&execution.id, &broken, "bob")
        .await
        .unwrap();
    let restarted = h
        .until(&execution.id, "the restart to run", |e| {
            stage(e, "broken").restarts == 1 && e.status.is_complete()
        })
        .await;
    let broken_stage = stage(&restarted, "broken");
    assert_eq!(broken_stage.context["restartDetails"]["restartedBy"], "bob");
    assert_eq!(
        broken_stage.context["restartDetails"]["previousException"]["details"]["error"],
        "told to fail"
    );
    assert_eq!(status_of(&restarted, "ok"), Succeeded, "upstream is kept");
    assert_eq!(stage(&restarted, "ok").restarts, 0);
    // The stage fails again (its config says so), and the execution with it.
    assert_eq!(restarted.status, Terminal);
    assert_eq!(status_of(&restarted, "after"), NotStarted);
    let running = h
        .engine
        .restart_stage(&execution.id, "nope", "bob")
        .await
        .unwrap_err();
    assert!(running.to_string().contains("not found"), "{running}");
    h.stop().await;
});

engine_test!(
    limit_concurrent_buffers_and_keep_waiting_runs_all_in_order,
    |h| {
        let pipeline = json!({"limitConcurrent": true, "keepWaitingPipelines": true, "stages": [
            {"refId": "1", "name": "soak", "type": "wait", "waitTime": 5}
        ]});
        let first = h.run("queue", pipeline.clone()).await;
        h.stage_is(&first.id, "soak", Running).await;
        let second = h.run("queue", pipeline.clone()).await;
        let third = h.run("queue", pipeline).await;
        h.until(&second.id, "second to be buffered", |e| {
            e.status == Buffered
        })
        .await;
        h.until(&third.id, "third to be buffered", |e| e.status == Buffered)
            .await;
        h.clock.advance(Duration::from_secs(5));
        h.finished(&first.id).await;
        let second_running = h
            .until(&second.id, "second to start", |e| e.status == Running)
            .await;
        assert_eq!(
            h.engine.execution(&third.id).await.unwrap().unwrap().status,
            Buffered,
            "one at a time, oldest first"
        );
        assert!(second_running.start_time.is_some());
        h.clock.advance(Duration::from_secs(5));
        h.finished(&second.id).await;
        h.until(&third.id, "third to start", |e| e.status == Running)
            .await;
        h.clock.advance(Duration::from_secs(5));
        assert_eq!(h.finished(&third.id).await.status, Succeeded);
        h.stop().await;
    }
);

engine_test!(
    without_keep_waiting_only_the_newest_waiting_execution_runs,
    |h| {
        let pipeline = json!({"limitConcurrent": true, "keepWaitingPipelines": false, "stages": [
            {"refId": "1", "name": "soak", "type": "wait", "waitTime": 5}
        ]});
        let first = h.run("newest", pipeline.clone()).await;
        h.stage_is(&first.id, "soak", Running).await;
        let older = h.run("newest", pipeline.clone()).await;
        h.until(&older.id, "older to be buffered", |e| e.status == Buffered)
            .await;
        let newer = h.run("newest", pipeline).await;
        h.until(&newer.id, "newer to be buffered", |e| e.status == Buffered)
            .await;
        h.clock.advance(Duration::from_secs(5));
        h.finished(&first.id).await;
        let superseded = h.finished(&older.id).await;
        assert_eq!(superseded.status, Canceled);
        assert!(
            superseded
                .cancellation_reason
                .as_deref()
                .unwrap_or_default()
                .contains("superseded"),
            "{:?}",
            superseded.cancellation_reason
        );
        h.until(&newer.id, "newer to start", |e| e.status == Running)
            .await;
        h.clock.advance(Duration::from_secs(5));
        assert_eq!(h.finished(&newer.id).await.status, Succeeded);
        h.stop().await;
    }
);

engine_test!(manual_judgment_roles_inputs_and_the_judgment_helper, |h| {
    let execution = h
        .run(
            "judge",
            json!({"stages": [
                {"refId": "1", "name": "approve", "type": "manualJudgment",
                 "selectedStageRoles": ["release-managers"],
                 "judgmentInputs": [{"value": "ship"}, {"value": "hold"}]},
                {"refId": "2", "name": "read", "type": "evaluateVariables", "requisiteStageRefIds": ["1"],
                 "variables": [{"key": "choice", "value": "${#judgment('approve')}"},
                               {"key": "alias", "value": "${#judgement('approve')}"}]},
            ]}),
        )
        .await;
    let waiting = h.stage_is(&execution.id, "approve", Running).await;
    let approve = stage(&waiting, "approve").id.clone();
    let dev = gennaker_engine::Actor {
        user: "dev".into(),
        roles: vec!["dev".into()],
        admin: false,
    };
    let manager = gennaker_engine::Actor {
        user: "mia".into(),
        roles: vec!["Release-Managers".into()],
        admin: false,
    };
    let ship = gennaker_engine::Judgment {
        judgment_status: "continue".into(),
        judgment_input: Some("ship".into()),
    };
    let refused = h
        .engine
        .judge(&execution.id, &approve, &dev, &ship)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, gennaker_engine::EngineError::Forbidden(_)),
        "{refused}"
    );
    let bad_input = gennaker_engine::Judgment {
        judgment_input: Some("yolo".into()),
        ..ship.clone()
    };
    let invalid = h
        .engine
        .judge(&execution.id, &approve, &manager, &bad_input)
        .await
        .unwrap_err();
    assert!(invalid.to_string().contains("must be one of"), "{invalid}");
    h.engine
        .judge(&execution.id, &approve, &manager, &ship)
        .await
        .unwrap();
    let done = h.finished(&execution.id).await;
    assert_eq!(done.status, Succeeded, "{}", summary(&done));
    assert_eq!(stage(&done, "approve").context["judgedBy"], "mia");
    assert_eq!(stage(&done, "read").outputs["choice"], "ship");
    assert_eq!(stage(&done, "read").outputs["alias"], "ship");
    h.stop().await;
});

engine_test!(a_stop_judgment_fails_the_stage, |h| {
    let execution = h
        .run(
            "stop",
            json!({"stages": [{"refId": "1", "name": "approve", "type": "manualJudgment"}]}),
        )
        .await;
    let waiting = h.stage_is(&execution.id, "approve", Running).await;
    let approve = stage(&waiting, "approve").id.clone();
    let admin = gennaker_engine::Actor {
        user: "root".into(),
        roles: vec![],
        admin: true,
    };
    let stop = gennaker_engine::Judgment {
        judgment_status: "stop".into(),
        judgment_input: None,
    };
    h.engine
        .judge(&execution.id, &approve, &admin, &stop)
        .await
        .unwrap();
    let done = h.finished(&execution.id).await;
    assert_eq!(done.status, Terminal);
    let error = stage(&done, "approve").context["exception"]["details"]["error"].clone();
    assert_eq!(error, "root judged this stage 'stop'");
    h.stop().await;
});

engine_test!(context_helpers_see_the_execution, |h| {
    let execution = h
        .run(
            "helpers",
            json!({"stages": [
                s("1", "first", &[], json!({})),
                {"refId": "2", "name": "probe", "type": "evaluateVariables", "requisiteStageRefIds": ["1"], "variables": [
                    {"key": "me", "value": "${#currentStage().name}"},
                    {"key": "byRef", "value": "${#stageByRefId('1').status}"},
                    {"key": "exists", "value": "${#stageExists('first') and !#stageExists('nope')}"},
                    {"key": "pipelineId", "value": "${#pipelineId('helpers')}"},
                    {"key": "user", "value": "${execution.authentication.user}"},
                    {"key": "upstream", "value": "${#stage('first').outputs['1Done']}"}
                ]},
            ]}),
        )
        .await;
    let done = h.finished(&execution.id).await;
    let outputs = &stage(&done, "probe").outputs;
    assert_eq!(outputs["me"], "probe");
    assert_eq!(outputs["byRef"], "SUCCEEDED");
    assert_eq!(outputs["exists"], true);
    assert_eq!(outputs["pipelineId"], json!(done.pipeline_config_id));
    assert_eq!(outputs["user"], "alice");
    assert_eq!(outputs["upstream"], true);
    h.stop().await;
});

engine_test!(evaluate_against_a_real_execution, |h| {
    let execution = h
        .run(
            "eval",
            json!({"stages": [s("1", "first", &[], json!({}))],
                            "parameterConfig": [{"name": "env", "default": "prod"}]}),
        )
        .await;
    h.finished(&execution.id).await;
    let ok = h
        .engine
        .evaluate(&execution.id, "${parameters.env.toUpperCase()}", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ok.value, json!("PROD"));
    let missing = h
        .engine
        .evaluate(&execution.id, "${parameters.evn}", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(missing.value, serde_json::Value::Null);
    assert!(
        missing
            .warnings
            .iter()
            .any(|w| w.hint.as_deref().unwrap_or_default().contains("env")),
        "{missing:?}"
    );
    let err = h
        .engine
        .evaluate(&execution.id, "parameters.evn.length()", None)
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        err.to_string().contains("evn") || err.hint.as_deref().unwrap_or_default().contains("env"),
        "{err}"
    );
    h.stop().await;
});

engine_test!(
    on_failure_stages_run_in_place_of_after_stages_and_the_failure_stands,
    |h| {
        let execution = h
            .run(
                "on-failure",
                json!({"stages": [
                    s("1", "ok", &[], json!({"after": 1, "onFailure": 1})),
                    s("2", "broken", &["1"], json!({"outcome": "fail", "after": 1, "onFailure": 2})),
                ]}),
            )
            .await;
        let done = h.finished(&execution.id).await;
        assert_eq!(done.status, Terminal, "{}", summary(&done));
        // A stage that succeeds runs its after stages and never plans the others.
        assert_eq!(status_of(&done, "ok after 1"), Succeeded);
        assert!(done.stages.iter().all(|s| s.name != "ok on failure 1"));
        // One that fails runs them, in order, instead of its after stages, and fails.
        assert_eq!(status_of(&done, "broken"), Terminal);
        assert!(done.stages.iter().all(|s| s.name != "broken after 1"));
        let first = stage(&done, "broken on failure 1");
        let second = stage(&done, "broken on failure 2");
        assert_eq!((first.status, second.status), (Succeeded, Succeeded));
        assert_eq!(first.ref_id, "2!1");
        assert!(second.start_time.unwrap() >= first.end_time.unwrap());
        assert!(stage(&done, "broken").end_time.unwrap() >= second.end_time.unwrap());
        assert!(h.queue_is_empty().await);
        h.stop().await;
    }
);

engine_test!(
    a_failed_continue_stage_runs_its_on_failure_stages_before_the_pipeline_goes_on,
    |h| {
        let execution = h
            .run(
                "soft-on-failure",
                json!({"stages": [
                    s("1", "flaky", &[], json!({"outcome": "fail", "failPipeline": false,
                                                "continuePipeline": true, "onFailure": 1,
                                                "onFailureOutcome": "fail"})),
                    s("2", "next", &["1"], json!({})),
                ]}),
            )
            .await;
        let done = h.finished(&execution.id).await;
        assert_eq!(
            status_of(&done, "flaky"),
            FailedContinue,
            "{}",
            summary(&done)
        );
        assert_eq!(
            status_of(&done, "flaky on failure 1"),
            Terminal,
            "a failing on-failure stage is not planned again"
        );
        assert_eq!(
            done.stages
                .iter()
                .filter(|s| s.name == "flaky on failure 1")
                .count(),
            1
        );
        assert_eq!(status_of(&done, "next"), Succeeded);
        assert!(
            stage(&done, "next").start_time.unwrap()
                >= stage(&done, "flaky on failure 1").end_time.unwrap()
        );
        h.stop().await;
    }
);
