//! Bounds: how many stages a pipeline and an execution may have, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gennaker_core::{MAX_PIPELINE_STAGES, validate_pipeline_value};
use gennaker_engine::ExecutionStatus::*;
use gennaker_engine::testing::{error_of, requester, stage, status_of, synthetic_children};
use gennaker_engine::{EngineError, MAX_EXECUTION_STAGES, RunRequest, engine_test};
use serde_json::{Value, json};

/// A pipeline of `count` independent `test` stages.
fn pipeline_of(count: usize) -> Value {
    let stages: Vec<Value> = (1..=count)
        .map(|i| json!({"refId": i.to_string(), "name": format!("s{i}"), "type": "test"}))
        .collect();
    json!({"application": "app", "name": "big", "stages": stages})
}

engine_test!(
    a_pipeline_over_the_stage_limit_is_refused_at_save_and_run,
    |h| {
        assert_eq!(MAX_PIPELINE_STAGES, 1_000);
        let catalog = h.engine.registry().catalog();

        let at_limit = validate_pipeline_value(&pipeline_of(1_000), catalog);
        assert!(at_limit.is_valid(), "{at_limit:?}");
        let saved = h.save("big", pipeline_of(1_000)).await;
        assert_eq!(saved["stages"].as_array().unwrap().len(), 1_000);

        let over = validate_pipeline_value(&pipeline_of(1_001), catalog);
        let errors: Vec<_> = over.errors().collect();
        assert_eq!(errors.len(), 1, "only the limit is reported: {errors:?}");
        assert_eq!(errors[0].path, "$.stages");
        assert_eq!(
            errors[0].message,
            "the pipeline has 1001 stages; a pipeline may have at most 1000"
        );

        // A config that skipped validation (saved before the limit, or given inline) is
        // refused when it is run, and nothing is queued.
        let config = gennaker_core::Pipeline::from_value(pipeline_of(1_001)).unwrap();
        let refused = h
            .engine
            .run_pipeline("app", &config, &RunRequest::default(), &requester())
            .await
            .unwrap_err();
        let EngineError::Invalid(message) = refused else {
            panic!("expected Invalid, got {refused:?}")
        };
        assert_eq!(
            message,
            "'big' has 1001 stages; a pipeline may have at most 1000 (at $.stages): split it into smaller pipelines and chain them with `pipeline` stages"
        );
        assert!(h.queue_is_empty().await);
        h.stop().await;
    }
);

engine_test!(a_stage_planning_too_many_synthetic_stages_fails, |h| {
    let execution = h
        .run(
            "fan-out",
            json!({"stages": [
                {"refId": "1", "name": "small", "type": "test", "synthetic": 2},
                {"refId": "2", "name": "huge", "type": "test", "synthetic": MAX_EXECUTION_STAGES, "requisiteStageRefIds": ["1"]},
                {"refId": "3", "name": "after", "type": "test", "requisiteStageRefIds": ["2"]},
            ]}),
        )
        .await;
    let done = h.finished(&execution.id).await;
    assert_eq!(done.status, Terminal);
    // A fan-out within the limit runs as usual.
    assert_eq!(status_of(&done, "small"), Succeeded);
    assert_eq!(synthetic_children(&done, "small").len(), 2);
    // The one over it fails without growing the execution.
    assert_eq!(status_of(&done, "huge"), Terminal);
    assert!(synthetic_children(&done, "huge").is_empty());
    assert_eq!(done.stages.len(), 5);
    assert_eq!(
        error_of(stage(&done, "huge")),
        format!(
            "stage 'huge' plans {MAX_EXECUTION_STAGES} synthetic stages, which would make {} stages in this execution; an execution may hold at most {MAX_EXECUTION_STAGES}: plan fewer (fewer targets, smaller fan-out) or split the pipeline",
            MAX_EXECUTION_STAGES + 5
        )
    );
    assert_eq!(status_of(&done, "after"), NotStarted);
    h.stop().await;
});
