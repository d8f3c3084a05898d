//! Bounds: how many stages a pipeline and an execution may have, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gennaker_core::{MAX_PIPELINE_STAGES, validate_pipeline_value};
use gennaker_engine::ExecutionStatus::*;
use gennaker_engine::testing::{
    APPLICATION, error_of, requester, stage, status_of, synthetic_children,
};
use std::sync::Arc;
use std::time::Duration;

use gennaker_engine::{
    Engine, EngineConfig, EngineError, MAX_EXECUTION_STAGES, Requester, RunRequest, engine_test,
};
use gennaker_store::testing::{TestBackend, TestDatabase};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

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
        assert_eq!(MAX_PIPELINE_STAGES, 500);
        let catalog = h.engine.registry().catalog();

        let at_limit = validate_pipeline_value(&pipeline_of(500), catalog);
        assert!(at_limit.is_valid(), "{at_limit:?}");
        let saved = h.save("big", pipeline_of(500)).await;
        assert_eq!(saved["stages"].as_array().unwrap().len(), 500);

        let over = validate_pipeline_value(&pipeline_of(1_000), catalog);
        let errors: Vec<_> = over.errors().collect();
        assert_eq!(errors.len(), 1, "only the limit is reported: {errors:?}");
        assert_eq!(errors[0].path, "$.stages");
        assert_eq!(
            errors[0].message,
            "the pipeline has 1000 stages; a pipeline may have at most 500"
        );

        // A config that skipped validation (saved before the limit, or given inline) is
        // refused when it is run, and nothing is queued.
        let config = gennaker_core::Pipeline::from_value(pipeline_of(501)).unwrap();
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
            "'big' has 501 stages; a pipeline may have at most 500 (at $.stages): split it into smaller pipelines and chain them with `pipeline` stages"
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

engine_test!(one_users_flood_does_not_hold_up_another_user, |h| {
    // An engine of its own, on a database of its own, whose workers start only once
    // alice's 200 executions and then bob's one are queued.
    let backend = if h.store.postgres_pool().is_some() {
        TestBackend::Postgres
    } else {
        TestBackend::Sqlite
    };
    let (_db, store) = TestDatabase::store(backend).await.unwrap();
    let engine = Engine::new(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        h.registry.clone(),
        Arc::new(h.clock.clone()),
        EngineConfig {
            workers: 4,
            idle_recheck: Duration::from_millis(50),
            ..EngineConfig::default()
        },
    )
    .unwrap();
    let config = gennaker_core::Pipeline::from_value(json!({
        "name": "chain", "application": APPLICATION, "stages": [
            {"refId": "1", "name": "a", "type": "test"},
            {"refId": "2", "name": "b", "type": "test", "requisiteStageRefIds": ["1"]},
        ]
    }))
    .unwrap();
    let as_user = |user: &str| Requester {
        user: user.into(),
        ..requester()
    };
    for _ in 0..200 {
        engine
            .run_pipeline(
                APPLICATION,
                &config,
                &RunRequest::default(),
                &as_user("alice"),
            )
            .await
            .unwrap();
    }
    let bob = engine
        .run_pipeline(
            APPLICATION,
            &config,
            &RunRequest::default(),
            &as_user("bob"),
        )
        .await
        .unwrap();

    let mut events = engine.subscribe();
    let shutdown = CancellationToken::new();
    let mut workers = engine
        .start(store.queue_listener().await.unwrap(), shutdown.clone())
        .await
        .unwrap();
    // The order executions end in; bounded against a hang, not a speed requirement.
    let mut ended = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(120), async {
        while ended.len() < 201 {
            match events.recv().await {
                Ok(event) if event.stage_id.is_none() && event.status.is_complete() => {
                    ended.push(event.execution_id);
                }
                Ok(_) => {}
                Err(e) => panic!("events lost ({e}); the order is unknown"),
            }
        }
    })
    .await;
    shutdown.cancel();
    while workers.join_next().await.is_some() {}
    store.close().await;
    assert_eq!(ended.len(), 201, "every execution ends");
    // Claims alternate between alice and bob: bob's execution, queued behind all of
    // alice's, ends among the first (a first-come order would end it last, 201st). A
    // worker carries on with the execution it holds for up to 8 steps before it claims
    // again, so bob's steps can wait a few rounds of the 8 workers' carried steps
    // (positions 11–24 seen on PostgreSQL): a bound of a fifth of the flood.
    let position = ended.iter().position(|id| *id == bob.id).unwrap();
    assert!(
        position < 40,
        "bob's execution ended as number {}",
        position + 1
    );
    h.stop().await;
});
