//! The `kayentaCanary` stage under the engine's fault driver: every step done twice
//! (the first attempt's commit fails), and the engine killed after every commit and
//! restarted from the store. Each judgement must complete once, the scores and the
//! judge results must be those of an undisturbed run, and nothing may be left queued.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod stage_kit;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gennaker_engine::fault_test;
use gennaker_engine::testing::{Fault, FaultOutcome, FaultRun, TestBackend, stage, summary};
use gennaker_engine::{Execution, ExecutionStatus};
use serde_json::{Value, json};
use stage_kit::{FakeMetrics, canary_stage, canary_stages, configs};

/// Four 15-second intervals (windows of 4, 7, 10 and 13 points); the canary fails
/// from the third (`ratio` ≠ 1) or never.
async fn canary_run(
    backend: TestBackend,
    fault: Fault,
    ratio: f64,
) -> (FaultOutcome, Arc<FakeMetrics>) {
    let metrics = Arc::new(FakeMetrics::default());
    metrics.set_ratio("shop-canary", ratio);
    metrics.ratio_from_points(10);
    let after = json!({"refId": "2", "name": "After", "type": "wait", "waitTime": 1, "requisiteStageRefIds": ["1"]});
    let canary = canary_stage(
        "PT1M",
        "0.25",
        "0",
        json!({"continuePipeline": ratio != 1.0}),
    );
    let outcome = FaultRun::new(backend, fault, json!({"stages": [canary, after]}))
        .with_stages(canary_stages(&metrics, &configs()))
        .clock_step(Duration::from_secs(3))
        .run()
        .await;
    (outcome, metrics)
}

/// What must not change under faults: every stage's status, the scores, and each
/// judgement's judge result (times differ between runs: the clock moves differently).
fn verdicts(execution: &Execution) -> BTreeMap<String, (ExecutionStatus, Value, Value)> {
    execution
        .stages
        .iter()
        .map(|s| {
            let scores = s
                .context
                .get("canaryScores")
                .or_else(|| s.context.get("canaryScore"));
            let judged = s
                .outputs
                .get("canaryReport")
                .map(|r| r["judgeResult"].clone());
            (
                s.name.clone(),
                (
                    s.status,
                    scores.cloned().unwrap_or(Value::Null),
                    judged.unwrap_or(Value::Null),
                ),
            )
        })
        .collect()
}

fn check(
    outcome: &FaultOutcome,
    reference: &FaultOutcome,
    metrics: &FakeMetrics,
    judgements: usize,
) {
    outcome.assert_clean();
    assert_eq!(
        verdicts(&outcome.execution),
        verdicts(&reference.execution),
        "{:?}:\n{}",
        outcome.fault,
        summary(&outcome.execution)
    );
    assert_eq!(outcome.execution.status, reference.execution.status);
    // A judgement may be computed again when its step is repeated, but always over the
    // same window and into one completed stage (the fault driver's ledger).
    assert_eq!(
        metrics.windows("shop-canary").len(),
        judgements,
        "{:?}",
        outcome.fault
    );
}

fault_test!(
    a_passing_canary_is_judged_once_per_interval,
    |backend, fault| {
        let (reference, reference_metrics) = canary_run(backend, Fault::None, 1.0).await;
        reference.assert_succeeded();
        assert_eq!(
            stage(&reference.execution, "Canary Analysis").context["canaryScores"],
            json!([100.0, 100.0, 100.0, 100.0])
        );
        assert_eq!(reference_metrics.windows("shop-canary").len(), 4);
        let (outcome, metrics) = canary_run(backend, fault, 1.0).await;
        check(&outcome, &reference, &metrics, 4);
    }
);

fault_test!(
    a_failing_canary_stops_once_under_faults,
    |backend, fault| {
        let (reference, _) = canary_run(backend, Fault::None, 3.0).await;
        reference.assert_clean();
        let canary = stage(&reference.execution, "Canary Analysis");
        assert_eq!(canary.status, ExecutionStatus::FailedContinue);
        assert_eq!(canary.context["canaryScores"], json!([100.0, 100.0, 0.0]));
        assert_eq!(
            stage(&reference.execution, "Run Canary #4").status,
            ExecutionStatus::NotStarted
        );
        assert_eq!(
            stage(&reference.execution, "After").status,
            ExecutionStatus::Succeeded
        );
        let (outcome, metrics) = canary_run(backend, fault, 3.0).await;
        check(&outcome, &reference, &metrics, 3);
    }
);
