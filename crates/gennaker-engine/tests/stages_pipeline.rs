//! The `pipeline` (child pipeline) stage, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use gennaker_engine::Execution;
use gennaker_engine::ExecutionStatus::*;
use gennaker_engine::engine_test;
use gennaker_engine::testing::{self, stage, status_of, summary};
use serde_json::json;

/// The child execution the parent's stage `name` started, once it has.
async fn child_of(h: &testing::Harness, parent: &str, name: &str) -> Execution {
    let parent = h
        .until(parent, "the child pipeline to be started", |e| {
            e.stages
                .iter()
                .any(|s| s.name == name && s.context.contains_key("executionId"))
        })
        .await;
    let id = stage(&parent, name).context["executionId"]
        .as_str()
        .unwrap()
        .to_owned();
    h.engine
        .execution(&id)
        .await
        .unwrap()
        .expect("the child execution exists")
}

engine_test!(the_parent_waits_for_the_child_to_succeed, |h| {
    let child = h
        .save(
            "child",
            json!({"stages": [{"refId": "1", "name": "child work", "type": "wait", "waitTime": 10}]}),
        )
        .await;
    let parent = h
        .run(
            "parent",
            json!({"stages": [
                {"refId": "1", "name": "run child", "type": "pipeline", "application": "shop", "pipeline": child["id"]},
                {"refId": "2", "name": "after", "type": "test", "requisiteStageRefIds": ["1"]},
            ]}),
        )
        .await;
    let started = child_of(&h, &parent.id, "run child").await;
    assert_eq!(started.trigger["type"], "pipeline");
    assert_eq!(started.trigger["user"], "alice");
    assert_eq!(started.trigger["parentExecution"]["id"], json!(parent.id));
    assert_eq!(started.trigger["parentExecution"]["application"], "shop");
    assert_eq!(started.trigger["parentExecution"]["name"], "parent");
    assert_eq!(
        started.trigger["parentPipelineId"],
        json!(parent.pipeline_config_id)
    );
    assert_eq!(started.origin, "pipeline");
    h.stage_is(&started.id, "child work", Running).await;
    let waiting = h.engine.execution(&parent.id).await.unwrap().unwrap();
    let run_child = stage(&waiting, "run child");
    assert_eq!(run_child.status, Running, "the parent waits");
    assert_eq!(
        started.trigger["parentPipelineStageId"],
        json!(run_child.id)
    );
    assert_eq!(status_of(&waiting, "after"), NotStarted);

    h.clock.advance(Duration::from_secs(10));
    let done = h.finished(&parent.id).await;
    assert_eq!(done.status, Succeeded, "{}", summary(&done));
    let child_done = h.engine.execution(&started.id).await.unwrap().unwrap();
    assert_eq!(child_done.status, Succeeded);
    assert!(stage(&done, "after").start_time >= child_done.end_time);
    assert_eq!(
        stage(&done, "run child").outputs["executionId"],
        json!(started.id)
    );
    assert_eq!(stage(&done, "run child").context["executionName"], "child");
    h.stop().await;
});

engine_test!(parameters_reach_the_child_and_its_outputs_come_back, |h| {
    h.save(
        "child",
        json!({
            "parameterConfig": [{"name": "version", "required": true}, {"name": "region", "default": "eu"}],
            "stages": [{"refId": "1", "name": "echo", "type": "evaluateVariables",
                        "variables": [{"key": "deployed", "value": "${parameters.version + '@' + parameters.region}"}]}]
        }),
    )
    .await;
    let parent = h
        .run(
            "parent",
            json!({
                "parameterConfig": [{"name": "v", "default": "1.2"}],
                "stages": [
                    {"refId": "1", "name": "run child", "type": "pipeline", "pipeline": "child",
                     "pipelineParameters": {"version": "${parameters.v}"}},
                    {"refId": "2", "name": "use", "type": "evaluateVariables", "requisiteStageRefIds": ["1"],
                     "variables": [{"key": "seen", "value": "${deployed}"}]},
                ]
            }),
        )
        .await;
    let done = h.finished(&parent.id).await;
    assert_eq!(done.status, Succeeded, "{}", summary(&done));
    let id = stage(&done, "run child").context["executionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let child = h.engine.execution(&id).await.unwrap().unwrap();
    assert_eq!(child.trigger["parameters"]["version"], "1.2");
    assert_eq!(
        child.trigger["parameters"]["region"], "eu",
        "the child's defaults apply"
    );
    assert_eq!(stage(&done, "run child").outputs["deployed"], "1.2@eu");
    assert_eq!(stage(&done, "use").outputs["seen"], "1.2@eu");
    h.stop().await;
});

engine_test!(a_failing_child_fails_the_parent_stage, |h| {
    h.save(
        "child",
        json!({"stages": [{"refId": "1", "name": "breaks", "type": "test", "outcome": "fail"}]}),
    )
    .await;
    let parent = h
        .run(
            "parent",
            json!({"stages": [
                {"refId": "1", "name": "run child", "type": "pipeline", "pipeline": "child"},
                {"refId": "2", "name": "after", "type": "test", "requisiteStageRefIds": ["1"]},
            ]}),
        )
        .await;
    let done = h.finished(&parent.id).await;
    assert_eq!(done.status, Terminal, "{}", summary(&done));
    assert_eq!(status_of(&done, "run child"), Terminal);
    assert_eq!(status_of(&done, "after"), NotStarted);
    let run_child = stage(&done, "run child");
    let error = run_child.context["exception"]["details"]["error"]
        .as_str()
        .unwrap();
    let id = run_child.context["executionId"].as_str().unwrap();
    assert_eq!(
        error,
        format!(
            "child pipeline 'child' (execution {id}) ended TERMINAL: stage 'breaks': told to fail"
        )
    );
    h.stop().await;
});

engine_test!(
    without_wait_for_completion_the_parent_goes_on_at_once,
    |h| {
        h.save(
            "child",
            json!({"stages": [{"refId": "1", "name": "long", "type": "wait", "waitTime": 3600}]}),
        )
        .await;
        let parent = h
        .run(
            "parent",
            json!({"stages": [
                {"refId": "1", "name": "fire and forget", "type": "pipeline", "pipeline": "child", "waitForCompletion": false},
                {"refId": "2", "name": "after", "type": "test", "requisiteStageRefIds": ["1"]},
            ]}),
        )
        .await;
        let done = h.finished(&parent.id).await;
        assert_eq!(done.status, Succeeded, "{}", summary(&done));
        assert_eq!(
            stage(&done, "fire and forget").tasks.len(),
            1,
            "no monitor task"
        );
        let id = stage(&done, "fire and forget").context["executionId"]
            .as_str()
            .unwrap()
            .to_owned();
        let child = h.stage_is(&id, "long", Running).await;
        assert_eq!(child.status, Running, "the child runs on");
        h.engine.cancel(&id, "test", None).await.unwrap();
        h.finished(&id).await;
        h.stop().await;
    }
);

engine_test!(cancelling_the_parent_cancels_the_child, |h| {
    h.save(
        "child",
        json!({"stages": [{"refId": "1", "name": "long", "type": "wait", "waitTime": 3600}]}),
    )
    .await;
    let parent = h
        .run(
            "parent",
            json!({"stages": [{"refId": "1", "name": "run child", "type": "pipeline", "pipeline": "child"}]}),
        )
        .await;
    let child = child_of(&h, &parent.id, "run child").await;
    h.stage_is(&child.id, "long", Running).await;
    h.engine
        .cancel(&parent.id, "bob", Some("wrong version".into()))
        .await
        .unwrap();
    let parent_done = h.finished(&parent.id).await;
    assert_eq!(parent_done.status, Canceled);
    let child_done = h.finished(&child.id).await;
    assert_eq!(child_done.status, Canceled, "{}", summary(&child_done));
    assert_eq!(child_done.canceled_by.as_deref(), Some("bob"));
    let reason = child_done.cancellation_reason.clone().unwrap();
    assert!(
        reason.contains(&parent.id) && reason.contains("run child"),
        "{reason}"
    );
    assert_eq!(status_of(&child_done, "long"), Canceled);
    h.stop().await;
});

engine_test!(a_missing_pipeline_fails_with_a_clear_error, |h| {
    h.save("other", json!({"stages": [{"refId": "1", "type": "test"}]}))
        .await;
    let parent = h
        .run(
            "parent",
            json!({"stages": [{"refId": "1", "name": "run child", "type": "pipeline", "pipeline": "nope"}]}),
        )
        .await;
    let done = h.finished(&parent.id).await;
    assert_eq!(done.status, Terminal);
    let error = stage(&done, "run child").context["exception"]["details"]["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.starts_with("application 'shop' has no pipeline with id or name 'nope' (its pipelines are: other, parent)"),
        "{error}"
    );
    assert!(
        !stage(&done, "run child")
            .context
            .contains_key("executionId")
    );
    h.stop().await;
});
