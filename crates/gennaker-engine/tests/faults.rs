//! Fault injection (STYLE.md §5.6) through the test kit's fault driver: every step of
//! an execution is done twice (the first attempt "crashes" before its commit), and
//! separately the engine is killed after every commit and restarted from the store.
//! Either way the execution must end exactly as an undisturbed run does, with no stage
//! completed twice, no execution created twice and nothing left in the queue.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod remote;

use gennaker_engine::ExecutionStatus::*;
use gennaker_engine::testing::{Fault, FaultRun, loopback, stage, succeeded};
use gennaker_engine::{Judgment, fault_test};
use remote::{Remote, answer, key_of};
use serde_json::{Value, json};

/// A pipeline touching every engine path a crash could break: parallel branches and a
/// join, a wait, variables, a polling task, a skipped stage, a judgment, a soft failure.
fn pipeline() -> Value {
    json!({
        "parameterConfig": [{"name": "env", "default": "prod"}],
        "stages": [
            {"refId": "1", "name": "vars", "type": "evaluateVariables",
             "variables": [{"key": "target", "value": "${parameters.env}-eu"}]},
            {"refId": "2", "name": "poll", "type": "test", "outcome": "poll:2", "requisiteStageRefIds": ["1"]},
            {"refId": "3", "name": "wait", "type": "wait", "waitTime": 3, "requisiteStageRefIds": ["1"]},
            {"refId": "4", "name": "skipped", "type": "test", "requisiteStageRefIds": ["1"],
             "stageEnabled": {"type": "expression", "expression": "target == 'nope'"}},
            {"refId": "5", "name": "soft", "type": "test", "outcome": "fail", "failPipeline": false,
             "continuePipeline": true, "requisiteStageRefIds": ["4"]},
            {"refId": "6", "name": "approve", "type": "manualJudgment", "requisiteStageRefIds": ["2", "3", "5"],
             "judgmentInputs": [{"value": "ship"}]},
            {"refId": "7", "name": "after", "type": "evaluateVariables", "requisiteStageRefIds": ["6"],
             "variables": [{"key": "choice", "value": "${#judgment('approve')}"}]}
        ]
    })
}

fault_test!(engine_paths_end_as_undisturbed, |backend, fault| {
    let run = |fault| {
        let ship = Judgment {
            judgment_status: "continue".into(),
            judgment_input: Some("ship".into()),
        };
        FaultRun::new(backend, fault, pipeline())
            .judging("approve", ship)
            .run()
    };
    let reference = run(Fault::None).await;
    reference.assert_succeeded();
    assert_eq!(reference.executions.len(), 1);
    let disturbed = run(fault).await;
    disturbed.assert_same_as(&reference);
    assert_eq!(
        stage(&disturbed.execution, "after").outputs["choice"],
        "ship",
        "the judgment survived"
    );
});

fault_test!(
    /// A pipeline with the three generic stages: the webhook is called again only with
    /// the same key, exactly one child pipeline is started, and the run succeeds.
    generic_stages_survive,
    |backend, fault| {
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
        let child = json!({"stages": [{"refId": "1", "name": "work", "type": "test", "outcome": "poll:1"}]});
        let parent = json!({"stages": [
            {"refId": "1", "name": "check", "type": "checkPreconditions",
             "preconditions": [{"type": "expression", "context": {"expression": "trigger.user == 'alice'"}}]},
            {"refId": "2", "name": "job", "type": "webhook", "requisiteStageRefIds": ["1"],
             "url": remote.url("/jobs"), "waitForCompletion": true,
             "statusJsonPath": "$.status", "successStatuses": "SUCCESS"},
            {"refId": "3", "name": "child", "type": "pipeline", "pipeline": "child", "requisiteStageRefIds": ["1"]},
        ]});
        let outcome = FaultRun::new(backend, fault, parent)
            .with_outbound(loopback())
            .with_pipeline("child", child)
            .run()
            .await;
        outcome.assert_clean();
        let done = &outcome.execution;
        succeeded(done);
        assert_eq!(stage(done, "check").status, Succeeded);

        let calls = remote.seen("POST", "/jobs");
        if fault == Fault::RepeatEveryStep {
            assert!(calls.len() >= 2, "the create step was repeated: {calls:?}");
        }
        let key = key_of(done, "job", 0);
        assert!(
            calls.iter().all(|c| c.key() == key),
            "one key for every attempt: {calls:?}"
        );
        assert!(remote.seen("GET", "/jobs").iter().all(|c| c.key() == key));

        assert_eq!(outcome.executions.len(), 2, "the parent and ONE child");
        let child_id = stage(done, "child").context["executionId"].as_str().unwrap();
        assert!(
            outcome
                .executions
                .iter()
                .any(|row| row.id == child_id && row.status == gennaker_core::ExecutionStatus::Succeeded)
        );
    }
);
