//! The `checkPreconditions` stage, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gennaker_engine::ExecutionStatus::*;
use gennaker_engine::SyntheticStageOwner;
use gennaker_engine::engine_test;
use gennaker_engine::testing::{error_of, stage, status_of, summary, synthetic_children};
use serde_json::{Value, json};

engine_test!(preconditions_that_hold_let_the_pipeline_go_on, |h| {
    let execution = h
        .run(
            "preconditions-pass",
            json!({
                "parameterConfig": [{"name": "env", "default": "prod"}],
                "stages": [
                    {"refId": "1", "name": "deploy", "type": "test"},
                    {"refId": "2", "name": "check", "type": "checkPreconditions", "requisiteStageRefIds": ["1"],
                     "preconditions": [
                        {"type": "expression", "context": {"expression": "parameters.env == 'prod'"}},
                        {"type": "expression", "context": {"expression": "${trigger.user == 'alice'}"}},
                        {"type": "stageStatus", "context": {"stageName": "deploy", "stageStatus": "succeeded"}},
                        {"type": "stageStatus", "context": {"stageName": "${'dep' + 'loy'}", "stageStatus": "SUCCEEDED"}, "failPipeline": true}
                     ]},
                    {"refId": "3", "name": "after", "type": "test", "requisiteStageRefIds": ["2"]},
                ]
            }),
        )
        .await;
    let done = h.finished(&execution.id).await;
    assert_eq!(done.status, Succeeded, "{}", summary(&done));
    assert_eq!(status_of(&done, "check"), Succeeded);
    assert_eq!(status_of(&done, "after"), Succeeded);
    let children = synthetic_children(&done, "check");
    assert_eq!(children.len(), 4, "one synthetic stage per precondition");
    for child in &children {
        assert_eq!(child.status, Succeeded, "{}", summary(&done));
        assert_eq!(
            child.synthetic_stage_owner,
            Some(SyntheticStageOwner::StageBefore)
        );
        assert!(
            child.requisite_stage_ref_ids.is_empty(),
            "they run in parallel"
        );
        assert_eq!(child.stage_type, "checkPreconditions");
    }
    assert_eq!(children[0].name, "Check precondition (expression)");
    assert_eq!(
        children[0].context["failPipeline"], true,
        "failPipeline defaults to true"
    );
    assert_eq!(children[0].context["context"]["expressionResult"], true);
    assert_eq!(
        children[1].context["context"]["expression"], "${trigger.user == 'alice'}",
        "the expression is kept as written"
    );
    let check = stage(&done, "check");
    assert!(check.end_time >= children.iter().map(|c| c.end_time).max().unwrap());
    h.stop().await;
});

engine_test!(
    a_failing_precondition_fails_the_pipeline_and_says_why,
    |h| {
        let execution = h
        .run(
            "preconditions-fail",
            json!({
                "parameterConfig": [{"name": "env", "default": "staging"}],
                "stages": [
                    {"refId": "1", "name": "deploy", "type": "test"},
                    {"refId": "2", "name": "check", "type": "checkPreconditions", "requisiteStageRefIds": ["1"],
                     "preconditions": [
                        {"type": "expression", "context": {"expression": "parameters.env == 'prod'"}},
                        {"type": "stageStatus", "context": {"stageName": "deploy", "stageStatus": "TERMINAL"}}
                     ]},
                    {"refId": "3", "name": "after", "type": "test", "requisiteStageRefIds": ["2"]},
                ]
            }),
        )
        .await;
        let done = h.finished(&execution.id).await;
        assert_eq!(done.status, Terminal, "{}", summary(&done));
        assert_eq!(status_of(&done, "check"), Terminal);
        assert_eq!(status_of(&done, "after"), NotStarted);
        let children = synthetic_children(&done, "check");
        assert_eq!(children[0].status, Terminal);
        assert_eq!(
            error_of(children[0]),
            "precondition 1 (expression) failed: expression `parameters.env == 'prod'` is false"
        );
        assert_eq!(children[0].context["context"]["expressionResult"], false);
        assert_eq!(children[1].status, Terminal);
        assert_eq!(
            error_of(children[1]),
            "precondition 2 (stageStatus) failed: stage 'deploy' is SUCCEEDED, expected TERMINAL"
        );
        let parent_error = error_of(stage(&done, "check"));
        assert!(
            parent_error.starts_with("precondition 1")
                || parent_error.starts_with("precondition 2"),
            "the stage shows its failed precondition's error: {parent_error}"
        );
        h.stop().await;
    }
);

engine_test!(fail_pipeline_false_stops_only_the_branch, |h| {
    let execution = h
        .run(
            "preconditions-soft",
            json!({"stages": [
                {"refId": "1", "name": "check", "type": "checkPreconditions",
                 "preconditions": [
                    {"type": "expression", "context": {"expression": "1 > 2"}, "failPipeline": false},
                    {"type": "expression", "context": {"expression": "2 > 1"}}
                 ]},
                {"refId": "2", "name": "guarded", "type": "test", "requisiteStageRefIds": ["1"]},
                {"refId": "3", "name": "other branch", "type": "test"},
            ]}),
        )
        .await;
    let done = h.finished(&execution.id).await;
    let children = synthetic_children(&done, "check");
    assert_eq!(children[0].status, Stopped, "{}", summary(&done));
    assert_eq!(children[0].context["failPipeline"], false);
    assert_eq!(children[1].status, Succeeded);
    assert_eq!(status_of(&done, "check"), Stopped);
    assert_eq!(status_of(&done, "guarded"), NotStarted, "the branch stops");
    assert_eq!(status_of(&done, "other branch"), Succeeded);
    assert_eq!(done.status, Succeeded, "the pipeline does not fail");
    assert!(error_of(children[0]).contains("expression `1 > 2` is false"));
    h.stop().await;
});

engine_test!(broken_preconditions_are_explained, |h| {
    let soft = |precondition: Value| {
        let mut p = precondition;
        p["failPipeline"] = json!(false);
        p
    };
    let execution = h
        .run(
            "preconditions-broken",
            json!({"stages": [
                {"refId": "1", "name": "deploy", "type": "test"},
                {"refId": "2", "name": "check", "type": "checkPreconditions", "requisiteStageRefIds": ["1"],
                 "preconditions": [
                    soft(json!({"type": "expression", "context": {"expression": "trigger.nope.length()"}})),
                    soft(json!({"type": "expression", "context": {"expression": "'yes'"}})),
                    soft(json!({"type": "stageStatus", "context": {"stageName": "deplyo", "stageStatus": "SUCCEEDED"}})),
                    soft(json!({"type": "stageStatus", "context": {"stageName": "deploy", "stageStatus": "DONE"}})),
                    soft(json!({"type": "expression", "context": {}})),
                 ]},
            ]}),
        )
        .await;
    let done = h.finished(&execution.id).await;
    assert_eq!(done.status, Succeeded, "{}", summary(&done));
    let errors: Vec<String> = synthetic_children(&done, "check")
        .into_iter()
        .map(error_of)
        .collect();
    let expect = [
        "precondition 1 (expression) failed: expression `trigger.nope.length()` could not be evaluated",
        "precondition 2 (expression) failed: expression `'yes'` evaluated to \"yes\", not true or false",
        "there is no stage named 'deplyo' (did you mean 'deploy'?); fix preconditions[2].context.stageName",
        "'DONE' is not a stage status; set preconditions[3].context.stageStatus to one of",
        "precondition 5 (expression) has no context.expression: set preconditions[4].context.expression",
    ];
    assert_eq!(errors.len(), expect.len());
    for (error, wanted) in errors.iter().zip(expect) {
        assert!(
            error.contains(wanted),
            "{error:?} should contain {wanted:?}"
        );
    }
    h.stop().await;
});

engine_test!(unsupported_preconditions_end_the_execution_terminal, |h| {
    let execution = h
        .run(
            "preconditions-unsupported",
            json!({"stages": [
                {"refId": "1", "name": "check", "type": "checkPreconditions", "failPipeline": false,
                 "preconditions": [
                    {"type": "expression", "context": {"expression": "1 > 2"}, "failPipeline": false},
                    {"type": "clusterSize", "context": {"cluster": "shop-prod"}, "failPipeline": false},
                    {"type": "expresion", "context": {"expression": "true"}, "failPipeline": false},
                    {"context": {}, "failPipeline": false}
                 ]},
                {"refId": "2", "name": "guarded", "type": "test", "requisiteStageRefIds": ["1"]},
            ]}),
        )
        .await;
    let done = h.finished(&execution.id).await;
    assert_eq!(
        done.status,
        Terminal,
        "failPipeline: false does not let an unchecked precondition pass: {}",
        summary(&done)
    );
    assert_eq!(status_of(&done, "guarded"), NotStarted);
    let children = synthetic_children(&done, "check");
    assert_eq!(
        children[0].status, Stopped,
        "a failed precondition only stops"
    );
    assert!(!children[0].failed_unsupported());
    let expect = [
        "stage 'Check precondition (clusterSize)': precondition 2 of stage 'check' has type 'clusterSize', which this server does not check: set preconditions[1].type to one of expression, stageStatus",
        "stage 'Check precondition (expresion)': precondition 3 of stage 'check' has type 'expresion', which this server does not check: set preconditions[2].type to one of expression, stageStatus",
        "stage 'Check precondition ()': precondition 4 of stage 'check' has no type: set preconditions[3].type to one of expression, stageStatus",
    ];
    for (child, wanted) in children[1..].iter().zip(expect) {
        assert_eq!(child.status, Terminal, "{}", summary(&done));
        assert!(child.failed_unsupported(), "{:?}", child.context);
        assert_eq!(error_of(child), wanted);
    }
    let check = stage(&done, "check");
    assert_eq!(
        check.status, Terminal,
        "the stage's own failPipeline: false does not soften it"
    );
    assert!(
        check.failed_unsupported(),
        "the stage shows the unsupported precondition, not the one that only stopped: {:?}",
        check.context
    );
    assert!(error_of(check).contains("which this server does not check"));
    h.stop().await;
});
